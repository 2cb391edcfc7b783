//! Step 4: objects in scope that no source row matched are deleted or deprovisioned, all or
//! nothing: the whole set is withheld when it is unsafe (an empty source, rows whose key is
//! unknown, more than the threshold).

use foldhash::HashSet;
use std::ops::ControlFlow;

use super::row::{RowRecord, Shared};
use super::{TypeRun, guard, par_map};
use crate::destination::Modification;
use crate::dn::{self, Dn};
use crate::hooks::RowDelete;
use crate::plan::DeleteThreshold;
use crate::report::{DeleteFailure, DetailType, Report};

/// AD's `userAccountControl` "account disabled" bit.
const ACCOUNT_DISABLE: u64 = 2;
/// AD's `userAccountControl` for a normal, enabled account.
const NORMAL_ACCOUNT: u64 = 512;

/// An object in scope that no row matched: its DN and account control, as the key index
/// keeps them.
struct Orphan<'a> {
    dn: &'a str,
    account_control: Option<&'a str>,
}

impl Orphan<'_> {
    fn disabled(&self) -> bool {
        self.account_control
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|v| v & ACCOUNT_DISABLE != 0)
    }
}

/// Runs the deletes of one object type; returns `true` when they were withheld. Each object
/// deleted goes into `moved` as (its DN, `None`), each deprovisioned one moved elsewhere as
/// (its old DN, its new one), for the references to them (see `membership`).
pub(super) fn run(
    shared: &Shared<'_>,
    tr: &TypeRun<'_>,
    results: &[Vec<RowRecord>],
    report: &mut Report,
    pool: Option<&rayon::ThreadPool>,
    moved: &mut Vec<(String, Option<String>)>,
) -> bool {
    let op = tr.plan;
    if !op.delete {
        return false;
    }
    let code = op.object_type.code();
    let seen: HashSet<&str> = results
        .iter()
        .flatten()
        .filter_map(|r| r.norm_key.as_deref())
        .collect();
    let deprovision_base = op
        .deprovision_container
        .as_deref()
        .and_then(|c| Dn::parse(c).ok());
    let mut candidates: Vec<Orphan<'_>> = tr
        .index
        .keys()
        .filter(|(k, _)| !seen.contains(k))
        .flat_map(|(_, positions)| {
            positions.iter().map(|&i| Orphan {
                dn: tr.index.dn(i),
                account_control: tr.index.first(i, "userAccountControl"),
            })
        })
        .filter(|e| {
            // An object deprovisioned by an earlier run stays as it is.
            !(op.deprovision
                && e.disabled()
                && match &deprovision_base {
                    None => true,
                    Some(base) => Dn::parse(e.dn).is_ok_and(|d| d.is_within(base)),
                })
        })
        .collect();
    // Directory order, not hash order: the report must not vary between runs.
    candidates.sort_by_cached_key(|e| dn::normalize(e.dn).unwrap_or_default());
    if tr.index.keyless() > 0 {
        report.detail(
            DetailType::Information,
            format!(
                "object type {code}: {} objects in scope have no key value and were left alone",
                tr.index.keyless()
            ),
        );
    }
    if candidates.is_empty() {
        return false;
    }
    let in_scope = tr.index.len();
    let withhold = |reason: String| {
        format!(
            "object type {code}: {} deletes withheld: {reason}",
            candidates.len()
        )
    };
    let reason = if tr.row_count == 0 {
        Some(withhold(
            "the source returned no rows, and an empty source never deletes".into(),
        ))
    } else if results.iter().flatten().any(|r| r.norm_key.is_none()) {
        Some(withhold(
            "some rows failed before their key was known, so their objects cannot be told from orphans".into(),
        ))
    } else {
        match op.delete_threshold {
            DeleteThreshold::Count(n) if candidates.len() > n => Some(withhold(format!(
                "more than the threshold of {n} (Destination.DeleteThreshold)"
            ))),
            DeleteThreshold::Percent(p)
                if candidates.len() as f64 * 100.0 > p * in_scope as f64 =>
            {
                Some(withhold(format!(
                    "more than {p}% of the {in_scope} objects in scope (Destination.DeleteThreshold)"
                )))
            }
            _ => None,
        }
    };
    if let Some(reason) = reason {
        report.detail(DetailType::Error, reason);
        return true;
    }

    let outcomes = par_map(pool, &candidates, |entry| remove(shared, tr, entry));
    for (orphan, (dn, outcome)) in candidates.iter().zip(outcomes) {
        if matches!(outcome, Removal::Done | Removal::DoneButHookFailed(_))
            && !shared.dry_run
            && dn != orphan.dn
        {
            moved.push((orphan.dn.to_string(), Some(dn.clone())));
        } else if matches!(outcome, Removal::Done | Removal::DoneButHookFailed(_))
            && !shared.dry_run
            && !op.deprovision
        {
            moved.push((dn.clone(), None));
        }
        match outcome {
            Removal::Kept => {}
            Removal::Done => {
                report.counts.deleted += 1;
                report.deleted.push(dn);
            }
            Removal::DoneButHookFailed(message) => {
                report.counts.deleted += 1;
                report.deleted.push(dn.clone());
                report.delete_failed.push(DeleteFailure { dn, message });
            }
            Removal::Failed(message) => report.delete_failed.push(DeleteFailure { dn, message }),
        }
    }
    false
}

enum Removal {
    Kept,
    Done,
    DoneButHookFailed(String),
    Failed(String),
}

fn remove(shared: &Shared<'_>, tr: &TypeRun<'_>, entry: &Orphan<'_>) -> (String, Removal) {
    let op = tr.plan;
    let event = RowDelete {
        object_type: op.object_type,
        dn: entry.dn.to_string(),
        deprovision: op.deprovision,
    };
    match guard(|| shared.hooks.row_deleting(shared.ctx, &event)) {
        Err(m) => {
            return (
                entry.dn.to_string(),
                Removal::Failed(format!("row_deleting: {m}")),
            );
        }
        Ok(ControlFlow::Break(())) => return (entry.dn.to_string(), Removal::Kept),
        Ok(ControlFlow::Continue(())) => {}
    }
    let done = if shared.dry_run {
        Ok(entry.dn.to_string())
    } else if op.deprovision {
        deprovision(
            shared,
            op.deprovision_container.as_deref(),
            op.create_containers,
            entry,
        )
    } else {
        shared
            .destination
            .delete(entry.dn)
            .map(|()| entry.dn.to_string())
            .map_err(|e| e.to_string())
    };
    match done {
        Err(m) => (entry.dn.to_string(), Removal::Failed(m)),
        Ok(dn) => match guard(|| shared.hooks.row_deleted(shared.ctx, &event)) {
            Ok(()) => (dn, Removal::Done),
            Err(m) => (
                dn,
                Removal::DoneButHookFailed(format!("removed, but row_deleted failed: {m}")),
            ),
        },
    }
}

/// Disables the account and moves it to the deprovision container; returns its DN after.
fn deprovision(
    shared: &Shared<'_>,
    container: Option<&str>,
    create_containers: bool,
    entry: &Orphan<'_>,
) -> Result<String, String> {
    let current = entry
        .account_control
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(NORMAL_ACCOUNT);
    if current & ACCOUNT_DISABLE == 0 {
        shared
            .destination
            .modify(
                entry.dn,
                &[Modification::Replace(
                    "userAccountControl".into(),
                    vec![(current | ACCOUNT_DISABLE).to_string()],
                )],
            )
            .map_err(|e| e.to_string())?;
    }
    let Some(container) = container else {
        return Ok(entry.dn.to_string());
    };
    let parsed = Dn::parse(entry.dn).map_err(|e| e.to_string())?;
    let Some(rdn) = parsed.rdns.first() else {
        return Err("the root entry cannot be deprovisioned".into());
    };
    let head = Dn {
        rdns: vec![rdn.clone()],
    };
    super::apply::ensure_container(shared, container, create_containers)
        .map_err(|e| format!("disabled, but {e}"))?;
    let target = format!("{head},{container}");
    shared
        .destination
        .rename(entry.dn, &target)
        .map_err(|e| format!("disabled, but the move to {container} failed: {e}"))?;
    Ok(target)
}
