//! Test data: the people and groups of the fixture workbook, and writers for workbooks and CSV.
//! Shared by `examples/make_fixtures.rs` (which writes the committed fixtures), the tests and
//! the benches (which generate 100,000-row workbooks at run time instead of committing them).
#![allow(dead_code)]

pub mod mariadb;
pub mod postgres;
pub mod samba;
pub mod slapd;

use std::path::Path;

use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook};

/// The header of the people sheet: ten columns.
pub const PEOPLE_HEADER: [&str; 10] = [
    "EmployeeID",
    "First",
    "Last",
    "Department",
    "Title",
    "Email",
    "Manager",
    "Phones",
    "Hired",
    "Active",
];

/// One row of the people sheet.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: u32,
    pub first: String,
    pub last: String,
    pub department: String,
    pub title: String,
    pub email: String,
    pub manager: Option<u32>,
    pub phones: String,
    pub hired: (u16, u8, u8),
    pub active: bool,
}

/// One row of the groups sheet.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub email: String,
}

/// One fixture person: id, (first, last), (department, title), manager, phones, hired.
fn person(
    id: u32,
    (first, last): (&str, &str),
    (department, title): (&str, &str),
    manager: Option<u32>,
    phones: &str,
    hired: (u16, u8, u8),
) -> Person {
    Person {
        id,
        first: first.into(),
        last: last.into(),
        department: department.into(),
        title: title.into(),
        email: format!(
            "{}.{}@groupid.lab",
            first.to_lowercase(),
            last.to_lowercase()
        )
        .replace(' ', ""),
        manager,
        phones: phones.into(),
        hired,
        active: true,
    }
}

/// The fixture people: managers first, unicode and DN-special names included.
pub fn people() -> Vec<Person> {
    vec![
        person(
            1001,
            ("Ann", "Lee"),
            ("Executive", "CEO"),
            None,
            "555-0100",
            (2015, 1, 5),
        ),
        person(
            1002,
            ("Bob", "Stone"),
            ("Sales", "Sales Director"),
            Some(1001),
            "555-0101;555-0199",
            (2016, 3, 14),
        ),
        person(
            1003,
            ("Zoë", "Müller"),
            ("R&D", "Engineer"),
            Some(1001),
            "555-0102",
            (2018, 7, 1),
        ),
        person(
            1004,
            ("José", "Núñez"),
            ("Sales", "Account Manager"),
            Some(1002),
            "",
            (2019, 11, 30),
        ),
        person(
            1005,
            ("李", "小龙"),
            ("R&D", "Researcher"),
            Some(1003),
            "555-0104",
            (2020, 2, 29),
        ),
        person(
            1006,
            ("Dana", "O'Brien, Jr"),
            ("Support", "Support Lead"),
            Some(1001),
            "555-0105",
            (2021, 6, 15),
        ),
        person(
            1007,
            ("Eve", "Adams+Co"),
            ("Support", "Agent"),
            Some(1006),
            "555-0106",
            (2022, 9, 9),
        ),
        person(
            1008,
            ("Frank", "#Hash"),
            ("Finance", "Controller"),
            Some(1001),
            "555-0107",
            (2023, 12, 31),
        ),
    ]
}

/// The fixture groups.
pub fn groups() -> Vec<Group> {
    ["Sales", "R&D", "Support", "Finance"]
        .iter()
        .map(|n| Group {
            name: format!("{n} Team"),
            description: format!("Everyone in {n}"),
            email: format!("{}@groupid.lab", n.to_lowercase().replace('&', "")),
        })
        .collect()
}

/// `n` generated people with ids from 100000 (for large inputs).
pub fn generated_people(n: usize) -> Vec<Person> {
    const DEPARTMENTS: [&str; 5] = ["Sales", "R&D", "Support", "Finance", "Legal"];
    (0..n)
        .map(|i| {
            let id = 100_000 + i as u32;
            Person {
                id,
                first: format!("First{i}"),
                last: format!("Last{i}"),
                department: DEPARTMENTS[i % DEPARTMENTS.len()].into(),
                title: format!("Title {}", i % 97),
                email: format!("user{i}@groupid.lab"),
                manager: if i == 0 {
                    None
                } else {
                    Some(100_000 + (i as u32 / 10))
                },
                phones: format!("555-{:04}", i % 10_000),
                hired: (
                    2000 + (i % 25) as u16,
                    1 + (i % 12) as u8,
                    1 + (i % 28) as u8,
                ),
                active: i % 10 != 0,
            }
        })
        .collect()
}

/// Writes the workbook: people on `TTSheet1` (the sample job's sheet), groups on `Groups`.
pub fn write_workbook(path: &Path, people: &[Person], groups: &[Group]) {
    let mut wb = Workbook::new();
    // A fixed creation time keeps the generated file's bytes the same run to run.
    let created = ExcelDateTime::from_ymd(2024, 6, 4).unwrap();
    wb.set_properties(&DocProperties::new().set_creation_datetime(&created));
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let sheet = wb.add_worksheet();
    sheet.set_name("TTSheet1").unwrap();
    for (c, h) in PEOPLE_HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (i, p) in people.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_number(r, 0, p.id as f64).unwrap();
        sheet.write_string(r, 1, &p.first).unwrap();
        sheet.write_string(r, 2, &p.last).unwrap();
        sheet.write_string(r, 3, &p.department).unwrap();
        sheet.write_string(r, 4, &p.title).unwrap();
        sheet.write_string(r, 5, &p.email).unwrap();
        if let Some(m) = p.manager {
            sheet.write_number(r, 6, m as f64).unwrap();
        }
        if !p.phones.is_empty() {
            sheet.write_string(r, 7, &p.phones).unwrap();
        }
        let (y, m, d) = p.hired;
        sheet
            .write_datetime_with_format(r, 8, ExcelDateTime::from_ymd(y, m, d).unwrap(), &date)
            .unwrap();
        sheet.write_boolean(r, 9, p.active).unwrap();
    }
    let sheet = wb.add_worksheet();
    sheet.set_name("Groups").unwrap();
    for (c, h) in ["Name", "Description", "Email"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (i, g) in groups.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, &g.name).unwrap();
        sheet.write_string(r, 1, &g.description).unwrap();
        sheet.write_string(r, 2, &g.email).unwrap();
    }
    wb.save(path).unwrap();
}

/// The people as CSV, with the values a workbook reader gives (dates ISO, booleans TRUE/FALSE).
pub fn people_csv(people: &[Person]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(PEOPLE_HEADER).unwrap();
    for p in people {
        let (y, m, d) = p.hired;
        w.write_record([
            p.id.to_string(),
            p.first.clone(),
            p.last.clone(),
            p.department.clone(),
            p.title.clone(),
            p.email.clone(),
            p.manager.map(|m| m.to_string()).unwrap_or_default(),
            p.phones.clone(),
            format!("{y:04}-{m:02}-{d:02}"),
            if p.active { "TRUE" } else { "FALSE" }.to_string(),
        ])
        .unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

/// Writes the people as an OpenDocument spreadsheet (sheet `TTSheet1`), typed as LibreOffice
/// types them: ids and managers as floats, hire dates as dates, `Active` as booleans.
pub fn write_ods(path: &Path, people: &[Person]) {
    use std::io::Write;
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let text = |s: &str| {
        format!(
            "<table:table-cell office:value-type=\"string\"><text:p>{}</text:p></table:table-cell>",
            esc(s)
        )
    };
    let number = |n: u32| {
        format!(
            "<table:table-cell office:value-type=\"float\" office:value=\"{n}\"><text:p>{n}</text:p></table:table-cell>"
        )
    };
    let empty = "<table:table-cell/>".to_string();
    let mut rows = String::from("<table:table-row>");
    for h in PEOPLE_HEADER {
        rows.push_str(&text(h));
    }
    rows.push_str("</table:table-row>");
    for p in people {
        let (y, m, d) = p.hired;
        let date = format!("{y:04}-{m:02}-{d:02}");
        rows.push_str("<table:table-row>");
        for cell in [
            number(p.id),
            text(&p.first),
            text(&p.last),
            text(&p.department),
            text(&p.title),
            text(&p.email),
            p.manager.map(number).unwrap_or_else(|| empty.clone()),
            if p.phones.is_empty() {
                empty.clone()
            } else {
                text(&p.phones)
            },
            format!(
                "<table:table-cell office:value-type=\"date\" office:date-value=\"{date}\"><text:p>{date}</text:p></table:table-cell>"
            ),
            format!(
                "<table:table-cell office:value-type=\"boolean\" office:boolean-value=\"{}\"><text:p>x</text:p></table:table-cell>",
                p.active
            ),
        ] {
            rows.push_str(&cell);
        }
        rows.push_str("</table:table-row>");
    }
    let content = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" office:version=\"1.2\">\
<office:body><office:spreadsheet><table:table table:name=\"TTSheet1\">{rows}</table:table>\
</office:spreadsheet></office:body></office:document-content>"
    );
    let manifest = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\">\
<manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"application/vnd.oasis.opendocument.spreadsheet\"/>\
<manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/>\
</manifest:manifest>";
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("mimetype", stored).unwrap();
    zip.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
        .unwrap();
    let deflated = zip::write::SimpleFileOptions::default();
    zip.start_file("META-INF/manifest.xml", deflated).unwrap();
    zip.write_all(manifest.as_bytes()).unwrap();
    zip.start_file("content.xml", deflated).unwrap();
    zip.write_all(content.as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// The main fixture job as JSON, to edit before compiling.
pub fn main_job() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/excel-to-ad.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Keeps only the user object type (1) of a job.
pub fn users_only(job: &mut serde_json::Value) {
    if let Some(options) = job["objectsOption"].as_array_mut() {
        options.truncate(1);
    }
    for list in ["fieldsMap", "syncQuery"] {
        if let Some(entries) = job[list].as_array_mut() {
            entries.retain(|e| e["objectType"] == 1);
        }
    }
}

/// Keeps only the group object type (4) of a job.
pub fn groups_only(job: &mut serde_json::Value) {
    if let Some(options) = job["objectsOption"].as_array_mut() {
        options.retain(|o| o["objectType"] == 4);
    }
    for list in ["fieldsMap", "syncQuery"] {
        if let Some(entries) = job[list].as_array_mut() {
            entries.retain(|e| e["objectType"] == 4);
        }
    }
}

/// Loads a job from its JSON, panicking with the mistake.
pub fn wire(job: &serde_json::Value) -> datasync::DataSyncJob {
    datasync::job::from_json(&job.to_string(), "test").unwrap_or_else(|e| panic!("{e}"))
}

/// Compiles a job, panicking with every mistake.
pub fn compile(
    job: &serde_json::Value,
    context: &datasync::transform::TransformContext,
) -> datasync::Plan {
    datasync::plan::compile(&wire(job), context).unwrap_or_else(|e| panic!("{e}"))
}

/// Sets a job-wide `settings` entry, replacing one with the same key.
pub fn set_setting(job: &mut serde_json::Value, key: &str, value: &str) {
    if let Some(settings) = job["settings"].as_array_mut() {
        settings.retain(|s| s["key"] != key);
        settings.push(serde_json::json!({"action": 0, "id": 0, "key": key, "value": value, "dataType": "System.String", "objectType": null}));
    }
}

/// Runs `plan` on `workbook` into `dir` without hooks (`threads` 0: the engine decides),
/// panicking if the job cannot run.
pub fn run_job(
    plan: &datasync::Plan,
    workbook: &Path,
    dir: &dyn datasync::Destination,
    threads: usize,
) -> datasync::Report {
    let mut source = datasync::source::open(workbook).unwrap_or_else(|e| panic!("{e}"));
    let options = datasync::RunOptions {
        threads,
        ..Default::default()
    };
    datasync::run(plan, source.as_mut(), dir, &datasync::NoHooks, &options)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A workbook in its own temp dir: people (and groups) written at will, read by the job.
pub struct TempWorkbook {
    dir: tempfile::TempDir,
}

impl TempWorkbook {
    /// A workbook holding `people` and the fixture groups.
    pub fn new(people: &[Person]) -> TempWorkbook {
        let w = TempWorkbook {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}")),
        };
        w.write(people, &groups());
        w
    }

    /// Its path.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("people.xlsx")
    }

    /// Replaces its contents.
    pub fn write(&self, people: &[Person], groups: &[Group]) {
        write_workbook(&self.path(), people, groups);
    }
}

/// Holds each create (`row_adding`) until the test lets it go, and says which row arrived:
/// writes are where a run spends its time, and what a cancel stops.
pub struct Gate {
    arrived: crossbeam_channel::Sender<u64>,
    go: crossbeam_channel::Receiver<()>,
}

impl datasync::Hooks for Gate {
    fn row_adding(
        &self,
        _: &datasync::HookContext,
        row: &mut datasync::hooks::RowWrite,
    ) -> datasync::hooks::HookResult<std::ops::ControlFlow<()>> {
        let _ = self.arrived.send(row.row);
        let _ = self.go.recv();
        Ok(std::ops::ControlFlow::Continue(()))
    }
}

/// A gate, the rows that arrive at it, and the sender that lets one row go per message.
pub fn gate() -> (
    std::sync::Arc<Gate>,
    crossbeam_channel::Receiver<u64>,
    crossbeam_channel::Sender<()>,
) {
    let (arrived_tx, arrived_rx) = crossbeam_channel::bounded(1000);
    let (go_tx, go_rx) = crossbeam_channel::bounded(1000);
    (
        std::sync::Arc::new(Gate {
            arrived: arrived_tx,
            go: go_rx,
        }),
        arrived_rx,
        go_tx,
    )
}

/// Entries in a form two directories can be compared by: normalized DNs, attribute names in
/// lower case, values sorted and DN values normalized, only the attributes `keep` takes (by
/// their lower-case name).
pub fn comparable(
    entries: Vec<datasync::Entry>,
    keep: impl Fn(&str) -> bool,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>> {
    use datasync::dn;
    entries
        .into_iter()
        .map(|e| {
            let attrs = e
                .attributes()
                .iter()
                .filter(|a| keep(&a.name.to_lowercase()))
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
            let name = dn::normalize(&e.dn).unwrap_or_else(|err| panic!("{err}"));
            (name, attrs)
        })
        .collect()
}

/// A configuration for a test server at `url`, bound as `admin`, trusting only `ca_file`, with
/// short retry waits so fault tests finish quickly.
pub fn test_ldap_config(
    url: &str,
    (admin, password): (&str, &str),
    ca_file: std::path::PathBuf,
) -> datasync::ldap::LdapConfig {
    use std::time::Duration;
    let mut config = datasync::ldap::LdapConfig::parse(url)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_bind(admin, datasync::Secret::new(password));
    config.tls_verify = datasync::ldap::TlsVerify::CaFile(ca_file);
    config.retry.first_wait = Duration::from_millis(20);
    config.retry.max_wait = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(5);
    config.operation_timeout = Duration::from_secs(60);
    config
}

/// The conformance tests' "changes" step on `staff`: a new title (an update), a new last name
/// (a rename), a new manager, a leaver (removed and returned) and a newcomer whose last name
/// is `newcomer_last`.
pub fn typical_changes(staff: &mut Vec<Person>, newcomer_last: &str) -> Person {
    staff[1].title = "Chief Sales Officer".into();
    staff[2].last = format!("{}-Renamed", staff[2].last);
    staff[3].manager = Some(staff[1].id);
    let gone = staff.remove(4);
    let mut newcomer = staff[0].clone();
    newcomer.id = 9001;
    newcomer.first = "Zoë".into();
    newcomer.last = newcomer_last.into();
    newcomer.email = "zoe.newcomer@groupid.lab".into();
    staff.push(newcomer);
    gone
}

/// A sheet to write: its name, its header, and rows of text cells.
pub type Table<'a> = (&'a str, &'a [&'a str], Vec<Vec<String>>);

/// Writes a workbook of named sheets, each a header and rows of text cells (an empty cell is
/// left blank).
pub fn write_tables(path: &Path, tables: &[Table<'_>]) {
    let mut wb = Workbook::new();
    let created = ExcelDateTime::from_ymd(2024, 6, 4).unwrap();
    wb.set_properties(&DocProperties::new().set_creation_datetime(&created));
    for (name, header, rows) in tables {
        let sheet = wb.add_worksheet();
        sheet.set_name(*name).unwrap();
        for (c, h) in header.iter().enumerate() {
            sheet.write_string(0, c as u16, *h).unwrap();
        }
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
                sheet.write_string(r as u32 + 1, c as u16, v).unwrap();
            }
        }
    }
    wb.save(path).unwrap();
}

/// A member of the membership job's `People` sheet.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: u32,
    pub first: String,
    pub last: String,
    /// The groups the row names (`memberOf`), `;`-separated.
    pub groups: String,
}

impl Member {
    pub fn new(id: u32, first: &str, last: &str, groups: &str) -> Member {
        Member {
            id,
            first: first.into(),
            last: last.into(),
            groups: groups.into(),
        }
    }
    /// The `cn` (and RDN value) the job gives the person.
    pub fn cn(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
    /// The `sAMAccountName` the job gives the person.
    pub fn account(&self) -> String {
        format!("{}.{}", self.first, self.last)
    }
}

/// How the membership job is shaped for a directory.
#[derive(Clone, Debug)]
pub struct MembershipShape {
    /// Where users and groups live: users in `OU=People,{base}`, groups in `OU=Teams,{base}`;
    /// both types scan `base`'s subtree.
    pub base: String,
    /// The attribute group `Members` values resolve by (`sAMAccountName`: users and groups).
    pub member_key: String,
    /// Users carry a `memberOf` field resolving their `Groups` column by the groups' `cn`, and
    /// the groups no `member` field (a job with both is refused: each would undo the other).
    pub member_of: bool,
    /// The groups' object classes and destination query: `None` for AD's `group` (keyed by
    /// `sAMAccountName`), `Some("groupOfNames")` for LDAP's (keyed by `cn`).
    pub group_class: Option<String>,
    /// The groups' `groupType` column is mapped.
    pub group_type: bool,
    /// Objects in scope without a row are deleted.
    pub delete: bool,
}

impl MembershipShape {
    pub fn new(base: &str) -> MembershipShape {
        MembershipShape {
            base: base.into(),
            member_key: "sAMAccountName".into(),
            member_of: false,
            group_class: None,
            group_type: false,
            delete: true,
        }
    }
}

fn map_field(
    object_type: u8,
    source: &str,
    destination: &str,
    transform: &str,
    delimiter: &str,
    key: bool,
) -> serde_json::Value {
    serde_json::json!({
        "action": 0, "sourceField": source, "destinationField": destination, "id": 0,
        "delimiter": delimiter, "transform": transform, "forCreateOnly": key,
        "objectType": object_type, "isKey": key, "options": null
    })
}

/// A job of two types from one workbook: users from `People` (EmployeeID, First, Last,
/// Groups) and groups from `Teams` (Name, Members, Kind), the groups listed first (the engine
/// runs a type that fills groups after the others), each group's `member` resolved from its
/// `;`-separated `Members` unless the users name their groups instead (`member_of`).
pub fn membership_job(shape: &MembershipShape) -> serde_json::Value {
    let mut job = main_job();
    let base = &shape.base;
    let mut users = vec![
        map_field(
            1,
            "",
            "cn",
            "Join:field=First;separator= ;field=Last",
            "",
            false,
        ),
        map_field(1, "First", "givenName", "", "", false),
        map_field(1, "Last", "sn", "", "", false),
        map_field(1, "EmployeeID", "employeeID", "", "", true),
        map_field(
            1,
            "",
            "sAMAccountName",
            "Join:field=First;separator=.;field=Last",
            "",
            false,
        ),
    ];
    if shape.member_of {
        users.push(map_field(
            1,
            "Groups",
            "memberOf",
            "Resolve:field=Groups;attribute=cn",
            ";",
            false,
        ));
    }
    let member = map_field(
        4,
        "Members",
        "member",
        &format!("Resolve:field=Members;attribute={}", shape.member_key),
        ";",
        false,
    );
    let (group_query, mut groups) = match &shape.group_class {
        None => (
            "objectClass is exactly \"group\"".to_string(),
            vec![
                map_field(4, "Name", "cn", "", "", false),
                map_field(
                    4,
                    "",
                    "sAMAccountName",
                    "Replace:field=Name;pattern=[^A-Za-z0-9]+;with=",
                    "",
                    true,
                ),
            ],
        ),
        Some(class) => (
            format!("(objectClass={class})"),
            vec![
                map_field(4, "Name", "cn", "", "", true),
                map_field(
                    4,
                    "",
                    "objectClass",
                    &format!("Static:value=top,{class}"),
                    ",",
                    false,
                ),
            ],
        ),
    };
    if !shape.member_of {
        groups.push(member);
    }
    if shape.group_type {
        groups.push(map_field(4, "Kind", "groupType", "", "", false));
    }
    job["fieldsMap"] = serde_json::Value::Array(groups.into_iter().chain(users).collect());
    let option = |object_type: u8, name: &str, ou: &str| {
        serde_json::json!({
            "objectType": object_type, "id": 0, "jobId": 0, "isCreate": true, "displayName": name,
            "isDelete": shape.delete, "isSelected": true, "containerOption": "1",
            "containerOptionValue": format!("OU={ou},{base}"), "createObjectContainerStrategy": 1,
            "isDeprovisioning": false, "objectTypeSettings": null, "action": 0
        })
    };
    job["objectsOption"] =
        serde_json::json!([option(4, "Group", "Teams"), option(1, "User", "People")]);
    let query = |object_type: u8, text: &str, source: bool| {
        serde_json::json!({
            "action": 0, "id": 0, "queryFor": null, "objectType": object_type, "query": text,
            "queryType": if source { "SQL" } else { "GroupID" }, "isSource": source,
            "timeStampField": "", "updateAll": source
        })
    };
    job["syncQuery"] = serde_json::json!([
        query(4, "SELECT * FROM [Teams$]", true),
        query(4, &group_query, false),
        query(1, "SELECT * FROM [People$]", true),
        query(1, "objectClass is exactly \"user\"", false),
    ]);
    set_setting(&mut job, "Destination.Container", base);
    set_setting(&mut job, "Destination.ShouldIncludeSubTree", "True");
    job
}

/// Writes the membership job's workbook: people, and teams as (name, members, kind).
pub fn write_membership_workbook(path: &Path, people: &[Member], teams: &[(&str, &str, &str)]) {
    let people_rows = people
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.first.clone(),
                p.last.clone(),
                p.groups.clone(),
            ]
        })
        .collect();
    let team_rows = teams
        .iter()
        .map(|(name, members, kind)| vec![name.to_string(), members.to_string(), kind.to_string()])
        .collect();
    write_tables(
        path,
        &[
            (
                "People",
                &["EmployeeID", "First", "Last", "Groups"],
                people_rows,
            ),
            ("Teams", &["Name", "Members", "Kind"], team_rows),
        ],
    );
}

/// A user field map entry copying the source column `source` to `destination`.
pub fn copy_field(source: &str, destination: &str, key: bool) -> serde_json::Value {
    serde_json::json!({
        "action": 0, "sourceField": source, "destinationField": destination, "id": 0,
        "delimiter": "", "transform": "", "forCreateOnly": false, "objectType": 1,
        "isKey": key, "options": null
    })
}

/// A job copying the main job's users out of a directory source (LDAP or the embedded
/// directory): the source's `dn` kept in `info`, the phones split back into several values.
pub fn directory_copy_job() -> serde_json::Value {
    let mut job = main_job();
    users_only(&mut job);
    job["fieldsMap"] = serde_json::json!([
        copy_field("cn", "cn", false),
        copy_field("sn", "sn", false),
        copy_field("givenName", "givenName", false),
        copy_field("employeeID", "employeeID", true),
        copy_field("telephoneNumber", "telephoneNumber", false),
        copy_field("dn", "info", false),
    ]);
    job["fieldsMap"][4]["delimiter"] = ";".into();
    job["syncQuery"][0]["query"] =
        "objectClass is exactly \"user\" AND employeeID is present".into();
    job["syncQuery"][0]["queryType"] = "GroupID".into();
    job
}

/// The `datasync` command line cargo built for this test (the binary target, built with the
/// `cli` feature: `scripts/test` runs the tests with it). A test run without the feature
/// fails here with the reason.
pub fn datasync_binary() -> std::path::PathBuf {
    match option_env!("CARGO_BIN_EXE_datasync") {
        Some(path) => std::path::PathBuf::from(path),
        None => panic!(
            "this test runs the datasync command line, which is built with the `cli` feature: \
             run the tests with `--features cli` (bash scripts/test does)"
        ),
    }
}

/// The attributes a table export carries, in column order.
pub const EXPORT_COLUMNS: [&str; 11] = [
    "employeeID",
    "cn",
    "givenName",
    "sn",
    "mail",
    "department",
    "title",
    "telephoneNumber",
    "manager",
    "description",
    "sAMAccountName",
];

/// A store filled by the main job (users only): `directory.db` in `dir`.
pub fn filled_store(dir: &Path) -> std::path::PathBuf {
    let mut job = main_job();
    users_only(&mut job);
    let plan = compile(&job, &Default::default());
    let book = TempWorkbook::new(&people());
    let path = dir.join("directory.db");
    let store = datasync::Store::open(&path).unwrap();
    let report = run_job(&plan, &book.path(), &store, 0);
    assert_eq!(
        report.status,
        datasync::RunStatus::FinishedSuccess,
        "{report:?}"
    );
    path
}

/// A job copying the users' [`EXPORT_COLUMNS`] from a directory into the table `table`
/// (`Destination.Table`), phones split from a directory source's `;`-joined values and
/// joined with `;` in the table, every row in scope for deletes.
pub fn table_export_job(table: &str) -> serde_json::Value {
    let mut job = main_job();
    users_only(&mut job);
    job["fieldsMap"] = EXPORT_COLUMNS
        .iter()
        .map(|c| copy_field(c, c, *c == "employeeID"))
        .collect();
    job["fieldsMap"][7]["delimiter"] = ";".into();
    job["objectsOption"][0]["isDelete"] = true.into();
    job["syncQuery"][0]["query"] = "(&(objectClass=user)(employeeID=*))".into();
    job["syncQuery"][0]["queryType"] = "LDAP".into();
    set_setting(&mut job, "Destination.IsTableProvider", "True");
    set_setting(&mut job, "Destination.Table", table);
    job
}

/// The reverse of [`table_export_job`]: the rows `query` reads, as users in the main job's
/// container.
pub fn table_import_job(query: &str) -> serde_json::Value {
    let mut job = table_export_job("unused");
    job["objectsOption"][0]["isDelete"] = false.into();
    job["syncQuery"][0]["query"] = query.into();
    job["syncQuery"][0]["queryType"] = "SQL".into();
    set_setting(&mut job, "Destination.IsTableProvider", "False");
    job
}

/// The change step of the export tests, made in the store at `path`: employee 1003 gets the
/// title "Chief Scientist" and employee 1008 leaves.
pub fn retitle_1003_and_remove_1008(path: &Path) {
    use datasync::Destination;
    let store = datasync::Store::open(path).unwrap();
    let find = |id: &str| {
        store
            .search(
                "DC=groupid,DC=lab",
                datasync::destination::Scope::Subtree,
                &datasync::query::Filter::parse(&format!("(employeeID={id})")).unwrap(),
                &[],
            )
            .unwrap()
            .remove(0)
            .dn
    };
    store
        .modify(
            &find("1003"),
            &[datasync::destination::Modification::Replace(
                "title".into(),
                vec!["Chief Scientist".into()],
            )],
        )
        .unwrap();
    store.delete(&find("1008")).unwrap();
    store.commit().unwrap();
}
