//! Writes the committed source fixtures from the data in `tests/support`:
//! `fixtures/sources/people.xlsx` and `fixtures/sources/people.csv`.
//!
//! ```text
//! cargo run --example make_fixtures
//! ```
//! The test `fixtures_match_their_generator` checks that the committed files hold this data.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sources");
    let people = support::people();
    support::write_workbook(&dir.join("people.xlsx"), &people, &support::groups());
    if let Err(e) = std::fs::write(dir.join("people.csv"), support::people_csv(&people)) {
        eprintln!("cannot write people.csv: {e}");
        std::process::exit(1);
    }
    println!("wrote {}", dir.display());
}
