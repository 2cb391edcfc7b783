//! Creates into a real slapd against OpenLDAP's own `ldapadd`, in one run on one machine.
//!
//! ```text
//! cargo bench --bench ldap_load            # 20,000 users; LDAP_BENCH_USERS=5000 for fewer
//! ```
//!
//! 1. datasync runs the main job (users only, without its password field, so every create is
//!    one LDAP add as it is for `ldapadd`) from a generated workbook into a fresh slapd.
//! 2. The same job into the embedded directory gives the equivalent LDIF: the same entries.
//! 3. `ldapadd` loads that LDIF into a fresh database of the same configuration with one
//!    process, then into another with two processes in parallel (the containers first, then
//!    half the users each).
//! 4. An unchanged re-run of the job against the first server, timed in this process's own
//!    CPU time (user + system, from /proc/self/stat).
//!
//! 5. Against Active Directory (Samba's AD DC, provisioned for the bench): the same job into
//!    one OU, then — that OU deleted, account names being unique in a domain — its LDIF
//!    into another by two `ldapadd` processes, over LDAPS as AD asks (AD_BENCH_USERS, default
//!    2,000).
//!
//! Targets: our create rate at least 0.9× that of the two parallel `ldapadd` processes; the
//! unchanged re-run under 2 s of our CPU time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use datasync::destination::{LdapDirectory, ServerKind};
use datasync::transform::TransformContext;
use datasync::{LdifDirectory, Plan};
use serde_json::{Value, json};
use support::slapd::{ADMIN_DN, ADMIN_PASSWORD, Slapd};

fn users_job() -> Plan {
    let text = support::main_job()
        .to_string()
        .replace("DC=groupid,DC=lab", "OU=groupid,DC=lab");
    let mut job: Value = serde_json::from_str(&text).expect("fixture JSON");
    support::users_only(&mut job);
    job["objectsOption"][0]["isDelete"] = json!(false);
    job["fieldsMap"]
        .as_array_mut()
        .expect("array")
        .retain(|f| f["destinationField"] != "password");
    support::compile(&job, &TransformContext::default())
}

/// This process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

fn ldapadd(server: &Slapd, file: &Path) -> Command {
    let mut cmd = Command::new("ldapadd");
    cmd.args([
        "-x",
        "-H",
        &server.url(),
        "-D",
        ADMIN_DN,
        "-w",
        ADMIN_PASSWORD,
        "-f",
    ])
    .arg(file)
    .stdout(std::process::Stdio::null());
    cmd
}

fn check(status: std::io::Result<std::process::ExitStatus>) {
    match status {
        Ok(s) if s.success() => {}
        other => panic!("ldapadd failed: {other:?}"),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: keep that quick.
    let testing = !std::env::args().any(|a| a == "--bench");
    let users: usize = std::env::var("LDAP_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if testing { 200 } else { 20_000 });
    let tmp = tempfile::tempdir().expect("temp dir");
    let workbook = tmp.path().join("people.xlsx");
    support::write_workbook(&workbook, &support::generated_people(users), &[]);
    let plan = users_job();

    // The equivalent LDIF: the same job into the embedded directory.
    let ldif = tmp.path().join("people.ldif");
    {
        let embedded = LdifDirectory::open(&ldif).expect("LDIF file");
        let r = support::run_job(&plan, &workbook, &embedded, 0);
        assert_eq!(r.counts.added, users);
    }
    let text = std::fs::read_to_string(&ldif).expect("LDIF");
    let records: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|r| r.starts_with("dn:"))
        .collect();
    let (containers, people): (Vec<&str>, Vec<&str>) = records
        .iter()
        .partition(|r| !r.contains("\nobjectClass: user"));
    let write = |name: &str, parts: &[&str]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, parts.join("\n\n") + "\n").expect("write LDIF");
        path
    };
    let all = write("all.ldif", &records);
    let head = write("containers.ldif", &containers);
    let half = people.len() / 2;
    let first = write("first.ldif", &people[..half]);
    let second = write("second.ldif", &people[half..]);

    // 1. datasync.
    let ours = Slapd::start();
    let directory =
        LdapDirectory::connect(ours.config(&ours.url()), ServerKind::Ldap).expect("connect");
    let started = Instant::now();
    let report = support::run_job(&plan, &workbook, &directory, 0);
    let ours_time = started.elapsed();
    assert_eq!(report.counts.added, users, "{:?}", report.failed.first());

    // 2. ldapadd, one process.
    let one = Slapd::start();
    let started = Instant::now();
    check(ldapadd(&one, &all).status());
    let one_time = started.elapsed();
    drop(one);

    // 3. ldapadd, two processes.
    let two = Slapd::start();
    let started = Instant::now();
    check(ldapadd(&two, &head).status());
    let mut a = ldapadd(&two, &first).spawn().expect("ldapadd");
    let mut b = ldapadd(&two, &second).spawn().expect("ldapadd");
    check(a.wait());
    check(b.wait());
    let two_time = started.elapsed();
    drop(two);

    // 4. The unchanged re-run, in our own CPU time.
    let cpu_before = cpu_time();
    let started = Instant::now();
    let again = support::run_job(&plan, &workbook, &directory, 0);
    let rerun_wall = started.elapsed();
    let rerun_cpu = cpu_time() - cpu_before;
    assert_eq!(again.counts.unchanged, users);

    let rate = |t: Duration| users as f64 / t.as_secs_f64();
    println!("ldap_load: {users} users, one run");
    println!(
        "  datasync creates      {:>8.0} users/s ({:.2} s)",
        rate(ours_time),
        ours_time.as_secs_f64()
    );
    println!(
        "  ldapadd, 1 process    {:>8.0} users/s ({:.2} s)",
        rate(one_time),
        one_time.as_secs_f64()
    );
    println!(
        "  ldapadd, 2 processes  {:>8.0} users/s ({:.2} s)",
        rate(two_time),
        two_time.as_secs_f64()
    );
    println!(
        "  datasync / ldapadd x2 = {:.2}x   (target >= 0.9x)",
        rate(ours_time) / rate(two_time)
    );
    println!(
        "  unchanged re-run: {:.2} s CPU, {:.2} s wall   (target < 2 s CPU for 20,000)",
        rerun_cpu.as_secs_f64(),
        rerun_wall.as_secs_f64()
    );

    active_directory(testing);
}

/// Step 5: datasync and two `ldapadd` processes creating the same users in Samba's AD DC.
fn active_directory(testing: bool) {
    use support::samba;
    let users: usize = std::env::var("AD_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if testing { 50 } else { 2_000 });
    let dc = samba::dc();
    let tmp = tempfile::tempdir().expect("temp dir");
    let workbook = tmp.path().join("people.xlsx");
    let staff: Vec<support::Person> = support::generated_people(users)
        .into_iter()
        .map(|p| support::Person { manager: None, ..p })
        .collect();
    support::write_workbook(&workbook, &staff, &[]);
    let plan_for = |ou: &str| {
        let text = support::main_job()
            .to_string()
            .replace("OU=API,DC=groupid,DC=lab", ou);
        let mut job: Value = serde_json::from_str(&text).expect("fixture JSON");
        support::users_only(&mut job);
        job["objectsOption"][0]["isDelete"] = json!(false);
        job["fieldsMap"].as_array_mut().expect("array").retain(|f| {
            f["destinationField"] != "password" && f["destinationField"] != "telephoneNumber"
        });
        support::compile(&job, &TransformContext::default())
    };

    // datasync.
    let ours = dc.ou("bench-datasync");
    let directory =
        LdapDirectory::connect(dc.config(), ServerKind::ActiveDirectory).expect("connect");
    let started = Instant::now();
    let report = support::run_job(&plan_for(&ours), &workbook, &directory, 0);
    let ours_time = started.elapsed();
    assert_eq!(report.counts.added, users, "{:?}", report.failed.first());
    drop(ours);

    // The same entries as LDIF, for a second OU.
    let theirs = dc.ou("bench-ldapadd");
    let ldif = tmp.path().join("ad.ldif");
    {
        let embedded = LdifDirectory::open(&ldif).expect("LDIF file");
        let mut base = datasync::Entry::new(theirs.to_string());
        base.set("objectClass", vec!["organizationalUnit".into()]);
        datasync::Destination::add(&embedded, &base, None).expect("base");
        let r = support::run_job(&plan_for(&theirs), &workbook, &embedded, 0);
        assert_eq!(r.counts.added, users);
    }
    let text = std::fs::read_to_string(&ldif).expect("LDIF");
    let people: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|r| r.starts_with("dn:") && r.contains("\nobjectClass: user"))
        .collect();
    let half = people.len() / 2;
    let write = |name: &str, parts: &[&str]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, parts.join("\n\n") + "\n").expect("write LDIF");
        path
    };
    let first = write("ad-first.ldif", &people[..half]);
    let second = write("ad-second.ldif", &people[half..]);
    let ldapadd = |file: &Path| {
        let mut cmd = Command::new("ldapadd");
        cmd.args(["-x", "-H", "ldaps://localhost", "-D", samba::ADMIN_DN, "-w"])
            .arg(samba::ADMIN_PASSWORD)
            .arg("-f")
            .arg(file)
            // The baseline's speed, not its checks: libldap compares the certificate with the
            // reverse lookup of 127.0.0.1 ("vm" here), not with the name in the URL.
            .env("LDAPTLS_REQCERT", "never")
            .stdout(std::process::Stdio::null());
        cmd
    };
    let started = Instant::now();
    let mut a = ldapadd(&first).spawn().expect("ldapadd");
    let mut b = ldapadd(&second).spawn().expect("ldapadd");
    check(a.wait());
    check(b.wait());
    let two_time = started.elapsed();
    drop(theirs);

    let rate = |t: Duration| users as f64 / t.as_secs_f64();
    println!("ldap_load against Samba's AD DC: {users} users, one run, LDAPS");
    println!(
        "  datasync creates      {:>8.0} users/s ({:.2} s)",
        rate(ours_time),
        ours_time.as_secs_f64()
    );
    println!(
        "  ldapadd, 2 processes  {:>8.0} users/s ({:.2} s)",
        rate(two_time),
        two_time.as_secs_f64()
    );
    println!(
        "  datasync / ldapadd x2 = {:.2}x",
        rate(ours_time) / rate(two_time)
    );
}
