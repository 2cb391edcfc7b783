//! A new object between preparing its row and writing it.
//!
//! A run prepares every row before it writes any, so on a first run into an empty directory
//! it holds every new object at once. Built, an object is an [`Entry`]: two allocations per
//! value, about 1.5 KB for a typical user. Once its row is prepared it is packed into one
//! buffer (see `destination::record`), a third of that, and unpacked for its write. The
//! rare changes after packing (a `Resolve` field settled once every row is read, or taken
//! back) unpack and repack it. Attribute names are packed as their place in the run's table
//! of the names its objects use (`TypeRun::names`): a byte, not a dozen.

use crate::destination::{AttributeName, Entry};
use crate::entry::record::{self, Wanted};

/// The run's table of attribute names (see `record::encode_with`).
type Names<'a> = &'a [AttributeName];

/// A new object: built while its row is prepared, packed while it waits.
pub(super) enum NewObject {
    /// Boxed: the enum is then as small as the packed form, which every waiting row holds.
    Built(Box<Entry>),
    Packed {
        dn: Box<str>,
        attributes: Box<[u8]>,
    },
}

impl NewObject {
    /// The object's DN.
    pub fn dn(&self) -> &str {
        match self {
            NewObject::Built(entry) => &entry.dn,
            NewObject::Packed { dn, .. } => dn,
        }
    }

    /// The values of `name`.
    pub fn values<'a>(&'a self, name: &str, names: Names<'a>) -> Vec<&'a str> {
        match self {
            NewObject::Built(entry) => entry.get(name).iter().map(String::as_str).collect(),
            NewObject::Packed { attributes, .. } => record::values_of_with(attributes, name, names),
        }
    }

    /// The first value of `name`.
    pub fn first<'a>(&'a self, name: &str, names: Names<'a>) -> Option<&'a str> {
        match self {
            NewObject::Built(entry) => entry.first(name),
            NewObject::Packed { attributes, .. } => record::first_of_with(attributes, name, names),
        }
    }

    /// Packs the object for the wait until its write.
    pub fn pack(&mut self, names: Names<'_>) {
        if let NewObject::Built(entry) = self {
            let mut buffer = Vec::with_capacity(256);
            record::encode_with(entry, &mut buffer, names);
            *self = NewObject::Packed {
                dn: std::mem::take(&mut entry.dn).into_boxed_str(),
                attributes: buffer.into_boxed_slice(),
            };
        }
    }

    /// Changes the object, packed or not (a packed one is unpacked and packed again).
    pub fn modify(&mut self, names: Names<'_>, change: impl FnOnce(&mut Entry)) {
        match self {
            NewObject::Built(entry) => change(entry),
            NewObject::Packed { dn, attributes } => {
                // A buffer that does not read back stays as it is: its row fails at the write
                // (see `into_entry`).
                if let Ok(mut entry) =
                    record::decode_with(dn.to_string(), attributes, &Wanted::All, names)
                {
                    change(&mut entry);
                    *self = NewObject::Built(Box::new(entry));
                    self.pack(names);
                }
            }
        }
    }

    /// The object as an entry, for its write. `Err` only if the packed buffer does not
    /// read back, which `pack` never writes: the row then fails, never writes half an object.
    pub fn into_entry(self, names: Names<'_>) -> Result<Entry, String> {
        match self {
            NewObject::Built(entry) => Ok(*entry),
            NewObject::Packed { dn, attributes } => {
                record::decode_with(dn.into_string(), &attributes, &Wanted::All, names)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_object_reads_and_changes_as_the_built_one() {
        let mut e = Entry::new("CN=Ann,DC=lab");
        e.set("objectClass", vec!["top".into(), "user".into()]);
        e.set("manager", vec!["CN=Bob,DC=lab".into()]);
        // One name in the table, one not: both read back.
        let names: Vec<AttributeName> = vec!["manager".into()];
        let mut packed = NewObject::Built(Box::new(e.clone()));
        packed.pack(&names);
        assert!(matches!(packed, NewObject::Packed { .. }));
        assert_eq!(packed.dn(), "CN=Ann,DC=lab");
        assert_eq!(packed.values("OBJECTCLASS", &names), ["top", "user"]);
        assert_eq!(packed.first("manager", &names), Some("CN=Bob,DC=lab"));
        assert_eq!(packed.first("mail", &names), None);
        if let NewObject::Packed { attributes, .. } = &packed {
            // "manager" is one byte, "objectClass" is spelt out.
            assert_eq!(
                attributes.len(),
                1 + (1 + 1 + 11 + 1 + 1 + 3 + 1 + 4) + (1 + 1 + 1 + 13)
            );
        }
        packed.modify(&names, |e| e.remove("manager"));
        assert!(matches!(packed, NewObject::Packed { .. }));
        e.remove("manager");
        assert_eq!(packed.into_entry(&names).unwrap(), e);
    }
}
