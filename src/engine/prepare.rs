//! Step 1 of a row: hooks, transforms, key, match and diff, while the source is still read.
//! Writes nothing.

use foldhash::HashSet;
use smol_str::SmolStr;
use std::ops::ControlFlow;

use super::new_object::NewObject;
use super::resolve::{self, Deferred, Earlier};
use super::row::*;
use super::{TypeRun, guard};
use crate::destination::{AttributeName, Entry};
use crate::dn::{self, Dn};
use crate::hooks::RowStart;
use crate::matching::{push_normalized_key, same_values};
use crate::plan::{ContainerRule, Naming};
use crate::source::SourceRow;
use crate::transform::{PasswordRule, RunValues, ScriptInput};
use crate::{Secret, transform};

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
pub(super) fn bound_cell_error(
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
pub(super) fn own_container(
    tr: &TypeRun<'_>,
    values: &[Option<String>],
) -> Result<Option<String>, Planned> {
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

pub(super) fn plan_create(
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
pub(super) fn plan_update(
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
