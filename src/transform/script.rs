//! Scripts: the host's Rust functions that stand in for the product's VB `Script` transforms,
//! registered by name and called per row with a panic caught, so that it fails its row only.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::error;
use super::{BoxError, ScriptError};
use crate::source::Columns;

/// What a host's script function sees: the row, and the value of the mapping's `sourceField`.
pub struct ScriptInput<'a> {
    /// The value of the mapping's `sourceField` (or the `field` parameter), if any.
    pub value: Option<&'a str>,
    /// The destination attribute being computed.
    pub destination_field: &'a str,
    /// The whole source row.
    pub row: RowView<'a>,
}

/// A read-only view of one source row, looked up by column name (case-insensitive).
#[derive(Clone, Copy)]
pub struct RowView<'a> {
    columns: &'a Columns,
    values: &'a [Option<String>],
}

impl<'a> RowView<'a> {
    /// A view of `values` under `columns`.
    pub fn new(columns: &'a Columns, values: &'a [Option<String>]) -> RowView<'a> {
        RowView { columns, values }
    }

    /// The value of column `name`, if the column exists and the cell is not empty.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.columns
            .index(name)
            .and_then(|i| self.values.get(i))
            .and_then(|v| v.as_deref())
    }
}

/// A host function that replaces a VB `Script` transform: it returns the attribute value
/// (`None` for no value) or an error that fails the row (see [`Scripts::register`]).
pub type ScriptFn = Arc<dyn Fn(&ScriptInput<'_>) -> Result<Option<String>, BoxError> + Send + Sync>;

/// The script functions a host registers, by the name `Script:name=…` uses.
///
/// ```
/// use datasync::transform::Scripts;
/// let mut scripts = Scripts::default();
/// scripts.register("initials", |input| {
///     Ok(input.row.get("First").and_then(|f| f.chars().next()).map(String::from))
/// });
/// assert!(scripts.contains("initials"));
/// ```
#[derive(Clone, Default)]
pub struct Scripts {
    functions: HashMap<String, ScriptFn>,
}

impl Scripts {
    /// Registers `function` under `name`; a later registration of the same name replaces it.
    /// Its error is any error boxed (`Err("why".into())`, or `?` on the host's own error): it
    /// fails the row, and is kept as the [`source`](std::error::Error::source) of the row's
    /// [`ScriptError`]. A panic in it fails its row only.
    pub fn register<F>(&mut self, name: &str, function: F)
    where
        F: Fn(&ScriptInput<'_>) -> Result<Option<String>, BoxError> + Send + Sync + 'static,
    {
        self.functions.insert(name.to_string(), Arc::new(function));
    }

    /// True when `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// The script registered under `name`, bound for use in a plan.
    pub fn script(&self, name: &str) -> Option<Script> {
        self.functions.get(name).map(|f| Script {
            name: name.to_string(),
            function: f.clone(),
        })
    }
}

impl fmt::Debug for Scripts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.functions.keys()).finish()
    }
}

/// A registered script bound into a transform.
#[derive(Clone)]
pub struct Script {
    /// The name it was registered under.
    pub name: String,
    function: ScriptFn,
}

impl Script {
    /// Calls the script. A panic in it is caught and returned as
    /// [`ScriptError::Panicked`], so that it fails the row that called it, not the run.
    pub fn call(&self, input: &ScriptInput<'_>) -> Result<Option<String>, ScriptError> {
        let called =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.function)(input)));
        match called {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(ScriptError::Failed {
                name: self.name.clone(),
                source,
            }),
            Err(panic) => Err(ScriptError::Panicked {
                name: self.name.clone(),
                message: error::panic_message(panic.as_ref()),
            }),
        }
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Script({})", self.name)
    }
}
