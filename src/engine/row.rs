//! One source row: computing what it needs ([`prepare`], no writes) and making it so ([`apply_all`]).

use foldhash::HashSet;
use smol_str::SmolStr;
use std::ops::ControlFlow;
use std::sync::RwLock;

use super::membership::{VALUES_PER_REQUEST, value_requests};
use super::new_object::NewObject;
use super::resolve::{self, Deferred, Earlier};
use super::{TypeRun, guard};
use crate::destination::{AttributeName, Destination, DestinationError, Entry, Modification};
use crate::dn::{self, Dn};
use crate::hooks::{
    HookContext, Hooks, PasswordSet, RowDone, RowOutcome, RowStart, RowWrite, ValueChanges,
};
use crate::matching::{push_normalized_key, same_values};
use crate::plan::{ContainerRule, Naming, ObjectPlan};
use crate::report::{Report, RowFailure};
use crate::source::SourceRow;
use crate::transform::{PasswordPolicy, PasswordRule, RunValues, ScriptInput};
use crate::{Secret, transform};

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
    fn policy<'p>(&self, op: &'p ObjectPlan) -> Option<&'p PasswordPolicy> {
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
    fn empty(row: u64) -> Prepared {
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

fn failed(field: Option<String>, message: String) -> Planned {
    Planned::Failed { field, message }
}

/// Step 1: hooks, transforms, key, match and diff. Reads the destination at most for a
/// password check; writes nothing.
///
/// The row is borrowed, not consumed: the values it moves into the new object are taken out
/// of it, and what is left is freed by the reading thread that made it (see `ChannelSink`).
///
/// `Resolve` fields are answered from the rows prepared `earlier` where they can be.
pub(super) fn prepare(
    shared: &Shared<'_>,
    tr: &TypeRun<'_>,
    earlier: &Earlier<'_>,
    row: &mut SourceRow,
) -> Prepared {
    let op = tr.plan;
    let mut out = Prepared::empty(row.number);
    // A stopped run prepares no more rows: on a large source, preparing is most of the time
    // a cancel or a time-out should save. The row stays skipped, and apply skips it too.
    if shared
        .control
        .and_then(super::RunControl::stop_reason)
        .is_some()
    {
        return out;
    }
    let SourceRow {
        number: _,
        values,
        cell_errors,
    } = row;
    match guard(|| {
        shared.hooks.row_starting(
            shared.ctx,
            &mut RowStart {
                object_type: op.object_type,
                row: out.row,
                columns: &tr.columns,
                values,
            },
        )
    }) {
        Ok(ControlFlow::Continue(())) => {}
        // A cancelled row still computes its key below, so its object is not taken for an
        // orphan and deleted.
        Ok(ControlFlow::Break(())) => out.cancelled = true,
        Err(m) => {
            out.planned = failed(None, format!("row_starting: {m}"));
            return out;
        }
    }

    let run = RunValues {
        now: shared.now,
        today: shared.today,
        resolver: &tr.resolver.on(shared.destination),
    };
    // One entry per field map entry, in order (the password's stays empty).
    let mut desired: Vec<Vec<String>> = Vec::with_capacity(op.fields.len());
    let mut password: Option<(NewPassword, bool)> = None;
    let mut first_failure: Option<(String, String)> = None;
    for (fi, (f, bound)) in op.fields.iter().zip(&tr.bound).enumerate() {
        // Every field pushes exactly one entry, so `desired[i]` is field `i`'s values.
        let cell_error = bound_cell_error(bound, cell_errors, &tr.columns);
        if let transform::Transform::Resolve { field, .. } = bound {
            desired.push(Vec::new());
            if out.deferred.capacity() == 0 {
                out.deferred.reserve_exact(tr.resolve.field_count());
            }
            match cell_error {
                Some(e) => {
                    first_failure.get_or_insert((f.location(), e));
                }
                // The object it names may be created by another row of this run: resolve
                // once every row's DN is known.
                // The value is copied, inline when short (an id): the row's string goes back
                // to the reading thread, which made it, to be freed there.
                None => out.deferred.push(Deferred {
                    field: fi,
                    value: values
                        .get(*field)
                        .and_then(Option::as_deref)
                        .map(SmolStr::new),
                    answer: None,
                }),
            }
            continue;
        }
        // A `Static` password is the same for every row: computed once for the run.
        if tr.static_password.as_ref().is_some_and(|(i, _)| *i == fi) {
            password = Some((NewPassword::JobStatic, f.create_only));
            desired.push(Vec::new());
            continue;
        }
        let result = match (cell_error, bound) {
            (Some(e), _) => Err(e),
            (None, transform::Transform::Copy(column)) if tr.movable[fi] => {
                Ok(values.get_mut(*column).and_then(Option::take))
            }
            (None, _) => bound
                .apply(&tr.columns, values, &f.attribute, &run)
                .map_err(|e| e.to_string()),
        };
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                // Keep going for the keys: a row with a known key protects its object from
                // deletion even when another field fails.
                first_failure.get_or_insert((f.location(), e));
                desired.push(Vec::new());
                continue;
            }
        };
        match &f.password {
            Some(PasswordRule::Static) => {
                if let Some(v) = value {
                    password = Some((NewPassword::Static(Secret::new(v)), f.create_only));
                }
                desired.push(Vec::new());
            }
            Some(PasswordRule::Generate(_)) => {
                // Generated passwords are only ever set on create: regenerating one on every
                // run would reset every user's password.
                password = Some((NewPassword::Generate(fi), true));
                desired.push(Vec::new());
            }
            None => {
                let mut values = match (value, &f.delimiter) {
                    (None, _) => Vec::new(),
                    (Some(v), Some(d)) => split_values(&v, d),
                    (Some(v), None) => vec![v],
                };
                // A group's kind may be named (`universal distribution`): AD stores a number.
                // An empty cell is the default kind, global security: AD cannot remove it.
                if f.attribute.eq_ignore_ascii_case("groupType") {
                    if values.is_empty() {
                        values.push(crate::destination::GLOBAL_SECURITY_GROUP.to_string());
                    }
                    for v in values.iter_mut() {
                        match crate::destination::group_type(v) {
                            Ok(n) => *v = n.to_string(),
                            Err(e) => {
                                first_failure.get_or_insert((f.location(), e));
                            }
                        }
                    }
                }
                desired.push(values);
            }
        }
    }
    let value_of = |attr: &str| -> Option<&Vec<String>> {
        op.fields
            .iter()
            .position(|f| f.attribute.eq_ignore_ascii_case(attr))
            .and_then(|i| desired.get(i))
    };

    // The key.
    let mut parts: Vec<&str> = Vec::with_capacity(op.key_fields.len());
    for &k in &op.key_fields {
        let f = &op.fields[k];
        match value_of(&f.attribute).and_then(|v| v.first()) {
            Some(v) => parts.push(v),
            None => {
                if first_failure.is_none() {
                    out.planned = failed(
                        Some(f.location()),
                        format!("the key field {} is empty", f.attribute),
                    );
                } else if let Some((field, message)) = first_failure {
                    out.planned = failed(Some(field), message);
                }
                return out;
            }
        }
    }
    out.key = Some(match parts.as_slice() {
        [one] => one.to_string(),
        many => many.join(", "),
    });
    super::conflicts::with_scratch(|buffer| {
        push_normalized_key(buffer, &parts);
        out.hashes.key = Some(ConflictHashes::of(super::conflicts::hash_str(buffer)));
        out.norm_key = Some(SmolStr::new(buffer.as_str()));
    });
    drop(parts);
    if let Some((field, message)) = first_failure {
        out.planned = failed(Some(field), message);
        return out;
    }

    let matches = out
        .norm_key
        .as_deref()
        .map(|k| tr.index.find(k))
        .unwrap_or(&[]);
    out.planned = match matches {
        [] if out.cancelled || !op.create => Planned::Skipped { dn: None },
        [] => plan_create(shared, tr, out.row, values, desired, password.map(|p| p.0)),
        [one] => {
            out.entry = Some(*one);
            if out.cancelled {
                Planned::Skipped {
                    dn: Some(tr.index.dn(*one).to_string()),
                }
            } else {
                match own_container(tr, values) {
                    Ok(own) => plan_update(shared, tr, *one, &desired, password, own),
                    Err(failure) => failure,
                }
            }
        }
        many => failed(
            None,
            format!(
                "the key matches {} objects: {}",
                many.len(),
                many.iter()
                    .map(|i| tr.index.dn(*i))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    };
    resolve::answer_early(tr, earlier, &mut out);
    out.hashes.new_dn = super::conflicts::new_dn_hash(tr, &out.planned).map(ConflictHashes::of);
    // The object waits for every other row: packed, a third of its size.
    if let Planned::Create { entry, .. } = &mut out.planned {
        entry.pack(&tr.names);
    }
    out
}

/// A delimited cell as the values of a multi-valued attribute: pieces trimmed, empty ones
/// dropped, and each value once (compared without case, as directories compare most
/// attributes, which refuse a second value equal to the first): `555;;555; ;` is one `555`.
pub(super) fn split_values(cell: &str, delimiter: &str) -> Vec<String> {
    // A few values (phone numbers) are checked against each other; a long list (a group's
    // two thousand members) against a set: checked pairwise, 50 such groups were half a run.
    const PAIRWISE: usize = 16;
    let mut values: Vec<String> = Vec::new();
    let mut seen: foldhash::HashSet<String> = HashSet::default();
    for piece in cell.split(delimiter).map(str::trim) {
        if piece.is_empty() {
            continue;
        }
        let fresh = if values.len() < PAIRWISE {
            !values
                .iter()
                .any(|v| crate::text::lowercase(v) == crate::text::lowercase(piece))
        } else {
            if seen.is_empty() {
                seen.extend(
                    values
                        .iter()
                        .map(|v| crate::text::lowercase(v).into_owned()),
                );
            }
            seen.insert(crate::text::lowercase(piece).into_owned())
        };
        if fresh {
            values.push(piece.to_string());
        }
    }
    values
}

/// The spreadsheet error of a cell a bound transform reads, if any.
fn bound_cell_error(
    bound: &transform::Transform<usize>,
    cell_errors: &[(usize, String)],
    columns: &crate::source::Columns,
) -> Option<String> {
    if cell_errors.is_empty() {
        return None;
    }
    let mut found = None;
    let _ = bound.map_fields(|col| {
        if found.is_none()
            && let Some((_, e)) = cell_errors.iter().find(|(c, _)| c == col)
        {
            let name = columns.names().get(*col).cloned().unwrap_or_default();
            found = Some(format!("the cell in column {name} holds the error {e}"));
        }
        Ok::<(), ()>(())
    });
    found
}

/// The row's own container (`containerOption` 2 or 3), or `None` for the job's fixed one;
/// `Err` is the row's failure.
fn own_container(tr: &TypeRun<'_>, values: &[Option<String>]) -> Result<Option<String>, Planned> {
    match &tr.plan.container {
        ContainerRule::Fixed(_) => Ok(None),
        ContainerRule::FromField(name) => match tr
            .container_field
            .and_then(|i| values.get(i))
            .cloned()
            .flatten()
        {
            Some(dn) => Ok(Some(dn)),
            None => Err(failed(
                Some(format!("container field {name}")),
                "the container field is empty".into(),
            )),
        },
        ContainerRule::FromScript(script) => {
            let name = &script.name;
            let input = ScriptInput {
                value: None,
                destination_field: "container",
                row: transform::RowView::new(&tr.columns, values),
            };
            match script.call(&input) {
                Ok(Some(dn)) => Ok(Some(dn)),
                Ok(None) => Err(failed(
                    None,
                    format!("container script \"{name}\" gave no container"),
                )),
                Err(e) => Err(failed(
                    None,
                    format!("container script \"{name}\" failed: {e}"),
                )),
            }
        }
    }
}

fn plan_create(
    shared: &Shared<'_>,
    tr: &TypeRun<'_>,
    row: u64,
    values: &[Option<String>],
    desired: Vec<Vec<String>>,
    password: Option<NewPassword>,
) -> Planned {
    let op = tr.plan;
    let own_container = match own_container(tr, values) {
        Ok(own) => own,
        Err(failure) => return failure,
    };
    // A fixed container was checked when the job was compiled; a row's own is checked here.
    let container = tr.container(&own_container);
    if own_container.is_some()
        && let Err(e) = Dn::parse(container)
    {
        return failed(None, format!("container: {e}"));
    }
    let dn = match op.naming {
        Naming::Keys => {
            // A table's row: named by its keys (see `destination::row_dn`).
            let mut keys = Vec::with_capacity(op.key_fields.len());
            for &i in &op.key_fields {
                let Some(value) = desired[i].first() else {
                    return failed(
                        Some(op.fields[i].location()),
                        format!(
                            "{} is empty: a new row needs its key",
                            op.fields[i].attribute
                        ),
                    );
                };
                keys.push((op.fields[i].attribute.as_str(), value.as_str()));
            }
            crate::destination::row_dn(&keys)
        }
        _ => {
            let Some(rdn) = op.rdn_field.map(|i| &op.fields[i]) else {
                return failed(None, "no cn mapping to name the new object".into());
            };
            let Some(cn) = op.rdn_field.and_then(|i| desired[i].first()) else {
                return failed(
                    Some(rdn.location()),
                    "cn is empty: a new object needs a name".into(),
                );
            };
            dn::child("CN", cn, container)
        }
    };
    // Room for every field (`Resolve` fields and the stored password come later), the
    // object classes and an account's `userAccountControl` (see `new_account_control`): the
    // entry keeps this vector, so it never regrows.
    let mut attributes: Vec<(AttributeName, Vec<String>)> = Vec::with_capacity(desired.len() + 2);
    if !op
        .fields
        .iter()
        .any(|f| f.attribute.eq_ignore_ascii_case("objectClass"))
        && let Some(classes) = op.object_type.default_object_classes()
    {
        attributes.push((
            "objectClass".into(),
            classes.iter().map(|c| c.to_string()).collect(),
        ));
    }
    attributes.extend(
        op.fields
            .iter()
            .zip(desired)
            .filter(|(f, v)| f.password.is_none() && !v.is_empty())
            .map(|(f, v)| (f.attribute.clone(), v)),
    );
    let entry = Entry::from_attributes(dn, attributes);
    // A new object the destination query would not find is created again on every run.
    if !tr.filter.matches_by(&|attr: &str| entry.get(attr)) {
        return failed(
            None,
            format!(
                "the new object {} would not match the destination query {} (row {row}); it would be created again on every run",
                entry.dn, tr.filter
            ),
        );
    }
    let generated = match password.as_ref().and_then(|p| p.policy(op)) {
        Some(policy) if !shared.dry_run => Some(policy.generate(&mut rand::rng())),
        _ => None,
    };
    Planned::Create {
        entry: NewObject::Built(Box::new(entry)),
        container: own_container,
        password,
        generated,
    }
}

/// Step 1 for a row that matched the object at `position` in the key index: what changes.
/// The compared fields' values are checked against the object's fingerprint first; only an
/// object whose fingerprint differs is read whole and compared value by value (see `scan`).
fn plan_update(
    shared: &Shared<'_>,
    tr: &TypeRun<'_>,
    position: usize,
    desired: &[Vec<String>],
    password: Option<(NewPassword, bool)>,
    own_container: Option<String>,
) -> Planned {
    let op = tr.plan;
    let current_dn = tr.index.dn(position);
    let unchanged = tr.compared.fingerprint(|i| &desired[i]) == tr.index.fingerprint(position);
    let whole = if unchanged {
        None
    } else {
        match shared
            .destination
            .read_entry(current_dn, &tr.scan_attributes)
        {
            Ok(Some(found)) => Some(found),
            Ok(None) => {
                return failed(
                    None,
                    format!("{current_dn} was removed from the destination during the run"),
                );
            }
            Err(e) => return failed(None, format!("cannot read {current_dn}: {e}")),
        }
    };
    let rdn_attr = op.rdn_field.map(|i| op.fields[i].attribute.as_str());
    let mut changes = Vec::new();
    let mut rename_to = None;
    for (f, values) in op.fields.iter().zip(desired) {
        let attr = &f.attribute;
        if f.create_only
            || f.password.is_some()
            || matches!(f.transform, transform::Transform::Resolve { .. })
        {
            continue;
        }
        if Some(attr.as_str()) == rdn_attr {
            // The naming attribute changes by renaming the object, never by a modify.
            // Fast path: the DN starts with the RDN this run would write (no DN parse).
            if let Some(new) = values.first() {
                let rdn = dn::child("CN", new, "");
                let (name, value) = rdn.split_at(3); // "CN=" and the escaped value
                let same = current_dn
                    .get(..3)
                    .is_some_and(|t| t.eq_ignore_ascii_case(name))
                    && current_dn.get(3..rdn.len()) == Some(value)
                    && current_dn.as_bytes().get(rdn.len()) == Some(&b',');
                if same {
                    continue;
                }
            }
            let current = Dn::parse(current_dn).ok();
            let current_value = current
                .as_ref()
                .and_then(|d| d.rdns.first())
                .and_then(|r| r.first())
                .map(|a| a.value.as_str());
            if let (Some(new), Some(value)) = (values.first(), current_value)
                && new != value
            {
                let parent = current
                    .as_ref()
                    .and_then(Dn::parent)
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                rename_to = Some(dn::child("CN", new, &parent));
            }
            continue;
        }
        if let Some(entry) = &whole
            && !same_values(entry.get(attr), values)
        {
            changes.push((attr.clone(), values.clone()));
        }
    }
    // A row whose own container is not the object's parent moves the object there (keeping
    // the name it has, or taking its new one).
    if let Some(container) = own_container
        && let Ok(current) = Dn::parse(rename_to.as_deref().unwrap_or(current_dn))
        && let (Some(parent), Ok(wanted)) = (current.parent(), Dn::parse(&container))
        && parent.normalized() != wanted.normalized()
        && let Some(rdn) = current.rdns.first()
    {
        let rdn = Dn {
            rdns: vec![rdn.clone()],
        };
        rename_to = Some(format!("{rdn},{container}"));
    }
    let mut new_password = None;
    let secret = match password {
        Some((NewPassword::Static(secret), false)) => Some(secret),
        Some((NewPassword::JobStatic, false)) => {
            tr.static_password.as_ref().map(|(_, s)| s.clone())
        }
        _ => None,
    };
    if let Some(secret) = secret {
        // `None` (the destination cannot tell) leaves the password alone: setting it every run
        // would make no run ever "unchanged".
        if let Ok(Some(false)) = shared.destination.password_matches(current_dn, &secret) {
            new_password = Some(secret);
        }
    }
    if changes.is_empty() && rename_to.is_none() && new_password.is_none() {
        return Planned::Unchanged;
    }
    Planned::Update {
        dn: current_dn.to_string(),
        changes,
        value_changes: ValueEdits::default(),
        password: new_password,
        rename_to,
    }
}

/// Makes sure `container` exists, creating it (and its parents) when the job allows.
pub(super) fn ensure_container(
    shared: &Shared<'_>,
    container: &str,
    create: bool,
) -> Result<(), String> {
    // One thread creates a container while the others wait, so none sees it half made.
    // The set holds both the container as written (the fast check every row makes) and its
    // normal form (so `OU=a` and `ou=A` are one container).
    let known = shared.containers.read().unwrap_or_else(|p| p.into_inner());
    if known.contains(container) {
        return Ok(());
    }
    drop(known);
    let mut set = shared.containers.write().unwrap_or_else(|p| p.into_inner());
    if set.contains(container) {
        return Ok(());
    }
    let norm = dn::normalize(container).map_err(|e| e.to_string())?;
    if set.contains(&norm) {
        set.insert(container.to_string());
        return Ok(());
    }
    let exists = shared
        .destination
        .exists(container)
        .map_err(|e| e.to_string())?;
    if !exists {
        if !create {
            return Err(format!(
                "the container {container} does not exist (createObjectContainerStrategy is 0)"
            ));
        }
        if !shared.dry_run {
            let parsed = Dn::parse(container).map_err(|e| e.to_string())?;
            // Up from the container to the nearest ancestor that exists, then down from it:
            // a server answers a DN above its naming contexts as missing (or with a
            // referral), and those are not ours to create.
            let mut existing = 1;
            while existing < parsed.rdns.len() {
                let above = Dn {
                    rdns: parsed.rdns[existing..].to_vec(),
                };
                if shared
                    .destination
                    .exists(&above.to_string())
                    .map_err(|e| e.to_string())?
                {
                    break;
                }
                existing += 1;
            }
            for depth in (0..existing).rev() {
                let sub = Dn {
                    rdns: parsed.rdns[depth..].to_vec(),
                };
                let sub_dn = sub.to_string();
                let ava = &sub.rdns[0][0];
                let classes: &[&str] = match ava.attr.to_ascii_lowercase().as_str() {
                    "dc" => &["top", "domain"],
                    "ou" => &["top", "organizationalUnit"],
                    "o" => &["top", "organization"],
                    "cn" => &["top", "container"],
                    other => {
                        return Err(format!("cannot create a container named by {other}="));
                    }
                };
                let mut entry = Entry::new(sub_dn.clone());
                entry.set(
                    "objectClass",
                    classes.iter().map(|c| c.to_string()).collect(),
                );
                entry.set(&ava.attr.to_ascii_lowercase(), vec![ava.value.clone()]);
                match shared.destination.add(&entry, None) {
                    Ok(()) | Err(DestinationError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(format!("cannot create the container {sub_dn}: {e}")),
                }
            }
        }
    }
    set.insert(norm);
    set.insert(container.to_string());
    Ok(())
}

/// A new object waiting for its add: step 3 adds a worker's new objects in batches (see
/// [`apply_all`]), then finishes their rows.
pub(super) struct PendingAdd {
    result: RowResult,
    write: RowWrite,
    /// What to add (`None` in a dry run).
    entry: Option<Entry>,
    password: Option<NewPassword>,
    /// A password generated for this object.
    generated: Option<Secret>,
    /// Values of a large set of DNs left out of the add, added after it in batches (a group
    /// created with more members than one request takes).
    more_values: Vec<ValueChanges>,
}

/// The password a new object gets: the job's static one (lent, not copied per row), the
/// row's own, or the one generated for it.
fn secret<'a>(
    tr: &'a TypeRun<'_>,
    password: &'a Option<NewPassword>,
    generated: &'a Option<Secret>,
) -> Option<&'a Secret> {
    match (password, generated) {
        (Some(NewPassword::Static(s)), _) => Some(s),
        (Some(NewPassword::JobStatic), _) => tr.static_password.as_ref().map(|(_, s)| s),
        (_, generated) => generated.as_ref(),
    }
}

/// A row after the first half of step 3.
// Transient (a worker holds one run of at most 256 rows): boxing the pending add would cost an
// allocation per new object for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Begun {
    Done(RowRecord),
    Adding(PendingAdd),
}

/// Step 3 for a run of consecutive rows, in order: each row's hooks and writes, with the new
/// objects added in one [`Destination::add_batch`] call between their `row_adding` and
/// `row_added` events. Within a row, events keep their order; rows' events interleave.
pub(super) fn apply_all(
    shared: &Shared<'_>,
    tr: &TypeRun<'_>,
    rows: impl IntoIterator<Item = Prepared>,
) -> Vec<RowRecord> {
    // The container the last new object of this run of rows went into: rows share a few
    // containers, and checking the run's shared list for every object had the workers
    // taking turns on its lock.
    let mut ensured = String::new();
    let begun: Vec<Begun> = rows
        .into_iter()
        .map(|p| begin(shared, tr, p, &mut ensured))
        .collect();
    // Each pending add with an entry (all of them, unless this is a dry run), lent with its
    // password.
    let adds: Vec<(&Entry, Option<&Secret>)> = begun
        .iter()
        .filter_map(|b| match b {
            Begun::Adding(pending) => Some((
                pending.entry.as_ref()?,
                secret(tr, &pending.password, &pending.generated),
            )),
            Begun::Done(_) => None,
        })
        .collect();
    let added = if adds.is_empty() {
        Vec::new()
    } else {
        shared.destination.add_batch(&adds)
    };
    drop(adds);
    let mut added = added.into_iter();
    // Into a vector of its own: collected from `begun`'s, the records (64 bytes) would keep
    // its allocation (a few hundred bytes a row) until the report is made, which was a third
    // of a million-row run's peak memory.
    let mut records = Vec::with_capacity(begun.len());
    records.extend(begun.into_iter().map(|b| {
        let result = match b {
            Begun::Done(result) => result,
            Begun::Adding(mut pending) => {
                let outcome = match pending.entry.take() {
                    // A dry run adds nothing.
                    None => Ok(()),
                    Some(entry) => {
                        // The object goes back to the write for `row_added`: moved.
                        pending.write.attributes = entry.into_attributes();
                        // A destination that answers fewer adds than it was given fails
                        // the rest.
                        added.next().unwrap_or_else(|| {
                            Err(DestinationError::Rejected {
                                message: "the destination gave no answer for this add".into(),
                            })
                        })
                    }
                };
                finish_add(shared, tr, pending, outcome)
            }
        };
        if let Some(c) = shared.control {
            c.row_done();
        }
        result
    }));
    records
}

/// Step 3, first half: hooks and writes for one row, except a new object's add, which is
/// returned pending. `ensured` is a container known to exist (see [`stage_create`]).
fn begin(shared: &Shared<'_>, tr: &TypeRun<'_>, p: Prepared, ensured: &mut String) -> Begun {
    let op = tr.plan;
    let Prepared {
        row,
        key,
        norm_key,
        planned,
        entry,
        ..
    } = p;
    let mut result = RowResult {
        row,
        key,
        norm_key,
        outcome: RowOutcome::Skipped,
        failure: None,
        added: None,
        modified: None,
        renamed: None,
    };
    // A stopped run takes no new rows: this one is skipped, untouched.
    if shared
        .control
        .and_then(super::RunControl::stop_reason)
        .is_some()
    {
        return Begun::Done(result.into());
    }
    // The row's key travels in the hook events and comes back to the result: moved, not
    // copied (this runs once per row).
    let dn: Option<String> = match planned {
        Planned::Failed { field, message } => {
            result.failure = Some((field, message));
            None
        }
        Planned::Skipped { dn } => dn,
        Planned::Unchanged => {
            result.outcome = RowOutcome::Unchanged;
            entry.map(|i| tr.index.dn(i).to_string())
        }
        Planned::Create {
            entry,
            container,
            password,
            generated,
        } => {
            let mut entry = match entry.into_entry(&tr.names) {
                Ok(entry) => entry,
                Err(m) => {
                    result.failure = Some((None, format!("the new object was lost: {m}")));
                    return Begun::Done(finish(shared, tr.plan, result, None));
                }
            };
            // The hooks get the new object's attributes, moved: `row_adding` may change them,
            // and they are moved back into the object for its add.
            let dn = std::mem::take(&mut entry.dn);
            let mut attributes = entry.into_attributes();
            // The groups a new user joins are never an attribute of the user.
            let mut value_changes = Vec::new();
            if op.fields.iter().any(|f| f.is_member_of()) {
                attributes.retain_mut(|(name, values)| {
                    if !crate::plan::names_member_of(name) {
                        return true;
                    }
                    value_changes.push(ValueChanges {
                        attribute: name.clone(),
                        added: std::mem::take(values),
                        removed: Vec::new(),
                    });
                    false
                });
            }
            let mut write = RowWrite {
                object_type: op.object_type,
                row,
                key: result.key.take().unwrap_or_default(),
                dn,
                attributes,
                value_changes,
            };
            match guard(|| shared.hooks.row_adding(shared.ctx, &mut write)) {
                Err(m) => result.failure = Some((None, format!("row_adding: {m}"))),
                Ok(ControlFlow::Break(())) => result.outcome = RowOutcome::Skipped,
                Ok(ControlFlow::Continue(())) => {
                    let container = tr.container(&container);
                    match stage_create(shared, op, container, ensured, &mut write) {
                        Err(m) => result.failure = Some((None, m)),
                        Ok((entry, more_values)) => {
                            return Begun::Adding(PendingAdd {
                                result,
                                write,
                                entry,
                                password,
                                generated,
                                more_values,
                            });
                        }
                    }
                }
            }
            result.key = Some(write.key);
            Some(write.dn)
        }
        Planned::Update {
            dn,
            changes,
            value_changes,
            password,
            rename_to,
        } => {
            let mut write = RowWrite {
                object_type: op.object_type,
                row,
                key: result.key.take().unwrap_or_default(),
                dn: rename_to.clone().unwrap_or_else(|| dn.clone()),
                attributes: changes,
                value_changes: value_changes.into_vec(),
            };
            match guard(|| shared.hooks.row_changing(shared.ctx, &mut write)) {
                Err(m) => result.failure = Some((None, format!("row_changing: {m}"))),
                Ok(ControlFlow::Break(())) => result.outcome = RowOutcome::Skipped,
                Ok(ControlFlow::Continue(())) => {
                    let pw = password.as_ref();
                    let to = rename_to.as_deref();
                    match update(shared, &dn, &write, pw, to, op.create_containers) {
                        Err(m) => result.failure = Some((None, m)),
                        Ok(renamed) => {
                            result.outcome = RowOutcome::Updated;
                            result.modified = Some(write.dn.clone());
                            if renamed {
                                result.renamed = Some((dn, write.dn.clone()));
                            }
                            if let Err(m) = guard(|| shared.hooks.row_changed(shared.ctx, &write)) {
                                let m = format!("changed, but row_changed failed: {m}");
                                result.failure = Some((None, m));
                            }
                        }
                    }
                }
            }
            result.key = Some(write.key);
            Some(write.dn)
        }
    };
    Begun::Done(finish(shared, tr.plan, result, dn))
}

/// Step 3, second half of a create: the add's outcome, the password's delivery and
/// `row_added`.
fn finish_add(
    shared: &Shared<'_>,
    tr: &TypeRun<'_>,
    pending: PendingAdd,
    added: Result<(), DestinationError>,
) -> RowRecord {
    let PendingAdd {
        mut result,
        mut write,
        password,
        generated,
        more_values,
        ..
    } = pending;
    let added = added.map_err(|e| e.to_string()).and_then(|()| {
        add_more_values(shared, &mut write, more_values)?;
        if !shared.dry_run {
            for c in write.value_changes.iter().filter(|c| is_member_of(c)) {
                shared.group_changes.push(write.row, &write.dn, c);
            }
        }
        Ok(())
    });
    let delivered = added.and_then(|()| match (&password, secret(tr, &password, &generated)) {
        (Some(password), Some(secret)) if !shared.dry_run => {
            let notify_manager = password
                .policy(tr.plan)
                .is_some_and(|p| p.manager_notification);
            deliver_password(shared, &write.dn, write.row, secret, notify_manager)
        }
        _ => Ok(()),
    });
    match delivered {
        Err(m) => result.failure = Some((None, m)),
        Ok(()) => {
            result.outcome = RowOutcome::Added;
            if let Err(m) = guard(|| shared.hooks.row_added(shared.ctx, &write)) {
                let m = format!("created, but row_added failed: {m}");
                result.failure = Some((None, m));
            }
        }
    }
    result.key = Some(write.key);
    finish(shared, tr.plan, result, Some(write.dn))
}

/// The end of every row: `row_finishing` and `row_finished` for a row that did not fail,
/// `row_failed` for one that did.
fn finish(
    shared: &Shared<'_>,
    op: &ObjectPlan,
    mut result: RowResult,
    mut dn: Option<String>,
) -> RowRecord {
    let row = result.row;
    if result.failure.is_none() {
        let mut done = RowDone {
            object_type: op.object_type,
            row,
            key: result.key.take(),
            dn,
            outcome: result.outcome,
        };
        let finished = guard(|| shared.hooks.row_finishing(shared.ctx, &done))
            .map_err(|m| format!("row_finishing: {m}"))
            .and_then(|()| {
                guard(|| shared.hooks.row_finished(shared.ctx, &done))
                    .map_err(|m| format!("row_finished: {m}"))
            });
        // The report keeps the keys of failed rows only. The others are freed here, on the
        // worker, rather than one by one on the thread that records the report.
        if let Err(m) = finished {
            result.key = done.key;
            result.failure = Some((None, m));
        }
        dn = done.dn.take();
    }
    // A new object's DN goes to the report (moved: this runs for every object created).
    if result.outcome == RowOutcome::Added {
        result.added = dn;
    }
    if !op.delete {
        // Only deletes read the normalised keys of the rows (to find the orphans).
        result.norm_key = None;
    }
    if let Some((field, message)) = &result.failure {
        let failure = RowFailure {
            object_type: op.object_type.code(),
            row,
            key: result.key.clone(),
            field: field.clone(),
            message: message.clone(),
        };
        // `row_failed` cannot change anything; a panic in it is contained and ignored.
        let _ = guard(|| {
            shared.hooks.row_failed(shared.ctx, &failure);
            Ok(())
        });
    }
    result.into()
}

/// Everything a create needs before its add: the container, and the entry (unless this is
/// a dry run) built from what `row_adding` left in the write, with the values of any set of
/// DNs past the first request's worth held back to be added after it (see
/// [`add_more_values`]). `ensured` is the container the last object went into, known to
/// exist; it becomes this one's.
fn stage_create(
    shared: &Shared<'_>,
    op: &ObjectPlan,
    container: &str,
    ensured: &mut String,
    write: &mut RowWrite,
) -> Result<(Option<Entry>, Vec<ValueChanges>), String> {
    if ensured != container {
        ensure_container(shared, container, op.create_containers)?;
        ensured.clear();
        ensured.push_str(container);
    }
    if shared.dry_run {
        return Ok((None, Vec::new()));
    }
    // What `row_adding` left in the list is the object (a name it added twice is merged).
    let mut attributes = std::mem::take(&mut write.attributes);
    let mut more_values = Vec::new();
    for (name, values) in attributes.iter_mut() {
        if values.len() > VALUES_PER_REQUEST
            && op
                .fields
                .iter()
                .any(|f| f.is_dn_set() && f.attribute.eq_ignore_ascii_case(name))
        {
            more_values.push(ValueChanges {
                attribute: name.clone(),
                added: values.split_off(VALUES_PER_REQUEST),
                removed: Vec::new(),
            });
        }
    }
    Ok((
        Some(Entry::from_attributes(write.dn.clone(), attributes)),
        more_values,
    ))
}

/// After a new object's add: the values its add held back (see [`stage_create`]), in
/// batches, and back into the write for `row_added`. A failure leaves the object with the
/// values added so far; the next run adds the rest.
fn add_more_values(
    shared: &Shared<'_>,
    write: &mut RowWrite,
    more_values: Vec<ValueChanges>,
) -> Result<(), String> {
    for request in value_requests(&more_values) {
        shared
            .destination
            .modify(&write.dn, &request)
            .map_err(|e| format!("created, but not with all its values: {e}"))?;
    }
    for more in more_values {
        if let Some((_, values)) = write
            .attributes
            .iter_mut()
            .find(|(name, _)| *name == more.attribute)
        {
            values.extend(more.added);
        }
    }
    Ok(())
}

/// A user's groups (`memberOf`), written to the groups, not to the user.
fn is_member_of(c: &ValueChanges) -> bool {
    crate::plan::names_member_of(&c.attribute)
}

fn deliver_password(
    shared: &Shared<'_>,
    dn: &str,
    row: u64,
    secret: &Secret,
    notify_manager: bool,
) -> Result<(), String> {
    guard(|| {
        shared.hooks.password_set(
            shared.ctx,
            &PasswordSet {
                dn,
                row,
                password: secret,
                notify_manager,
            },
        )
    })
    .map_err(|m| format!("written, but password_set failed: {m}"))
}

/// Applies a change; `Ok(true)` when the object was renamed. Replaced attributes, the
/// password and the first batch of value changes go in one modify, further batches in more
/// (see `membership::value_requests`); the groups a user joins and leaves are gathered, under
/// the user's DN after the rename, to be written per group (see `membership`).
fn update(
    shared: &Shared<'_>,
    dn: &str,
    write: &RowWrite,
    password: Option<&Secret>,
    rename_to: Option<&str>,
    create_containers: bool,
) -> Result<bool, String> {
    if shared.dry_run {
        return Ok(rename_to.is_some());
    }
    let mut mods: Vec<Modification> = write
        .attributes
        .iter()
        .map(|(a, v)| Modification::Replace(a.clone(), v.clone()))
        .collect();
    if let Some(p) = password {
        mods.push(Modification::SetPassword(p.clone()));
    }
    let sets = write.value_changes.iter().filter(|c| !is_member_of(c));
    let mut requests = value_requests(sets).into_iter();
    mods.extend(requests.next().into_iter().flatten());
    for request in std::iter::once(mods).chain(requests) {
        if !request.is_empty() {
            shared
                .destination
                .modify(dn, &request)
                .map_err(|e| e.to_string())?;
        }
    }
    let renamed = match rename_to {
        Some(to) => {
            // A move goes into a container that may not exist yet, as a create would.
            if let Some(parent) = Dn::parse(to).ok().and_then(|d| d.parent())
                && !parent.rdns.is_empty()
            {
                ensure_container(shared, &parent.to_string(), create_containers)
                    .map_err(|e| format!("changed, but not moved to {to}: {e}"))?;
            }
            shared
                .destination
                .rename(dn, to)
                .map_err(|e| format!("changed, but the rename to {to} failed: {e}"))?;
            true
        }
        None => false,
    };
    for c in write.value_changes.iter().filter(|c| is_member_of(c)) {
        shared.group_changes.push(write.row, &write.dn, c);
    }
    if let Some(p) = password {
        // A static password is the same for every row: there is no one to notify.
        deliver_password(shared, &write.dn, write.row, p, false)?;
    }
    Ok(renamed)
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

#[cfg(test)]
mod tests {
    use super::split_values;

    #[test]
    fn a_delimited_cell_keeps_each_value_once_ignoring_case_short_or_long() {
        assert_eq!(split_values("555;;555; ;", ";"), ["555"]);
        assert_eq!(split_values(" a ; B;b;A ", ";"), ["a", "B"]);
        // Past the pairwise checks: duplicates before and after the switch are still found.
        let mut cell: Vec<String> = (0..40).map(|i| format!("Id{i}")).collect();
        cell.push("id3".into());
        cell.push("ID39".into());
        cell.push("Id40".into());
        let values = split_values(&cell.join(";"), ";");
        assert_eq!(values.len(), 41);
        assert_eq!(values[40], "Id40");
        assert_eq!(values[3], "Id3");
    }
}
