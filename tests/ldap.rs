//! The LDAP destination and source against a real OpenLDAP `slapd` that each test starts for
//! itself (see `support/slapd.rs`). These tests fail, never skip, when slapd cannot start.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use datasync::destination::{LdapDirectory, Scope, ServerKind};
use datasync::ldap::{LdapConfig, Security, TlsVerify};
use datasync::query::Filter;
use datasync::report::Counts;
use datasync::transform::TransformContext;
use datasync::{
    Destination, DestinationError, Entry, LdifDirectory, NoHooks, Plan, Report, RunOptions,
    RunStatus, Secret, dn, job, source,
};
use serde_json::Value;
use support::slapd::{ADMIN_DN, ADMIN_PASSWORD, SUFFIX, Slapd};
use support::{Person, groups, people, write_workbook};

fn main_job() -> Value {
    let text = std::fs::read_to_string("fixtures/jobs/excel-to-ad.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The main job with its destination moved under `dc=lab`, the suffix the test server holds.
fn lab_job(job: &Value) -> Value {
    let text = job
        .to_string()
        .replace("DC=groupid,DC=lab", "OU=groupid,DC=lab");
    serde_json::from_str(&text).unwrap()
}

fn plan(job: &Value) -> Plan {
    let wire = job::from_json(&job.to_string(), "test").unwrap();
    job::compile(&wire, &TransformContext::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn run(plan: &Plan, workbook: &Path, dir: &dyn Destination, threads: usize) -> Report {
    let mut src = source::open(workbook).unwrap();
    let options = RunOptions {
        threads,
        ..Default::default()
    };
    datasync::run(plan, src.as_mut(), dir, &NoHooks, &options).unwrap_or_else(|e| panic!("{e}"))
}

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
    entries
        .into_iter()
        .map(|e| {
            let attrs = e
                .attributes()
                .iter()
                .filter(|a| {
                    !["userpassword", "unicodepwd"].contains(&a.name.to_lowercase().as_str())
                })
                .map(|a| {
                    let mut values: Vec<String> = a
                        .values
                        .iter()
                        .map(|v| match dn::normalize(v) {
                            Ok(n) if v.contains('=') => n,
                            _ => v.clone(),
                        })
                        .collect();
                    values.sort();
                    (a.name.to_lowercase(), values)
                })
                .collect();
            (dn::normalize(&e.dn).unwrap(), attrs)
        })
        .collect()
}

fn counts(r: &Report) -> Counts {
    r.counts.clone()
}

struct Workbook {
    dir: tempfile::TempDir,
}

impl Workbook {
    fn new(people: &[Person]) -> Workbook {
        let w = Workbook {
            dir: tempfile::tempdir().unwrap(),
        };
        w.write(people);
        w
    }
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("people.xlsx")
    }
    /// Writes the workbook. OpenLDAP's core schema defines `mail` as IA5String (RFC 4524, ASCII
    /// only) where AD takes Unicode, so non-ASCII mail addresses are spelled in ASCII here; every
    /// other value keeps its Unicode (`userPrincipalName` is ours and takes it).
    fn write(&self, people: &[Person]) {
        let ascii: Vec<Person> = people
            .iter()
            .map(|p| Person {
                email: ascii_mail(&p.email),
                ..p.clone()
            })
            .collect();
        write_workbook(&self.path(), &ascii, &groups());
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

    let step = |name: &str, staff: &[Person]| {
        book.write(staff);
        let a = run(&plan, &book.path(), &embedded, 2);
        let b = run(&plan, &book.path(), &ldap, 4);
        assert_eq!(
            counts(&a),
            counts(&b),
            "{name}: counts differ: {:#?}",
            b.failed
        );
        assert_eq!(a.failed, b.failed, "{name}: failures differ");
        assert_eq!(
            snapshot(&embedded, SUFFIX),
            snapshot(&ldap, SUFFIX),
            "{name}: entries differ"
        );
        b
    };

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
    staff[1].title = "Chief Sales Officer".into();
    staff[2].last = format!("{}-Renamed", staff[2].last);
    staff[3].manager = Some(staff[1].id);
    let gone = staff.remove(4);
    let mut newcomer = staff[0].clone();
    newcomer.id = 9001;
    newcomer.first = "Zoë".into();
    newcomer.last = "Newcomer, Jr".into();
    newcomer.email = "zoe.newcomer@groupid.lab".into();
    staff.push(newcomer);
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
