//! Tables as destinations (issue 17): a directory exported to a CSV file or a workbook sheet
//! and read back, rows named by their keys, only changed cells rewritten, an unchanged run
//! leaving the file byte for byte.

mod support;

use std::path::Path;

use datasync::destination::DirectorySource;
use datasync::destination::{Scope, TableDestination};
use datasync::query::Filter;
use datasync::{Destination, LdifDirectory, NoHooks, RunOptions, RunStatus, Store};
use support::{TempWorkbook, main_job, people};

use support::{EXPORT_COLUMNS as COLUMNS, filled_store};

/// A job copying the users from a directory into the table (sheet) `sheet`.
fn export_job(sheet: &str) -> serde_json::Value {
    support::table_export_job(sheet)
}

/// The reverse: the sheet's rows as users in the main job's container.
fn import_job(sheet: &str) -> serde_json::Value {
    support::table_import_job(&format!("SELECT * FROM [{sheet}$]"))
}

/// Runs the export of the store at `store` into `table`.
fn export(store: &Path, table: &Path, sheet: &str) -> datasync::Report {
    let plan = support::compile(&export_job(sheet), &Default::default());
    let destination =
        TableDestination::open(table, sheet, plan.table_spec()).unwrap_or_else(|e| panic!("{e}"));
    let mut source = DirectorySource::open(&format!("db:{}", store.display())).unwrap();
    let report = datasync::run(
        &plan,
        &mut source,
        &destination,
        &NoHooks,
        &RunOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    report
}

fn users(dir: &dyn Destination) -> Vec<datasync::Entry> {
    dir.search(
        "DC=groupid,DC=lab",
        Scope::Subtree,
        &Filter::parse("(objectClass=user)").unwrap(),
        &[],
    )
    .unwrap()
}

fn exported(name: &str) -> bool {
    COLUMNS.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Exports the store to `table`, imports the table into a new directory, and checks the
/// users come back attribute for attribute.
fn assert_round_trip(store: &Path, table: &Path, sheet: &str) {
    let report = export(store, table, sheet);
    assert_eq!(report.counts.added, people().len(), "{report:?}");

    let plan = support::compile(&import_job(sheet), &Default::default());
    let copy = LdifDirectory::in_memory();
    let report = support::run_job(&plan, table, &copy, 0);
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    assert_eq!(report.counts.added, people().len(), "{report:?}");
    let original = Store::open_to_read(store).unwrap();
    assert_eq!(
        support::comparable(users(&copy), exported),
        support::comparable(users(&original), exported)
    );
}

#[test]
fn a_directory_goes_to_a_csv_table_and_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let table = dir.path().join("staff.csv");
    assert_round_trip(&store, &table, "Staff");
    let text = std::fs::read_to_string(&table).unwrap();
    assert_eq!(text.lines().next(), Some(COLUMNS.join(",").as_str()));
    // Bob's two phones, joined with the field's delimiter; his manager's DN as text.
    let bob = text.lines().find(|l| l.starts_with("1002,")).unwrap();
    assert!(bob.contains("555-0101;555-0199"), "{bob}");
    assert!(
        bob.contains("\"CN=Ann Lee,OU=API,DC=groupid,DC=lab\""),
        "{bob}"
    );

    // Unchanged: the file is not written at all (same bytes, same inode).
    let before = std::fs::read(&table).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&table).unwrap());
    let report = export(&store, &table, "Staff");
    assert_eq!(report.counts.added + report.counts.updated, 0, "{report:?}");
    assert_eq!(std::fs::read(&table).unwrap(), before);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&table).unwrap()),
        inode
    );
}

#[test]
fn updates_change_their_cells_only_and_deletes_remove_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = filled_store(dir.path());
    let table = dir.path().join("staff.csv");
    export(&store_path, &table, "Staff");
    // The table's owner adds a column of their own and a row without a key.
    let text = std::fs::read_to_string(&table).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[0].push_str(",Notes");
    for line in &mut lines[1..] {
        line.push_str(if line.starts_with("1001,") {
            ",the boss"
        } else {
            ","
        });
    }
    lines.push(",,,,,,,,,,,a row of the owner's".into());
    std::fs::write(&table, lines.join("\n") + "\n").unwrap();

    // In the directory: a new title for 1003, and 1008 leaves.
    support::retitle_1003_and_remove_1008(&store_path);

    let before = std::fs::read_to_string(&table).unwrap();
    let report = export(&store_path, &table, "Staff");
    assert_eq!(
        (report.counts.updated, report.counts.deleted),
        (1, 1),
        "{report:?}"
    );
    let after = std::fs::read_to_string(&table).unwrap();
    let expected: Vec<String> = before
        .lines()
        .filter(|l| !l.starts_with("1008,"))
        .map(|l| {
            if l.starts_with("1003,") {
                l.replace(",Engineer,", ",Chief Scientist,")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(after.lines().collect::<Vec<_>>(), expected);
    assert!(after.contains("1001,") && after.contains(",the boss"));
    assert!(after.contains("a row of the owner's"));
}

#[test]
fn a_directory_goes_to_a_workbook_sheet_and_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path());
    let table = dir.path().join("staff.xlsx");
    assert_round_trip(&store, &table, "Staff");
    let before = std::fs::read(&table).unwrap();
    let report = export(&store, &table, "Staff");
    assert_eq!(report.counts.added + report.counts.updated, 0, "{report:?}");
    assert_eq!(
        std::fs::read(&table).unwrap(),
        before,
        "an unchanged run rewrote"
    );

    // A workbook with other sheets is the user's: refused, and left as it was.
    let theirs = TempWorkbook::new(&people());
    let bytes = std::fs::read(theirs.path()).unwrap();
    let plan = support::compile(&export_job("Staff"), &Default::default());
    let err = TableDestination::open(&theirs.path(), "Staff", plan.table_spec()).unwrap_err();
    assert!(err.to_string().contains("holds other sheets"), "{err}");
    assert_eq!(std::fs::read(theirs.path()).unwrap(), bytes);
}

#[test]
fn a_table_job_takes_one_object_type_and_no_password() {
    let mut job = main_job();
    support::set_setting(&mut job, "Destination.IsTableProvider", "True");
    let err = datasync::plan::compile(&support::wire(&job), &Default::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("takes one object type"), "{text}");
    assert!(text.contains("never holds passwords"), "{text}");
    // Without cn or object classes, a table job is whole.
    let plan = support::compile(&export_job("Staff"), &Default::default());
    assert_eq!(plan.table.as_deref(), Some("Staff"));
}

#[test]
fn the_command_line_exports_a_store_to_csv_and_refuses_to_overwrite_an_input() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path());
    let mut job = export_job("Staff");
    // The command line puts a job in table mode when its destination is a table.
    support::set_setting(&mut job, "Destination.IsTableProvider", "False");
    std::fs::write(dir.path().join("export.json"), job.to_string()).unwrap();
    let run = |destination: &str| {
        std::process::Command::new(support::datasync_binary())
            .args([
                "run",
                "export.json",
                "--source",
                "db:directory.db",
                "--destination",
                destination,
            ])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run("csv:staff.csv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("staff.csv")).unwrap();
    assert_eq!(text.lines().count(), people().len() + 1);

    let job_before = std::fs::read(dir.path().join("export.json")).unwrap();
    let out = run("csv:export.json");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was written"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("export.json")).unwrap(),
        job_before
    );

    // A job written for a table does not write to a directory.
    let mut table_job = export_job("Staff");
    table_job["jobInfo"]["name"] = "export".into();
    std::fs::write(dir.path().join("table.json"), table_job.to_string()).unwrap();
    let out = std::process::Command::new(support::datasync_binary())
        .args([
            "run",
            "table.json",
            "--source",
            "db:directory.db",
            "--destination",
            "db:other.db",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("other.db").exists());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("csv:PATH, xlsx:PATH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_table_jobs_columns_keys_and_delimiters_come_from_its_field_map() {
    let plan = support::compile(&export_job("Staff"), &Default::default());
    let spec = plan.table_spec();
    assert_eq!(
        spec.columns
            .iter()
            .map(|(c, _)| c.as_str())
            .collect::<Vec<_>>(),
        COLUMNS
    );
    assert_eq!(spec.keys, ["employeeID"]);
    assert_eq!(spec.columns[7].1.as_deref(), Some(";"));
}
