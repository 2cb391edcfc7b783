//! The `workbook_100k` group, shared by the `pipeline` bench (the system allocator) and the
//! `pipeline_mimalloc` bench (the same with mimalloc as the host's global allocator).

use calamine::{Reader, open_workbook_auto};
use criterion::Criterion;
use datasync::transform::TransformContext;
use datasync::{LdifDirectory, Plan};
use serde_json::json;

use crate::support;

const ROWS: usize = 100_000;

/// The main fixture job, users only (the generated workbook has no groups), no deletes.
fn users_job() -> Plan {
    let mut job = support::main_job();
    support::users_only(&mut job);
    job["objectsOption"][0]["isDelete"] = json!(false);
    support::compile(&job, &TransformContext::default())
}

/// The whole job against reading the workbook alone.
pub fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let workbook = tmp.path().join("people-100k.xlsx");
    support::write_workbook(&workbook, &support::generated_people(ROWS), &[]);
    let plan = users_job();

    let mut group = c.benchmark_group("workbook_100k");
    group.sample_size(10);
    group.bench_function("calamine_read", |b| {
        b.iter(|| {
            let mut wb = open_workbook_auto(&workbook).expect("workbook opens");
            let range = wb.worksheet_range("TTSheet1").expect("sheet");
            assert_eq!(range.height(), ROWS + 1);
            range
        })
    });
    // The directory is returned so that freeing its 100,000 entries is not timed: that is
    // the host's business after the run, not the job's.
    group.bench_function("pipeline_to_memory", |b| {
        b.iter_with_large_drop(|| {
            let directory = LdifDirectory::in_memory();
            let report = support::run_job(&plan, &workbook, &directory, 0);
            assert_eq!(report.counts.added, ROWS);
            directory
        })
    });
    let filled = LdifDirectory::in_memory();
    support::run_job(&plan, &workbook, &filled, 0);
    group.bench_function("pipeline_unchanged", |b| {
        b.iter(|| {
            let report = support::run_job(&plan, &workbook, &filled, 0);
            assert_eq!(report.counts.unchanged, ROWS);
        })
    });
    group.finish();
}
