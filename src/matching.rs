//! Matching source rows to destination objects: key normalisation (case-insensitive, as AD
//! compares), the key index built from one destination scan, the value comparison that decides
//! whether an attribute changed, and the index behind the `Resolve` transform.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use crate::destination::{Destination, DestinationError, Entry, Scope};
use crate::query::Filter;
use crate::transform::Resolver;

/// Separates the parts of a composite key; it cannot occur in a lower-cased cell value that
/// a user could type.
const KEY_SEP: char = '\u{1f}';

/// The normal form of a key: each part lower-cased (Unicode), parts joined.
///
/// ```
/// use datasync::matching::normalize_key;
/// assert_eq!(normalize_key(&["ÄNN_Lee"]), normalize_key(&["änn_lee"]));
/// assert_ne!(normalize_key(&["a", "bc"]), normalize_key(&["ab", "c"]));
/// ```
pub fn normalize_key<S: AsRef<str>>(parts: &[S]) -> String {
    let len = parts.iter().map(|p| p.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(len);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEP);
        }
        push_lowercase(&mut out, p.as_ref());
    }
    out
}

/// `s` lower-cased as [`str::to_lowercase`] does, borrowed when it already is (an id, most of
/// what `Resolve` looks up).
pub(crate) fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Appends `s` lower-cased as [`str::to_lowercase`] does, without its intermediate string
/// when `s` is ASCII (a key is normalised for every source row and destination object).
pub(crate) fn push_lowercase(out: &mut String, s: &str) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        out.push_str(&s.to_lowercase());
    }
}

/// The destination objects in scope, indexed by key.
#[derive(Debug, Default)]
pub struct KeyIndex {
    entries: Vec<Arc<Entry>>,
    by_key: HashMap<String, Vec<usize>>,
    keyless: usize,
}

impl KeyIndex {
    /// Indexes `entries` by the first value of each key attribute. Entries missing a key
    /// attribute are kept (they are in scope) but match no row. The entries may be shared
    /// with the directory ([`Destination::search_shared`]).
    pub fn build(entries: Vec<Arc<Entry>>, key_attributes: &[&str]) -> KeyIndex {
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::with_capacity(entries.len());
        let mut keyless = 0;
        for (i, e) in entries.iter().enumerate() {
            let parts: Option<Vec<&str>> = key_attributes
                .iter()
                .map(|a| e.first(a).filter(|v| !v.is_empty()))
                .collect();
            match parts {
                Some(parts) => by_key.entry(normalize_key(&parts)).or_default().push(i),
                None => keyless += 1,
            }
        }
        KeyIndex {
            entries,
            by_key,
            keyless,
        }
    }

    /// Positions of the entries with this (normalised) key.
    pub fn find(&self, key: &str) -> &[usize] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The entry at a position.
    pub fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    /// All entries in scope, in scan order.
    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    /// Each key with the entries that carry it.
    pub fn keys(&self) -> impl Iterator<Item = (&String, &Vec<usize>)> {
        self.by_key.iter()
    }

    /// How many entries in scope lack a key value.
    pub fn keyless(&self) -> usize {
        self.keyless
    }
}

/// True when the destination's values equal the source's: exactly (a case change is a change
/// worth writing), in any order for multi-valued attributes. A DN value also equals the same DN
/// written differently (`CN=Ann,OU=API` and `cn=Ann,ou=API`), since servers store DN-valued
/// attributes such as `manager` in their own form.
pub fn same_values(current: &[String], desired: &[String]) -> bool {
    if current.len() != desired.len() {
        return false;
    }
    if current.len() <= 1 {
        return current.iter().zip(desired).all(|(a, b)| same_value(a, b));
    }
    let mut a: Vec<&String> = current.iter().collect();
    let mut b: Vec<&String> = desired.iter().collect();
    a.sort();
    b.sort();
    if a == b {
        return true;
    }
    // Rarely reached: only DN-valued attributes written in another form get here.
    let mut unmatched: Vec<&String> = b;
    for value in a {
        match unmatched.iter().position(|d| same_value(value, d)) {
            Some(i) => {
                unmatched.swap_remove(i);
            }
            None => return false,
        }
    }
    true
}

/// One value: equal, or the same DN (types compared case-insensitively, values exactly).
fn same_value(current: &str, desired: &str) -> bool {
    if current == desired {
        return true;
    }
    if !current.contains('=') || !desired.contains('=') {
        return false;
    }
    match (crate::dn::Dn::parse(current), crate::dn::Dn::parse(desired)) {
        (Ok(a), Ok(b)) => {
            !a.rdns.is_empty()
                && a.rdns.len() == b.rdns.len()
                && a.rdns.iter().zip(&b.rdns).all(|(x, y)| {
                    x.len() == y.len()
                        && x.iter().zip(y).all(|(p, q)| {
                            p.attr.eq_ignore_ascii_case(&q.attr) && p.value == q.value
                        })
                })
        }
        _ => false,
    }
}

/// The `Resolve` transform's lookup: attribute value → DN, built from one search per attribute.
#[derive(Debug, Default)]
pub struct ResolveIndex {
    by_attribute: HashMap<String, HashMap<String, Vec<String>>>,
}

impl ResolveIndex {
    /// Reads every entry under `base` that has one of `attributes`.
    pub fn build(
        destination: &dyn Destination,
        base: &str,
        attributes: &[String],
    ) -> Result<ResolveIndex, DestinationError> {
        let mut by_attribute = HashMap::new();
        for attr in attributes {
            let key = attr.to_ascii_lowercase();
            if by_attribute.contains_key(&key) {
                continue;
            }
            let entries = match destination.search_shared(
                base,
                Scope::Subtree,
                &Filter::Present(attr.clone()),
                std::slice::from_ref(attr),
            ) {
                Ok(e) => e,
                Err(DestinationError::NoSuchObject { .. }) => Vec::new(),
                Err(e) => return Err(e),
            };
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for e in &entries {
                for v in e.get(attr) {
                    map.entry(v.to_lowercase()).or_default().push(e.dn.clone());
                }
            }
            by_attribute.insert(key, map);
        }
        Ok(ResolveIndex { by_attribute })
    }
}

impl Resolver for ResolveIndex {
    fn resolve(&self, attribute: &str, value: &str) -> Result<Option<String>, String> {
        let found = self
            .by_attribute
            .get(&attribute.to_ascii_lowercase())
            .and_then(|m| m.get(&value.to_lowercase()));
        match found.map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([dn]) => Ok(Some(dn.clone())),
            Some(many) => Err(format!(
                "Resolve: {} objects have {attribute}={value}: {}",
                many.len(),
                many.join("; ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_case_insensitively_and_counts_keyless() {
        let mut a = Entry::new("CN=a,DC=lab");
        a.set("sAMAccountName", vec!["Ann_Lee".into()]);
        let b = Entry::new("CN=b,DC=lab");
        let index = KeyIndex::build(vec![Arc::new(a), Arc::new(b)], &["samaccountname"]);
        assert_eq!(index.find(&normalize_key(&["ANN_LEE"])), &[0]);
        assert_eq!(index.keyless(), 1);
    }

    #[test]
    fn values_compare_exactly_in_any_order() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(same_values(&v(&["a", "b"]), &v(&["b", "a"])));
        assert!(!same_values(&v(&["Ann"]), &v(&["ann"])));
        assert!(!same_values(&v(&[]), &v(&["x"])));
        assert!(same_values(&v(&[]), &v(&[])));
        // A server's own form of a DN value is the same value; a renamed DN is not.
        assert!(same_values(
            &v(&["cn=Dana O'Brien\\2C Jr,ou=API,dc=lab"]),
            &v(&["CN=Dana O'Brien\\, Jr,OU=API,DC=lab"])
        ));
        assert!(same_values(
            &v(&["cn=b,dc=lab", "cn=A,dc=lab"]),
            &v(&["CN=A,DC=lab", "CN=b,DC=lab"])
        ));
        assert!(!same_values(&v(&["cn=ann,dc=lab"]), &v(&["CN=Ann,DC=lab"])));
        assert!(!same_values(&v(&["a=b"]), &v(&["a=c"])));
    }
}
