//! How failed work is tried again: one doubling backoff for the LDAP connections' retries of
//! a refused or busy operation, the runner's retries of a run, and the command line's retries
//! of opening a destination.

use std::time::Duration;

/// When and how often failed work is tried again: the wait doubles from `first_wait` up to
/// `max_wait`.
///
/// Only transient failures are retried: for an LDAP operation, the connection refused, reset
/// or timed out, or the server answering busy (51) or unavailable (52); for a run, an error
/// that [`is_transient`](crate::Error::is_transient).
///
/// ```
/// use std::time::Duration;
/// let policy = datasync::RetryPolicy {
///     attempts: 5,
///     first_wait: Duration::from_secs(1),
///     max_wait: Duration::from_secs(3),
/// };
/// let waits: Vec<u64> = (1..5).map(|a| policy.wait(a).as_secs()).collect();
/// assert_eq!(waits, [1, 2, 3, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 = no retry).
    pub attempts: u32,
    /// The wait before the second try.
    pub first_wait: Duration,
    /// The longest wait between two tries.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_wait: Duration::from_millis(100),
            max_wait: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `attempt` (1-based).
    pub fn wait(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_wait.saturating_mul(factor).min(self.max_wait)
    }
}
