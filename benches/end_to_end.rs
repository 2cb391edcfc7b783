//! What a user runs, measured as a user would: the `datasync` command line, end to end, on
//! disk, into the default store, with the peak memory of each process, against a bare read of
//! the same input measured in the same run.
//!
//! ```text
//! cargo bench --bench end_to_end                          # CSV at 10k, 100k, 1M rows; xlsx at 100k
//! CSV_ROWS=100000 XLSX_ROWS=0 cargo bench --bench end_to_end
//! ```
//! For each CSV size: Python's `csv` module reading the file, the job's first run into a new
//! store, and its unchanged re-run (which must leave every byte of the store as it was). For
//! the workbook: calamine reading it (this binary, in a process of its own), then the job's
//! first run. Every figure is a separate process: its wall time and its peak resident memory
//! (`wait4`'s `ru_maxrss`). Ratios are against the read of the same file in the same run.
//! Beside each CSV size's figures, SQLite alone (`--store-alone`, a process of its own) writes
//! the records of the first run into a new store in its kindest order and reads them all
//! back: the floor the store puts under a run, in the same units.
//! Targets (issue 15): 1M-row CSV first run <= 2.0x and re-run <= 1.5x the Python read,
//! peak RSS <= 1 GiB; the xlsx run <= 1.5x the calamine read; time and memory per row flat
//! from 10k to 1M.
//!
//! Group membership (issue 18): `GROUPS=50x2000` (the default) makes a workbook of 50 groups
//! with 2,000 members each (100,000 users, each in one group, named by `employeeID` in the
//! group's `;`-separated `Members`), and measures the membership job's first run (users
//! created, groups created and filled in batches) and its unchanged re-run, against
//! calamine reading the same workbook.
//!
//! Databases and tables (issue 17): `PG_ROWS=100000` (the default) loads that many generated
//! people into a PostgreSQL server the bench starts (as the tests do), and measures `psql`'s
//! `COPY (SELECT * FROM staff) TO STDOUT` of the job's query against the job's first run
//! from it into a new store and its unchanged re-run; then the store exported to a CSV table
//! (`--destination csv:`) and the unchanged export, against `datasync export` reading the
//! whole store as LDIF.
//!
//! Under `cargo test` (no `--bench` argument) it runs 2,000 rows once (and 3 groups of 50,
//! and 2,000 PostgreSQL rows), with the debug build, to check that it works.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

/// One process's wall time and peak resident memory.
#[derive(Clone, Copy)]
struct Measured {
    wall: Duration,
    peak_kb: u64,
}

impl Measured {
    fn secs(&self) -> f64 {
        self.wall.as_secs_f64()
    }
    fn mb(&self) -> f64 {
        self.peak_kb as f64 / 1024.0
    }
}

/// Runs `command` to its end; panics, with what it printed, when it fails.
fn measure(command: &mut Command) -> Measured {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    // Waited for below with wait4, which std does not offer, for the child's own rusage.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("the command starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; `pid` is our own child, waited for
    // once, here (the `Child` is not waited for again).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("{command:?} failed ({status}): {err}");
    }
    Measured {
        wall,
        // Linux reports kilobytes.
        peak_kb: usage.ru_maxrss as u64,
    }
}

fn setting(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect()
}

/// The command line, built for this measure: release when benching, debug under `cargo test`.
fn datasync_binary(benching: bool) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(root)
        .args(["build", "--bin", "datasync", "--features", "cli"]);
    if benching {
        build.arg("--release");
    }
    assert!(
        build.status().expect("cargo runs").success(),
        "build failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target
        .join(if benching { "release" } else { "debug" })
        .join("datasync")
}

/// The main job, users only, reading `file` (beside it).
fn write_job(dir: &Path, file: &str) -> PathBuf {
    let mut job = support::main_job();
    support::users_only(&mut job);
    job["objectsOption"][0]["isDelete"] = json!(false);
    support::set_setting(&mut job, "Source.File", file);
    let path = dir.join(format!("{file}.job.json"));
    std::fs::write(&path, job.to_string()).expect("job written");
    path
}

/// What SQLite alone takes for the store's share of a run, in a process of its own: writing
/// the records the first run wrote (loaded first, not timed) into a new store with the same
/// table and page cache, in one transaction, in key order (SQLite's kindest order), and
/// reading them all back. Prints the two times in seconds.
fn store_alone(source: &str, target: &str) {
    use rusqlite::Connection;
    let source = Connection::open(source).expect("store opens");
    let schema: String = source
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'entry'",
            [],
            |r| r.get(0),
        )
        .expect("the store's table");
    let mut records: Vec<(String, String, Vec<u8>)> = Vec::new();
    {
        let mut stmt = source
            .prepare("SELECT key, dn, attrs FROM entry ORDER BY key")
            .expect("read");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("read");
        records.extend(rows.map(|r| r.expect("a record")));
    }
    let _ = std::fs::remove_file(target);
    let conn = Connection::open(target).expect("new store");
    conn.pragma_update(None, "cache_size", -16384)
        .expect("pragma");
    conn.execute_batch(&schema).expect("table");
    let started = Instant::now();
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    {
        let mut insert = conn
            .prepare("INSERT INTO entry (key, dn, attrs) VALUES (?1, ?2, ?3)")
            .expect("insert");
        for (key, dn, attrs) in &records {
            insert
                .execute(rusqlite::params![key, dn, attrs])
                .expect("insert");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    let write = started.elapsed();
    drop(records);
    drop(conn);
    let conn = Connection::open(target).expect("store opens");
    conn.pragma_update(None, "cache_size", -16384)
        .expect("pragma");
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut stmt = conn
        .prepare("SELECT key, dn, attrs FROM entry ORDER BY key")
        .expect("read");
    let mut rows = stmt.query([]).expect("read");
    while let Some(row) = rows.next().expect("a record") {
        bytes += row
            .get_ref(2)
            .expect("attrs")
            .as_blob()
            .expect("blob")
            .len();
    }
    let read = started.elapsed();
    println!("{} {} {bytes}", write.as_secs_f64(), read.as_secs_f64());
    let _ = std::fs::remove_file(target);
}

/// Runs [`store_alone`] in a child and prints its times beside the bare read of the input.
fn print_store_alone(store: &Path, target: &Path, read: Option<Measured>) {
    let exe = std::env::current_exe().expect("this bench");
    let out = Command::new(exe)
        .arg("--store-alone")
        .arg(store)
        .arg(target)
        .output()
        .expect("the child starts");
    assert!(out.status.success(), "store alone failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<f64> = text
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let [write, scan, ..] = figures[..] else {
        panic!("store alone printed {text}");
    };
    let ratio = |secs: f64| {
        read.map_or("".into(), |r| {
            format!(" ({:.2}x the read)", secs / r.secs())
        })
    };
    println!(
        "{:>15} | SQLite alone: writing the first run's records {:.2} s{}, reading them all {:.2} s{}",
        "",
        write,
        ratio(write),
        scan,
        ratio(scan)
    );
}

/// A digest of a file's bytes, read in chunks.
fn digest(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).expect("store opens");
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).expect("store reads");
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finalize().to_vec()
}

/// The calamine read of a workbook, in this process: what `--read-xlsx PATH` runs.
fn read_workbook(path: &str) {
    use calamine::{Reader, open_workbook_auto};
    let mut wb = open_workbook_auto(path).expect("workbook opens");
    // Every sheet: the membership workbook holds people and groups.
    let mut rows = 0;
    for name in wb.sheet_names() {
        rows += wb.worksheet_range(&name).expect("sheet").height();
    }
    println!("{rows}");
}

const PYTHON_READ: &str = "import csv, sys\n\
with open(sys.argv[1], newline='') as f:\n    n = sum(1 for _ in csv.reader(f))\n\
print(n)";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--read-xlsx") {
        read_workbook(&args[i + 1]);
        return;
    }
    // Inputs are made in a process of their own: a child forked from a parent that had held
    // a million rows would start with the parent's resident pages counted in its peak.
    if let Some(i) = args.iter().position(|a| a == "--store-alone") {
        store_alone(&args[i + 1], &args[i + 2]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--write-groups") {
        let groups: usize = args[i + 1].parse().expect("a group count");
        let members: usize = args[i + 2].parse().expect("a member count");
        write_groups(groups, members, Path::new(&args[i + 3]));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--write-input") {
        let rows: usize = args[i + 1].parse().expect("a row count");
        let path = Path::new(&args[i + 2]);
        let people = support::generated_people(rows);
        if path.extension().is_some_and(|e| e == "csv") {
            std::fs::write(path, support::people_csv(&people)).expect("csv written");
        } else {
            support::write_workbook(path, &people, &[]);
        }
        return;
    }
    let benching = args.iter().any(|a| a == "--bench");
    let (csv_rows, xlsx_rows) = if benching {
        (
            setting("CSV_ROWS", "10000,100000,1000000"),
            setting("XLSX_ROWS", "100000"),
        )
    } else {
        (vec![2_000], vec![2_000])
    };
    let datasync = datasync_binary(benching);
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    // On disk (not a RAM disk such as /tmp may be), removed afterwards.
    let work = tempfile::Builder::new()
        .prefix("end-to-end-")
        .tempdir_in(&root)
        .expect("work dir");
    let dir = work.path();
    // The interpreter itself, not a launcher script (pyenv's shims are shell scripts).
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));

    println!(
        "{:>9} {:>5} | {:>16} | {:>26} | {:>26} | {:>9}",
        "rows", "input", "bare read", "first run", "unchanged re-run", "per row"
    );
    for &rows in &csv_rows {
        let csv = dir.join(format!("people-{rows}.csv"));
        write_input(rows, &csv);
        let job = write_job(dir, csv.file_name().and_then(|n| n.to_str()).unwrap_or(""));
        let store = dir.join(format!("store-{rows}.db"));
        let read = python
            .as_ref()
            .map(|python| measure(Command::new(python).arg("-c").arg(PYTHON_READ).arg(&csv)));
        let run = |store: &Path| {
            measure(
                Command::new(&datasync)
                    .arg("run")
                    .arg(&job)
                    .arg("--destination")
                    .arg(format!("db:{}", store.display())),
            )
        };
        let first = run(&store);
        let before = digest(&store);
        let again = run(&store);
        let unchanged = digest(&store) == before;
        print_line(rows, "csv", read, first, Some(again), unchanged);
        assert!(unchanged, "the unchanged re-run wrote to the store");
        if benching {
            print_store_alone(&store, &dir.join("alone.db"), read);
        }
        let _ = std::fs::remove_file(&store);
        let _ = std::fs::remove_file(&csv);
    }
    for &rows in &xlsx_rows {
        let xlsx = dir.join(format!("people-{rows}.xlsx"));
        write_input(rows, &xlsx);
        let job = write_job(dir, xlsx.file_name().and_then(|n| n.to_str()).unwrap_or(""));
        let store = dir.join(format!("store-xlsx-{rows}.db"));
        let exe = std::env::current_exe().expect("this bench");
        let read = measure(Command::new(exe).arg("--read-xlsx").arg(&xlsx));
        let first = measure(
            Command::new(&datasync)
                .arg("run")
                .arg(&job)
                .arg("--destination")
                .arg(format!("db:{}", store.display())),
        );
        print_line(rows, "xlsx", Some(read), first, None, true);
    }
    let groups = std::env::var("GROUPS")
        .unwrap_or_else(|_| if benching { "50x2000" } else { "3x50" }.to_string());
    if let Some((count, members)) = groups
        .split_once('x')
        .and_then(|(g, m)| Some((g.trim().parse().ok()?, m.trim().parse().ok()?)))
        .filter(|&(g, m): &(usize, usize)| g > 0 && m > 0)
    {
        bench_groups(dir, &datasync, count, members);
    }
    let pg_rows = if benching {
        setting("PG_ROWS", "100000")
    } else {
        vec![2_000]
    };
    for &rows in &pg_rows {
        bench_database(dir, &datasync, rows);
    }
    if python.is_none() {
        println!("(python3 not found: the CSV runs have no bare read to compare with)");
    }
}

/// `rows` generated people in a PostgreSQL table: `psql`'s COPY of the job's query, the
/// job's first run from the server into a new store and its unchanged re-run; then the store
/// exported to a CSV table, and again unchanged, against reading the store whole.
fn bench_database(dir: &Path, datasync: &Path, rows: usize) {
    let server = support::postgres::Postgres::start();
    let people = support::generated_people(rows);
    server.execute(
        "CREATE TABLE staff (EmployeeID integer PRIMARY KEY, First text, Last text,
           Department text, Title text, Email text, Manager integer, Phones text, Hired date,
           Active boolean)",
    );
    {
        use std::io::Write;
        let mut client = server.client().expect("connect");
        let mut writer = client
            .copy_in("COPY staff FROM STDIN WITH (FORMAT csv, HEADER true)")
            .expect("copy in");
        writer
            .write_all(support::people_csv(&people).as_bytes())
            .expect("copy");
        writer.finish().expect("copy finished");
    }
    drop(people);
    let query = "SELECT * FROM staff";
    let mut job = support::main_job();
    support::users_only(&mut job);
    job["objectsOption"][0]["isDelete"] = json!(false);
    job["syncQuery"][0]["query"] = json!(query);
    let job_path = dir.join("postgres.job.json");
    std::fs::write(&job_path, job.to_string()).expect("job written");
    let url = server.url("postgres");
    let read = measure(
        Command::new("psql")
            .arg(&url)
            .arg("-c")
            .arg(format!("COPY ({query}) TO STDOUT"))
            .env("PGPASSWORD", support::postgres::PASSWORD),
    );
    let store = dir.join("store-postgres.db");
    let run = || {
        measure(
            Command::new(datasync)
                .arg("run")
                .arg(&job_path)
                .arg("--source")
                .arg(&url)
                .arg("--destination")
                .arg(format!("db:{}", store.display()))
                .env("DATASYNC_SOURCE_PASSWORD", support::postgres::PASSWORD),
        )
    };
    let first = run();
    let before = digest(&store);
    let again = run();
    let unchanged = digest(&store) == before;
    println!();
    println!("PostgreSQL, {rows} rows, against psql COPY ... TO STDOUT of the same query:");
    print_line(rows, "pg", Some(read), first, Some(again), unchanged);
    assert!(unchanged, "the unchanged re-run wrote to the store");

    // The store exported to a CSV table, against reading the whole store.
    let mut export = support::main_job();
    support::users_only(&mut export);
    let columns = [
        "employeeID",
        "cn",
        "givenName",
        "sn",
        "mail",
        "department",
        "title",
    ];
    export["fieldsMap"] = columns
        .iter()
        .map(|c| support::copy_field(c, c, *c == "employeeID"))
        .collect();
    export["syncQuery"][0]["query"] = json!("(objectClass=user)");
    export["syncQuery"][0]["queryType"] = json!("LDAP");
    let export_path = dir.join("export.job.json");
    std::fs::write(&export_path, export.to_string()).expect("job written");
    let table = dir.join("staff.csv");
    let read = measure(
        Command::new(datasync)
            .arg("export")
            .arg(&store)
            .arg("--ldif")
            .arg("-"),
    );
    let export_run = || {
        measure(
            Command::new(datasync)
                .arg("run")
                .arg(&export_path)
                .arg("--source")
                .arg(format!("db:{}", store.display()))
                .arg("--destination")
                .arg(format!("csv:{}", table.display())),
        )
    };
    let first = export_run();
    let before = digest(&table);
    let again = export_run();
    let unchanged = digest(&table) == before;
    println!("The store exported to CSV, against `datasync export` reading the store as LDIF:");
    print_line(rows, "csv<-", Some(read), first, Some(again), unchanged);
    assert!(unchanged, "the unchanged export rewrote the table");
    let _ = std::fs::remove_file(&store);
    let _ = std::fs::remove_file(&table);
}

/// The membership job on `groups` groups of `members` members each: calamine's read of the
/// workbook, the first run into a new store, and the unchanged re-run (which must leave the
/// store's bytes as they were).
fn bench_groups(dir: &Path, datasync: &Path, groups: usize, members: usize) {
    let book = dir.join(format!("groups-{groups}x{members}.xlsx"));
    let exe = std::env::current_exe().expect("this bench");
    let status = Command::new(&exe)
        .arg("--write-groups")
        .arg(groups.to_string())
        .arg(members.to_string())
        .arg(&book)
        .status()
        .expect("the generator starts");
    assert!(status.success(), "the generator failed");
    let mut shape = support::MembershipShape::new("OU=Sync,DC=groupid,DC=lab");
    shape.member_key = "employeeID".into();
    shape.delete = false;
    let mut job = support::membership_job(&shape);
    support::set_setting(
        &mut job,
        "Source.File",
        book.file_name().and_then(|n| n.to_str()).unwrap_or(""),
    );
    let job_path = dir.join("groups.job.json");
    std::fs::write(&job_path, job.to_string()).expect("job written");
    let store = dir.join("store-groups.db");
    let read = measure(Command::new(&exe).arg("--read-xlsx").arg(&book));
    let run = || {
        measure(
            Command::new(datasync)
                .arg("run")
                .arg(&job_path)
                .arg("--destination")
                .arg(format!("db:{}", store.display())),
        )
    };
    let first = run();
    let before = digest(&store);
    let again = run();
    let unchanged = digest(&store) == before;
    println!();
    println!(
        "{groups} groups x {members} members ({} users) | calamine read {:.2} s {:.0} MB | first run {:.2} s {:.0} MB {:.2}x | unchanged re-run {:.2} s {:.0} MB {:.2}x{}",
        groups * members,
        read.secs(),
        read.mb(),
        first.secs(),
        first.mb(),
        first.secs() / read.secs(),
        again.secs(),
        again.mb(),
        again.secs() / read.secs(),
        if unchanged { "" } else { " CHANGED" }
    );
    assert!(unchanged, "the unchanged re-run wrote to the store");
}

/// The membership workbook: `groups * members` people (ids from 100000), each in one group,
/// and the groups naming their members by `employeeID`.
fn write_groups(groups: usize, members: usize, path: &Path) {
    let people: Vec<support::Member> = (0..groups * members)
        .map(|i| {
            support::Member::new(
                100_000 + i as u32,
                &format!("First{i}"),
                &format!("Last{i}"),
                "",
            )
        })
        .collect();
    let lists: Vec<(String, String)> = (0..groups)
        .map(|g| {
            let ids: Vec<String> = people[g * members..(g + 1) * members]
                .iter()
                .map(|p| p.id.to_string())
                .collect();
            (format!("Group {g:03}"), ids.join(";"))
        })
        .collect();
    let teams: Vec<(&str, &str, &str)> = lists
        .iter()
        .map(|(name, ids)| (name.as_str(), ids.as_str(), ""))
        .collect();
    support::write_membership_workbook(path, &people, &teams);
}

/// Writes `rows` generated people to `path` (CSV or xlsx by its extension), in a child.
fn write_input(rows: usize, path: &Path) {
    let exe = std::env::current_exe().expect("this bench");
    let status = Command::new(exe)
        .arg("--write-input")
        .arg(rows.to_string())
        .arg(path)
        .status()
        .expect("the generator starts");
    assert!(status.success(), "the generator failed");
}

fn print_line(
    rows: usize,
    input: &str,
    read: Option<Measured>,
    first: Measured,
    again: Option<Measured>,
    unchanged: bool,
) {
    let ratio = |m: Measured| match read {
        Some(r) => format!("{:5.2}x", m.secs() / r.secs()),
        None => "   -  ".into(),
    };
    let cell = |m: Measured| format!("{:6.2} s {:5.0} MB {}", m.secs(), m.mb(), ratio(m));
    println!(
        "{:>9} {:>5} | {:>16} | {} | {:>26} | {:>5.1} µs {:>4.0} B",
        rows,
        input,
        read.map_or("-".into(), |r| format!(
            "{:5.2} s {:5.0} MB",
            r.secs(),
            r.mb()
        )),
        cell(first),
        again.map_or("-".into(), |a| cell(a)
            + if unchanged { "" } else { " CHANGED" }),
        first.secs() * 1e6 / rows as f64,
        first.peak_kb as f64 * 1024.0 / rows as f64,
    );
}
