//! The `pipeline` bench with mimalloc as the global allocator. The allocator is the host's
//! choice, not the library's: a run allocates a few strings per cell, and glibc's allocator
//! spends a large share of the run on them (its free lists and arena locks) where mimalloc
//! does not. Both figures are in the README.
//!
//! ```text
//! cargo bench --bench pipeline_mimalloc
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/workbook.rs"]
mod workbook;

criterion::criterion_group!(benches, workbook::bench);
criterion::criterion_main!(benches);
