//! Properties over arbitrary input: LDIF round trips, and values survive DN and filter escaping.

use datasync::destination::ldif;
use datasync::dn::{self, Dn};
use datasync::query::{Filter, parse_destination_query};
use datasync::{Entry, normalize_key};
use proptest::prelude::*;

fn attr_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9-]{0,12}".prop_filter("dn and changetype are not attributes", |n| {
        !n.eq_ignore_ascii_case("dn") && !n.eq_ignore_ascii_case("changetype")
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<String>(),
        proptest::collection::btree_map(
            attr_name(),
            proptest::collection::vec(any::<String>(), 1..4),
            0..6,
        ),
    )
        .prop_map(|(cn, attrs)| {
            let mut e = Entry::new(dn::child("CN", &cn, "OU=Test,DC=lab"));
            let mut seen = std::collections::HashSet::new();
            for (name, values) in attrs {
                if seen.insert(name.to_lowercase()) {
                    e.set(&name, values);
                }
            }
            e
        })
}

#[test]
fn reserved_names_are_not_attributes() {
    let mut e = Entry::new("CN=a,DC=lab");
    e.set("dN", vec!["x".into()]);
    e.set("changeType", vec!["add".into()]);
    assert!(e.attributes().is_empty());
    assert_eq!(ldif::parse(&ldif::write([&e])).unwrap(), vec![e]);
}

proptest! {
    #[test]
    fn ldif_round_trips_any_entries(entries in proptest::collection::vec(entry(), 0..5)) {
        let text = ldif::write(&entries);
        prop_assert!(text.lines().all(|l| l.len() <= 76));
        prop_assert!(text.is_ascii(), "non-ASCII values are base64");
        let back = ldif::parse(&text).unwrap();
        prop_assert_eq!(back, entries);
    }

    #[test]
    fn any_value_survives_a_dn(value in any::<String>()) {
        let built = dn::child("CN", &value, "OU=API,DC=lab");
        let parsed = Dn::parse(&built).unwrap();
        prop_assert_eq!(parsed.rdns.len(), 3);
        prop_assert_eq!(&parsed.rdns[0][0].value, &value);
        // Display re-escapes to a DN with the same normal form
        prop_assert_eq!(Dn::parse(&parsed.to_string()).unwrap().normalized(), parsed.normalized());
    }

    #[test]
    fn any_value_survives_a_filter(value in any::<String>()) {
        let filter = Filter::Equal("cn".into(), value.clone());
        let text = filter.to_string();
        prop_assert!(!text[4..text.len() - 1].contains(['(', ')', '*']), "{}", text);
        prop_assert_eq!(Filter::parse(&text).unwrap(), filter.clone());
        let mut e = Entry::new("CN=x");
        e.set("cn", vec![value.clone()]);
        prop_assert!(filter.matches(&e));
    }

    #[test]
    fn quoted_groupid_values_are_taken_literally(value in "[^\"\\\\]{0,30}") {
        let query = format!("cn is exactly \"{value}\" AND objectClass is exactly \"user\"");
        let filter = parse_destination_query(&query).unwrap();
        prop_assert_eq!(
            filter,
            Filter::And(vec![
                Filter::Equal("cn".into(), value.clone()),
                Filter::Equal("objectClass".into(), "user".into())
            ])
        );
    }

    #[test]
    fn keys_ignore_ascii_case(key in "[ -~]{1,30}") {
        prop_assert_eq!(
            normalize_key(&[key.to_ascii_uppercase()]),
            normalize_key(&[key.to_ascii_lowercase()])
        );
    }

    #[test]
    fn an_accepted_attribute_name_is_one_safe_token(name in any::<String>()) {
        if datasync::destination::check_attribute_description(&name).is_ok() {
            prop_assert!(!name.is_empty());
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-;.".contains(&b)), "{:?}", name);
        }
    }

    #[test]
    fn names_with_separators_are_refused(
        head in "[a-zA-Z][a-zA-Z0-9-]{0,8}",
        bad in "[ ,:=\n\r\t<>+\"#]",
        tail in "[a-zA-Z0-9-]{0,8}",
    ) {
        let name = format!("{head}{bad}{tail}");
        prop_assert!(datasync::destination::check_attribute_description(&name).is_err(), "{:?}", name);
        prop_assert!(datasync::destination::check_attribute_description(&head).is_ok());
    }

    #[test]
    fn a_backslash_before_a_plain_letter_is_no_escape(
        before in "[a-zA-Z ]{0,8}",
        letter in "[g-zG-Z]",
    ) {
        let dn = format!("CN={before}\\{letter}x,DC=lab");
        prop_assert!(Dn::parse(&dn).is_err(), "{}", dn);
    }

    #[test]
    fn keys_are_the_same_in_both_normal_forms(key in "\\PC{1,20}") {
        use unicode_normalization::UnicodeNormalization;
        let composed: String = key.nfc().collect();
        let decomposed: String = key.nfd().collect();
        prop_assert_eq!(
            normalize_key(&[composed.as_str()]),
            normalize_key(&[decomposed.as_str()])
        );
    }
}
