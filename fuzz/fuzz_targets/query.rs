//! The GroupID destination query language and LDAP filters: any text parses or is refused,
//! and a parsed filter prints as a filter that parses back to itself.
#![no_main]

use datasync::query::{Filter, parse_destination_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filter) = parse_destination_query(text) {
        let printed = filter.to_string();
        let back = Filter::parse(&printed).expect("a printed filter parses");
        assert_eq!(back.to_string(), printed);
    }
    if let Ok(filter) = Filter::parse(text) {
        let printed = filter.to_string();
        let back = Filter::parse(&printed).expect("a printed filter parses");
        assert_eq!(back.to_string(), printed);
    }
});
