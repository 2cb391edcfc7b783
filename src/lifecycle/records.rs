//! The lifecycle's records in the reference shapes: Qlik's execution result and task record,
//! and Oracle's `UserDataStore` result.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::{Detail, Report, RunStatus};

/// Qlik's task execution status, with its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// 0.
    NeverStarted,
    /// 1.
    Triggered,
    /// 2.
    Started,
    /// 3.
    Queued,
    /// 4.
    AbortInitiated,
    /// 5.
    Aborting,
    /// 6.
    Aborted,
    /// 7.
    FinishedSuccess,
    /// 8.
    FinishedFail,
    /// 9: not started because the job was already running (`concurrent` false).
    Skipped,
    /// 10: failed for a transient reason and was tried again.
    Retry,
    /// 11: could not run.
    Error,
    /// 12.
    Reset,
}

impl TaskStatus {
    /// Qlik's number.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<RunStatus> for TaskStatus {
    fn from(s: RunStatus) -> TaskStatus {
        match s {
            RunStatus::FinishedSuccess => TaskStatus::FinishedSuccess,
            RunStatus::FinishedFail => TaskStatus::FinishedFail,
            RunStatus::Aborted => TaskStatus::Aborted,
            RunStatus::Error => TaskStatus::Error,
        }
    }
}

fn status_code<S: serde::Serializer>(s: &TaskStatus, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_u8(s.code())
}

/// One attempt of a run, as Qlik records it (`operational.lastExecutionResult`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResult {
    /// The run's id and the attempt (`7.1`, `7.2`).
    pub id: String,
    /// The host.
    pub executing_node_name: String,
    /// Qlik's status number.
    #[serde(serialize_with = "status_code")]
    pub status: TaskStatus,
    /// ISO 8601.
    pub start_time: String,
    /// ISO 8601.
    pub stop_time: String,
    /// Milliseconds.
    pub duration: u64,
    /// Messages: the report's, or the error that ended the attempt.
    pub details: Vec<Detail>,
    /// No script log: hooks are Rust.
    pub script_log_available: bool,
    /// Empty.
    pub script_log_location: String,
    /// 0.
    pub script_log_size: u64,
}

/// A job's task record, as Qlik's `usersynctask` (the fields a sync task has).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The job's name.
    pub name: String,
    /// Whether schedules start it.
    pub enabled: bool,
    /// Retries of a run that fails for a transient reason.
    pub max_retries: u32,
    /// Minutes a run may take (0: no limit).
    pub task_session_timeout: u32,
    /// Its last execution and next scheduled one.
    pub operational: Operational,
}

/// A task's `operational` part.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operational {
    /// The last attempt of the last run.
    pub last_execution_result: Option<ExecutionResult>,
    /// ISO 8601, when a schedule next starts it.
    pub next_execution: Option<String>,
}

/// A run's result in Oracle's `UserDataStore` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDataStore {
    /// DNs created.
    pub added: Vec<String>,
    /// DNs changed.
    pub modified: Vec<String>,
    /// DNs deleted or deprovisioned.
    pub deleted: Vec<String>,
    /// DNs whose delete failed.
    pub delete_failed: Vec<String>,
    /// Old DN → new DN.
    pub updated_id_map: Map<String, Value>,
    /// The report's one-line summary.
    pub message: String,
}

impl From<&Report> for UserDataStore {
    fn from(r: &Report) -> UserDataStore {
        UserDataStore {
            added: r.added.clone(),
            modified: r.modified.clone(),
            deleted: r.deleted.clone(),
            delete_failed: r.delete_failed.iter().map(|d| d.dn.clone()).collect(),
            updated_id_map: r.updated_id_map.clone(),
            message: r.summary(),
        }
    }
}
