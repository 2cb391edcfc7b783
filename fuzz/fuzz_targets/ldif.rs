//! The LDIF reader: any text reads or is refused with its line, and what it reads writes back
//! to LDIF that reads to the same entries.
#![no_main]

use datasync::destination::ldif;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = ldif::parse(text) else {
        return;
    };
    let written = ldif::write(&entries);
    let back = ldif::parse(&written).expect("written LDIF reads");
    assert_eq!(back, entries);
});
