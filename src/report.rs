//! The run report, with the names of the reference records: Qlik's execution result
//! (`status`, `startTime`, `stopTime`, `duration`, `executingNodeName`, `details`) and Oracle's
//! `UserDataStore` (`added`, `modified`, `deleted`, `deleteFailed`, `updatedIdMap`).
//!
//! Lists are in source-row order (deletes in directory order), so a report does not depend on
//! the number of threads; only the times do.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// How a run ended (Qlik's task execution status names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RunStatus {
    /// Every row succeeded and nothing was withheld.
    FinishedSuccess,
    /// The run finished, but rows failed or deletes were withheld.
    FinishedFail,
    /// The run was stopped before it finished.
    Aborted,
    /// The job could not run; nothing was written.
    Error,
}

impl RunStatus {
    /// Qlik's number for the status (7, 8, 6, 11).
    pub fn code(self) -> u8 {
        match self {
            RunStatus::FinishedSuccess => 7,
            RunStatus::FinishedFail => 8,
            RunStatus::Aborted => 6,
            RunStatus::Error => 11,
        }
    }

    /// The command-line exit code: 0 success, 1 finished with failures or aborted, 2 could not run.
    pub fn exit_code(self) -> i32 {
        match self {
            RunStatus::FinishedSuccess => 0,
            RunStatus::FinishedFail | RunStatus::Aborted => 1,
            RunStatus::Error => 2,
        }
    }
}

/// Row counts. Every source row is counted exactly once among `added`, `updated`, `unchanged`,
/// `skipped` and `failed`; `deleted` counts destination objects removed or deprovisioned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Rows the source queries returned.
    pub read: usize,
    /// Rows that created an object.
    pub added: usize,
    /// Rows that changed (or renamed) an object.
    pub updated: usize,
    /// Objects deleted or deprovisioned.
    pub deleted: usize,
    /// Rows whose object was already as the source says.
    pub unchanged: usize,
    /// Rows a hook cancelled, or without a match when creating is off.
    pub skipped: usize,
    /// Rows that failed.
    pub failed: usize,
}

/// A row that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowFailure {
    /// The object type of the row's query.
    pub object_type: i64,
    /// The row number as the user sees it (the Excel row, the CSV line).
    pub row: u64,
    /// The row's key, when it got that far.
    pub key: Option<String>,
    /// The mapping at fault, when there is one (`fieldsMap[2] (sAMAccountName)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// A delete that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteFailure {
    /// The object.
    pub dn: String,
    /// Why.
    pub message: String,
}

/// `detailsType` as Qlik numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DetailType {
    /// 0.
    Error,
    /// 1.
    Warning,
    /// 2.
    Information,
}

/// A message about the run as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    /// 0 error, 1 warning, 2 information.
    pub details_type: u8,
    /// The message.
    pub message: String,
    /// When, ISO 8601.
    pub detail_created_date: String,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `jobInfo.name`.
    pub job_name: String,
    /// How the run ended.
    pub status: RunStatus,
    /// True when nothing was written on purpose.
    pub dry_run: bool,
    /// ISO 8601.
    pub start_time: String,
    /// ISO 8601.
    pub stop_time: String,
    /// Milliseconds.
    pub duration: u64,
    /// The host that ran the job.
    pub executing_node_name: String,
    /// Row counts.
    pub counts: Counts,
    /// DNs of created objects.
    pub added: Vec<String>,
    /// DNs of changed objects (the new DN after a rename).
    pub modified: Vec<String>,
    /// DNs of deleted or deprovisioned objects.
    pub deleted: Vec<String>,
    /// Deletes that failed.
    pub delete_failed: Vec<DeleteFailure>,
    /// Rows that failed.
    pub failed: Vec<RowFailure>,
    /// Renamed objects: old DN → new DN.
    pub updated_id_map: Map<String, Value>,
    /// Messages about the run.
    pub details: Vec<Detail>,
    /// Delta runs: the highest source timestamp seen, per object type code; the next delta
    /// run starts after it (the lifecycle's state store keeps it after a successful run).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub watermarks: std::collections::BTreeMap<String, String>,
    /// For a job that could not run (`status` `Error`): the kind of problem, so that a host
    /// can tell a missing source file from a bad query without reading the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<crate::error::ErrorKind>,
}

/// The current time as every record writes times (see [`clock::iso`](crate::clock::iso)).
pub(crate) fn now_iso() -> String {
    crate::clock::iso(chrono::Utc::now())
}

/// The name of this host, for `executingNodeName`.
pub(crate) fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

impl Report {
    /// An empty report for a run starting now.
    pub fn new(job_name: &str, dry_run: bool) -> Report {
        let now = now_iso();
        Report {
            job_name: job_name.to_string(),
            status: RunStatus::FinishedSuccess,
            dry_run,
            start_time: now.clone(),
            stop_time: now,
            duration: 0,
            executing_node_name: node_name(),
            counts: Counts::default(),
            added: vec![],
            modified: vec![],
            deleted: vec![],
            delete_failed: vec![],
            failed: vec![],
            updated_id_map: Map::new(),
            details: vec![],
            watermarks: Default::default(),
            error_kind: None,
        }
    }

    /// The report of a job that could not run: status `Error` and the reason as an error detail.
    pub fn from_error(job_name: &str, dry_run: bool, error: &Error) -> Report {
        let mut report = Report::new(job_name, dry_run);
        report.status = RunStatus::Error;
        report.error_kind = Some(error.kind());
        report.detail(DetailType::Error, error.to_string());
        report
    }

    /// Adds a detail stamped now.
    pub fn detail(&mut self, kind: DetailType, message: impl Into<String>) {
        self.details.push(Detail {
            details_type: match kind {
                DetailType::Error => 0,
                DetailType::Warning => 1,
                DetailType::Information => 2,
            },
            message: message.into(),
            detail_created_date: now_iso(),
        });
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A one-line summary for people.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{}: {:?}{} — read {}, added {}, updated {}, deleted {}, unchanged {}, skipped {}, failed {} in {} ms",
            self.job_name,
            self.status,
            if self.dry_run { " (dry run)" } else { "" },
            c.read,
            c.added,
            c.updated,
            c.deleted,
            c.unchanged,
            c.skipped,
            c.failed,
            self.duration
        )
    }
}
