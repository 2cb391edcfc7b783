//! The transform language: any `Name:param=value;…` text parses or is refused, and a parsed
//! transform applies to any row without panicking.
#![no_main]

use datasync::source::Columns;
use datasync::transform::{NoResolver, RunValues, Transform};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the transform, the rest the row's cells (one per column).
    let (transform, cells) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(parsed) = Transform::parse(transform, Some("A"), &Default::default()) else {
        return;
    };
    let columns = Columns::new(vec!["A".into(), "B".into(), "C".into()]);
    let Ok(bound) = parsed.bind(&columns) else {
        return;
    };
    let mut row: Vec<Option<String>> = cells.split('\n').map(|c| Some(c.to_string())).collect();
    row.resize(3, None);
    let run = RunValues {
        now: "2026-01-02T03:04:05Z",
        today: "2026-01-02",
        resolver: &NoResolver,
    };
    let _ = bound.apply(&columns, &row, "description", &run);
});
