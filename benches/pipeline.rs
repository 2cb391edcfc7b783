//! The whole job against reading the workbook alone, on one generated 100,000-row,
//! 10-column workbook (made at bench time, never committed), with the system allocator.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```
//! Target: `pipeline_to_memory` within 1.5× of `calamine_read`.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/workbook.rs"]
mod workbook;

criterion::criterion_group!(benches, workbook::bench);
criterion::criterion_main!(benches);
