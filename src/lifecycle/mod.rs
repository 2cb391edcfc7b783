//! The job lifecycle a host service links in: submit a job and get an id at once, poll its
//! status (queued, running with progress, finished with its report: the library's "202 in
//! progress" and "200 done"), wait for it, cancel it. Around each run: a time-out
//! (`taskSessionTimeout`), retries of runs that fail for a transient reason (each attempt
//! keeps its own [`ExecutionResult`]), refusal of a second run of a job that must not run
//! twice (`concurrent` false), and delta runs whose watermark lives in a [`StateStore`].
//!
//! ```
//! use std::sync::Arc;
//! use datasync::lifecycle::{Job, JobSettings, Runner, RunState};
//! use datasync::{job, LdifDirectory, NoHooks};
//!
//! let wire = job::load("fixtures/jobs/excel-to-ad.json".as_ref()).unwrap();
//! let plan = job::compile(&wire, &Default::default()).unwrap();
//! let job = Job {
//!     plan,
//!     source: Box::new(|| datasync::source::open("fixtures/sources/people.xlsx".as_ref())),
//!     destination: Arc::new(LdifDirectory::in_memory()),
//!     hooks: Arc::new(NoHooks),
//!     settings: JobSettings::default(),
//! };
//! let runner = Runner::new();
//! let id = runner.submit(Arc::new(job)).unwrap();
//! let report = runner.wait(id).unwrap();
//! assert_eq!(report.status, datasync::RunStatus::FinishedSuccess);
//! assert!(matches!(runner.status(id), Some(RunState::Finished(_))));
//! ```

mod clock;
mod records;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use records::{ExecutionResult, Operational, TaskRecord, TaskStatus, UserDataStore};
pub use state::{FileStateStore, MemoryStateStore, StateStore, Watermarks};

use crate::engine::{RunControl, StopReason};
use crate::report::{DetailType, Report, RunStatus};
use crate::source::{Source, SourceError};
use crate::{Destination, Error, Hooks, Plan, RunOptions};

/// Opens the job's source afresh for each attempt.
pub type OpenSource = Box<dyn Fn() -> Result<Box<dyn Source + Send>, SourceError> + Send + Sync>;

/// A job the runner can run: its plan and where it reads and writes.
pub struct Job {
    /// The compiled job.
    pub plan: Plan,
    /// Opens the source (called once per attempt: a retry reads it again).
    pub source: OpenSource,
    /// The destination.
    pub destination: Arc<dyn Destination>,
    /// The host's hooks.
    pub hooks: Arc<dyn Hooks + Send + Sync>,
    /// Retries, time-out, concurrency.
    pub settings: JobSettings,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.plan.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How the runner treats a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Runs that fail as a whole for a transient reason are tried again this many times
    /// (Qlik's `maxRetries`, OIG's `retryCount`). Row failures never retry a run.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles for each next one, up to 5 minutes.
    pub retry_wait: Duration,
    /// Minutes a run may take before it is stopped like a cancel (`taskSessionTimeout`;
    /// `None` or 0: no limit).
    pub task_session_timeout: Option<u32>,
    /// False: a run of this job is refused while another runs (`concurrent`).
    pub concurrent: bool,
    /// Worker threads (0: the engine decides).
    pub threads: usize,
    /// Values for hooks and `Static` `%NAME%` (the job's parameters, already validated).
    pub parameters: BTreeMap<String, String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            max_retries: 0,
            retry_wait: Duration::from_secs(30),
            task_session_timeout: None,
            concurrent: false,
            threads: 0,
            parameters: BTreeMap::new(),
        }
    }
}

/// A submitted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Accepted, not started yet ("202").
    Queued,
    /// Running ("202"): rows finished, and the rows in all once the source is read.
    Running {
        /// Rows finished.
        done: usize,
        /// Rows in all, once known.
        total: Option<usize>,
        /// The attempt (1 first).
        attempt: u32,
    },
    /// Done ("200"), with the last attempt's report.
    Finished(Box<Report>),
}

/// Why the runner refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The job does not run concurrently and a run of it is under way.
    #[error("job \"{job}\" is already running (run {running}); it does not run concurrently")]
    AlreadyRunning {
        /// The job.
        job: String,
        /// The run under way.
        running: RunId,
    },
    /// The delta state could not be read.
    #[error("job \"{job}\": cannot read its delta state: {message}")]
    State {
        /// The job.
        job: String,
        /// Why.
        message: String,
    },
}

struct RunRecord {
    job: String,
    control: RunControl,
    attempt: u32,
    started: bool,
    report: Option<Report>,
    executions: Vec<ExecutionResult>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    runs: HashMap<RunId, RunRecord>,
    /// Job name → its run under way.
    active: HashMap<String, RunId>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn StateStore>>,
    registry: Mutex<Registry>,
    changed: Condvar,
}

/// Runs jobs on background threads and answers for them.
///
/// Cheap to clone: clones share the same runs.
#[derive(Clone)]
pub struct Runner(Arc<Inner>);

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Default for Runner {
    fn default() -> Self {
        Runner::new()
    }
}

impl Runner {
    /// A runner on the system clock, without delta state.
    pub fn new() -> Runner {
        Runner::with(Arc::new(SystemClock), None)
    }

    /// A runner on `clock`, keeping delta watermarks in `store`.
    pub fn with(clock: Arc<dyn Clock>, store: Option<Arc<dyn StateStore>>) -> Runner {
        Runner(Arc::new(Inner {
            clock,
            store,
            registry: Mutex::new(Registry::default()),
            changed: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `job` on a background thread and returns its id at once. Refused when the job
    /// does not run concurrently and a run of it is under way.
    pub fn submit(&self, job: Arc<Job>) -> Result<RunId, LifecycleError> {
        let name = job.plan.name.clone();
        let watermarks = match &self.0.store {
            Some(store) => store.load(&name).map_err(|e| LifecycleError::State {
                job: name.clone(),
                message: e.to_string(),
            })?,
            None => Watermarks::new(),
        };
        let id = {
            let mut reg = self.lock();
            if !job.settings.concurrent
                && let Some(running) = reg.active.get(&name)
            {
                return Err(LifecycleError::AlreadyRunning {
                    job: name,
                    running: *running,
                });
            }
            reg.next += 1;
            let id = RunId(reg.next);
            reg.runs.insert(
                id,
                RunRecord {
                    job: name.clone(),
                    control: RunControl::default(),
                    attempt: 0,
                    started: false,
                    report: None,
                    executions: Vec::new(),
                },
            );
            reg.active.insert(name, id);
            id
        };
        let runner = self.clone();
        std::thread::Builder::new()
            .name(format!("datasync-run-{id}"))
            .spawn(move || runner.execute(id, &job, watermarks))
            .map_err(|e| LifecycleError::State {
                job: String::new(),
                message: format!("cannot start a thread: {e}"),
            })?;
        Ok(id)
    }

    /// Where run `id` is; `None` for an unknown id.
    pub fn status(&self, id: RunId) -> Option<RunState> {
        let reg = self.lock();
        let run = reg.runs.get(&id)?;
        Some(match (&run.report, run.started) {
            (Some(report), _) => RunState::Finished(Box::new(report.clone())),
            (None, false) => RunState::Queued,
            (None, true) => {
                let (done, total) = run.control.progress();
                RunState::Running {
                    done,
                    total,
                    attempt: run.attempt,
                }
            }
        })
    }

    /// Blocks until run `id` is finished and returns its report (`None` for an unknown id).
    pub fn wait(&self, id: RunId) -> Option<Report> {
        let mut reg = self.lock();
        loop {
            match reg.runs.get(&id) {
                None => return None,
                Some(RunRecord {
                    report: Some(r), ..
                }) => return Some(r.clone()),
                Some(_) => {}
            }
            reg = self.0.changed.wait(reg).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Asks run `id` to stop: no new rows, rows in flight finish, no deletes, status
    /// `Aborted`. False when the run is unknown or already finished.
    pub fn cancel(&self, id: RunId) -> bool {
        let reg = self.lock();
        match reg.runs.get(&id) {
            Some(run) if run.report.is_none() => {
                run.control.cancel();
                true
            }
            _ => false,
        }
    }

    /// Every attempt of run `id` so far, first first (Qlik keeps one result per attempt).
    pub fn executions(&self, id: RunId) -> Vec<ExecutionResult> {
        self.lock()
            .runs
            .get(&id)
            .map(|r| r.executions.clone())
            .unwrap_or_default()
    }

    /// The run of `job` under way, if any.
    pub fn running(&self, job: &str) -> Option<RunId> {
        self.lock().active.get(job).copied()
    }

    fn update(&self, id: RunId, f: impl FnOnce(&mut RunRecord)) {
        let mut reg = self.lock();
        if let Some(run) = reg.runs.get_mut(&id) {
            f(run);
        }
        drop(reg);
        self.0.changed.notify_all();
    }

    fn execute(&self, id: RunId, job: &Job, watermarks: Watermarks) {
        let clock = &self.0.clock;
        let settings = &job.settings;
        let mut wait = settings.retry_wait;
        let mut attempt = 0;
        let report = loop {
            attempt += 1;
            let control = match job.settings.task_session_timeout.filter(|m| *m > 0) {
                Some(minutes) => RunControl::with_deadline(
                    clock.clone(),
                    clock.now() + chrono::Duration::minutes(i64::from(minutes)),
                ),
                None => RunControl::default(),
            };
            // A cancel that came while queued or between attempts carries over.
            let cancelled = {
                let reg = self.lock();
                reg.runs
                    .get(&id)
                    .is_some_and(|r| r.control.stop_reason() == Some(StopReason::Cancelled))
            };
            if cancelled {
                control.cancel();
            }
            self.update(id, |r| {
                r.attempt = attempt;
                r.started = true;
                r.control = control.clone();
            });
            let started = clock.now();
            let result = self.attempt(job, &control, &watermarks);
            let stopped = clock.now();
            let mut report = match result {
                Ok(report) => report,
                Err(e) => {
                    let transient = e.is_transient();
                    let mut r = Report::from_error(&job.plan.name, false, &e);
                    if transient && attempt <= settings.max_retries {
                        let exec = execution(id, attempt, TaskStatus::Retry, &r, started, stopped);
                        self.update(id, |run| run.executions.push(exec));
                        clock.sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(300));
                        continue;
                    }
                    r.start_time = started.to_rfc3339();
                    r
                }
            };
            report.start_time = started.to_rfc3339();
            report.stop_time = stopped.to_rfc3339();
            break report;
        };
        let started = chrono::DateTime::parse_from_rfc3339(&report.start_time)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| clock.now());
        let exec = execution(
            id,
            attempt,
            report.status.into(),
            &report,
            started,
            clock.now(),
        );
        // A successful delta run moves the watermark on; any other keeps the old one, so
        // the rows it missed are taken again next time.
        let mut report = report;
        if report.status == RunStatus::FinishedSuccess
            && !report.watermarks.is_empty()
            && let Some(store) = &self.0.store
        {
            let marks: Watermarks = report
                .watermarks
                .iter()
                .filter_map(|(k, v)| k.parse().ok().map(|k| (k, v.clone())))
                .collect();
            if let Err(e) = store.save(&job.plan.name, &marks) {
                report.detail(
                    DetailType::Error,
                    format!("the delta watermark could not be saved: {e}"),
                );
                report.status = RunStatus::FinishedFail;
            }
        }
        let mut reg = self.lock();
        if let Some(run) = reg.runs.get_mut(&id) {
            run.executions.push(exec);
            run.report = Some(report);
            let job_name = run.job.clone();
            if reg.active.get(&job_name) == Some(&id) {
                reg.active.remove(&job_name);
            }
        }
        drop(reg);
        self.0.changed.notify_all();
    }

    /// One attempt. Its control times it out on the runner's clock, checked before each row.
    fn attempt(
        &self,
        job: &Job,
        control: &RunControl,
        watermarks: &Watermarks,
    ) -> Result<Report, Error> {
        let options = RunOptions {
            threads: job.settings.threads,
            dry_run: false,
            control: Some(control.clone()),
            parameters: job.settings.parameters.clone(),
            watermarks: watermarks.clone(),
        };
        (job.source)()
            .map_err(|source| Error::Source {
                job: job.plan.name.clone(),
                object_type: job.plan.objects.first().map_or(1, |o| o.object_type.code()),
                field: None,
                source,
            })
            .and_then(|mut source| {
                crate::run(
                    &job.plan,
                    source.as_mut(),
                    job.destination.as_ref(),
                    job.hooks.as_ref(),
                    &options,
                )
            })
    }
}

fn execution(
    id: RunId,
    attempt: u32,
    status: TaskStatus,
    report: &Report,
    started: chrono::DateTime<chrono::Utc>,
    stopped: chrono::DateTime<chrono::Utc>,
) -> ExecutionResult {
    ExecutionResult {
        id: format!("{id}.{attempt}"),
        executing_node_name: report.executing_node_name.clone(),
        status,
        start_time: started.to_rfc3339(),
        stop_time: stopped.to_rfc3339(),
        duration: (stopped - started).num_milliseconds().max(0) as u64,
        details: report.details.clone(),
        script_log_available: false,
        script_log_location: String::new(),
        script_log_size: 0,
    }
}
