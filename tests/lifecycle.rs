//! The job lifecycle: runner states, cancel, time-out, retries, concurrency, delta runs and the
//! records' JSON shapes. Time is a `ManualClock`: nothing here waits on the wall clock for a
//! time-out or a backoff.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use datasync::destination::{Modification, Scope};
use datasync::hooks::{HookContext, HookResult, RowWrite};
use datasync::lifecycle::{
    Clock, Job, JobSettings, LifecycleError, ManualClock, MemoryStateStore, RunState, Runner,
    StateStore, TaskStatus, UserDataStore,
};
use datasync::query::Filter;
use datasync::{
    DataSyncJob, Destination, DestinationError, Entry, Hooks, LdifDirectory, NoHooks, RunStatus,
    Secret,
};
use serde_json::Value;
use support::{TempWorkbook, gate, groups, main_job, people, users_only, wire};

fn users_job() -> Value {
    let mut job = main_job();
    users_only(&mut job);
    job
}

fn job_for(
    definition: DataSyncJob,
    book: &TempWorkbook,
    destination: Arc<dyn Destination>,
    hooks: Arc<dyn Hooks + Send + Sync>,
    settings: JobSettings,
) -> Arc<Job> {
    let path = book.path();
    let mut job = Job::new(
        definition,
        Box::new(move || datasync::source::open(&path)),
        destination,
    )
    .unwrap()
    .with_hooks(hooks);
    job.settings = settings;
    Arc::new(job)
}

fn single_threaded() -> JobSettings {
    JobSettings {
        threads: 1,
        ..Default::default()
    }
}

fn user_count(dir: &LdifDirectory) -> usize {
    let users = Filter::parse("(objectClass=user)").unwrap();
    dir.search("DC=groupid,DC=lab", Scope::Subtree, &users, &[])
        .map(|e| e.len())
        .unwrap_or(0)
}

#[test]
fn a_run_goes_from_running_with_progress_to_finished() {
    let book = TempWorkbook::new(&people());
    let (hooks, arrived, go) = gate();
    let dir = Arc::new(LdifDirectory::in_memory());
    let runner = Runner::new();
    let id = submit_users(&runner, &book, dir.clone(), hooks, single_threaded());
    // The first row is held: the run is running, its total known, nothing done yet.
    arrived.recv().unwrap();
    match runner.status(id) {
        Some(RunState::Running {
            read,
            done: 0,
            total,
            attempt: 1,
            ..
        }) => {
            assert_eq!(total, Some(people().len()));
            assert_eq!(read, people().len());
        }
        other => panic!("{other:?}"),
    }
    go.send(()).unwrap();
    arrived.recv().unwrap();
    match runner.status(id) {
        Some(RunState::Running { done: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    for _ in 1..people().len() {
        go.send(()).unwrap();
    }
    let report = runner.wait(id).unwrap();
    assert_eq!(report.status, RunStatus::FinishedSuccess);
    assert!(
        matches!(runner.status(id), Some(RunState::Finished(r)) if r.counts.added == people().len())
    );
    assert_eq!(runner.status(datasync::lifecycle::RunId(999)), None);
    assert_eq!(runner.running(&report.job_name), None);
}

#[test]
fn cancel_stops_taking_rows_and_leaves_the_destination_consistent() {
    let book = TempWorkbook::new(&people());
    let (hooks, arrived, go) = gate();
    let dir = Arc::new(LdifDirectory::in_memory());
    let runner = Runner::new();
    let mut job_json = users_job();
    job_json["objectsOption"][0]["isDelete"] = true.into();
    let id = runner
        .submit(job_for(
            wire(&job_json),
            &book,
            dir.clone(),
            hooks,
            single_threaded(),
        ))
        .unwrap();
    for _ in 0..3 {
        arrived.recv().unwrap();
        go.send(()).unwrap();
    }
    // Row 4 is in flight when the cancel comes: it finishes; no later row starts.
    arrived.recv().unwrap();
    assert!(runner.cancel(id));
    go.send(()).unwrap();
    let report = runner.wait(id).unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    assert_eq!(report.counts.added, 4);
    assert_eq!(report.counts.skipped, people().len() - 4);
    assert_eq!(report.counts.deleted, 0);
    assert_eq!(
        user_count(&dir),
        4,
        "exactly the reported creates are there"
    );
    assert!(!runner.cancel(id), "a finished run cannot be cancelled");
    assert_eq!(runner.executions(id)[0].status, TaskStatus::Aborted);

    // Running it again completes the job: nothing duplicated.
    let again = submit_users(
        &runner,
        &book,
        dir.clone(),
        Arc::new(NoHooks),
        single_threaded(),
    );
    let report = runner.wait(again).unwrap();
    assert_eq!(report.counts.added, people().len() - 4);
    assert_eq!(report.counts.unchanged, 4);
    assert_eq!(user_count(&dir), people().len());
}

/// Moves a manual clock on by a fixed step at each create: every write "takes" that long.
struct Ticking {
    clock: ManualClock,
    step: Duration,
}

impl Hooks for Ticking {
    fn row_adding(
        &self,
        _: &HookContext,
        _: &mut RowWrite,
    ) -> HookResult<std::ops::ControlFlow<()>> {
        self.clock.advance(self.step);
        Ok(std::ops::ControlFlow::Continue(()))
    }
}

#[test]
fn a_run_longer_than_its_session_timeout_is_aborted() {
    let book = TempWorkbook::new(&people());
    let clock = ManualClock::at("2026-11-22T09:00:00Z");
    let runner = Runner::with(Arc::new(clock.clone()), None);
    let dir = Arc::new(LdifDirectory::in_memory());
    // Each row takes 4 minutes on the manual clock; the limit is 10 minutes.
    let hooks = Arc::new(Ticking {
        clock: clock.clone(),
        step: Duration::from_secs(240),
    });
    let settings = JobSettings {
        task_session_timeout: Some(10),
        ..single_threaded()
    };
    let id = submit_users(&runner, &book, dir.clone(), hooks, settings);
    let report = runner.wait(id).unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    // Rows 1-3 started at 0, 4 and 8 minutes; the 4th would start at 12.
    assert_eq!(report.counts.added, 3);
    assert!(
        report
            .details
            .iter()
            .any(|d| d.message.contains("timed out"))
    );
    assert_eq!(user_count(&dir), 3);
}

/// A destination whose first `failures` searches fail as if the server were down.
struct Flaky {
    inner: LdifDirectory,
    failures: AtomicUsize,
}

impl Destination for Flaky {
    fn search_each(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), DestinationError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(DestinationError::Unavailable {
                message: "ldaps://dc1 is unavailable: connection refused".into(),
                source: None,
            });
        }
        self.inner
            .search_each(base, scope, filter, attributes, each)
    }
    fn exists(&self, dn: &str) -> Result<bool, DestinationError> {
        self.inner.exists(dn)
    }
    fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
        self.inner.add(entry, password)
    }
    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        self.inner.modify(dn, changes)
    }
    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError> {
        self.inner.rename(dn, new_dn)
    }
    fn delete(&self, dn: &str) -> Result<(), DestinationError> {
        self.inner.delete(dn)
    }
    fn commit(&self) -> Result<(), DestinationError> {
        self.inner.commit()
    }
}

#[test]
fn transient_failures_are_retried_with_backoff_and_each_attempt_is_recorded() {
    let book = TempWorkbook::new(&people());
    let clock = ManualClock::at("2026-11-22T09:00:00Z");
    let runner = Runner::with(Arc::new(clock.clone()), None);
    let flaky = Flaky::failing(2);
    let settings = JobSettings {
        max_retries: 3,
        retry_wait: Duration::from_secs(10),
        ..Default::default()
    };
    let id = submit_users(
        &runner,
        &book,
        flaky.clone(),
        Arc::new(NoHooks),
        settings.clone(),
    );
    let report = runner.wait(id).unwrap();
    assert_eq!(report.status, RunStatus::FinishedSuccess);
    let attempts = runner.executions(id);
    let statuses: Vec<TaskStatus> = attempts.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Retry,
            TaskStatus::Retry,
            TaskStatus::FinishedSuccess
        ]
    );
    assert!(attempts[0].details[0].message.contains("unavailable"));
    // The waits doubled on the manual clock: 10 s, then 20 s.
    assert_eq!(clock.now().to_rfc3339(), "2026-11-22T09:00:30+00:00");
    let json = serde_json::to_value(&attempts[0]).unwrap();
    assert_eq!(json["status"], 10);

    // A wait of 0 still backs off: 1 s, then 2 s.
    let before = clock.now();
    let no_wait = JobSettings {
        retry_wait: Duration::ZERO,
        ..settings.clone()
    };
    let id = submit_users(
        &runner,
        &book,
        Flaky::failing(2),
        Arc::new(NoHooks),
        no_wait,
    );
    assert_eq!(runner.wait(id).unwrap().status, RunStatus::FinishedSuccess);
    assert_eq!((clock.now() - before).num_seconds(), 3);

    // More failures than retries: the last attempt's error is the run's result.
    let flaky = Flaky::failing(10);
    let id = submit_users(&runner, &book, flaky, Arc::new(NoHooks), settings);
    assert_eq!(runner.wait(id).unwrap().status, RunStatus::Error);
    assert_eq!(runner.executions(id).len(), 4);

    // Row failures do not retry the run.
    let mut broken = people();
    broken[1].id = broken[0].id;
    let book = TempWorkbook::new(&broken);
    let settings = JobSettings {
        max_retries: 3,
        ..Default::default()
    };
    let dir = Arc::new(LdifDirectory::in_memory());
    let id = submit_users(&runner, &book, dir, Arc::new(NoHooks), settings);
    assert_eq!(runner.wait(id).unwrap().status, RunStatus::FinishedFail);
    assert_eq!(runner.executions(id).len(), 1);
}

#[test]
fn a_job_that_is_not_concurrent_is_refused_while_it_runs() {
    let book = TempWorkbook::new(&people());
    let (hooks, arrived, go) = gate();
    let dir = Arc::new(LdifDirectory::in_memory());
    let runner = Runner::new();
    let first = submit_users(&runner, &book, dir.clone(), hooks, single_threaded());
    arrived.recv().unwrap();
    let second = runner.submit(job_for(
        wire(&users_job()),
        &book,
        dir.clone(),
        Arc::new(NoHooks),
        single_threaded(),
    ));
    match second {
        Err(LifecycleError::AlreadyRunning { job, running }) => {
            assert_eq!(job, "ExcelToAD");
            assert_eq!(running, first);
        }
        other => panic!("{other:?}"),
    }
    for _ in 0..people().len() {
        let _ = go.send(());
    }
    runner.wait(first).unwrap();
    // Finished: it may run again.
    let third = submit_users(&runner, &book, dir, Arc::new(NoHooks), single_threaded());
    assert_eq!(runner.wait(third).unwrap().counts.unchanged, people().len());
}

#[test]
fn delta_runs_take_only_rows_changed_since_the_last_success_and_never_delete() {
    let mut staff = people();
    let book = TempWorkbook::new(&staff);
    let mut job_json = users_job();
    job_json["syncQuery"][0]["timeStampField"] = "Hired".into();
    job_json["syncQuery"][0]["updateAll"] = false.into();
    job_json["objectsOption"][0]["isDelete"] = true.into();
    let store = Arc::new(MemoryStateStore::default());
    let runner = Runner::with(
        Arc::new(ManualClock::at("2026-11-22T09:00:00Z")),
        Some(store.clone()),
    );
    let dir = Arc::new(LdifDirectory::in_memory());
    let run = || {
        let id = runner
            .submit(job_for(
                wire(&job_json),
                &book,
                dir.clone(),
                Arc::new(NoHooks),
                JobSettings::default(),
            ))
            .unwrap();
        runner.wait(id).unwrap()
    };
    let first = run();
    assert_eq!(first.counts.added, staff.len());
    let latest = staff.iter().map(|p| p.hired).max().unwrap();
    let mark = store.load("ExcelToAD").unwrap();
    assert!(
        mark[&1].starts_with(&format!("{:04}-{:02}-{:02}", latest.0, latest.1, latest.2)),
        "{mark:?}"
    );

    // Nothing changed: nothing read.
    assert_eq!(run().counts.read, 0);

    // One newcomer (hired after the watermark), one person gone: only the newcomer is taken,
    // and the one gone is not deleted by a delta run.
    let mut newcomer = staff[0].clone();
    newcomer.id = 9001;
    newcomer.first = "New".into();
    newcomer.last = "Comer".into();
    newcomer.hired = (latest.0 + 1, 1, 15);
    staff.pop();
    staff.push(newcomer);
    book.write(&staff, &groups());
    let delta = run();
    assert_eq!(delta.counts.read, 1);
    assert_eq!(delta.counts.added, 1);
    assert_eq!(delta.counts.deleted, 0);
    assert_eq!(user_count(&dir), people().len() + 1);
}

#[test]
fn records_serialise_in_the_reference_shapes() {
    let book = TempWorkbook::new(&people());
    let runner = Runner::new();
    let id = submit_users(
        &runner,
        &book,
        Arc::new(LdifDirectory::in_memory()),
        Arc::new(NoHooks),
        JobSettings::default(),
    );
    let report = runner.wait(id).unwrap();
    let exec = serde_json::to_value(&runner.executions(id)[0]).unwrap();
    for key in [
        "executingNodeName",
        "status",
        "startTime",
        "stopTime",
        "duration",
        "details",
        "scriptLogAvailable",
        "scriptLogLocation",
        "scriptLogSize",
    ] {
        assert!(
            exec.get(key).is_some(),
            "executionResult.{key} missing: {exec}"
        );
    }
    assert_eq!(exec["status"], 7);
    let store = serde_json::to_value(UserDataStore::from(&report)).unwrap();
    for key in [
        "added",
        "modified",
        "deleted",
        "deleteFailed",
        "updatedIdMap",
        "message",
    ] {
        assert!(
            store.get(key).is_some(),
            "UserDataStore.{key} missing: {store}"
        );
    }
    assert_eq!(store["added"].as_array().unwrap().len(), people().len());
}

/// Submits the users-only main job on `book`; the id of its run.
fn submit_users(
    runner: &Runner,
    book: &TempWorkbook,
    destination: Arc<dyn Destination>,
    hooks: Arc<dyn Hooks + Send + Sync>,
    settings: JobSettings,
) -> datasync::lifecycle::RunId {
    runner
        .submit(job_for(
            wire(&users_job()),
            book,
            destination,
            hooks,
            settings,
        ))
        .unwrap()
}

impl Flaky {
    /// A directory whose first `failures` searches fail as if the server were down.
    fn failing(failures: usize) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: LdifDirectory::in_memory(),
            failures: AtomicUsize::new(failures),
        })
    }
}

/// Holds the first row in `row_starting` (the prepare step) and counts the rows prepared.
struct PrepareGate {
    started: AtomicUsize,
    arrived: Sender<()>,
    go: Receiver<()>,
}

impl Hooks for PrepareGate {
    fn row_starting(
        &self,
        _: &HookContext,
        _: &mut datasync::hooks::RowStart<'_>,
    ) -> HookResult<std::ops::ControlFlow<()>> {
        if self.started.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = self.arrived.send(());
            let _ = self.go.recv();
        }
        Ok(std::ops::ControlFlow::Continue(()))
    }
}

#[test]
fn a_cancel_while_rows_are_prepared_stops_preparing_and_writes_nothing() {
    let book = TempWorkbook::new(&people());
    let (arrived_tx, arrived) = bounded(1);
    let (go, go_rx) = bounded(1);
    let hooks = Arc::new(PrepareGate {
        started: AtomicUsize::new(0),
        arrived: arrived_tx,
        go: go_rx,
    });
    let dir = Arc::new(LdifDirectory::in_memory());
    let runner = Runner::new();
    let id = submit_users(
        &runner,
        &book,
        dir.clone(),
        hooks.clone(),
        single_threaded(),
    );
    arrived.recv().unwrap();
    assert!(runner.cancel(id));
    go.send(()).unwrap();
    let report = runner.wait(id).unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    // Only the held row was prepared; none was written.
    assert_eq!(hooks.started.load(Ordering::SeqCst), 1);
    assert_eq!(report.counts.skipped, people().len());
    assert_eq!(user_count(&dir), 0);
}

/// A clock whose `sleep` (the backoff between attempts) tells the test and waits for it.
struct HeldClock {
    now: ManualClock,
    sleeping: Sender<Duration>,
    wake: Receiver<()>,
}

impl Clock for HeldClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.now.now()
    }
    fn sleep(&self, duration: Duration) {
        let _ = self.sleeping.send(duration);
        let _ = self.wake.recv();
        self.now.advance(duration);
    }
}

#[test]
fn a_cancel_during_the_backoff_ends_the_run_without_another_attempt() {
    let book = TempWorkbook::new(&people());
    let (sleeping_tx, sleeping) = bounded(100);
    let (wake, wake_rx) = bounded(100);
    let clock = Arc::new(HeldClock {
        now: ManualClock::at("2026-11-22T09:00:00Z"),
        sleeping: sleeping_tx,
        wake: wake_rx,
    });
    let runner = Runner::with(clock, None);
    let down = Flaky::failing(usize::MAX);
    let settings = JobSettings {
        max_retries: 5,
        retry_wait: Duration::from_secs(600),
        ..Default::default()
    };
    let id = submit_users(&runner, &book, down, Arc::new(NoHooks), settings);
    // The first attempt failed; the backoff sleeps a second at a time.
    assert_eq!(sleeping.recv().unwrap(), Duration::from_secs(1));
    assert!(runner.cancel(id));
    wake.send(()).unwrap();
    let report = runner.wait(id).unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    assert!(
        report.details[0]
            .message
            .contains("while it waited to retry"),
        "{:?}",
        report.details
    );
    let statuses: Vec<TaskStatus> = runner.executions(id).iter().map(|e| e.status).collect();
    assert_eq!(statuses, [TaskStatus::Retry, TaskStatus::Aborted]);
    assert!(sleeping.try_recv().is_err(), "it slept on after the cancel");
}
