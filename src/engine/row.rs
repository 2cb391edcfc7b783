//! One source row between its steps: what it will do ([`Planned`]), what it holds while it
//! waits ([`Prepared`]), and what is kept of it once written ([`RowRecord`]). Step 1 is
//! `prepare`, step 3 is `apply`.

use foldhash::HashSet;
use smol_str::SmolStr;
use std::sync::RwLock;

use super::new_object::NewObject;
use super::resolve::Deferred;
use crate::Secret;
use crate::destination::{AttributeName, Destination};
use crate::hooks::{HookContext, Hooks, RowOutcome, ValueChanges};
use crate::plan::ObjectPlan;
use crate::report::{Report, RowFailure};
use crate::transform::{PasswordPolicy, PasswordRule};

/// What every row of a run shares.
pub(super) struct Shared<'a> {
    pub ctx: &'a HookContext,
    pub hooks: &'a dyn Hooks,
    pub destination: &'a dyn Destination,
    pub dry_run: bool,
    pub now: &'a str,
    pub today: &'a str,
    /// Containers known to exist, so each is checked (or created) once per run. Every new
    /// object looks its container up here: a read lock, so parallel rows do not queue.
    pub containers: RwLock<HashSet<String>>,
    /// Cancellation and progress.
    pub control: Option<&'a super::RunControl>,
    /// Where the job looks: each object type's scan base and scope (what `memberOf` and
    /// reference updates take as the job's groups).
    pub scopes: Vec<(String, crate::destination::Scope)>,
    /// The `memberOf` changes of the rows written, made per group once a type's rows are done.
    pub group_changes: super::membership::PendingGroupChanges,
    /// The objects earlier types renamed or deleted: a later type's sets of DNs compare
    /// through them (see `membership::Moved`).
    pub moved: super::membership::Moved,
}

/// Where a new object's password comes from. The job's own static password and policies are
/// referred to, not copied into every row.
pub(super) enum NewPassword {
    /// A static password computed for this row (from a column, say).
    Static(Secret),
    /// The job's `Static` password, the same for every row (`TypeRun::static_password`).
    JobStatic,
    /// Generated on create under the policy of the field at this position.
    Generate(usize),
}

impl NewPassword {
    /// The policy of a generated password.
    pub(super) fn policy<'p>(&self, op: &'p ObjectPlan) -> Option<&'p PasswordPolicy> {
        match self {
            NewPassword::Generate(field) => match op.fields.get(*field)?.password.as_ref()? {
                PasswordRule::Generate(policy) => Some(policy),
                PasswordRule::Static => None,
            },
            _ => None,
        }
    }
}

/// What a row will do.
pub(super) enum Planned {
    Create {
        /// The new object (its DN is the object's), packed once its row is prepared.
        entry: NewObject,
        /// The row's own container; `None` for the job's fixed one (not copied per row).
        container: Option<String>,
        password: Option<NewPassword>,
        /// A password generated for it (not in a dry run).
        generated: Option<Secret>,
    },
    Update {
        dn: String,
        changes: Vec<(AttributeName, Vec<String>)>,
        /// Sets of DNs changed value by value (a group's members, a user's groups).
        value_changes: ValueEdits,
        password: Option<Secret>,
        rename_to: Option<String>,
    },
    /// Nothing to write to the matched object (its DN is in the key index: not copied for
    /// every unchanged row).
    Unchanged,
    Skipped {
        dn: Option<String>,
    },
    Failed {
        field: Option<String>,
        message: String,
    },
}

/// An update's sets of DNs changed value by value. Boxed: nearly every update has none, and
/// every row's plan holds the room (8 bytes instead of a vector's 24, which made an update the
/// largest plan and every one of a million rows 16 bytes larger).
#[derive(Default)]
#[allow(clippy::box_collection)] // the point: 8 bytes in the plan, not a Vec's 24
pub(super) struct ValueEdits(Option<Box<Vec<ValueChanges>>>);

impl ValueEdits {
    /// Edits holding `changes` only.
    pub fn one(changes: ValueChanges) -> ValueEdits {
        ValueEdits(Some(Box::new(vec![changes])))
    }

    pub fn push(&mut self, changes: ValueChanges) {
        self.0.get_or_insert_default().push(changes);
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|v| v.is_empty())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ValueChanges> {
        self.0.as_deref().map_or(&[][..], Vec::as_slice).iter()
    }

    pub fn into_vec(self) -> Vec<ValueChanges> {
        self.0.map(|v| *v).unwrap_or_default()
    }
}

impl Planned {
    /// The DN this row would create or rename to.
    pub fn new_dn(&self) -> Option<&str> {
        match self {
            Planned::Create { entry, .. } => Some(entry.dn()),
            Planned::Update {
                rename_to: Some(to),
                ..
            } => Some(to),
            _ => None,
        }
    }

    /// An update left with nothing to write (its changes taken back) becomes `Unchanged`.
    pub fn unchanged_if_empty(&mut self) {
        if let Planned::Update {
            changes,
            value_changes,
            password,
            rename_to,
            ..
        } = self
            && changes.is_empty()
            && value_changes.is_empty()
            && password.is_none()
            && rename_to.is_none()
        {
            *self = Planned::Unchanged;
        }
    }
}

/// A row after step 1.
pub(super) struct Prepared {
    pub row: u64,
    /// The key as the row has it (for messages).
    pub key: Option<String>,
    /// The key normalised (for matching). Held inline when short, as ids are: it is made
    /// for every row and read only to tell true duplicates from hash collisions, and by
    /// deletes.
    pub norm_key: Option<SmolStr>,
    /// A `row_starting` hook cancelled the row.
    pub cancelled: bool,
    pub planned: Planned,
    /// `Resolve` fields, answered early or waiting for every row (see [`super::resolve`]).
    pub deferred: Vec<Deferred>,
    /// The matched destination entry, by position in the key index.
    pub entry: Option<usize>,
    /// Hashes for finding conflicts between rows, made here where rows are prepared in
    /// parallel while the source is still read.
    pub hashes: ConflictHashes,
}

/// Hashes of a row's normalised key and of the normal form of the DN it creates or renames
/// to (see `new_dn_key`).
/// Held as non-zero numbers so that each takes 8 bytes, not 16: a row holds them until every
/// row is read.
#[derive(Default)]
pub(super) struct ConflictHashes {
    pub key: Option<std::num::NonZeroU64>,
    pub new_dn: Option<std::num::NonZeroU64>,
}

impl ConflictHashes {
    /// A hash as held: 0 becomes 1 (two values that hash to 0 and 1 are then compared as a
    /// collision is, by their text).
    pub fn of(hash: u64) -> std::num::NonZeroU64 {
        std::num::NonZeroU64::new(hash).unwrap_or(std::num::NonZeroU64::MIN)
    }
}

impl Prepared {
    /// A row that does nothing, holding nothing (no allocation).
    pub(super) fn empty(row: u64) -> Prepared {
        Prepared {
            row,
            key: None,
            norm_key: None,
            cancelled: false,
            planned: Planned::Skipped { dn: None },
            deferred: Vec::new(),
            entry: None,
            hashes: ConflictHashes::default(),
        }
    }

    /// Takes the row out of its list, leaving an empty one behind.
    pub fn take(&mut self) -> Prepared {
        std::mem::replace(self, Prepared::empty(self.row))
    }

    /// Fails the row, unless it has failed already (the first reason is the one reported).
    pub fn fail(&mut self, field: Option<String>, message: String) {
        if !matches!(self.planned, Planned::Failed { .. }) {
            self.planned = Planned::Failed { field, message };
        }
    }
}

/// What happened to a row after step 3.
pub(super) struct RowResult {
    pub row: u64,
    pub key: Option<String>,
    pub norm_key: Option<SmolStr>,
    pub outcome: RowOutcome,
    /// Set when the row failed (possibly after its write was made).
    pub failure: Option<(Option<String>, String)>,
    /// Writes that happened: added DN, modified DN, rename (old, new).
    pub added: Option<String>,
    pub modified: Option<String>,
    pub renamed: Option<(String, String)>,
}

/// What a run keeps of a row once it is written, until the report is made: 64 bytes for a
/// row that only counts (a million unchanged rows kept 208 each as a [`RowResult`]).
pub(super) struct RowRecord {
    pub row: u64,
    pub outcome: RowOutcome,
    /// The normalised key, for deletes (`None` when the type deletes nothing).
    pub norm_key: Option<SmolStr>,
    /// The DN of the object the row added.
    pub added: Option<Box<str>>,
    /// The rest, for the few rows that have any.
    pub rest: Option<Box<RecordRest>>,
}

/// The rarer parts of a [`RowRecord`].
#[derive(Default)]
pub(super) struct RecordRest {
    pub key: Option<String>,
    pub failure: Option<(Option<String>, String)>,
    pub modified: Option<String>,
    pub renamed: Option<(String, String)>,
}

impl From<RowResult> for RowRecord {
    fn from(r: RowResult) -> RowRecord {
        // The report names the keys of failed rows only.
        let rest =
            (r.failure.is_some() || r.modified.is_some() || r.renamed.is_some()).then(|| {
                Box::new(RecordRest {
                    key: r.key.filter(|_| r.failure.is_some()),
                    failure: r.failure,
                    modified: r.modified,
                    renamed: r.renamed,
                })
            });
        RowRecord {
            row: r.row,
            outcome: r.outcome,
            norm_key: r.norm_key,
            added: r.added.map(String::into_boxed_str),
            rest,
        }
    }
}

pub(super) fn failed(field: Option<String>, message: String) -> Planned {
    Planned::Failed { field, message }
}

/// Adds a type's row results to the report, in source order.
pub(super) fn record(op: &ObjectPlan, results: Vec<Vec<RowRecord>>, report: &mut Report) {
    for r in results.into_iter().flatten() {
        if let Some(dn) = r.added {
            report.added.push(dn.into_string());
        }
        let rest = r.rest.map(|rest| *rest).unwrap_or_default();
        if let Some(dn) = rest.modified {
            report.modified.push(dn);
        }
        if let Some((old, new)) = rest.renamed {
            report
                .updated_id_map
                .insert(old, serde_json::Value::String(new));
        }
        match rest.failure {
            Some((field, message)) => {
                report.counts.failed += 1;
                report.failed.push(RowFailure {
                    object_type: op.object_type.code(),
                    row: r.row,
                    key: rest.key,
                    field,
                    message,
                });
            }
            None => match r.outcome {
                RowOutcome::Added => report.counts.added += 1,
                RowOutcome::Updated => report.counts.updated += 1,
                RowOutcome::Unchanged => report.counts.unchanged += 1,
                RowOutcome::Skipped => report.counts.skipped += 1,
            },
        }
    }
}
