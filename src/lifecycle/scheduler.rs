//! Starts jobs when their cron schedules say. The host drives it: call
//! [`tick`](Scheduler::tick) from its own timer, or give a thread to
//! [`run`](Scheduler::run). Time comes from the runner's [`Clock`](super::Clock), so tests move
//! a manual clock instead of waiting.
//!
//! A fire time missed while nothing ticked (the host was down, or busy) starts the job once
//! at the next tick, not once per missed fire. A fire that finds a non-concurrent job still
//! running is recorded in its history as `SKIPPED` (Qlik's status 9) and not queued.
//!
//! A [`Collection`] can be scheduled too ([`add_collection`](Scheduler::add_collection)): each
//! fire runs its jobs in `runOrder` on a thread of its own; a fire that finds the collection
//! still running is skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Collection, CollectionReport, Job, JobDetails, LifecycleError, Operational, RunId, Runner,
    Schedule, TaskRecord, Trigger,
};

/// What a schedule starts.
#[derive(Clone)]
enum Target {
    Job(Arc<Job>),
    Collection(Arc<Collection>, Box<Schedule>),
}

struct Entry {
    target: Target,
    enabled: bool,
    next: Option<DateTime<Utc>>,
}

impl Entry {
    /// The first fire time after `now`, if there is a schedule.
    fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.target {
            Target::Job(job) => job.settings.schedule.as_ref()?.next_after(now),
            Target::Collection(_, schedule) => schedule.next_after(now),
        }
    }
}

/// Collections on their way, and the last report of each.
#[derive(Default)]
struct CollectionRuns {
    /// Names of the collections running now.
    active: HashSet<String>,
    /// Their threads, joined when the scheduler stops.
    threads: Vec<JoinHandle<()>>,
    last: HashMap<String, CollectionReport>,
}

/// The collections' state, and a signal each time one finishes.
#[derive(Default)]
struct Collections {
    runs: Mutex<CollectionRuns>,
    finished: Condvar,
}

impl Collections {
    fn lock(&self) -> MutexGuard<'_, CollectionRuns> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a tick did for one due job.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fired {
    /// The job started.
    Started {
        /// The job.
        job: String,
        /// Its run.
        run: RunId,
    },
    /// The job was still running; the fire is recorded as skipped.
    Skipped {
        /// The job.
        job: String,
        /// The run under way.
        running: RunId,
    },
    /// The job could not start (its state could not be read, a default parameter no
    /// longer checks, ...).
    Refused {
        /// The job.
        job: String,
        /// Why.
        error: LifecycleError,
    },
    /// A scheduled collection started its jobs, one after another, on a thread.
    CollectionStarted {
        /// The collection.
        collection: String,
    },
    /// A scheduled collection was still running; this fire is skipped.
    CollectionSkipped {
        /// The collection.
        collection: String,
    },
}

/// Jobs on cron schedules, started through a [`Runner`].
///
/// ```
/// use std::sync::Arc;
/// use datasync::lifecycle::{Fired, Job, ManualClock, Runner, Schedule, Scheduler};
/// use datasync::{job, LdifDirectory};
///
/// let clock = ManualClock::at("2026-05-31T23:59:00Z");
/// let runner = Runner::with(Arc::new(clock.clone()), None);
/// let mut job = Job::new(
///     job::load("fixtures/jobs/excel-to-ad.json".as_ref()).unwrap(),
///     Box::new(|| datasync::source::open("fixtures/sources/people.xlsx".as_ref())),
///     Arc::new(LdifDirectory::in_memory()),
/// )
/// .unwrap();
/// job.settings.schedule = Some(Schedule::new("0 0 1 * *", "UTC").unwrap());
/// job.settings.enabled = true;
/// let scheduler = Scheduler::new(runner.clone());
/// scheduler.add(Arc::new(job)).unwrap();
/// assert!(scheduler.tick().is_empty());
/// clock.advance(std::time::Duration::from_secs(60));
/// let fired = scheduler.tick();
/// assert!(matches!(&fired[..], [Fired::Started { .. }]));
/// runner.wait_idle();
/// ```
pub struct Scheduler {
    runner: Runner,
    entries: Mutex<BTreeMap<String, Entry>>,
    collections: Arc<Collections>,
    /// Set when [`run`](Scheduler::run) is told to stop: collections start no further job.
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler that starts jobs on `runner` and reads the time from its clock.
    pub fn new(runner: Runner) -> Scheduler {
        Scheduler {
            runner,
            entries: Mutex::new(BTreeMap::new()),
            collections: Arc::new(Collections::default()),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> DateTime<Utc> {
        self.runner.clock().now()
    }

    /// The runner the scheduler starts jobs on.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Adds a job; its schedule and `enabled` come from its settings. Names must differ.
    pub fn add(&self, job: Arc<Job>) -> Result<(), LifecycleError> {
        let name = job.name();
        let enabled = job.settings.enabled;
        self.insert(name, Target::Job(job), enabled)
    }

    /// Adds jobs as their job files say: jobs that share a `jobInfo.collectionId` become one
    /// collection, named `collection ID`, whose jobs run in `runOrder` on the schedule they
    /// give (all the same one); every other job runs alone on its own schedule. Nothing is
    /// added unless all of them can be: a lone job without a schedule, or a collection whose
    /// jobs give none or different ones, is refused.
    ///
    /// Returns the names added: the lone jobs', then the collections'.
    pub fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<String>, LifecycleError> {
        let mut alone: Vec<Arc<Job>> = Vec::new();
        let mut collections: BTreeMap<String, Vec<Arc<Job>>> = BTreeMap::new();
        for job in jobs {
            match job.collection_id() {
                Some(id) => collections.entry(id).or_default().push(Arc::new(job)),
                None if job.settings.schedule.is_none() => {
                    return Err(LifecycleError::NoSchedule(job.name()));
                }
                None => alone.push(Arc::new(job)),
            }
        }
        let mut grouped = Vec::new();
        for (id, mut jobs) in collections {
            // Stable: jobs with the same runOrder keep the order they were given in.
            jobs.sort_by_key(|j| j.settings.run_order);
            let name = format!("collection {id}");
            let mut schedules = jobs.iter().filter_map(|j| j.settings.schedule.clone());
            let Some(schedule) = schedules.next() else {
                return Err(LifecycleError::CollectionSchedule {
                    collection: name,
                    reason: "none of its jobs has a schedule (jobInfo.schedule)".into(),
                });
            };
            if schedules.any(|s| s != schedule) {
                return Err(LifecycleError::CollectionSchedule {
                    collection: name,
                    reason: "its jobs give different schedules; a collection runs on one".into(),
                });
            }
            grouped.push((Arc::new(Collection { name, jobs }), schedule));
        }
        // Names are checked before anything is added, so that a refusal adds nothing.
        {
            let entries = self.lock();
            let mut seen = HashSet::new();
            let names = alone
                .iter()
                .map(|j| j.name())
                .chain(grouped.iter().map(|(c, _)| c.name.clone()));
            for name in names {
                if entries.contains_key(&name) || !seen.insert(name.clone()) {
                    return Err(LifecycleError::DuplicateJob(name));
                }
            }
        }
        let mut added = Vec::new();
        for job in alone {
            added.push(job.name());
            self.add(job)?;
        }
        for (collection, schedule) in grouped {
            added.push(collection.name.clone());
            self.add_collection(collection, schedule)?;
        }
        Ok(added)
    }

    /// The collection called `name` and the schedule that starts it.
    pub fn collection(&self, name: &str) -> Option<(Arc<Collection>, Schedule)> {
        match &self.lock().get(name)?.target {
            Target::Collection(collection, schedule) => {
                Some((collection.clone(), Schedule::clone(schedule)))
            }
            Target::Job(_) => None,
        }
    }

    /// Adds a collection that `schedule` starts (enabled). Its name must differ from every
    /// job's and collection's.
    pub fn add_collection(
        &self,
        collection: Arc<Collection>,
        schedule: Schedule,
    ) -> Result<(), LifecycleError> {
        let name = collection.name.clone();
        self.insert(
            name,
            Target::Collection(collection, Box::new(schedule)),
            true,
        )
    }

    fn insert(&self, name: String, target: Target, enabled: bool) -> Result<(), LifecycleError> {
        let now = self.now();
        let mut entries = self.lock();
        if entries.contains_key(&name) {
            return Err(LifecycleError::DuplicateJob(name));
        }
        let mut entry = Entry {
            target,
            enabled,
            next: None,
        };
        entry.next = entry.next_after(now);
        entries.insert(name, entry);
        Ok(())
    }

    /// The names of the jobs and collections, sorted.
    pub fn jobs(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Lets the schedule start the job (or collection) again, from the next fire time after
    /// now (fires missed while it was disabled are not made up). False for an unknown name.
    pub fn enable(&self, job: &str) -> bool {
        let now = self.now();
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(job) else {
            return false;
        };
        e.enabled = true;
        e.next = e.next_after(now);
        true
    }

    /// Stops the schedule starting the job or collection (a run under way goes on). False
    /// for an unknown name.
    pub fn disable(&self, job: &str) -> bool {
        match self.lock().get_mut(job) {
            Some(e) => {
                e.enabled = false;
                true
            }
            None => false,
        }
    }

    /// Starts the job now, whatever its schedule (OIG's "run now").
    pub fn run_now(&self, job: &str) -> Result<RunId, LifecycleError> {
        let job = self.job(job)?;
        self.runner.submit(job)
    }

    /// Starts the collection now, whatever its schedule; `false` when it is already running.
    pub fn run_collection_now(&self, collection: &str) -> Result<bool, LifecycleError> {
        let target = self
            .lock()
            .get(collection)
            .and_then(|e| match &e.target {
                Target::Collection(c, _) => Some(c.clone()),
                Target::Job(_) => None,
            })
            .ok_or_else(|| LifecycleError::UnknownJob(collection.to_string()))?;
        Ok(self.start_collection(target))
    }

    /// Runs `collection` on a thread of its own unless it is running already.
    fn start_collection(&self, collection: Arc<Collection>) -> bool {
        let mut runs = self.collections.lock();
        let name = collection.name.clone();
        if !runs.active.insert(name.clone()) {
            return false;
        }
        runs.threads.retain(|t| !t.is_finished());
        let runner = self.runner.clone();
        let shared = self.collections.clone();
        let stopping = self.stopping.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("datasync-collection-{name}"))
            .spawn(move || {
                let report = runner.run_collection_until(&collection, &stopping);
                let mut runs = shared.lock();
                runs.active.remove(&collection.name);
                runs.last.insert(collection.name.clone(), report);
                drop(runs);
                shared.finished.notify_all();
            });
        match spawned {
            Ok(handle) => {
                runs.threads.push(handle);
                true
            }
            Err(_) => {
                runs.active.remove(&name);
                false
            }
        }
    }

    /// The report of the collection's last finished run.
    pub fn last_collection_report(&self, collection: &str) -> Option<CollectionReport> {
        self.collections.lock().last.get(collection).cloned()
    }

    /// Blocks while the collection runs, then gives its last report (`None` when it has never
    /// finished a run).
    pub fn wait_collection(&self, collection: &str) -> Option<CollectionReport> {
        let mut runs = self.collections.lock();
        while runs.active.contains(collection) {
            runs = self
                .collections
                .finished
                .wait(runs)
                .unwrap_or_else(|p| p.into_inner());
        }
        runs.last.get(collection).cloned()
    }

    /// Blocks until no scheduled collection is running.
    pub fn wait_collections(&self) {
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut self.collections.lock().threads);
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Cancels the job's run under way (OIG's "stop"); its state becomes `INTERRUPTED`. For
    /// a collection, cancels the run of whichever of its jobs is under way. False when
    /// nothing was running.
    pub fn stop(&self, job: &str) -> bool {
        let names: Vec<String> = match self.lock().get(job).map(|e| &e.target) {
            Some(Target::Collection(c, _)) => c.jobs.iter().map(|j| j.name()).collect(),
            _ => vec![job.to_string()],
        };
        names.iter().fold(false, |stopped, name| {
            let cancelled = self
                .runner
                .running(name)
                .is_some_and(|id| self.runner.cancel(id));
            stopped || cancelled
        })
    }

    fn job(&self, name: &str) -> Result<Arc<Job>, LifecycleError> {
        self.lock()
            .get(name)
            .and_then(|e| match &e.target {
                Target::Job(job) => Some(job.clone()),
                Target::Collection(..) => None,
            })
            .ok_or_else(|| LifecycleError::UnknownJob(name.to_string()))
    }

    /// When the schedule next starts the job (`None`: no schedule, disabled, or never again).
    pub fn next_execution(&self, job: &str) -> Option<DateTime<Utc>> {
        self.lock()
            .get(job)
            .filter(|e| e.enabled)
            .and_then(|e| e.next)
    }

    /// The earliest next fire time of all enabled jobs.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock()
            .values()
            .filter(|e| e.enabled)
            .filter_map(|e| e.next)
            .min()
    }

    /// Starts every enabled job whose fire time has come, and moves each one's fire time on
    /// past now. Returns what happened to each, in name order.
    pub fn tick(&self) -> Vec<Fired> {
        let now = self.now();
        let due: Vec<(String, Target, Option<DateTime<Utc>>)> = {
            let mut entries = self.lock();
            entries
                .iter_mut()
                .filter(|(_, e)| e.enabled && e.next.is_some_and(|t| t <= now))
                .map(|(name, e)| {
                    let fired_at = e.next;
                    e.next = e.next_after(now);
                    (name.clone(), e.target.clone(), fired_at)
                })
                .collect()
        };
        due.into_iter()
            .map(|(name, due, fired_at)| match due {
                Target::Job(job) => {
                    match self
                        .runner
                        .start(job, &BTreeMap::new(), Trigger::Schedule, fired_at)
                    {
                        Ok(run) => Fired::Started { job: name, run },
                        Err(LifecycleError::AlreadyRunning { running, .. }) => {
                            Fired::Skipped { job: name, running }
                        }
                        Err(error) => Fired::Refused { job: name, error },
                    }
                }
                Target::Collection(collection, _) => {
                    if self.start_collection(collection) {
                        Fired::CollectionStarted { collection: name }
                    } else {
                        Fired::CollectionSkipped { collection: name }
                    }
                }
            })
            .collect()
    }

    /// Ticks until `stop` is set, sleeping on the runner's clock until the next fire time (at
    /// most a second at a time, so that `stop` is seen), telling `on_fire` what each fire did.
    /// Once `stop` is set, starts nothing more (a collection under way starts no further
    /// job) and returns when the runs under way have finished.
    pub fn run(&self, stop: &AtomicBool, mut on_fire: impl FnMut(&Fired)) {
        let clock = self.runner.clock();
        while !stop.load(Ordering::SeqCst) {
            for fired in self.tick() {
                on_fire(&fired);
            }
            let now = clock.now();
            let wait = self
                .next_due()
                .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(10), Duration::from_secs(1));
            clock.sleep(wait);
        }
        self.stopping.store(true, Ordering::SeqCst);
        self.wait_collections();
        self.runner.wait_idle();
        // Ready to run again.
        self.stopping.store(false, Ordering::SeqCst);
    }

    /// The job in OIG's shape, with its state and next fire time.
    pub fn job_details(&self, name: &str) -> Option<JobDetails> {
        let job = self.job(name).ok()?;
        let next = self.next_execution(name);
        let enabled = self.lock().get(name).is_some_and(|e| e.enabled);
        let s = &job.settings;
        Some(JobDetails {
            job_name: name.to_string(),
            task_name: "DataSync".into(),
            retry_count: s.max_retries,
            parameters: s.parameters.clone(),
            concurrent: s.concurrent,
            job_schedule_type: if s.schedule.is_some() { "Cron" } else { "None" }.into(),
            cron_schedule_type: s.schedule.as_ref().map(|c| c.expression().to_string()),
            time_zone: s.schedule.as_ref().map(|c| c.time_zone().to_string()),
            is_enabled: enabled,
            next_fire_time: next.map(crate::clock::iso),
            status: self.runner.job_state(name),
        })
    }

    /// The job as Qlik's task record: its last execution and next one.
    pub fn task_record(&self, name: &str) -> Option<TaskRecord> {
        let job = self.job(name).ok()?;
        let enabled = self.lock().get(name).is_some_and(|e| e.enabled);
        Some(TaskRecord {
            name: name.to_string(),
            enabled,
            max_retries: job.settings.max_retries,
            task_session_timeout: job.settings.task_session_timeout.unwrap_or(0),
            operational: Operational {
                last_execution_result: self.runner.last_execution(name),
                next_execution: self.next_execution(name).map(crate::clock::iso),
            },
        })
    }
}
