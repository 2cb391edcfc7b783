//! The runner: runs submitted, their states while they run, waits and cancels.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::execute::Prepared;
use super::{
    Clock, ExecutionResult, HistoryEntry, Job, LifecycleError, RunId, RunState, StateStore,
    SystemClock, Trigger, Watermarks,
};
use crate::engine::RunControl;
use crate::report::{DetailType, Report, RunStatus};

/// One run as the runner keeps it, from submit until it is forgotten.
pub(super) struct RunRecord {
    pub(super) job: String,
    pub(super) trigger: Trigger,
    pub(super) control: RunControl,
    pub(super) attempt: u32,
    pub(super) started: bool,
    pub(super) queued_at: DateTime<Utc>,
    pub(super) started_at: Option<DateTime<Utc>>,
    /// A scheduled run's fire time: the schedule's time, which the tick that starts the run
    /// may come after.
    pub(super) fired_at: Option<DateTime<Utc>>,
    pub(super) report: Option<Arc<Report>>,
    pub(super) executions: Vec<ExecutionResult>,
}

/// One line of a job's history: a run, or a scheduled fire that was skipped.
pub(super) enum HistoryItem {
    Run(RunId),
    Skipped(Box<(HistoryEntry, ExecutionResult)>),
}

/// Every run and history the runner knows, under one lock.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) next: u64,
    pub(super) runs: HashMap<RunId, RunRecord>,
    /// Job name → its run under way (the latest one, for concurrent jobs).
    pub(super) active: HashMap<String, RunId>,
    /// Runs under way, of all jobs.
    pub(super) running: usize,
    /// Job name → its history, oldest first.
    pub(super) history: HashMap<String, VecDeque<HistoryItem>>,
}

/// What clones of a runner share.
pub(super) struct Inner {
    pub(super) clock: Arc<dyn Clock>,
    pub(super) store: Option<Arc<dyn StateStore>>,
    pub(super) history_limit: usize,
    pub(super) registry: Mutex<Registry>,
    pub(super) changed: Condvar,
}

/// Runs jobs on background threads and answers for them.
///
/// Cheap to clone: clones share the same runs.
#[derive(Clone)]
pub struct Runner(pub(super) Arc<Inner>);

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

    pub(super) fn lock(&self) -> MutexGuard<'_, Registry> {
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

    pub(super) fn update(&self, id: RunId, f: impl FnOnce(&mut RunRecord)) {
        let mut reg = self.lock();
        if let Some(run) = reg.runs.get_mut(&id) {
            f(run);
        }
        drop(reg);
        self.0.changed.notify_all();
    }

    pub(super) fn finish(&self, id: RunId, report: Report, executions: Vec<ExecutionResult>) {
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
}
