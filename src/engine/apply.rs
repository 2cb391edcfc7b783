//! Step 3 of a row: its hooks and its writes, once every row is known.

use std::ops::ControlFlow;

use super::membership::{VALUES_PER_REQUEST, value_requests};
use super::row::*;
use super::{TypeRun, guard};
use crate::Secret;
use crate::destination::{DestinationError, Entry, Modification};
use crate::dn::{self, Dn};
use crate::hooks::{PasswordSet, RowDone, RowOutcome, RowWrite, ValueChanges};
use crate::plan::ObjectPlan;
use crate::report::RowFailure;

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

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, RwLock};

    use foldhash::HashSet;

    use super::*;
    use crate::destination::{AttributeName, Destination, LdifDirectory, Scope};
    use crate::hooks::{HookContext, NoHooks};
    use crate::job::ObjectType;
    use crate::query::Filter;

    /// The embedded directory, with every call that reaches it written down.
    struct Recorded {
        inner: LdifDirectory,
        calls: Mutex<Vec<String>>,
    }

    impl Recorded {
        fn with(dns: &[&str]) -> Recorded {
            let inner = LdifDirectory::in_memory();
            for dn in dns {
                let mut e = Entry::new(*dn);
                e.set("objectClass", vec!["top".into(), "domain".into()]);
                inner.add(&e, None).unwrap();
            }
            Recorded {
                inner,
                calls: Mutex::default(),
            }
        }

        fn note(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }

        fn calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    impl Destination for Recorded {
        fn search_each(
            &self,
            base: &str,
            scope: Scope,
            filter: &Filter,
            attributes: &[String],
            each: &mut dyn FnMut(&Entry),
        ) -> Result<(), DestinationError> {
            self.inner
                .search_each(base, scope, filter, attributes, each)
        }
        fn exists(&self, dn: &str) -> Result<bool, DestinationError> {
            self.note(format!("exists {dn}"));
            self.inner.exists(dn)
        }
        fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
            self.note(format!("add {}", entry.dn));
            self.inner.add(entry, password)
        }
        fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
            let what: Vec<String> = changes
                .iter()
                .map(|m| match m {
                    Modification::Replace(a, _) => format!("replace {a}"),
                    Modification::SetPassword(_) => "password".into(),
                    other => format!("{other:?}"),
                })
                .collect();
            self.note(format!("modify {dn}: {}", what.join(", ")));
            self.inner.modify(dn, changes)
        }
        fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError> {
            self.note(format!("rename {dn} -> {new_dn}"));
            self.inner.rename(dn, new_dn)
        }
        fn delete(&self, dn: &str) -> Result<(), DestinationError> {
            self.note(format!("delete {dn}"));
            self.inner.delete(dn)
        }
        fn commit(&self) -> Result<(), DestinationError> {
            self.inner.commit()
        }
    }

    fn shared<'a>(ctx: &'a HookContext, destination: &'a dyn Destination) -> Shared<'a> {
        Shared {
            ctx,
            hooks: &NoHooks,
            destination,
            dry_run: ctx.dry_run(),
            now: "2026-12-03T09:00:00.000+00:00",
            today: "2026-12-03",
            containers: RwLock::new(HashSet::default()),
            control: None,
            scopes: Vec::new(),
            group_changes: Default::default(),
            moved: Default::default(),
        }
    }

    const STAFF: &str = "OU=Staff,OU=Corp,DC=example,DC=com";

    #[test]
    fn a_missing_container_is_made_down_from_its_nearest_ancestor_once_a_run() {
        let d = Recorded::with(&["DC=example,DC=com"]);
        let ctx = HookContext::new("job", false);
        let s = shared(&ctx, &d);
        ensure_container(&s, STAFF, true).unwrap();
        assert_eq!(
            d.calls(),
            [
                format!("exists {STAFF}"),
                "exists OU=Corp,DC=example,DC=com".into(),
                "exists DC=example,DC=com".into(),
                "add OU=Corp,DC=example,DC=com".into(),
                format!("add {STAFF}"),
            ]
        );
        let staff = d.inner.get(STAFF).unwrap();
        assert_eq!(staff.get("ou"), ["Staff"]);
        assert!(
            staff
                .get("objectClass")
                .iter()
                .any(|c| c == "organizationalUnit")
        );
        // The same container written another way is known: nothing more reaches the directory.
        ensure_container(&s, "ou=staff,ou=corp,dc=example,dc=com", true).unwrap();
        ensure_container(&s, STAFF, true).unwrap();
        assert_eq!(d.calls(), Vec::<String>::new());
    }

    #[test]
    fn a_missing_container_is_refused_when_the_job_does_not_create_them_and_nothing_is_written() {
        let d = Recorded::with(&["DC=example,DC=com"]);
        let ctx = HookContext::new("job", false);
        let s = shared(&ctx, &d);
        let err = ensure_container(&s, STAFF, false).unwrap_err();
        assert!(
            err.contains(STAFF) && err.contains("createObjectContainerStrategy is 0"),
            "{err}"
        );
        assert!(d.calls().iter().all(|c| c.starts_with("exists ")));
        assert!(d.inner.get("OU=Corp,DC=example,DC=com").is_none());
        // Refused, it is not remembered as made: the next row asks again.
        assert!(ensure_container(&s, STAFF, false).is_err());
    }

    #[test]
    fn containers_in_a_dry_run_are_checked_not_made_and_odd_names_are_refused() {
        let d = Recorded::with(&["DC=example,DC=com"]);
        let ctx = HookContext::new("job", true);
        let s = shared(&ctx, &d);
        ensure_container(&s, STAFF, true).unwrap();
        assert!(d.calls().iter().all(|c| c.starts_with("exists ")));
        assert!(d.inner.get(STAFF).is_none());

        let ctx = HookContext::new("job", false);
        let s = shared(&ctx, &d);
        let err = ensure_container(&s, "L=Paris,DC=example,DC=com", true).unwrap_err();
        assert_eq!(err, "cannot create a container named by l=");
        assert!(d.inner.get("L=Paris,DC=example,DC=com").is_none());
    }

    fn user(d: &Recorded, dn: &str) {
        let mut e = Entry::new(dn);
        e.set("objectClass", vec!["top".into(), "user".into()]);
        e.set("cn", vec!["Ann".into()]);
        d.inner.add(&e, None).unwrap();
    }

    fn write(dn: &str, attributes: Vec<(AttributeName, Vec<String>)>) -> RowWrite {
        RowWrite {
            object_type: ObjectType::User,
            row: 1002,
            key: "1".into(),
            dn: dn.into(),
            attributes,
            value_changes: Vec::new(),
        }
    }

    #[test]
    fn an_update_is_one_modify_and_a_move_makes_its_container_first() {
        const ANN: &str = "CN=Ann,OU=Corp,DC=example,DC=com";
        let d = Recorded::with(&["DC=example,DC=com"]);
        d.inner
            .add(
                &{
                    let mut ou = Entry::new("OU=Corp,DC=example,DC=com");
                    ou.set("objectClass", vec!["organizationalUnit".into()]);
                    ou
                },
                None,
            )
            .unwrap();
        user(&d, ANN);
        d.calls();
        let ctx = HookContext::new("job", false);
        let s = shared(&ctx, &d);
        let mut w = write(ANN, vec![("title".into(), vec!["Chef".into()])]);
        w.value_changes.push(ValueChanges {
            attribute: "memberOf".into(),
            added: vec!["CN=Cooks,DC=example,DC=com".into()],
            removed: Vec::new(),
        });
        let moved_to = format!("CN=Ann,{STAFF}");
        w.dn = moved_to.clone();
        let password = Secret::new("Tr0ub4dor&3");
        let renamed = update(&s, ANN, &w, Some(&password), Some(&moved_to), true).unwrap();
        assert!(renamed);
        assert_eq!(
            d.calls(),
            [
                format!("modify {ANN}: replace title, password"),
                format!("exists {STAFF}"),
                "exists OU=Corp,DC=example,DC=com".into(),
                format!("add {STAFF}"),
                format!("rename {ANN} -> {moved_to}"),
            ]
        );
        let ann = d.inner.get(&moved_to).unwrap();
        assert_eq!(ann.get("title"), ["Chef"]);
        assert!(
            ann.get("memberOf").is_empty(),
            "a user's groups are the groups' to hold"
        );
        // The group to join is gathered under the user's new DN, for the groups' step.
        let joins = s.group_changes.take();
        assert_eq!(joins.len(), 1);
        assert_eq!(
            (
                joins[0].group.as_str(),
                joins[0].member.as_str(),
                joins[0].join
            ),
            ("CN=Cooks,DC=example,DC=com", moved_to.as_str(), true)
        );
    }

    #[test]
    fn a_move_into_a_container_the_job_may_not_make_keeps_the_change_and_says_so() {
        const ANN: &str = "CN=Ann,DC=example,DC=com";
        let d = Recorded::with(&["DC=example,DC=com"]);
        user(&d, ANN);
        d.calls();
        let ctx = HookContext::new("job", false);
        let s = shared(&ctx, &d);
        let moved_to = format!("CN=Ann,{STAFF}");
        let mut w = write(ANN, vec![("title".into(), vec!["Chef".into()])]);
        w.dn = moved_to.clone();
        let err = update(&s, ANN, &w, None, Some(&moved_to), false).unwrap_err();
        assert!(
            err.starts_with(&format!("changed, but not moved to {moved_to}")),
            "{err}"
        );
        // The modify went through and the object stayed where it was.
        let ann = d.inner.get(ANN).unwrap();
        assert_eq!(ann.get("title"), ["Chef"]);
        assert!(d.inner.get(&moved_to).is_none());
        // A dry run writes nothing at all.
        let ctx = HookContext::new("job", true);
        let s = shared(&ctx, &d);
        d.calls();
        let w = write(ANN, vec![("title".into(), vec!["Boss".into()])]);
        assert_eq!(update(&s, ANN, &w, None, None, true), Ok(false));
        assert_eq!(d.calls(), Vec::<String>::new());
    }
}
