//! Group membership: the sets of DNs a run changes value by value.
//!
//! - A group row's `member` (a `Resolve` with a delimiter) is settled with the other
//!   `Resolve` fields (see `resolve`) and compared with the members the group has as a set of
//!   normalised DNs ([`set_difference`]): the update adds and deletes only what differs.
//! - A user row's `memberOf` names groups by their key. [`plan_member_of`] reads the groups in
//!   the job's scope once, compares what each row names with the groups that have the row's
//!   object as a member, and gives the row the groups it joins and leaves. Those changes are
//!   gathered while the rows are written and made per group once the type's rows are done
//!   ([`write_member_of`]), in batches: a thousand users joining one group is a handful of
//!   modifies, not a thousand.
//! - A directory that does not keep references true itself (everything but Active Directory)
//!   has its groups in scope edited after renames and deletes ([`fix_references`]): a renamed
//!   member is written under its new DN, a deleted one leaves.
//!
//! Every value change is permissive (see [`Modification::AddValues`]): a change repeated by a
//! re-run, or one the directory made itself, is not an error, so runs converge.

use std::sync::Mutex;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use rayon::prelude::*;

use super::TypeRun;
use super::row::{Planned, Prepared, Shared};
use crate::destination::{AttributeName, Destination, Modification, Scope, value_key};
use crate::hooks::ValueChanges;
use crate::matching::lowercase;
use crate::query::Filter;
use crate::report::{DetailType, Report, RunStatus};
use crate::transform::Transform;

/// The most values one modify request adds or deletes. Servers bound a request's size (Active
/// Directory's `MaxReceiveBuffer` is ten megabytes by default, and AD answers at most 1,500
/// values of an attribute at a time); a thousand DNs is some 60 KB, well inside.
pub(super) const VALUES_PER_REQUEST: usize = 1000;

/// The attribute group membership is written to.
const MEMBER: &str = "member";

/// What turns `current` into `desired` as sets: the values to add (desired ones the set
/// lacks) and to remove (current ones not desired), each in its own order. Values spelt the
/// same are matched as they are; only the rest are put in normal form (a group read back
/// holds its members as they were written, so an unchanged group normalises nothing).
pub(super) fn set_difference<C: AsRef<str>>(
    current: &[C],
    desired: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let exact: HashSet<&str> = current.iter().map(AsRef::as_ref).collect();
    let (same, mut desired_left): (Vec<String>, Vec<String>) = desired
        .into_iter()
        .partition(|d| exact.contains(d.as_str()));
    let same: HashSet<&str> = same.iter().map(String::as_str).collect();
    let current_left: Vec<&str> = current
        .iter()
        .map(AsRef::as_ref)
        .filter(|c| !same.contains(c))
        .collect();
    if current_left.is_empty() && desired_left.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let current_keys: Vec<String> = current_left.iter().map(|v| value_key(v)).collect();
    let current_set: HashSet<&str> = current_keys.iter().map(String::as_str).collect();
    let desired_keys: HashSet<String> = desired_left.iter().map(|v| value_key(v)).collect();
    let removed = current_left
        .iter()
        .zip(&current_keys)
        .filter(|(_, k)| !desired_keys.contains(k.as_str()))
        .map(|(v, _)| v.to_string())
        .collect();
    let mut added_keys = HashSet::new();
    desired_left.retain(|v| {
        let k = value_key(v);
        !current_set.contains(k.as_str()) && added_keys.insert(k)
    });
    (desired_left, removed)
}

/// The modifications that make `changes` on one entry, in requests of at most
/// [`VALUES_PER_REQUEST`] values: removals first, so that a value both removed and added in
/// another spelling ends up present.
pub(super) fn value_requests<'a, I>(changes: I) -> Vec<Vec<Modification>>
where
    I: IntoIterator<Item = &'a ValueChanges>,
    I::IntoIter: Clone,
{
    let changes = changes.into_iter();
    let mut requests: Vec<Vec<Modification>> = Vec::new();
    let mut room = 0;
    let mut push = |make: fn(AttributeName, Vec<String>) -> Modification,
                    name: &AttributeName,
                    values: &[String]| {
        let mut rest = values;
        while !rest.is_empty() {
            if room == 0 {
                requests.push(Vec::new());
                room = VALUES_PER_REQUEST;
            }
            let (now, later) = rest.split_at(rest.len().min(room));
            room -= now.len();
            if let Some(request) = requests.last_mut() {
                request.push(make(name.clone(), now.to_vec()));
            }
            rest = later;
        }
    };
    for c in changes.clone() {
        push(Modification::DeleteValues, &c.attribute, &c.removed);
    }
    for c in changes {
        push(Modification::AddValues, &c.attribute, &c.added);
    }
    requests
}

/// Where the job looks: the scan base of each of its object types (each base and scope once),
/// and whether the scan takes the subtree.
pub(super) fn job_scopes(plan: &crate::plan::Plan) -> Vec<(String, Scope)> {
    let mut scopes: Vec<(String, Scope)> = Vec::new();
    for op in &plan.objects {
        let scope = if op.subtree {
            Scope::Subtree
        } else {
            Scope::OneLevel
        };
        let base = op.scope_base.clone();
        if !scopes
            .iter()
            .any(|(b, s)| b.eq_ignore_ascii_case(&base) && *s == scope)
        {
            scopes.push((base, scope));
        }
    }
    scopes
}

/// The groups in the job's scope, as `memberOf` needs them.
struct Groups {
    /// Each group's DN.
    dns: Vec<String>,
    /// Group positions by their key value, lower-cased.
    by_key: HashMap<String, Vec<u32>>,
    /// Group positions by the normal form of each member's DN.
    by_member: HashMap<String, Vec<u32>>,
}

/// The filter for groups: AD's `group` and LDAP's `groupOfNames`, the classes whose members
/// are `member` values.
fn group_filter(attribute: &str) -> Filter {
    Filter::And(vec![
        Filter::Or(vec![
            Filter::Equal("objectClass".into(), "group".into()),
            Filter::Equal("objectClass".into(), "groupOfNames".into()),
        ]),
        Filter::Present(attribute.into()),
    ])
}

/// Reads every group in `scopes` with a value of `key`, with its members.
fn read_groups(
    destination: &dyn Destination,
    scopes: &[(String, Scope)],
    key: &str,
) -> Result<Groups, crate::destination::DestinationError> {
    let mut groups = Groups {
        dns: Vec::new(),
        by_key: HashMap::new(),
        by_member: HashMap::new(),
    };
    let mut seen: HashSet<String> = HashSet::new();
    let attributes = [key.to_string(), MEMBER.to_string()];
    for (base, scope) in scopes {
        let read =
            destination.search_each(base, *scope, &group_filter(key), &attributes, &mut |e| {
                // Scopes may overlap: a group is listed once.
                if !seen.insert(value_key(&e.dn)) {
                    return;
                }
                let at = groups.dns.len() as u32;
                groups.dns.push(e.dn.clone());
                for v in e.get(key) {
                    let list = groups.by_key.entry(lowercase(v).into_owned()).or_default();
                    if !list.contains(&at) {
                        list.push(at);
                    }
                }
                for m in e.get(MEMBER) {
                    groups.by_member.entry(value_key(m)).or_default().push(at);
                }
            });
        match read {
            Ok(()) | Err(crate::destination::DestinationError::NoSuchObject { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(groups)
}

/// Gives each row of a type with a `memberOf` field the groups its object joins and leaves
/// (see the module docs): an existing object's as a value change of its update, a new one's
/// as `memberOf` values of the new object, which the write takes out again. Returns the
/// warnings for group names that name no group in scope, or several.
pub(super) fn plan_member_of(
    shared: &Shared<'_>,
    tr: &TypeRun<'_>,
    prepared: &mut [Prepared],
    pool: Option<&rayon::ThreadPool>,
) -> Vec<String> {
    let op = tr.plan;
    let Some(field) = op.fields.iter().position(|f| f.is_member_of()) else {
        return Vec::new();
    };
    let f = &op.fields[field];
    let Transform::Resolve { attribute, .. } = &f.transform else {
        return Vec::new();
    };
    let groups = match read_groups(shared.destination, &shared.scopes, attribute) {
        Ok(groups) => groups,
        Err(e) => {
            let message = format!("cannot read the groups in the job's scope: {e}");
            for p in prepared.iter_mut().filter(|p| takes_part(p)) {
                p.fail(Some(f.location()), message.clone());
            }
            return Vec::new();
        }
    };
    let plan_row = |p: &mut Prepared| -> Vec<String> {
        if !takes_part(p) {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        let value = p
            .deferred
            .iter()
            .find(|d| d.field == field)
            .and_then(|d| d.value.as_deref());
        let names = match (value, &f.delimiter) {
            (None, _) => Vec::new(),
            (Some(v), Some(d)) => super::prepare::split_values(v, d),
            (Some(v), None) => vec![v.trim().to_string()],
        };
        let mut desired: Vec<u32> = Vec::new();
        for name in names.iter().filter(|n| !n.is_empty()) {
            match groups.by_key.get(lowercase(name).as_ref()).map(Vec::as_slice) {
                Some([one]) => {
                    if !desired.contains(one) {
                        desired.push(*one);
                    }
                }
                Some(many) => warnings.push(format!(
                    "row {}: {}: {name:?} left out: {} groups in the job's scope have {attribute}={name}: {}",
                    p.row,
                    f.location(),
                    many.len(),
                    many.iter()
                        .map(|g| groups.dns[*g as usize].as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
                None => warnings.push(format!(
                    "row {}: {}: {name:?} left out: no group in the job's scope has {attribute}={name}",
                    p.row,
                    f.location()
                )),
            }
        }
        let current: &[u32] = p
            .entry
            .and_then(|i| groups.by_member.get(&value_key(tr.index.dn(i))))
            .map_or(&[], Vec::as_slice);
        let dns = |list: &mut dyn Iterator<Item = &u32>| -> Vec<String> {
            list.map(|g| groups.dns[*g as usize].clone()).collect()
        };
        let added = dns(&mut desired.iter().filter(|g| !current.contains(g)));
        let removed = dns(&mut current.iter().filter(|g| !desired.contains(g)));
        if added.is_empty() && removed.is_empty() {
            return warnings;
        }
        let changes = ValueChanges {
            attribute: f.attribute.clone(),
            added,
            removed,
        };
        match (&mut p.planned, p.entry) {
            (Planned::Create { entry, .. }, _) => {
                let name = f.attribute.clone();
                entry.modify(&tr.names, |entry| {
                    let at = entry.attributes().len();
                    entry.add_owned_at(at, name, changes.added);
                });
            }
            (Planned::Update { value_changes, .. }, _) => value_changes.push(changes),
            (Planned::Unchanged, Some(i)) => {
                p.planned = Planned::Update {
                    dn: tr.index.dn(i).to_string(),
                    changes: Vec::new(),
                    value_changes: super::row::ValueEdits::one(changes),
                    password: None,
                    rename_to: None,
                };
            }
            _ => {}
        }
        warnings
    };
    let warnings: Vec<Vec<String>> = match pool {
        Some(pool) => pool.install(|| prepared.par_iter_mut().map(plan_row).collect()),
        None => prepared.iter_mut().map(plan_row).collect(),
    };
    warnings.into_iter().flatten().collect()
}

/// Whether a row's object will exist after the run, so its groups are its row's to say.
fn takes_part(p: &Prepared) -> bool {
    !p.cancelled
        && matches!(
            p.planned,
            Planned::Create { .. } | Planned::Update { .. } | Planned::Unchanged
        )
}

/// The objects a run has renamed (old DN → new) or deleted (→ `None`) so far, by the normal
/// form of the old DN. A group a later type fills was read before those writes: its members
/// are compared through this, so a member renamed or deleted by an earlier type (whose groups
/// the directory or [`fix_references`] already changed) does not make the group look
/// changed.
#[derive(Default)]
pub(super) struct Moved(std::sync::RwLock<HashMap<String, Option<String>>>);

impl Moved {
    /// Adds a type's renames and deletes.
    pub fn record(&self, changed: &[(String, Option<String>)]) {
        if changed.is_empty() {
            return;
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        for (old, new) in changed {
            map.insert(value_key(old), new.clone());
        }
    }

    /// `current` as it stands after the run's renames and deletes so far.
    pub fn apply<'a>(&self, current: Vec<&'a str>) -> Vec<std::borrow::Cow<'a, str>> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return current
                .into_iter()
                .map(std::borrow::Cow::Borrowed)
                .collect();
        }
        current
            .into_iter()
            .filter_map(|v| match map.get(&value_key(v)) {
                None => Some(std::borrow::Cow::Borrowed(v)),
                Some(Some(new)) => Some(std::borrow::Cow::Owned(new.clone())),
                Some(None) => None,
            })
            .collect()
    }
}

/// One member joining or leaving one group, gathered while rows are written.
pub(super) struct GroupChange {
    pub group: String,
    pub member: String,
    pub join: bool,
    pub row: u64,
}

/// The `memberOf` changes of the rows written so far.
#[derive(Default)]
pub(super) struct PendingGroupChanges(Mutex<Vec<GroupChange>>);

impl PendingGroupChanges {
    /// Gathers a row's groups to join and leave, its object now at `member`.
    pub fn push(&self, row: u64, member: &str, changes: &ValueChanges) {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (groups, join) in [(&changes.removed, false), (&changes.added, true)] {
            pending.extend(groups.iter().map(|group| GroupChange {
                group: group.clone(),
                member: member.to_string(),
                join,
                row,
            }));
        }
    }

    pub(super) fn take(&self) -> Vec<GroupChange> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One group's gathered `memberOf` changes: the members joining and leaving, and the rows
/// that asked.
struct GroupEdit {
    group: String,
    join: Vec<String>,
    leave: Vec<String>,
    rows: Vec<u64>,
}

/// Makes the gathered `memberOf` changes, per group: its leaving members deleted and its
/// joining ones added, in batches. A group that refuses fails the run with a detail naming
/// the group and the rows; the groups changed join the report's modified list.
pub(super) fn write_member_of(
    shared: &Shared<'_>,
    report: &mut Report,
    pool: Option<&rayon::ThreadPool>,
) {
    let changes = shared.group_changes.take();
    if changes.is_empty() {
        return;
    }
    // Per group, in the order rows came.
    let mut order: Vec<String> = Vec::new();
    let mut by_group: HashMap<String, GroupEdit> = HashMap::new();
    for c in changes {
        let key = value_key(&c.group);
        let edit = by_group.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            GroupEdit {
                group: c.group.clone(),
                join: Vec::new(),
                leave: Vec::new(),
                rows: Vec::new(),
            }
        });
        if c.join {
            edit.join.push(c.member);
        } else {
            edit.leave.push(c.member);
        }
        if edit.rows.last() != Some(&c.row) {
            edit.rows.push(c.row);
        }
    }
    let groups: Vec<GroupEdit> = order
        .into_iter()
        .filter_map(|k| by_group.remove(&k))
        .collect();
    let write = |edit: &GroupEdit| {
        let changes = [ValueChanges {
            attribute: MEMBER.into(),
            added: edit.join.clone(),
            removed: edit.leave.clone(),
        }];
        let written = value_requests(&changes)
            .iter()
            .try_for_each(|request| shared.destination.modify(&edit.group, request));
        written.map_err(|e| {
            let rows: Vec<String> = edit.rows.iter().map(u64::to_string).collect();
            format!(
                "memberOf: the group {} was not changed for rows {}: {e}",
                edit.group,
                rows.join(", ")
            )
        })
    };
    let results = super::par_map(pool, &groups, write);
    let mut modified: HashSet<String> = report.modified.iter().map(|d| value_key(d)).collect();
    for (edit, result) in groups.iter().zip(results) {
        match result {
            Ok(()) => {
                if modified.insert(value_key(&edit.group)) {
                    report.modified.push(edit.group.clone());
                }
            }
            Err(message) => {
                report.detail(DetailType::Error, message);
                report.status = RunStatus::FinishedFail;
            }
        }
    }
}

/// After a type's renames and deletes (`changed`: each object's old DN and its new one, or
/// `None` when it was deleted), on a directory that does not keep DN values true itself:
/// every entry in the job's scope whose `member` (or other set of DNs the job fills, see
/// [`reference_attributes`]) names a renamed object names its new DN, and one naming a
/// deleted object no longer names it. Returns the failures, each naming the entry.
pub(super) fn fix_references(
    shared: &Shared<'_>,
    attributes: &[AttributeName],
    changed: &[(String, Option<String>)],
) -> Vec<String> {
    if shared.dry_run || changed.is_empty() {
        return Vec::new();
    }
    let moved: HashMap<String, Option<&str>> = changed
        .iter()
        .map(|(old, new)| (value_key(old), new.as_deref()))
        .collect();
    let filter = Filter::Or(
        attributes
            .iter()
            .map(|a| Filter::Present(a.to_string()))
            .collect(),
    );
    let wanted: Vec<String> = attributes.iter().map(|a| a.to_string()).collect();
    let mut edits: Vec<(String, Vec<ValueChanges>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut failures = Vec::new();
    for (base, scope) in &shared.scopes {
        let read = shared
            .destination
            .search_each(base, *scope, &filter, &wanted, &mut |e| {
                if !seen.insert(value_key(&e.dn)) {
                    return;
                }
                let mut changes = Vec::new();
                for a in attributes {
                    let mut c = ValueChanges {
                        attribute: a.clone(),
                        added: Vec::new(),
                        removed: Vec::new(),
                    };
                    for v in e.get(a) {
                        if let Some(to) = moved.get(&value_key(v)) {
                            c.removed.push(v.clone());
                            c.added.extend(to.map(str::to_string));
                        }
                    }
                    if !c.is_empty() {
                        changes.push(c);
                    }
                }
                if !changes.is_empty() {
                    edits.push((e.dn.clone(), changes));
                }
            });
        match read {
            Ok(()) | Err(crate::destination::DestinationError::NoSuchObject { .. }) => {}
            Err(e) => failures.push(format!(
                "cannot read {base} to update references to renamed and deleted objects: {e}"
            )),
        }
    }
    for (dn, changes) in edits {
        for request in value_requests(&changes) {
            if let Err(e) = shared.destination.modify(&dn, &request) {
                failures.push(format!("{dn} still names a renamed or deleted object: {e}"));
                break;
            }
        }
    }
    failures
}

/// The attributes a run keeps true when objects are renamed or deleted: `member`, and every
/// set of DNs the job fills. A single `Resolve` value (a `manager`) is not among them: a row
/// naming a renamed or deleted object gets its new value from its own `Resolve` in the same
/// run, and following every such value would read every user at every rename.
pub(super) fn reference_attributes(plan: &crate::plan::Plan) -> Vec<AttributeName> {
    let mut names: Vec<AttributeName> = vec![MEMBER.into()];
    for f in plan.objects.iter().flat_map(|op| &op.fields) {
        if f.is_dn_set() && !names.iter().any(|n| n.eq_ignore_ascii_case(&f.attribute)) {
            names.push(f.attribute.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_of_dns_differ_by_their_normal_forms_only() {
        let (added, removed) = set_difference(
            &[
                "CN=Ann,OU=People,DC=lab",
                "cn=bob, ou=people, dc=lab",
                "CN=Old,DC=lab",
            ],
            vec![
                "cn=ann,ou=people,dc=lab".into(),
                "CN=Bob,OU=People,DC=lab".into(),
                "CN=New,DC=lab".into(),
                "cn=new,dc=lab".into(),
            ],
        );
        assert_eq!(added, ["CN=New,DC=lab"]);
        assert_eq!(removed, ["CN=Old,DC=lab"]);
        let (added, removed) = set_difference(&["CN=A,DC=lab"], vec!["cn=a,dc=lab".into()]);
        assert!(added.is_empty() && removed.is_empty());
    }

    #[test]
    fn value_changes_go_in_requests_of_bounded_size_removals_first() {
        let many = |prefix: &str, n: usize| -> Vec<String> {
            (0..n).map(|i| format!("CN={prefix}{i},DC=lab")).collect()
        };
        let changes = [ValueChanges {
            attribute: "member".into(),
            added: many("a", 2_300),
            removed: many("r", 700),
        }];
        let requests = value_requests(&changes);
        let sizes: Vec<usize> = requests
            .iter()
            .map(|r| r.iter().map(|m| m.values().len()).sum())
            .collect();
        assert_eq!(sizes, [1000, 1000, 1000]);
        assert!(matches!(&requests[0][0], Modification::DeleteValues(_, v) if v.len() == 700));
        assert!(matches!(&requests[0][1], Modification::AddValues(_, v) if v.len() == 300));
        let added: Vec<&String> = requests
            .iter()
            .flatten()
            .filter_map(|m| match m {
                Modification::AddValues(_, v) => Some(v),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(added.len(), 2_300);
        assert_eq!(added[0], "CN=a0,DC=lab");
        assert_eq!(added[2_299], "CN=a2299,DC=lab");
        assert!(value_requests(&[] as &[ValueChanges]).is_empty());
    }
}
