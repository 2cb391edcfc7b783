//! Input a hostile or careless user gives the library: sources without end, huge values,
//! thousands of identical rows, text in two Unicode normal forms, and untidy multi-valued
//! cells. Each is bounded, reported once with where it is, or folded to one value.

mod support;

use std::path::Path;
use std::sync::Arc;

use datasync::engine::RunControl;
use datasync::lifecycle::SystemClock;
use datasync::source::{SourceError, SourceLimits};
use datasync::{Error, LdifDirectory, NoHooks, Plan, RunOptions, RunStatus, source};
use serde_json::{Value, json};
use support::{main_job, users_only};

const USERS: &str = "OU=API,DC=groupid,DC=lab";

/// The users-only main job reading `query`.
fn users_job(query: &str) -> Value {
    let mut job = main_job();
    users_only(&mut job);
    job["syncQuery"][0]["query"] = json!(query);
    job
}

fn plan(job: &Value) -> Plan {
    support::compile(job, &Default::default())
}

/// Runs `plan` on the CSV text `csv`, returning what the engine returns.
fn run_csv(
    plan: &Plan,
    csv: &str,
    dir: &LdifDirectory,
    options: &RunOptions,
) -> Result<datasync::Report, Error> {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("people.csv");
    std::fs::write(&path, csv).unwrap();
    run_file(plan, &path, dir, options)
}

fn run_file(
    plan: &Plan,
    path: &Path,
    dir: &LdifDirectory,
    options: &RunOptions,
) -> Result<datasync::Report, Error> {
    let mut src = source::open(path).unwrap();
    datasync::run(plan, src.as_mut(), dir, &NoHooks, options)
}

/// Runs `plan` on one row (id 1, `first` Lee) into `dir`.
fn one_row(plan: &Plan, first: &str, dir: &LdifDirectory) -> datasync::Report {
    run_csv(
        plan,
        &csv(&[("1", first, "Lee", "")]),
        dir,
        &RunOptions::default(),
    )
    .unwrap()
}

/// A CSV of the main job's columns, one line per `(id, first, last, phones)`.
fn csv(rows: &[(&str, &str, &str, &str)]) -> String {
    let mut out = String::from("EmployeeID,First,Last,Email,Department,Title,Phones,Manager\n");
    for (id, first, last, phones) in rows {
        out.push_str(&format!("{id},{first},{last},,Sales,Clerk,\"{phones}\",\n"));
    }
    out
}

/// The endless query: a recursive CTE that never stops making rows.
const ENDLESS: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
     SELECT i AS EmployeeID, 'A' || i AS First, 'B' AS Last, '' AS Email, '' AS Department, \
     '' AS Title, '' AS Phones, '' AS Manager FROM n";

#[test]
fn a_source_without_end_stops_at_the_row_limit_and_writes_nothing() {
    let plan = plan(&users_job(ENDLESS));
    let dir = LdifDirectory::in_memory();
    let options = RunOptions {
        limits: SourceLimits {
            max_rows: 2_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = run_csv(&plan, &csv(&[("1", "Ann", "Lee", "")]), &dir, &options).unwrap_err();
    match &e {
        Error::Source { source, .. } => match source.as_ref() {
            SourceError::TooLarge { row, .. } => assert_eq!(*row, Some(2_002)),
            other => panic!("{other}"),
        },
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("more than 2000 rows"), "{e}");
    assert!(dir.entries().is_empty(), "something was written");
}

#[test]
fn a_query_without_rows_or_end_stops_at_the_time_out() {
    // An aggregate over the endless rows returns nothing until it ends: only the progress
    // check inside SQLite can stop it.
    let query = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
         SELECT count(*) AS EmployeeID, 'A' AS First, 'B' AS Last, '' AS Email, \
         '' AS Department, '' AS Title, '' AS Phones, '' AS Manager FROM n";
    let plan = plan(&users_job(query));
    let dir = LdifDirectory::in_memory();
    let control = RunControl::with_deadline(
        Arc::new(SystemClock),
        chrono::Utc::now() + chrono::Duration::milliseconds(300),
    );
    let options = RunOptions {
        control: Some(control),
        ..Default::default()
    };
    let report = run_csv(&plan, &csv(&[("1", "Ann", "Lee", "")]), &dir, &options).unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    assert!(dir.entries().is_empty());
}

#[test]
fn a_huge_value_is_refused_with_its_row_and_column() {
    // Made by the query: SQLite's own limit stops it, at the row.
    let query = "SELECT *, randomblob(300000000) AS Photo FROM [people$]";
    let plan = plan(&users_job(query));
    let dir = LdifDirectory::in_memory();
    let rows = csv(&[("1", "Ann", "Lee", ""), ("2", "Bo", "Ek", "")]);
    let e = run_csv(&plan, &rows, &dir, &RunOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("row 2: a value is larger than the 16 MiB"),
        "{e}"
    );
    assert!(dir.entries().is_empty());

    // In the file itself: the row and the column.
    let plan = self::plan(&users_job("SELECT * FROM [people$]"));
    let big = "x".repeat(5_000);
    let rows = csv(&[("1", "Ann", "Lee", ""), ("2", &big, "Ek", "")]);
    let options = RunOptions {
        limits: SourceLimits {
            max_value_bytes: 4_096,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = run_csv(&plan, &rows, &dir, &options).unwrap_err();
    assert!(
        e.to_string()
            .contains("row 3, column \"First\": a value of 5000 bytes"),
        "{e}"
    );
    assert!(dir.entries().is_empty());
}

#[test]
fn thousands_of_identical_rows_fail_with_short_messages() {
    let plan = plan(&users_job("SELECT * FROM [people$]"));
    let dir = LdifDirectory::in_memory();
    let rows: Vec<(&str, &str, &str, &str)> = vec![("7", "Ann", "Lee", ""); 8_000];
    let report = run_csv(&plan, &csv(&rows), &dir, &RunOptions::default()).unwrap();
    assert_eq!(report.counts.failed, 8_000);
    let longest = report.failed.iter().map(|f| f.message.len()).max().unwrap();
    assert!(longest < 200, "a message of {longest} bytes");
    assert!(
        report.failed[0]
            .message
            .contains("row 3, 4, 5 and 7996 other rows"),
        "{}",
        report.failed[0].message
    );
    assert!(dir.entries().is_empty());
}

#[test]
fn nfc_and_nfd_spellings_are_one_object() {
    let plan = plan(&users_job("SELECT * FROM [people$]"));
    let dir = LdifDirectory::in_memory();
    let composed = "Jos\u{e9}";
    let decomposed = "Jose\u{301}";
    // Two rows whose names differ only in normal form aim at one DN: both fail.
    let report = run_csv(
        &plan,
        &csv(&[("1", composed, "Lee", ""), ("2", decomposed, "Lee", "")]),
        &dir,
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.counts.failed, 2, "{:?}", report.failed);
    // One row, then the source switches normal form: the object is unchanged, not renamed.
    let report = one_row(&plan, composed, &dir);
    assert_eq!(report.counts.added, 1);
    let report = one_row(&plan, decomposed, &dir);
    assert_eq!(report.counts.unchanged, 1, "{}", report.to_json());
    let entries: Vec<_> = dir
        .entries()
        .into_iter()
        .filter(|e| e.dn.starts_with("CN="))
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].first("givenName"), Some(composed));
    // A key in the other form finds the object too.
    let report = one_row(&plan, composed, &dir);
    assert_eq!(report.counts.unchanged, 1);
    assert!(datasync::dn::Dn::parse(&format!("CN={decomposed} Lee,{USERS}")).is_ok());
    assert!(dir.get(&format!("CN={decomposed} Lee,{USERS}")).is_some());
}

#[test]
fn a_delimited_cell_stores_each_value_once() {
    let plan = plan(&users_job("SELECT * FROM [people$]"));
    let dir = LdifDirectory::in_memory();
    let report = run_csv(
        &plan,
        &csv(&[("1", "Ann", "Lee", "555;;555; ;556;555 ")]),
        &dir,
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.counts.added, 1);
    let ann = dir.get(&format!("CN=Ann Lee,{USERS}")).unwrap();
    assert_eq!(ann.get("telephoneNumber"), ["555", "556"]);
}

#[test]
fn an_embedded_directory_is_locked_by_every_path_to_it() {
    let folder = tempfile::tempdir().unwrap();
    let real = folder.path().join("d.ldif");
    let link = folder.path().join("link.ldif");
    std::os::unix::fs::symlink("d.ldif", &link).unwrap();
    let first = LdifDirectory::open(&real).unwrap();
    for other in [&link, &folder.path().join("./d.ldif")] {
        let e = LdifDirectory::open(other).unwrap_err();
        assert!(
            matches!(e, datasync::DestinationError::Locked { .. }),
            "{e}"
        );
    }
    drop(first);
    let reopened = LdifDirectory::open(&link).unwrap();
    let real = folder.path().canonicalize().unwrap().join("d.ldif");
    assert_eq!(reopened.path(), Some(real.as_path()));
}

#[test]
fn a_hook_cannot_write_a_plain_password_or_a_bad_attribute_name() {
    use datasync::{Destination, Entry};
    let dir = LdifDirectory::in_memory();
    let mut ou = Entry::new("OU=API,DC=lab");
    ou.set("ou", vec!["API".into()]);
    dir.add(&ou, None).unwrap();
    let mut e = Entry::new("CN=Ann,OU=API,DC=lab");
    e.set("cn", vec!["Ann".into()]);
    e.set("userPassword", vec!["in-clear-1".into()]);
    dir.add(&e, None).unwrap();
    let stored = dir.get("CN=Ann,OU=API,DC=lab").unwrap();
    assert!(
        stored
            .first("userPassword")
            .unwrap()
            .starts_with("{SSHA256}")
    );
    assert!(!dir.to_ldif().contains("in-clear-1"));
    dir.modify(
        "CN=Ann,OU=API,DC=lab",
        &[datasync::destination::Modification::Replace(
            "unicodePwd".into(),
            vec!["in-clear-2".into()],
        )],
    )
    .unwrap();
    assert!(!dir.to_ldif().contains("in-clear-2"));
    let mut bad = Entry::new("CN=Bo,OU=API,DC=lab");
    bad.set("info\nobjectClass", vec!["x".into()]);
    assert!(dir.add(&bad, None).is_err());
    assert!(dir.get("CN=Bo,OU=API,DC=lab").is_none());
}
