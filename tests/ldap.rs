//! The LDAP destination and source against a real OpenLDAP `slapd` that each test starts for
//! itself (see `support/slapd.rs`). These tests fail, never skip, when slapd cannot start.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use datasync::destination::{LdapDirectory, Scope, ServerKind};
use datasync::ldap::{Security, TlsVerify};
use datasync::query::Filter;
use datasync::report::Counts;
use datasync::transform::TransformContext;
use datasync::{
    Destination, DestinationError, Entry, LdifDirectory, NoHooks, Plan, Report, RunOptions,
    RunStatus, Secret, dn, source,
};
use serde_json::Value;
use support::slapd::{ADMIN_DN, ADMIN_PASSWORD, SUFFIX, Slapd};
use support::{Person, TempWorkbook, groups, main_job, people, users_only};

/// The main job with its destination moved under `dc=lab`, the suffix the test server holds.
fn lab_job(job: &Value) -> Value {
    let text = job
        .to_string()
        .replace("DC=groupid,DC=lab", "OU=groupid,DC=lab");
    serde_json::from_str(&text).unwrap()
}

fn plan(job: &Value) -> Plan {
    support::compile(job, &TransformContext::default())
}

use support::run_job as run;

fn connect(server: &Slapd, url: &str, kind: ServerKind) -> LdapDirectory {
    LdapDirectory::connect(server.config(url), kind).unwrap_or_else(|e| panic!("{e}"))
}

/// Every entry under the suffix in a comparable form: normalized DNs, attribute names in lower
/// case, values sorted, DN values normalized. Passwords are left out (each destination keeps
/// its own form of them) and checked by their own tests.
fn snapshot(dir: &dyn Destination, base: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let all = Filter::parse("(objectClass=*)").unwrap();
    let entries = match dir.search(base, Scope::Subtree, &all, &[]) {
        Ok(e) => e,
        Err(DestinationError::NoSuchObject { .. }) => Vec::new(),
        Err(e) => panic!("{e}"),
    };
    // Passwords are left out: each destination keeps its own form of them.
    support::comparable(entries, |name| {
        !["userpassword", "unicodepwd"].contains(&name)
    })
}

fn counts(r: &Report) -> Counts {
    r.counts.clone()
}

/// A workbook for the test server. OpenLDAP's core schema defines `mail` as IA5String
/// (RFC 4524, ASCII only) where AD takes Unicode, so non-ASCII mail addresses are spelled in
/// ASCII here; every other value keeps its Unicode (`userPrincipalName` is ours and takes it).
struct Workbook(TempWorkbook);

impl Workbook {
    fn new(people: &[Person]) -> Workbook {
        let w = Workbook(TempWorkbook::new(&[]));
        w.write(people);
        w
    }
    fn path(&self) -> std::path::PathBuf {
        self.0.path()
    }
    fn write(&self, people: &[Person]) {
        let ascii: Vec<Person> = people
            .iter()
            .map(|p| Person {
                email: ascii_mail(&p.email),
                ..p.clone()
            })
            .collect();
        self.0.write(&ascii, &groups());
    }
}

fn ascii_mail(mail: &str) -> String {
    mail.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("u{:x}", c as u32)
            }
        })
        .collect()
}

/// Writes `staff` and runs `plan` on both destinations: the same counts, failures and entries.
fn same_step(
    name: &str,
    plan: &Plan,
    book: &Workbook,
    staff: &[Person],
    embedded: &LdifDirectory,
    ldap: &LdapDirectory,
) -> Report {
    book.write(staff);
    let a = run(plan, &book.path(), embedded, 2);
    let b = run(plan, &book.path(), ldap, 4);
    assert_eq!(
        counts(&a),
        counts(&b),
        "{name}: counts differ: {:#?}",
        b.failed
    );
    assert_eq!(a.failed, b.failed, "{name}: failures differ");
    assert_eq!(a.deleted.len(), b.deleted.len(), "{name}: deletes differ");
    assert_eq!(
        snapshot(embedded, SUFFIX),
        snapshot(ldap, SUFFIX),
        "{name}: entries differ"
    );
    b
}

/// One source, run in steps against the embedded directory and against slapd: after each step
/// the two hold the same entries and the reports the same counts.
#[test]
fn conformance_the_same_jobs_give_the_same_entries_and_counts() {
    let server = Slapd::start();
    let ldap = connect(&server, &server.ldaps_url(), ServerKind::ActiveDirectory);
    let embedded = LdifDirectory::in_memory();
    let plan = plan(&lab_job(&main_job()));
    let mut staff = people();
    let book = Workbook::new(&staff);

    let step =
        |name: &str, staff: &[Person]| same_step(name, &plan, &book, staff, &embedded, &ldap);

    let first = step("first run", &staff);
    assert_eq!(
        first.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        first.failed
    );
    assert_eq!(first.counts.added, staff.len() + groups().len());

    let again = step("unchanged re-run", &staff);
    assert_eq!(again.counts.unchanged, staff.len() + groups().len());
    assert_eq!(
        again.counts.added + again.counts.updated + again.counts.deleted,
        0
    );

    // An update, a rename (new last name: a new CN), a new manager, a deletion and a creation.
    let gone = support::typical_changes(&mut staff, "Newcomer, Jr");
    let changed = step("changes", &staff);
    assert_eq!(changed.counts.added, 1);
    assert_eq!(changed.counts.deleted, 1);
    assert!(changed.counts.updated >= 2, "{:?}", changed.counts);
    assert_eq!(changed.updated_id_map.len(), 1, "the rename is listed");
    let snap = snapshot(&ldap, SUFFIX);
    assert!(
        !snap
            .values()
            .any(|e| e.get("employeeid") == Some(&vec![gone.id.to_string()])),
        "the deleted person is gone"
    );

    let settled = step("unchanged after changes", &staff);
    assert_eq!(settled.counts.unchanged, staff.len() + groups().len());
}

#[test]
fn conformance_deprovisioning_disables_and_moves_the_same_way() {
    let server = Slapd::start();
    let ldap = connect(&server, &server.ldaps_url(), ServerKind::ActiveDirectory);
    let embedded = LdifDirectory::in_memory();
    let mut job = lab_job(&main_job());
    job["objectsOption"][0]["isDeprovisioning"] = true.into();
    let settings = job["settings"].as_array_mut().unwrap();
    settings.push(serde_json::json!({"action": 0, "id": 0,
        "key": "Destination.DeprovisionContainer", "value": "OU=Leavers,OU=groupid,DC=lab",
        "dataType": "System.String", "objectType": null}));
    let plan = plan(&job);
    let mut staff = people();
    let book = Workbook::new(&staff);
    same_step("first run", &plan, &book, &staff, &embedded, &ldap);
    let leaver = staff.pop().unwrap();
    let report = same_step("a leaver", &plan, &book, &staff, &embedded, &ldap);
    assert_eq!(report.deleted.len(), 1, "{report:#?}");
    let leaver_filter = Filter::parse(&format!("(employeeID={})", leaver.id)).unwrap();
    let moved = ldap
        .search(
            SUFFIX,
            Scope::Subtree,
            &leaver_filter,
            &["userAccountControl".into()],
        )
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert!(
        dn::normalize(&moved[0].dn)
            .unwrap()
            .ends_with(&dn::normalize("OU=Leavers,OU=groupid,DC=lab").unwrap()),
        "{}",
        moved[0].dn
    );
    let uac: u32 = moved[0]
        .first("userAccountControl")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(uac & 2, 2, "the account is disabled");
    same_step("settled", &plan, &book, &staff, &embedded, &ldap);
}

fn user_dns(dir: &dyn Destination) -> Vec<String> {
    let users = Filter::parse("(objectClass=user)").unwrap();
    match dir.search(SUFFIX, Scope::Subtree, &users, &[]) {
        Ok(entries) => entries.into_iter().map(|e| e.dn).collect(),
        Err(DestinationError::NoSuchObject { .. }) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

fn first_user_dn(dir: &dyn Destination) -> String {
    user_dns(dir)
        .into_iter()
        .find(|d| d.starts_with("cn=Ann Lee"))
        .expect("Ann Lee was created")
}

#[test]
fn active_directory_passwords_go_to_unicode_pwd_over_tls_only() {
    let server = Slapd::start();
    let mut job = lab_job(&main_job());
    users_only(&mut job);
    let plan = plan(&job);
    let book = Workbook::new(&people());

    // Over plain ldap:// every row with a password fails, and its entry is not sent.
    let plain = connect(&server, &server.url(), ServerKind::ActiveDirectory);
    let report = run(&plan, &book.path(), &plain, 2);
    assert_eq!(report.counts.failed, people().len());
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.message.contains("encrypted connection")),
        "{:?}",
        report.failed
    );
    assert_eq!(user_dns(&plain), Vec::<String>::new());

    // Over TLS the password is set as AD expects it: the quoted password in UTF-16LE.
    let tls = connect(&server, &server.ldaps_url(), ServerKind::ActiveDirectory);
    let report = run(&plan, &book.path(), &tls, 2);
    assert_eq!(
        report.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        report.failed
    );
    let ann = first_user_dn(&tls);
    let expected: Vec<u8> = "\"webdir123R\""
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(server.raw_values(&ann, "unicodePwd"), vec![expected]);
    assert_eq!(
        server.raw_values(&ann, "userPassword"),
        Vec::<Vec<u8>>::new()
    );
    // The report never carries the password.
    assert!(!report.to_json().contains("webdir123R"));
}

#[test]
fn other_servers_get_passwords_through_password_modify() {
    let server = Slapd::start();
    let mut job = lab_job(&main_job());
    users_only(&mut job);
    let plan = plan(&job);
    let book = Workbook::new(&people());
    let dir = connect(&server, &server.url(), ServerKind::Ldap);
    let report = run(&plan, &book.path(), &dir, 2);
    assert_eq!(
        report.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        report.failed
    );
    let ann = first_user_dn(&dir);
    // slapd hashed it (Password Modify), so it is not stored as sent ...
    let stored = server.raw_values(&ann, "userPassword");
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].starts_with(b"{SSHA}"),
        "{:?}",
        String::from_utf8_lossy(&stored[0])
    );
    // ... and the user can bind with it.
    let mut conn = ldap3::LdapConn::new(&server.url()).unwrap();
    conn.simple_bind(&ann, "webdir123R")
        .unwrap()
        .success()
        .unwrap();
    let wrong = conn.simple_bind(&ann, "not-it").unwrap().success();
    assert!(wrong.is_err());
}

/// The certificates `ldapsearch` with `LDAPTLS_CACERT` accepts are accepted, by the name the
/// certificate holds; the ones it refuses are refused, saying what is wrong.
#[test]
fn certificates_are_checked_as_ldapsearch_checks_them() {
    use support::slapd::ServerCertificate;
    let by_name = |server: &Slapd| {
        let mut config = server.config(&format!("ldaps://localhost:{}", server.tls_port));
        config.connect_timeout = Duration::from_secs(5);
        config
    };
    // The host only in the subject CN, no subjectAltName (Samba's, many AD CS templates).
    let cn_only = Slapd::start_with(ServerCertificate::CnOnly);
    LdapDirectory::connect(by_name(&cn_only), ServerKind::Ldap)
        .unwrap_or_else(|e| panic!("CN-only certificate refused: {e}"));
    let e =
        LdapDirectory::connect(cn_only.config(&cn_only.ldaps_url()), ServerKind::Ldap).unwrap_err();
    assert!(
        e.to_string().contains("is for localhost, not 127.0.0.1"),
        "{e}"
    );
    // A self-signed certificate (CA:TRUE, as `openssl req -x509` makes it) given as its own CA.
    let own = Slapd::start_with(ServerCertificate::SelfSigned);
    LdapDirectory::connect(by_name(&own), ServerKind::Ldap)
        .unwrap_or_else(|e| panic!("self-signed certificate refused: {e}"));
    // A CA-issued certificate with a subjectAltName, by address and by name.
    let proper = Slapd::start();
    LdapDirectory::connect(proper.config(&proper.ldaps_url()), ServerKind::Ldap).unwrap();
    LdapDirectory::connect(by_name(&proper), ServerKind::Ldap).unwrap();
    // Refused: an issuer the CA file does not hold, and an expired certificate.
    let mut untrusted = by_name(&proper);
    untrusted.tls_verify = TlsVerify::CaFile(own.ca_file());
    let e = LdapDirectory::connect(untrusted, ServerKind::Ldap).unwrap_err();
    assert!(
        e.to_string().contains("not signed by a CA in --ca-file"),
        "{e}"
    );
    let expired = Slapd::start_with(ServerCertificate::Expired);
    let e = LdapDirectory::connect(by_name(&expired), ServerKind::Ldap).unwrap_err();
    assert!(
        e.to_string()
            .contains("the server's certificate expired on"),
        "{e}"
    );
    // The self-signed certificate is trusted as itself only: a CA file with another
    // self-signed certificate does not let it in.
    let other = Slapd::start_with(ServerCertificate::SelfSigned);
    let mut stranger = by_name(&own);
    stranger.tls_verify = TlsVerify::CaFile(other.ca_file());
    assert!(LdapDirectory::connect(stranger, ServerKind::Ldap).is_err());
}

#[test]
fn starttls_and_certificate_checks() {
    let server = Slapd::start();
    let starttls = server.config(&format!("{}?starttls", server.url()));
    assert_eq!(starttls.security, Security::StartTls);
    let dir = LdapDirectory::connect(starttls, ServerKind::ActiveDirectory).unwrap();
    assert!(!dir.exists("cn=nobody,dc=lab").unwrap());

    // The system roots do not know the test CA: verification fails, loudly.
    let mut unverified = server.config(&server.ldaps_url());
    unverified.tls_verify = TlsVerify::SystemRoots;
    let err = LdapDirectory::connect(unverified, ServerKind::ActiveDirectory).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(!err.to_string().contains(ADMIN_PASSWORD));

    // Turning verification off is possible, and explicit.
    let mut any = server.config(&server.ldaps_url());
    any.tls_verify = TlsVerify::DangerouslyAcceptAnyCertificate;
    LdapDirectory::connect(any, ServerKind::ActiveDirectory).unwrap();

    // A wrong bind password is an error at connect time, before a job reads anything.
    let mut wrong = server.config(&server.url());
    wrong.bind_password = Some(Secret::new("wrong"));
    let err = LdapDirectory::connect(wrong, ServerKind::Ldap).unwrap_err();
    assert!(err.to_string().contains("invalidCredentials"), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[test]
fn scans_read_every_page_of_a_paged_search() {
    let server = Slapd::start();
    let mut config = server.config(&server.ldaps_url());
    config.page_size = 3;
    let dir = LdapDirectory::connect(config, ServerKind::ActiveDirectory).unwrap();
    let plan = plan(&lab_job(&main_job()));
    let book = Workbook::new(&people());
    let first = run(&plan, &book.path(), &dir, 2);
    assert_eq!(
        first.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        first.failed
    );
    // Each type's scan spans several pages of 3; a page lost would turn into a failed create.
    let again = run(&plan, &book.path(), &dir, 2);
    assert_eq!(again.counts.unchanged, first.counts.added);
    assert_eq!(again.counts.failed, 0, "{:?}", again.failed);
}

#[test]
fn a_refused_write_fails_its_row_with_the_result_code_and_the_server_message() {
    let server = Slapd::start();
    let mut job = lab_job(&main_job());
    users_only(&mut job);
    // carLicense exists (inetOrgPerson) but the `user` class does not allow it.
    job["fieldsMap"]
        .as_array_mut()
        .unwrap()
        .push(support::copy_field("Title", "carLicense", false));
    let dir = connect(&server, &server.ldaps_url(), ServerKind::ActiveDirectory);
    let report = run(&plan(&job), &Workbook::new(&people()).path(), &dir, 2);
    assert_eq!(report.counts.failed, people().len());
    for f in &report.failed {
        assert!(
            f.message.contains("LDAP 65 objectClassViolation"),
            "{}",
            f.message
        );
        assert!(f.message.contains("carLicense"), "{}", f.message);
    }
    assert_eq!(user_dns(&dir), Vec::<String>::new());
}

#[test]
fn results_do_not_depend_on_the_number_of_workers() {
    let one = Slapd::start();
    let eight = Slapd::start();
    let plan = plan(&lab_job(&main_job()));
    let staff = support::generated_people(400);
    let book = Workbook::new(&staff);
    let a = connect(&one, &one.ldaps_url(), ServerKind::ActiveDirectory);
    let b = connect(&eight, &eight.ldaps_url(), ServerKind::ActiveDirectory);
    let ra = run(&plan, &book.path(), &a, 1);
    let rb = run(&plan, &book.path(), &b, 8);
    assert_eq!(ra.status, RunStatus::FinishedSuccess, "{:?}", ra.failed);
    assert_eq!(counts(&ra), counts(&rb));
    assert_eq!(snapshot(&a, SUFFIX), snapshot(&b, SUFFIX));
}

type SharedServer = std::sync::Arc<std::sync::Mutex<Slapd>>;

/// Does something to slapd once a number of creates are done, from inside the run.
struct AfterCreates {
    server: SharedServer,
    after: usize,
    added: std::sync::atomic::AtomicUsize,
    fault: fn(&SharedServer),
}

impl AfterCreates {
    fn new(server: &SharedServer, after: usize, fault: fn(&SharedServer)) -> AfterCreates {
        AfterCreates {
            server: server.clone(),
            after,
            added: Default::default(),
            fault,
        }
    }
}

impl datasync::Hooks for AfterCreates {
    fn row_added(
        &self,
        _: &datasync::HookContext,
        _: &datasync::hooks::RowWrite,
    ) -> datasync::hooks::HookResult {
        let n = self.added.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == self.after {
            (self.fault)(&self.server);
        }
        Ok(())
    }
}

/// Kills slapd at once, as a crash would.
fn crash(server: &SharedServer) {
    server.lock().unwrap().kill();
}

/// Stops slapd and starts it again 300 ms later, on another thread.
fn brief_outage(server: &SharedServer) {
    server.lock().unwrap().stop();
    let server = server.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        server.lock().unwrap().launch();
    });
}

#[test]
fn a_server_killed_mid_run_ends_the_run_and_a_rerun_converges() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(Slapd::start()));
    let config = {
        let s = server.lock().unwrap();
        s.config(&s.ldaps_url())
    };
    let plan = plan(&lab_job(&main_job()));
    let staff = support::generated_people(1500);
    let book = Workbook::new(&staff);
    let dir = LdapDirectory::connect(config, ServerKind::ActiveDirectory).unwrap();
    let hooks = AfterCreates::new(&server, 300, crash);
    let mut src = source::open(&book.path()).unwrap();
    let options = RunOptions {
        threads: 4,
        ..Default::default()
    };
    // The run ends (no hang) with every unfinished row failed.
    let report = datasync::run(&plan, src.as_mut(), &dir, &hooks, &options).unwrap();
    assert_eq!(report.status, RunStatus::FinishedFail);
    assert!(report.counts.added >= 300, "{:?}", report.counts);
    assert!(report.counts.failed > 0);
    assert_eq!(
        report.counts.added + report.counts.failed + report.counts.unchanged,
        report.counts.read,
        "every row is accounted for: {:?}",
        report.counts
    );
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.message.contains("unavailable")),
        "{:?}",
        report.failed.first()
    );

    // Back up: the same job converges to exactly what a clean run gives.
    server.lock().unwrap().launch();
    let rerun = run(&plan, &book.path(), &dir, 4);
    assert_eq!(rerun.counts.failed, 0, "{:?}", rerun.failed.first());
    let expected = LdifDirectory::in_memory();
    run(&plan, &book.path(), &expected, 2);
    assert_eq!(snapshot(&dir, SUFFIX), snapshot(&expected, SUFFIX));
    let settled = run(&plan, &book.path(), &dir, 4);
    assert_eq!(settled.counts.unchanged, settled.counts.read);
}

#[test]
fn a_brief_outage_is_bridged_by_retries() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(Slapd::start()));
    let mut config = {
        let s = server.lock().unwrap();
        s.config(&s.ldaps_url())
    };
    // Up to ~6 s of retries: far more than the outage and restart take.
    config.retry.attempts = 30;
    config.retry.max_wait = Duration::from_millis(200);
    let dir = LdapDirectory::connect(config, ServerKind::ActiveDirectory).unwrap();
    let plan = plan(&lab_job(&main_job()));
    let staff = support::generated_people(300);
    let book = Workbook::new(&staff);
    let hooks = AfterCreates::new(&server, 50, brief_outage);
    let mut src = source::open(&book.path()).unwrap();
    let report = datasync::run(&plan, src.as_mut(), &dir, &hooks, &RunOptions::default()).unwrap();
    assert_eq!(report.counts.failed, 0, "{:?}", report.failed.first());
    assert_eq!(report.counts.added, report.counts.read);
    let again = run(&plan, &book.path(), &dir, 2);
    assert_eq!(again.counts.unchanged, again.counts.read);
}

#[test]
fn an_ldap_source_feeds_a_directory_to_directory_job() {
    let server = Slapd::start();
    // Fill the server with the main job, then copy its users into the embedded directory.
    let dir = connect(&server, &server.ldaps_url(), ServerKind::ActiveDirectory);
    run(
        &plan(&lab_job(&main_job())),
        &Workbook::new(&people()).path(),
        &dir,
        2,
    );

    let job = support::directory_copy_job();
    let plan = plan(&job);
    let mut config = server.config(&format!("{}/OU=API,OU=groupid,DC=lab", server.ldaps_url()));
    config.page_size = 2;
    let mut source = datasync::source::LdapSource::connect(config).unwrap();
    let copy = LdifDirectory::in_memory();
    let report =
        datasync::run(&plan, &mut source, &copy, &NoHooks, &RunOptions::default()).unwrap();
    assert_eq!(
        report.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        report.failed
    );
    assert_eq!(report.counts.added, people().len());
    let bob = Filter::parse("(employeeID=1002)").unwrap();
    let found = copy
        .search("DC=groupid,DC=lab", Scope::Subtree, &bob, &[])
        .unwrap();
    assert_eq!(found.len(), 1);
    let mut phones = found[0].get("telephoneNumber").to_vec();
    phones.sort();
    assert_eq!(phones, ["555-0101", "555-0199"]);
    assert!(found[0].first("info").unwrap().starts_with("cn=Bob Stone,"));

    // A bad filter and a missing base are errors before anything is written.
    let mut source = datasync::source::LdapSource::connect(
        server.config(&format!("{}/OU=nowhere,DC=lab", server.ldaps_url())),
    )
    .unwrap();
    let err =
        datasync::run(&plan, &mut source, &copy, &NoHooks, &RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("noSuchObject"), "{err}");
}

#[test]
fn the_cli_runs_the_main_job_against_slapd() {
    let server = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let job_path = dir.path().join("job.json");
    let mut job = lab_job(&main_job());
    let book = Workbook::new(&people());
    job["settings"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .filter(|s| s["key"] == "Source.File")
        .for_each(|s| s["value"] = book.path().display().to_string().into());
    std::fs::write(&job_path, job.to_string()).unwrap();
    let cli = |extra: &[&str], password: Option<&str>| {
        let mut cmd = std::process::Command::new(support::datasync_binary());
        cmd.arg("run")
            .arg(&job_path)
            .args(["--destination", &server.ldaps_url(), "--bind-dn", ADMIN_DN])
            .arg("--ca-file")
            .arg(server.ca_file())
            .args(extra)
            .env_remove("DATASYNC_BIND_PASSWORD");
        if let Some(p) = password {
            cmd.env("DATASYNC_BIND_PASSWORD", p);
        }
        cmd.output().unwrap()
    };
    let missing = cli(&[], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("DATASYNC_BIND_PASSWORD"));

    let ok = cli(&[], Some(ADMIN_PASSWORD));
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(ADMIN_PASSWORD));
    let ldap = connect(&server, &server.url(), ServerKind::ActiveDirectory);
    assert_eq!(user_dns(&ldap).len(), people().len());

    let report_path = dir.path().join("report.json");
    let again = cli(
        &["--report", report_path.to_str().unwrap()],
        Some(ADMIN_PASSWORD),
    );
    assert_eq!(again.status.code(), Some(0));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["status"], "FinishedSuccess", "{report}");
}

/// Group membership on slapd, whose `groupOfNames` needs at least one `member` and which keeps
/// no references itself (no `refint` overlay): the groups are filled from the source's keys,
/// including a nested group created later in the sheet; a changed group gets only its
/// difference; a renamed member is written under its new DN and a deleted one leaves, in the
/// groups the job fills and in one it does not. After each step slapd holds what the embedded
/// directory holds for the same steps.
#[test]
fn groups_of_names_are_filled_from_keys_and_follow_renames_and_deletes() {
    use support::{Member, MembershipShape, membership_job, write_membership_workbook};
    let server = Slapd::start();
    let ldap = connect(&server, &server.ldaps_url(), ServerKind::Ldap);
    let embedded = LdifDirectory::in_memory();
    let base = "ou=Sync,dc=lab";
    let mut shape = MembershipShape::new(base);
    shape.group_class = Some("groupOfNames".into());
    shape.member_key = "cn".into();
    let mut job = membership_job(&shape);
    // A group the job leaves to others: not among the job's groups, yet in its scope.
    job["syncQuery"][1]["query"] = "(&(objectClass=groupOfNames)(!(cn=Manual)))".into();
    let plan = plan(&job);
    let book = tempfile::tempdir().unwrap();
    let path = book.path().join("book.xlsx");
    let mut people = vec![
        Member::new(1, "Ann", "Lee", ""),
        Member::new(2, "Bob", "Stone", ""),
        Member::new(3, "Cy", "Young", ""),
        Member::new(4, "Dee", "Dunn", ""),
    ];
    let members = |dir: &dyn Destination, group: &str| -> Vec<String> {
        let mut found: Vec<String> = dir
            .read_entry(&format!("CN={group},OU=Teams,{base}"), &["member".into()])
            .unwrap()
            .unwrap_or_else(|| panic!("no group {group}"))
            .get("member")
            .iter()
            .map(|v| dn::normalize(v).unwrap())
            .collect();
        found.sort();
        found
    };
    let person = |cn: &str| dn::normalize(&format!("CN={cn},OU=People,{base}")).unwrap();
    let group = |cn: &str| dn::normalize(&format!("CN={cn},OU=Teams,{base}")).unwrap();
    let step = |name: &str, people: &[Member], teams: &[(&str, &str, &str)]| -> Report {
        write_membership_workbook(&path, people, teams);
        let a = run(&plan, &path, &embedded, 2);
        let b = run(&plan, &path, &ldap, 4);
        assert_eq!(b.status, RunStatus::FinishedSuccess, "{name}: {b:?}");
        assert_eq!(counts(&a), counts(&b), "{name}: {b:?}");
        // The embedded directory gives accounts AD's `userAccountControl`; slapd as a plain
        // LDAP server is not asked to.
        let without_uac = |dir: &dyn Destination| {
            let mut entries = snapshot(dir, base);
            for attributes in entries.values_mut() {
                attributes.remove("useraccountcontrol");
            }
            entries
        };
        assert_eq!(
            without_uac(&embedded),
            without_uac(&ldap),
            "{name}: entries differ"
        );
        b
    };

    let first = step(
        "first run",
        &people,
        &[
            ("Leads", "Ann Lee;Staff;Nobody", ""),
            ("Staff", "Bob Stone;Cy Young", ""),
        ],
    );
    assert_eq!(first.counts.added, 6);
    assert_eq!(members(&ldap, "Leads"), [person("Ann Lee"), group("Staff")]);
    assert_eq!(
        members(&ldap, "Staff"),
        [person("Bob Stone"), person("Cy Young")]
    );

    // A group the job does not fill, naming Ann and Bob.
    for dir in [&ldap as &dyn Destination, &embedded] {
        let mut manual = Entry::new(format!("CN=Manual,{base}"));
        manual.set("objectClass", vec!["top".into(), "groupOfNames".into()]);
        manual.set("cn", vec!["Manual".into()]);
        manual.set(
            "member",
            vec![
                format!("CN=Ann Lee,OU=People,{base}"),
                format!("CN=Bob Stone,OU=People,{base}"),
            ],
        );
        dir.add(&manual, None).unwrap();
    }

    let same = step(
        "unchanged",
        &people,
        &[
            ("Leads", "Ann Lee;Staff;Nobody", ""),
            ("Staff", "Bob Stone;Cy Young", ""),
        ],
    );
    assert_eq!(same.counts.unchanged, 6, "{same:?}");

    // Staff swaps Cy for Dee; Ann is renamed; Bob leaves the company.
    people[0].last = "Park".into();
    people.remove(1);
    let changed = step(
        "renamed, deleted, changed",
        &people,
        &[
            ("Leads", "Ann Park;Staff", ""),
            ("Staff", "Dee Dunn;Ann Park", ""),
        ],
    );
    assert_eq!(changed.counts.deleted, 1, "{changed:?}");
    assert_eq!(
        members(&ldap, "Leads"),
        [person("Ann Park"), group("Staff")]
    );
    assert_eq!(
        members(&ldap, "Staff"),
        [person("Ann Park"), person("Dee Dunn")]
    );
    let manual: Vec<String> = ldap
        .read_entry(&format!("CN=Manual,{base}"), &[])
        .unwrap()
        .unwrap()
        .get("member")
        .iter()
        .map(|v| dn::normalize(v).unwrap())
        .collect();
    assert_eq!(manual, [person("Ann Park")]);

    // A value added twice or removed when gone is not an error (permissive modify): what a
    // re-run after a broken connection meets.
    let leads = format!("CN=Leads,OU=Teams,{base}");
    ldap.modify(
        &leads,
        &[
            datasync::destination::Modification::AddValues(
                "member".into(),
                vec![format!("cn=ann park,ou=people,{base}")],
            ),
            datasync::destination::Modification::DeleteValues(
                "member".into(),
                vec![format!("CN=Bob Stone,OU=People,{base}")],
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        members(&ldap, "Leads"),
        [person("Ann Park"), group("Staff")]
    );
}
