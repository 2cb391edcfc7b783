//! Rows that conflict: two rows with one key, or two that would create (or rename to) one DN.

use std::hash::BuildHasher;

use super::{TypeRun, row};

/// Step 2 of a type's run: rows that conflict, so that the outcome does not depend on thread
/// timing. Two rows with one key, or two rows that would create (or rename to) one DN, all
/// fail, each naming the others. Rows are grouped by sorting the hashes of their keys and new
/// DNs, made in step 1, rather than through maps of strings: on 100,000 rows those maps (a
/// string and a list per row) were most of this step. Strings are compared only within a
/// group, to tell collisions apart. Returns the failures by position, in order.
pub(super) fn find(tr: &TypeRun<'_>, prepared: &[row::Prepared]) -> Vec<(usize, String)> {
    let key_hashes: Vec<(u64, usize)> = prepared
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.cancelled)
        .filter_map(|(i, p)| p.hashes.key.map(|h| (h.get(), i)))
        .collect();
    let mut conflicts: Vec<(usize, String)> = Vec::new();
    let same_key = |i: usize, j: usize| prepared[i].norm_key == prepared[j].norm_key;
    fail_together(
        prepared,
        &shared_groups(key_hashes, same_key),
        &mut conflicts,
        |p, others| {
            format!(
                "duplicate key \"{}\": also on row {others}",
                p.key.as_deref().unwrap_or("")
            )
        },
    );
    let dn_hashes: Vec<(u64, usize)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.hashes.new_dn.map(|h| (h.get(), i)))
        .collect();
    let same_dn = |i: usize, j: usize| {
        new_dn_key(tr, &prepared[i].planned) == new_dn_key(tr, &prepared[j].planned)
    };
    fail_together(
        prepared,
        &shared_groups(dn_hashes, same_dn),
        &mut conflicts,
        |p, others| {
            format!(
                "{} would also be the DN of row {others}",
                p.planned.new_dn().unwrap_or("")
            )
        },
    );
    conflicts.sort();
    conflicts
}

/// How many other rows a conflict's message names; the rest are counted.
const OTHERS_NAMED: usize = 3;

/// For every group of two or more rows, records a failure for each row, naming a few of the
/// others and counting the rest, so that a message stays short however large the group
/// (8,000 identical rows made 64 million row numbers).
pub(super) fn fail_together(
    prepared: &[row::Prepared],
    groups: &[Vec<usize>],
    conflicts: &mut Vec<(usize, String)>,
    message: impl Fn(&row::Prepared, &str) -> String,
) {
    for rows in groups {
        for &i in rows {
            conflicts.push((
                i,
                message(&prepared[i], &others_in_group(|j| prepared[j].row, rows, i)),
            ));
        }
    }
}

/// `row 3, 9, 12 and 7,996 other rows`: the rows of `group` other than `i`, the first few by
/// number.
fn others_in_group(row: impl Fn(usize) -> u64, group: &[usize], i: usize) -> String {
    let mut named = String::new();
    for (n, j) in group
        .iter()
        .filter(|j| **j != i)
        .take(OTHERS_NAMED)
        .enumerate()
    {
        if n > 0 {
            named.push_str(", ");
        }
        named.push_str(&row(*j).to_string());
    }
    match group.len().saturating_sub(1 + OTHERS_NAMED) {
        0 => named,
        rest => format!(
            "{named} and {rest} other row{}",
            if rest == 1 { "" } else { "s" }
        ),
    }
}

/// The hasher for grouping rows: fixed, so groups (and so reports) never depend on a seed.
const HASH_STATE: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5eed);

pub(super) fn hash_str(s: &str) -> u64 {
    HASH_STATE.hash_one(s)
}

/// The groups of two or more items that share a value, each in ascending order, given each
/// item's hash; `same` tells true equals from hash collisions.
pub(super) fn shared_groups(
    mut hashed: Vec<(u64, usize)>,
    same: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<usize>> {
    hashed.sort_unstable();
    let mut groups = Vec::new();
    for run in hashed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
    {
        let mut rest: Vec<usize> = run.iter().map(|(_, i)| *i).collect();
        while let Some(&first) = rest.first() {
            let (group, others): (Vec<usize>, Vec<usize>) =
                rest.iter().partition(|&&j| same(first, j));
            if group.len() > 1 {
                groups.push(group);
            }
            rest = others;
        }
    }
    groups
}

/// The normal form of the DN a row creates or renames to, compared to find two rows aiming at
/// one DN. A create's DN is its RDN (compared ignoring case) on its container, whose normal
/// form is known when the container is the job's fixed one: no DN parse per row. A rename's
/// DN is parsed.
fn new_dn_key(tr: &TypeRun<'_>, planned: &row::Planned) -> Option<String> {
    let mut out = String::new();
    push_new_dn_key(tr, planned, &mut out).then_some(out)
}

/// The hash of [`new_dn_key`], made in a reused buffer: every created row has one.
pub(super) fn new_dn_hash(tr: &TypeRun<'_>, planned: &row::Planned) -> Option<u64> {
    with_scratch(|out| push_new_dn_key(tr, planned, out).then(|| hash_str(out)))
}

/// Calls `f` with this thread's scratch string, empty: for strings made for every row only
/// to be hashed or copied (a DN key, a normalised key), without allocating each one.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut String) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        f(out)
    })
}

/// Appends [`new_dn_key`]; `false` when the row creates or renames nothing.
fn push_new_dn_key(tr: &TypeRun<'_>, planned: &row::Planned, out: &mut String) -> bool {
    match planned {
        row::Planned::Create {
            entry, container, ..
        } => {
            let dn = entry.dn();
            let container = tr.container(container);
            let parsed;
            let norm = match &tr.fixed_container {
                Some((raw, norm)) if raw == container => norm.as_str(),
                _ => {
                    parsed = crate::dn::normalize(container).unwrap_or_default();
                    parsed.as_str()
                }
            };
            let rdn = dn
                .get(..dn.len().saturating_sub(container.len()))
                .unwrap_or(dn);
            crate::text::push_lowercase(out, rdn);
            out.push_str(norm);
            true
        }
        other => match other.new_dn().and_then(|dn| crate::dn::normalize(dn).ok()) {
            Some(norm) => {
                out.push_str(&norm);
                true
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{others_in_group, shared_groups};

    #[test]
    fn groups_are_of_equal_values_not_of_equal_hashes() {
        // Items 0, 2 and 5 share hash 7; of them only 0 and 5 are equal (2 collides).
        // Items 1 and 3 share hash 9 and are equal; item 4 is alone.
        let values = ["a", "b", "x", "b", "c", "a"];
        let hashed = vec![(7, 0), (9, 1), (7, 2), (9, 3), (1, 4), (7, 5)];
        let mut groups = shared_groups(hashed, |i, j| values[i] == values[j]);
        groups.sort();
        assert_eq!(groups, [vec![0, 5], vec![1, 3]]);
        assert!(shared_groups(vec![(1, 0), (2, 1)], |_, _| true).is_empty());
    }

    #[test]
    fn a_conflict_names_a_few_other_rows_and_counts_the_rest() {
        let row = |i: usize| i as u64 + 2;
        assert_eq!(others_in_group(row, &[0, 1], 0), "3");
        assert_eq!(others_in_group(row, &[0, 1, 2, 3], 1), "2, 4, 5");
        assert_eq!(
            others_in_group(row, &[0, 1, 2, 3, 4], 0),
            "3, 4, 5 and 1 other row"
        );
        let many: Vec<usize> = (0..8000).collect();
        assert_eq!(
            others_in_group(row, &many, 0),
            "3, 4, 5 and 7996 other rows"
        );
    }
}
