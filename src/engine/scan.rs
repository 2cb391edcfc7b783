//! The destination's side of matching: one streamed read of the objects in scope per object
//! type, of which the run keeps only what it reads again.
//!
//! Of each object the [`KeyIndex`] keeps its DN, its key, the few attributes `Resolve` and
//! deprovisioning read, and a fingerprint of the attributes an update compares (see
//! [`Compared`]). A row whose desired values have the object's fingerprint is unchanged
//! without another read; a row whose values differ reads the object's whole entry
//! ([`Destination::read_entry`]) and compares value by value, so a fingerprint never decides
//! that something changed, only that nothing did.

use std::hash::{BuildHasher, Hasher};

use super::resolve::ResolvePlan;
use crate::destination::{Destination, DestinationError, Entry, Scope};
use crate::matching::{KeyIndex, ResolveIndex};
use crate::plan::ObjectPlan;
use crate::query::Filter;
use crate::transform::Transform;

/// The fields an update compares value by value: every field but create-only ones,
/// passwords, `Resolve` fields (settled later, against the kept attribute) and the naming
/// attribute (compared on the DN).
#[derive(Debug)]
pub(super) struct Compared {
    /// Positions in the field map.
    fields: Vec<usize>,
}

/// Two fixed seeds: 128 bits, so that two different sets of values sharing a fingerprint is
/// not a chance worth counting, over a million objects and every run.
const SEEDS: [foldhash::quality::FixedState; 2] = [
    foldhash::quality::FixedState::with_seed(0x0d15_ea5e),
    foldhash::quality::FixedState::with_seed(0x5ca1_ab1e),
];

impl Compared {
    pub fn new(op: &ObjectPlan) -> Compared {
        let rdn_attr = op.rdn_field.map(|i| op.fields[i].attribute.as_str());
        let fields = op
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                !(f.create_only
                    || f.password.is_some()
                    || matches!(f.transform, Transform::Resolve { .. })
                    || Some(f.attribute.as_str()) == rdn_attr)
            })
            .map(|(i, _)| i)
            .collect();
        Compared { fields }
    }

    /// The fingerprint of the compared fields' values, `values(i)` giving field `i`'s:
    /// the same for the same values in any order.
    pub fn fingerprint<'a>(&self, values: impl Fn(usize) -> &'a [String]) -> u128 {
        let mut hashers = [SEEDS[0].build_hasher(), SEEDS[1].build_hasher()];
        let mut sorted: Vec<&str> = Vec::new();
        for &i in &self.fields {
            let values = values(i);
            let feed = |h: &mut [foldhash::quality::FoldHasher<'_>; 2], v: &str| {
                for h in h.iter_mut() {
                    h.write_usize(v.len());
                    h.write(v.as_bytes());
                }
            };
            for h in hashers.iter_mut() {
                h.write_usize(i);
                h.write_usize(values.len());
            }
            if values.len() <= 1 {
                for v in values {
                    feed(&mut hashers, v);
                }
            } else {
                sorted.clear();
                sorted.extend(values.iter().map(String::as_str));
                sorted.sort_unstable();
                for v in &sorted {
                    feed(&mut hashers, v);
                }
            }
        }
        (u128::from(hashers[0].finish()) << 64) | u128::from(hashers[1].finish())
    }

    /// The fingerprint of what `entry` has for the compared fields of `op`.
    pub fn of_entry(&self, op: &ObjectPlan, entry: &Entry) -> u128 {
        self.fingerprint(|i| entry.get(&op.fields[i].attribute))
    }
}

/// The directory's side of `Resolve`: the objects under the naming context that have a
/// looked-up attribute, indexed by value — read only when a lookup needs it. Most lookups are
/// answered by the rows of the run itself (see `resolve`); a re-run whose every `Resolve`
/// value names another row's object never reads the directory for them (at a million objects
/// that read was a fifth of the run and 160 MB). Lookups come after every row of the type is
/// read and before any of its writes; in a job of several types, a later type's lookups see
/// the objects the earlier types wrote. A directory that cannot be read then fails the rows
/// whose lookup needed it, with its reason.
pub(super) struct DirectoryLookup {
    base: String,
    attributes: Vec<String>,
    built: std::sync::OnceLock<Result<ResolveIndex, std::sync::Arc<DestinationError>>>,
}

impl DirectoryLookup {
    fn new(base: String, attributes: Vec<String>) -> DirectoryLookup {
        DirectoryLookup {
            base,
            attributes,
            built: std::sync::OnceLock::new(),
        }
    }

    /// This lookup on `destination`, as a [`Resolver`](crate::transform::Resolver).
    pub fn on<'a>(&'a self, destination: &'a dyn Destination) -> LookupOn<'a> {
        LookupOn {
            lookup: self,
            destination,
        }
    }
}

/// A [`DirectoryLookup`] with the destination it reads.
pub(super) struct LookupOn<'a> {
    lookup: &'a DirectoryLookup,
    destination: &'a dyn Destination,
}

impl crate::transform::Resolver for LookupOn<'_> {
    fn resolve(
        &self,
        attribute: &str,
        value: &str,
    ) -> Result<Option<String>, crate::transform::ResolveError> {
        if self.lookup.attributes.is_empty() {
            return Ok(None);
        }
        let built = self.lookup.built.get_or_init(|| {
            ResolveIndex::build(self.destination, &self.lookup.base, &self.lookup.attributes)
                .map_err(std::sync::Arc::new)
        });
        match built {
            Ok(index) => index.resolve(attribute, value),
            Err(e) => Err(crate::transform::ResolveError::Directory {
                source: Box::new(e.clone()),
            }),
        }
    }
}

/// What one scan leaves the run.
pub(super) struct Scanned {
    /// The objects in scope, by key.
    pub index: KeyIndex,
    /// What `Resolve` fields look values up in, once the run's rows cannot answer.
    pub resolver: DirectoryLookup,
    /// The attributes the scan asked for.
    pub attributes: Vec<String>,
}

/// One read of the destination for an object type: the objects in scope indexed by key, and
/// the index `Resolve` fields look values up in.
pub(super) fn scan(
    op: &ObjectPlan,
    destination: &dyn Destination,
    filter: &Filter,
    resolve: &ResolvePlan,
    compared: &Compared,
) -> Result<Scanned, DestinationError> {
    // The attributes the job maps, the keys, and what deletes and deprovisioning read.
    // Not `memberOf`: a user's groups are read from the groups (see `membership`).
    let mut attributes: Vec<String> = op
        .fields
        .iter()
        .filter(|f| f.password.is_none() && !f.is_member_of())
        .map(|f| f.attribute.to_string())
        .collect();
    attributes.extend(filter.attributes());
    attributes.extend(["objectClass".to_string(), "userAccountControl".to_string()]);
    // What the run reads again of every object: what `Resolve` looks up and writes, and the
    // account control deprovisioning reads (an object already disabled is left alone).
    let mut keep: Vec<String> = resolve.attributes().to_vec();
    keep.extend(
        op.fields
            .iter()
            .filter(|f| matches!(f.transform, Transform::Resolve { .. }) && !f.is_member_of())
            .map(|f| f.attribute.to_string()),
    );
    if op.deprovision {
        keep.push("userAccountControl".into());
    }
    let scope = if op.subtree {
        Scope::Subtree
    } else {
        Scope::OneLevel
    };
    let key_attributes: Vec<&str> = op
        .key_fields
        .iter()
        .map(|&i| op.fields[i].attribute.as_str())
        .collect();
    let mut index = KeyIndex::default();
    let scanned = destination.search_each(&op.scope_base, scope, filter, &attributes, &mut |e| {
        let fingerprint = compared.of_entry(op, e);
        index.push(e, &key_attributes, Some(&keep), fingerprint);
    });
    let index = match scanned {
        Ok(()) => index,
        // The container does not exist yet: nothing is in scope (it is created with the
        // first object, per the container strategy).
        Err(DestinationError::NoSuchObject { .. }) => KeyIndex::default(),
        Err(e) => return Err(e),
    };
    let resolver = DirectoryLookup::new(
        super::naming_context(&op.scope_base),
        resolve.attributes().to_vec(),
    );
    Ok(Scanned {
        index,
        resolver,
        attributes,
    })
}
