//! The lifecycle's records in the reference shapes: Qlik's execution result and task record,
//! and Oracle's `UserDataStore` result.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::{Detail, Report, RunStatus};

/// Qlik's task execution status, with its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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

/// OIG's job state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum JobState {
    /// Not running.
    Stopped,
    /// A run is under way.
    Running,
    /// The last run was stopped before it finished (cancelled or timed out).
    Interrupted,
}

/// How a run in a job's history ended (OIG's history statuses; `SKIPPED` is Qlik's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum HistoryStatus {
    /// Under way (or queued).
    Running,
    /// Finished normally.
    Stopped,
    /// Cancelled or timed out.
    Interrupted,
    /// Finished with failed rows, or could not run.
    Failed,
    /// A scheduled fire that found the job still running.
    Skipped,
}

/// One run in a job's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The run's id (none for a skipped fire).
    pub run_id: Option<u64>,
    /// Who started it.
    pub trigger: super::Trigger,
    /// For a scheduled run or skip, ISO 8601: the schedule's fire time. The run starts at the
    /// tick that finds the time come, and its worker when a thread takes it: both may be later
    /// (a host that was down, a busy machine, a test's clock moved on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fire_time: Option<String>,
    /// ISO 8601: when it started (or was queued, or was skipped).
    pub start_time: String,
    /// ISO 8601; none while it runs.
    pub end_time: Option<String>,
    /// How it ended.
    pub status: HistoryStatus,
    /// Qlik's status number for the same run.
    #[serde(serialize_with = "status_code")]
    pub task_status: TaskStatus,
    /// The first error (or, for an interrupted run, why it stopped).
    pub error_message: Option<String>,
}

/// A page of a job's history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// The job.
    pub job_name: String,
    /// This page (0 first).
    pub page: usize,
    /// Entries a page.
    pub page_size: usize,
    /// Entries in all.
    pub total: usize,
    /// This page's entries.
    pub items: Vec<HistoryEntry>,
}

/// A job as OIG's scheduler describes it (`JobDetails`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetails {
    /// The job's name.
    pub job_name: String,
    /// The kind of task: always `DataSync`.
    pub task_name: String,
    /// Retries of a run that fails for a transient reason.
    pub retry_count: u32,
    /// The declared parameters with their defaults.
    pub parameters: super::Parameters,
    /// Whether two runs may overlap.
    pub concurrent: bool,
    /// `Cron` with a schedule, else `None`.
    pub job_schedule_type: String,
    /// The cron expression (OIG names a preset here; we give the expression itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron_schedule_type: Option<String>,
    /// The schedule's IANA time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Whether the schedule starts it.
    pub is_enabled: bool,
    /// ISO 8601: when the schedule next starts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fire_time: Option<String>,
    /// `STOPPED`, `RUNNING` or `INTERRUPTED`.
    pub status: JobState,
}

/// The records' JSON, as the reference pages spell it: what a host hands its own callers.
macro_rules! to_json {
    ($($record:ty),*) => {$(
        impl $record {
            /// This record as JSON, in the reference page's field names.
            pub fn to_json(&self) -> String {
                // Plain data with string keys: serde_json cannot fail on it.
                serde_json::to_string(self).unwrap_or_default()
            }
        }
    )*};
}
to_json!(
    ExecutionResult,
    TaskRecord,
    UserDataStore,
    HistoryPage,
    JobDetails
);
