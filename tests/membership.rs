//! Group membership on the embedded directories (the SQLite store and the LDIF directory):
//! groups filled from the source's keys, users naming their groups, exact value changes,
//! renamed and deleted members, large groups and group kinds. The same behaviour on slapd
//! and Samba AD is tested in `ldap.rs` and `ad.rs`.

mod support;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;

use datasync::destination::{Capabilities, DestinationError, Modification, Scope};
use datasync::hooks::{HookContext, HookResult, RowWrite, ValueChanges};
use datasync::query::Filter;
use datasync::{
    Destination, Entry, Hooks, LdifDirectory, NoHooks, Plan, Report, RunOptions, RunStatus, Secret,
    Store, dn,
};
use support::{Member, MembershipShape, membership_job, write_membership_workbook};

const BASE: &str = "OU=Sync,DC=groupid,DC=lab";

fn person_dn(p: &Member) -> String {
    dn::child("CN", &p.cn(), &format!("OU=People,{BASE}"))
}

fn team_dn(name: &str) -> String {
    dn::child("CN", name, &format!("OU=Teams,{BASE}"))
}

fn plan(shape: &MembershipShape) -> Plan {
    support::compile(&membership_job(shape), &Default::default())
}

fn run(plan: &Plan, workbook: &Path, dir: &dyn Destination, hooks: &dyn Hooks) -> Report {
    let mut source = datasync::source::open(workbook).unwrap_or_else(|e| panic!("{e}"));
    datasync::run(plan, source.as_mut(), dir, hooks, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The normal forms of the values of `attribute` at `dn`.
fn dns_of(dir: &dyn Destination, dn: &str, attribute: &str) -> BTreeSet<String> {
    let entry = dir
        .read_entry(dn, &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no {dn}"));
    entry
        .get(attribute)
        .iter()
        .map(|v| dn::normalize(v).unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect()
}

fn normal(dns: &[String]) -> BTreeSet<String> {
    dns.iter().map(|d| dn::normalize(d).unwrap()).collect()
}

fn warnings(report: &Report) -> Vec<&str> {
    report
        .details
        .iter()
        .filter(|d| d.details_type == 1)
        .map(|d| d.message.as_str())
        .collect()
}

/// The two embedded directories, fresh: the SQLite store (the default destination) and the
/// LDIF directory.
fn directories() -> Vec<(&'static str, Box<dyn Destination>, tempfile::TempDir)> {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path().join("directory.db")).unwrap();
    let ldif_dir = tempfile::tempdir().unwrap();
    vec![
        ("store", Box::new(store), store_dir),
        ("ldif", Box::new(LdifDirectory::in_memory()), ldif_dir),
    ]
}

fn staff() -> Vec<Member> {
    vec![
        Member::new(1, "Ann", "Lee", ""),
        Member::new(2, "Bob", "Stone", ""),
        Member::new(3, "Cy", "Young", ""),
        Member::new(4, "Dee", "Dunn", ""),
    ]
}

/// Every modify a run makes, beside the directory it passes them to.
struct Recorder<'a> {
    inner: &'a dyn Destination,
    modifies: Mutex<Vec<(String, Vec<Modification>)>>,
    adds: Mutex<Vec<Entry>>,
}

impl<'a> Recorder<'a> {
    fn new(inner: &'a dyn Destination) -> Recorder<'a> {
        Recorder {
            inner,
            modifies: Mutex::new(Vec::new()),
            adds: Mutex::new(Vec::new()),
        }
    }
    fn modifies_of(&self, dn: &str) -> Vec<Vec<Modification>> {
        let wanted = dn::normalize(dn).unwrap();
        self.modifies
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| dn::normalize(d).unwrap() == wanted)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

impl Destination for Recorder<'_> {
    fn search_each(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), DestinationError> {
        self.inner
            .search_each(base, scope, filter, attributes, each)
    }
    fn exists(&self, dn: &str) -> Result<bool, DestinationError> {
        self.inner.exists(dn)
    }
    fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
        self.adds.lock().unwrap().push(entry.clone());
        self.inner.add(entry, password)
    }
    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        self.modifies
            .lock()
            .unwrap()
            .push((dn.to_string(), changes.to_vec()));
        self.inner.modify(dn, changes)
    }
    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError> {
        self.inner.rename(dn, new_dn)
    }
    fn delete(&self, dn: &str) -> Result<(), DestinationError> {
        self.inner.delete(dn)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn commit(&self) -> Result<(), DestinationError> {
        self.inner.commit()
    }
}

#[test]
fn groups_get_their_members_from_keys_whatever_the_row_order() {
    for (name, dir, tmp) in directories() {
        let people = staff();
        let book = tmp.path().join("book.xlsx");
        // Leads names Staff, a group on a later row; the job lists the groups first, yet the
        // users they name are created by the same run. A key given twice counts once; an
        // unknown one is left out with a warning.
        write_membership_workbook(
            &book,
            &people,
            &[
                ("Leads", "Ann.Lee; Staff ;ann.lee;Nobody.Here", ""),
                ("Staff", "Bob.Stone;Cy.Young;Dee.Dunn", ""),
            ],
        );
        let plan = plan(&MembershipShape::new(BASE));
        let report = run(&plan, &book, dir.as_ref(), &NoHooks);
        assert_eq!(
            report.status,
            RunStatus::FinishedSuccess,
            "{name}: {report:?}"
        );
        assert_eq!(report.counts.added, 6, "{name}");
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Leads"), "member"),
            normal(&[person_dn(&people[0]), team_dn("Staff")]),
            "{name}"
        );
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Staff"), "member"),
            normal(&people[1..].iter().map(person_dn).collect::<Vec<_>>()),
            "{name}"
        );
        let warned = warnings(&report);
        assert_eq!(warned.len(), 1, "{name}: {warned:?}");
        assert!(
            // Rows are numbered as the sheet shows them: Leads is on row 2, under the header.
            warned[0].contains("row 2:")
                && warned[0].contains("fieldsMap[2] (member)")
                && warned[0]
                    .contains("\"Nobody.Here\" left out: no object has sAMAccountName=Nobody.Here"),
            "{name}: {}",
            warned[0]
        );

        // The same source again writes nothing.
        let recorder = Recorder::new(dir.as_ref());
        let again = run(&plan, &book, &recorder, &NoHooks);
        assert_eq!(again.counts.unchanged, 6, "{name}: {again:?}");
        assert!(recorder.modifies.lock().unwrap().is_empty(), "{name}");
        assert!(recorder.adds.lock().unwrap().is_empty(), "{name}");
    }
}

#[test]
fn a_key_that_names_several_objects_is_left_out_and_the_group_still_written() {
    let (_, dir, tmp) = directories().remove(1);
    let mut people = staff();
    // Two people named Bob: `Bob` names both.
    people.push(Member::new(5, "Bob", "Marley", ""));
    let book = tmp.path().join("book.xlsx");
    write_membership_workbook(&book, &people, &[("Leads", "Ann;Bob", "")]);
    let mut shape = MembershipShape::new(BASE);
    shape.member_key = "givenName".into();
    let report = run(&plan(&shape), &book, dir.as_ref(), &NoHooks);
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    let warned = warnings(&report);
    assert!(
        warned.len() == 1
            && warned[0].contains("\"Bob\" left out: Resolve: 2 objects have givenName=Bob")
            && warned[0].contains(&person_dn(&people[1]))
            && warned[0].contains(&person_dn(&people[4])),
        "{warned:?}"
    );
    assert_eq!(
        dns_of(dir.as_ref(), &team_dn("Leads"), "member"),
        normal(&[person_dn(&people[0])])
    );
}

/// What `row_changing` saw of one write: the DN, the value changes and the names of the
/// replaced attributes.
type Seen = (String, Vec<ValueChanges>, Vec<String>);

/// What `row_changing` saw of each write.
#[derive(Default)]
struct SeesValueChanges(Mutex<Vec<Seen>>);

impl Hooks for SeesValueChanges {
    fn row_changing(&self, _: &HookContext, write: &mut RowWrite) -> HookResult<ControlFlow<()>> {
        self.0.lock().unwrap().push((
            write.dn.clone(),
            write.value_changes.clone(),
            write
                .attributes
                .iter()
                .map(|(n, _)| n.to_string())
                .collect(),
        ));
        Ok(ControlFlow::Continue(()))
    }
}

#[test]
fn a_changed_group_gets_exactly_its_added_and_removed_members() {
    for (name, dir, tmp) in directories() {
        let people = staff();
        let book = tmp.path().join("book.xlsx");
        let shape = MembershipShape::new(BASE);
        write_membership_workbook(
            &book,
            &people,
            &[("Staff", "Ann.Lee;Bob.Stone;Cy.Young", "")],
        );
        let plan = plan(&shape);
        run(&plan, &book, dir.as_ref(), &NoHooks);

        // Bob leaves, Dee joins; Ann and Cy stay.
        write_membership_workbook(
            &book,
            &people,
            &[("Staff", "Ann.Lee;Cy.Young;Dee.Dunn", "")],
        );
        let recorder = Recorder::new(dir.as_ref());
        let hooks = SeesValueChanges::default();
        let report = run(&plan, &book, &recorder, &hooks);
        assert_eq!(
            report.status,
            RunStatus::FinishedSuccess,
            "{name}: {report:?}"
        );
        assert_eq!(report.counts.updated, 1, "{name}: {report:?}");
        let staff_dn = team_dn("Staff");
        let modifies = recorder.modifies_of(&staff_dn);
        assert_eq!(modifies.len(), 1, "{name}: {modifies:?}");
        let changes = &modifies[0];
        assert_eq!(
            changes,
            &vec![
                Modification::DeleteValues("member".into(), vec![person_dn(&people[1])]),
                Modification::AddValues("member".into(), vec![person_dn(&people[3])]),
            ],
            "{name}"
        );
        assert_eq!(
            dns_of(dir.as_ref(), &staff_dn, "member"),
            normal(&[
                person_dn(&people[0]),
                person_dn(&people[2]),
                person_dn(&people[3])
            ]),
            "{name}"
        );
        // The hook saw the members added and removed, and no whole-list replace.
        let seen = hooks.0.lock().unwrap();
        assert_eq!(seen.len(), 1, "{name}");
        assert_eq!(
            seen[0].1,
            vec![ValueChanges {
                attribute: "member".into(),
                added: vec![person_dn(&people[3])],
                removed: vec![person_dn(&people[1])],
            }],
            "{name}"
        );
        assert!(seen[0].2.is_empty(), "{name}: {:?}", seen[0].2);
    }
}

/// A hook that drops one member from every change, as a host may.
struct KeepsBob(String);

impl Hooks for KeepsBob {
    fn row_changing(&self, _: &HookContext, write: &mut RowWrite) -> HookResult<ControlFlow<()>> {
        for c in &mut write.value_changes {
            c.removed.retain(|dn| dn != &self.0);
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[test]
fn what_row_changing_leaves_of_the_value_changes_is_written() {
    let (_, dir, tmp) = directories().remove(0);
    let people = staff();
    let book = tmp.path().join("book.xlsx");
    let plan = plan(&MembershipShape::new(BASE));
    write_membership_workbook(&book, &people, &[("Staff", "Ann.Lee;Bob.Stone", "")]);
    run(&plan, &book, dir.as_ref(), &NoHooks);
    write_membership_workbook(&book, &people, &[("Staff", "Ann.Lee;Cy.Young", "")]);
    run(&plan, &book, dir.as_ref(), &KeepsBob(person_dn(&people[1])));
    assert_eq!(
        dns_of(dir.as_ref(), &team_dn("Staff"), "member"),
        normal(&[
            person_dn(&people[0]),
            person_dn(&people[1]),
            person_dn(&people[2])
        ])
    );
}

#[test]
fn renamed_members_keep_their_groups_under_the_new_dn_and_deleted_ones_leave() {
    for (name, dir, tmp) in directories() {
        let mut people = staff();
        let book = tmp.path().join("book.xlsx");
        let mut shape = MembershipShape::new(BASE);
        shape.member_key = "employeeID".into();
        let plan = plan(&shape);
        write_membership_workbook(&book, &people, &[("Staff", "1;2;3", "")]);
        run(&plan, &book, dir.as_ref(), &NoHooks);
        // A group this job does not fill, in its scope, naming the same people.
        let manual_dn = format!("CN=Manual,OU=Sync,{}", "DC=groupid,DC=lab");
        let mut manual = Entry::new(&manual_dn);
        manual.set("objectClass", vec!["top".into(), "group".into()]);
        manual.set(
            "member",
            vec![
                person_dn(&people[0]),
                person_dn(&people[1]),
                person_dn(&people[3]),
            ],
        );
        dir.add(&manual, None).unwrap();
        dir.commit().unwrap();

        // Ann marries and is renamed; Bob leaves the company (his row goes, and he is deleted).
        let old_ann = person_dn(&people[0]);
        people[0].last = "Park".into();
        people.remove(1);
        write_membership_workbook(&book, &people, &[("Staff", "1;2;3", "")]);
        let report = run(&plan, &book, dir.as_ref(), &NoHooks);
        assert_eq!(report.counts.deleted, 1, "{name}: {report:?}");
        assert!(
            report.updated_id_map.contains_key(&old_ann),
            "{name}: {report:?}"
        );
        let ann = person_dn(&people[0]);
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Staff"), "member"),
            normal(&[ann.clone(), person_dn(&people[1])]),
            "{name}: {report:?}"
        );
        assert_eq!(
            dns_of(dir.as_ref(), &manual_dn, "member"),
            normal(&[ann, person_dn(&people[2])]),
            "{name}: {report:?}"
        );
        // The group's own row did not need to write: the run had already moved Ann's DN and
        // taken Bob out, and it compares the members through those changes.
        assert!(
            !report.modified.iter().any(|d| *d == team_dn("Staff")),
            "{name}: {report:?}"
        );
        // Bob's key is still in the sheet: left out, with a warning naming it.
        assert!(
            warnings(&report)
                .iter()
                .any(|w| w.contains("\"2\" left out: no object has employeeID=2")),
            "{name}: {report:?}"
        );
    }
}

#[test]
fn users_naming_their_groups_join_and_leave_them_and_memberof_is_never_written() {
    for (name, dir, tmp) in directories() {
        let mut people = staff();
        people[0].groups = "Sales;Support".into();
        people[1].groups = "sales".into();
        people[2].groups = "Support;Elsewhere".into();
        let book = tmp.path().join("book.xlsx");
        let mut shape = MembershipShape::new(BASE);
        shape.member_of = true;
        let plan = plan(&shape);
        // The people as they are now, run through `destination` with `hooks`.
        let step = |people: &[Member], destination: &dyn Destination, hooks: &dyn Hooks| {
            write_membership_workbook(&book, people, &[("Sales", "", ""), ("Support", "", "")]);
            let report = run(&plan, &book, destination, hooks);
            assert_eq!(
                report.status,
                RunStatus::FinishedSuccess,
                "{name}: {report:?}"
            );
            report
        };
        let report = step(&people, dir.as_ref(), &NoHooks);
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Sales"), "member"),
            normal(&[person_dn(&people[0]), person_dn(&people[1])]),
            "{name}"
        );
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Support"), "member"),
            normal(&[person_dn(&people[0]), person_dn(&people[2])]),
            "{name}"
        );
        assert!(
            warnings(&report).iter().any(|w| w.contains("row 4:")
                && w.contains(
                    "\"Elsewhere\" left out: no group in the job's scope has cn=Elsewhere"
                )),
            "{name}: {report:?}"
        );
        for p in &people {
            let user = dir.read_entry(&person_dn(p), &[]).unwrap().unwrap();
            assert!(user.get("memberOf").is_empty(), "{name}: {user:?}");
        }
        assert!(
            report.modified.contains(&team_dn("Sales")),
            "{name}: {report:?}"
        );

        // Unchanged: nothing written.
        let recorder = Recorder::new(dir.as_ref());
        let again = run(&plan, &book, &recorder, &NoHooks);
        assert_eq!(again.counts.unchanged, 6, "{name}: {again:?}");
        assert!(recorder.modifies.lock().unwrap().is_empty(), "{name}");

        // Ann leaves Support; Bob's cell is emptied (he leaves Sales); Dee joins Support.
        people[0].groups = "Sales".into();
        people[1].groups = String::new();
        people[3].groups = "SUPPORT".into();
        let recorder = Recorder::new(dir.as_ref());
        let hooks = SeesValueChanges::default();
        let report = step(&people, &recorder, &hooks);
        assert_eq!(report.counts.updated, 3, "{name}: {report:?}");
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Sales"), "member"),
            normal(&[person_dn(&people[0])]),
            "{name}"
        );
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Support"), "member"),
            normal(&[person_dn(&people[2]), person_dn(&people[3])]),
            "{name}"
        );
        // One modify per group, none on a user.
        assert_eq!(recorder.modifies_of(&team_dn("Support")).len(), 1, "{name}");
        assert_eq!(recorder.modifies_of(&team_dn("Sales")).len(), 1, "{name}");
        assert_eq!(recorder.modifies.lock().unwrap().len(), 2, "{name}");
        let seen = hooks.0.lock().unwrap();
        let ann = seen
            .iter()
            .find(|(dn, ..)| *dn == person_dn(&people[0]))
            .unwrap_or_else(|| panic!("{name}: {seen:?}"));
        assert_eq!(
            ann.1,
            vec![ValueChanges {
                attribute: "memberOf".into(),
                added: vec![],
                removed: vec![team_dn("Support")],
            }],
            "{name}"
        );
        drop(seen);

        // Ann is renamed as she leaves Sales for Support: she ends up in Support under her
        // new DN, and nowhere under the old one.
        people[0].last = "Park".into();
        people[0].groups = "Support".into();
        let report = step(&people, dir.as_ref(), &NoHooks);
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Sales"), "member"),
            BTreeSet::new(),
            "{name}: {report:?}"
        );
        assert_eq!(
            dns_of(dir.as_ref(), &team_dn("Support"), "member"),
            normal(&[
                person_dn(&people[0]),
                person_dn(&people[2]),
                person_dn(&people[3])
            ]),
            "{name}: {report:?}"
        );
    }
}

#[test]
fn a_large_group_is_added_first_and_filled_in_batches() {
    let (_, dir, tmp) = directories().remove(0);
    let people: Vec<Member> = (0..2_500)
        .map(|i| Member::new(10_000 + i, &format!("P{i}"), "Many", ""))
        .collect();
    let members: Vec<String> = people.iter().map(|p| p.id.to_string()).collect();
    let book = tmp.path().join("book.xlsx");
    write_membership_workbook(&book, &people, &[("Everyone", &members.join(";"), "")]);
    let mut shape = MembershipShape::new(BASE);
    shape.member_key = "employeeID".into();
    let plan = plan(&shape);
    let recorder = Recorder::new(dir.as_ref());
    let report = run(&plan, &book, &recorder, &NoHooks);
    assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
    let everyone = team_dn("Everyone");
    let added = recorder
        .adds
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.dn == everyone)
        .map(|e| e.get("member").len());
    assert_eq!(added, Some(1_000));
    let batches: Vec<usize> = recorder
        .modifies_of(&everyone)
        .iter()
        .map(|m| m.iter().map(|c| c.values().len()).sum())
        .collect();
    assert_eq!(batches, [1_000, 500]);
    assert_eq!(
        dns_of(dir.as_ref(), &everyone, "member"),
        normal(&people.iter().map(person_dn).collect::<Vec<_>>())
    );
}

#[test]
fn group_kinds_are_named_or_numbered_and_a_wrong_one_fails_its_row() {
    let (_, dir, tmp) = directories().remove(1);
    let book = tmp.path().join("book.xlsx");
    let mut shape = MembershipShape::new(BASE);
    shape.group_type = true;
    let plan = plan(&shape);
    write_membership_workbook(
        &book,
        &[],
        &[
            ("Mail", "", "Universal Distribution"),
            ("Local", "", "domain local security"),
            ("Number", "", "-2147483646"),
            ("Default", "", ""),
            ("Wrong", "", "planetary"),
        ],
    );
    let report = run(&plan, &book, dir.as_ref(), &NoHooks);
    let kind = |name: &str| {
        dir.read_entry(&team_dn(name), &[])
            .unwrap()
            .map(|e| e.get("groupType").to_vec())
    };
    assert_eq!(kind("Mail"), Some(vec!["8".to_string()]));
    assert_eq!(kind("Local"), Some(vec!["-2147483644".to_string()]));
    assert_eq!(kind("Number"), Some(vec!["-2147483646".to_string()]));
    // An empty cell is the default kind (AD cannot remove a group's groupType).
    assert_eq!(kind("Default"), Some(vec!["-2147483646".to_string()]));
    assert_eq!(kind("Wrong"), None);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let failure = &report.failed[0];
    assert_eq!(failure.field.as_deref(), Some("fieldsMap[3] (groupType)"));
    assert!(
        failure
            .message
            .contains("\"planetary\" is not a group scope"),
        "{failure:?}"
    );
}

#[test]
fn memberof_without_resolve_is_refused_when_the_job_loads() {
    let mut shape = MembershipShape::new(BASE);
    shape.member_of = true;
    let mut job = membership_job(&shape);
    for f in job["fieldsMap"].as_array_mut().unwrap() {
        if f["destinationField"] == "memberOf" {
            f["transform"] = serde_json::json!("");
        }
    }
    let error = datasync::plan::compile(&support::wire(&job), &Default::default())
        .expect_err("memberOf copied from a column must be refused")
        .to_string();
    assert!(
        error.contains("memberOf is computed by the directory"),
        "{error}"
    );
}

#[test]
fn a_dry_run_reports_membership_changes_and_writes_none() {
    let dir = LdifDirectory::in_memory();
    let tmp = tempfile::tempdir().unwrap();
    let mut people = staff();
    people[0].groups = "Sales".into();
    let book = tmp.path().join("book.xlsx");
    // One job fills the groups from their rows, another has users name their groups.
    let filling = plan(&MembershipShape::new(BASE));
    let mut shape = MembershipShape::new(BASE);
    shape.member_of = true;
    let naming = plan(&shape);
    write_membership_workbook(
        &book,
        &people,
        &[("Sales", "Bob.Stone", ""), ("Support", "", "")],
    );
    run(&filling, &book, &dir, &NoHooks);
    run(&naming, &book, &dir, &NoHooks);
    let before = dir.entries();

    // Sales swaps Bob for Cy by its own row; Ann leaves Sales for Support by hers.
    people[0].groups = "Support".into();
    write_membership_workbook(
        &book,
        &people,
        &[("Sales", "Cy.Young", ""), ("Support", "", "")],
    );
    let dry = RunOptions {
        dry_run: true,
        ..Default::default()
    };
    for (plan, changed) in [(&filling, "CN=Sales"), (&naming, "CN=Ann Lee")] {
        let recorder = Recorder::new(&dir);
        let mut source = datasync::source::open(&book).unwrap();
        let report = datasync::run(plan, source.as_mut(), &recorder, &NoHooks, &dry).unwrap();
        assert_eq!(report.status, RunStatus::FinishedSuccess, "{report:?}");
        assert_eq!(report.counts.updated, 1, "{report:?}");
        assert!(report.modified[0].starts_with(changed), "{report:?}");
        assert!(recorder.modifies.lock().unwrap().is_empty());
        assert!(recorder.adds.lock().unwrap().is_empty());
    }
    assert_eq!(dir.entries(), before);
}

#[test]
fn a_job_cannot_both_fill_groups_and_have_users_name_them() {
    let mut shape = MembershipShape::new(BASE);
    shape.member_of = true;
    let mut job = membership_job(&shape);
    // The groups' member field, from the job that fills them.
    let filling = membership_job(&MembershipShape::new(BASE));
    let member = filling["fieldsMap"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["destinationField"] == "member")
        .unwrap()
        .clone();
    job["fieldsMap"].as_array_mut().unwrap().push(member);
    let error = datasync::plan::compile(&support::wire(&job), &Default::default())
        .expect_err("member and memberOf in one job must be refused")
        .to_string();
    assert!(
        error.contains("names its groups (memberOf)")
            && error.contains("each would undo the other"),
        "{error}"
    );
}
