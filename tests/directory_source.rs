//! The embedded directory as a source (issue 17's directory sources): the store (`db:PATH`)
//! and an LDIF file (`ldif:PATH`, or a `.ldif` file) feed a job, as an LDAP source does.

mod support;

use datasync::destination::DirectorySource;
use datasync::destination::Scope;
use datasync::query::Filter;
use datasync::source::{self, Source, SourceError};
use datasync::{Destination, LdifDirectory, NoHooks, RunOptions, RunStatus, Store};
use support::{TempWorkbook, main_job, people, users_only};

/// A store filled by the main job (users only), in `dir`.
fn filled_store(dir: &std::path::Path) -> std::path::PathBuf {
    let mut job = main_job();
    users_only(&mut job);
    let plan = support::compile(&job, &Default::default());
    let book = TempWorkbook::new(&people());
    let path = dir.join("source.db");
    let store = Store::open(&path).unwrap();
    let report = support::run_job(&plan, &book.path(), &store, 0);
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    path
}

fn copied_by(source: &mut dyn Source) -> LdifDirectory {
    let plan = support::compile(&support::directory_copy_job(), &Default::default());
    let copy = LdifDirectory::in_memory();
    let report = datasync::run(&plan, source, &copy, &NoHooks, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    assert_eq!(report.counts.added, people().len(), "{report:?}");
    copy
}

fn bob(copy: &LdifDirectory) -> datasync::Entry {
    let bob = Filter::parse("(employeeID=1002)").unwrap();
    let found = copy
        .search("DC=groupid,DC=lab", Scope::Subtree, &bob, &[])
        .unwrap();
    assert_eq!(found.len(), 1);
    found.into_iter().next().unwrap()
}

#[test]
fn the_store_and_its_ldif_export_feed_a_job_with_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = filled_store(dir.path());

    let mut from_store = DirectorySource::open(&format!("db:{}", store_path.display())).unwrap();
    let copy = copied_by(&mut from_store);
    let found = bob(&copy);
    let mut phones = found.get("telephoneNumber").to_vec();
    phones.sort();
    assert_eq!(phones, ["555-0101", "555-0199"]);
    assert!(found.first("info").unwrap().starts_with("CN=Bob Stone,"));

    // The same store exported to LDIF, read as a `.ldif` file: the same rows, in the same
    // (tree) order.
    let ldif_path = dir.path().join("export.ldif");
    let mut out = Vec::new();
    Store::open_to_read(&store_path)
        .unwrap()
        .export_ldif(&mut out)
        .unwrap();
    std::fs::write(&ldif_path, out).unwrap();
    let query = "(objectClass=user)";
    let a = DirectorySource::open(&format!("db:{}", store_path.display()))
        .unwrap()
        .query(query)
        .unwrap();
    let b = source::open(&ldif_path).unwrap().query(query).unwrap();
    assert_eq!(a.columns.names(), b.columns.names());
    let values = |rows: &datasync::source::RowSet| -> Vec<Vec<Option<String>>> {
        rows.rows.iter().map(|r| r.values.clone()).collect()
    };
    assert_eq!(values(&a), values(&b));
    assert_eq!(a.rows.len(), people().len());
    // Passwords are never columns: the store holds their hashes, which are not for a file.
    assert!(
        !a.columns
            .names()
            .iter()
            .any(|c| c.eq_ignore_ascii_case("userPassword")),
        "{:?}",
        a.columns.names()
    );
    assert_eq!(a.columns.names()[0], "dn");
}

#[test]
fn a_missing_store_a_damaged_ldif_file_and_a_bad_query_are_errors_that_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.db");
    let err = DirectorySource::open(&format!("db:{}", missing.display())).unwrap_err();
    assert!(matches!(err, SourceError::Open { .. }), "{err}");
    assert!(
        !missing.exists(),
        "opening a missing store as a source created it"
    );

    let damaged = dir.path().join("bad.ldif");
    std::fs::write(&damaged, "dn: CN=a,DC=lab\nnot a line\n").unwrap();
    let err = DirectorySource::open(&format!("ldif:{}", damaged.display())).unwrap_err();
    assert!(
        err.to_string().contains("bad.ldif") && err.to_string().contains("line 2"),
        "{err}"
    );

    let store_path = filled_store(dir.path());
    let mut source = DirectorySource::open(&format!("db:{}", store_path.display())).unwrap();
    let err = source.query("(objectClass=user").unwrap_err();
    assert!(matches!(err, SourceError::Query { .. }), "{err}");
    assert!(DirectorySource::open("postgres://nowhere/db").is_err());
}
