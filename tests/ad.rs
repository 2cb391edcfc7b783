//! Active Directory for real: the LDAP destination against Samba's AD domain controller (see
//! `support/samba.rs`), which provisions itself once for this test binary. Every test here
//! fails, never skips, when Samba cannot start.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use datasync::destination::{LdapDirectory, Scope, ServerKind};
use datasync::hooks::{HookContext, HookResult, PasswordSet};
use datasync::ldap::TlsVerify;
use datasync::query::Filter;
use datasync::{
    Destination, Hooks, LdifDirectory, Plan, Report, RunOptions, RunStatus, Secret, dn, source,
};
use serde_json::{Value, json};
use support::samba::{self, ADMIN_DN, ADMIN_PASSWORD};
use support::{Person, TempWorkbook, groups, main_job, people, users_only};

/// The main job, writing into `ou` instead of `OU=API`, with the phones in AD's multi-valued
/// `otherTelephone` (AD's `telephoneNumber` holds one value).
fn ad_job(ou: &str) -> Value {
    let text = main_job()
        .to_string()
        .replace("OU=API,DC=groupid,DC=lab", ou);
    let mut job: Value = serde_json::from_str(&text).unwrap();
    for f in job["fieldsMap"].as_array_mut().unwrap() {
        if f["destinationField"] == "telephoneNumber" {
            f["destinationField"] = json!("otherTelephone");
        }
    }
    job
}

fn plan(job: &Value) -> Plan {
    support::compile(job, &Default::default())
}

/// The fixture people with names AD takes as account names (no `,` or `+`, which
/// `sAMAccountName` refuses; the DN-special `#`, `'` and Unicode stay).
fn ad_people() -> Vec<Person> {
    people()
        .into_iter()
        .map(|mut p| {
            p.last = p.last.replace([',', '+'], " ").replace("  ", " ");
            p
        })
        .collect()
}

fn connect() -> LdapDirectory {
    LdapDirectory::connect(samba::dc().config(), ServerKind::ActiveDirectory)
        .unwrap_or_else(|e| panic!("{e}\n{}", samba::dc().log()))
}

/// The attributes a job maps, read from `dir` below `base`: normalized DNs, names in lower
/// case, values sorted (DN values normalized). What AD adds of its own (GUIDs, times, USNs)
/// is left out, and passwords, which each destination keeps in its own form.
fn snapshot(dir: &dyn Destination, base: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    const COMPARED: [&str; 14] = [
        "cn",
        "givenname",
        "sn",
        "employeeid",
        "samaccountname",
        "userprincipalname",
        "mail",
        "department",
        "title",
        "othertelephone",
        "manager",
        "description",
        "useraccountcontrol",
        "objectclass",
    ];
    let all = Filter::parse("(|(objectClass=user)(objectClass=group))").unwrap();
    let wanted: Vec<String> = COMPARED.iter().map(|s| s.to_string()).collect();
    let entries = dir
        .search(base, Scope::Subtree, &all, &wanted)
        .unwrap_or_else(|e| panic!("{e}"));
    support::comparable(entries, |name| COMPARED.contains(&name))
}

/// Writes `staff` and runs `plan` on both destinations: the same counts, failures and entries.
fn same_step(
    name: &str,
    plan: &Plan,
    book: &TempWorkbook,
    staff: &[Person],
    embedded: &LdifDirectory,
    ad: &LdapDirectory,
    base: &str,
) -> Report {
    book.write(staff, &groups());
    let a = support::run_job(plan, &book.path(), embedded, 2);
    let b = support::run_job(plan, &book.path(), ad, 4);
    assert_eq!(a.counts, b.counts, "{name}: counts differ: {:#?}", b.failed);
    assert_eq!(a.failed, b.failed, "{name}: failures differ");
    assert_eq!(
        snapshot(embedded, base),
        snapshot(ad, base),
        "{name}: entries differ"
    );
    b
}

/// One source, run in steps against the embedded directory and against Samba: after each step
/// the two hold the same entries and the reports the same counts.
#[test]
fn conformance_on_ad_the_same_jobs_give_the_same_entries_and_counts() {
    let ou = samba::dc().ou("conformance");
    let ad = connect();
    let embedded = LdifDirectory::in_memory();
    let mut base_entry = datasync::Entry::new(ou.to_string());
    base_entry.set("objectClass", vec!["organizationalUnit".into()]);
    embedded.add(&base_entry, None).unwrap();
    let mut job = ad_job(&ou);
    job["objectsOption"][0]["isDeprovisioning"] = json!(false);
    // Users live in an OU per department (a host script names it), so a new department is a
    // move.
    job["objectsOption"][0]["containerOption"] = json!("3");
    job["objectsOption"][0]["containerOptionValue"] = json!("by-department");
    let mut context = datasync::transform::TransformContext::default();
    let base = ou.to_string();
    context.scripts.register("by-department", move |input| {
        Ok(input
            .row
            .get("Department")
            .map(|d| format!("OU={},{base}", dn::escape_value(d))))
    });
    let plan = support::compile(&job, &context);
    let mut staff = ad_people();
    let book = TempWorkbook::new(&staff);
    let step =
        |name: &str, staff: &[Person]| same_step(name, &plan, &book, staff, &embedded, &ad, &ou);

    let first = step("first run", &staff);
    assert_eq!(
        first.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        first.failed
    );
    assert_eq!(first.counts.added, staff.len() + groups().len());
    // Managers were resolved over the whole domain, whose root answers with continuation
    // references: they are skipped, not followed, and nothing panics.
    let bob = samba::dc().search(&ou, "(employeeID=1002)", &["manager"]);
    assert!(
        bob[0].attrs["manager"][0].starts_with("CN=Ann Lee"),
        "{:?}",
        bob[0].attrs
    );

    let again = step("unchanged re-run", &staff);
    assert_eq!(again.counts.unchanged, staff.len() + groups().len());

    staff[5].department = "Finance".into(); // Dana moves from Support to Finance
    support::typical_changes(&mut staff, "Newcomer Jr");
    let changed = step("changes", &staff);
    assert_eq!(changed.counts.added, 1);
    assert_eq!(changed.counts.deleted, 1);
    assert!(changed.counts.updated >= 3, "{:?}", changed.counts);
    assert_eq!(
        changed.updated_id_map.len(),
        2,
        "the rename and the move are listed"
    );
    let dana = samba::dc().search(&ou, "(employeeID=1006)", &["department"]);
    assert!(
        dana[0]
            .dn
            .to_lowercase()
            .starts_with("cn=dana o'brien jr,ou=finance,"),
        "{}",
        dana[0].dn
    );

    let settled = step("unchanged after changes", &staff);
    assert_eq!(settled.counts.unchanged, staff.len() + groups().len());
}

#[test]
fn conformance_on_ad_deprovisioning_disables_and_moves() {
    let ou = samba::dc().ou("deprovision");
    let ad = connect();
    let leavers = format!("OU=Leavers,{}", &*ou);
    let mut job = ad_job(&ou);
    users_only(&mut job);
    job["objectsOption"][0]["isDeprovisioning"] = json!(true);
    support::set_setting(&mut job, "Destination.DeprovisionContainer", &leavers);
    let plan = plan(&job);
    let mut staff = ad_people();
    let book = TempWorkbook::new(&staff);
    let first = support::run_job(&plan, &book.path(), &ad, 4);
    assert_eq!(
        first.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        first.failed
    );
    let leaver = staff.pop().unwrap();
    book.write(&staff, &groups());
    let report = support::run_job(&plan, &book.path(), &ad, 4);
    assert_eq!(report.deleted.len(), 1, "{report:#?}");
    let moved = samba::dc().search(
        &ou,
        &format!("(employeeID={})", leaver.id),
        &["userAccountControl"],
    );
    assert_eq!(moved.len(), 1);
    assert!(
        moved[0]
            .dn
            .to_lowercase()
            .ends_with(&leavers.to_lowercase()),
        "{}",
        moved[0].dn
    );
    let uac: u32 = moved[0].attrs["userAccountControl"][0].parse().unwrap();
    assert_eq!(uac & 2, 2, "the account is disabled");
    let settled = support::run_job(&plan, &book.path(), &ad, 4);
    assert_eq!(settled.counts.unchanged, staff.len());
    assert_eq!(settled.counts.deleted, 0);
}

/// Collects the passwords a run sets, as a host delivering them would.
#[derive(Default)]
struct Passwords(Mutex<Vec<(String, Secret)>>);

impl Hooks for Passwords {
    fn password_set(&self, _: &HookContext, event: &PasswordSet<'_>) -> HookResult {
        self.0
            .lock()
            .unwrap()
            .push((event.dn.to_string(), event.password.clone()));
        Ok(())
    }
}

fn uac_of(dn: &str) -> u32 {
    let found = samba::dc().search(dn, "(objectClass=*)", &["userAccountControl"]);
    found[0].attrs["userAccountControl"][0].parse().unwrap()
}

#[test]
fn created_accounts_are_enabled_and_log_on_with_their_password() {
    let ou = samba::dc().ou("accounts");
    let ad = connect();
    let mut job = ad_job(&ou);
    users_only(&mut job);
    let book = TempWorkbook::new(&ad_people());
    let report = support::run_job(&plan(&job), &book.path(), &ad, 4);
    assert_eq!(
        report.status,
        RunStatus::FinishedSuccess,
        "{:?}",
        report.failed
    );
    for dn in &report.added {
        assert_eq!(uac_of(dn), 512, "{dn} is not a normal, enabled account");
        samba::dc()
            .bind(dn, "webdir123R")
            .unwrap_or_else(|e| panic!("{dn} cannot log on with the job's password: {e}"));
    }

    // Generated passwords: each one is accepted by the domain's default policy, and works.
    let ou2 = format!("OU=Generated,{}", &*ou);
    samba::dc().modify_or_add_ou(&ou2);
    let mut job = ad_job(&ou2);
    users_only(&mut job);
    job["fieldsMap"][12]["options"] = json!(
        "{\"passwordLength\":8,\"includeUppercaseAlphabets\":true,\"includeLowercaseAlphabets\":true,\"includeDigits\":true,\"passwordType\":1}"
    );
    let many: Vec<Person> = support::generated_people(40)
        .into_iter()
        .map(|mut p| {
            p.manager = None;
            p
        })
        .collect();
    let book = TempWorkbook::new(&many);
    let hooks = Passwords::default();
    let mut src = source::open(&book.path()).unwrap();
    let report = datasync::run(
        &plan(&job),
        src.as_mut(),
        &ad,
        &hooks,
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.counts.added, 40, "{:?}", report.failed);
    let set = hooks.0.lock().unwrap();
    assert_eq!(set.len(), 40);
    for (dn, password) in set.iter() {
        samba::dc()
            .bind(dn, password.expose())
            .unwrap_or_else(|e| panic!("{dn} cannot log on with its generated password: {e}"));
    }
}

#[test]
fn accounts_without_a_password_are_disabled_and_a_mapped_value_is_kept() {
    let ou = samba::dc().ou("uac");
    let ad = connect();
    let mut job = ad_job(&ou);
    users_only(&mut job);
    job["fieldsMap"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["destinationField"] != "password");
    let book = TempWorkbook::new(&ad_people()[..2]);
    let report = support::run_job(&plan(&job), &book.path(), &ad, 2);
    assert_eq!(report.counts.added, 2, "{:?}", report.failed);
    for dn in &report.added {
        assert_eq!(uac_of(dn), 514, "{dn}: no password, so disabled");
    }
    // A job that maps userAccountControl keeps its value (66048: enabled, password never expires).
    let ou2 = format!("OU=Mapped,{}", &*ou);
    samba::dc().modify_or_add_ou(&ou2);
    let mut job = ad_job(&ou2);
    users_only(&mut job);
    job["fieldsMap"]
        .as_array_mut()
        .unwrap()
        .push(json!({"objectType": 1, "sourceField": "",
        "destinationField": "userAccountControl", "transform": "Static:value=66048",
        "isKey": false, "forCreateOnly": true}));
    let people: Vec<Person> = ad_people()[..2]
        .iter()
        .map(|p| Person {
            id: p.id + 500,
            email: format!("m{}", p.email),
            first: format!("M{}", p.first),
            ..p.clone()
        })
        .collect();
    let book = TempWorkbook::new(&people);
    let report = support::run_job(&plan(&job), &book.path(), &ad, 2);
    assert_eq!(report.counts.added, 2, "{:?}", report.failed);
    for dn in &report.added {
        assert_eq!(uac_of(dn), 66048);
    }
}

#[test]
fn must_change_password_at_next_logon_is_an_option() {
    let ou = samba::dc().ou("pwdlastset");
    let ad = connect().with_password_change_at_next_logon(true);
    let mut job = ad_job(&ou);
    users_only(&mut job);
    let book = TempWorkbook::new(&ad_people()[..1]);
    let report = support::run_job(&plan(&job), &book.path(), &ad, 1);
    assert_eq!(report.counts.added, 1, "{:?}", report.failed);
    let found = samba::dc().search(&report.added[0], "(objectClass=*)", &["pwdLastSet"]);
    assert_eq!(found[0].attrs["pwdLastSet"], ["0"]);
}

#[test]
fn the_domains_refusals_fail_their_rows_in_plain_words() {
    let ou = samba::dc().ou("refusals");
    let ad = connect();
    // Someone else in the domain already has Ann's account name.
    let elsewhere = format!("OU=Elsewhere,{}", &*ou);
    samba::dc().modify_or_add_ou(&elsewhere);
    let users = format!("OU=Users,{}", &*ou);
    samba::dc().modify_or_add_ou(&users);
    samba::dc().add_user(&format!("CN=Other Ann,{elsewhere}"), "Ann.Lee");

    let mut job = ad_job(&users);
    users_only(&mut job);
    // Passwords from a column: the short one breaks the domain's policy.
    job["fieldsMap"][12]["transform"] = json!("Join:field=Title;separator=-;field=EmployeeID");
    job["fieldsMap"][12]["options"] = json!(null);
    let mut staff: Vec<Person> = ad_people()[..3]
        .iter()
        .map(|p| Person {
            manager: None,
            ..p.clone()
        })
        .collect();
    staff[0].title = "Chair".into(); // Ann: taken account name
    staff[1].title = "x".into(); // Bob: "x-1002", 6 characters, too short
    staff[2].first = "Zo/ë".into(); // Zoë: '/' is not allowed in an account name
    staff[2].title = "Engineer".into();
    let book = TempWorkbook::new(&staff);
    let report = support::run_job(&plan(&job), &book.path(), &ad, 2);
    let message = |id: u32| {
        report
            .failed
            .iter()
            .find(|f| f.key.as_deref() == Some(&id.to_string()))
            .map(|f| f.message.clone())
            .unwrap_or_else(|| panic!("row {id} did not fail: {report:#?}"))
    };
    let ann = message(1001);
    assert!(
        ann.contains("sAMAccountName \"Ann.Lee\" is already used by another object in the domain"),
        "{ann}"
    );
    let bob = message(1002);
    assert!(
        bob.contains("the password does not meet the domain's password policy"),
        "{bob}"
    );
    assert!(
        !bob.contains("x-1002"),
        "the password is in the message: {bob}"
    );
    let zoe = message(1003);
    assert!(zoe.contains("sAMAccountName \"Zo/ë.Müller\""), "{zoe}");
    // No half-created objects.
    let left = samba::dc().search(&users, "(objectClass=user)", &["cn"]);
    assert!(
        left.is_empty(),
        "{:?}",
        left.iter().map(|e| &e.dn).collect::<Vec<_>>()
    );
}

#[test]
fn tls_connects_where_ldapsearch_does_and_says_why_it_refuses() {
    let _ou = samba::dc().ou("tls");
    // Samba's certificate names localhost in its CN only: with the CA that signed it, it
    // connects (as every other test here does).
    connect();
    // By another name than the certificate's, it is refused, saying so.
    let mut by_ip = samba::dc().config();
    by_ip.url = "ldaps://127.0.0.1".into();
    let e = LdapDirectory::connect(by_ip, ServerKind::ActiveDirectory).unwrap_err();
    assert!(
        e.to_string().contains("is for localhost, not 127.0.0.1"),
        "{e}"
    );
    // Another CA does not vouch for it.
    let other = tempfile::tempdir().unwrap();
    support::slapd::write_certificates(other.path(), support::slapd::ServerCertificate::CaSigned);
    let mut untrusted = samba::dc().config();
    untrusted.tls_verify = TlsVerify::CaFile(other.path().join("ca.pem"));
    let e = LdapDirectory::connect(untrusted, ServerKind::ActiveDirectory).unwrap_err();
    assert!(
        e.to_string().contains("not signed by a CA in --ca-file"),
        "{e}"
    );
}

/// The seed job through the command line, as a new user runs it against a fresh domain.
#[test]
fn the_cli_runs_the_seed_job_against_ad_and_its_users_log_on() {
    let ou = samba::dc().ou("cli");
    let dir = tempfile::tempdir().unwrap();
    let book = TempWorkbook::new(&people());
    let mut job = main_job();
    // The seed job as it is, only moved into this test's OU.
    let text = job.to_string().replace("OU=API,DC=groupid,DC=lab", &ou);
    job = serde_json::from_str(&text).unwrap();
    support::set_setting(&mut job, "Source.File", &book.path().display().to_string());
    let job_path = dir.path().join("job.json");
    std::fs::write(&job_path, job.to_string()).unwrap();
    let out = std::process::Command::new(support::datasync_binary())
        .arg("run")
        .arg(&job_path)
        .args([
            "--destination",
            &samba::dc().url(),
            "--bind-dn",
            ADMIN_DN,
            "--ca-file",
        ])
        .arg(samba::dc().ca_file())
        .env("DATASYNC_BIND_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(ADMIN_PASSWORD));
    // AD refuses what the seed data asks of it in two places, and says so row by row: a `,`
    // in an account name, and two values for the single-valued telephoneNumber. A user whose
    // manager is one of those is created without a manager: the reference to an object the
    // run did not create is taken back, never sent, and the report says so.
    let users = samba::dc().search(&ou, "(objectClass=user)", &["userAccountControl"]);
    assert_eq!(users.len(), 5, "{stderr}");
    for user in &users {
        assert_eq!(user.attrs["userAccountControl"], ["512"], "{}", user.dn);
        samba::dc()
            .bind(&user.dn, "webdir123R")
            .unwrap_or_else(|e| panic!("{} cannot log on: {e}\n{stderr}", user.dn));
    }
    let jose = samba::dc().search(&ou, "(employeeID=1004)", &["manager"]);
    assert_eq!(jose.len(), 1, "{stderr}");
    assert!(
        !jose[0].attrs.contains_key("manager"),
        "{:?}",
        jose[0].attrs
    );
    for said in [
        "the domain refuses sAMAccountName \"Dana.O'Brien, Jr\"",
        "telephoneNumber holds one value in this domain, and the row gives 2",
        "row 5: fieldsMap[10] (manager): CN=Bob Stone,",
        "left out: row 3 did not create it",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
}

#[test]
fn system_attributes_cannot_be_mapped() {
    for attribute in ["objectGUID", "objectSid", "whenCreated", "uSNChanged"] {
        let mut job = main_job();
        job["fieldsMap"][7]["destinationField"] = json!(attribute);
        let wire = support::wire(&job);
        let e = datasync::plan::compile(&wire, &Default::default()).unwrap_err();
        assert!(e.to_string().contains("set by the directory"), "{e}");
    }
}

#[test]
fn generated_passwords_that_cannot_meet_the_domain_policy_are_refused_before_anything_is_written() {
    let ou = samba::dc().ou("policy");
    let ad = connect();
    let mut job = ad_job(&ou);
    users_only(&mut job);
    // Lower case and digits only: two kinds, where the domain asks for three.
    job["fieldsMap"][12]["options"] = json!(
        "{\"passwordLength\":12,\"includeLowercaseAlphabets\":true,\"includeDigits\":true,\"passwordType\":1}"
    );
    let book = TempWorkbook::new(&ad_people());
    let mut src = source::open(&book.path()).unwrap();
    let e = datasync::run(
        &plan(&job),
        src.as_mut(),
        &ad,
        &datasync::NoHooks,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "cannot meet the domain's password policy (at least 7 characters, of three kinds"
        ),
        "{e}"
    );
    assert!(
        samba::dc()
            .search(&ou, "(objectClass=user)", &["cn"])
            .is_empty()
    );
}

/// Kills Samba after `after` creates, from the hook that sees them.
struct KillAfter {
    added: std::sync::atomic::AtomicUsize,
    after: usize,
}

impl Hooks for KillAfter {
    fn row_added(&self, _: &HookContext, _: &datasync::hooks::RowWrite) -> HookResult {
        let n = self.added.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == self.after {
            samba::dc().kill();
        }
        Ok(())
    }
}

#[test]
fn a_domain_controller_killed_mid_run_ends_the_run_and_a_rerun_converges() {
    let ou = samba::dc().ou("killed");
    let mut config = samba::dc().config();
    config.retry.attempts = 2;
    let ad = LdapDirectory::connect(config, ServerKind::ActiveDirectory).unwrap();
    let mut job = ad_job(&ou);
    users_only(&mut job);
    let plan = plan(&job);
    let staff = support::generated_people(400);
    let book = TempWorkbook::new(&staff);
    let hooks = KillAfter {
        added: Default::default(),
        after: 100,
    };
    let mut src = source::open(&book.path()).unwrap();
    let options = RunOptions {
        threads: 4,
        ..Default::default()
    };
    let report = datasync::run(&plan, src.as_mut(), &ad, &hooks, &options).unwrap();
    samba::dc().launch();
    assert_eq!(report.status, RunStatus::FinishedFail);
    assert!(report.counts.added >= 100, "{:?}", report.counts);
    assert_eq!(
        report.counts.added + report.counts.failed,
        report.counts.read,
        "every row is accounted for: {:?}",
        report.counts
    );
    // Back up: the same job converges to what a clean run into the embedded directory gives.
    // Its scan reads the OU in pages of 50 (AD's own limit is 1,000 a page): every page.
    let mut paged = samba::dc().config();
    paged.page_size = 50;
    let ad = LdapDirectory::connect(paged, ServerKind::ActiveDirectory).unwrap();
    let rerun = support::run_job(&plan, &book.path(), &ad, 4);
    assert_eq!(rerun.counts.failed, 0, "{:?}", rerun.failed.first());
    let expected = LdifDirectory::in_memory();
    let mut base_entry = datasync::Entry::new(ou.to_string());
    base_entry.set("objectClass", vec!["organizationalUnit".into()]);
    expected.add(&base_entry, None).unwrap();
    support::run_job(&plan, &book.path(), &expected, 2);
    assert_eq!(snapshot(&ad, &ou), snapshot(&expected, &ou));
    let settled = support::run_job(&plan, &book.path(), &ad, 4);
    assert_eq!(settled.counts.unchanged, settled.counts.read);
}

/// Active Directory hands a large attribute out range by range (`member;range=0-1499`, then
/// what is asked for next); Samba answers a plain request whole but honours the ranges it is
/// asked for. The destination reads a 1,600-member group whole, however small its window, in a
/// search and in a read of the one entry, and gives the attribute its plain name.
#[test]
fn large_groups_are_read_whole_range_by_range() {
    use std::collections::HashSet;
    const MEMBERS: usize = 1_600;
    let ou = samba::dc().ou("ranges");
    let mut conn = samba::dc()
        .admin()
        .unwrap_or_else(|e| panic!("admin bind: {e}"));
    let mut expected = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let dn = format!("CN=rng{i:04},{}", &*ou);
        conn.add(
            &dn,
            vec![
                ("objectClass", HashSet::from(["user"])),
                (
                    "sAMAccountName",
                    HashSet::from([format!("rng{i:04}").as_str()]),
                ),
                ("userAccountControl", HashSet::from(["514"])),
            ],
        )
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("cannot create {dn}: {e}"));
        expected.push(dn::normalize(&dn).unwrap());
    }
    expected.sort();
    let group = format!("CN=rngbig,{}", &*ou);
    conn.add(
        &group,
        vec![
            ("objectClass", HashSet::from(["group"])),
            ("sAMAccountName", HashSet::from(["rngbig"])),
        ],
    )
    .and_then(|r| r.success())
    .unwrap_or_else(|e| panic!("cannot create {group}: {e}"));
    for batch in expected.chunks(400) {
        let values: HashSet<&str> = batch.iter().map(String::as_str).collect();
        conn.modify(&group, vec![ldap3::Mod::Add("member", values)])
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("cannot fill {group}: {e}"));
    }
    let members = |e: &datasync::Entry| {
        let mut found: Vec<String> = e
            .get("member")
            .iter()
            .map(|d| dn::normalize(d).unwrap())
            .collect();
        found.sort();
        found
    };
    let member = vec!["member".to_string()];
    let groups = Filter::Equal("objectClass".into(), "group".into());
    // 300 and 1,599 take several windows and end on a short one; 1,600 ends exactly at the
    // last value; 1,500 is Active Directory's own.
    for window in [300, 1_500, 1_599, 1_600] {
        let ad = connect().with_range_window(window);
        let read = ad.read_entry(&group, &member).unwrap().unwrap();
        assert!(
            read.attributes().iter().all(|a| !a.name.contains(';')),
            "window {window}: {:?}",
            read.attributes()
                .iter()
                .map(|a| &a.name)
                .collect::<Vec<_>>()
        );
        assert!(
            members(&read) == expected,
            "window {window}: {} members",
            members(&read).len()
        );
        let mut searched = Vec::new();
        ad.search_each(&ou, Scope::Subtree, &groups, &member, &mut |e| {
            searched.push(members(e))
        })
        .unwrap();
        assert_eq!(searched.len(), 1, "window {window}");
        assert!(
            searched[0] == expected,
            "window {window}: {} members",
            searched[0].len()
        );
    }

    // A job creates a group of 10,000 members, the 1,600 users and 8,400 contacts (cheaper for
    // AD to add than accounts): added with the first 1,000 and filled in batches, then read
    // back whole through windows of 300 and AD's own 1,500. Then 100 members leave: only they
    // are deleted, and a re-run leaves the group alone.
    const BIG: usize = 10_000;
    let mut everyone: Vec<String> = (0..MEMBERS).map(|i| format!("rng{i:04}")).collect();
    let mut everyone_dns = expected.clone();
    for i in MEMBERS..BIG {
        let cn = format!("ctc{i:05}");
        let dn = format!("CN={cn},{}", &*ou);
        conn.add(&dn, vec![("objectClass", HashSet::from(["contact"]))])
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("cannot create {dn}: {e}"));
        everyone.push(cn);
        everyone_dns.push(dn::normalize(&dn).unwrap());
    }
    let mut shape = support::MembershipShape::new(&ou);
    shape.delete = false;
    shape.member_key = "cn".into();
    let mut job = support::membership_job(&shape);
    support::groups_only(&mut job);
    let plan = plan(&job);
    // A CSV source: an Excel cell holds at most 32,767 characters, not 10,000 names.
    let book = tempfile::tempdir().unwrap();
    let path = book.path().join("teams.csv");
    let big = format!("CN=Big,OU=Teams,{}", &*ou);
    for (step, count) in [("created", BIG), ("shrunk", BIG - 100)] {
        let mut csv = csv::Writer::from_path(&path).unwrap();
        csv.write_record(["Name", "Members", "Kind"]).unwrap();
        csv.write_record(["Big", &everyone[..count].join(";"), ""])
            .unwrap();
        csv.flush().unwrap();
        let report = support::run_job(&plan, &path, &connect(), 0);
        assert_eq!(
            report.status,
            RunStatus::FinishedSuccess,
            "{step}: {report:?}"
        );
        let mut wanted = everyone_dns[..count].to_vec();
        wanted.sort();
        for window in [300, 1_500] {
            let read = connect()
                .with_range_window(window)
                .read_entry(&big, &member)
                .unwrap()
                .unwrap();
            assert!(
                members(&read) == wanted,
                "{step}, window {window}: {} members",
                members(&read).len()
            );
        }
        let again = support::run_job(&plan, &path, &connect(), 0);
        assert_eq!(again.counts.unchanged, 1, "{step}: {again:?}");
    }
}

/// Group membership on Samba's AD: groups filled from keys, nested, of named kinds; a member
/// renamed and one deleted by the same run (AD changes the groups itself: the run must not
/// fail on it, nor write the groups again); users naming their groups (`memberOf`), which AD
/// then reports on the users.
#[test]
fn groups_on_ad_nest_follow_renamed_members_and_take_users_naming_them() {
    use support::{Member, MembershipShape, membership_job, write_membership_workbook};
    let ou = samba::dc().ou("members");
    let base: &str = &ou;
    let ad = connect();
    let book = tempfile::tempdir().unwrap();
    let path = book.path().join("book.xlsx");
    let mut shape = MembershipShape::new(base);
    shape.group_type = true;
    let filling = plan(&membership_job(&shape));
    let person = |cn: &str| dn::normalize(&format!("CN={cn},OU=People,{base}")).unwrap();
    let group = |cn: &str| dn::normalize(&format!("CN={cn},OU=Teams,{base}")).unwrap();
    let values = |dn: &str, attribute: &str| -> Vec<String> {
        let mut found: Vec<String> = ad
            .read_entry(dn, &[attribute.to_string()])
            .unwrap()
            .unwrap_or_else(|| panic!("no {dn}"))
            .get(attribute)
            .iter()
            .map(|v| dn::normalize(v).unwrap_or_else(|_| v.clone()))
            .collect();
        found.sort();
        found
    };
    let mut people = vec![
        Member::new(1, "Ann", "Lee", ""),
        Member::new(2, "Bob", "Stone", ""),
        Member::new(3, "Cy", "Young", ""),
        Member::new(4, "Dee", "Dunn", ""),
    ];
    write_membership_workbook(
        &path,
        &people,
        &[
            ("Leads", "Ann.Lee;Staff;Nobody", "universal distribution"),
            ("Staff", "Bob.Stone;Cy.Young", ""),
        ],
    );
    let first = support::run_job(&filling, &path, &ad, 0);
    assert_eq!(first.status, RunStatus::FinishedSuccess, "{first:?}");
    assert_eq!(first.counts.added, 6);
    assert_eq!(
        values(&group("Leads"), "member"),
        [person("Ann Lee"), group("Staff")]
    );
    assert_eq!(
        values(&group("Staff"), "member"),
        [person("Bob Stone"), person("Cy Young")]
    );
    assert_eq!(values(&group("Leads"), "groupType"), ["8"]);
    assert_eq!(values(&group("Staff"), "groupType"), ["-2147483646"]);
    // AD computes memberOf from the groups: the nested group and the user show it.
    assert_eq!(values(&person("Ann Lee"), "memberOf"), [group("Leads")]);
    assert_eq!(values(&group("Staff"), "memberOf"), [group("Leads")]);
    assert!(
        first.details.iter().any(|d| d.details_type == 1
            && d.message
                .contains("\"Nobody\" left out: no object has sAMAccountName=Nobody")),
        "{first:?}"
    );
    let same = support::run_job(&filling, &path, &ad, 0);
    assert_eq!(same.counts.unchanged, 6, "{same:?}");

    // Ann is renamed (AD moves her DN in Leads itself), Bob leaves the company (AD takes him
    // out of Staff), and Staff swaps Cy for Dee and Ann.
    people[0].last = "Park".into();
    people.remove(1);
    write_membership_workbook(
        &path,
        &people,
        &[
            ("Leads", "Ann.Park;Staff", "universal distribution"),
            ("Staff", "Dee.Dunn;Ann.Park", ""),
        ],
    );
    let changed = support::run_job(&filling, &path, &ad, 0);
    assert_eq!(changed.status, RunStatus::FinishedSuccess, "{changed:?}");
    assert_eq!(changed.counts.deleted, 1, "{changed:?}");
    assert!(
        !changed
            .modified
            .iter()
            .any(|d| dn::normalize(d).unwrap() == group("Leads")),
        "Leads was written again: {changed:?}"
    );
    assert_eq!(
        values(&group("Leads"), "member"),
        [person("Ann Park"), group("Staff")]
    );
    assert_eq!(
        values(&group("Staff"), "member"),
        [person("Ann Park"), person("Dee Dunn")]
    );

    // Users name their groups; the job no longer fills them.
    let mut shape = MembershipShape::new(base);
    shape.member_of = true;
    shape.group_type = true;
    let by_users = plan(&membership_job(&shape));
    people[0].groups = "Staff".into(); // Ann leaves Leads
    people[1].groups = "Leads;Staff".into(); // Cy joins both
    people[2].groups = String::new(); // Dee leaves Staff
    write_membership_workbook(
        &path,
        &people,
        &[("Leads", "", "universal distribution"), ("Staff", "", "")],
    );
    let joined = support::run_job(&by_users, &path, &ad, 0);
    assert_eq!(joined.status, RunStatus::FinishedSuccess, "{joined:?}");
    assert_eq!(
        values(&group("Leads"), "member"),
        [person("Cy Young"), group("Staff")]
    );
    assert_eq!(
        values(&group("Staff"), "member"),
        [person("Ann Park"), person("Cy Young")]
    );
    assert_eq!(
        values(&person("Cy Young"), "memberOf"),
        [group("Leads"), group("Staff")]
    );
    let same = support::run_job(&by_users, &path, &ad, 0);
    assert_eq!(same.counts.unchanged, 5, "{same:?}");
    assert!(same.modified.is_empty(), "{same:?}");
}

/// A binary attribute on AD: `thumbnailPhoto` is carried as base64 in datasync and sent as
/// its bytes; read back, the same base64. A value that is not base64 is refused, not sent as
/// text.
#[test]
fn photos_go_to_ad_as_bytes_and_read_back_as_the_same_base64() {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let ou = samba::dc().ou("photos");
    let ad = connect();
    let photo = [0xffu8, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x80, 0x00];
    let dn = format!("CN=Photo Person,{}", &*ou);
    let mut entry = datasync::Entry::new(&dn);
    entry.set("objectClass", vec!["contact".into()]);
    entry.set("cn", vec!["Photo Person".into()]);
    entry.set("thumbnailPhoto", vec![b64(&photo)]);
    ad.add(&entry, None).unwrap_or_else(|e| panic!("{e}"));
    let raw = |dn: &str| -> Vec<Vec<u8>> {
        let found = samba::dc().search(dn, "(objectClass=*)", &["thumbnailPhoto"]);
        let mut values: Vec<Vec<u8>> = found[0].bin_attrs.values().flatten().cloned().collect();
        values.extend(
            found[0]
                .attrs
                .values()
                .flatten()
                .map(|v| v.as_bytes().to_vec()),
        );
        values
    };
    assert_eq!(raw(&dn), vec![photo.to_vec()]);
    let read = ad
        .read_entry(&dn, &["thumbnailPhoto".into()])
        .unwrap()
        .unwrap();
    assert_eq!(read.get("thumbnailPhoto"), [b64(&photo)]);

    ad.modify(
        &dn,
        &[datasync::destination::Modification::Replace(
            "thumbnailPhoto".into(),
            vec![b64(&[1, 2, 3])],
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw(&dn), vec![vec![1u8, 2, 3]]);
    let err = ad
        .modify(
            &dn,
            &[datasync::destination::Modification::Replace(
                "thumbnailPhoto".into(),
                vec!["not a photo!".into()],
            )],
        )
        .unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
    assert_eq!(raw(&dn), vec![vec![1u8, 2, 3]]);
}
