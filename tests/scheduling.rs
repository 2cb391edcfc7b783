//! The lifecycle around runs: typed parameters, job-file settings, the scheduler on a manual
//! clock (fires, DST, skips, enable/disable, missed fires), run history and job states,
//! collections, notifications, and the OIG / Qlik shapes against the reference samples.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datasync::destination::Scope;
use datasync::hooks::{HookContext, HookResult, Notification};
use datasync::lifecycle::{
    Collection, FULL_REPORTS_KEPT, Fired, HistoryStatus, Job, JobSettings, JobState,
    LifecycleError, ManualClock, NotifyWhen, OnFailure, RunState, Runner, Schedule, Scheduler,
    StepOutcome, TaskStatus,
};
use datasync::query::Filter;
use datasync::{Destination, Hooks, LdifDirectory, NoHooks, RunStatus};
use serde_json::{Value, json};
use support::{TempWorkbook, gate, main_job, people, set_setting, users_only, wire};

fn users_job(name: &str) -> Value {
    let mut job = main_job();
    users_only(&mut job);
    job["jobInfo"]["name"] = name.into();
    job
}

fn job_on(
    definition: &Value,
    book: &TempWorkbook,
    destination: Arc<dyn Destination>,
    hooks: Arc<dyn Hooks + Send + Sync>,
) -> Job {
    let path = book.path();
    Job::new(
        wire(definition),
        Box::new(move || datasync::source::open(&path)),
        destination,
    )
    .unwrap()
    .with_hooks(hooks)
}

fn users(dir: &LdifDirectory) -> Vec<datasync::Entry> {
    let filter = Filter::parse("(objectClass=user)").unwrap();
    dir.search("DC=groupid,DC=lab", Scope::Subtree, &filter, &[])
        .unwrap_or_default()
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// The parameters a run's hooks saw at startup, and its notifications.
#[derive(Default)]
struct Recorder {
    company: Mutex<Vec<Option<String>>>,
    notified: Mutex<Vec<(String, Vec<NotifyWhen>, RunStatus)>>,
}

impl Hooks for Recorder {
    fn startup(&self, ctx: &HookContext) -> HookResult {
        self.company.lock().unwrap().push(ctx.context("Company"));
        Ok(())
    }
    fn notify(&self, n: &Notification<'_>) {
        self.notified.lock().unwrap().push((
            n.job.to_string(),
            n.reasons.to_vec(),
            n.report.status,
        ));
    }
}

fn with_parameters() -> Value {
    let mut job = users_job("Parameterised");
    for f in job["fieldsMap"].as_array_mut().unwrap() {
        if f["destinationField"] == "description" {
            f["transform"] = "Static:value=Synchronised for %Company% (batch %Batch%)".into();
        }
    }
    job["parameters"] = json!({
        "Company": {"dataType": "String", "required": true, "helpText": "written to description"},
        "Batch": {"dataType": "Number", "value": 1},
        "Target": {"dataType": "ITResource", "value": "embedded"}
    });
    job
}

#[test]
fn parameters_are_checked_at_submit_and_reach_static_and_hooks() {
    let book = TempWorkbook::new(&people());
    let dir = Arc::new(LdifDirectory::in_memory());
    let hooks = Arc::new(Recorder::default());
    let job = Arc::new(job_on(
        &with_parameters(),
        &book,
        dir.clone(),
        hooks.clone(),
    ));
    let runner = Runner::new();

    // Missing and mistyped: refused, every mistake named, nothing run or written.
    let given = BTreeMap::from([
        ("Batch".to_string(), "two".to_string()),
        ("Colour".to_string(), "red".to_string()),
    ]);
    let err = runner.submit_with(job.clone(), &given).unwrap_err();
    let LifecycleError::Parameters(errors) = &err else {
        panic!("{err:?}")
    };
    let named: Vec<&str> = errors.iter().map(|e| e.parameter.as_str()).collect();
    assert_eq!(named, ["Colour", "Batch", "Company"]);
    assert!(
        err.to_string()
            .contains("a value is required (written to description)")
    );
    assert!(err.to_string().contains("\"two\" is not a Number"));
    assert!(hooks.company.lock().unwrap().is_empty(), "a hook ran");
    assert!(users(&dir).is_empty());
    assert!(runner.history("Parameterised", 0, 10).items.is_empty());

    // Given: Static expands them, hooks find them in their context.
    let given = BTreeMap::from([("Company".to_string(), "Acme".to_string())]);
    let id = runner.submit_with(job.clone(), &given).unwrap();
    let report = runner.wait(id).unwrap();
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    let all = users(&dir);
    assert_eq!(all.len(), people().len());
    for entry in &all {
        assert_eq!(
            entry.first("description"),
            Some("Synchronised for Acme (batch 1)")
        );
    }
    assert_eq!(*hooks.company.lock().unwrap(), [Some("Acme".to_string())]);
}

#[test]
fn a_job_file_carries_its_schedule_collection_place_and_notifications() {
    let mut job = users_job("Nightly");
    job["jobInfo"]["schedule"] = "30 2 * * *".into();
    job["jobInfo"]["enabled"] = true.into();
    job["jobInfo"]["onFailure"] = "Continue".into();
    job["jobInfo"]["runOrder"] = 3.into();
    set_setting(&mut job, "Schedule.TimeZone", "Europe/Berlin");
    set_setting(&mut job, "IsNotificationEnabled", "True");
    set_setting(
        &mut job,
        "Notification.When",
        "when records are updated, JobFailed",
    );
    set_setting(&mut job, "Job.MaxRetries", "2");
    set_setting(&mut job, "Job.TaskSessionTimeout", "45");
    let s = JobSettings::from_definition(&wire(&job)).unwrap();
    assert_eq!(
        s.schedule,
        Some(Schedule::new("30 2 * * *", "Europe/Berlin").unwrap())
    );
    assert!(s.enabled);
    assert_eq!(s.on_failure, OnFailure::Continue);
    assert_eq!(s.run_order, 3);
    assert_eq!(
        s.notify,
        [NotifyWhen::RecordsUpdated, NotifyWhen::JobFailed]
    );
    assert_eq!((s.max_retries, s.task_session_timeout), (2, Some(45)));
    // The extensions are settings and a top-level member: the file still round-trips.
    let text = datasync::job::to_json(&wire(&job));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), job);

    // The product's own sample: no schedule, Abort, notifications off.
    let sample = datasync::job::load("fixtures/jobs/groupid-sample.json".as_ref()).unwrap();
    let s = JobSettings::from_definition(&sample).unwrap();
    assert_eq!(
        (s.schedule, s.enabled, s.on_failure, s.notify),
        (None, false, OnFailure::Abort, vec![])
    );

    // Every mistake at once, each where it is; Job::new refuses the job.
    job["jobInfo"]["schedule"] = "30 25 * * *".into();
    job["jobInfo"]["onFailure"] = "Retry".into();
    set_setting(&mut job, "Schedule.TimeZone", "Europe/Berln");
    set_setting(&mut job, "Notification.When", "Sometimes");
    job["parameters"] = json!({"X": {"dataType": "Date"}});
    let book = TempWorkbook::new(&people());
    let path = book.path();
    let err = Job::new(
        wire(&job),
        Box::new(move || datasync::source::open(&path)),
        Arc::new(LdifDirectory::in_memory()),
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "jobInfo.schedule: time zone \"Europe/Berln\"",
        "jobInfo.onFailure: \"retry\" is neither Abort nor Continue",
        "settings[Notification.When]: \"Sometimes\"",
        "parameters: unknown variant `Date`",
    ] {
        assert!(err.contains(expected), "{expected} not in:\n{err}");
    }
}

fn scheduled(cron: &str, zone: &str, job: Job) -> Arc<Job> {
    let mut job = job;
    job.settings.schedule = Some(Schedule::new(cron, zone).unwrap());
    job.settings.enabled = true;
    Arc::new(job)
}

#[test]
fn the_scheduler_starts_jobs_at_their_fire_times_in_their_time_zone() {
    let book = TempWorkbook::new(&people());
    // Saturday noon UTC before Berlin's spring change (29 March 2026, 02:00 → 03:00).
    let clock = ManualClock::at("2026-03-28T12:00:00Z");
    let runner = Runner::with(Arc::new(clock.clone()), None);
    let scheduler = Scheduler::new(runner.clone());
    let dir = Arc::new(LdifDirectory::in_memory());
    let job = job_on(&users_job("Nightly"), &book, dir.clone(), Arc::new(NoHooks));
    scheduler
        .add(scheduled("30 2 * * *", "Europe/Berlin", job))
        .unwrap();

    // 02:30 does not exist that night: the run is due when the gap ends, 03:00 CEST.
    assert_eq!(
        scheduler.next_execution("Nightly"),
        Some(at("2026-03-29T01:00:00Z"))
    );
    assert!(scheduler.tick().is_empty());
    clock.advance(Duration::from_secs(13 * 3600 - 1));
    assert!(scheduler.tick().is_empty(), "one second early");
    clock.advance(Duration::from_secs(1));
    let fired = scheduler.tick();
    let [Fired::Started { job, run }] = &fired[..] else {
        panic!("{fired:?}")
    };
    assert_eq!(job, "Nightly");
    assert_eq!(
        runner.wait(*run).unwrap().status,
        RunStatus::FinishedSuccess
    );
    assert_eq!(users(&dir).len(), people().len());
    // The next night is summer time: 02:30 CEST = 00:30 UTC.
    assert_eq!(
        scheduler.next_execution("Nightly"),
        Some(at("2026-03-30T00:30:00Z"))
    );
    let record = serde_json::to_value(scheduler.task_record("Nightly").unwrap()).unwrap();
    assert_eq!(
        record["operational"]["nextExecution"],
        "2026-03-30T00:30:00.000+00:00"
    );
    assert_eq!(record["operational"]["lastExecutionResult"]["status"], 7);
    assert!(scheduler.tick().is_empty(), "fired twice for one time");

    // Disabled: its time passes and nothing starts; no next execution is shown.
    assert!(scheduler.disable("Nightly"));
    clock.advance(Duration::from_secs(3 * 86_400));
    assert!(scheduler.tick().is_empty());
    assert_eq!(scheduler.next_execution("Nightly"), None);
    assert!(!scheduler.job_details("Nightly").unwrap().is_enabled);
    // Enabled again: the fires it missed are not made up; it waits for the next one.
    assert!(scheduler.enable("Nightly"));
    assert!(scheduler.tick().is_empty());
    assert_eq!(
        scheduler.next_execution("Nightly"),
        Some(at("2026-04-02T00:30:00Z"))
    );

    // A host that did not tick for three nights starts the job once, not three times.
    clock.advance(Duration::from_secs(3 * 86_400));
    let fired = scheduler.tick();
    assert_eq!(fired.len(), 1, "{fired:?}");
    runner.wait_idle();
    assert_eq!(runner.history("Nightly", 0, 10).total, 2);
    assert_eq!(
        scheduler.next_execution("Nightly"),
        Some(at("2026-04-05T00:30:00Z"))
    );
    // Names are how a scheduler tells jobs apart.
    let again = job_on(&users_job("Nightly"), &book, dir, Arc::new(NoHooks));
    assert_eq!(
        scheduler.add(Arc::new(again)).unwrap_err(),
        LifecycleError::DuplicateJob("Nightly".into())
    );
    assert!(matches!(
        scheduler.run_now("Weekly"),
        Err(LifecycleError::UnknownJob(_))
    ));
}

#[test]
fn a_fire_that_finds_the_job_running_is_skipped_and_recorded() {
    let book = TempWorkbook::new(&people());
    let clock = ManualClock::at("2026-11-22T08:59:30Z");
    let runner = Runner::with(Arc::new(clock.clone()), None);
    let scheduler = Scheduler::new(runner.clone());
    let (hooks, arrived, go) = gate();
    let dir = Arc::new(LdifDirectory::in_memory());
    let mut job = job_on(&users_job("EveryMinute"), &book, dir.clone(), hooks);
    job.settings.threads = 1;
    scheduler.add(scheduled("* * * * *", "UTC", job)).unwrap();

    clock.advance(Duration::from_secs(30));
    let [Fired::Started { run: first, .. }] = scheduler.tick()[..] else {
        panic!()
    };
    arrived.recv().unwrap();
    assert_eq!(runner.job_state("EveryMinute"), JobState::Running);
    assert_eq!(
        scheduler.job_details("EveryMinute").unwrap().status,
        JobState::Running
    );

    // The next minute comes while the first run holds its first row.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        scheduler.tick(),
        [Fired::Skipped {
            job: "EveryMinute".into(),
            running: first
        }]
    );
    let page = runner.history("EveryMinute", 0, 10);
    let statuses: Vec<(HistoryStatus, TaskStatus)> = page
        .items
        .iter()
        .map(|e| (e.status, e.task_status))
        .collect();
    assert_eq!(
        statuses,
        [
            (HistoryStatus::Skipped, TaskStatus::Skipped),
            (HistoryStatus::Running, TaskStatus::Started),
        ]
    );
    assert!(
        page.items[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("already running")
    );
    let json = serde_json::to_value(&page).unwrap();
    assert_eq!(json["items"][0]["taskStatus"], 9);
    assert_eq!(json["items"][0]["status"], "SKIPPED");
    assert_eq!(json["items"][1]["endTime"], Value::Null);

    for _ in 0..people().len() {
        go.send(()).unwrap();
    }
    runner.wait(first).unwrap();
    assert_eq!(runner.job_state("EveryMinute"), JobState::Stopped);
    let page = runner.history("EveryMinute", 0, 10);
    assert_eq!(page.items[1].status, HistoryStatus::Stopped);
    // Qlik's last execution is the one that ended last: the run, not the skip before it.
    assert_eq!(
        runner.last_execution("EveryMinute").unwrap().status,
        TaskStatus::FinishedSuccess
    );

    // Stop (OIG's action) mid-run: the job is INTERRUPTED and the history says why.
    let (hooks, arrived, go) = gate();
    let fresh = Arc::new(LdifDirectory::in_memory());
    let mut job = job_on(&users_job("Stoppable"), &book, fresh.clone(), hooks);
    job.settings.threads = 1;
    scheduler.add(Arc::new(job)).unwrap();
    let run = scheduler.run_now("Stoppable").unwrap();
    arrived.recv().unwrap();
    assert!(scheduler.stop("Stoppable"));
    for _ in 0..people().len() {
        go.send(()).unwrap();
    }
    let report = runner.wait(run).unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    // The row in flight finished; no other was started.
    assert_eq!(users(&fresh).len(), 1);
    assert_eq!(runner.job_state("Stoppable"), JobState::Interrupted);
    let newest = &runner.history("Stoppable", 0, 1).items[0];
    assert_eq!(newest.status, HistoryStatus::Interrupted);
    assert!(
        newest
            .error_message
            .as_deref()
            .unwrap()
            .contains("cancelled"),
        "{newest:?}"
    );
    assert!(!scheduler.stop("Stoppable"), "nothing left to stop");
}

#[test]
fn history_is_paged_newest_first_and_bounded() {
    let book = TempWorkbook::new(&people());
    let runner =
        Runner::with_history_limit(Arc::new(ManualClock::at("2026-11-22T09:00:00Z")), None, 3);
    let dir: Arc<dyn Destination> = Arc::new(LdifDirectory::in_memory());
    let job = Arc::new(job_on(&users_job("Paged"), &book, dir, Arc::new(NoHooks)));
    let ids: Vec<_> = (0..5)
        .map(|_| {
            let id = runner.submit(job.clone()).unwrap();
            runner.wait(id).unwrap();
            id
        })
        .collect();
    let first = runner.history("Paged", 0, 2);
    assert_eq!(first.total, 3);
    let runs: Vec<Option<u64>> = first.items.iter().map(|e| e.run_id).collect();
    assert_eq!(runs, [Some(ids[4].0), Some(ids[3].0)]);
    let second = runner.history("Paged", 1, 2);
    assert_eq!(
        second.items.iter().map(|e| e.run_id).collect::<Vec<_>>(),
        [Some(ids[2].0)]
    );
    assert!(runner.history("Paged", 2, 2).items.is_empty());
    // The oldest runs are forgotten, by id too.
    assert!(runner.status(ids[0]).is_none());
    assert!(runner.status(ids[2]).is_some());
    assert!(runner.history("Nobody", 0, 10).items.is_empty());

    // Only the newest reports keep their lists of DNs; older ones keep their counts.
    let runner = Runner::new();
    let ids: Vec<_> = (0..FULL_REPORTS_KEPT + 2)
        .map(|_| {
            let fresh: Arc<dyn Destination> = Arc::new(LdifDirectory::in_memory());
            let job = job_on(&users_job("Slim"), &book, fresh, Arc::new(NoHooks));
            let id = runner.submit(Arc::new(job)).unwrap();
            runner.wait(id).unwrap();
            id
        })
        .collect();
    let report = |id| match runner.status(id) {
        Some(RunState::Finished(r)) => r,
        other => panic!("{other:?}"),
    };
    for (i, id) in ids.iter().enumerate() {
        let r = report(*id);
        assert_eq!(r.counts.added, people().len());
        let kept = i >= 2;
        assert_eq!(
            r.added.len(),
            if kept { people().len() } else { 0 },
            "run {i}"
        );
    }
}

fn collection_job(name: &str, order: i64, on_failure: &str) -> Value {
    let mut job = users_job(name);
    job["jobInfo"]["runOrder"] = order.into();
    job["jobInfo"]["onFailure"] = on_failure.into();
    job
}

fn broken_source_job(definition: &Value, dir: Arc<dyn Destination>) -> Job {
    Job::new(
        wire(definition),
        Box::new(|| datasync::source::open("fixtures/sources/no-such-workbook.xlsx".as_ref())),
        dir,
    )
    .unwrap()
}

#[test]
fn collections_run_in_run_order_and_abort_or_continue_on_failure() {
    let book = TempWorkbook::new(&people());
    let runner = Runner::new();
    let run = |failing_on_failure: &str| {
        let dirs: Vec<Arc<LdifDirectory>> = (0..3)
            .map(|_| Arc::new(LdifDirectory::in_memory()))
            .collect();
        let second = job_on(
            &collection_job("Second", 2, "Abort"),
            &book,
            dirs[0].clone(),
            Arc::new(NoHooks),
        );
        let first_fails = broken_source_job(
            &collection_job("First", 1, failing_on_failure),
            dirs[1].clone(),
        );
        let third = job_on(
            &collection_job("Third", 3, "Abort"),
            &book,
            dirs[2].clone(),
            Arc::new(NoHooks),
        );
        let collection = Collection {
            name: "Onboarding".into(),
            jobs: vec![Arc::new(second), Arc::new(third), Arc::new(first_fails)],
        };
        (runner.run_collection(&collection), dirs)
    };

    let (report, dirs) = run("Continue");
    let order: Vec<&str> = report.steps.iter().map(|s| s.job_name.as_str()).collect();
    assert_eq!(order, ["First", "Second", "Third"]);
    let StepOutcome::Finished { report: failed, .. } = &report.steps[0].outcome else {
        panic!("{:?}", report.steps[0])
    };
    assert_eq!(failed.status, RunStatus::Error);
    assert!(report.steps[1].succeeded() && report.steps[2].succeeded());
    assert_eq!(report.aborted_by, None);
    assert_eq!(users(&dirs[0]).len(), people().len());
    assert_eq!(users(&dirs[2]).len(), people().len());

    let (report, dirs) = run("Abort");
    assert_eq!(report.aborted_by.as_deref(), Some("First"));
    assert_eq!(report.steps[1].outcome, StepOutcome::NotRun);
    assert_eq!(report.steps[2].outcome, StepOutcome::NotRun);
    assert!(users(&dirs[0]).is_empty() && users(&dirs[2]).is_empty());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["steps"][1]["outcome"], "notRun");
    assert_eq!(json["steps"][0]["outcome"], "finished");

    // A job refused before it runs (a required parameter) is a failure too.
    let dir = Arc::new(LdifDirectory::in_memory());
    let mut needs = with_parameters();
    needs["jobInfo"]["onFailure"] = "Abort".into();
    let refused = job_on(&needs, &book, dir.clone(), Arc::new(NoHooks));
    let after = job_on(
        &collection_job("After", 5, "Abort"),
        &book,
        dir.clone(),
        Arc::new(NoHooks),
    );
    let report = runner.run_collection(&Collection {
        name: "Refused".into(),
        jobs: vec![Arc::new(refused), Arc::new(after)],
    });
    assert!(
        matches!(&report.steps[0].outcome, StepOutcome::Refused { error } if error.contains("Company"))
    );
    assert_eq!(report.steps[1].outcome, StepOutcome::NotRun);
    assert!(users(&dir).is_empty());
}

#[test]
fn notifications_follow_the_job_rules() {
    let book = TempWorkbook::new(&people());
    let runner = Runner::new();
    let run = |job: &Job| {
        let id = runner
            .submit(Arc::new(Job {
                definition: job.definition.clone(),
                context: job.context.clone(),
                source: {
                    let path = book.path();
                    Box::new(move || datasync::source::open(&path))
                },
                destination: job.destination.clone(),
                hooks: job.hooks.clone(),
                settings: job.settings.clone(),
            }))
            .unwrap();
        runner.wait(id).unwrap()
    };
    let hooks = Arc::new(Recorder::default());
    let dir = Arc::new(LdifDirectory::in_memory());
    let mut definition = users_job("Notified");
    set_setting(&mut definition, "IsNotificationEnabled", "True");
    set_setting(
        &mut definition,
        "Notification.When",
        "RecordsUpdated, Errors",
    );
    let job = job_on(&definition, &book, dir.clone(), hooks.clone());

    // First run creates: "records updated".
    run(&job);
    // Second run changes nothing: no notification.
    run(&job);
    // A broken row: "errors" (and the good rows are unchanged).
    let mut broken = people();
    broken[1].id = broken[0].id;
    book.write(&broken, &support::groups());
    let report = run(&job);
    assert_eq!(report.status, RunStatus::FinishedFail);
    let got = hooks.notified.lock().unwrap().clone();
    let reasons: Vec<Vec<NotifyWhen>> = got.iter().map(|(_, r, _)| r.clone()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0], [NotifyWhen::RecordsUpdated]);
    // The broken rows fail; the one whose key moved away is deleted: both rules match.
    let updated = report.added.len() + report.modified.len() + report.deleted.len();
    let mut expected = vec![NotifyWhen::Errors];
    if updated > 0 {
        expected.insert(0, NotifyWhen::RecordsUpdated);
    }
    assert_eq!(reasons[1], expected);
    assert_eq!(got[0].0, "Notified");

    // "When the job fails": only failed runs; Always: every run. Off: never.
    let failing = Arc::new(Recorder::default());
    let mut job = broken_source_job(&users_job("Fails"), Arc::new(LdifDirectory::in_memory()))
        .with_hooks(failing.clone());
    job.settings.notify = vec![NotifyWhen::JobFailed];
    let id = runner.submit(Arc::new(job)).unwrap();
    assert_eq!(runner.wait(id).unwrap().status, RunStatus::Error);
    assert_eq!(
        failing.notified.lock().unwrap()[0].1,
        [NotifyWhen::JobFailed]
    );

    let quiet = Arc::new(Recorder::default());
    let job = job_on(
        &users_job("Quiet"),
        &book,
        Arc::new(LdifDirectory::in_memory()),
        quiet.clone(),
    );
    assert!(job.settings.notify.is_empty());
    run(&job);
    assert!(quiet.notified.lock().unwrap().is_empty());
}

/// Every key of `ours` is in `reference` with a value of the same JSON type, recursively
/// (an array's first element stands for all). `free` names keys that may differ in type.
fn same_shape(ours: &Value, reference: &Value, path: &str, free: &[&str]) {
    match (ours, reference) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let here = format!("{path}.{k}");
                let Some(r) = b.get(k) else {
                    panic!("{here} is not in the reference");
                };
                if free.contains(&here.as_str()) || v.is_null() {
                    continue;
                }
                same_shape(v, r, &here, free);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                same_shape(x, y, &format!("{path}[]"), free);
            }
        }
        (a, b) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "{path}: {a} against the reference's {b}"
        ),
    }
}

#[test]
fn records_match_the_reference_samples() {
    let book = TempWorkbook::new(&people());
    let clock = ManualClock::at("2026-11-22T06:00:00Z");
    let runner = Runner::with(Arc::new(clock.clone()), None);
    let scheduler = Scheduler::new(runner.clone());
    let mut definition = with_parameters();
    definition["jobInfo"]["name"] = "Shaped".into();
    let mut job = job_on(
        &definition,
        &book,
        Arc::new(LdifDirectory::in_memory()),
        Arc::new(NoHooks),
    );
    job.settings.max_retries = 2;
    job.settings.task_session_timeout = Some(30);
    let job = scheduled("0 7 * * MON-FRI", "Europe/London", job);
    scheduler.add(job.clone()).unwrap();
    let id = runner
        .submit_with(job, &BTreeMap::from([("Company".into(), "Acme".into())]))
        .unwrap();
    runner.wait(id).unwrap();

    // Qlik's usersynctask: our record is a subset of its sample, type for type (the sample's
    // `status` is an empty object where the documentation numbers it).
    let qlik: Value =
        serde_json::from_str(include_str!("../fixtures/reference/qlik-usersynctask.json")).unwrap();
    let record = serde_json::to_value(scheduler.task_record("Shaped").unwrap()).unwrap();
    same_shape(
        &record,
        &qlik,
        "",
        &[".operational.lastExecutionResult.status"],
    );
    assert_eq!(record["maxRetries"], 2);
    assert_eq!(record["taskSessionTimeout"], 30);
    assert_eq!(record["enabled"], true);
    // Monday 23 November 2026, 07:00 in London (GMT).
    assert_eq!(
        record["operational"]["nextExecution"],
        "2026-11-23T07:00:00.000+00:00"
    );
    assert_eq!(record["operational"]["lastExecutionResult"]["status"], 7);

    // OIG's JobDetails: its schema's fields with its types; status one of its values.
    let oig: Value = serde_json::from_str(include_str!(
        "../fixtures/reference/oig-jobdetails-schema.json"
    ))
    .unwrap();
    let details = serde_json::to_value(scheduler.job_details("Shaped").unwrap()).unwrap();
    let ours_only = ["timeZone", "nextFireTime"];
    for (key, value) in details.as_object().unwrap() {
        if ours_only.contains(&key.as_str()) {
            continue;
        }
        let Some(kind) = oig["JobDetails"][key].as_str() else {
            panic!("{key} is not an OIG JobDetails field")
        };
        let ok = match kind {
            "boolean" => value.is_boolean(),
            "string" => value.is_string(),
            "integer" => value.is_u64(),
            "object" => value.is_object(),
            _ => false,
        };
        assert!(ok, "{key}: {value} is not {kind}");
    }
    assert!(
        oig["statusValues"]
            .as_array()
            .unwrap()
            .contains(&details["status"])
    );
    assert_eq!(details["retryCount"], 2);
    assert_eq!(details["cronScheduleType"], "0 7 * * MON-FRI");
    for (_, p) in details["parameters"].as_object().unwrap() {
        for (key, _) in p.as_object().unwrap() {
            assert!(
                oig["JobParameter"].get(key).is_some(),
                "parameter field {key}"
            );
        }
        if let Some(t) = p.get("dataType") {
            assert!(oig["dataTypeValues"].as_array().unwrap().contains(t));
        }
    }
    // OIG's own request sample declares parameters we read.
    let request: Value =
        serde_json::from_str(include_str!("../fixtures/reference/oig-job-request.json")).unwrap();
    let params: datasync::lifecycle::Parameters =
        serde_json::from_value(request["parameters"].clone()).unwrap();
    assert_eq!(params.len(), 4);

    // History entries in JSON.
    let history = serde_json::to_value(runner.history("Shaped", 0, 5)).unwrap();
    assert_eq!(history["items"][0]["status"], "STOPPED");
    assert_eq!(history["items"][0]["trigger"], "Manual");
    assert_eq!(history["total"], 1);
}

#[test]
fn a_scheduled_collection_runs_its_jobs_in_order_and_skips_a_fire_while_it_runs() {
    let book = TempWorkbook::new(&people());
    let clock = ManualClock::at("2026-11-22T02:59:00Z");
    let runner = Runner::with(Arc::new(clock.clone()), None);
    let scheduler = Scheduler::new(runner.clone());
    let (gate_hooks, arrived, go) = gate();
    let first_dir = Arc::new(LdifDirectory::in_memory());
    let second_dir = Arc::new(LdifDirectory::in_memory());
    let mut first = job_on(
        &collection_job("First", 1, "Abort"),
        &book,
        first_dir.clone(),
        gate_hooks.clone(),
    );
    first.settings.threads = 1;
    let second = job_on(
        &collection_job("Second", 2, "Abort"),
        &book,
        second_dir.clone(),
        Arc::new(NoHooks),
    );
    let nightly = Arc::new(Collection {
        name: "Nightly".into(),
        jobs: vec![Arc::new(second), Arc::new(first)],
    });
    scheduler
        .add_collection(nightly, Schedule::new("*/30 * * * *", "UTC").unwrap())
        .unwrap();
    assert_eq!(
        scheduler.next_execution("Nightly"),
        Some(at("2026-11-22T03:00:00Z"))
    );
    assert!(
        scheduler.job_details("Nightly").is_none(),
        "a collection is not a job"
    );

    clock.advance(Duration::from_secs(60));
    assert_eq!(
        scheduler.tick(),
        [Fired::CollectionStarted {
            collection: "Nightly".into()
        }]
    );
    // First runs first; it holds its first row while the next fire comes.
    arrived.recv().unwrap();
    assert_eq!(runner.job_state("First"), JobState::Running);
    assert!(runner.running("Second").is_none());
    clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(
        scheduler.tick(),
        [Fired::CollectionSkipped {
            collection: "Nightly".into()
        }]
    );
    assert!(
        !scheduler.run_collection_now("Nightly").unwrap(),
        "started twice"
    );
    for _ in 0..people().len() {
        go.send(()).unwrap();
    }
    let report = scheduler.wait_collection("Nightly").unwrap();
    let order: Vec<&str> = report.steps.iter().map(|s| s.job_name.as_str()).collect();
    assert_eq!(order, ["First", "Second"]);
    assert!(report.steps.iter().all(|s| s.succeeded()), "{report:?}");
    assert!(!report.stopped);
    assert_eq!(users(&first_dir).len(), people().len());
    assert_eq!(users(&second_dir).len(), people().len());
    assert_eq!(scheduler.last_collection_report("Nightly"), Some(report));

    // Told to stop mid-collection (as a scheduler shutting down tells it): the job under
    // way finishes, the rest do not run.
    let runs_before = runner.history("Second", 0, 10).total;
    while arrived.try_recv().is_ok() {} // the first run's rows
    let stop = AtomicBool::new(false);
    let nightly = Collection {
        name: "Again".into(),
        jobs: vec![
            Arc::new(job_on(
                &collection_job("Second", 2, "Abort"),
                &book,
                second_dir.clone(),
                Arc::new(NoHooks),
            )),
            {
                let mut j = job_on(
                    &collection_job("First", 1, "Abort"),
                    &book,
                    Arc::new(LdifDirectory::in_memory()),
                    gate_hooks.clone(),
                );
                j.settings.threads = 1;
                Arc::new(j)
            },
        ],
    };
    let report = std::thread::scope(|s| {
        let running = s.spawn(|| runner.run_collection_until(&nightly, &stop));
        arrived.recv().unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..people().len() {
            go.send(()).unwrap();
        }
        running.join().unwrap()
    });
    assert!(report.stopped, "{report:?}");
    assert!(report.steps[0].succeeded());
    assert_eq!(report.steps[1].outcome, StepOutcome::NotRun);
    assert_eq!(runner.history("Second", 0, 10).total, runs_before);
}
