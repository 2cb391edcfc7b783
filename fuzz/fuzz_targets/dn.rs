//! The DN parser: any text parses or is refused, and a parsed DN prints as one with the same
//! normal form.
#![no_main]

use datasync::dn::Dn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dn) = Dn::parse(text) else {
        return;
    };
    let printed = dn.to_string();
    let back = Dn::parse(&printed).expect("a printed DN parses");
    assert_eq!(back.normalized(), dn.normalized());
});
