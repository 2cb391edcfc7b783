//! The job lifecycle a host service links in.
//!
//! - [`Runner`]: submit a job and get an id at once; poll its status (queued, running with
//!   progress, finished with its report: the library's "202 in progress" and "200 done");
//!   wait; cancel. Around each run: a time-out (`taskSessionTimeout`), retries of runs that
//!   fail for a transient reason (each attempt keeps its own [`ExecutionResult`]), refusal of
//!   a second run of a job that must not run twice (`concurrent` false), typed
//!   [parameters](JobParameter) checked before anything runs, delta runs whose watermark
//!   lives in a [`StateStore`], notifications through [`Hooks::notify`](crate::Hooks::notify), and a run history
//!   per job, newest first.
//! - [`Scheduler`]: cron [`Schedule`]s in a time zone, driven by the host's ticks or by a
//!   thread; a fire that finds the job still running is recorded as `Skipped`.
//! - [`Collection`]: jobs run one after another in `runOrder`; a failed job's `onFailure`
//!   decides whether the rest run. A scheduler can start a collection on a schedule too.
//! - Records in the reference shapes: Qlik's [`TaskRecord`] and [`ExecutionResult`], OIG's
//!   [`JobDetails`] and [`HistoryEntry`], Oracle's [`UserDataStore`].
//!
//! ```
//! use std::sync::Arc;
//! use datasync::lifecycle::{Job, Runner, RunState};
//! use datasync::{job, LdifDirectory};
//!
//! let definition = job::load("fixtures/jobs/excel-to-ad.json".as_ref()).unwrap();
//! let job = Job::new(
//!     definition,
//!     Box::new(|| datasync::source::open("fixtures/sources/people.xlsx".as_ref())),
//!     Arc::new(LdifDirectory::in_memory()),
//! )
//! .unwrap();
//! let runner = Runner::new();
//! let id = runner.submit(Arc::new(job)).unwrap();
//! let report = runner.wait(id).unwrap();
//! assert_eq!(report.status, datasync::RunStatus::FinishedSuccess);
//! assert!(matches!(runner.status(id), Some(RunState::Finished(_))));
//! ```

mod collection;
mod execute;
mod history;
mod job;
mod parameters;
mod records;
mod runner;
mod schedule;
mod scheduler;
mod state;

use std::sync::Arc;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::hooks::NotifyWhen;
pub use collection::{Collection, CollectionReport, CollectionStep, StepOutcome};
pub use history::FULL_REPORTS_KEPT;
pub use job::{
    Job, JobSettings, MAX_RETRIES, MAX_RETRY_WAIT, MIN_RETRY_WAIT, OnFailure, OpenSource, plan_for,
};
pub use parameters::{JobParameter, ParameterError, ParameterType, Parameters, resolve_parameters};
pub use records::{
    ExecutionResult, HistoryEntry, HistoryPage, HistoryStatus, JobDetails, JobState, Operational,
    TaskRecord, TaskStatus, UserDataStore,
};
pub use runner::{DEFAULT_HISTORY_LIMIT, Runner};
pub use schedule::{Schedule, ScheduleError};
pub use scheduler::{Fired, Scheduler};
pub use state::{FileStateStore, MemoryStateStore, StateStore, Watermarks};

use crate::job::JobErrors;
use crate::report::Report;

/// A submitted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Trigger {
    /// The host (run now).
    Manual,
    /// A schedule's fire time.
    Schedule,
    /// A job collection.
    Collection,
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunState {
    /// Accepted, not started yet ("202").
    Queued,
    /// Running ("202"): rows read from the source, rows finished, and the rows in all once
    /// the source is read. While the source is read, `read` grows and `done` stays 0 (every
    /// row is known before any is written); then `done` grows to `total`.
    #[non_exhaustive]
    Running {
        /// Rows read from the source so far.
        read: usize,
        /// Rows finished.
        done: usize,
        /// Rows in all, once known.
        total: Option<usize>,
        /// The attempt (1 first).
        attempt: u32,
    },
    /// Done ("200"), with the last attempt's report (shared with the runner: a poll does not
    /// copy it).
    Finished(Arc<Report>),
}

/// Why the runner refused a request. Nothing ran and nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The job does not run concurrently and a run of it is under way.
    #[error("job \"{job}\" is already running (run {running}); it does not run concurrently")]
    AlreadyRunning {
        /// The job.
        job: String,
        /// The run under way.
        running: RunId,
    },
    /// Parameter values that are missing or of the wrong type (OIG's 400).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Parameters(Vec<ParameterError>),
    /// The job file is not a job that can run.
    #[error("job \"{job}\":\n{errors}")]
    Job {
        /// The job.
        job: String,
        /// Every mistake.
        errors: JobErrors,
    },
    /// The delta state could not be read.
    #[error("job \"{job}\": cannot read its delta state: {message}")]
    State {
        /// The job.
        job: String,
        /// Why.
        message: String,
    },
    /// No job of that name is known (to a scheduler).
    #[error("no job named \"{0}\"")]
    UnknownJob(String),
    /// Two jobs with one name (a scheduler tells jobs by name).
    #[error("a job named \"{0}\" is already scheduled")]
    DuplicateJob(String),
    /// A job given to [`Scheduler::add_jobs`] that would never start: it has no schedule
    /// (`jobInfo.schedule`) and is in no collection.
    #[error("job \"{0}\" has no schedule (jobInfo.schedule, a cron expression)")]
    NoSchedule(String),
    /// A collection whose jobs give no schedule, or different ones: a collection runs on one.
    #[error("{collection}: {reason}")]
    CollectionSchedule {
        /// The collection's name (`collection ID`).
        collection: String,
        /// What is wrong.
        reason: String,
    },
}
