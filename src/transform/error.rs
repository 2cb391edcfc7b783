//! Why a transform, a host's script or a `Resolve` lookup failed.

use crate::BoxError;

/// Why a transform could not be parsed, bound to the source's columns, or applied to a row.
/// Parse and bind errors refuse the job before anything is written; apply errors fail their
/// row only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// The stored `Name:param=value;…` text is not a transform, or its parameters are wrong.
    #[error("{0}")]
    Syntax(String),
    /// A field the transform reads is not a column of the source.
    #[error("the source has no column {column:?}")]
    MissingColumn {
        /// The column named.
        column: String,
    },
    /// The row's value cannot be transformed (a `Date` that is not a date).
    #[error("{0}")]
    Value(String),
    /// A `Resolve` lookup found several objects, or could not ask the directory.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A host's `Script` function failed or panicked.
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// Why a host's script function gave no value: its own error (kept as the
/// [`source`](std::error::Error::source)), or a panic, which fails its row only, as a hook's does.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The function returned an error.
    #[error("Script \"{name}\" failed: {source}")]
    Failed {
        /// The name it is registered under.
        name: String,
        /// The function's error.
        #[source]
        source: BoxError,
    },
    /// The function panicked.
    #[error("Script \"{name}\" panicked: {message}")]
    Panicked {
        /// The name it is registered under.
        name: String,
        /// The panic's message.
        message: String,
    },
}

/// Why a `Resolve` lookup has no one answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Several objects have the value.
    #[error("Resolve: {} objects have {attribute}={value}: {}", dns.len(), dns.join("; "))]
    Ambiguous {
        /// The attribute looked up.
        attribute: String,
        /// The value looked for.
        value: String,
        /// The objects that have it.
        dns: Vec<String>,
    },
    /// The directory could not be read.
    #[error("Resolve: cannot read the directory: {source}")]
    Directory {
        /// The directory's error.
        #[source]
        source: BoxError,
    },
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
