//! Delta runs' watermarks: the highest source timestamp a run saw, and how two compare.

/// Orders two timestamps: as numbers when both are, as instants when both are ISO 8601
/// times (a database source writes `2026-12-03T08:30:00Z` and `...:00.5Z`, which text order
/// would put the wrong way round), else as text.
pub(super) fn compare_stamps(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim(), b.trim());
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.total_cmp(&y);
    }
    if let (Ok(x), Ok(y)) = (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        return x.cmp(&y);
    }
    let local = |t: &str| {
        chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
    };
    if let (Ok(x), Ok(y)) = (local(a), local(b)) {
        return x.cmp(&y);
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::compare_stamps;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn stamps_compare_as_numbers_times_or_text() {
        assert_eq!(compare_stamps("10", "9"), Greater);
        // A fraction of a second is later, though its text sorts first.
        assert_eq!(
            compare_stamps("2026-12-03T08:30:00.5Z", "2026-12-03T08:30:00Z"),
            Greater
        );
        assert_eq!(
            compare_stamps("2026-12-03T09:30:00+01:00", "2026-12-03T08:30:00Z"),
            Equal
        );
        assert_eq!(
            compare_stamps("2026-12-03T08:30:00", "2026-12-03T08:30:00.25"),
            Less
        );
        assert_eq!(compare_stamps("b", "a"), Greater);
        // Numbers against text: as text.
        assert_eq!(compare_stamps("10", "9a"), Less);
    }
}
