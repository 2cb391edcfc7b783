//! A new object between preparing its row and writing it.
//!
//! A run prepares every row before it writes any, so on a first run into an empty directory
//! it holds every new object at once. Built, an object is an [`Entry`]: two allocations per
//! value, about 1.5 KB for a typical user. Once its row is prepared it is packed into one
//! buffer (see `destination::record`), a third of that, and unpacked for its write. The
//! rare changes after packing (a `Resolve` field settled once every row is read, or taken
//! back) unpack and repack it.

use crate::destination::Entry;
use crate::destination::record;

/// A new object: built while its row is prepared, packed while it waits.
pub(super) enum NewObject {
    Built(Entry),
    Packed { dn: Box<str>, attributes: Box<[u8]> },
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
    pub fn values(&self, name: &str) -> Vec<&str> {
        match self {
            NewObject::Built(entry) => entry.get(name).iter().map(String::as_str).collect(),
            NewObject::Packed { attributes, .. } => record::values_of(attributes, name),
        }
    }

    /// The first value of `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        match self {
            NewObject::Built(entry) => entry.first(name),
            NewObject::Packed { attributes, .. } => {
                record::values_of(attributes, name).first().copied()
            }
        }
    }

    /// Packs the object for the wait until its write.
    pub fn pack(&mut self) {
        if let NewObject::Built(entry) = self {
            let mut buffer = Vec::with_capacity(256);
            record::encode(entry, &mut buffer);
            *self = NewObject::Packed {
                dn: std::mem::take(&mut entry.dn).into_boxed_str(),
                attributes: buffer.into_boxed_slice(),
            };
        }
    }

    /// Changes the object, packed or not (a packed one is unpacked and packed again).
    pub fn modify(&mut self, change: impl FnOnce(&mut Entry)) {
        match self {
            NewObject::Built(entry) => change(entry),
            NewObject::Packed { dn, attributes } => {
                // A buffer that does not read back stays as it is: its row fails at the write
                // (see `into_entry`).
                if let Ok(mut entry) = record::decode(dn.to_string(), attributes) {
                    change(&mut entry);
                    *self = NewObject::Built(entry);
                    self.pack();
                }
            }
        }
    }

    /// The object as an entry, for its write. `Err` only if the packed buffer does not
    /// read back, which `pack` never writes: the row then fails, never writes half an object.
    pub fn into_entry(self) -> Result<Entry, String> {
        match self {
            NewObject::Built(entry) => Ok(entry),
            NewObject::Packed { dn, attributes } => record::decode(dn.into_string(), &attributes),
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
        let mut packed = NewObject::Built(e.clone());
        packed.pack();
        assert!(matches!(packed, NewObject::Packed { .. }));
        assert_eq!(packed.dn(), "CN=Ann,DC=lab");
        assert_eq!(packed.values("OBJECTCLASS"), ["top", "user"]);
        assert_eq!(packed.first("manager"), Some("CN=Bob,DC=lab"));
        assert_eq!(packed.first("mail"), None);
        packed.modify(|e| e.remove("manager"));
        assert!(matches!(packed, NewObject::Packed { .. }));
        e.remove("manager");
        assert_eq!(packed.into_entry().unwrap(), e);
    }
}
