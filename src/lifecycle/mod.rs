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
mod job;
mod parameters;
mod records;
mod schedule;
mod scheduler;
mod state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::hooks::NotifyWhen;
pub use collection::{Collection, CollectionReport, CollectionStep, StepOutcome};
pub use job::{
    Job, JobSettings, MAX_RETRIES, MAX_RETRY_WAIT, MIN_RETRY_WAIT, OnFailure, OpenSource, plan_for,
};
pub use parameters::{JobParameter, ParameterError, ParameterType, Parameters, resolve_parameters};
pub use records::{
    ExecutionResult, HistoryEntry, HistoryPage, HistoryStatus, JobDetails, JobState, Operational,
    TaskRecord, TaskStatus, UserDataStore,
};
pub use schedule::{Schedule, ScheduleError};
pub use scheduler::{Fired, Scheduler};
pub use state::{FileStateStore, MemoryStateStore, StateStore, Watermarks};

use crate::engine::{RunControl, StopReason};
use crate::hooks::Notification;
use crate::job::JobErrors;
use crate::report::{DetailType, Report, RunStatus};
use crate::{Error, Plan, RunOptions};

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

struct RunRecord {
    job: String,
    trigger: Trigger,
    control: RunControl,
    attempt: u32,
    started: bool,
    queued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    /// A scheduled run's fire time: the schedule's time, which the tick that starts the run
    /// may come after.
    fired_at: Option<DateTime<Utc>>,
    report: Option<Arc<Report>>,
    executions: Vec<ExecutionResult>,
}

/// One line of a job's history: a run, or a scheduled fire that was skipped.
enum HistoryItem {
    Run(RunId),
    Skipped(Box<(HistoryEntry, ExecutionResult)>),
}

#[derive(Default)]
struct Registry {
    next: u64,
    runs: HashMap<RunId, RunRecord>,
    /// Job name → its run under way (the latest one, for concurrent jobs).
    active: HashMap<String, RunId>,
    /// Runs under way, of all jobs.
    running: usize,
    /// Job name → its history, oldest first.
    history: HashMap<String, VecDeque<HistoryItem>>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn StateStore>>,
    history_limit: usize,
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

/// Runs a job keeps in its history (and by id) before the oldest are forgotten.
pub const DEFAULT_HISTORY_LIMIT: usize = 500;

/// The newest runs of a job whose reports keep their lists of DNs and failed rows; older
/// reports keep counts, status, times and messages.
pub const FULL_REPORTS_KEPT: usize = 20;

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

impl Runner {
    /// A runner on the system clock, without delta state.
    pub fn new() -> Runner {
        Runner::with(Arc::new(SystemClock), None)
    }

    /// A runner on `clock`, keeping delta watermarks in `store`.
    pub fn with(clock: Arc<dyn Clock>, store: Option<Arc<dyn StateStore>>) -> Runner {
        Runner::with_history_limit(clock, store, DEFAULT_HISTORY_LIMIT)
    }

    /// A runner that keeps the last `limit` runs of each job (at least 1): a host that runs
    /// for months does not grow without end.
    pub fn with_history_limit(
        clock: Arc<dyn Clock>,
        store: Option<Arc<dyn StateStore>>,
        limit: usize,
    ) -> Runner {
        Runner(Arc::new(Inner {
            clock,
            store,
            history_limit: limit.max(1),
            registry: Mutex::new(Registry::default()),
            changed: Condvar::new(),
        }))
    }

    /// The runner's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.0.clock.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `job` with its parameters' default values; see [`submit_with`](Self::submit_with).
    pub fn submit(&self, job: Arc<Job>) -> Result<RunId, LifecycleError> {
        self.submit_with(job, &BTreeMap::new())
    }

    /// Checks `parameters` against the job's declared ones, compiles the job with them, and
    /// starts it on a background thread; returns its id at once. Refused, with nothing run,
    /// when a parameter is missing or mistyped, or when the job does not run concurrently
    /// and a run of it is under way.
    pub fn submit_with(
        &self,
        job: Arc<Job>,
        parameters: &BTreeMap<String, String>,
    ) -> Result<RunId, LifecycleError> {
        self.start(job, parameters, Trigger::Manual, None)
    }

    pub(crate) fn start(
        &self,
        job: Arc<Job>,
        parameters: &BTreeMap<String, String>,
        trigger: Trigger,
        fired_at: Option<DateTime<Utc>>,
    ) -> Result<RunId, LifecycleError> {
        let name = job.name();
        let (plan, values) = job.plan(parameters)?;
        let watermarks = match &self.0.store {
            Some(store) => store.load(&name).map_err(|e| LifecycleError::State {
                job: name.clone(),
                message: e.to_string(),
            })?,
            None => Watermarks::new(),
        };
        let now = self.0.clock.now();
        let id = {
            let mut reg = self.lock();
            reg.next += 1;
            let id = RunId(reg.next);
            if !job.settings.concurrent
                && let Some(running) = reg.active.get(&name).copied()
            {
                let refused = LifecycleError::AlreadyRunning {
                    job: name.clone(),
                    running,
                };
                if trigger == Trigger::Schedule {
                    self.record_skip(&mut reg, &name, id, now, fired_at, &refused);
                    drop(reg);
                    self.0.changed.notify_all();
                }
                return Err(refused);
            }
            reg.runs.insert(
                id,
                RunRecord {
                    job: name.clone(),
                    trigger,
                    control: RunControl::default(),
                    attempt: 0,
                    started: false,
                    queued_at: now,
                    started_at: None,
                    fired_at,
                    report: None,
                    executions: Vec::new(),
                },
            );
            reg.active.insert(name.clone(), id);
            reg.running += 1;
            self.push_history(&mut reg, &name, HistoryItem::Run(id));
            id
        };
        let runner = self.clone();
        let run = Prepared {
            job,
            plan,
            parameters: values,
            watermarks,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("datasync-run-{id}"))
            .spawn(move || runner.execute(id, run));
        if let Err(e) = spawned {
            let mut report = Report::new(&name, false);
            report.status = RunStatus::Error;
            report.detail(DetailType::Error, format!("cannot start a thread: {e}"));
            self.finish(id, report, Vec::new());
        }
        Ok(id)
    }

    /// A scheduled fire that found the job running: a finished record with Qlik's `Skipped`.
    fn record_skip(
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

    fn push_history(&self, reg: &mut Registry, job: &str, item: HistoryItem) {
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

    /// Where run `id` is; `None` for an unknown (or long forgotten) id.
    pub fn status(&self, id: RunId) -> Option<RunState> {
        let reg = self.lock();
        let run = reg.runs.get(&id)?;
        Some(match (&run.report, run.started) {
            (Some(report), _) => RunState::Finished(report.clone()),
            (None, false) => RunState::Queued,
            (None, true) => {
                let (done, total) = run.control.progress();
                RunState::Running {
                    read: run.control.rows_read(),
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
                }) => return Some(Report::clone(r)),
                Some(_) => {}
            }
            reg = self.0.changed.wait(reg).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks until no run of any job is under way.
    pub fn wait_idle(&self) {
        let mut reg = self.lock();
        while reg.running > 0 {
            reg = self.0.changed.wait(reg).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Asks run `id` to stop: no new rows, rows in flight finish, no deletes, status
    /// `Aborted`. False when the run is unknown or already finished.
    ///
    /// A cancel is not a rollback: the writes already made stay (the embedded store commits
    /// them, a server has them). Running the job again converges, as after any stop.
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

    fn update(&self, id: RunId, f: impl FnOnce(&mut RunRecord)) {
        let mut reg = self.lock();
        if let Some(run) = reg.runs.get_mut(&id) {
            f(run);
        }
        drop(reg);
        self.0.changed.notify_all();
    }

    fn execute(&self, id: RunId, run: Prepared) {
        let Prepared {
            job,
            plan,
            parameters,
            watermarks,
        } = run;
        let clock = &self.0.clock;
        let settings = &job.settings;
        let retry = settings.retry_policy();
        let max_retries = retry.attempts - 1;
        let mut attempt = 0;
        let mut control;
        let (mut report, started, stopped) = loop {
            attempt += 1;
            control = match job.settings.task_session_timeout.filter(|m| *m > 0) {
                Some(minutes) => RunControl::with_deadline(
                    clock.clone(),
                    clock.now() + chrono::Duration::minutes(i64::from(minutes)),
                ),
                None => RunControl::default(),
            };
            let started = clock.now();
            // A cancel that came while queued or between attempts carries over.
            let cancelled = {
                let mut reg = self.lock();
                let run = reg.runs.get_mut(&id);
                let cancelled = run
                    .as_ref()
                    .is_some_and(|r| r.control.stop_reason() == Some(StopReason::Cancelled));
                if cancelled {
                    control.cancel();
                }
                if let Some(r) = run {
                    r.attempt = attempt;
                    r.started = true;
                    r.started_at.get_or_insert(started);
                    r.control = control.clone();
                }
                cancelled
            };
            self.0.changed.notify_all();
            let result = if cancelled {
                Err(None)
            } else {
                self.attempt(&job, &plan, &parameters, &control, &watermarks)
                    .map_err(Some)
            };
            let stopped = clock.now();
            let mut report = match result {
                Ok(report) => report,
                Err(None) => {
                    let mut r = Report::new(&plan.name, settings.dry_run);
                    r.status = RunStatus::Aborted;
                    r.detail(
                        DetailType::Warning,
                        if attempt == 1 {
                            "the run was cancelled before it started: nothing was read or written"
                        } else {
                            "the run was cancelled while it waited to retry: no further attempt was made"
                        },
                    );
                    r
                }
                Err(Some(e)) => {
                    let transient = e.is_transient();
                    let r = Report::from_error(&plan.name, settings.dry_run, &e);
                    if transient && attempt <= max_retries {
                        let exec = execution(id, attempt, TaskStatus::Retry, &r, started, stopped);
                        self.update(id, |run| run.executions.push(exec));
                        // Waited in steps, so that a cancel does not wait out the backoff.
                        let until = chrono::Duration::from_std(retry.wait(attempt))
                            .ok()
                            .and_then(|w| clock.now().checked_add_signed(w))
                            .unwrap_or(DateTime::<Utc>::MAX_UTC);
                        while control.stop_reason() != Some(StopReason::Cancelled) {
                            let left = (until - clock.now()).to_std().unwrap_or(Duration::ZERO);
                            if left.is_zero() {
                                break;
                            }
                            clock.sleep(left.min(Duration::from_secs(1)));
                        }
                        continue;
                    }
                    r
                }
            };
            report.start_time = crate::clock::iso(started);
            report.stop_time = crate::clock::iso(stopped);
            report.duration = (stopped - started).num_milliseconds().max(0) as u64;
            break (report, started, stopped);
        };

        // A successful delta run moves the watermark on; any other keeps the old one, so
        // the rows it missed are taken again next time.
        if report.status == RunStatus::FinishedSuccess
            && !report.dry_run
            && !report.watermarks.is_empty()
            && let Some(store) = &self.0.store
        {
            let marks: Watermarks = report
                .watermarks
                .iter()
                .filter_map(|(k, v)| k.parse().ok().map(|k| (k, v.clone())))
                .collect();
            if let Err(e) = store.save(&plan.name, &marks) {
                report.detail(
                    DetailType::Error,
                    format!("the delta watermark could not be saved: {e}"),
                );
                report.status = RunStatus::FinishedFail;
            }
        }
        let exec = execution(id, attempt, report.status.into(), &report, started, stopped);
        let timed_out = control.stop_reason() == Some(StopReason::TimedOut);
        let reasons = notification_reasons(&settings.notify, &report, timed_out);
        if !reasons.is_empty() {
            let job_name = job.name();
            let notification = Notification {
                job: &job_name,
                run: id.0,
                reasons: &reasons,
                report: &report,
            };
            // A notifier that panics must not leave the run unfinished.
            let notified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job.hooks.notify(&notification)
            }));
            if notified.is_err() {
                report.detail(DetailType::Warning, "the notification hook panicked");
            }
        }
        self.finish(id, report, vec![exec]);
    }

    fn finish(&self, id: RunId, report: Report, executions: Vec<ExecutionResult>) {
        let mut reg = self.lock();
        if let Some(run) = reg.runs.get_mut(&id) {
            run.executions.extend(executions);
            run.report = Some(Arc::new(report));
            let job_name = run.job.clone();
            if reg.active.get(&job_name) == Some(&id) {
                reg.active.remove(&job_name);
            }
            reg.running = reg.running.saturating_sub(1);
        }
        drop(reg);
        self.0.changed.notify_all();
    }

    /// One attempt. Its control times it out on the runner's clock, checked before each row.
    fn attempt(
        &self,
        job: &Job,
        plan: &Plan,
        parameters: &BTreeMap<String, String>,
        control: &RunControl,
        watermarks: &Watermarks,
    ) -> Result<Report, Error> {
        let options = RunOptions {
            threads: job.settings.threads,
            dry_run: job.settings.dry_run,
            control: Some(control.clone()),
            parameters: parameters.clone(),
            watermarks: watermarks.clone(),
            limits: job.settings.source_limits,
        };
        (job.source)()
            .map_err(|source| Error::Source {
                job: plan.name.clone(),
                object_type: plan.objects.first().map_or(1, |o| o.object_type.code()),
                field: None,
                source: Box::new(source),
            })
            .and_then(|mut source| {
                crate::run(
                    plan,
                    source.as_mut(),
                    job.destination.as_ref(),
                    job.hooks.as_ref(),
                    &options,
                )
            })
    }
}

/// What a run needs that was settled at submit time.
struct Prepared {
    job: Arc<Job>,
    plan: Plan,
    parameters: BTreeMap<String, String>,
    watermarks: Watermarks,
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

/// The job's rules that `report` meets.
fn notification_reasons(rules: &[NotifyWhen], report: &Report, timed_out: bool) -> Vec<NotifyWhen> {
    rules
        .iter()
        .copied()
        .filter(|rule| match rule {
            NotifyWhen::Always => true,
            NotifyWhen::RecordsUpdated => {
                let updated = report.added.len() + report.modified.len() + report.deleted.len();
                !report.dry_run && updated > 0
            }
            NotifyWhen::Errors => {
                !report.failed.is_empty()
                    || !report.delete_failed.is_empty()
                    || report.details.iter().any(|d| d.details_type == 0)
            }
            NotifyWhen::JobFailed => {
                matches!(report.status, RunStatus::FinishedFail | RunStatus::Error)
                    || (report.status == RunStatus::Aborted && timed_out)
            }
        })
        .collect()
}

fn execution(
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
