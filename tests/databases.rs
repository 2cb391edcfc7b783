//! Databases as sources (issue 17), on a real PostgreSQL server the harness starts: the job's
//! SQL runs on the server, rows stream, columns keep their types, delta runs send only the
//! changed rows, and every failure is a typed error that writes nothing.

mod support;

use std::ops::ControlFlow;
use std::process::Command;

use datasync::destination::DirectorySource;
use datasync::destination::{Scope, TableDestination, TableSpec};
use datasync::ldap::TlsVerify;
use datasync::query::Filter;
use datasync::source::{
    self, Columns, DatabaseConfig, MysqlSource, PostgresSource, RowSink, Source, SourceError,
    SourceRow,
};
use datasync::{Destination, LdifDirectory, NoHooks, RunOptions, RunStatus};
use support::mariadb::Mariadb;
use support::postgres::{PASSWORD, Postgres};
use support::{Person, TempWorkbook, main_job, people, users_only};

/// PostgreSQL's `staff` stamp column: a time with a zone.
const PG_CHANGED: &str = "Changed timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z'";
/// MariaDB's: a `TIMESTAMP` (kept in UTC) with milliseconds.
const MARIADB_CHANGED: &str = "Changed TIMESTAMP(3) NOT NULL DEFAULT '2026-01-01 00:00:00'";

/// SQL that makes the people of the fixture workbook a table `staff`, with the workbook's
/// columns in the database's own types, and a `changed` stamp for delta runs (`changed`, the
/// column's definition in the database's dialect).
fn staff_sql(people: &[Person], changed: &str) -> String {
    let mut sql = format!(
        "DROP TABLE IF EXISTS staff;
         CREATE TABLE staff (EmployeeID integer PRIMARY KEY, First text, Last text,
           Department varchar(64), Title text, Email text, Manager integer, Phones text,
           Hired date, Active boolean, {changed});\n",
    );
    for p in people {
        let text = |s: &str| {
            if s.is_empty() {
                "NULL".to_string()
            } else {
                format!("'{}'", s.replace('\'', "''"))
            }
        };
        sql.push_str(&format!(
            "INSERT INTO staff (EmployeeID, First, Last, Department, Title, Email, Manager, \
             Phones, Hired, Active) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, '{:04}-{:02}-{:02}', {});\n",
            p.id,
            text(&p.first),
            text(&p.last),
            text(&p.department),
            text(&p.title),
            text(&p.email),
            p.manager.map_or("NULL".into(), |m| m.to_string()),
            text(&p.phones),
            p.hired.0,
            p.hired.1,
            p.hired.2,
            p.active,
        ));
    }
    sql
}

fn staff_table(server: &Postgres, people: &[Person]) {
    server.execute(&staff_sql(people, PG_CHANGED));
}

fn config(server: &Postgres) -> DatabaseConfig {
    DatabaseConfig::new(server.url("postgres")).with_password(PASSWORD)
}

/// The main job's users, reading `query`.
fn staff_job(query: &str) -> serde_json::Value {
    let mut job = main_job();
    users_only(&mut job);
    job["syncQuery"][0]["query"] = query.into();
    job
}

fn everything(dir: &LdifDirectory) -> Vec<datasync::Entry> {
    dir.search(
        "DC=groupid,DC=lab",
        Scope::Subtree,
        &Filter::parse("(objectClass=*)").unwrap(),
        &[],
    )
    .unwrap()
}

/// Attributes that differ between two runs of the same rows: generated passwords.
fn not_a_password(name: &str) -> bool {
    !matches!(name, "userpassword" | "unicodepwd")
}

/// Runs the main job's users from `source` (whose `staff` table holds the fixture people)
/// and from the workbook, and checks the two directories are the same, attribute for
/// attribute: an integer key, a date, a boolean and NULL phones read as the workbook's cells.
fn assert_same_directory_as_from_the_workbook(source: &mut dyn Source) {
    let job = staff_job("SELECT * FROM staff ORDER BY EmployeeID");
    let plan = support::compile(&job, &Default::default());
    let from_table = LdifDirectory::in_memory();
    let report = datasync::run(&plan, source, &from_table, &NoHooks, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    assert_eq!(report.counts.added, people().len(), "{report:?}");

    let book = TempWorkbook::new(&people());
    let from_book = LdifDirectory::in_memory();
    let book_plan = support::compile(&staff_job("SELECT * FROM [TTSheet1$]"), &Default::default());
    let report = support::run_job(&book_plan, &book.path(), &from_book, 0);
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    assert_eq!(
        support::comparable(everything(&from_table), not_a_password),
        support::comparable(everything(&from_book), not_a_password)
    );
}

#[test]
fn a_postgres_table_feeds_the_main_job_as_the_workbook_does() {
    let server = Postgres::start();
    staff_table(&server, &people());
    let mut source = PostgresSource::connect(config(&server)).unwrap_or_else(|e| panic!("{e}"));
    assert_same_directory_as_from_the_workbook(&mut source);
}

#[test]
fn columns_keep_their_types_and_an_array_is_a_cell_error() {
    let server = Postgres::start();
    server.execute(
        "CREATE TYPE mood AS ENUM ('calm', 'busy');
         CREATE TABLE typed (id bigint, salary numeric(12, 3), ratio double precision,
           active boolean, born date, seen timestamptz, local timestamp, tag uuid, doc jsonb,
           m mood, note text, photo bytea, tags text[]);
         INSERT INTO typed VALUES (9007199254740993, -12345.678, 0.25, false, '1999-12-31',
           '2026-12-03 09:30:00.5+01', '2026-12-03 08:30:00', '00010203-0405-0607-0809-0a0b0c0d0e0f',
           '{\"a\": 1}', 'busy', NULL, '\\xffd8ff', '{x,y}');",
    );
    let mut source = PostgresSource::connect(config(&server)).unwrap();
    let rows = source.query("SELECT * FROM typed").unwrap();
    let row = &rows.rows[0];
    let value = |name: &str| row.values[rows.columns.index(name).unwrap()].as_deref();
    assert_eq!(value("id"), Some("9007199254740993"), "a bigint, exactly");
    assert_eq!(
        value("salary"),
        Some("-12345.678"),
        "a numeric, digit for digit"
    );
    assert_eq!(value("ratio"), Some("0.25"));
    assert_eq!(value("active"), Some("FALSE"));
    assert_eq!(value("born"), Some("1999-12-31"));
    assert_eq!(value("seen"), Some("2026-12-03T08:30:00.500Z"), "in UTC");
    assert_eq!(value("local"), Some("2026-12-03T08:30:00"));
    assert_eq!(value("tag"), Some("00010203-0405-0607-0809-0a0b0c0d0e0f"));
    assert_eq!(value("doc"), Some("{\"a\": 1}"));
    assert_eq!(value("m"), Some("busy"));
    assert_eq!(value("note"), None, "NULL is no value");
    // Bytes as base64, as a binary attribute carries them.
    assert_eq!(value("photo"), Some("/9j/"));
    // An array has no text here: a cell error, which fails a row only when its field map
    // reads the column.
    let tags = rows.columns.index("tags").unwrap();
    let errors: Vec<usize> = row.cell_errors.iter().map(|(c, _)| *c).collect();
    assert_eq!(errors, [tags], "{:?}", row.cell_errors);
    assert!(
        row.cell_errors[0].1.contains("cast it in the query"),
        "{:?}",
        row.cell_errors
    );
}

/// Keeps the columns and counts rows, asking to stop after `stop_after`.
struct Counting {
    columns: Option<Columns>,
    rows: u64,
    stop_after: u64,
}

impl RowSink for Counting {
    fn columns(&mut self, columns: &Columns) -> ControlFlow<()> {
        self.columns = Some(columns.clone());
        ControlFlow::Continue(())
    }

    fn row(&mut self, _: SourceRow) -> ControlFlow<()> {
        self.rows += 1;
        if self.rows >= self.stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// Reads the first 2,500 rows of `query` (which names two columns, `n` and `h`, and has far
/// more rows than a run could hold) and stops: read whole, this would take minutes and
/// gigabytes; streamed, the sink has its rows after the first fetch and the rest are never
/// made. The connection then answers the next query.
fn assert_streams(source: &mut dyn Source, query: &str) {
    let mut sink = Counting {
        columns: None,
        rows: 0,
        stop_after: 2_500,
    };
    source.query_into(query, &mut sink).unwrap();
    assert_eq!(sink.rows, 2_500);
    assert_eq!(sink.columns.unwrap().names(), ["n", "h"]);
    assert_eq!(source.query("SELECT 1 AS one").unwrap().rows.len(), 1);
}

#[test]
fn rows_stream_from_the_server_without_the_whole_answer_being_held() {
    let server = Postgres::start();
    let mut source = PostgresSource::connect(config(&server)).unwrap();
    assert_streams(
        &mut source,
        "SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 200000000) AS g",
    );
}

/// A delta run's three steps on a `staff` table: the first run reads every row and takes the
/// highest stamp (`first_mark`); after `change` (employee 1003's title, stamped half a second
/// later) the server sends that row alone, whose stamp (`second_mark`) is the next watermark;
/// with nothing changed since, nothing is sent.
fn assert_delta_steps(
    open: &dyn Fn() -> Box<dyn Source>,
    execute: &dyn Fn(&str),
    change: &str,
    (first_mark, second_mark): (&str, &str),
) {
    let mut job = staff_job("SELECT * FROM staff");
    job["syncQuery"][0]["timeStampField"] = "Changed".into();
    job["syncQuery"][0]["updateAll"] = false.into();
    let plan = support::compile(&job, &Default::default());
    let dir = LdifDirectory::in_memory();
    let run = |watermark: Option<&str>| {
        let mut options = RunOptions::default();
        if let Some(mark) = watermark {
            options.watermarks.insert(1, mark.into());
        }
        let report = datasync::run(&plan, open().as_mut(), &dir, &NoHooks, &options)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
        report
    };
    let first = run(None);
    assert_eq!(first.counts.read, people().len());
    assert_eq!(first.watermarks.values().collect::<Vec<_>>(), [first_mark]);

    execute(change);
    let second = run(Some(first_mark));
    assert_eq!(second.counts.read, 1, "{second:?}");
    assert_eq!(second.counts.updated, 1, "{second:?}");
    let found = dir
        .search(
            "DC=groupid,DC=lab",
            Scope::Subtree,
            &Filter::parse("(employeeID=1003)").unwrap(),
            &[],
        )
        .unwrap();
    assert_eq!(found[0].first("title"), Some("Chief Scientist"));
    assert_eq!(
        second.watermarks.values().collect::<Vec<_>>(),
        [second_mark]
    );

    let third = run(Some(second_mark));
    assert_eq!(third.counts.read, 0, "{third:?}");
}

#[test]
fn a_delta_run_asks_the_server_for_the_changed_rows_only() {
    let server = Postgres::start();
    staff_table(&server, &people());
    // The new stamp's text sorts before the watermark's; its time is after.
    assert_delta_steps(
        &|| Box::new(PostgresSource::connect(config(&server)).unwrap()),
        &|sql| server.execute(sql),
        "UPDATE staff SET Title = 'Chief Scientist', Changed = '2026-01-01T00:00:00.5Z'
         WHERE EmployeeID = 1003",
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.500Z"),
    );
}

#[test]
fn a_wrong_password_a_dead_server_and_a_bad_query_are_typed_errors() {
    let server = Postgres::start();
    let wrong = DatabaseConfig::new(server.url("postgres")).with_password("not-it");
    let err = PostgresSource::connect(wrong).unwrap_err();
    assert!(matches!(err, SourceError::Database { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("not-it"), "{text}");

    let dead = DatabaseConfig::new("postgres://datasync@127.0.0.1:1/postgres");
    let err = PostgresSource::connect(dead).unwrap_err();
    assert!(matches!(err, SourceError::Database { .. }), "{err:?}");

    let err = PostgresSource::connect(DatabaseConfig::new(format!(
        "postgres://datasync:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    )))
    .unwrap_err();
    assert!(!err.to_string().contains(PASSWORD), "{err}");

    let mut source = PostgresSource::connect(config(&server)).unwrap();
    for (query, says) in [
        ("SELEC * FROM staff", "syntax error"),
        ("SELECT * FROM nowhere", "\"nowhere\" does not exist"),
        ("SELECT 1 / 0 AS x", "division by zero"),
        // The source is read only: a query cannot change the HR database.
        (
            "WITH gone AS (DELETE FROM pg_class RETURNING 1) SELECT * FROM gone",
            "read-only transaction",
        ),
        ("SELECT 1 AS a, 2 AS A", "twice"),
    ] {
        let err = source.query(query).unwrap_err();
        assert!(err.to_string().contains(says), "{query}: {err}");
    }
    // After a failed query, the connection still answers.
    assert_eq!(source.query("SELECT 1 AS one").unwrap().rows.len(), 1);
}

#[test]
fn tls_checks_the_servers_certificate_against_the_ca_file() {
    let server = Postgres::start();
    let url = format!("{}?sslmode=verify-full", server.url("postgres"));
    let trusted = DatabaseConfig::new(&url)
        .with_password(PASSWORD)
        .with_tls_verify(TlsVerify::CaFile(server.ca_file()));
    let mut source = PostgresSource::connect(trusted).unwrap_or_else(|e| panic!("{e}"));
    let rows = source
        .query("SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .unwrap();
    assert_eq!(rows.rows[0].values[0].as_deref(), Some("true"));

    // Another CA's file: refused, naming the certificate problem.
    let other = tempfile::tempdir().unwrap();
    support::slapd::write_certificates(other.path(), support::slapd::ServerCertificate::CaSigned);
    let untrusted = DatabaseConfig::new(&url)
        .with_password(PASSWORD)
        .with_tls_verify(TlsVerify::CaFile(other.path().join("ca.pem")));
    let err = PostgresSource::connect(untrusted).unwrap_err();
    assert!(err.to_string().contains("--ca-file"), "{err}");
}

#[test]
fn the_command_line_reads_postgres_with_the_password_from_the_environment() {
    let server = Postgres::start();
    staff_table(&server, &people());
    let dir = tempfile::tempdir().unwrap();
    let job_path = dir.path().join("job.json");
    std::fs::write(
        &job_path,
        staff_job("SELECT * FROM staff ORDER BY EmployeeID").to_string(),
    )
    .unwrap();
    let run = |password: &str, url: &str| {
        Command::new(support::datasync_binary())
            .args([
                "run",
                "job.json",
                "--source",
                url,
                "--report",
                "report.json",
            ])
            .env("DATASYNC_SOURCE_PASSWORD", password)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let url = server.url("postgres");
    let wrong = run("not-it", &url);
    let said = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert_eq!(wrong.status.code(), Some(2), "{said}");
    assert!(said.contains("password authentication failed"), "{said}");
    assert!(!said.contains("not-it"), "{said}");
    assert_eq!(
        entries_in(dir.path()),
        0,
        "a run that could not log on wrote"
    );

    let bad_query = {
        let mut job = staff_job("SELECT * FROM staf");
        job["jobInfo"]["name"] = "HR import".into();
        std::fs::write(dir.path().join("bad.json"), job.to_string()).unwrap();
        Command::new(support::datasync_binary())
            .args(["run", "bad.json", "--source", &url])
            .env("DATASYNC_SOURCE_PASSWORD", PASSWORD)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let said = String::from_utf8_lossy(&bad_query.stderr).to_string();
    assert_eq!(bad_query.status.code(), Some(2), "{said}");
    assert!(
        said.contains("HR import") && said.contains("\"staf\" does not exist"),
        "{said}"
    );
    assert_eq!(entries_in(dir.path()), 0, "a run whose query failed wrote");

    let good = run(PASSWORD, &url);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["counts"]["added"].as_u64(),
        Some(people().len() as u64),
        "{report}"
    );
    let store = datasync::Store::open(dir.path().join("directory.db")).unwrap();
    let ann = store
        .search(
            "DC=groupid,DC=lab",
            Scope::Subtree,
            &Filter::parse("(employeeID=1001)").unwrap(),
            &[],
        )
        .unwrap();
    assert_eq!(ann[0].first("givenName"), Some("Ann"));
}

/// How many entries the default store in `dir` holds (none when there is no store).
fn entries_in(dir: &std::path::Path) -> usize {
    let path = dir.join("directory.db");
    if !path.exists() {
        return 0;
    }
    let mut ldif = Vec::new();
    datasync::Store::open_to_read(&path)
        .unwrap()
        .export_ldif(&mut ldif)
        .unwrap();
    String::from_utf8(ldif)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("dn: "))
        .count()
}

#[test]
fn a_database_url_opens_through_source_open_database() {
    let server = Postgres::start();
    let mut source = source::open_database(config(&server)).unwrap();
    let rows = source.query("SELECT 'x' AS a").unwrap();
    assert_eq!(rows.rows[0].values[0].as_deref(), Some("x"));
    let Err(err) = source::open_database(DatabaseConfig::new("oracle://db/x")) else {
        panic!("an oracle:// URL opened");
    };
    assert!(err.to_string().contains("oracle://db/x"), "{err}");
}

// MariaDB (the `mysql` driver; MySQL speaks the same protocol).

fn mariadb_config(server: &Mariadb) -> DatabaseConfig {
    DatabaseConfig::new(server.url()).with_password(support::mariadb::PASSWORD)
}

fn mariadb_staff(server: &Mariadb) {
    server.execute(&format!(
        "SET time_zone = '+00:00'; {}",
        staff_sql(&people(), MARIADB_CHANGED)
    ));
}

#[test]
fn a_mariadb_table_feeds_the_main_job_as_the_workbook_does() {
    let server = Mariadb::start();
    mariadb_staff(&server);
    let mut source =
        MysqlSource::connect(mariadb_config(&server)).unwrap_or_else(|e| panic!("{e}"));
    assert_same_directory_as_from_the_workbook(&mut source);
}

#[test]
fn mariadb_columns_keep_their_types_and_binary_columns_read_as_base64() {
    let server = Mariadb::start();
    server.execute(
        "SET time_zone = '+00:00';
         CREATE TABLE typed (id bigint, salary decimal(12, 3), ratio double, active boolean,
           born date, seen timestamp(3) NULL, local datetime, doc json, m enum('calm', 'busy'),
           note text, photo blob, code varbinary(8), flags bit(8));
         INSERT INTO typed VALUES (9007199254740993, -12345.678, 0.25, false, '1999-12-31',
           '2026-12-03 08:30:00.5', '2026-12-03 08:30:00', '{\"a\": 1}', 'busy', NULL,
           X'FFD8FF', X'00', b'101');",
    );
    let mut source = MysqlSource::connect(mariadb_config(&server)).unwrap();
    let rows = source.query("SELECT * FROM typed").unwrap();
    let row = &rows.rows[0];
    let value = |name: &str| row.values[rows.columns.index(name).unwrap()].as_deref();
    assert_eq!(value("id"), Some("9007199254740993"));
    assert_eq!(value("salary"), Some("-12345.678"));
    assert_eq!(value("ratio"), Some("0.25"));
    assert_eq!(value("active"), Some("FALSE"));
    assert_eq!(value("born"), Some("1999-12-31"));
    assert_eq!(value("seen"), Some("2026-12-03T08:30:00.500Z"), "in UTC");
    assert_eq!(value("local"), Some("2026-12-03T08:30:00"));
    assert_eq!(value("doc"), Some("{\"a\": 1}"));
    assert_eq!(value("m"), Some("busy"));
    assert_eq!(value("note"), None, "NULL is no value");
    // Bytes as base64, as a binary attribute carries them.
    assert_eq!(value("photo"), Some("/9j/"));
    assert_eq!(value("code"), Some("AA=="));
    assert_eq!(value("flags"), Some("BQ=="));
    assert!(row.cell_errors.is_empty(), "{:?}", row.cell_errors);
}

#[test]
fn mariadb_rows_stream_and_a_stop_ends_the_query_on_the_server() {
    let server = Mariadb::start();
    let mut source = MysqlSource::connect(mariadb_config(&server)).unwrap();
    assert_streams(
        &mut source,
        "SELECT seq AS n, md5(seq) AS h FROM seq_1_to_200000000",
    );
}

#[test]
fn a_mariadb_delta_run_asks_the_server_for_the_changed_rows_only() {
    let server = Mariadb::start();
    mariadb_staff(&server);
    assert_delta_steps(
        &|| Box::new(MysqlSource::connect(mariadb_config(&server)).unwrap()),
        &|sql| server.execute(&format!("SET time_zone = '+00:00'; {sql}")),
        "UPDATE staff SET Title = 'Chief Scientist', Changed = '2026-01-01 00:00:00.5'
         WHERE EmployeeID = 1003",
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.500Z"),
    );
}

#[test]
fn mariadb_log_on_and_query_failures_are_typed_errors() {
    let server = Mariadb::start();
    mariadb_staff(&server);
    let wrong = DatabaseConfig::new(server.url()).with_password("not-it");
    let err = MysqlSource::connect(wrong).unwrap_err();
    assert!(matches!(err, SourceError::Database { .. }), "{err:?}");
    assert!(err.to_string().contains("Access denied"), "{err}");
    assert!(!err.to_string().contains("not-it"), "{err}");
    let dead = DatabaseConfig::new("mysql://datasync@127.0.0.1:1/hr");
    assert!(matches!(
        MysqlSource::connect(dead).unwrap_err(),
        SourceError::Database { .. }
    ));

    let mut source = MysqlSource::connect(mariadb_config(&server)).unwrap();
    for (query, says) in [
        ("SELEC * FROM staff", "syntax"),
        ("SELECT * FROM nowhere", "doesn't exist"),
        (
            "INSERT INTO staff (EmployeeID) VALUES (1) RETURNING EmployeeID",
            "READ ONLY",
        ),
        ("SELECT 1 AS a, 2 AS A", "twice"),
    ] {
        let err = source.query(query).unwrap_err();
        assert!(err.to_string().contains(says), "{query}: {err}");
    }
    assert_eq!(
        source
            .query("SELECT COUNT(*) AS n FROM staff")
            .unwrap()
            .rows[0]
            .values[0]
            .as_deref(),
        Some("8"),
        "the refused insert left the table as it was"
    );
}

#[test]
fn mariadb_tls_checks_the_servers_certificate_against_the_ca_file() {
    let server = Mariadb::start();
    let url = format!("{}?ssl-mode=VERIFY_IDENTITY", server.url());
    let trusted = mariadb_config(&server).with_tls_verify(TlsVerify::CaFile(server.ca_file()));
    let trusted = DatabaseConfig {
        url: url.clone(),
        ..trusted
    };
    let mut source = MysqlSource::connect(trusted).unwrap_or_else(|e| panic!("{e}"));
    let rows = source
        .query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .unwrap();
    assert!(
        rows.rows[0].values[1]
            .as_deref()
            .is_some_and(|c| !c.is_empty()),
        "{rows:?}"
    );

    let other = tempfile::tempdir().unwrap();
    support::slapd::write_certificates(other.path(), support::slapd::ServerCertificate::CaSigned);
    let untrusted = DatabaseConfig::new(url)
        .with_password(support::mariadb::PASSWORD)
        .with_tls_verify(TlsVerify::CaFile(other.path().join("ca.pem")));
    let err = MysqlSource::connect(untrusted).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[test]
fn the_command_line_reads_mariadb() {
    let server = Mariadb::start();
    mariadb_staff(&server);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.json"),
        staff_job("SELECT * FROM staff ORDER BY EmployeeID").to_string(),
    )
    .unwrap();
    let out = Command::new(support::datasync_binary())
        .args(["run", "job.json", "--source", &server.url()])
        .env("DATASYNC_SOURCE_PASSWORD", support::mariadb::PASSWORD)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries_in(dir.path()), people().len(), "the people");
}

/// ODBC (the `odbc` feature), through Debian's unixODBC with the PostgreSQL and MariaDB
/// drivers, on the same servers.
#[cfg(feature = "odbc")]
mod odbc {
    use super::*;
    use datasync::source::OdbcSource;

    fn postgres_odbc(server: &Postgres) -> DatabaseConfig {
        DatabaseConfig::new(format!(
            "odbc:Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database=postgres;\
             UID={};UseDeclareFetch=1;Fetch=1000;BoolsAsChar=0",
            server.port,
            support::postgres::USER
        ))
        .with_password(PASSWORD)
    }

    fn mariadb_odbc(server: &Mariadb) -> DatabaseConfig {
        DatabaseConfig::new(format!(
            "odbc:Driver={{MariaDB Unicode}};Server=127.0.0.1;Port={};Database=hr;UID={}",
            server.port,
            support::mariadb::USER
        ))
        .with_password(support::mariadb::PASSWORD)
    }

    #[test]
    fn postgres_through_odbc_feeds_the_main_job_as_the_workbook_does() {
        let server = Postgres::start();
        staff_table(&server, &people());
        let mut source =
            OdbcSource::connect(postgres_odbc(&server)).unwrap_or_else(|e| panic!("{e}"));
        assert_same_directory_as_from_the_workbook(&mut source);
        // With the driver's declare/fetch, rows stream.
        assert_streams(
            &mut source,
            "SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 200000000) AS g",
        );
        let rows = source
            .query(
                "SELECT true AS yes, TIMESTAMP '2026-12-03 08:30:00.5' AS at, \
                 '\\xff'::bytea AS photo, NULL::text AS nothing",
            )
            .unwrap();
        let row = &rows.rows[0];
        assert_eq!(row.values[0].as_deref(), Some("TRUE"));
        assert_eq!(row.values[1].as_deref(), Some("2026-12-03T08:30:00.5"));
        assert_eq!(row.values[2].as_deref(), Some("/w=="));
        assert_eq!(row.values[3], None);
        assert!(row.cell_errors.is_empty(), "{:?}", row.cell_errors);
    }

    #[test]
    fn mariadb_through_odbc_feeds_the_main_job_as_the_workbook_does() {
        let server = Mariadb::start();
        mariadb_staff(&server);
        let mut source =
            OdbcSource::connect(mariadb_odbc(&server)).unwrap_or_else(|e| panic!("{e}"));
        assert_same_directory_as_from_the_workbook(&mut source);
    }

    #[test]
    fn odbc_log_on_and_query_failures_are_typed_errors() {
        let server = Postgres::start();
        let wrong = postgres_odbc(&server).with_password("not-it");
        let err = OdbcSource::connect(wrong).unwrap_err();
        assert!(matches!(err, SourceError::Database { .. }), "{err:?}");
        assert!(
            err.to_string().contains("password authentication failed"),
            "{err}"
        );
        assert!(!err.to_string().contains("not-it"), "{err}");

        let with_password = DatabaseConfig::new(format!(
            "odbc:Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};UID=datasync;pwd={PASSWORD}",
            server.port
        ));
        let err = OdbcSource::connect(with_password).unwrap_err();
        assert!(err.to_string().contains("holds a password"), "{err}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");

        let missing = DatabaseConfig::new("odbc:Driver={No Such Driver};Server=x");
        let err = OdbcSource::connect(missing).unwrap_err();
        assert!(err.to_string().contains("No Such Driver"), "{err}");

        let mut source = OdbcSource::connect(postgres_odbc(&server)).unwrap();
        let err = source.query("SELECT * FROM nowhere").unwrap_err();
        assert!(matches!(err, SourceError::Query { .. }), "{err:?}");
        assert!(
            err.to_string().contains("\"nowhere\" does not exist"),
            "{err}"
        );
        assert_eq!(source.query("SELECT 1 AS one").unwrap().rows.len(), 1);
    }

    #[test]
    fn a_directory_goes_to_a_postgres_table_through_odbc_writing_only_changed_rows() {
        let server = Postgres::start();
        server.execute(&format!("{EXPORT_TABLE});"));
        assert_exports_to_a_database_table(
            &|spec| {
                TableDestination::database(postgres_odbc(&server), "staff_export", spec.clone())
                    .unwrap_or_else(|e| panic!("{e}"))
            },
            &|| Box::new(OdbcSource::connect(postgres_odbc(&server)).unwrap()),
            &|| pg_row_versions(&server),
            &|| pg_column(&server, "SELECT notes FROM staff_export"),
        );
    }

    #[test]
    fn the_command_line_reads_odbc() {
        let server = Postgres::start();
        staff_table(&server, &people());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("job.json"),
            staff_job("SELECT * FROM staff ORDER BY EmployeeID").to_string(),
        )
        .unwrap();
        let out = Command::new(support::datasync_binary())
            .args(["run", "job.json", "--source", &postgres_odbc(&server).url])
            .env("DATASYNC_SOURCE_PASSWORD", PASSWORD)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(entries_in(dir.path()), people().len());
    }
}

// Database tables as destinations.

/// Exports the main job's users to a database table and back, through `destination` (the
/// table, opened afresh each run) and `source` (the same server as a source), checking what
/// a table's owner relies on: the round trip gives the same users; an unchanged run writes
/// no row (`versions`, each row's version by employee id, all stay); a changed title and a
/// leaver touch those two rows only; the table's own `notes` column keeps its values.
fn assert_exports_to_a_database_table(
    destination: &dyn Fn(&TableSpec) -> TableDestination,
    source: &dyn Fn() -> Box<dyn Source>,
    versions: &dyn Fn() -> std::collections::BTreeMap<String, String>,
    notes: &dyn Fn() -> Vec<Option<String>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store_path = support::filled_store(dir.path());
    let plan = support::compile(
        &support::table_export_job("staff_export"),
        &Default::default(),
    );
    let spec = plan.table_spec();
    let export = || {
        let table = destination(&spec);
        let mut from = DirectorySource::open(&format!("db:{}", store_path.display())).unwrap();
        let report = datasync::run(&plan, &mut from, &table, &NoHooks, &RunOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
        report
    };
    assert_eq!(export().counts.added, people().len());

    // Back into a directory: the same users.
    let import = support::compile(
        &support::table_import_job("SELECT * FROM staff_export"),
        &Default::default(),
    );
    let copy = LdifDirectory::in_memory();
    let report = datasync::run(
        &import,
        source().as_mut(),
        &copy,
        &NoHooks,
        &RunOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.counts.added, people().len(), "{report:?}");
    let exported = |name: &str| {
        support::EXPORT_COLUMNS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    };
    let users = |dir: &dyn Destination| {
        let found = dir
            .search(
                "DC=groupid,DC=lab",
                Scope::Subtree,
                &Filter::parse("(objectClass=user)").unwrap(),
                &[],
            )
            .unwrap();
        support::comparable(found, exported)
    };
    let original = datasync::Store::open_to_read(&store_path).unwrap();
    assert_eq!(users(&copy), users(&original));
    drop(original);

    // Unchanged: no row written.
    let before = versions();
    assert_eq!(before.len(), people().len());
    let again = export();
    assert_eq!(
        again.counts.added + again.counts.updated + again.counts.deleted,
        0,
        "{again:?}"
    );
    assert_eq!(versions(), before, "an unchanged run wrote rows");

    // A new title for 1003, and 1008 leaves: those two rows only.
    support::retitle_1003_and_remove_1008(&store_path);
    let changed = export();
    assert_eq!(
        (changed.counts.updated, changed.counts.deleted),
        (1, 1),
        "{changed:?}"
    );
    let after = versions();
    assert!(!after.contains_key("1008"));
    for (id, version) in &after {
        assert_eq!(
            version == &before[id],
            id != "1003",
            "row {id}: only 1003's row is written"
        );
    }
    assert!(
        notes().iter().all(|n| n.as_deref() == Some("kept")),
        "{:?}",
        notes()
    );
}

const EXPORT_TABLE: &str = "CREATE TABLE staff_export (employeeID integer PRIMARY KEY, cn text,
    givenName text, sn text, mail text, department text, title text, telephoneNumber text,
    manager text, description text, sAMAccountName text, notes text DEFAULT 'kept'";

#[test]
fn a_directory_goes_to_a_postgres_table_and_back_writing_only_changed_rows() {
    let server = Postgres::start();
    server.execute(&format!("{EXPORT_TABLE});"));
    assert_exports_to_a_database_table(
        &|spec| TableDestination::database(config(&server), "staff_export", spec.clone()).unwrap(),
        &|| Box::new(PostgresSource::connect(config(&server)).unwrap()),
        &|| pg_row_versions(&server),
        &|| pg_column(&server, "SELECT notes FROM staff_export"),
    );
}

/// The first column of `sql`'s rows on `server`.
fn pg_column(server: &Postgres, sql: &str) -> Vec<Option<String>> {
    let mut source = PostgresSource::connect(config(server)).unwrap();
    let rows = source.query(sql).unwrap();
    rows.rows.into_iter().map(|r| r.values[0].clone()).collect()
}

/// Each `staff_export` row's version, by employee id: its `xmin`, which a write of the row
/// changes (the transaction that wrote it), even to the same values.
fn pg_row_versions(server: &Postgres) -> std::collections::BTreeMap<String, String> {
    let rows = pg_column(
        server,
        "SELECT employeeid::text || ' ' || xmin::text FROM staff_export",
    );
    rows.into_iter()
        .flatten()
        .filter_map(|r| {
            r.split_once(' ')
                .map(|(i, x)| (i.to_string(), x.to_string()))
        })
        .collect()
}

#[test]
fn a_directory_goes_to_a_mariadb_table_and_back_writing_only_changed_rows() {
    let server = Mariadb::start();
    // `touched` changes whenever the server writes the row.
    server.execute(&format!(
        "{EXPORT_TABLE}, touched TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) \
         ON UPDATE CURRENT_TIMESTAMP(6));"
    ));
    let column = |sql: &str| -> Vec<Option<String>> {
        let mut source = MysqlSource::connect(mariadb_config(&server)).unwrap();
        let rows = source.query(sql).unwrap();
        rows.rows.into_iter().map(|r| r.values[0].clone()).collect()
    };
    assert_exports_to_a_database_table(
        &|spec| {
            TableDestination::database(mariadb_config(&server), "staff_export", spec.clone())
                .unwrap()
        },
        &|| Box::new(MysqlSource::connect(mariadb_config(&server)).unwrap()),
        &|| {
            let ids = column("SELECT employeeID FROM staff_export ORDER BY 1");
            let touched = column("SELECT touched FROM staff_export ORDER BY employeeID");
            ids.into_iter()
                .zip(touched)
                .map(|(i, t)| (i.unwrap(), t.unwrap()))
                .collect()
        },
        &|| column("SELECT notes FROM staff_export"),
    );
}

#[test]
fn a_database_table_without_a_mapped_column_is_refused_before_anything_is_written() {
    let server = Postgres::start();
    server.execute("CREATE TABLE narrow (employeeID integer PRIMARY KEY, cn text);");
    let plan = support::compile(&support::table_export_job("narrow"), &Default::default());
    let err = TableDestination::database(config(&server), "narrow", plan.table_spec()).unwrap_err();
    assert!(err.to_string().contains("has no column givenName"), "{err}");
    let err = TableDestination::database(
        config(&server),
        "narrow; DROP TABLE narrow",
        plan.table_spec(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("names a table"), "{err}");
    let mut source = PostgresSource::connect(config(&server)).unwrap();
    assert!(source.query("SELECT * FROM narrow").is_ok());
}

#[test]
fn the_command_line_exports_a_store_to_a_postgres_table() {
    let server = Postgres::start();
    server.execute(&format!("{EXPORT_TABLE});"));
    let dir = tempfile::tempdir().unwrap();
    support::filled_store(dir.path());
    let mut job = support::table_export_job("staff_export");
    // The command line puts a job in table mode when its destination is a table.
    support::set_setting(&mut job, "Destination.IsTableProvider", "False");
    std::fs::write(dir.path().join("export.json"), job.to_string()).unwrap();
    let run = |password: &str| {
        Command::new(support::datasync_binary())
            .args([
                "run",
                "export.json",
                "--source",
                "db:directory.db",
                "--destination",
                &server.url("postgres"),
            ])
            .env("DATASYNC_DESTINATION_PASSWORD", password)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let wrong = run("not-it");
    let said = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert_eq!(wrong.status.code(), Some(2), "{said}");
    assert!(
        said.contains("password authentication failed") && !said.contains("not-it"),
        "{said}"
    );
    let out = run(PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut source = PostgresSource::connect(config(&server)).unwrap();
    let rows = source
        .query("SELECT cn FROM staff_export WHERE employeeid = 1002")
        .unwrap();
    assert_eq!(rows.rows[0].values[0].as_deref(), Some("Bob Stone"));
}

/// Photos in an HR table (`bytea`) go to `jpegPhoto` as bytes: raw over LDAP (slapd), base64
/// in LDIF; an unchanged photo is not written again, a changed one is.
#[test]
fn photos_from_a_postgres_table_reach_ldap_as_bytes_and_ldif_as_base64() {
    let server = Postgres::start();
    staff_table(&server, &people());
    let photo = [0xffu8, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46];
    server.execute(
        "ALTER TABLE staff ADD COLUMN Photo bytea;
         UPDATE staff SET Photo = '\\xffd8ffe000104a46' WHERE EmployeeID = 1001;",
    );
    let mut job = staff_job("SELECT * FROM staff ORDER BY EmployeeID");
    let fields = job["fieldsMap"].as_array_mut().unwrap();
    // slapd's mail is IA5 (ASCII) and the fixture people have accents; passwords are for
    // another test.
    fields.retain(|f| f["destinationField"] != "password" && f["destinationField"] != "mail");
    fields.push(support::copy_field("Photo", "jpegPhoto", false));
    // Under the test server's suffix.
    let job: serde_json::Value = serde_json::from_str(
        &job.to_string()
            .replace("DC=groupid,DC=lab", "OU=groupid,DC=lab"),
    )
    .unwrap();
    let plan = support::compile(&job, &Default::default());

    let slapd = support::slapd::Slapd::start();
    let ldap = datasync::destination::LdapDirectory::connect(
        slapd.config(&slapd.url()),
        datasync::destination::ServerKind::Ldap,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = |dir: &dyn Destination| {
        let mut source = PostgresSource::connect(config(&server)).unwrap();
        let report = datasync::run(&plan, &mut source, dir, &NoHooks, &RunOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
        report
    };
    assert_eq!(run(&ldap).counts.added, people().len());
    let ann = "CN=Ann Lee,OU=API,OU=groupid,DC=lab";
    assert_eq!(slapd.raw_values(ann, "jpegPhoto"), vec![photo.to_vec()]);
    assert_eq!(
        run(&ldap).counts.updated,
        0,
        "an unchanged photo was written again"
    );

    server.execute("UPDATE staff SET Photo = '\\x0102' WHERE EmployeeID = 1001;");
    assert_eq!(run(&ldap).counts.updated, 1);
    assert_eq!(slapd.raw_values(ann, "jpegPhoto"), vec![vec![1u8, 2]]);

    // The embedded directory keeps the bytes as base64 and writes them to LDIF as bytes.
    let embedded = LdifDirectory::in_memory();
    run(&embedded);
    let entries = embedded
        .search(
            "DC=lab",
            Scope::Subtree,
            &Filter::parse("(objectClass=*)").unwrap(),
            &[],
        )
        .unwrap();
    let ldif = datasync::destination::ldif::write(&entries);
    assert!(ldif.contains("jpegPhoto:: AQI="), "{ldif}");
    assert_eq!(datasync::destination::ldif::parse(&ldif).unwrap(), entries);
}
