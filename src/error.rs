//! The error of a job that could not run. Row-level problems are not errors: they are
//! [`RowFailure`](crate::report::RowFailure)s in the report, and the job finishes.

use crate::destination::DestinationError;
use crate::job::{JobErrors, LoadError};
use crate::query::QueryError;
use crate::source::SourceError;

/// Why a job could not run. Whenever a run returns one of these, nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job file could not be read or is not job JSON.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The job has mistakes; all of them are listed.
    #[error("job \"{job}\" is not valid:\n{errors}")]
    Invalid {
        /// The job's name.
        job: String,
        /// Every mistake, each with its location.
        errors: JobErrors,
    },
    /// The source could not be read or queried.
    #[error("job \"{job}\", object type {object_type}{}: {source}", field.as_ref().map(|f| format!(", {f}")).unwrap_or_default())]
    Source {
        /// The job's name.
        job: String,
        /// The object type whose query failed.
        object_type: i64,
        /// The mapping that needs a missing column, when that is the problem.
        field: Option<String>,
        /// What the source said (boxed: it is the largest of these errors).
        source: Box<SourceError>,
    },
    /// A destination query (after the hooks) does not compile.
    #[error("job \"{job}\", object type {object_type}: destination query: {source}")]
    Query {
        /// The job's name.
        job: String,
        /// The object type.
        object_type: i64,
        /// What is wrong.
        source: QueryError,
    },
    /// The destination could not be read or the run's writes could not be made durable.
    #[error("job \"{job}\": destination: {source}")]
    Destination {
        /// The job's name.
        job: String,
        /// What the destination said.
        source: DestinationError,
    },
    /// A job-level hook (`startup`, a query hook) failed.
    #[error("job \"{job}\": the {event} hook failed: {message}")]
    Hook {
        /// The job's name.
        job: String,
        /// The event.
        event: &'static str,
        /// What it said.
        message: String,
    },
}

/// What kind of problem stopped a job, for a host that acts on it (a report, a retry, an
/// alert) without parsing the message. A finished run's [`Report`](crate::Report) keeps it
/// in `error_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The job file could not be read or is not job JSON.
    Load,
    /// The job has mistakes.
    Invalid,
    /// The source could not be opened or read: a missing or damaged file, an unreachable
    /// server, a refused log-on.
    SourceUnreadable,
    /// The source query failed, or names a sheet or column the source does not have.
    SourceQuery,
    /// The source sent more than a run takes.
    SourceTooLarge,
    /// A destination query does not compile.
    DestinationQuery,
    /// The destination could not be read or written, or the run could not be kept.
    Destination,
    /// A job-level hook failed.
    Hook,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Load(_) => ErrorKind::Load,
            Error::Invalid { .. } => ErrorKind::Invalid,
            Error::Source { source, .. } => match source.as_ref() {
                SourceError::Query { .. }
                | SourceError::MissingColumn { .. }
                | SourceError::MissingSheet { .. }
                | SourceError::DuplicateColumn { .. } => ErrorKind::SourceQuery,
                SourceError::TooLarge { .. } => ErrorKind::SourceTooLarge,
                _ => ErrorKind::SourceUnreadable,
            },
            Error::Query { .. } => ErrorKind::DestinationQuery,
            Error::Destination { .. } => ErrorKind::Destination,
            Error::Hook { .. } => ErrorKind::Hook,
        }
    }

    /// True when running the job again later may succeed (the destination was unreachable or
    /// busy), as opposed to a mistake in the job or its data.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Destination { source, .. } if source.is_transient())
    }
}

/// An error's message followed by its causes (`message: cause: cause`), each cause once and
/// left out where the message already holds it: where errors become the report's text.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}
