//! `Resolve` fields: the DN of the object whose attribute has the row's value. An object
//! this run creates or changes counts with what it will have after the run (so a manager
//! created by another row is found in the same run); the directory is asked only when no row
//! has the value.
//!
//! A lookup can only be settled once every row is known: a later row may create the object,
//! or a second object with the same value, which makes the lookup ambiguous. Settling them all
//! after the read, though, was a pass over every row once the last one was read. So each row
//! is answered while it is prepared, from the rows prepared before it, and the answers are
//! checked once all rows are known: an answer stands unless its value later turned up on a
//! second row or its object's row failed. Those answers are taken back, and they and the
//! lookups no earlier row could answer are settled after the read, against every row. The
//! result is the same either way; only the work moves.

use foldhash::{HashMap, HashMapExt, HashSet};

use super::TypeRun;
use super::membership::Moved;
use super::row::{Planned, Prepared};
use crate::hooks::ValueChanges;
use crate::matching::{lowercase, same_values};
use crate::plan::ObjectPlan;
use crate::transform::{self, Resolver};

/// What the `Resolve` fields of one object type look up.
pub(super) struct ResolvePlan {
    /// The attributes looked up, lower-cased (attribute names are ASCII), each once.
    keys: Vec<String>,
    /// Per field: the position in `keys` of what a `Resolve` field looks up.
    key_of: Vec<Option<usize>>,
    /// Per field: a `Resolve` field that may be answered early. Its attribute is written by
    /// no other field, so an early answer can be taken back by removing the attribute.
    early: Vec<bool>,
    /// How many fields are `Resolve` fields (counted once, read for every row).
    field_count: usize,
}

impl ResolvePlan {
    /// How many `Resolve` fields a row of the type has: what its list of waiting fields is
    /// made room for, exactly (grown one push at a time it took room for four, 192 bytes a
    /// row held to the end of the run).
    pub fn field_count(&self) -> usize {
        self.field_count
    }

    pub fn new(op: &ObjectPlan) -> ResolvePlan {
        let mut keys: Vec<String> = Vec::new();
        // `memberOf` is resolved against the groups in scope, not here (see `membership`).
        let key_of = op
            .fields
            .iter()
            .map(|f| match &f.transform {
                transform::Transform::Resolve { attribute, .. } if !f.is_member_of() => {
                    let a = attribute.to_ascii_lowercase();
                    Some(keys.iter().position(|k| *k == a).unwrap_or_else(|| {
                        keys.push(a);
                        keys.len() - 1
                    }))
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        // A set of DNs is answered once every row is known, value by value.
        let early = op
            .fields
            .iter()
            .zip(&key_of)
            .map(|(f, key)| {
                key.is_some()
                    && f.delimiter.is_none()
                    && op
                        .fields
                        .iter()
                        .filter(|g| g.attribute.eq_ignore_ascii_case(&f.attribute))
                        .count()
                        == 1
            })
            .collect();
        ResolvePlan {
            keys,
            field_count: op
                .fields
                .iter()
                .filter(|f| matches!(f.transform, transform::Transform::Resolve { .. }))
                .count(),
            key_of,
            early,
        }
    }

    /// True when the type has `Resolve` fields.
    pub fn any(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The attributes looked up, each once (lower-cased: names compare ignoring case).
    pub fn attributes(&self) -> &[String] {
        &self.keys
    }
}

/// A `Resolve` field of a row: answered early (and checked once every row is known), or
/// waiting for every row.
pub(super) struct Deferred {
    /// Position in the field map.
    pub field: usize,
    /// The source value (looked up ignoring case, see `matching::lowercase`).
    pub value: Option<smol_str::SmolStr>,
    /// Answered early, and the answer applied to the row: the hash of the value, by which
    /// [`PlannedValues`] tells whether the answer still stands.
    pub answer: Option<u64>,
}

/// What a field's lookups find: the DNs (none, one, or for a set of DNs any number), and for a
/// set the values left out and why; `Err` fails the row.
type Answer = Result<(Vec<String>, Vec<String>), String>;

/// The rows that will have a value, by the value's hash.
struct Holders {
    first: u32,
    /// Some row was answered from `first` early.
    answered: bool,
    /// Further rows with the same hash (a second object with the value, or a collision).
    /// `None` nearly always: boxed, the map's slot is 24 bytes instead of 40, and a run
    /// holds one slot per object it will have (a million on a large first run).
    #[allow(clippy::box_collection)] // the point: 8 bytes in the slot, not a Vec's 24
    more: Option<Box<Vec<u32>>>,
}

impl Holders {
    fn rows(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.first).chain(self.more().iter().copied())
    }

    fn more(&self) -> &[u32] {
        self.more.as_deref().map_or(&[], Vec::as_slice)
    }

    fn push(&mut self, row: u32) {
        self.more.get_or_insert_default().push(row);
    }

    /// Removes `row`; `false` when it was the only holder.
    fn remove(&mut self, row: u32) -> bool {
        let more = self.more.as_deref_mut();
        if self.first == row {
            match more.and_then(Vec::pop) {
                Some(next) => self.first = next,
                None => return false,
            }
        } else if let Some(more) = more {
            more.retain(|r| *r != row);
        }
        if self.more.as_ref().is_some_and(|m| m.is_empty()) {
            self.more = None;
        }
        true
    }
}

/// What the rows prepared so far will have of the attributes `Resolve` looks up: per key of
/// the [`ResolvePlan`], the hash of the lower-cased value and the rows (positions in the
/// prepared list) whose objects will have it. Values themselves are read from the rows when
/// looked up, so the index holds no strings.
#[derive(Default)]
pub(super) struct PlannedValues {
    by_key: Vec<HashMap<u64, Holders>>,
    /// Values answered early that have since turned up on another row, or whose row failed:
    /// the answers given from them are taken back.
    spoiled: HashSet<(usize, u64)>,
    /// Rows with a `Resolve` field left to settle after the read.
    pending: Vec<u32>,
}

/// The first value of `attribute` that a row's object will have after this run: what the
/// row creates or changes it to, else what the matched object has.
fn value_after_run<'a>(tr: &'a TypeRun<'_>, p: &'a Prepared, attribute: &str) -> Option<&'a str> {
    let current = || p.entry.and_then(|i| tr.index.first(i, attribute));
    match &p.planned {
        Planned::Create { entry, .. } => entry.first(attribute, &tr.names),
        Planned::Update { changes, .. } => changes
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
            .map(|(_, values)| values.first().map(String::as_str))
            .unwrap_or_else(current),
        _ => current(),
    }
}

/// The DN a row's object will have after this run, if it has one.
fn dn_after_run<'a>(tr: &'a TypeRun<'_>, p: &'a Prepared) -> Option<&'a str> {
    // What it creates or renames to, else the matched object's own.
    p.planned
        .new_dn()
        .or_else(|| p.entry.map(|i| tr.index.dn(i)))
}

fn hash(value: &str) -> u64 {
    super::conflicts::hash_str(&lowercase(value))
}

/// What a row's object has of each key, as the index holds it.
fn contributions<'a>(
    tr: &'a TypeRun<'_>,
    p: &'a Prepared,
) -> impl Iterator<Item = (usize, u64)> + 'a {
    // A row whose object will not exist holds nothing.
    let keys = if dn_after_run(tr, p).is_some() {
        tr.resolve.keys.as_slice()
    } else {
        &[]
    };
    keys.iter()
        .enumerate()
        .filter_map(move |(key, attribute)| Some((key, hash(value_after_run(tr, p, attribute)?))))
}

impl PlannedValues {
    pub fn new(plan: &ResolvePlan) -> PlannedValues {
        PlannedValues {
            by_key: plan.keys.iter().map(|_| HashMap::new()).collect(),
            ..Default::default()
        }
    }

    /// Takes in a batch of rows just prepared, `rows[start..]`: marks the values their early
    /// answers came from, then adds what their objects will have.
    pub fn add_batch(&mut self, tr: &TypeRun<'_>, rows: &[Prepared], start: usize) {
        if !tr.resolve.any() {
            return;
        }
        for (i, p) in rows.iter().enumerate().skip(start) {
            if matches!(p.planned, Planned::Failed { .. }) {
                continue;
            }
            for d in &p.deferred {
                match d.answer {
                    Some(h) => {
                        if let Some(key) = tr.resolve.key_of[d.field]
                            && let Some(holders) = self.by_key[key].get_mut(&h)
                        {
                            holders.answered = true;
                        }
                    }
                    None => {
                        if self.pending.last() != Some(&(i as u32)) {
                            self.pending.push(i as u32);
                        }
                    }
                }
            }
        }
        for (i, p) in rows.iter().enumerate().skip(start) {
            self.add_row(tr, p, i as u32);
        }
    }

    fn add_row(&mut self, tr: &TypeRun<'_>, p: &Prepared, row: u32) {
        for (key, h) in contributions(tr, p) {
            match self.by_key[key].entry(h) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Holders {
                        first: row,
                        answered: false,
                        more: None,
                    });
                }
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    let holders = slot.get_mut();
                    if holders.answered {
                        self.spoiled.insert((key, h));
                    }
                    holders.push(row);
                }
            }
        }
    }

    fn remove_row(&mut self, tr: &TypeRun<'_>, p: &Prepared, row: u32) {
        for (key, h) in contributions(tr, p) {
            let map = &mut self.by_key[key];
            let Some(holders) = map.get_mut(&h) else {
                continue;
            };
            if holders.answered {
                self.spoiled.insert((key, h));
            }
            if !holders.remove(row) {
                map.remove(&h);
            }
        }
    }

    /// Fails rows (step 2's conflicts) and keeps the index true to what they will have
    /// after the run: a failed row's object keeps its current values, or is not created.
    pub fn fail_rows(
        &mut self,
        tr: &TypeRun<'_>,
        prepared: &mut [Prepared],
        failures: Vec<(usize, String)>,
    ) {
        for (i, message) in failures {
            if tr.resolve.any() {
                self.remove_row(tr, &prepared[i], i as u32);
            }
            prepared[i].fail(None, message);
            if tr.resolve.any() {
                self.add_row(tr, &prepared[i], i as u32);
            }
        }
    }

    /// The DNs of the objects that will have `value` of key `key` after the run, each once.
    fn planned_dns<'a>(
        &self,
        tr: &'a TypeRun<'_>,
        rows: &'a [Prepared],
        key: usize,
        value: &str,
    ) -> Vec<&'a str> {
        let wanted = lowercase(value);
        let attribute = &tr.resolve.keys[key];
        let mut dns: Vec<&str> = Vec::new();
        let Some(holders) = self.by_key[key].get(&super::conflicts::hash_str(&wanted)) else {
            return dns;
        };
        for p in holders.rows().filter_map(|row| rows.get(row as usize)) {
            let same = value_after_run(tr, p, attribute).is_some_and(|v| lowercase(v) == wanted);
            if let (true, Some(dn)) = (same, dn_after_run(tr, p))
                && !dns.contains(&dn)
            {
                dns.push(dn);
            }
        }
        dns
    }

    /// Settles every `Resolve` field left once all rows are known (see the module docs).
    /// Returns the warnings for values a set of DNs left out, each naming its row.
    pub fn settle(
        mut self,
        tr: &TypeRun<'_>,
        destination: &dyn crate::destination::Destination,
        prepared: &mut [Prepared],
        pool: Option<&rayon::ThreadPool>,
        moved: &Moved,
    ) -> Vec<String> {
        use rayon::prelude::*;
        let mut pending = std::mem::take(&mut self.pending);
        if !self.spoiled.is_empty() {
            // Rare: take back the answers given from spoiled values, wherever they are.
            for (i, p) in prepared.iter_mut().enumerate() {
                let mut taken_back = false;
                for d in p.deferred.iter_mut() {
                    if let Some(h) = d.answer
                        && let Some(key) = tr.resolve.key_of[d.field]
                        && self.spoiled.contains(&(key, h))
                    {
                        d.answer = None;
                        take_back(tr, &mut p.planned, d.field);
                        taken_back = true;
                    }
                }
                if taken_back {
                    pending.push(i as u32);
                }
            }
            pending.sort_unstable();
            pending.dedup();
        }
        // First every answer, against rows no one changes meanwhile; then each row takes its own.
        let answers = |&row: &u32| -> (u32, Vec<(usize, Answer)>) {
            let Some(p) = prepared.get(row as usize) else {
                return (row, Vec::new());
            };
            let answers = p
                .deferred
                .iter()
                .filter(|d| d.answer.is_none() && !tr.plan.fields[d.field].is_member_of())
                .map(|d| {
                    (
                        d.field,
                        self.answer(tr, destination, prepared, d.field, d.value.as_deref()),
                    )
                })
                .collect();
            (row, answers)
        };
        let answered: Vec<_> = match pool {
            Some(pool) => pool.install(|| pending.par_iter().map(answers).collect()),
            None => pending.iter().map(answers).collect(),
        };
        let mut warnings = Vec::new();
        for (row, answers) in answered {
            let Some(p) = prepared.get_mut(row as usize) else {
                continue;
            };
            for (field, answer) in answers {
                match answer {
                    Ok((dns, left_out)) => {
                        let location = tr.plan.fields[field].location();
                        warnings.extend(
                            left_out
                                .into_iter()
                                .map(|why| format!("row {}: {location}: {why}", p.row)),
                        );
                        apply(tr, Some(moved), p, field, dns);
                    }
                    Err(message) => {
                        p.fail(Some(tr.plan.fields[field].location()), message);
                        break;
                    }
                }
            }
        }
        warnings
    }

    /// The answer to a field's lookups once every row is known: this run's objects first,
    /// then the directory. A set of DNs (a field with a delimiter) looks each value up on its
    /// own and leaves out, with a warning, a value that names no object or several; a DN found
    /// twice counts once.
    fn answer(
        &self,
        tr: &TypeRun<'_>,
        destination: &dyn crate::destination::Destination,
        rows: &[Prepared],
        field: usize,
        value: Option<&str>,
    ) -> Answer {
        let f = &tr.plan.fields[field];
        let (Some(value), transform::Transform::Resolve { attribute, .. }, Some(key)) =
            (value, &f.transform, tr.resolve.key_of[field])
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        let lookup = |value: &str| -> Result<Option<String>, String> {
            match self.planned_dns(tr, rows, key, value).as_slice() {
                [dn] => Ok(Some(dn.to_string())),
                [] => tr
                    .resolver
                    .on(destination)
                    .resolve(attribute, value)
                    .map_err(|e| e.to_string()),
                many => Err(format!(
                    "Resolve: {} objects have {attribute}={value}: {}",
                    many.len(),
                    many.join("; ")
                )),
            }
        };
        let Some(delimiter) = &f.delimiter else {
            return lookup(value).map(|dn| (dn.into_iter().collect(), Vec::new()));
        };
        let mut dns: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::default();
        let mut left_out = Vec::new();
        for one in super::prepare::split_values(value, delimiter) {
            match lookup(&one) {
                Ok(Some(dn)) => {
                    if seen.insert(crate::destination::value_key(&dn)) {
                        dns.push(dn);
                    }
                }
                Ok(None) => {
                    left_out.push(format!("{one:?} left out: no object has {attribute}={one}"))
                }
                Err(why) => left_out.push(format!("{one:?} left out: {why}")),
            }
        }
        Ok((dns, left_out))
    }
}

/// The rows prepared before a batch, and what they will have: what early answers come from.
pub(super) struct Earlier<'a> {
    pub values: &'a PlannedValues,
    pub rows: &'a [Prepared],
}

/// Answers a row's `Resolve` fields from the rows prepared before it, where that answer is
/// sure to stand unless a later row changes it (see the module docs); an empty value is
/// settled at once. The rest wait in `p.deferred`.
pub(super) fn answer_early(tr: &TypeRun<'_>, earlier: &Earlier<'_>, p: &mut Prepared) {
    if p.deferred.is_empty() || matches!(p.planned, Planned::Failed { .. }) {
        return;
    }
    let mut deferred = std::mem::take(&mut p.deferred);
    deferred.retain_mut(|d| {
        if tr.plan.fields[d.field].is_dn_set() {
            // Settled with every row known, against the directory after earlier types' writes.
            return true;
        }
        let Some(value) = &d.value else {
            // No value resolves to no value, whatever the other rows hold.
            apply(tr, None, p, d.field, Vec::new());
            return false;
        };
        if let Some(dn) = early_answer(tr, earlier, d.field, value) {
            d.answer = Some(hash(value));
            apply(tr, None, p, d.field, vec![dn]);
        }
        true
    });
    p.deferred = deferred;
}

/// The DN of the one earlier row's object that will have `value`, if there is exactly one.
fn early_answer(
    tr: &TypeRun<'_>,
    earlier: &Earlier<'_>,
    field: usize,
    value: &str,
) -> Option<String> {
    if !tr.resolve.early[field] {
        return None;
    }
    let key = tr.resolve.key_of[field]?;
    let holders = earlier.values.by_key[key].get(&hash(value))?;
    if !holders.more().is_empty() {
        return None;
    }
    let holder = earlier.rows.get(holders.first as usize)?;
    let wanted = lowercase(value);
    let same =
        value_after_run(tr, holder, &tr.resolve.keys[key]).is_some_and(|v| lowercase(v) == wanted);
    dn_after_run(tr, holder).filter(|_| same).map(String::from)
}

/// Puts a `Resolve` field's values in the row's write: into a new object, or, for an existing
/// one, as a change when they differ from what it has.
fn apply(
    tr: &TypeRun<'_>,
    moved: Option<&Moved>,
    p: &mut Prepared,
    field: usize,
    values: Vec<String>,
) {
    let f = &tr.plan.fields[field];
    if f.is_member_of() {
        // Written to the groups, never to the object (see `membership`).
        return;
    }
    match &mut p.planned {
        Planned::Create { entry, .. } if !values.is_empty() => {
            let name = f.attribute.clone();
            entry.modify(&tr.names, |entry| {
                let at = entry.attributes().len();
                entry.add_owned_at(at, name, values);
            });
        }
        Planned::Update { .. } | Planned::Unchanged if !f.create_only => {
            let Some(i) = p.entry else {
                return;
            };
            let current = tr.index.values(i, &f.attribute);
            let change = if f.is_dn_set() {
                let current = match moved {
                    Some(moved) => moved.apply(current),
                    None => current
                        .into_iter()
                        .map(std::borrow::Cow::Borrowed)
                        .collect(),
                };
                let changes = super::membership::set_difference(&current, values);
                if changes.0.is_empty() && changes.1.is_empty() {
                    return;
                }
                Change::Values(changes)
            } else {
                if same_values(&current, &values) {
                    return;
                }
                Change::Replace(values)
            };
            if let Planned::Unchanged = &p.planned {
                p.planned = Planned::Update {
                    dn: tr.index.dn(i).to_string(),
                    changes: Vec::new(),
                    value_changes: Default::default(),
                    password: None,
                    rename_to: None,
                };
            }
            if let Planned::Update {
                changes,
                value_changes,
                ..
            } = &mut p.planned
            {
                match change {
                    Change::Replace(values) => changes.push((f.attribute.clone(), values)),
                    Change::Values((added, removed)) => value_changes.push(ValueChanges {
                        attribute: f.attribute.clone(),
                        added,
                        removed,
                    }),
                }
            }
        }
        _ => {}
    }
}

/// New DNs this run planned and then did not create (a create vetoed in `row_adding`,
/// refused by the directory, or given another DN by a hook), by their
/// [`value_key`](crate::destination::value_key), each with the row that planned it.
pub(super) type Uncreated = HashMap<String, u64>;

/// Takes back a row's `Resolve` answers that name an object in `uncreated`: the row then
/// writes what it would have written had that object never been planned (no value, or the
/// object's other values), so no reference is left pointing at nothing. Returns a warning
/// for each value taken back. The row has not been written: rows that name new objects are
/// written in waves after them (see `reference_waves`).
pub(super) fn take_back_uncreated(
    tr: &TypeRun<'_>,
    p: &mut Prepared,
    uncreated: &Uncreated,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let row = p.row;
    let mut note = |location: String, dn: &str| {
        let key = crate::destination::value_key(dn);
        if let Some(by) = uncreated.get(&key) {
            warnings.push(format!(
                "row {row}: {location}: {dn} left out: row {by} did not create it"
            ));
            true
        } else {
            false
        }
    };
    for f in tr.plan.fields.iter() {
        if !matches!(f.transform, transform::Transform::Resolve { .. }) || f.is_member_of() {
            continue;
        }
        let attribute = &f.attribute;
        match &mut p.planned {
            Planned::Create { entry, .. } => {
                let named: Vec<String> = entry
                    .values(attribute, &tr.names)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let kept: Vec<String> = named
                    .iter()
                    .filter(|dn| !note(f.location(), dn))
                    .cloned()
                    .collect();
                if kept.len() != named.len() {
                    entry.modify(&tr.names, |e| {
                        e.remove(attribute);
                        if !kept.is_empty() {
                            e.set(attribute, kept);
                        }
                    });
                }
            }
            Planned::Update {
                changes,
                value_changes,
                ..
            } => {
                let current = p.entry.map(|i| tr.index.values(i, attribute));
                changes.retain_mut(|(name, values)| {
                    if name != attribute {
                        return true;
                    }
                    let before = values.len();
                    values.retain(|dn| !note(f.location(), dn));
                    // What is left may be what the object has: then there is nothing to write.
                    values.len() == before
                        || !current.as_ref().is_some_and(|c| same_values(c, values))
                });
                let mut edits = std::mem::take(value_changes).into_vec();
                for c in edits.iter_mut().filter(|c| &c.attribute == attribute) {
                    c.added.retain(|dn| !note(f.location(), dn));
                }
                edits.retain(|c| !c.is_empty());
                for c in edits {
                    value_changes.push(c);
                }
            }
            _ => {}
        }
    }
    p.planned.unchanged_if_empty();
    warnings
}

/// How a `Resolve` field changes an existing object: its values replaced, or for a set of
/// DNs the values (added, removed).
enum Change {
    Replace(Vec<String>),
    Values((Vec<String>, Vec<String>)),
}

/// Undoes [`apply`] for a field written by no other field.
fn take_back(tr: &TypeRun<'_>, planned: &mut Planned, field: usize) {
    let attribute = &tr.plan.fields[field].attribute;
    match planned {
        Planned::Create { entry, .. } => entry.modify(&tr.names, |e| e.remove(attribute)),
        Planned::Update { changes, .. } => {
            changes.retain(|(name, _)| name != attribute);
            planned.unchanged_if_empty();
        }
        _ => {}
    }
}
