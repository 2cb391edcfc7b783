//! Writing rows after the objects they name: a row whose `Resolve` field names an object this
//! run creates is written in a later wave than that object's row.

use super::{par_map, row};
use crate::plan::ObjectPlan;
use crate::transform::Transform;

/// Puts `items` in the order `order` gives (`order[k]` is the index of the item that goes to
/// position k), in place: each cycle of the permutation is followed once, by swaps.
pub(super) fn permute<T>(items: &mut [T], order: &[u32]) {
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        if placed[start] {
            continue;
        }
        let mut k = start;
        loop {
            placed[k] = true;
            let from = order[k] as usize;
            if from == start {
                break;
            }
            items.swap(k, from);
            k = from;
        }
    }
}

/// For each row, the wave it is written in: 0 for a row that names no object this run
/// creates or renames, else one more than the highest wave of the rows it names (through a
/// `Resolve` field); and for each row, whether another row names it. `None` when no row names
/// another's new DN. In a cycle (two new objects each naming the other) the reference that
/// closes it is ignored: a directory that checks references then refuses one of them, and
/// says why.
pub(super) fn reference_waves(
    op: &ObjectPlan,
    prepared: &[row::Prepared],
    names: &[crate::destination::AttributeName],
    pool: Option<&rayon::ThreadPool>,
) -> Option<(Vec<u32>, Vec<bool>)> {
    let resolved: Vec<&str> = op
        .fields
        .iter()
        .filter(|f| matches!(f.transform, Transform::Resolve { .. }) && !f.is_member_of())
        .map(|f| f.attribute.as_str())
        .collect();
    if resolved.is_empty() {
        return None;
    }
    let is_resolved = |name: &str| resolved.iter().any(|a| a.eq_ignore_ascii_case(name));
    let mut new_dns: foldhash::HashMap<&str, u32> =
        foldhash::HashMap::with_capacity_and_hasher(prepared.len(), Default::default());
    for (i, p) in prepared.iter().enumerate() {
        if let Some(dn) = p.planned.new_dn() {
            new_dns.insert(dn, i as u32);
        }
    }
    if new_dns.is_empty() {
        return None;
    }
    // The rows each row names, as one flat list: row i names targets[starts[i]..starts[i + 1]]
    // (on 100,000 new users a list per row was most of this step). Found in parallel, in
    // runs of rows: reading a packed new object's values is the work here.
    let named_in = |(first, rows): &(usize, &[row::Prepared])| -> (Vec<u32>, Vec<u32>) {
        let mut counts = Vec::with_capacity(rows.len());
        let mut found = Vec::new();
        for (k, p) in rows.iter().enumerate() {
            let i = first + k;
            let before = found.len();
            let mut name = |dn: &str| {
                if let Some(&j) = new_dns.get(dn)
                    && j as usize != i
                {
                    found.push(j);
                }
            };
            match &p.planned {
                row::Planned::Create { entry, .. } => {
                    for a in &resolved {
                        entry.values(a, names).into_iter().for_each(&mut name);
                    }
                }
                row::Planned::Update {
                    changes,
                    value_changes,
                    ..
                } => {
                    changes
                        .iter()
                        .filter(|(attribute, _)| is_resolved(attribute))
                        .flat_map(|(_, values)| values.iter())
                        .for_each(|v| name(v));
                    value_changes
                        .iter()
                        .filter(|c| is_resolved(&c.attribute))
                        .flat_map(|c| c.added.iter())
                        .for_each(|v| name(v));
                }
                _ => {}
            }
            counts.push((found.len() - before) as u32);
        }
        (counts, found)
    };
    const RUN: usize = 4096;
    let runs: Vec<(usize, &[row::Prepared])> = prepared
        .chunks(RUN)
        .enumerate()
        .map(|(c, rows)| (c * RUN, rows))
        .collect();
    let mut starts: Vec<u32> = Vec::with_capacity(prepared.len() + 1);
    let mut targets: Vec<u32> = Vec::new();
    for (counts, found) in par_map(pool, &runs, named_in) {
        let mut at = targets.len() as u32;
        for count in counts {
            starts.push(at);
            at += count;
        }
        targets.extend(found);
    }
    starts.push(targets.len() as u32);
    if targets.is_empty() {
        return None;
    }
    let refs = |i: usize| &targets[starts[i] as usize..starts[i + 1] as usize];
    let mut named = vec![false; prepared.len()];
    for j in &targets {
        named[*j as usize] = true;
    }
    // Depth-first without recursion: a chain of managers may be as long as the source.
    const UNSEEN: u32 = u32::MAX;
    const OPEN: u32 = u32::MAX - 1;
    let mut wave = vec![UNSEEN; prepared.len()];
    for start in 0..prepared.len() {
        if wave[start] != UNSEEN {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        wave[start] = OPEN;
        while let Some((i, next)) = stack.pop() {
            match refs(i).get(next) {
                Some(&j) => {
                    let j = j as usize;
                    stack.push((i, next + 1));
                    if wave[j] == UNSEEN {
                        wave[j] = OPEN;
                        stack.push((j, 0));
                    }
                }
                None => {
                    wave[i] = refs(i)
                        .iter()
                        .map(|j| wave[*j as usize])
                        .filter(|w| *w < OPEN)
                        .map(|w| w + 1)
                        .max()
                        .unwrap_or(0);
                }
            }
        }
    }
    Some((wave, named))
}

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permute_puts_each_item_where_the_order_says_in_place() {
        let mut items: Vec<char> = "abcdef".chars().collect();
        // Two cycles (0 2 4) and (1 5), and 3 in place.
        let order = [2, 5, 4, 3, 0, 1];
        permute(&mut items, &order);
        let expected: Vec<char> = order
            .iter()
            .map(|i| b"abcdef"[*i as usize] as char)
            .collect();
        assert_eq!(items, expected);
        // A stable sort by wave, as `apply_type` makes it, and back.
        let waves = [2u32, 0, 1, 0, 2, 1];
        let mut order: Vec<u32> = (0..6).collect();
        order.sort_by_key(|i| waves[*i as usize]);
        let mut rows: Vec<u32> = (0..6).collect();
        permute(&mut rows, &order);
        assert_eq!(rows, [1, 3, 2, 5, 0, 4]);
        let mut back = vec![0u32; 6];
        for (k, i) in order.iter().enumerate() {
            back[*i as usize] = k as u32;
        }
        permute(&mut rows, &back);
        assert_eq!(rows, [0, 1, 2, 3, 4, 5]);
    }
}
