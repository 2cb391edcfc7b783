//! The reference job end to end on the embedded directory.

mod support;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use datasync::hooks::{
    HookContext, HookResult, PasswordSet, QueryEvent, RowDelete, RowDone, RowStart, RowWrite,
};
use datasync::plan;
use datasync::report::RowFailure;
use datasync::transform::TransformContext;
use datasync::{
    Destination, Entry, Hooks, LdifDirectory, NoHooks, Plan, Report, RunOptions, RunStatus, job,
    source,
};
use serde_json::{Value, json};
use support::{Person, TempWorkbook, groups, main_job, people, set_setting, users_only};

const USERS: &str = "OU=API,DC=groupid,DC=lab";

fn plan(job: &Value) -> Plan {
    plan_with(job, &TransformContext::default())
}

fn plan_with(job: &Value, context: &TransformContext) -> Plan {
    support::compile(job, context)
}

fn run_with(
    plan: &Plan,
    workbook: &Path,
    dir: &dyn Destination,
    hooks: &dyn Hooks,
    options: &RunOptions,
) -> Report {
    let mut src = source::open(workbook).unwrap();
    datasync::run(plan, src.as_mut(), dir, hooks, options).unwrap_or_else(|e| panic!("{e}"))
}

fn run(plan: &Plan, workbook: &Path, dir: &dyn Destination) -> Report {
    support::run_job(plan, workbook, dir, 0)
}

fn user(dir: &LdifDirectory, cn: &str) -> Entry {
    dir.get(&format!("CN={cn},{USERS}"))
        .unwrap_or_else(|| panic!("no user {cn}"))
}

/// The workbook of `people`, `job` compiled, and a directory after one run of it: where most
/// tests start before they change the source.
fn synced(job: &Value, people: &[Person]) -> (TempWorkbook, Plan, LdifDirectory) {
    let fx = TempWorkbook::new(people);
    let plan = plan(job);
    let dir = LdifDirectory::in_memory();
    run(&plan, &fx.path(), &dir);
    (fx, plan, dir)
}

/// Entries without their password hashes (salted, so different every run).
fn without_hashes(dir: &LdifDirectory) -> Vec<Entry> {
    dir.entries()
        .into_iter()
        .map(|mut e| {
            e.remove("userPassword");
            e
        })
        .collect()
}

#[test]
fn first_run_creates_second_run_changes_nothing() {
    let fx = TempWorkbook::new(&people());
    let plan = plan(&main_job());
    let dir = LdifDirectory::in_memory();
    let first = run(&plan, &fx.path(), &dir);
    assert_eq!(first.status, RunStatus::FinishedSuccess, "{first:#?}");
    assert_eq!(first.counts.read, 12);
    assert_eq!(first.counts.added, 12);
    assert_eq!(first.added.len(), 12);

    let ann = user(&dir, "Ann Lee");
    assert_eq!(
        ann.first("employeeID"),
        Some("1001"),
        "whole numbers keep no .0"
    );
    assert_eq!(
        ann.get("objectClass"),
        ["top", "person", "organizationalPerson", "user"]
    );
    let bob = user(&dir, "Bob Stone");
    assert_eq!(
        bob.get("telephoneNumber"),
        ["555-0101", "555-0199"],
        "delimiter splits"
    );
    assert_eq!(
        bob.first("manager"),
        Some("CN=Ann Lee,OU=API,DC=groupid,DC=lab"),
        "resolved in the same run"
    );
    let dana = dir
        .get("CN=Dana O'Brien\\, Jr,OU=API,DC=groupid,DC=lab")
        .unwrap();
    assert_eq!(
        dana.first("cn"),
        Some("Dana O'Brien, Jr"),
        "DN specials are escaped in the DN only"
    );
    assert_eq!(
        user(&dir, "李 小龙").first("sn"),
        Some("小龙"),
        "unicode survives"
    );
    assert!(
        dir.get("CN=Sales Team,OU=Groups,OU=API,DC=groupid,DC=lab")
            .is_some()
    );
    let pw = ann.first("userPassword").unwrap();
    assert!(pw.starts_with("{SSHA256}") && !pw.contains("webdir123R"));

    let second = run(&plan, &fx.path(), &dir);
    assert_eq!(second.status, RunStatus::FinishedSuccess);
    assert_eq!(second.counts.unchanged, 12, "{second:#?}");
    assert_eq!(
        second.counts.added + second.counts.updated + second.counts.deleted,
        0
    );
}

#[test]
fn the_directory_matches_the_expected_ldif() {
    let fx = TempWorkbook::new(&people());
    let dir = LdifDirectory::in_memory();
    run(&plan(&main_job()), &fx.path(), &dir);
    let got = datasync::destination::ldif::write(&without_hashes(&dir));
    let path = "fixtures/expected/excel-to-ad.ldif";
    if std::env::var_os("DATASYNC_BLESS").is_some() {
        std::fs::write(path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap();
    assert_eq!(got, expected);
}

#[test]
fn an_edited_row_updates_only_what_changed() {
    let mut ps = people();
    let (fx, plan, dir) = synced(&main_job(), &ps);
    let before = user(&dir, "José Núñez");

    ps[3].title = "Senior Account Manager".into();
    ps[3].phones = "555-0103;555-0113".into();
    ps[3].department = "Sales".into();
    let mut gs = groups();
    gs[0].description = "All of Sales".into();
    fx.write(&ps, &gs);
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.counts.updated, 2, "{report:#?}");
    assert_eq!(report.counts.unchanged, 10);
    assert_eq!(
        report.modified,
        [
            "CN=José Núñez,OU=API,DC=groupid,DC=lab",
            "CN=Sales Team,OU=Groups,OU=API,DC=groupid,DC=lab"
        ]
    );
    let after = user(&dir, "José Núñez");
    assert_eq!(after.first("title"), Some("Senior Account Manager"));
    assert_eq!(after.get("telephoneNumber"), ["555-0103", "555-0113"]);
    assert_eq!(
        after.first("userPassword"),
        before.first("userPassword"),
        "create-only stays"
    );
}

#[test]
fn a_new_name_renames_the_object() {
    let mut ps = people();
    let (fx, plan, dir) = synced(&main_job(), &ps);
    ps[1].last = "Stone-Smith".into();
    fx.write(&ps, &groups());
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(
        report.counts.updated, 2,
        "Bob, and José whose manager he is: {report:#?}"
    );
    assert_eq!(report.updated_id_map.len(), 1);
    assert_eq!(
        report
            .updated_id_map
            .get("CN=Bob Stone,OU=API,DC=groupid,DC=lab"),
        Some(&json!("CN=Bob Stone-Smith,OU=API,DC=groupid,DC=lab"))
    );
    let bob = user(&dir, "Bob Stone-Smith");
    assert_eq!(bob.first("cn"), Some("Bob Stone-Smith"));
    assert_eq!(bob.first("sn"), Some("Stone-Smith"));
    assert_eq!(
        bob.first("sAMAccountName"),
        Some("Bob.Stone"),
        "create-only keeps its first value"
    );
    // Bob's report follows him (Resolve sees the new DN in the same run)
    assert_eq!(
        user(&dir, "José Núñez").first("manager"),
        Some("CN=Bob Stone-Smith,OU=API,DC=groupid,DC=lab")
    );
    let again = run(&plan, &fx.path(), &dir);
    assert_eq!(again.counts.unchanged, 12, "{again:#?}");
}

#[test]
fn removed_rows_are_deleted_for_each_object_type() {
    let ps = people();
    let (fx, plan, dir) = synced(&main_job(), &ps);
    let mut gs = groups();
    gs.remove(1);
    fx.write(&ps[..7], &gs);
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:#?}");
    assert_eq!(
        report.deleted,
        [
            "CN=Frank #Hash,OU=API,DC=groupid,DC=lab",
            "CN=R&D Team,OU=Groups,OU=API,DC=groupid,DC=lab"
        ]
    );
    assert_eq!(report.counts.deleted, 2);
    assert!(dir.get("CN=Frank #Hash,OU=API,DC=groupid,DC=lab").is_none());
    let again = run(&plan, &fx.path(), &dir);
    assert_eq!(again.counts.deleted, 0);
    assert_eq!(again.counts.unchanged, 10);
}

#[test]
fn objects_outside_the_scope_or_query_are_never_touched() {
    let (fx, plan, dir) = synced(&main_job(), &people());
    // a computer in the container (not a user) and a user outside the container
    let mut computer = Entry::new(format!("CN=PC1,{USERS}"));
    computer.set("objectClass", vec!["computer".into()]);
    computer.set("employeeID", vec!["9999".into()]);
    dir.add(&computer, None).unwrap();
    let mut outside = Entry::new("CN=Admin,DC=groupid,DC=lab");
    outside.set("objectClass", vec!["user".into()]);
    outside.set("employeeID", vec!["9998".into()]);
    dir.add(&outside, None).unwrap();
    // and a user in scope without a key value
    let mut keyless = Entry::new(format!("CN=Service,{USERS}"));
    keyless.set("objectClass", vec!["user".into()]);
    dir.add(&keyless, None).unwrap();
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.counts.deleted, 0, "{report:#?}");
    assert!(dir.get(&computer.dn).is_some() && dir.get(&outside.dn).is_some());
    assert!(dir.get(&keyless.dn).is_some());
    assert!(has_detail(&report, "no key value"));
}

#[test]
fn deletes_over_the_threshold_are_withheld_all_or_nothing() {
    let ps = people();
    let mut job = main_job();
    set_setting(&mut job, "Destination.DeleteThreshold", "2");
    let (fx, plan, dir) = synced(&job, &ps);
    fx.write(&ps[..5], &groups());
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.status, RunStatus::FinishedFail);
    assert_eq!(report.counts.deleted, 0);
    assert_eq!(dir.entries().len(), 3 + 1 + 8 + 4, "nothing deleted");
    let reason = &report
        .details
        .iter()
        .find(|d| d.details_type == 0)
        .unwrap()
        .message;
    assert!(
        reason.contains("3 deletes withheld") && reason.contains("threshold of 2"),
        "{reason}"
    );

    let mut job = main_job();
    set_setting(&mut job, "Destination.DeleteThreshold", "25%");
    let report = run(&crate::plan(&job), &fx.path(), &dir);
    assert_eq!(report.counts.deleted, 0, "3 of 8 is over 25%");
    set_setting(&mut job, "Destination.DeleteThreshold", "40%");
    let report = run(&crate::plan(&job), &fx.path(), &dir);
    assert_eq!(report.counts.deleted, 3, "3 of 8 is under 40%");
}

/// True when a report detail says `needle`.
fn has_detail(report: &Report, needle: &str) -> bool {
    report.details.iter().any(|d| d.message.contains(needle))
}

#[test]
fn an_empty_source_never_deletes() {
    let (fx, plan, dir) = synced(&main_job(), &people());
    fx.write(&[], &groups());
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.counts.deleted, 0);
    assert_eq!(report.status, RunStatus::FinishedFail);
    assert!(has_detail(&report, "empty source never deletes"));
    assert_eq!(dir.entries().len(), 16);
}

#[test]
fn a_row_failing_before_its_key_withholds_deletes() {
    let mut ps = people();
    let (fx, plan, dir) = synced(&main_job(), &ps);
    // one row removed, and one whose key the hook empties (id 0 is itself a valid key)
    ps[2].id = 0;
    ps.pop();
    fx.write(&ps, &groups());
    struct EmptyKey;
    impl Hooks for EmptyKey {
        fn row_starting(
            &self,
            _: &HookContext,
            row: &mut RowStart<'_>,
        ) -> HookResult<ControlFlow<()>> {
            if row.get("EmployeeID") == Some("0") {
                row.set("EmployeeID", None);
            }
            Ok(ControlFlow::Continue(()))
        }
    }
    let report = run_with(&plan, &fx.path(), &dir, &EmptyKey, &RunOptions::default());
    assert_eq!(report.counts.failed, 1);
    assert_eq!(report.failed[0].row, 4);
    assert!(
        report.failed[0]
            .message
            .contains("key field employeeID is empty"),
        "{:?}",
        report.failed
    );
    assert_eq!(report.counts.deleted, 0);
    assert!(has_detail(&report, "before their key was known"));
}

#[test]
fn deprovisioning_disables_and_moves_once() {
    let ps = people();
    let mut job = main_job();
    job["objectsOption"][0]["isDeprovisioning"] = json!(true);
    set_setting(
        &mut job,
        "Destination.DeprovisionContainer",
        "OU=Leavers,DC=groupid,DC=lab",
    );
    let (fx, plan, dir) = synced(&job, &ps);
    fx.write(&ps[..7], &groups());
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(
        report.deleted,
        ["CN=Frank #Hash,OU=Leavers,DC=groupid,DC=lab"],
        "{report:#?}"
    );
    let frank = dir
        .get("CN=Frank #Hash,OU=Leavers,DC=groupid,DC=lab")
        .unwrap();
    assert_eq!(frank.first("userAccountControl"), Some("514"));
    let again = run(&plan, &fx.path(), &dir);
    assert_eq!(again.counts.deleted, 0);

    // without a deprovision container, the object stays where it is, disabled, and is left
    // alone by later runs
    let mut job = main_job();
    job["objectsOption"][0]["isDeprovisioning"] = json!(true);
    let plan = crate::plan(&job);
    let dir = LdifDirectory::in_memory();
    fx.write(&ps, &groups());
    run(&plan, &fx.path(), &dir);
    fx.write(&ps[..7], &groups());
    assert_eq!(run(&plan, &fx.path(), &dir).counts.deleted, 1);
    assert_eq!(
        user(&dir, "Frank #Hash").first("userAccountControl"),
        Some("514")
    );
    assert_eq!(run(&plan, &fx.path(), &dir).counts.deleted, 0);
}

#[test]
fn duplicate_keys_fail_both_rows_naming_each_other() {
    let mut ps = people();
    ps[4].id = 1002; // same employee id as Bob
    let fx = TempWorkbook::new(&ps);
    let dir = LdifDirectory::in_memory();
    let report = run(&plan(&main_job()), &fx.path(), &dir);
    assert_eq!(report.counts.failed, 2);
    let msgs: Vec<(u64, &str)> = report
        .failed
        .iter()
        .map(|f| (f.row, f.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        [
            (3, "duplicate key \"1002\": also on row 6"),
            (6, "duplicate key \"1002\": also on row 3")
        ]
    );
    assert_eq!(report.status, RunStatus::FinishedFail);
    assert!(
        dir.get(&format!("CN=Bob Stone,{USERS}")).is_none(),
        "no silent last-wins"
    );
}

#[test]
fn keys_match_case_insensitively() {
    let fx = TempWorkbook::new(&people());
    let dir = LdifDirectory::in_memory();
    let plan = plan(&main_job());
    run(&plan, &fx.path(), &dir);
    // the group key is the sAMAccountName; change its case in the directory
    let dn = "CN=Sales Team,OU=Groups,OU=API,DC=groupid,DC=lab";
    dir.modify(
        dn,
        &[datasync::destination::Modification::Replace(
            "sAMAccountName".into(),
            vec!["SALESTEAM".into()],
        )],
    )
    .unwrap();
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.counts.added, 0, "{report:#?}");
    assert_eq!(report.counts.unchanged, 12);

    // and two rows whose keys differ only in case are duplicates
    let mut gs = groups();
    gs[1].name = "SALES TEAM".into();
    fx.write(&people(), &gs);
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.counts.failed, 2, "{report:#?}");
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let ps = support::generated_people(600);
    let fx = TempWorkbook::new(&ps);
    let plan = plan(&main_job());
    let mut outcomes = Vec::new();
    for threads in [1, 4] {
        let dir = LdifDirectory::in_memory();
        let options = RunOptions {
            threads,
            ..Default::default()
        };
        let mut r = run_with(&plan, &fx.path(), &dir, &NoHooks, &options);
        assert_eq!(r.counts.added, 604);
        (r.start_time, r.stop_time, r.duration) = (String::new(), String::new(), 0);
        for d in &mut r.details {
            d.detail_created_date.clear();
        }
        outcomes.push((without_hashes(&dir), r));
    }
    assert_eq!(outcomes[0].0, outcomes[1].0);
    assert_eq!(outcomes[0].1, outcomes[1].1);
}

#[test]
fn a_dry_run_reports_everything_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = TempWorkbook::new(&people());
    let plan = plan(&main_job());
    let path = tmp.path().join("dir.ldif");
    let dry_run = RunOptions {
        dry_run: true,
        ..Default::default()
    };
    let dry = {
        let dir = LdifDirectory::open(&path).unwrap();
        run_with(&plan, &fx.path(), &dir, &NoHooks, &dry_run)
    };
    assert!(dry.dry_run);
    assert!(!path.exists(), "a dry run creates no file");
    let real = {
        let dir = LdifDirectory::open(&path).unwrap();
        run(&plan, &fx.path(), &dir)
    };
    assert_eq!(dry.counts, real.counts);
    assert_eq!(dry.added, real.added);
    let bytes = std::fs::read(&path).unwrap();
    let dir = LdifDirectory::open(&path).unwrap();
    let mut ps = people();
    ps[0].title = "Chair".into();
    fx.write(&ps[1..], &groups());
    let dry = run_with(&plan, &fx.path(), &dir, &NoHooks, &dry_run);
    assert_eq!(dry.counts.deleted, 1);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(dir.entries().len(), 16, "nothing changed in memory either");
}

#[test]
fn a_csv_source_gives_the_same_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("people.csv");
    std::fs::write(&csv, support::people_csv(&people())).unwrap();
    let mut job = main_job();
    users_only(&mut job);
    let plan = plan(&job);
    let from_csv = LdifDirectory::in_memory();
    run(&plan, &csv, &from_csv);
    let fx = TempWorkbook::new(&people());
    let from_xlsx = LdifDirectory::in_memory();
    run(&plan, &fx.path(), &from_xlsx);
    assert_eq!(without_hashes(&from_csv), without_hashes(&from_xlsx));
}

#[test]
fn a_where_query_selects_rows_and_keeps_sheet_row_numbers() {
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    job["syncQuery"][0]["query"] = json!(
        "SELECT * FROM [TTSheet1$] WHERE Department IN ('Sales', 'R&D') AND NOT Manager IS NULL ORDER BY EmployeeID DESC"
    );
    job["objectsOption"][0]["isDelete"] = json!(false);
    let plan = plan(&job);
    struct Rows(Mutex<Vec<u64>>);
    impl Hooks for Rows {
        fn row_finished(&self, _: &HookContext, row: &RowDone) -> HookResult {
            if row.object_type.code() == 1 {
                self.0.lock().unwrap().push(row.row);
            }
            Ok(())
        }
    }
    let rows = Rows(Mutex::new(vec![]));
    let dir = LdifDirectory::in_memory();
    let report = run_with(
        &plan,
        &fx.path(),
        &dir,
        &rows,
        &RunOptions {
            threads: 1,
            ..Default::default()
        },
    );
    assert_eq!(report.counts.read, 4 + 4);
    let mut seen = rows.0.into_inner().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [3, 4, 5, 6],
        "Excel's row numbers of Bob, Zoë, José, 李"
    );
    assert_eq!(
        &report.added[..4],
        [
            "CN=李 小龙,OU=API,DC=groupid,DC=lab",
            "CN=José Núñez,OU=API,DC=groupid,DC=lab",
            "CN=Zoë Müller,OU=API,DC=groupid,DC=lab",
            "CN=Bob Stone,OU=API,DC=groupid,DC=lab"
        ],
        "report in query order"
    );
}

/// Hooks that exercise every event.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    passwords: Mutex<Vec<(String, String, bool)>>,
    finished: AtomicUsize,
}

impl Recorder {
    fn log(&self, s: String) {
        self.events.lock().unwrap().push(s);
    }
}

impl Hooks for Recorder {
    fn startup(&self, ctx: &HookContext) -> HookResult {
        ctx.add_to_context("site", "HQ");
        self.log("startup".into());
        Ok(())
    }
    fn build_source_query(&self, _: &HookContext, q: &mut QueryEvent<'_>) -> HookResult {
        if q.object_type.code() == 4 {
            *q.query = "SELECT * FROM [Groups$] WHERE Name <> 'Finance Team'".into();
        }
        Ok(())
    }
    fn build_destination_query(&self, _: &HookContext, q: &mut QueryEvent<'_>) -> HookResult {
        self.log(format!("destination query {}", q.query));
        Ok(())
    }
    fn row_starting(
        &self,
        ctx: &HookContext,
        row: &mut RowStart<'_>,
    ) -> HookResult<ControlFlow<()>> {
        match row.get("First") {
            Some("Eve") => return Ok(ControlFlow::Break(())),
            Some("Frank") => return Err("Frank's row is refused".into()),
            Some("Dana") => panic!("a hook bug"),
            Some("Ann") => {
                let site = ctx.context("site").unwrap_or_default();
                row.set("Title", Some(format!("CEO ({site})")));
            }
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    }
    fn row_adding(&self, _: &HookContext, w: &mut RowWrite) -> HookResult<ControlFlow<()>> {
        if w.dn.starts_with("CN=Bob") {
            w.attributes
                .push(("info".into(), vec!["added by hook".into()]));
        }
        Ok(ControlFlow::Continue(()))
    }
    fn row_added(&self, _: &HookContext, w: &RowWrite) -> HookResult {
        // The object as it was added.
        let info = w.attributes.iter().find(|(name, _)| name == "info");
        let info = info.map_or(String::new(), |(_, v)| format!(" info={}", v.join("|")));
        self.log(format!("added {}{info}", w.dn));
        Ok(())
    }
    fn row_failed(&self, _: &HookContext, f: &RowFailure) {
        self.log(format!("failed row {}", f.row));
    }
    fn row_finished(&self, _: &HookContext, _: &RowDone) -> HookResult {
        self.finished.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn password_set(&self, _: &HookContext, e: &PasswordSet<'_>) -> HookResult {
        self.passwords.lock().unwrap().push((
            e.dn.to_string(),
            e.password.expose().to_string(),
            e.notify_manager,
        ));
        Ok(())
    }
    fn shutdown(&self, _: &HookContext, report: &Report) -> HookResult {
        self.log(format!("shutdown {}", report.counts.added));
        Ok(())
    }
}

#[test]
fn hooks_change_cancel_and_fail_single_rows() {
    let fx = TempWorkbook::new(&people());
    let plan = plan(&main_job());
    let dir = LdifDirectory::in_memory();
    let hooks = Recorder::default();
    let report = run_with(&plan, &fx.path(), &dir, &hooks, &RunOptions::default());
    assert_eq!(report.status, RunStatus::FinishedFail);
    let failed: Vec<(u64, &str)> = report
        .failed
        .iter()
        .map(|f| (f.row, f.message.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            (7, "row_starting: hook panicked: a hook bug"),
            (9, "row_starting: Frank's row is refused")
        ]
    );
    assert_eq!(report.counts.skipped, 1, "Eve was cancelled");
    assert_eq!(
        report.counts.added,
        5 + 3,
        "Finance Team filtered by the rewritten query"
    );
    assert_eq!(
        user(&dir, "Ann Lee").first("title"),
        Some("CEO (HQ)"),
        "context and row edits"
    );
    assert_eq!(user(&dir, "Bob Stone").first("info"), Some("added by hook"));
    assert_eq!(hooks.finished.load(Ordering::Relaxed), 5 + 3 + 1);
    let events = hooks.events.into_inner().unwrap();
    assert_eq!(events[0], "startup");
    assert!(events.contains(&"destination query objectClass is exactly \"user\"".to_string()));
    assert!(events.contains(&"failed row 9".to_string()));
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("added CN=Bob Stone,") && e.ends_with(" info=added by hook")),
        "row_added sees the attributes written: {events:?}"
    );
    assert_eq!(events.last().unwrap(), "shutdown 8");
    let passwords = hooks.passwords.into_inner().unwrap();
    assert_eq!(passwords.len(), 5);
    assert!(
        passwords
            .iter()
            .all(|(_, p, notify)| p == "webdir123R" && !notify)
    );
    // no password anywhere in the report
    assert!(!report.to_json().contains("webdir123R"));
}

/// Hooks that read and edit new objects: `row_adding` gets every attribute (the password
/// aside) and what it leaves is the object created; `row_added` sees the object as added.
#[derive(Default)]
struct Shaper {
    adding: Mutex<Vec<Vec<String>>>,
    added: Mutex<Vec<(String, Vec<String>)>>,
    passwords: Passwords,
}

fn names(w: &RowWrite) -> Vec<String> {
    w.attributes.iter().map(|(n, _)| n.to_string()).collect()
}

impl Hooks for Shaper {
    fn row_adding(&self, _: &HookContext, w: &mut RowWrite) -> HookResult<ControlFlow<()>> {
        self.adding.lock().unwrap().push(names(w));
        if w.dn.starts_with("CN=Bob") {
            w.attributes
                .push(("info".into(), vec!["added by hook".into()]));
            w.attributes.retain(|(name, _)| name != "title");
        }
        if w.dn.starts_with("CN=José") {
            w.dn = format!("CN=Jose Nunez,{USERS}");
        }
        if w.dn.starts_with("CN=Zoë") {
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    }
    fn row_added(&self, _: &HookContext, w: &RowWrite) -> HookResult {
        self.added.lock().unwrap().push((w.dn.clone(), names(w)));
        Ok(())
    }
    fn password_set(&self, ctx: &HookContext, e: &PasswordSet<'_>) -> HookResult {
        self.passwords.password_set(ctx, e)
    }
}

#[test]
fn row_adding_sees_and_shapes_the_new_object() {
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    users_only(&mut job);
    for generated in [false, true] {
        if generated {
            job["fieldsMap"][12]["options"] = json!(
                "{\"passwordLength\":10,\"includeUppercaseAlphabets\":true,\"includeLowercaseAlphabets\":true,\"includeDigits\":true,\"includeSpecialSymbols\":false,\"specialSymbols\":\"\",\"excludeSimilarSymbols\":false,\"managerNotification\":false,\"passwordType\":1}"
            );
        }
        let dir = LdifDirectory::in_memory();
        let hooks = Shaper::default();
        let report = run_with(
            &plan(&job),
            &fx.path(),
            &dir,
            &hooks,
            &RunOptions::default(),
        );
        assert_eq!((report.counts.added, report.counts.skipped), (7, 1));
        let adding = hooks.adding.into_inner().unwrap();
        assert_eq!(adding.len(), 8, "row_adding for 8 rows");
        for names in &adding {
            assert!(names.iter().any(|n| n == "givenName"), "{names:?}");
            assert!(
                names.iter().any(|n| n == "manager" || n == "title"),
                "{names:?}"
            );
            assert!(
                !names.iter().any(|n| n.eq_ignore_ascii_case("userPassword")
                    || n.eq_ignore_ascii_case("password")),
                "no password in a hook's list: {names:?}"
            );
        }
        let added = hooks.added.into_inner().unwrap();
        assert_eq!(added.len(), 7, "row_added for 7");
        let (_, bob_added) = added
            .iter()
            .find(|(dn, _)| dn.starts_with("CN=Bob"))
            .unwrap();
        assert!(bob_added.iter().any(|n| n == "info"), "{bob_added:?}");
        assert!(!bob_added.iter().any(|n| n == "title"), "{bob_added:?}");
        assert!(added.iter().any(|(dn, _)| dn.starts_with("CN=Jose Nunez,")));

        let bob = user(&dir, "Bob Stone");
        assert_eq!(
            bob.first("info"),
            Some("added by hook"),
            "added by the hook"
        );
        assert!(bob.get("title").is_empty(), "removed by the hook");
        assert_eq!(bob.first("givenName"), Some("Bob"), "the rest is kept");
        assert_eq!(
            bob.first("manager"),
            Some(format!("CN=Ann Lee,{USERS}").as_str())
        );
        assert!(dir.get(&format!("CN=José Núñez,{USERS}")).is_none());
        assert_eq!(user(&dir, "Jose Nunez").first("sn"), Some("Núñez"));
        assert!(dir.get(&format!("CN=Zoë Müller,{USERS}")).is_none());

        let passwords = hooks.passwords.0.into_inner().unwrap();
        assert_eq!(passwords.len(), 7, "delivered for every new user");
        for (dn, password, _) in &passwords {
            let stored = dir.get(dn).unwrap_or_else(|| panic!("no {dn}"));
            let hash = stored.first("userPassword").unwrap();
            assert!(hash.starts_with("{SSHA256}") && !hash.contains(password.as_str()));
            assert!(
                datasync::destination::verify_password(
                    hash,
                    &datasync::Secret::new(password.clone())
                ),
                "{dn}: the stored hash is of the delivered password"
            );
            assert_eq!(password == "webdir123R", !generated);
        }
    }
}

#[test]
fn generated_passwords_are_unique_hashed_and_delivered() {
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    job["fieldsMap"][12]["options"] = json!(
        "{\"passwordLength\":12,\"includeUppercaseAlphabets\":true,\"includeLowercaseAlphabets\":true,\"includeDigits\":true,\"includeSpecialSymbols\":true,\"specialSymbols\":\"%^&*(\",\"excludeSimilarSymbols\":true,\"managerNotification\":true,\"passwordType\":1}"
    );
    let plan = plan(&job);
    let dir = LdifDirectory::in_memory();
    let hooks = Passwords::default();
    run_with(&plan, &fx.path(), &dir, &hooks, &RunOptions::default());
    let passwords = hooks.0.into_inner().unwrap();
    assert_eq!(passwords.len(), 8);
    let distinct: std::collections::HashSet<_> = passwords.iter().map(|p| p.1.clone()).collect();
    assert_eq!(distinct.len(), 8);
    for (dn, pw, notify) in &passwords {
        assert!(notify);
        assert_eq!(pw.chars().count(), 12);
        assert!(
            pw.chars().any(|c| c.is_ascii_uppercase()) && pw.chars().any(|c| c.is_ascii_digit())
        );
        assert!(pw.chars().filter(|c| "%^&*(".contains(*c)).count() >= 1);
        let stored = dir.get(dn).unwrap();
        assert!(
            datasync::destination::verify_password(
                stored.first("userPassword").unwrap(),
                &datasync::Secret::new(pw.clone())
            ),
            "the stored hash is of the delivered password"
        );
    }
    // a re-run generates no new passwords
    let hooks = Passwords::default();
    let again = run_with(&plan, &fx.path(), &dir, &hooks, &RunOptions::default());
    assert_eq!(again.counts.unchanged, 12);
    assert!(hooks.0.into_inner().unwrap().is_empty());
}

/// Collects the passwords the run sets.
#[derive(Default)]
struct Passwords(Mutex<Vec<(String, String, bool)>>);

impl Hooks for Passwords {
    fn password_set(&self, _: &HookContext, e: &PasswordSet<'_>) -> HookResult {
        self.0.lock().unwrap().push((
            e.dn.to_string(),
            e.password.expose().to_string(),
            e.notify_manager,
        ));
        Ok(())
    }
}

#[test]
fn a_static_password_that_is_not_create_only_is_reset_when_it_differs() {
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    job["fieldsMap"][12]["forCreateOnly"] = json!(false);
    let dir = LdifDirectory::in_memory();
    run(&plan(&job), &fx.path(), &dir);
    assert_eq!(
        run(&plan(&job), &fx.path(), &dir).counts.unchanged,
        12,
        "same password: no change"
    );
    job["fieldsMap"][12]["transform"] = json!("Static:value=N3w-Secret");
    let report = run(&plan(&job), &fx.path(), &dir);
    assert_eq!(report.counts.updated, 8, "{report:#?}");
    assert!(!report.to_json().contains("N3w-Secret"));
}

#[test]
fn a_startup_hook_error_stops_the_job_before_anything_is_written() {
    struct Refuse;
    impl Hooks for Refuse {
        fn startup(&self, _: &HookContext) -> HookResult {
            Err("maintenance window".into())
        }
    }
    let fx = TempWorkbook::new(&people());
    let dir = LdifDirectory::in_memory();
    let mut src = source::open(&fx.path()).unwrap();
    let e = datasync::run(
        &plan(&main_job()),
        src.as_mut(),
        &dir,
        &Refuse,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "job \"ExcelToAD\": the startup hook failed: maintenance window"
    );
    assert!(dir.entries().is_empty());
}

#[test]
fn deleting_hooks_can_keep_an_object() {
    struct Keep;
    impl Hooks for Keep {
        fn row_deleting(&self, _: &HookContext, d: &RowDelete) -> HookResult<ControlFlow<()>> {
            Ok(if d.dn.contains("Frank") {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        }
    }
    let ps = people();
    let (fx, plan, dir) = synced(&main_job(), &ps);
    fx.write(&ps[..6], &groups());
    let report = run_with(&plan, &fx.path(), &dir, &Keep, &RunOptions::default());
    assert_eq!(
        report.deleted,
        ["CN=Eve Adams\\2bCo,OU=API,DC=groupid,DC=lab"]
    );
    assert!(user(&dir, "Frank #Hash").first("cn").is_some());
}

#[test]
fn containers_come_from_a_source_field_and_missing_ones_follow_the_strategy() {
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    users_only(&mut job);
    job["objectsOption"][0]["containerOption"] = json!("2");
    job["objectsOption"][0]["containerOptionValue"] = json!("Container");
    job["syncQuery"][0]["query"] = json!(
        "SELECT *, 'OU=' || Department || ',OU=API,DC=groupid,DC=lab' AS Container FROM [TTSheet1$]"
    );
    let dir = LdifDirectory::in_memory();
    let report = run(&plan(&job), &fx.path(), &dir);
    assert_eq!(report.counts.added, 8, "{report:#?}");
    assert!(
        dir.get("CN=Zoë Müller,OU=R&D,OU=API,DC=groupid,DC=lab")
            .is_some()
    );
    assert_eq!(run(&plan(&job), &fx.path(), &dir).counts.unchanged, 8);

    job["objectsOption"][0]["createObjectContainerStrategy"] = json!(0);
    let dir = LdifDirectory::in_memory();
    let report = run(&plan(&job), &fx.path(), &dir);
    assert_eq!(report.counts.failed, 8);
    assert!(
        report.failed[0]
            .message
            .contains("does not exist (createObjectContainerStrategy is 0)")
    );
    assert!(dir.entries().is_empty());
}

#[test]
fn scripts_registered_by_the_host_run_as_transforms() {
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    job["fieldsMap"][11]["transform"] = json!("Script:name=initials");
    let mut context = TransformContext::default();
    context.scripts.register("initials", |input| {
        let first = input.row.get("First").unwrap_or("");
        let last = input.row.get("Last").unwrap_or("");
        if last.starts_with('#') {
            return Err("no initials for a hash".into());
        }
        Ok(Some(format!(
            "{}{}",
            first.chars().next().unwrap_or('?'),
            last.chars().next().unwrap_or('?')
        )))
    });
    let dir = LdifDirectory::in_memory();
    let report = run(&plan_with(&job, &context), &fx.path(), &dir);
    assert_eq!(user(&dir, "Ann Lee").first("description"), Some("AL"));
    assert_eq!(report.failed.len(), 1);
    assert_eq!(
        report.failed[0].field.as_deref(),
        Some("fieldsMap[11] (description)")
    );
    assert!(report.failed[0].message.contains("no initials for a hash"));
}

#[test]
fn a_container_script_places_each_new_object() {
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    users_only(&mut job);
    job["objectsOption"][0]["containerOption"] = json!("3");
    job["objectsOption"][0]["containerOptionValue"] = json!("by-department");
    let mut context = TransformContext::default();
    context.scripts.register("by-department", |input| {
        Ok(input.row.get("Department").map(|d| {
            format!(
                "OU={},OU=API,DC=groupid,DC=lab",
                datasync::dn::escape_value(d)
            )
        }))
    });
    let plan = plan_with(&job, &context);
    let dir = LdifDirectory::in_memory();
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(report.counts.added, 8, "{report:#?}");
    assert!(
        dir.get("CN=Bob Stone,OU=Sales,OU=API,DC=groupid,DC=lab")
            .is_some()
    );
    assert_eq!(run(&plan, &fx.path(), &dir).counts.unchanged, 8);
    // A new department is a move into its OU (made when missing), listed as a rename.
    let mut moved = people();
    moved[1].department = "Legal".into();
    fx.write(&moved, &groups());
    let report = run(&plan, &fx.path(), &dir);
    // Bob moves, and José, whom Bob manages, follows him: his manager is the new DN.
    assert_eq!(report.counts.updated, 2, "{report:#?}");
    assert_eq!(
        report.updated_id_map["CN=Bob Stone,OU=Sales,OU=API,DC=groupid,DC=lab"],
        "CN=Bob Stone,OU=Legal,OU=API,DC=groupid,DC=lab"
    );
    let jose = dir
        .get("CN=José Núñez,OU=Sales,OU=API,DC=groupid,DC=lab")
        .unwrap();
    assert_eq!(
        jose.first("manager"),
        Some("CN=Bob Stone,OU=Legal,OU=API,DC=groupid,DC=lab")
    );
    assert!(
        dir.get("CN=Bob Stone,OU=Legal,OU=API,DC=groupid,DC=lab")
            .is_some()
    );
    assert_eq!(run(&plan, &fx.path(), &dir).counts.unchanged, 8);

    // an unregistered container script is a load error, not a run-time surprise
    let wire = job::from_json(&job.to_string(), "t").unwrap();
    let e = plan::compile(&wire, &TransformContext::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("container script \"by-department\" is not registered"),
        "{e}"
    );
}

#[test]
fn settings_can_be_scoped_to_one_object_type() {
    // Groups live outside the users' container: their own Destination.Container setting
    // (objectType 4) gives them their own scope.
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    job["objectsOption"][1]["containerOptionValue"] = json!("OU=Groups,DC=groupid,DC=lab");
    job["settings"].as_array_mut().unwrap().push(json!({
        "action": 0, "id": 0, "key": "Destination.Container",
        "value": "OU=Groups,DC=groupid,DC=lab", "dataType": "System.String", "objectType": 4
    }));
    let plan = plan(&job);
    assert_eq!(plan.objects[0].scope_base, USERS);
    assert_eq!(plan.objects[1].scope_base, "OU=Groups,DC=groupid,DC=lab");
    let dir = LdifDirectory::in_memory();
    assert_eq!(run(&plan, &fx.path(), &dir).counts.added, 12);
    assert!(
        dir.get("CN=Sales Team,OU=Groups,DC=groupid,DC=lab")
            .is_some()
    );
    let mut gs = groups();
    gs.pop();
    fx.write(&people(), &gs);
    let report = run(&plan, &fx.path(), &dir);
    assert_eq!(
        report.deleted,
        ["CN=Finance Team,OU=Groups,DC=groupid,DC=lab"],
        "{report:#?}"
    );
    assert_eq!(report.counts.unchanged, 11);
}

/// Runs `plan` on `source` and returns the error it must end with.
fn run_error(plan: &Plan, source: &Path, dir: &dyn Destination, hooks: &dyn Hooks) -> String {
    let mut src = source::open(source).unwrap();
    match datasync::run(plan, src.as_mut(), dir, hooks, &RunOptions::default()) {
        Ok(report) => panic!("the run should fail, but reported {:?}", report.counts),
        Err(e) => e.to_string(),
    }
}

/// Counts the rows the engine began, to show they were begun before the source failed.
#[derive(Default)]
struct Started(AtomicUsize);

impl Hooks for Started {
    fn row_starting(&self, _: &HookContext, _: &mut RowStart<'_>) -> HookResult<ControlFlow<()>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(ControlFlow::Continue(()))
    }
}

#[test]
fn a_source_that_fails_after_rows_were_prepared_writes_nothing() {
    // Rows are prepared while the source is read; a bad record thousands of lines in still
    // stops the run before the first write, and is the error reported.
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("people.csv");
    let mut text = support::people_csv(&support::generated_people(3000));
    text.push_str("1,too,few,fields\n");
    std::fs::write(&csv, text).unwrap();
    let mut job = main_job();
    users_only(&mut job);
    let dir = LdifDirectory::in_memory();
    let hooks = Started::default();
    let e = run_error(&plan(&job), &csv, &dir, &hooks);
    assert!(e.contains("line 3002"), "{e}");
    assert!(
        hooks.0.load(Ordering::Relaxed) > 0,
        "rows were prepared while the file was read"
    );
    assert!(dir.entries().is_empty(), "nothing written");

    // The same bad record behind a field map that names a missing column: the source's own
    // error still comes first (the preparing side reads on to the end after its problem).
    job["fieldsMap"][2]["sourceField"] = json!("Surname");
    let e = run_error(&plan(&job), &csv, &dir, &NoHooks);
    assert!(e.contains("line 3002"), "{e}");
    let mut good = csv.clone();
    good.set_file_name("good.csv");
    std::fs::write(&good, support::people_csv(&support::generated_people(3000))).unwrap();
    let e = run_error(&plan(&job), &good, &dir, &NoHooks);
    assert!(e.contains("column \"Surname\" is not in the source"), "{e}");
    assert!(dir.entries().is_empty(), "nothing written");
}

#[test]
fn an_add_that_fails_fails_its_row_only() {
    // New objects are added in batches; one the directory refuses (its DN is taken by an
    // object the job's query does not see) fails alone, its neighbours are added.
    let ps = support::generated_people(2_000);
    let fx = TempWorkbook::new(&ps);
    let mut job = main_job();
    users_only(&mut job);
    let plan = plan(&job);
    for threads in [1, 4] {
        let dir = LdifDirectory::in_memory();
        let mut ou = Entry::new(USERS);
        ou.set("objectClass", vec!["organizationalUnit".into()]);
        dir.add(&ou, None).unwrap();
        let taken = format!("CN=First700 Last700,{USERS}");
        let mut contact = Entry::new(taken.clone());
        contact.set("objectClass", vec!["contact".into()]);
        dir.add(&contact, None).unwrap();
        let options = RunOptions {
            threads,
            ..Default::default()
        };
        let report = run_with(&plan, &fx.path(), &dir, &NoHooks, &options);
        assert_eq!(report.counts.added, 1_999, "{threads} threads");
        assert_eq!(report.counts.failed, 1);
        let failure = &report.failed[0];
        assert_eq!((failure.row, failure.key.as_deref()), (702, Some("100700")));
        assert!(
            failure.message.contains("already exists"),
            "{}",
            failure.message
        );
        assert_eq!(
            dir.get(&taken).unwrap().first("objectClass"),
            Some("contact")
        );
        assert!(dir.get(&format!("CN=First699 Last699,{USERS}")).is_some());
        assert!(dir.get(&format!("CN=First701 Last701,{USERS}")).is_some());
        assert!(!report.added.contains(&taken));
    }
}

#[test]
fn a_column_read_by_several_fields_reaches_each() {
    // A plain copy moves its column's value into the new object only when nothing later
    // reads that column; every field here must still see the value.
    let fx = TempWorkbook::new(&people());
    let mut job = main_job();
    users_only(&mut job);
    let field = |source: &str, destination: &str, transform: &str| {
        let mut f = job["fieldsMap"][1].clone();
        f["sourceField"] = json!(source);
        f["destinationField"] = json!(destination);
        f["transform"] = json!(transform);
        f
    };
    let extra = [
        field("", "displayName", "Upper:field=First"),
        field("Department", "physicalDeliveryOfficeName", ""),
        field("Department", "company", ""),
    ];
    for f in extra {
        job["fieldsMap"].as_array_mut().unwrap().push(f);
    }
    let dir = LdifDirectory::in_memory();
    let report = run(&plan(&job), &fx.path(), &dir);
    assert_eq!(report.counts.failed, 0, "{report:#?}");
    let ann = user(&dir, "Ann Lee");
    assert_eq!(ann.first("givenName"), Some("Ann"));
    assert_eq!(ann.first("displayName"), Some("ANN"));
    let department = ann.first("department").expect("a department");
    assert_eq!(ann.first("physicalDeliveryOfficeName"), Some(department));
    assert_eq!(ann.first("company"), Some(department));
}

#[test]
fn resolve_ignores_case_in_the_same_run_and_in_the_directory() {
    // Ids with letters: a manager named in another case than the object has it is found
    // among this run's new objects, and among the directory's when the source lacks it.
    // Run with and without a later field reading the manager column, so the Resolve both
    // takes the row's value and copies it.
    let header = "EmployeeID,First,Last,Email,Department,Title,Phones,Manager\n";
    let first = "ZZ-9,Zed,Nine,z@lab,R&D,Chief,555-9,\n\
                 AB-1,Ann,Boss,a@lab,R&D,Head,555-1,zz-9\n\
                 AB-2,Bob,Two,b@lab,R&D,Dev,555-2,aB-1\n\
                 CD-4,Di,Four,d@lab,R&D,Dev,555-4,Ab-2\n";
    let second = "AB-1,Ann,Boss,a@lab,R&D,Head,555-1,Zz-9\n\
                  AB-2,Bob,Two,b@lab,R&D,Dev,555-2,ab-1\n";
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("people.csv");
    for copy_after in [false, true] {
        let mut job = main_job();
        users_only(&mut job);
        job["objectsOption"][0]["isDelete"] = json!(false);
        if copy_after {
            let mut info = job["fieldsMap"][1].clone();
            info["sourceField"] = json!("Manager");
            info["destinationField"] = json!("info");
            job["fieldsMap"].as_array_mut().unwrap().push(info);
        }
        let plan = plan(&job);
        let dir = LdifDirectory::in_memory();
        std::fs::write(&csv, format!("{header}{first}")).unwrap();
        let report = run(&plan, &csv, &dir);
        assert_eq!(report.counts.added, 4, "{report:#?}");
        let managers = |expected: &[(&str, &str)]| {
            for (cn, manager) in expected {
                let dn = format!("CN={manager},{USERS}");
                assert_eq!(user(&dir, cn).first("manager"), Some(dn.as_str()), "{cn}");
            }
        };
        managers(&[
            ("Ann Boss", "Zed Nine"),
            ("Bob Two", "Ann Boss"),
            ("Di Four", "Bob Two"),
        ]);
        if copy_after {
            assert_eq!(user(&dir, "Bob Two").first("info"), Some("aB-1"));
        }
        // Zed is no longer in the source: Ann's manager is found in the directory, so
        // nothing changes (the value differs from before only in case).
        std::fs::write(&csv, format!("{header}{second}")).unwrap();
        let report = run(&plan, &csv, &dir);
        assert_eq!(report.counts.failed, 0, "{report:#?}");
        managers(&[("Ann Boss", "Zed Nine"), ("Bob Two", "Ann Boss")]);
        if copy_after {
            assert_eq!(
                report.counts.updated, 2,
                "info takes the new spelling: {report:#?}"
            );
        } else {
            assert_eq!(report.counts.unchanged, 2, "{report:#?}");
        }
    }
}

/// More people than one batch of prepared rows (512) holds, so that `Resolve` answers some
/// rows while they are prepared, from earlier batches, and the rest once every row is known.
/// Person `i` is `First{i} Last{i}`, managed by person `i / 10`.
const MANY: usize = 1500;

fn cn_of(i: usize) -> String {
    format!("First{i} Last{i}")
}

/// A person who shares `of`'s employee id but nothing else.
fn twin(of: usize) -> Person {
    let mut p = support::generated_people(MANY + 1).pop().unwrap();
    p.id = 100_000 + of as u32;
    p
}

/// Runs the users of `job` over `people` (as CSV) into `dir`, on `threads` workers.
fn run_people(job: &Value, people: &[Person], dir: &LdifDirectory, threads: usize) -> Report {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("people.csv");
    std::fs::write(&csv, support::people_csv(people)).unwrap();
    support::run_job(&plan(job), &csv, dir, threads)
}

fn users_job(key_by_mail: bool) -> Value {
    let mut job = main_job();
    users_only(&mut job);
    job["objectsOption"][0]["isDelete"] = json!(false);
    if key_by_mail {
        // employeeID (what Resolve looks up) then need not be unique.
        job["fieldsMap"][3]["isKey"] = json!(false);
        job["fieldsMap"][6]["isKey"] = json!(true);
    }
    job
}

fn manager_of(dir: &LdifDirectory, i: usize) -> Option<String> {
    user(dir, &cn_of(i)).first("manager").map(String::from)
}

fn failures(report: &Report) -> Vec<(u64, String)> {
    report
        .failed
        .iter()
        .map(|f| (f.row, f.message.clone()))
        .collect()
}

#[test]
fn resolve_answers_do_not_depend_on_where_the_manager_row_is() {
    let people = support::generated_people(MANY);
    let mut reversed = people.clone();
    reversed.reverse();
    // A fixed shuffle (a linear congruential generator): managers before and after their
    // reports, in the same batch or not.
    let mut shuffled = people.clone();
    let mut state: u64 = 0x5eed;
    for i in (1..shuffled.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        shuffled.swap(i, (state >> 33) as usize % (i + 1));
    }
    let job = users_job(false);
    let dirs = [
        LdifDirectory::in_memory(),
        LdifDirectory::in_memory(),
        LdifDirectory::in_memory(),
    ];
    // In order nearly every manager's row comes before its reports' (answered early); in
    // reverse, after them (answered once every row is known); shuffled, both.
    for (dir, rows) in dirs.iter().zip([&people, &reversed, &shuffled]) {
        let report = run_people(&job, rows, dir, 0);
        assert_eq!((report.counts.added, report.counts.failed), (MANY, 0));
    }
    for i in 0..MANY {
        let expected = (i > 0).then(|| format!("CN={},{USERS}", cn_of(i / 10)));
        for (dir, order) in dirs.iter().zip(["in order", "reversed", "shuffled"]) {
            assert_eq!(manager_of(dir, i), expected, "person {i}, {order}");
        }
    }
    let backwards = &dirs[1];
    // Answered early against objects that exist, the same managers change nothing.
    let again = run_people(&job, &people, backwards, 0);
    assert_eq!(again.counts.unchanged, MANY, "{:?}", failures(&again));
}

#[test]
fn an_early_resolve_answer_is_taken_back_when_its_value_turns_up_again() {
    // Person 100 is in the first batch; persons 1000-1009, whom they manage, in the second,
    // answered early; a second object with person 100's id arrives in the third.
    let job = users_job(true);
    let mut people = support::generated_people(MANY);
    people.push(twin(100));
    let ambiguous = |report: &Report| {
        let expected: Vec<(u64, String)> = (1000..1010)
            .map(|i| {
                (
                    i as u64 + 2,
                    format!(
                        "Resolve: 2 objects have employeeID=100100: CN={},{USERS}; CN={},{USERS}",
                        cn_of(100),
                        cn_of(MANY)
                    ),
                )
            })
            .collect();
        assert_eq!(failures(report), expected);
    };
    let mut reports = Vec::new();
    for threads in [1, 2] {
        let dir = LdifDirectory::in_memory();
        let report = run_people(&job, &people, &dir, threads);
        ambiguous(&report);
        assert_eq!(report.counts.added, MANY + 1 - 10);
        assert_eq!(
            manager_of(&dir, 1010),
            Some(format!("CN={},{USERS}", cn_of(101)))
        );
        reports.push(datasync::destination::ldif::write(&without_hashes(&dir)));
    }
    assert_eq!(reports[0], reports[1], "one thread or two");

    // Against existing objects: persons 1000-1009 move to person 101, answered early as a
    // change, and a second object with person 101's id arrives later. The change is taken
    // back and the rows fail, their objects keeping their manager, as do the rows of
    // persons 1010-1019, whom person 101 already managed.
    let dir = LdifDirectory::in_memory();
    let people = support::generated_people(MANY);
    run_people(&job, &people, &dir, 0);
    let mut moved = people.clone();
    for p in &mut moved[1000..1010] {
        p.manager = Some(100_101);
    }
    moved.push(twin(101));
    let report = run_people(&job, &moved, &dir, 0);
    let rows: Vec<u64> = report.failed.iter().map(|f| f.row).collect();
    assert_eq!(
        rows,
        (1002..1022).collect::<Vec<u64>>(),
        "{:?}",
        failures(&report)
    );
    assert!(
        report.failed[0]
            .message
            .starts_with("Resolve: 2 objects have employeeID=100101")
    );
    assert_eq!((report.counts.updated, report.counts.added), (0, 1));
    assert_eq!(
        manager_of(&dir, 1000),
        Some(format!("CN={},{USERS}", cn_of(100)))
    );
}

#[test]
fn an_early_resolve_answer_is_taken_back_when_its_object_is_not_created() {
    // Person 100 and a later row both fail, for a shared key or a shared DN; persons
    // 1000-1009 were answered early with person 100's object, which is not created: they get
    // no manager.
    let same_dn = {
        let mut p = support::generated_people(MANY + 1).pop().unwrap();
        (p.first, p.last) = ("First100".into(), "Last100".into());
        p
    };
    for (later, message) in [
        (twin(100), "duplicate key \"100100\""),
        (
            same_dn,
            "CN=First100 Last100,OU=API,DC=groupid,DC=lab would also be",
        ),
    ] {
        let mut people = support::generated_people(MANY);
        people.push(later);
        let dir = LdifDirectory::in_memory();
        let report = run_people(&users_job(false), &people, &dir, 0);
        let rows: Vec<u64> = report.failed.iter().map(|f| f.row).collect();
        assert_eq!(rows, [102, MANY as u64 + 2], "{:?}", failures(&report));
        assert!(
            report.failed[0].message.starts_with(message),
            "{:?}",
            failures(&report)
        );
        for i in 1000..1010 {
            assert_eq!(manager_of(&dir, i), None, "person {i}");
        }
        assert_eq!(
            manager_of(&dir, 1010),
            Some(format!("CN={},{USERS}", cn_of(101)))
        );
    }
}

/// The embedded directory, checking references as Active Directory does: an object whose
/// `manager` names no entry is refused.
struct CheckedReferences(LdifDirectory);

impl Destination for CheckedReferences {
    fn search_each(
        &self,
        base: &str,
        scope: datasync::destination::Scope,
        filter: &datasync::query::Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), datasync::DestinationError> {
        self.0.search_each(base, scope, filter, attributes, each)
    }
    fn read_entry(
        &self,
        dn: &str,
        attributes: &[String],
    ) -> Result<Option<Entry>, datasync::DestinationError> {
        self.0.read_entry(dn, attributes)
    }
    fn exists(&self, dn: &str) -> Result<bool, datasync::DestinationError> {
        self.0.exists(dn)
    }
    fn add(
        &self,
        entry: &Entry,
        password: Option<&datasync::Secret>,
    ) -> Result<(), datasync::DestinationError> {
        if let Some(manager) = entry.first("manager")
            && !self.0.exists(manager)?
        {
            return Err(datasync::DestinationError::Rejected {
                message: format!("{manager} does not exist yet"),
            });
        }
        self.0.add(entry, password)
    }
    fn modify(
        &self,
        dn: &str,
        changes: &[datasync::destination::Modification],
    ) -> Result<(), datasync::DestinationError> {
        self.0.modify(dn, changes)
    }
    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), datasync::DestinationError> {
        self.0.rename(dn, new_dn)
    }
    fn delete(&self, dn: &str) -> Result<(), datasync::DestinationError> {
        self.0.delete(dn)
    }
    fn capabilities(&self) -> datasync::destination::Capabilities {
        let mut capabilities = datasync::destination::Capabilities::default();
        capabilities.references_must_exist = true;
        capabilities
    }
    fn commit(&self) -> Result<(), datasync::DestinationError> {
        self.0.commit()
    }
}

/// Where references must exist, an object is written before the rows that name it, however
/// the source orders them and however many workers there are: a chain of managers five deep,
/// listed reports first.
#[test]
fn objects_are_written_before_the_rows_that_name_them_where_references_must_exist() {
    let mut job = main_job();
    users_only(&mut job);
    let mut staff = support::generated_people(3_000);
    staff.reverse();
    for threads in [1, 4] {
        let fx = TempWorkbook::new(&staff);
        let dir = CheckedReferences(LdifDirectory::in_memory());
        let report = support::run_job(&plan(&job), &fx.path(), &dir, threads);
        assert_eq!(report.counts.added, 3_000, "{:?}", report.failed.first());
        let unchanged = support::run_job(&plan(&job), &fx.path(), &dir, threads);
        assert_eq!(unchanged.counts.unchanged, 3_000);
    }
}

/// A destination that counts the whole entries a run reads ([`Destination::read_entry`]).
struct CountedReads {
    inner: datasync::Store,
    reads: AtomicUsize,
    searches: AtomicUsize,
}

impl Destination for CountedReads {
    fn search_each(
        &self,
        base: &str,
        scope: datasync::destination::Scope,
        filter: &datasync::query::Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), datasync::DestinationError> {
        self.searches.fetch_add(1, Ordering::SeqCst);
        self.inner
            .search_each(base, scope, filter, attributes, each)
    }
    fn read_entry(
        &self,
        dn: &str,
        attributes: &[String],
    ) -> Result<Option<Entry>, datasync::DestinationError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_entry(dn, attributes)
    }
    fn exists(&self, dn: &str) -> Result<bool, datasync::DestinationError> {
        self.inner.exists(dn)
    }
    fn add(
        &self,
        entry: &Entry,
        password: Option<&datasync::Secret>,
    ) -> Result<(), datasync::DestinationError> {
        self.inner.add(entry, password)
    }
    fn modify(
        &self,
        dn: &str,
        changes: &[datasync::destination::Modification],
    ) -> Result<(), datasync::DestinationError> {
        self.inner.modify(dn, changes)
    }
    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), datasync::DestinationError> {
        self.inner.rename(dn, new_dn)
    }
    fn delete(&self, dn: &str) -> Result<(), datasync::DestinationError> {
        self.inner.delete(dn)
    }
    fn commit(&self) -> Result<(), datasync::DestinationError> {
        self.inner.commit()
    }
}

/// The embedded store, through the engine: a run keeps of each object only its DN, key and
/// fingerprint, so an unchanged re-run reads no whole entry, and a re-run where a few rows
/// changed reads exactly those objects, and writes only them. A re-run whose every `Resolve`
/// value names another row's object searches the directory once (its scope), not a second
/// time for `Resolve`. Results match the LDIF directory's, for 1 and 4 workers.
#[test]
fn the_store_reads_whole_entries_only_for_objects_that_change() {
    let mut job = main_job();
    users_only(&mut job);
    let staff = support::generated_people(2_000);
    let fx = TempWorkbook::new(&staff);
    let dir = tempfile::tempdir().unwrap();
    for threads in [1, 4] {
        let path = dir.path().join(format!("store-{threads}.db"));
        let store = CountedReads {
            inner: datasync::Store::open(&path).unwrap(),
            reads: AtomicUsize::new(0),
            searches: AtomicUsize::new(0),
        };
        let first = support::run_job(&plan(&job), &fx.path(), &store, threads);
        assert_eq!(first.counts.added, 2_000, "{:?}", first.failed.first());
        let searched = store.searches.load(Ordering::SeqCst);
        let again = support::run_job(&plan(&job), &fx.path(), &store, threads);
        assert_eq!(again.counts.unchanged, 2_000);
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            0,
            "an unchanged run read entries"
        );
        assert_eq!(
            store.searches.load(Ordering::SeqCst) - searched,
            1,
            "the rows answered every Resolve, yet the directory was searched for them"
        );

        let mut changed = staff.clone();
        for p in changed.iter_mut().step_by(100) {
            p.title = format!("{} (acting)", p.title);
        }
        let changed_fx = TempWorkbook::new(&changed);
        let report = support::run_job(&plan(&job), &changed_fx.path(), &store, threads);
        assert_eq!(report.counts.updated, 20, "{:?}", report.failed.first());
        assert_eq!(report.counts.unchanged, 1_980);
        assert_eq!(store.reads.load(Ordering::SeqCst), 20);

        // The same runs into the LDIF directory leave the same entries (hashes aside).
        let memory = LdifDirectory::in_memory();
        support::run_job(&plan(&job), &fx.path(), &memory, threads);
        support::run_job(&plan(&job), &changed_fx.path(), &memory, threads);
        let all = datasync::query::Filter::Present("objectClass".into());
        let listed = |d: &dyn Destination| {
            d.search("DC=lab", datasync::destination::Scope::Subtree, &all, &[])
                .unwrap()
                .into_iter()
                .map(|mut e| {
                    e.remove("userPassword");
                    e
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(&store), listed(&memory));
    }
}

/// Holds every add until it is let go: a run that stays in the middle of its writes.
struct HeldAdds {
    writing: std::sync::mpsc::SyncSender<()>,
    go: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Hooks for HeldAdds {
    fn row_adding(&self, _: &HookContext, _: &mut RowWrite) -> HookResult<ControlFlow<()>> {
        let _ = self.writing.try_send(());
        let go = self.go.lock().unwrap();
        let _ = go.recv_timeout(std::time::Duration::from_secs(60));
        Ok(ControlFlow::Continue(()))
    }
}

/// Two runs on one store, each through its own `Store` (as `datasync schedule` gives each job):
/// while one is in the middle of its writes, the other is refused as locked (a transient
/// error: the runner retries it) and writes nothing; the first then commits whole, and the
/// second, run again, adds its own objects.
#[test]
fn two_runs_on_one_store_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.db");
    let (mut users_job, mut groups_job) = (main_job(), main_job());
    users_only(&mut users_job);
    support::groups_only(&mut groups_job);
    let fx = TempWorkbook::new(&people());
    let (writing, started) = std::sync::mpsc::sync_channel(1);
    let (go, wait) = std::sync::mpsc::channel();
    let held = HeldAdds {
        writing,
        go: Mutex::new(wait),
    };
    let first_store = datasync::Store::open(&path).unwrap();
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            let options = RunOptions {
                threads: 1,
                ..Default::default()
            };
            run_with(&plan(&users_job), &fx.path(), &first_store, &held, &options)
        });
        started
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the first run did not start writing");
        let second_store = datasync::Store::open(&path).unwrap();
        let mut src = source::open(&fx.path()).unwrap();
        let refused = datasync::run(
            &plan(&groups_job),
            src.as_mut(),
            &second_store,
            &NoHooks,
            &RunOptions::default(),
        );
        match refused {
            Err(datasync::Error::Destination { source, .. }) => {
                assert!(
                    matches!(source, datasync::DestinationError::Locked { .. }),
                    "{source}"
                );
                assert!(source.is_transient());
            }
            other => panic!("the second run was not kept out: {other:?}"),
        }
        drop(second_store);
        for _ in 0..people().len() {
            let _ = go.send(());
        }
        let report = first.join().unwrap();
        assert_eq!(report.counts.added, people().len(), "{:?}", report.failed);
    });
    drop(first_store);
    let store = datasync::Store::open(&path).unwrap();
    let groups_report = support::run_job(&plan(&groups_job), &fx.path(), &store, 0);
    assert_eq!(groups_report.counts.added, groups().len());
    let users_again = support::run_job(&plan(&users_job), &fx.path(), &store, 0);
    assert_eq!(users_again.counts.unchanged, people().len());
}
