//! The library as a host service uses it (issue 16's "what a host meets"): only the public
//! API, as a host would write it.

use std::path::Path;

use datasync::destination::AttributeName;
use datasync::hooks::RowWrite;
use datasync::job;
use datasync::lifecycle::UserDataStore;
use datasync::plan;

#[test]
fn a_host_finds_the_jobs_source_file_beside_the_job_file() {
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let job = job::load(&job_file).unwrap();
    let source = job::source_path(&job, &job_file).unwrap();
    assert!(source.exists(), "{}", source.display());
    assert!(datasync::source::open(&source).is_ok());
}

#[test]
fn a_host_edits_a_job_copy_without_boilerplate() {
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let mut job = job::load(&job_file).unwrap();
    let fields = job.fields_map.get_mut().unwrap();
    let before = fields.len();
    fields.truncate(before - 1);
    assert_eq!(job.fields_map.get().unwrap().len(), before - 1);
    job::set_setting(&mut job, "Destination.DeleteThreshold", "5%");
    assert_eq!(
        job::setting(&job, "destination.deletethreshold"),
        Some("5%")
    );
    // The edited job still loads and round-trips.
    let json = job::to_json(&job);
    assert_eq!(job::from_json(&json, "edited").unwrap(), job);
}

#[test]
fn attribute_names_compare_without_case_through_is_and_row_writes_look_names_up() {
    let name = AttributeName::from("sAMAccountName");
    assert!(name.is("SAMACCOUNTNAME"));
    let write = RowWrite {
        object_type: datasync::ObjectType::User,
        row: 2,
        key: "1001".into(),
        dn: "CN=Ann,DC=lab".into(),
        attributes: vec![(name, vec!["ann".into()])],
        value_changes: Vec::new(),
    };
    assert_eq!(write.get("samaccountname"), Some(&["ann".to_string()][..]));
    assert_eq!(write.get("mail"), None);
}

#[test]
fn lifecycle_records_give_their_json_like_the_report() {
    let store = UserDataStore {
        added: vec!["CN=Ann,DC=lab".into()],
        modified: Vec::new(),
        deleted: Vec::new(),
        delete_failed: Vec::new(),
        updated_id_map: Default::default(),
        message: "1 added".into(),
    };
    let json: serde_json::Value = serde_json::from_str(&store.to_json()).unwrap();
    assert_eq!(json["added"][0], "CN=Ann,DC=lab");
}

#[test]
fn a_job_using_a_hosts_script_is_made_with_its_context_and_runs() {
    use datasync::lifecycle::{Job, Runner};
    use datasync::transform::TransformContext;
    use std::sync::Arc;
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let mut definition = job::load(&job_file).unwrap();
    let fields = definition.fields_map.get_mut().unwrap();
    let description = fields
        .iter_mut()
        .find(|f| f.destination_field.get().map(String::as_str) == Some("description"))
        .unwrap();
    description.transform = "Script:name=shout".to_string().into();
    let source = job::source_path(&definition, &job_file).unwrap();
    let open: datasync::lifecycle::OpenSource = Box::new(move || datasync::source::open(&source));
    let directory = Arc::new(datasync::LdifDirectory::in_memory());

    let mut context = TransformContext::default();
    context.scripts.register("shout", |input| {
        Ok(input.row.get("Last").map(|l| l.to_uppercase()))
    });
    // Without its script the job is refused when it is made, naming it.
    let open_again: datasync::lifecycle::OpenSource = Box::new(|| unreachable!());
    let err = Job::new(definition.clone(), open_again, directory.clone()).unwrap_err();
    assert!(err.to_string().contains("shout"), "{err}");
    // With it, it is made and runs.
    let job = Job::new_in(definition, context, open, directory.clone()).unwrap();
    let runner = Runner::new();
    let id = runner.submit(Arc::new(job)).unwrap();
    let report = runner.wait(id).unwrap();
    assert_eq!(
        report.status,
        datasync::RunStatus::FinishedSuccess,
        "{report:?}"
    );
    let ann = datasync::Destination::search(
        directory.as_ref(),
        "DC=groupid,DC=lab",
        datasync::destination::Scope::Subtree,
        &datasync::query::Filter::parse("(employeeID=1001)").unwrap(),
        &[],
    )
    .unwrap();
    assert_eq!(ann[0].first("description"), Some("LEE"));
}

#[test]
fn a_failed_run_keeps_the_kind_of_its_error_through_the_runner() {
    use datasync::lifecycle::{Job, Runner};
    use datasync::{ErrorKind, RunStatus};
    use std::sync::Arc;
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let run = |definition: datasync::DataSyncJob, source: std::path::PathBuf| {
        let open: datasync::lifecycle::OpenSource =
            Box::new(move || datasync::source::open(&source));
        let job = Job::new(
            definition,
            open,
            Arc::new(datasync::LdifDirectory::in_memory()),
        )
        .unwrap();
        let runner = Runner::new();
        let id = runner.submit(Arc::new(job)).unwrap();
        runner.wait(id).unwrap()
    };
    let definition = job::load(&job_file).unwrap();
    let source = job::source_path(&definition, &job_file).unwrap();

    let missing = run(definition.clone(), source.with_file_name("nowhere.xlsx"));
    assert_eq!(missing.status, RunStatus::Error);
    assert_eq!(
        missing.error_kind,
        Some(ErrorKind::SourceUnreadable),
        "{missing:?}"
    );

    let mut bad_query = definition.clone();
    bad_query.sync_query.get_mut().unwrap()[0].query = "SELECT * FROM [Nope$]".to_string().into();
    let report = run(bad_query, source.clone());
    assert_eq!(
        report.error_kind,
        Some(ErrorKind::SourceQuery),
        "{report:?}"
    );
    // The kind is in the report's JSON too.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["errorKind"], "SourceQuery");

    let fine = run(definition, source);
    assert_eq!(fine.error_kind, None);
}

#[test]
fn a_host_retries_its_own_start_with_the_runs_backoff() {
    use datasync::lifecycle::{JobSettings, MAX_RETRY_WAIT};
    use std::time::Duration;
    let settings = JobSettings {
        max_retries: 9,
        retry_wait: Duration::ZERO,
        ..Default::default()
    };
    let retry = settings.retry_policy();
    assert_eq!(retry.attempts, 10);
    // A wait of 0 still backs off, from 1 s, doubling, up to the ceiling.
    let waits: Vec<Duration> = (1..12).map(|a| retry.wait(a)).collect();
    assert_eq!(waits[0], Duration::from_secs(1));
    assert_eq!(waits[1], Duration::from_secs(2));
    assert_eq!(*waits.last().unwrap(), MAX_RETRY_WAIT);
    // The one policy type, which the LDAP connections' retries use too.
    let _: datasync::RetryPolicy = retry;
}

/// Vetoes the create of one object, by its `employeeID`, in `row_adding`.
struct VetoCreate(&'static str);

impl datasync::Hooks for VetoCreate {
    fn row_adding(
        &self,
        _: &datasync::HookContext,
        write: &mut RowWrite,
    ) -> datasync::hooks::HookResult<std::ops::ControlFlow<()>> {
        if write.get("employeeID") == Some(&[self.0.to_string()][..]) {
            return Ok(std::ops::ControlFlow::Break(()));
        }
        Ok(std::ops::ControlFlow::Continue(()))
    }
}

/// The one object with this `employeeID`, if any.
fn employee(directory: &datasync::LdifDirectory, id: &str) -> Option<datasync::Entry> {
    let filter = datasync::query::Filter::parse(&format!("(employeeID={id})")).unwrap();
    let mut found = datasync::Destination::search(
        directory,
        "DC=groupid,DC=lab",
        datasync::destination::Scope::Subtree,
        &filter,
        &[],
    )
    .unwrap();
    assert!(found.len() <= 1);
    found.pop()
}

#[test]
fn a_create_vetoed_in_row_adding_leaves_no_reference_to_it_and_reruns_converge() {
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let definition = job::load(&job_file).unwrap();
    let plan = plan::compile(&definition, &Default::default()).unwrap();
    let source = job::source_path(&definition, &job_file).unwrap();
    let directory = datasync::LdifDirectory::in_memory();
    let run = |hooks: &dyn datasync::Hooks| {
        let mut rows = datasync::source::open(&source).unwrap();
        datasync::run(&plan, rows.as_mut(), &directory, hooks, &Default::default()).unwrap()
    };
    // Bob (1002) manages José (1004). Bob's create is vetoed: José is created without a
    // manager, with a warning naming Bob's DN, rather than with a `manager` naming nothing.
    let first = run(&VetoCreate("1002"));
    assert!(employee(&directory, "1002").is_none());
    let jose = employee(&directory, "1004").expect("José is created");
    assert_eq!(jose.get("manager"), &[] as &[String], "{jose:?}");
    let warning = first
        .details
        .iter()
        .find(|d| d.message.contains("manager") && d.message.contains("CN=Bob"))
        .unwrap_or_else(|| panic!("a warning names Bob's DN: {:?}", first.details));
    assert!(
        warning.message.contains("not create"),
        "{}",
        warning.message
    );
    // Every `manager` in the directory names an object that exists.
    for id in 1001..=1008 {
        if let Some(e) = employee(&directory, &id.to_string()) {
            for manager in e.get("manager") {
                assert!(
                    datasync::Destination::read_entry(&directory, manager, &[])
                        .unwrap()
                        .is_some(),
                    "{} names {manager}, which does not exist",
                    e.dn
                );
            }
        }
    }
    // The same run again changes nothing: José stays unchanged, without a manager.
    let again = run(&VetoCreate("1002"));
    assert_eq!(again.counts.updated, 0, "{again:?}");
    assert_eq!(again.counts.added, 0, "{again:?}");
    // Without the veto, Bob is created and José gets him as manager.
    let last = run(&datasync::NoHooks);
    let bob = employee(&directory, "1002").expect("Bob is created");
    let jose = employee(&directory, "1004").unwrap();
    assert_eq!(jose.get("manager"), std::slice::from_ref(&bob.dn));
    assert_eq!(last.counts.added, 1, "{last:?}");
}

#[test]
fn a_script_that_panics_fails_its_row_only() {
    use datasync::transform::TransformContext;
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let mut definition = job::load(&job_file).unwrap();
    let description = definition
        .fields_map
        .get_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f.destination_field.get().map(String::as_str) == Some("description"))
        .unwrap();
    description.transform = "Script:name=shaky".to_string().into();
    let mut context = TransformContext::default();
    context.scripts.register("shaky", |input| {
        if input.row.get("First") == Some("Bob") {
            panic!("a bug in the host's script");
        }
        Ok(Some("fine".into()))
    });
    let plan = plan::compile(&definition, &context).unwrap();
    let source = job::source_path(&definition, &job_file).unwrap();
    let mut rows = datasync::source::open(&source).unwrap();
    let directory = datasync::LdifDirectory::in_memory();
    let report = datasync::run(
        &plan,
        rows.as_mut(),
        &directory,
        &datasync::NoHooks,
        &Default::default(),
    )
    .expect("the run goes on past the panic");
    assert_eq!(report.counts.failed, 1, "{report:?}");
    let failure = &report.failed[0];
    assert_eq!(failure.key.as_deref(), Some("1002"));
    assert!(
        failure
            .message
            .contains("panicked: a bug in the host's script"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .field
            .as_deref()
            .unwrap_or("")
            .contains("description")
    );
    assert!(employee(&directory, "1002").is_none());
    assert_eq!(
        employee(&directory, "1001").unwrap().first("description"),
        Some("fine")
    );
}

#[test]
fn source_errors_keep_the_readers_own_error_as_their_source() {
    use datasync::source::SourceError;
    use std::error::Error as _;
    let dir = tempfile::tempdir().unwrap();
    // A workbook that is not one: calamine's error is kept under ours.
    let corrupt = dir.path().join("people.xlsx");
    std::fs::write(&corrupt, b"PK\x03\x04 not a zip at all").unwrap();
    let err = datasync::source::open(&corrupt)
        .map(|_| ())
        .expect_err("a corrupt workbook is refused");
    assert!(matches!(err, SourceError::Workbook { .. }), "{err:?}");
    assert!(err.source().is_some(), "calamine's error is the source");
    // A query SQLite refuses: SQLite's error is kept under ours.
    let people = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sources/people.xlsx");
    let mut source = datasync::source::open(&people).unwrap();
    let err = source
        .query("SELECT Nope FROM [TTSheet1$]")
        .map(|_| ())
        .expect_err("a missing column is refused");
    assert!(matches!(err, SourceError::Query { .. }), "{err:?}");
    assert!(err.to_string().contains("Nope"), "{err}");
    assert!(err.source().is_some(), "SQLite's error is the source");
}

/// The `std::io::Error` somewhere in `err`'s chain of sources, if any.
#[cfg(feature = "ldap")]
fn io_error_under(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = err.source();
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

#[cfg(feature = "ldap")]
#[test]
fn an_unreachable_ldap_server_keeps_the_clients_error_as_the_source() {
    use datasync::destination::{LdapDirectory, ServerKind};
    use datasync::ldap::LdapConfig;
    use datasync::source::{LdapSource, SourceError};
    // Port 1 on loopback: nothing listens, so the connection is refused at once. A host
    // tells "the server is down" from "the server said no" by the I/O error underneath.
    let config = || {
        let mut config = LdapConfig::parse("ldap://127.0.0.1:1/DC=example,DC=com").unwrap();
        config.retry.attempts = 1;
        config
    };
    let err = LdapDirectory::connect(config(), ServerKind::Ldap)
        .map(|_| ())
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(err, datasync::DestinationError::Unavailable { .. }),
        "{err:?}"
    );
    assert!(err.is_transient(), "a refused connection may be retried");
    assert_eq!(
        io_error_under(&err),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    let err = LdapSource::connect(config())
        .map(|_| ())
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, SourceError::Directory { .. }), "{err:?}");
    assert_eq!(
        io_error_under(&err),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}

/// A source that hands over the fixture's rows one by one, and waits after `pause_after`
/// rows until it is let go: a slow database, as a host sees one.
struct SlowSource {
    pause_after: usize,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl datasync::Source for SlowSource {
    fn query(
        &mut self,
        _: &str,
    ) -> Result<datasync::source::RowSet, datasync::source::SourceError> {
        unreachable!("the run streams")
    }

    fn query_into(
        &mut self,
        query: &str,
        sink: &mut dyn datasync::source::RowSink,
    ) -> Result<(), datasync::source::SourceError> {
        let people = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sources/people.xlsx");
        let answer = datasync::source::open(&people)?.query(query)?;
        if sink.columns(&answer.columns).is_break() {
            return Ok(());
        }
        for (i, row) in answer.rows.into_iter().enumerate() {
            if i == self.pause_after {
                let _ = self.go.lock().unwrap().recv();
            }
            if sink.row(row).is_break() {
                break;
            }
        }
        Ok(())
    }
}

#[test]
fn progress_counts_rows_read_while_the_source_is_read() {
    use datasync::lifecycle::{Job, RunState, Runner};
    use std::sync::Arc;
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let mut definition = job::load(&job_file).unwrap();
    support_users_only(&mut definition);
    let (go, wait) = std::sync::mpsc::channel();
    let wait = std::sync::Mutex::new(Some(wait));
    let open: datasync::lifecycle::OpenSource = Box::new(move || {
        let go = wait.lock().unwrap().take().expect("opened once");
        Ok(Box::new(SlowSource {
            pause_after: 5,
            go: std::sync::Mutex::new(go),
        }))
    });
    let directory = Arc::new(datasync::LdifDirectory::in_memory());
    let job = Job::new(definition, open, directory).unwrap();
    let runner = Runner::new();
    let id = runner.submit(Arc::new(job)).unwrap();
    // While the source is held after 5 rows: 5 read, none done, the total unknown.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match runner.status(id) {
            Some(RunState::Running {
                read: 5,
                done,
                total,
                ..
            }) => {
                assert_eq!((done, total), (0, None));
                break;
            }
            Some(RunState::Queued | RunState::Running { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "never read 5 rows");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    go.send(()).unwrap();
    let report = runner.wait(id).unwrap();
    assert_eq!(report.counts.read, 8, "{report:?}");
    // A finished run's state shares the runner's report: polls do not copy it.
    let (Some(RunState::Finished(a)), Some(RunState::Finished(b))) =
        (runner.status(id), runner.status(id))
    else {
        panic!("finished");
    };
    assert!(Arc::ptr_eq(&a, &b));
}

/// The main job's users only (its groups read another sheet).
fn support_users_only(definition: &mut datasync::DataSyncJob) {
    for option in definition.objects_option.get_mut().unwrap() {
        if option.object_type.get() == Some(&4) {
            option.is_selected = false.into();
        }
    }
}

#[test]
fn a_scheduled_runs_history_gives_its_fire_time_and_times_are_written_one_way() {
    use datasync::lifecycle::{Fired, Job, ManualClock, Runner, Schedule, Scheduler};
    use std::sync::Arc;
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let mut definition = job::load(&job_file).unwrap();
    support_users_only(&mut definition);
    let source = job::source_path(&definition, &job_file).unwrap();
    let open: datasync::lifecycle::OpenSource = Box::new(move || datasync::source::open(&source));
    let directory = Arc::new(datasync::LdifDirectory::in_memory());
    let mut job = Job::new(definition, open, directory).unwrap();
    job.settings.schedule = Some(Schedule::new("0 9 * * *", "UTC").unwrap());
    job.settings.enabled = true;
    let name = job.name();
    let clock = ManualClock::at("2026-11-22T08:59:30Z");
    let runner = Runner::with(Arc::new(clock.clone()), None);
    let scheduler = Scheduler::new(runner.clone());
    scheduler.add(Arc::new(job)).unwrap();
    // The host was busy: the tick comes 2.5 minutes after the 09:00 fire.
    clock.advance(std::time::Duration::from_secs(180));
    let [Fired::Started { run, .. }] = scheduler.tick()[..] else {
        panic!("the 09:00 fire starts the job");
    };
    runner.wait(run).unwrap();
    let entry = &runner.history(&name, 0, 1).items[0];
    assert_eq!(
        entry.fire_time.as_deref(),
        Some("2026-11-22T09:00:00.000+00:00")
    );
    assert_eq!(entry.start_time, "2026-11-22T09:02:30.000+00:00");
    let json = serde_json::to_value(entry).unwrap();
    assert_eq!(json["fireTime"], "2026-11-22T09:00:00.000+00:00");
    // Every time in the records has the same form: milliseconds and the offset.
    let execution = runner.last_execution(&name).unwrap();
    for time in [&execution.start_time, &execution.stop_time] {
        assert_eq!(time, "2026-11-22T09:02:30.000+00:00");
    }
    let report = runner.wait(run).unwrap();
    for time in [&report.start_time, &report.stop_time] {
        assert_eq!(time.len(), "2026-11-22T09:02:30.000+00:00".len(), "{time}");
    }
}

#[test]
fn a_host_schedules_job_files_as_collections_by_their_collection_id() {
    use datasync::lifecycle::{Job, LifecycleError, Runner, Scheduler};
    use std::sync::Arc;
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let directory = Arc::new(datasync::LdifDirectory::in_memory());
    let make = |name: &str, collection: Option<i64>, run_order: i64, schedule: &str| {
        let mut definition = job::load(&job_file).unwrap();
        let info = definition.job_info.get_mut().unwrap();
        info.name = name.to_string().into();
        info.collection_id = collection
            .map_or(serde_json::Value::Null, Into::into)
            .into();
        info.run_order = run_order.into();
        info.schedule = schedule.to_string().into();
        let source = job::source_path(&definition, &job_file).unwrap();
        let open: datasync::lifecycle::OpenSource =
            Box::new(move || datasync::source::open(&source));
        Job::new(definition, open, directory.clone()).unwrap()
    };
    let scheduler = Scheduler::new(Runner::new());
    // Two jobs of collection 7 (listed out of order; one gives the schedule) and one alone.
    let added = scheduler
        .add_jobs(vec![
            make("Groups", Some(7), 2, ""),
            make("Users", Some(7), 1, "0 2 * * *"),
            make("Audit", None, 0, "0 3 * * *"),
        ])
        .unwrap();
    assert_eq!(added, ["Audit", "collection 7"]);
    let (collection, schedule) = scheduler.collection("collection 7").unwrap();
    let order: Vec<String> = collection.jobs.iter().map(|j| j.name()).collect();
    assert_eq!(order, ["Users", "Groups"]);
    assert_eq!(schedule.expression(), "0 2 * * *");

    // A lone job without a schedule would never start: refused, and nothing is added.
    let scheduler = Scheduler::new(Runner::new());
    let err = scheduler
        .add_jobs(vec![
            make("Audit", None, 0, "0 3 * * *"),
            make("Lost", None, 0, ""),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, LifecycleError::NoSchedule(name) if name == "Lost"),
        "{err}"
    );
    assert!(scheduler.jobs().is_empty());
    // A collection on two schedules is refused.
    let err = scheduler
        .add_jobs(vec![
            make("A", Some(8), 1, "0 2 * * *"),
            make("B", Some(8), 2, "0 4 * * *"),
        ])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "collection 8: its jobs give different schedules; a collection runs on one"
    );
}

#[test]
fn a_host_compiles_the_plan_before_it_opens_the_destination() {
    use datasync::lifecycle::{LifecycleError, plan_for};
    let job_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let mut definition = job::load(&job_file).unwrap();
    // A table job: its destination (a CSV file here) takes its columns from the plan.
    support_users_only(&mut definition);
    job::set_setting(&mut definition, "Destination.IsTableProvider", "True");
    // A table holds no passwords and no group memberships.
    definition.fields_map.get_mut().unwrap().retain(|f| {
        let field = f.destination_field.get().map(String::as_str).unwrap_or("");
        !field.eq_ignore_ascii_case("password") && !field.eq_ignore_ascii_case("memberOf")
    });
    let (plan, values) = plan_for(&definition, &Default::default(), &Default::default()).unwrap();
    assert!(values.is_empty());
    let spec = plan.table_spec();
    assert!(spec.keys.iter().any(|k| k == "employeeID"), "{spec:?}");
    let dir = tempfile::tempdir().unwrap();
    let table = datasync::destination::TableDestination::open(
        &dir.path().join("staff.csv"),
        "Sheet1",
        spec,
    )
    .unwrap();
    // The job is then made with that destination: no stand-in.
    let source = job::source_path(&definition, &job_file).unwrap();
    let open: datasync::lifecycle::OpenSource = Box::new(move || datasync::source::open(&source));
    let job = datasync::lifecycle::Job::new(definition.clone(), open, std::sync::Arc::new(table))
        .unwrap();
    assert_eq!(job.plan(&Default::default()).unwrap().0.objects.len(), 1);
    // A declared parameter without a value is refused, as at submit.
    let mut with_parameter: serde_json::Value =
        serde_json::from_str(&job::to_json(&definition)).unwrap();
    with_parameter["parameters"] =
        serde_json::json!({"Site": {"dataType": "String", "required": true}});
    let with_parameter = job::from_json(&with_parameter.to_string(), "job").unwrap();
    let err = plan_for(&with_parameter, &Default::default(), &Default::default()).unwrap_err();
    assert!(matches!(err, LifecycleError::Parameters(_)), "{err}");
}
