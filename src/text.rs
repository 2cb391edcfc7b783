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

/// An attribute value escaped for a DN (RFC 4514), as `ldap3::dn_escape` writes it: `"`, `+`,
/// `,`, `;`, `<`, `=`, `>`, `\` and NUL anywhere, a leading space or `#` and a trailing space,
/// each as `\` and two hex digits; everything else as it is.
pub(crate) fn escape_dn_value(value: &str) -> Cow<'_, str> {
    let always = |c: u8| {
        matches!(
            c,
            b'"' | b'+' | b',' | b';' | b'<' | b'=' | b'>' | b'\\' | 0
        )
    };
    let bytes = value.as_bytes();
    let escaped = |i: usize, c: u8| {
        always(c) || (i == 0 && matches!(c, b' ' | b'#')) || (i + 1 == bytes.len() && c == b' ')
    };
    if !bytes.iter().enumerate().any(|(i, &c)| escaped(i, c)) {
        return Cow::Borrowed(value);
    }
    let hex = |n: u8| char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 });
    let mut out = String::with_capacity(value.len() + 12);
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if escaped(i, c) {
            // Every escaped byte is ASCII: `i` is on a character boundary.
            out.push_str(&value[start..i]);
            out.push('\\');
            out.push(hex(c >> 4));
            out.push(hex(c & 0xf));
            start = i + 1;
        }
    }
    out.push_str(&value[start..]);
    Cow::Owned(out)
}

/// A value escaped for an LDAP search filter (RFC 4515): `*`, `(`, `)`, `\` and NUL as
/// `\2a`, `\28`, `\29`, `\5c` and `\00`; everything else as it is.
pub(crate) fn escape_filter_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['*', '(', ')', '\\', '\0']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    /// Ours write what ldap3's wrote, which the directories built so far hold.
    #[cfg(feature = "ldap")]
    #[test]
    fn escapes_match_ldap3s() {
        for v in [
            "",
            " ",
            "#",
            "# ",
            " a",
            "a ",
            "Lee, Ann",
            "a+b",
            "x=y",
            "q\"q",
            "<>;",
            "\\",
            "nul\0",
            "Zoë Müller",
            "李 小龙",
            "  ",
            "##",
            "a#",
            "*()",
        ] {
            assert_eq!(super::escape_dn_value(v), ldap3::dn_escape(v), "{v:?}");
            assert_eq!(
                super::escape_filter_value(v),
                ldap3::ldap_escape(v),
                "{v:?}"
            );
        }
    }

    #[test]
    fn dn_values_escape_as_rfc_4514_says() {
        use super::escape_dn_value as e;
        assert_eq!(e("Ann Lee"), "Ann Lee");
        assert_eq!(e("Lee, Ann"), "Lee\\2c Ann");
        assert_eq!(e(" #a b "), "\\20#a b\\20");
        assert_eq!(e("#x"), "\\23x");
        assert_eq!(
            e("a+b=c\"d\";<>\\\0"),
            "a\\2bb\\3dc\\22d\\22\\3b\\3c\\3e\\5c\\00"
        );
        assert_eq!(e("Zoë Müller"), "Zoë Müller");
        assert_eq!(e(""), "");
    }

    #[test]
    fn filter_values_escape_as_rfc_4515_says() {
        assert_eq!(super::escape_filter_value("Ann Lee"), "Ann Lee");
        assert_eq!(
            super::escape_filter_value("a*(b)\\c\0"),
            "a\\2a\\28b\\29\\5cc\\00"
        );
        assert_eq!(super::escape_filter_value("Zoë"), "Zoë");
    }

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
