//! Matching source rows to destination objects: key normalisation (case-insensitive, as AD
//! compares), the key index built from one destination scan, the value comparison that decides
//! whether an attribute changed, and the index behind the `Resolve` transform.

use std::hash::BuildHasher;
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
/// use datasync::normalize_key;
/// assert_eq!(normalize_key(&["ÄNN_Lee"]), normalize_key(&["änn_lee"]));
/// assert_ne!(normalize_key(&["a", "bc"]), normalize_key(&["ab", "c"]));
/// ```
pub fn normalize_key<S: AsRef<str>>(parts: &[S]) -> String {
    let len = parts.iter().map(|p| p.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(len);
    push_normalized_key(&mut out, parts);
    out
}

/// Appends [`normalize_key`]`(parts)` to `out`.
pub(crate) fn push_normalized_key<S: AsRef<str>>(out: &mut String, parts: &[S]) {
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEP);
        }
        push_lowercase(out, p.as_ref());
    }
}

pub(crate) use crate::text::{lowercase, push_lowercase};

/// What shares one key: nearly always one item, held without allocating.
#[derive(Debug)]
enum OneOrMore<T> {
    One([T; 1]),
    More(Vec<T>),
}

impl<T: Clone> OneOrMore<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            OneOrMore::One(one) => one,
            OneOrMore::More(many) => many,
        }
    }

    /// Adds `item` under `key`.
    fn add<K: std::hash::Hash + Eq>(map: &mut HashMap<K, OneOrMore<T>>, key: K, item: T) {
        match map.entry(key) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(OneOrMore::One([item]));
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let all = slot.get_mut();
                match all {
                    OneOrMore::One([first]) => *all = OneOrMore::More(vec![first.clone(), item]),
                    OneOrMore::More(many) => many.push(item),
                }
            }
        }
    }
}

/// The destination objects in scope, indexed by key: of each, only what a run reads again
/// (its DN, a few attributes packed in one buffer, a fingerprint of the rest; see
/// [`push`](Self::push)), a couple of hundred bytes, so a run over a million objects does not
/// hold a million entries.
#[derive(Debug, Default)]
pub struct KeyIndex {
    objects: Vec<IndexedObject>,
    by_key: HashMap<String, OneOrMore<usize>>,
    keyless: usize,
}

/// What a [`KeyIndex`] keeps of one object.
#[derive(Debug)]
struct IndexedObject {
    dn: Box<str>,
    /// The attributes kept, packed (see `destination::record`).
    kept: Box<[u8]>,
    fingerprint: u128,
}

impl KeyIndex {
    /// Indexes whole `entries` by the first value of each key attribute (fingerprints 0).
    #[cfg(test)]
    pub fn build(entries: &[Entry], key_attributes: &[&str]) -> KeyIndex {
        let mut index = KeyIndex::default();
        for e in entries {
            index.push(e, key_attributes, None, 0);
        }
        index
    }

    /// Adds an object, indexed by the first value of each key attribute of `entry`. Entries
    /// missing a key attribute are kept (they are in scope) but match no row. Of the entry,
    /// the index keeps its DN and the attributes named in `keep` (all of them for `None`),
    /// with `fingerprint`: what the caller made of the rest.
    pub fn push(
        &mut self,
        entry: &Entry,
        key_attributes: &[&str],
        keep: Option<&[String]>,
        fingerprint: u128,
    ) {
        let position = self.objects.len();
        let mut parts: Vec<&str> = Vec::with_capacity(key_attributes.len());
        for a in key_attributes {
            match entry.first(a).filter(|v| !v.is_empty()) {
                Some(v) => parts.push(v),
                None => break,
            }
        }
        if parts.len() < key_attributes.len() {
            self.keyless += 1;
        } else {
            OneOrMore::add(&mut self.by_key, normalize_key(&parts), position);
        }
        let mut kept = Vec::new();
        match keep {
            Some(keep) => crate::entry::record::encode_only(entry, keep, &mut kept),
            None => crate::entry::record::encode(entry, &mut kept),
        }
        self.objects.push(IndexedObject {
            dn: entry.dn.as_str().into(),
            kept: kept.into_boxed_slice(),
            fingerprint,
        });
    }

    /// Positions of the entries with this (normalised) key.
    pub fn find(&self, key: &str) -> &[usize] {
        self.by_key.get(key).map(OneOrMore::as_slice).unwrap_or(&[])
    }

    /// The DN of the object at a position.
    pub fn dn(&self, i: usize) -> &str {
        &self.objects[i].dn
    }

    /// The values the object at a position has of a kept attribute.
    pub fn values(&self, i: usize, name: &str) -> Vec<&str> {
        crate::entry::record::values_of(&self.objects[i].kept, name)
    }

    /// The first value the object at a position has of a kept attribute.
    pub fn first(&self, i: usize, name: &str) -> Option<&str> {
        crate::entry::record::first_of_with(&self.objects[i].kept, name, &[])
    }

    /// The fingerprint given for the entry at a position.
    pub fn fingerprint(&self, i: usize) -> u128 {
        self.objects[i].fingerprint
    }

    /// How many entries are in scope.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Each key with the entries that carry it.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.by_key.iter().map(|(k, p)| (k.as_str(), p.as_slice()))
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
pub fn same_values<C: AsRef<str>, D: AsRef<str>>(current: &[C], desired: &[D]) -> bool {
    if current.len() != desired.len() {
        return false;
    }
    if current.len() <= 1 {
        return current
            .iter()
            .zip(desired)
            .all(|(a, b)| same_value(a.as_ref(), b.as_ref()));
    }
    let mut a: Vec<&str> = current.iter().map(AsRef::as_ref).collect();
    let mut b: Vec<&str> = desired.iter().map(AsRef::as_ref).collect();
    a.sort_unstable();
    b.sort_unstable();
    if a == b {
        return true;
    }
    // Rarely reached: only DN-valued attributes written in another form get here.
    let mut unmatched: Vec<&str> = b;
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
///
/// Objects are held by the hash of their lower-cased value, each with only its DN and the
/// attribute looked up: on a run over a directory of 100,000 users the index is built, and
/// freed, on every run, and is mostly not asked (this run's rows answer first).
#[derive(Debug, Default)]
pub struct ResolveIndex {
    by_attribute: HashMap<String, HashMap<u64, OneOrMore<Arc<Holder>>>>,
}

/// An object that has a value looked up: its DN and its values of the attribute, packed
/// (see `destination::record`). Shared by the values it is listed under.
#[derive(Debug)]
struct Holder {
    dn: Box<str>,
    values: Box<[u8]>,
}

/// The hasher of [`ResolveIndex`]: fixed, so which objects are listed first never varies.
const RESOLVE_HASH: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x7e50);

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
            let mut map: HashMap<u64, OneOrMore<Arc<Holder>>> = HashMap::new();
            let hash = |v: &String| RESOLVE_HASH.hash_one(lowercase(v));
            let found = destination.search_each(
                base,
                Scope::Subtree,
                &Filter::Present(attr.clone()),
                std::slice::from_ref(attr),
                &mut |e| {
                    // Only the attribute looked up is kept of each object.
                    let mut packed = Vec::new();
                    crate::entry::record::encode_only(e, std::slice::from_ref(attr), &mut packed);
                    let holder = Arc::new(Holder {
                        dn: e.dn.as_str().into(),
                        values: packed.into_boxed_slice(),
                    });
                    let values = e.get(attr);
                    for (i, v) in values.iter().enumerate() {
                        // An object is listed once under a value, however many times it has it.
                        let h = hash(v);
                        if !values[..i].iter().any(|earlier| hash(earlier) == h) {
                            OneOrMore::add(&mut map, h, holder.clone());
                        }
                    }
                },
            );
            match found {
                Ok(()) | Err(DestinationError::NoSuchObject { .. }) => {}
                Err(e) => return Err(e),
            }
            by_attribute.insert(key, map);
        }
        Ok(ResolveIndex { by_attribute })
    }
}

impl Resolver for ResolveIndex {
    fn resolve(
        &self,
        attribute: &str,
        value: &str,
    ) -> Result<Option<String>, crate::transform::ResolveError> {
        let wanted = lowercase(value);
        let Some(candidates) = self
            .by_attribute
            .get(&attribute.to_ascii_lowercase())
            .and_then(|m| m.get(&RESOLVE_HASH.hash_one(&wanted)))
        else {
            return Ok(None);
        };
        // The hash narrows the search; the values decide (a collision is not a match).
        let found: Vec<&str> = candidates
            .as_slice()
            .iter()
            .filter(|h| {
                crate::entry::record::values_of(&h.values, attribute)
                    .iter()
                    .any(|v| lowercase(v) == wanted)
            })
            .map(|h| &*h.dn)
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [dn] => Ok(Some(dn.to_string())),
            many => Err(crate::transform::ResolveError::Ambiguous {
                attribute: attribute.to_string(),
                value: value.to_string(),
                dns: many.iter().map(|dn| dn.to_string()).collect(),
            }),
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
        let index = KeyIndex::build(&[a, b], &["samaccountname"]);
        assert_eq!(index.find(&normalize_key(&["ANN_LEE"])), &[0]);
        assert_eq!(index.keyless(), 1);
    }

    #[test]
    fn keys_shared_by_several_entries_find_them_all() {
        let entry = |dn: &str, id: &str| {
            let mut e = Entry::new(dn);
            e.set("employeeID", vec![id.into()]);
            e
        };
        let entries = vec![
            entry("CN=a,DC=lab", "7"),
            entry("CN=b,DC=lab", "8"),
            entry("CN=c,DC=lab", "7"),
            entry("CN=d,DC=lab", "7"),
        ];
        let index = KeyIndex::build(&entries, &["employeeID"]);
        assert_eq!(index.find("7"), &[0, 2, 3]);
        assert_eq!(index.find("8"), &[1]);
        assert_eq!(index.find("9"), &[] as &[usize]);
        let mut keys: Vec<(&str, &[usize])> = index.keys().collect();
        keys.sort();
        assert_eq!(keys, [("7", &[0, 2, 3][..]), ("8", &[1][..])]);
    }

    #[test]
    fn resolve_finds_one_object_ignoring_case_and_names_several() {
        let dir = crate::LdifDirectory::in_memory();
        let mut root = Entry::new("DC=lab");
        root.set("objectClass", vec!["domain".into()]);
        dir.add(&root, None).unwrap();
        for (cn, ids) in [
            ("Ann", &["AB-1", "ab-1"][..]),
            ("Bob", &["CD-2"][..]),
            ("Cy", &["cd-2"][..]),
        ] {
            let mut e = Entry::new(format!("CN={cn},DC=lab"));
            e.set("objectClass", vec!["user".into()]);
            e.set("employeeID", ids.iter().map(|s| s.to_string()).collect());
            dir.add(&e, None).unwrap();
        }
        let index = ResolveIndex::build(&dir, "DC=lab", &["employeeID".into()]).unwrap();
        // Ann has the value twice (in two cases): still one object.
        assert_eq!(
            index.resolve("EMPLOYEEID", "Ab-1").unwrap(),
            Some("CN=Ann,DC=lab".into())
        );
        assert_eq!(index.resolve("employeeID", "zz-9").unwrap(), None);
        assert_eq!(index.resolve("mail", "ab-1").unwrap(), None);
        let both = index.resolve("employeeID", "CD-2").unwrap_err();
        let crate::transform::ResolveError::Ambiguous { dns, .. } = &both else {
            panic!("{both}");
        };
        assert_eq!(dns.len(), 2);
        let both = both.to_string();
        assert!(
            both.starts_with("Resolve: 2 objects have employeeID=CD-2: ")
                && both.contains("CN=Bob,DC=lab")
                && both.contains("CN=Cy,DC=lab"),
            "{both}"
        );
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
