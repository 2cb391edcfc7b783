//! Event hooks: the Rust replacement for the product's VB script module (`DTM_*` events).
//!
//! A host implements [`Hooks`], overriding only the events it cares about; every method has a
//! default that does nothing. The engine calls hooks from several worker threads at once, so
//! methods take `&self` (use a `Mutex` or atomics for state, or the shared [`HookContext`],
//! the product's `AddToContext`).
//!
//! What a return value does to the run:
//! - `Ok(ControlFlow::Continue(()))` / `Ok(())`: go on.
//! - `Ok(ControlFlow::Break(()))` from `row_starting` or an `*_ing` event: cancel that row or
//!   write (the product's `CancelRow()`); it is counted as skipped.
//! - `Err(_)`, or a panic, from a row event: that row fails, with the message; the job goes on.
//! - `Err(_)` from `startup` or a query event: the job cannot run, and nothing is written.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Mutex;

use crate::Secret;
use crate::destination::AttributeName;
use crate::job::ObjectType;
use crate::report::{Report, RowFailure};
use crate::source::Columns;

/// A hook's error: the message that fails the row (or the job, for job-level events), and
/// the host's own error under it when there is one (its [`source`](std::error::Error::source)).
///
/// ```
/// use datasync::hooks::HookError;
/// let plain: HookError = "Frank's row is refused".into();
/// assert_eq!(plain.to_string(), "Frank's row is refused");
/// let io = std::io::Error::other("disk full");
/// let wrapped = HookError::with_source("cannot log the row", io);
/// assert_eq!(std::error::Error::source(&wrapped).unwrap().to_string(), "disk full");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    message: String,
    #[source]
    source: Option<crate::BoxError>,
}

impl HookError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> HookError {
        HookError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with this message, caused by `source` (the host's own error).
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<crate::BoxError>,
    ) -> HookError {
        HookError {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for HookError {
    fn from(s: String) -> Self {
        HookError::new(s)
    }
}

impl From<&str> for HookError {
    fn from(s: &str) -> Self {
        HookError::new(s)
    }
}

/// What a hook returns.
pub type HookResult<T = ()> = Result<T, HookError>;

/// State shared by every hook of one run (the product's `AddToContext` / `Context`).
#[derive(Debug, Default)]
pub struct HookContext {
    job: String,
    dry_run: bool,
    values: Mutex<HashMap<String, String>>,
}

impl HookContext {
    /// A context for a run of `job`.
    pub fn new(job: &str, dry_run: bool) -> HookContext {
        HookContext {
            job: job.to_string(),
            dry_run,
            values: Mutex::default(),
        }
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job
    }

    /// True in a dry run: nothing will be written.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Stores a value every later hook can read.
    pub fn add_to_context(&self, key: &str, value: impl Into<String>) {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), value.into());
    }

    /// A value an earlier hook stored.
    pub fn context(&self, key: &str) -> Option<String> {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }
}

/// A query about to run; the hook may rewrite it.
#[derive(Debug)]
pub struct QueryEvent<'a> {
    /// The object type.
    pub object_type: ObjectType,
    /// The SQL (source) or GroupID query / LDAP filter (destination).
    pub query: &'a mut String,
}

/// A source row about to be transformed; the hook may change its values.
#[derive(Debug)]
pub struct RowStart<'a> {
    /// The object type.
    pub object_type: ObjectType,
    /// The row number the user sees.
    pub row: u64,
    /// The columns.
    pub columns: &'a Columns,
    /// The values, one per column; change them to change what the transforms see.
    pub values: &'a mut Vec<Option<String>>,
}

impl RowStart<'_> {
    /// The value of a column (case-insensitive name).
    pub fn get(&self, column: &str) -> Option<&str> {
        self.columns
            .index(column)
            .and_then(|i| self.values.get(i))
            .and_then(|v| v.as_deref())
    }

    /// Sets the value of a column; `false` if there is no such column.
    pub fn set(&mut self, column: &str, value: Option<String>) -> bool {
        match self.columns.index(column) {
            Some(i) if i < self.values.len() => {
                self.values[i] = value;
                true
            }
            _ => false,
        }
    }
}

/// A write about to be made (or just made): an object created or changed.
#[derive(Debug, Clone)]
pub struct RowWrite {
    /// The object type.
    pub object_type: ObjectType,
    /// The row number the user sees.
    pub row: u64,
    /// The row's key.
    pub key: String,
    /// The object's DN (the new DN for a rename).
    pub dn: String,
    /// For a create, every attribute of the new object, moved in from it (no copy) and moved
    /// back for the add; for a change, the attributes that change, with their new values (no
    /// values removes the attribute). A `*_ing` hook may edit this list: what `row_adding`
    /// leaves is the object created (a name given twice is merged). The password is not in it.
    pub attributes: Vec<(AttributeName, Vec<String>)>,
    /// Sets of DNs changed value by value rather than replaced: a group's `member` (the members
    /// added and removed), and a user row's `memberOf` (the groups it joins and leaves, written
    /// to those groups' `member` once the type's rows are done). Empty for most writes. A
    /// `*_ing` hook may edit it: what `row_changing` leaves is what is written.
    pub value_changes: Vec<ValueChanges>,
}

impl RowWrite {
    /// The values `attributes` gives `name` (names compare without case), or `None` when the
    /// write does not touch it.
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The values added to and removed from one multi-valued attribute by a write (see
/// [`RowWrite::value_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueChanges {
    /// The attribute (`member`, or `memberOf` for the groups a user joins and leaves).
    pub attribute: AttributeName,
    /// Values added (DNs as the run resolved them).
    pub added: Vec<String>,
    /// Values removed (DNs as the directory holds them).
    pub removed: Vec<String>,
}

impl ValueChanges {
    /// True when nothing is added or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// An object about to be (or just) deleted or deprovisioned.
#[derive(Debug, Clone)]
pub struct RowDelete {
    /// The object type.
    pub object_type: ObjectType,
    /// The object's DN.
    pub dn: String,
    /// True when it is disabled and moved instead of deleted.
    pub deprovision: bool,
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowOutcome {
    /// An object was created.
    Added,
    /// An object was changed or renamed.
    Updated,
    /// Nothing needed to change.
    Unchanged,
    /// The row was skipped (cancelled, or no match while creating is off).
    Skipped,
}

/// A row that finished.
#[derive(Debug, Clone)]
pub struct RowDone {
    /// The object type.
    pub object_type: ObjectType,
    /// The row number the user sees.
    pub row: u64,
    /// The row's key, if computed.
    pub key: Option<String>,
    /// The object's DN, if there is one.
    pub dn: Option<String>,
    /// What happened.
    pub outcome: RowOutcome,
}

/// A password that was just set, for the host to deliver (the product's manager notification).
#[derive(Debug)]
pub struct PasswordSet<'a> {
    /// The object whose password it is.
    pub dn: &'a str,
    /// The row number the user sees.
    pub row: u64,
    /// The password.
    pub password: &'a Secret,
    /// True when the policy asks for the manager to be told.
    pub notify_manager: bool,
}

/// The events of a run. See the [module docs](self) for what return values do.
#[allow(unused_variables)]
pub trait Hooks: Sync {
    /// Before anything is read (`DTM_Startup`). An error stops the job.
    fn startup(&self, ctx: &HookContext) -> HookResult {
        Ok(())
    }

    /// The source query of an object type, before it runs (`DTM_BuildSourceQuery`).
    fn build_source_query(&self, ctx: &HookContext, event: &mut QueryEvent<'_>) -> HookResult {
        Ok(())
    }

    /// The destination query of an object type, before the destination is read
    /// (`DTM_BuildDestinationQuery`).
    fn build_destination_query(&self, ctx: &HookContext, event: &mut QueryEvent<'_>) -> HookResult {
        Ok(())
    }

    /// A row, before its transforms (`DTM_RowStarting`); `Break` cancels the row.
    fn row_starting(
        &self,
        ctx: &HookContext,
        row: &mut RowStart<'_>,
    ) -> HookResult<ControlFlow<()>> {
        Ok(ControlFlow::Continue(()))
    }

    /// An object about to be created (`DTM_RowAdding`); `Break` cancels the create.
    fn row_adding(&self, ctx: &HookContext, write: &mut RowWrite) -> HookResult<ControlFlow<()>> {
        Ok(ControlFlow::Continue(()))
    }

    /// An object was created (`DTM_RowAdded`).
    fn row_added(&self, ctx: &HookContext, write: &RowWrite) -> HookResult {
        Ok(())
    }

    /// An object about to be changed (`DTM_RowChanging`); `Break` cancels the change.
    fn row_changing(&self, ctx: &HookContext, write: &mut RowWrite) -> HookResult<ControlFlow<()>> {
        Ok(ControlFlow::Continue(()))
    }

    /// An object was changed (`DTM_RowChanged`).
    fn row_changed(&self, ctx: &HookContext, write: &RowWrite) -> HookResult {
        Ok(())
    }

    /// An object about to be deleted or deprovisioned (`DTM_RowDeleting`); `Break` keeps it.
    fn row_deleting(&self, ctx: &HookContext, delete: &RowDelete) -> HookResult<ControlFlow<()>> {
        Ok(ControlFlow::Continue(()))
    }

    /// An object was deleted or deprovisioned (`DTM_RowDeleted`).
    fn row_deleted(&self, ctx: &HookContext, delete: &RowDelete) -> HookResult {
        Ok(())
    }

    /// A row is about to finish (`DTM_RowFinishing`).
    fn row_finishing(&self, ctx: &HookContext, row: &RowDone) -> HookResult {
        Ok(())
    }

    /// A row finished (`DTM_RowFinished`).
    fn row_finished(&self, ctx: &HookContext, row: &RowDone) -> HookResult {
        Ok(())
    }

    /// A row failed (`DTM_RowFailed`). Nothing it does changes the run.
    fn row_failed(&self, ctx: &HookContext, failure: &RowFailure) {}

    /// A password was set on an object: deliver it here. Not called in a dry run.
    fn password_set(&self, ctx: &HookContext, event: &PasswordSet<'_>) -> HookResult {
        Ok(())
    }

    /// After every row and delete, before the destination commits (`DTM_Shutdown`). An error
    /// is recorded in the report; the writes stand.
    fn shutdown(&self, ctx: &HookContext, report: &Report) -> HookResult {
        Ok(())
    }

    /// A run the [lifecycle](crate::lifecycle) finished, when the job's notification rules
    /// (`IsNotificationEnabled`, `Notification.When`) say to tell someone: send the mail
    /// here. Called once per run, after its last attempt, on the runner's thread.
    fn notify(&self, notification: &Notification<'_>) {}
}

/// A finished run to announce, and which of the job's rules chose it.
#[derive(Debug)]
pub struct Notification<'a> {
    /// The job.
    pub job: &'a str,
    /// The run's id in its runner.
    pub run: u64,
    /// The rules that matched, in the job's order.
    pub reasons: &'a [NotifyWhen],
    /// The run's report (it holds no passwords).
    pub report: &'a Report,
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// When a finished run sends a notification (the product's four choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NotifyWhen {
    /// After every run.
    Always,
    /// When objects were created, changed or deleted.
    RecordsUpdated,
    /// When a row or a delete failed, or the run reported an error.
    Errors,
    /// When the run failed or ran out of time (not when it was cancelled).
    JobFailed,
}

impl NotifyWhen {
    /// Reads `Always`, `RecordsUpdated`, `Errors`, `JobFailed` (any case; the words of the
    /// product's dialog, `records are updated`, `errors occur`, `job fails`, also do).
    pub fn parse(text: &str) -> Option<NotifyWhen> {
        let t: String = text
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        match t.as_str() {
            "always" => Some(NotifyWhen::Always),
            "recordsupdated" | "whenrecordsareupdated" | "recordsareupdated" | "updated" => {
                Some(NotifyWhen::RecordsUpdated)
            }
            "errors" | "error" | "erroroccurs" | "errorsoccur" | "whenoneormoreerrorsoccur" => {
                Some(NotifyWhen::Errors)
            }
            "jobfailed" | "jobfails" | "whenthejobfails" | "failed" => Some(NotifyWhen::JobFailed),
            _ => None,
        }
    }
}
