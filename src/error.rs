//! The error of a job that could not run. Row-level problems are not errors: they are
//! [`RowFailure`](crate::report::RowFailure)s in the report, and the job finishes.

use crate::destination::DestinationError;
use crate::job::{JobErrors, LoadError};
use crate::query::QueryError;
use crate::source::SourceError;

/// Why a job could not run. Whenever a run returns one of these, nothing was written.
#[derive(Debug, thiserror::Error)]
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
        /// What the source said.
        source: SourceError,
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

impl Error {
    /// True when running the job again later may succeed (the destination was unreachable or
    /// busy), as opposed to a mistake in the job or its data.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Destination { source, .. } if source.is_transient())
    }
}
