//! Time, injectable: the runner reads the time and waits between retries through a [`Clock`],
//! so tests drive time-outs and backoff with a [`ManualClock`] instead of sleeping. And the
//! one way times are written ([`iso`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A time as every record writes it: ISO 8601 in UTC, to the millisecond, with the offset
/// spelt out (`2000-01-23T04:56:07.000+00:00`, as the reference pages show it).
///
/// ```
/// let t = chrono::DateTime::parse_from_rfc3339("2026-03-29T00:30:00.123456Z").unwrap();
/// assert_eq!(datasync::clock::iso(t.to_utc()), "2026-03-29T00:30:00.123+00:00");
/// ```
pub fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// Where the runner gets the time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Waits `duration` (a manual clock just moves on).
    fn sleep(&self, duration: Duration);
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A clock that moves only when told: [`advance`](ManualClock::advance), or a `sleep`, which
/// returns at once after moving the time on.
///
/// ```
/// use datasync::clock::{Clock, ManualClock};
/// let clock = ManualClock::at("2026-03-29T00:30:00Z");
/// clock.sleep(std::time::Duration::from_secs(90));
/// assert_eq!(clock.now().to_rfc3339(), "2026-03-29T00:31:30+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock showing `rfc3339`.
    ///
    /// # Panics
    /// When the text is not RFC 3339 (this is for tests).
    pub fn at(rfc3339: &str) -> ManualClock {
        let t = DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
            .with_timezone(&Utc);
        ManualClock(Arc::new(Mutex::new(t)))
    }

    /// Moves the time on.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}
