//! How text compares: keys, DNs and `Resolve` values are matched lower-cased and in Unicode
//! normal form C, so an NFC and an NFD spelling of `José` (one from a Mac, one from Windows)
//! are one value, not two objects with identical-looking names.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// `s` in normal form C, borrowed when it already is (ASCII always is).
pub(crate) fn nfc(s: &str) -> Cow<'_, str> {
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().collect())
    }
}

/// `s` lower-cased as [`str::to_lowercase`] does, then in normal form C; borrowed when it
/// already is (an id, most of what `Resolve` looks up).
pub(crate) fn lowercase(s: &str) -> Cow<'_, str> {
    if !s.is_ascii() {
        Cow::Owned(fold_non_ascii(s))
    } else if s.bytes().any(|b| b.is_ascii_uppercase()) {
        // ASCII is its own normal form: no decomposing and composing (which made normalising
        // a DN such as `CN=Ann Lee,OU=People` ten times slower, a group's 2,000 members most
        // of a run).
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Appends [`lowercase`]`(s)`, without an intermediate string when `s` is ASCII (a key is
/// normalised for every source row and destination object).
pub(crate) fn push_lowercase(out: &mut String, s: &str) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        out.push_str(&fold_non_ascii(s));
    }
}

/// Lower-cases the canonical decomposition and composes the result: canonically equivalent
/// inputs share one decomposition, so they fold to one string by construction (lower-casing
/// a composed character does not always commute with composing it).
fn fold_non_ascii(s: &str) -> String {
    let decomposed: String = s.nfd().collect();
    decomposed.to_lowercase().nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_and_nfd_spellings_fold_alike() {
        let composed = "Jos\u{e9}";
        let decomposed = "Jose\u{301}";
        assert_ne!(composed, decomposed);
        assert_eq!(lowercase(composed), lowercase(decomposed));
        let (mut a, mut b) = (String::new(), String::new());
        push_lowercase(&mut a, composed);
        push_lowercase(&mut b, decomposed);
        assert_eq!(a, b);
        assert_eq!(a, "jos\u{e9}");
        assert!(matches!(nfc("plain"), Cow::Borrowed(_)));
        assert_eq!(nfc(decomposed), composed);
    }
}
