//! A directory entry: a DN and its attributes, with names compared case-insensitively as LDAP does.

pub mod ldif;
pub(crate) mod record;

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use smol_str::SmolStr;

/// An attribute's name, as written (`givenName`).
///
/// Every object a job writes carries the same dozen names, so a name is cheap to copy: one
/// of up to 23 bytes (nearly every LDAP name) is held inline and copied without allocating,
/// a longer one is shared. It reads as a `str` and converts from one.
///
/// ```
/// use datasync::destination::AttributeName;
/// let name = AttributeName::from("givenName");
/// assert_eq!(name, "givenName");
/// assert!(name.eq_ignore_ascii_case("GIVENNAME"));
/// let copy = name.clone();
/// assert_eq!(copy.as_str(), "givenName");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttributeName(SmolStr);

impl AttributeName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether this is the attribute `name`, compared as LDAP compares attribute names:
    /// without case. (`==` compares the spelling, as `Hash` and the maps keyed by names do.)
    ///
    /// ```
    /// let name = datasync::destination::AttributeName::from("sAMAccountName");
    /// assert!(name.is("samaccountname"));
    /// assert!(name != "samaccountname");
    /// ```
    pub fn is(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }
}

impl Deref for AttributeName {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for AttributeName {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for AttributeName {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for AttributeName {
    fn from(s: &str) -> Self {
        AttributeName(SmolStr::new(s))
    }
}

impl From<String> for AttributeName {
    fn from(s: String) -> Self {
        AttributeName(SmolStr::from(s))
    }
}

impl From<&String> for AttributeName {
    fn from(s: &String) -> Self {
        AttributeName(SmolStr::new(s))
    }
}

impl From<AttributeName> for String {
    fn from(name: AttributeName) -> String {
        name.0.to_string()
    }
}

impl PartialEq<str> for AttributeName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AttributeName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for AttributeName {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_str()
    }
}

impl fmt::Debug for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attribute of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name as first written (`givenName`); looked up case-insensitively.
    pub name: AttributeName,
    /// The values, in the order they were given.
    pub values: Vec<String>,
}

/// A directory entry.
///
/// ```
/// use datasync::Entry;
/// let mut e = Entry::new("CN=Ann,DC=lab");
/// e.set("givenName", vec!["Ann".into()]);
/// assert_eq!(e.first("GIVENNAME"), Some("Ann"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's distinguished name, as written.
    pub dn: String,
    attrs: Vec<Attribute>,
}

impl Entry {
    /// An entry with no attributes.
    pub fn new(dn: impl Into<String>) -> Entry {
        Entry {
            dn: dn.into(),
            attrs: Vec::new(),
        }
    }

    /// An entry with these attributes, moved in (no copy). A name given twice (a hook may
    /// add one) merges its values; no values adds nothing.
    ///
    /// The entry keeps the vector's allocation, spare room included, when the names are
    /// distinct and none is empty or reserved (nearly always): a caller that will add more
    /// attributes can make room for them up front.
    pub fn from_attributes(
        dn: impl Into<String>,
        attributes: Vec<(AttributeName, Vec<String>)>,
    ) -> Entry {
        let dn = dn.into();
        if distinct(&attributes, |(name, values)| {
            (name.as_str(), values.is_empty())
        }) {
            // Same layout: collected in place, no new vector.
            let attrs = attributes
                .into_iter()
                .map(|(name, values)| Attribute { name, values })
                .collect();
            return Entry { dn, attrs };
        }
        let mut entry = Entry {
            dn,
            attrs: Vec::with_capacity(attributes.capacity()),
        };
        for (name, values) in attributes {
            entry.merge_in(name, values);
        }
        entry
    }

    /// [`from_attributes`](Self::from_attributes) of attributes already built: what a store
    /// decodes its records into.
    pub(crate) fn from_attribute_list(dn: String, attributes: Vec<Attribute>) -> Entry {
        let mut entry = Entry {
            dn,
            attrs: attributes,
        };
        entry.settle();
        entry
    }

    /// The entry's attributes to be overwritten in place, for a decoder that reuses an entry;
    /// [`settle`](Self::settle) must follow.
    pub(crate) fn attribute_slots(&mut self) -> &mut Vec<Attribute> {
        &mut self.attrs
    }

    /// Makes the entry whole again after [`attribute_slots`](Self::attribute_slots): names
    /// given twice merge, attributes without values go (what a damaged record may hold; a
    /// good one needs nothing).
    pub(crate) fn settle(&mut self) {
        if !distinct(&self.attrs, |a| (a.name.as_str(), a.values.is_empty())) {
            let attrs = std::mem::take(&mut self.attrs);
            for a in attrs {
                self.merge_in(a.name, a.values);
            }
        }
    }

    /// Adds an attribute as [`from_attributes`](Self::from_attributes) does: a name already
    /// there merges its values.
    fn merge_in(&mut self, name: AttributeName, values: Vec<String>) {
        if self.position(&name).is_some() {
            self.add_values(&name, &values);
        } else {
            self.set_owned(name, values);
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        // Names are nearly always spelled as they were written: try that first (a memcmp),
        // then ignore case.
        self.attrs.iter().position(|a| a.name == name).or_else(|| {
            self.attrs
                .iter()
                .position(|a| a.name.eq_ignore_ascii_case(name))
        })
    }

    /// The values of `name` (empty when the entry has none).
    pub fn get(&self, name: &str) -> &[String] {
        self.position(name)
            .map(|i| self.attrs[i].values.as_slice())
            .unwrap_or(&[])
    }

    /// The first value of `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.get(name).first().map(String::as_str)
    }

    /// Replaces the values of `name`; no values removes the attribute.
    ///
    /// `dn` and `changetype` are not attributes (LDIF reserves them); setting them is ignored,
    /// so an entry always writes back as the same LDIF record.
    pub fn set(&mut self, name: &str, values: Vec<String>) {
        if is_reserved(name) {
            return;
        }
        match (self.position(name), values.is_empty()) {
            (Some(i), true) => {
                self.attrs.remove(i);
            }
            (Some(i), false) => self.attrs[i].values = values,
            (None, true) => {}
            (None, false) => self.attrs.push(Attribute {
                name: name.into(),
                values,
            }),
        }
    }

    /// [`Entry::set`] for a name not yet present, taking the name without a copy.
    fn set_owned(&mut self, name: AttributeName, values: Vec<String>) {
        if values.is_empty() || is_reserved(&name) {
            return;
        }
        self.attrs.push(Attribute { name, values });
    }

    /// Adds `values` to `name` as [`Entry::add_values`] does, moving them in: a name the
    /// entry does not have yet takes them whole, placed at `index` (at the end when `index`
    /// is past it).
    pub fn add_owned_at(&mut self, index: usize, name: AttributeName, values: Vec<String>) {
        if self.position(&name).is_some() {
            self.add_values(&name, &values);
        } else if !values.is_empty() && !is_reserved(&name) {
            let index = index.min(self.attrs.len());
            self.attrs.insert(index, Attribute { name, values });
        }
    }

    /// The attributes as name and values, in order, moved out (no copy).
    pub fn into_attributes(self) -> Vec<(AttributeName, Vec<String>)> {
        self.attrs.into_iter().map(|a| (a.name, a.values)).collect()
    }

    /// Adds values to `name`, skipping values it already has (compared case-insensitively).
    pub fn add_values(&mut self, name: &str, values: &[String]) {
        let mut current = self.get(name).to_vec();
        for v in values {
            if !current.iter().any(|c| eq_ignore_case(c, v)) {
                current.push(v.clone());
            }
        }
        self.set(name, current);
    }

    /// Keeps only the attributes whose name `keep` accepts, in place.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.attrs.retain(|a| keep(&a.name));
    }

    /// Gives back spare room (in the DN and the attribute list): for an entry kept long.
    pub fn shrink_to_fit(&mut self) {
        self.dn.shrink_to_fit();
        self.attrs.shrink_to_fit();
    }

    /// Removes `name` entirely.
    pub fn remove(&mut self, name: &str) {
        self.set(name, Vec::new());
    }

    /// All attributes, in the order they were added.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attrs
    }
}

/// True when the attributes `items` (each seen through `name_and_empty`) have distinct,
/// allowed names and some values each: an entry can keep them as they are.
fn distinct<T>(items: &[T], name_and_empty: impl Fn(&T) -> (&str, bool)) -> bool {
    // Names seen so far, by a one-bit sketch of their length and first byte: a name whose
    // bit is clear is new without comparing it to every name before it (an entry is built
    // this way for every object a run creates or reads).
    let sketch = |name: &str| {
        let first = name.bytes().next().unwrap_or(0).to_ascii_lowercase();
        1u64 << ((name.len() * 7 + usize::from(first)) % 64)
    };
    let mut seen = 0u64;
    for (i, item) in items.iter().enumerate() {
        let (name, empty) = name_and_empty(item);
        let bit = sketch(name);
        if empty
            || is_reserved(name)
            || (seen & bit != 0
                && items[..i]
                    .iter()
                    .any(|other| name_and_empty(other).0.eq_ignore_ascii_case(name)))
        {
            return false;
        }
        seen |= bit;
    }
    true
}

/// `dn` and `changetype` name parts of an LDIF record, never attributes.
fn is_reserved(name: &str) -> bool {
    name.eq_ignore_ascii_case("dn") || name.eq_ignore_ascii_case("changetype")
}

/// A value as sets of values compare it (a group's members): a DN by its normal form, so
/// `CN=Ann,DC=lab` and `cn=ann, dc=lab` are one member, as a directory compares DN values;
/// anything else as written.
///
/// ```
/// use datasync::destination::value_key;
/// assert_eq!(value_key("CN=Ann Lee, OU=People,DC=lab"), value_key("cn=ann lee,ou=people,dc=lab"));
/// assert_ne!(value_key("Ann"), value_key("ann"));
/// ```
pub fn value_key(value: &str) -> String {
    match value.contains('=').then(|| crate::dn::normalize(value)) {
        Some(Ok(normal)) => normal,
        _ => value.to_string(),
    }
}

/// Case-insensitive comparison as directory matching rules do for most string attributes.
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// Whether `name` holds bytes rather than text: photos (`jpegPhoto`, `thumbnailPhoto`),
/// certificates, and any attribute asked for with the `;binary` option. Every value in a run
/// is text, so a binary attribute's values are carried as their bytes in standard base64:
/// a database's binary column reads as base64, the LDIF writer puts it out as `name:: …`,
/// and an LDAP server is sent (and read back as) the raw bytes.
///
/// ```
/// assert!(datasync::destination::is_binary_attribute("thumbnailPhoto"));
/// assert!(datasync::destination::is_binary_attribute("userCertificate;binary"));
/// assert!(!datasync::destination::is_binary_attribute("description"));
/// ```
pub fn is_binary_attribute(name: &str) -> bool {
    const BINARY: [&str; 13] = [
        "jpegPhoto",
        "thumbnailPhoto",
        "thumbnailLogo",
        "photo",
        "audio",
        "userCertificate",
        "cACertificate",
        "userSMIMECertificate",
        "userPKCS12",
        "mS-DS-ConsistencyGuid",
        "msExchMailboxGuid",
        "msExchMasterAccountSid",
        "sIDHistory",
    ];
    let (base, options) = name.split_once(';').unwrap_or((name, ""));
    options.split(';').any(|o| o.eq_ignore_ascii_case("binary"))
        || BINARY.iter().any(|b| b.eq_ignore_ascii_case(base))
}

/// The bytes a binary attribute's value stands for (see [`is_binary_attribute`]), or why the
/// value is not standard base64.
pub fn binary_bytes(name: &str, value: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| format!("{name} holds bytes, given as base64; this value is not base64 ({e})"))
}

/// Checks that `name` is an LDAP attribute description (RFC 4512 section 2.5): a name (a
/// letter, then letters, digits and hyphens) or a numeric OID, with `;option`s. Anything else
/// would be written into LDIF or an LDAP request as something other than one attribute.
pub fn check_attribute_description(name: &str) -> Result<(), String> {
    // The common case, checked on every attribute of every new entry: a plain name, one
    // table look-up a byte.
    const NAME_BYTE: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = c.is_ascii_alphanumeric() || c == b'-';
            b += 1;
        }
        table
    };
    let bytes = name.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes.iter().all(|b| NAME_BYTE[usize::from(*b)])
    {
        return Ok(());
    }
    let mut parts = name.split(';');
    let base = parts.next().unwrap_or("");
    let is_descr = base.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && base.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let is_oid = !base.is_empty()
        && base.split('.').all(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'))
        });
    let options_ok =
        parts.all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if (is_descr || is_oid) && options_ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an LDAP attribute name (a letter, then letters, digits or '-'; \
             or a numeric OID; options after ';')",
            name
        ))
    }
}

/// The attribute names that hold a password: the job format's own `password` field and the
/// directories' password attributes. Whichever a field map or a hook uses, the value is a
/// password: never kept as text.
pub fn is_password_attribute(name: &str) -> bool {
    ["password", "userPassword", "unicodePwd"]
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn attributes_given_twice_merge_and_the_rest_keep_their_order() {
        let e = Entry::from_attributes(
            "CN=Ann,DC=lab",
            vec![
                ("mail".into(), values(&["a@lab"])),
                ("sn".into(), values(&["Lee"])),
                ("cn".into(), values(&["Ann"])),
                ("MAIL".into(), values(&["A@LAB", "ann@lab"])),
                ("description".into(), values(&[])),
                ("dn".into(), values(&["CN=Other"])),
                ("objectClass".into(), values(&["user"])),
                ("Mail".into(), values(&["x@lab"])),
            ],
        );
        let names: Vec<&str> = e.attributes().iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["mail", "sn", "cn", "objectClass"]);
        assert_eq!(e.get("mail"), ["a@lab", "ann@lab", "x@lab"]);
        assert_eq!(e.dn, "CN=Ann,DC=lab");
    }

    #[test]
    fn many_distinct_names_are_all_kept() {
        // More names than the sketch has bits: collisions only cost a comparison.
        let attributes: Vec<(AttributeName, Vec<String>)> = (0..200)
            .map(|i| (format!("attr{i}").into(), values(&["v"])))
            .collect();
        let e = Entry::from_attributes("CN=x", attributes);
        assert_eq!(e.attributes().len(), 200);
        assert_eq!(e.first("ATTR199"), Some("v"));
    }
}
