//! # datasync
//!
//! Identity data-sync jobs, run inside your own service. A job — in the GroupID
//! `DataSyncJobs` JSON format, loaded unchanged — reads rows from a source (an Excel workbook or
//! CSV queried with SQL, or an LDAP directory), turns each row into a directory object through
//! its field map, matches it to the destination by key fields, and creates, updates, renames,
//! deletes or deprovisions entries in an LDAP server or Active Directory
//! ([`destination::LdapDirectory`]) or, by default, an embedded directory store kept in one
//! SQLite file ([`Store`]; [`LdifDirectory`] keeps a small one in an LDIF file).
//!
//! The pipeline, one module a stage:
//!
//! | stage | module | door |
//! |---|---|---|
//! | job model | [`job`], [`plan`] | [`job::load`] → [`plan::compile`] → [`Plan`] |
//! | source | [`source`] | [`Source`] |
//! | transform | [`transform`] | [`Transform`](transform::Transform) |
//! | destination query | [`query`] | [`Filter`](query::Filter) |
//! | matching | `matching` (private) | [`normalize_key`]: how keys compare |
//! | destination | [`destination`] | [`Destination`] |
//! | LDAP connections | [`ldap`] | [`LdapConfig`](ldap::LdapConfig) |
//! | engine and hooks | [`engine`], [`hooks`] | [`engine::run`], [`Hooks`] |
//! | result | [`report`] | [`Report`] |
//!
//! ## Running a job
//!
//! ```
//! use datasync::{engine, job, plan, LdifDirectory, NoHooks, RunStatus};
//!
//! let wire = job::load("fixtures/jobs/excel-to-ad.json".as_ref())?;
//! let plan = plan::compile(&wire, &Default::default()).map_err(|errors| errors.to_string())?;
//! let mut source = datasync::source::open("fixtures/sources/people.xlsx".as_ref())?;
//! let directory = LdifDirectory::in_memory();
//!
//! let report = engine::run(&plan, source.as_mut(), &directory, &NoHooks, &Default::default())?;
//! assert_eq!(report.status, RunStatus::FinishedSuccess);
//!
//! // A second run finds every object as the source says: nothing changes.
//! let mut source = datasync::source::open("fixtures/sources/people.xlsx".as_ref())?;
//! let again = engine::run(&plan, source.as_mut(), &directory, &NoHooks, &Default::default())?;
//! assert_eq!(again.counts.unchanged, again.counts.read);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Transforms
//!
//! A field map entry's `transform` is `Name:param=value;param=value` (a literal `;` is `\;`).
//! An empty transform copies `sourceField`. Where `field` is left out, `sourceField` is used.
//! `Join`, `Static` and `Script` are spelled as the product stores them; the others are ours,
//! in the same style.
//!
//! | transform | parameters | result |
//! |---|---|---|
//! | *(empty)* | — | the value of `sourceField` |
//! | `Join` | `field`, `separator`, … in any number and order | the parts joined in order; a missing field joins as empty |
//! | `Static` | `value` | the text, with `%NAME%` replaced: the job's parameters and the caller's variables, `%NOW%` and `%TODAY%` (the run's start, ISO 8601), and `%ENV:NAME%` for an environment variable the job names (never datasync's own `DATASYNC_*`); an unknown name is a load error |
//! | `Left` | `field`, `length` | the first `length` characters |
//! | `Right` | `field`, `length` | the last `length` characters |
//! | `Substring` | `field`, `start`, `length` (optional) | skips `start` characters, keeps `length` (or the rest) |
//! | `Upper` / `Lower` / `Trim` | `field` | upper-cased / lower-cased / without surrounding white space |
//! | `Replace` | `field`, `pattern` (regex), `with` | every match replaced; `$1` names a group |
//! | `Split` | `field`, `separator`, `index` (0-based, negative from the end; default 0) | one piece |
//! | `Date` | `field`, `from` (optional), `to` | the date re-formatted (`strftime` formats); without `from`, ISO 8601 input |
//! | `Resolve` | `field`, `attribute` | the DN of the one destination object whose `attribute` equals the value (none: empty; several: the row fails). With a `delimiter` (a group's `member`), each value on its own, one naming no object or several left out with a warning; on `memberOf`, the groups the row's object joins (see the README) |
//! | `Script` | `name` (or the product's `text`) | a Rust function the host registered in [`transform::Scripts`] |
//!
//! Characters are Unicode scalar values. An empty result means "no value".
//!
//! A field map entry's `delimiter` splits its value into a multi-valued attribute. The
//! `password` field takes its `options`: `passwordType` 0 uses the transform's value for every
//! row, 1 generates a unique password per new object (see [`transform::PasswordPolicy`]).
//! Passwords are [`Secret`]s: they reach the host through [`Hooks::password_set`] and nowhere
//! else.
#![deny(missing_docs)]

pub mod clock;
pub mod destination;
pub mod dn;
pub mod engine;
pub mod entry;
mod error;
pub mod files;
pub mod hooks;
pub mod job;
#[cfg(feature = "ldap")]
pub mod ldap;
pub mod lifecycle;
mod matching;
pub mod plan;
pub mod query;
pub mod report;
mod retry;
mod secret;
pub mod source;
mod text;
pub mod tls;
pub mod transform;

/// An error from code underneath (a host's script or hook, a reader, a driver), whatever its
/// type: kept as the [`source`](std::error::Error::source) of ours. A `String` or `&str` turns
/// into one with `.into()`, as does any error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use destination::{Destination, DestinationError, Entry, LdifDirectory, Store};
pub use engine::{RunOptions, run};
pub use error::{Error, ErrorKind};
pub use hooks::{HookContext, Hooks, NoHooks};
pub use job::{DataSyncJob, ObjectType};
pub use matching::normalize_key;
pub use plan::{Plan, compile};
pub use report::{Report, RunStatus};
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use source::Source;
