//! A password that never shows itself: its `Debug` is `Secret(***)` and it has no `Display`, so
//! it cannot reach a report, an error, a log line or `{:?}` by accident.

/// A password, static or generated.
///
/// ```
/// let s = datasync::Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Secret {
        // Boxed: a run holds one per new object until its write, and a box is 8 bytes less.
        Secret(value.into().into_boxed_str())
    }

    /// The password itself. Every call site is a place where the password leaves the library
    /// on purpose: a hash, a directory write, the host's delivery hook.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `value` for `Debug` output, or `<redacted>` when it holds a secret (a field map's
/// password transform carries the static password in its text).
pub(crate) fn redacted_if<T: std::fmt::Debug>(secret: bool, value: &T) -> &dyn std::fmt::Debug {
    if secret { &"<redacted>" } else { value }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}
