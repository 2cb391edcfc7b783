//! The whole job against reading the workbook, run alternately in one process: a read, then
//! the job, pair after pair, and the medians of both. On a small, noisy machine the read alone
//! moves by a third from one minute to the next; alternating puts both under the same
//! conditions, so the ratio is steadier than two criterion groups measured minutes apart.
//!
//! ```text
//! cargo bench --bench read_vs_job              # 10 pairs on 100,000 rows
//! PAIRS=20 ROWS=50000 cargo bench --bench read_vs_job
//! ```
//! Target: the job within 1.5× of the read. Under `cargo test` (no `--bench` argument) it
//! makes one pair on 2,000 rows, to check that it runs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use calamine::{Reader, open_workbook_auto};
use datasync::LdifDirectory;
use datasync::transform::TransformContext;
use serde_json::json;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (rows, pairs) = if benching {
        (setting("ROWS", 100_000), setting("PAIRS", 10).max(1))
    } else {
        (2_000, 1)
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let workbook = tmp.path().join("people.xlsx");
    support::write_workbook(&workbook, &support::generated_people(rows), &[]);
    let mut job = support::main_job();
    support::users_only(&mut job);
    job["objectsOption"][0]["isDelete"] = json!(false);
    let plan = support::compile(&job, &TransformContext::default());

    let (mut read, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        let t = Instant::now();
        let mut wb = open_workbook_auto(&workbook).expect("workbook opens");
        let range = wb.worksheet_range("TTSheet1").expect("sheet");
        read.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(range.height(), rows + 1);
        drop(range);

        let directory = LdifDirectory::in_memory();
        let t = Instant::now();
        let report = support::run_job(&plan, &workbook, &directory, 0);
        whole.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(report.counts.added, rows);
        // Freeing the directory is the host's business after the run: not timed.
        drop(directory);
    }
    let (r, w) = (median(read), median(whole));
    println!(
        "{rows} rows, {pairs} pairs: read {r:.0} ms, whole job {w:.0} ms, ratio {:.2}",
        w / r
    );
}
