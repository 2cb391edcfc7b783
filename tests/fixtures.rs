//! The committed source fixtures hold what their generator (`examples/make_fixtures.rs`)
//! writes, and read back as a user sees them in Excel.

mod support;

use datasync::Source;
use datasync::source::{self, ExcelSource};

#[test]
fn fixtures_match_their_generator() {
    let people = support::people();
    let csv = std::fs::read_to_string("fixtures/sources/people.csv").unwrap();
    assert_eq!(csv, support::people_csv(&people));

    let mut xlsx = ExcelSource::open("fixtures/sources/people.xlsx".as_ref()).unwrap();
    assert_eq!(xlsx.sheet_names(), ["TTSheet1", "Groups"]);
    let from_xlsx = xlsx.query("SELECT * FROM [TTSheet1$]").unwrap();
    let mut from_csv = source::open("fixtures/sources/people.csv".as_ref()).unwrap();
    let from_csv = from_csv.query("SELECT * FROM [people$]").unwrap();
    assert_eq!(from_xlsx.columns.names(), support::PEOPLE_HEADER);
    assert_eq!(from_xlsx.rows.len(), people.len());
    for (x, c) in from_xlsx.rows.iter().zip(&from_csv.rows) {
        assert_eq!(x.values, c.values, "the workbook reads as its CSV export");
    }
    let ann = &from_xlsx.rows[0];
    assert_eq!(ann.number, 2, "Excel's row number");
    assert_eq!(
        ann.values[0].as_deref(),
        Some("1001"),
        "a whole number keeps no .0"
    );
    assert_eq!(ann.values[6], None, "an empty cell is no value");
    assert_eq!(
        ann.values[8].as_deref(),
        Some("2015-01-05"),
        "a date is ISO 8601"
    );
    assert_eq!(ann.values[9].as_deref(), Some("TRUE"));
    assert_eq!(from_xlsx.rows[4].values[1].as_deref(), Some("李"));
}

#[test]
fn an_ods_workbook_reads_like_the_xlsx() {
    let tmp = tempfile::tempdir().unwrap();
    let ods = tmp.path().join("people.ods");
    support::write_ods(&ods, &support::people());
    let mut from_ods = source::open(&ods).unwrap();
    let from_ods = from_ods.query("SELECT * FROM [TTSheet1$]").unwrap();
    let mut xlsx = source::open("fixtures/sources/people.xlsx".as_ref()).unwrap();
    let from_xlsx = xlsx.query("SELECT * FROM [TTSheet1$]").unwrap();
    assert_eq!(from_ods.columns, from_xlsx.columns);
    assert_eq!(from_ods.rows, from_xlsx.rows);
}
