//! The job loader and compiler: any text either loads or is refused with a typed error, and a
//! job that loads saves back to JSON that loads to the same job.
#![no_main]

use datasync::plan;
use datasync::job;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(wire) = job::from_json(text, "fuzz") else {
        return;
    };
    let saved = job::to_json(&wire);
    let again = job::from_json(&saved, "fuzz-saved").expect("a saved job loads");
    assert_eq!(job::to_json(&again), saved, "saving is not lossless");
    let _ = plan::compile(&wire, &Default::default());
});
