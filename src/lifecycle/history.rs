//! A job's history: runs and skipped fires, newest first, trimmed to the runner's limit, and
//! the records (OIG's history entries, Qlik's execution results) made from them.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::runner::{HistoryItem, Registry, RunRecord};
use super::{
    ExecutionResult, HistoryEntry, HistoryPage, HistoryStatus, JobState, LifecycleError, RunId,
    Runner, TaskStatus, Trigger,
};
use crate::report::{Report, RunStatus};

/// The newest runs of a job whose reports keep their lists of DNs and failed rows; older
/// reports keep counts, status, times and messages.
pub const FULL_REPORTS_KEPT: usize = 20;

impl Runner {
    /// A scheduled fire that found the job running: a finished record with Qlik's `Skipped`.
    pub(super) fn record_skip(
        &self,
        reg: &mut Registry,
        job: &str,
        id: RunId,
        at: DateTime<Utc>,
        fired_at: Option<DateTime<Utc>>,
        why: &LifecycleError,
    ) {
        let message = why.to_string();
        let entry = HistoryEntry {
            run_id: None,
            trigger: Trigger::Schedule,
            fire_time: fired_at.map(crate::clock::iso),
            start_time: crate::clock::iso(at),
            end_time: Some(crate::clock::iso(at)),
            status: HistoryStatus::Skipped,
            task_status: TaskStatus::Skipped,
            error_message: Some(message.clone()),
        };
        let exec = ExecutionResult {
            id: format!("{id}.0"),
            executing_node_name: crate::report::node_name(),
            status: TaskStatus::Skipped,
            start_time: crate::clock::iso(at),
            stop_time: crate::clock::iso(at),
            duration: 0,
            details: vec![crate::report::Detail {
                details_type: 1,
                message,
                detail_created_date: crate::clock::iso(at),
            }],
            script_log_available: false,
            script_log_location: String::new(),
            script_log_size: 0,
        };
        self.push_history(reg, job, HistoryItem::Skipped(Box::new((entry, exec))));
    }

    pub(super) fn push_history(&self, reg: &mut Registry, job: &str, item: HistoryItem) {
        let limit = self.0.history_limit;
        let history = reg.history.entry(job.to_string()).or_default();
        history.push_back(item);
        let mut forget = Vec::new();
        while history.len() > limit {
            // The oldest entry goes; a run still under way is kept (it is never the oldest
            // unless a concurrent job has outlived `limit` newer runs).
            match history.front() {
                Some(HistoryItem::Run(id)) if reg.active.values().any(|a| a == id) => break,
                Some(HistoryItem::Run(id)) => forget.push(*id),
                _ => {}
            }
            history.pop_front();
        }
        for id in forget {
            reg.runs.remove(&id);
        }
        // Reports of older runs lose their per-object lists (a 100,000-row run names every
        // DN it wrote); counts, status, times and messages stay.
        let older: Vec<RunId> = reg
            .history
            .get(job)
            .into_iter()
            .flat_map(|h| h.iter().rev())
            .filter_map(|item| match item {
                HistoryItem::Run(id) => Some(*id),
                HistoryItem::Skipped(_) => None,
            })
            .skip(FULL_REPORTS_KEPT)
            .collect();
        for id in older {
            if let Some(report) = reg.runs.get_mut(&id).and_then(|r| r.report.as_mut()) {
                // Copied only if a poller still holds it.
                slim(Arc::make_mut(report));
            }
        }
    }

    /// OIG's job state: `RUNNING` while a run is under way, `INTERRUPTED` when the last run
    /// was cancelled or timed out, else `STOPPED`.
    pub fn job_state(&self, job: &str) -> JobState {
        let reg = self.lock();
        if reg.active.contains_key(job) {
            return JobState::Running;
        }
        let last_run = reg.history.get(job).and_then(|h| {
            h.iter().rev().find_map(|item| match item {
                HistoryItem::Run(id) => reg.runs.get(id),
                HistoryItem::Skipped(..) => None,
            })
        });
        match last_run.and_then(|r| r.report.as_ref()) {
            Some(r) if r.status == RunStatus::Aborted => JobState::Interrupted,
            _ => JobState::Stopped,
        }
    }

    /// The last attempt of the job's run or skipped fire that ended last (Qlik's
    /// `operational.lastExecutionResult`).
    pub fn last_execution(&self, job: &str) -> Option<ExecutionResult> {
        let reg = self.lock();
        // The one that ended last: a fire skipped while a run went on is older than the
        // run's end. (All times are UTC RFC 3339 from one clock, so text order is time order.)
        reg.history
            .get(job)?
            .iter()
            .filter_map(|item| match item {
                HistoryItem::Run(id) => reg.runs.get(id)?.executions.last().map(|e| (e, 1)),
                HistoryItem::Skipped(skip) => Some((&skip.1, 0)),
            })
            // On a tie the run wins: it cannot have ended before a fire it made skip.
            .max_by(|(a, a_run), (b, b_run)| (&a.stop_time, a_run).cmp(&(&b.stop_time, b_run)))
            .map(|(e, _)| e.clone())
    }

    /// Page `page` (0 first) of `job`'s runs, newest first, `page_size` a page.
    pub fn history(&self, job: &str, page: usize, page_size: usize) -> HistoryPage {
        let reg = self.lock();
        let items = reg.history.get(job);
        let total = items.map_or(0, VecDeque::len);
        let entries = items
            .into_iter()
            .flat_map(|h| h.iter().rev())
            .skip(page.saturating_mul(page_size))
            .take(page_size)
            .filter_map(|item| match item {
                HistoryItem::Run(id) => reg.runs.get(id).map(|r| history_entry(*id, r)),
                HistoryItem::Skipped(skip) => Some(skip.0.clone()),
            })
            .collect();
        HistoryPage {
            job_name: job.to_string(),
            page,
            page_size,
            total,
            items: entries,
        }
    }
}

/// Drops a report's per-object lists, keeping what its history line and counts need.
fn slim(report: &mut Report) {
    report.added = Vec::new();
    report.modified = Vec::new();
    report.deleted = Vec::new();
    report.delete_failed = Vec::new();
    report.updated_id_map = serde_json::Map::new();
    report.failed.truncate(1);
    report.failed.shrink_to_fit();
}

fn history_entry(id: RunId, run: &RunRecord) -> HistoryEntry {
    let (status, task_status, error) = match &run.report {
        None if run.started => (HistoryStatus::Running, TaskStatus::Started, None),
        None => (HistoryStatus::Running, TaskStatus::Queued, None),
        Some(r) => {
            let first_detail = |kind: u8| {
                r.details
                    .iter()
                    .find(|d| d.details_type == kind)
                    .map(|d| d.message.clone())
            };
            let first_failed_row = || {
                r.failed.first().map(|f| {
                    let field = f
                        .field
                        .as_deref()
                        .map(|x| format!(" {x}"))
                        .unwrap_or_default();
                    format!("row {}{field}: {}", f.row, f.message)
                })
            };
            let (status, error) = match r.status {
                RunStatus::FinishedSuccess => (HistoryStatus::Stopped, first_detail(0)),
                // Why it stopped (cancelled, timed out) is its warning.
                RunStatus::Aborted => (HistoryStatus::Interrupted, first_detail(1)),
                RunStatus::FinishedFail | RunStatus::Error => (
                    HistoryStatus::Failed,
                    first_detail(0).or_else(first_failed_row),
                ),
            };
            (status, r.status.into(), error)
        }
    };
    HistoryEntry {
        run_id: Some(id.0),
        trigger: run.trigger,
        fire_time: run.fired_at.map(crate::clock::iso),
        start_time: crate::clock::iso(run.started_at.unwrap_or(run.queued_at)),
        end_time: run.report.as_ref().map(|r| r.stop_time.clone()),
        status,
        task_status,
        error_message: error,
    }
}

pub(super) fn execution(
    id: RunId,
    attempt: u32,
    status: TaskStatus,
    report: &Report,
    started: DateTime<Utc>,
    stopped: DateTime<Utc>,
) -> ExecutionResult {
    ExecutionResult {
        id: format!("{id}.{attempt}"),
        executing_node_name: report.executing_node_name.clone(),
        status,
        start_time: crate::clock::iso(started),
        stop_time: crate::clock::iso(stopped),
        duration: (stopped - started).num_milliseconds().max(0) as u64,
        details: report.details.clone(),
        script_log_available: false,
        script_log_location: String::new(),
        script_log_size: 0,
    }
}
