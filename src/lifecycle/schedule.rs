//! When a job runs by itself: a cron expression read in a time zone.
//!
//! The parsing and the calendar arithmetic are [`croner`]'s (POSIX/Vixie cron with the usual
//! extensions: `L`, `#`, `W`, names, `@daily`, optional seconds); time zones are the IANA
//! database of [`chrono_tz`]. What this module adds is the rule for the two hours a year that
//! daylight saving time bends: a fire time that falls in the spring-forward gap runs at the
//! first instant after the gap, and one in the repeated autumn hour runs once, not twice
//! (croner's own rules, which we test rather than re-implement).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A cron schedule in a time zone.
///
/// ```
/// use datasync::lifecycle::Schedule;
/// let nightly = Schedule::new("30 2 * * *", "Europe/Berlin").unwrap();
/// let after = "2026-03-28T12:00:00Z".parse().unwrap();
/// // 02:30 does not exist in Berlin on 29 March 2026: the run starts when the gap ends.
/// assert_eq!(nightly.next_after(after).unwrap().to_rfc3339(), "2026-03-29T01:00:00+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    time_zone: Tz,
    cron: Cron,
}

/// A schedule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("cron expression \"{expression}\": {message}")]
    Cron {
        /// The expression.
        expression: String,
        /// croner's reason.
        message: String,
    },
    /// The time zone is not an IANA name.
    #[error("time zone \"{0}\" is not an IANA time zone name (such as Europe/Berlin or UTC)")]
    TimeZone(String),
}

impl Schedule {
    /// Parses `expression` (five fields, or six with seconds first) read in `time_zone`
    /// (an IANA name; empty means UTC).
    pub fn new(expression: &str, time_zone: &str) -> Result<Schedule, ScheduleError> {
        let time_zone = match time_zone.trim() {
            "" => Tz::UTC,
            name => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?,
        };
        let expression = expression.trim().to_string();
        let cron = Cron::from_str(&expression).map_err(|e| ScheduleError::Cron {
            expression: expression.clone(),
            message: e.to_string(),
        })?;
        Ok(Schedule {
            expression,
            time_zone,
            cron,
        })
    }

    /// The cron expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name.
    pub fn time_zone(&self) -> &str {
        self.time_zone.name()
    }

    /// The first fire time strictly after `t`, or `None` when the expression never fires
    /// again (`0 0 30 2 *`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.expression == other.expression && self.time_zone == other.time_zone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t.to_rfc3339());
        }
        out
    }

    #[test]
    fn month_ends_and_the_last_day() {
        // Day 31 skips the months that have none.
        let s = Schedule::new("0 6 31 * *", "UTC").unwrap();
        assert_eq!(
            fires(&s, "2026-01-31T06:00:00Z", 3),
            [
                "2026-03-31T06:00:00+00:00",
                "2026-05-31T06:00:00+00:00",
                "2026-07-31T06:00:00+00:00"
            ]
        );
        // `L`: the last day, whatever the month's length (2028 is a leap year).
        let s = Schedule::new("0 23 L * *", "UTC").unwrap();
        assert_eq!(
            fires(&s, "2028-01-31T23:00:00Z", 2),
            ["2028-02-29T23:00:00+00:00", "2028-03-31T23:00:00+00:00"]
        );
        // Across the year's end.
        let s = Schedule::new("15 0 1 * *", "UTC").unwrap();
        assert_eq!(
            fires(&s, "2026-12-15T00:00:00Z", 1),
            ["2027-01-01T00:15:00+00:00"]
        );
    }

    #[test]
    fn a_time_zone_moves_the_instant_and_follows_daylight_saving() {
        let s = Schedule::new("0 9 * * MON-FRI", "America/New_York").unwrap();
        // Friday 6 March 2026, 09:00 EST = 14:00 UTC; Monday 9 March after the change = 13:00 UTC.
        assert_eq!(
            fires(&s, "2026-03-06T00:00:00Z", 2),
            ["2026-03-06T14:00:00+00:00", "2026-03-09T13:00:00+00:00"]
        );
    }

    #[test]
    fn the_spring_gap_runs_once_when_it_ends() {
        // Berlin, 29 March 2026: 02:00 → 03:00. 02:30 does not exist.
        let s = Schedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
    }

    #[test]
    fn the_repeated_autumn_hour_runs_once() {
        // Berlin, 25 October 2026: 03:00 → 02:00. 02:30 happens twice; the job runs once.
        let s = Schedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        let got = fires(&s, "2026-10-24T12:00:00Z", 2);
        assert_eq!(got[0], "2026-10-25T00:30:00+00:00");
        assert_eq!(got[1], "2026-10-26T01:30:00+00:00");
        // An hourly job still runs every hour: the repeated hour is real time.
        let s = Schedule::new("0 * * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&s, "2026-10-24T23:30:00Z", 3),
            [
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T02:00:00+00:00"
            ]
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_typed_errors() {
        assert!(matches!(
            Schedule::new("61 * * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::new("not cron", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert_eq!(
            Schedule::new("0 * * * *", "Mars/Olympus"),
            Err(ScheduleError::TimeZone("Mars/Olympus".into()))
        );
        assert_eq!(Schedule::new("@daily", "").unwrap().time_zone(), "UTC");
    }
}
