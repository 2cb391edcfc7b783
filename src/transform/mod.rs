//! Field transforms: the stored `Name:param=value;param=value` language, parsed once at load into
//! a [`Transform`], bound to column positions once per run, and applied per row without parsing.
//!
//! The syntax: a transform name (case-insensitive), `:`, then `param=value` pairs separated by
//! `;`. A value runs to the next `;` (write `\;` for a literal one) and may contain `=`. Where a
//! transform takes `field` and it is left out, the mapping's `sourceField` is used. See the
//! crate documentation for the table of transforms.

mod error;
mod password;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{NaiveDate, NaiveDateTime};
use regex::Regex;

pub use crate::BoxError;
pub(crate) use error::panic_message;
pub use error::{ResolveError, ScriptError, TransformError};
pub use password::{PasswordPolicy, PasswordRule, PolicyError};

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

/// A piece of a `Join`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JoinPart<F> {
    /// A source field's value (empty when missing).
    Field(F),
    /// A separator, as written.
    Text(String),
}

/// A piece of a `Static` value after `%NAME%` expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Segment {
    /// Fixed text.
    Text(String),
    /// `%NOW%`: the run's start time, ISO 8601.
    Now,
    /// `%TODAY%`: the run's start date, ISO 8601.
    Today,
}

/// A compiled transform. `F` is how a source field is named: `String` after parsing,
/// `usize` (a column position) once bound to a source's columns.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Transform<F = String> {
    /// No transform: the source field's value.
    Copy(F),
    /// `Join:field=A;separator=_;field=B`: the parts in order.
    Join(Vec<JoinPart<F>>),
    /// `Static:value=…`: fixed text with `%NAME%` variables.
    Static(Vec<Segment>),
    /// `Left:field=X;length=N`: the first N characters.
    Left {
        /// Source field.
        field: F,
        /// Characters kept.
        length: usize,
    },
    /// `Right:field=X;length=N`: the last N characters.
    Right {
        /// Source field.
        field: F,
        /// Characters kept.
        length: usize,
    },
    /// `Substring:field=X;start=N;length=M`: skip N characters, keep M (or the rest).
    Substring {
        /// Source field.
        field: F,
        /// Characters skipped.
        start: usize,
        /// Characters kept; all the rest when absent.
        length: Option<usize>,
    },
    /// `Upper:field=X`.
    Upper(F),
    /// `Lower:field=X`.
    Lower(F),
    /// `Trim:field=X`: leading and trailing white space removed.
    Trim(F),
    /// `Replace:field=X;pattern=REGEX;with=TEXT`: every match replaced (`$1` refers to groups).
    Replace {
        /// Source field.
        field: F,
        /// The compiled pattern.
        pattern: Regex,
        /// The replacement.
        with: String,
    },
    /// `Split:field=X;separator=S;index=N`: the N-th piece (0-based; negative counts from the end).
    Split {
        /// Source field.
        field: F,
        /// The separator.
        separator: String,
        /// Which piece.
        index: i64,
    },
    /// `Date:field=X;from=FMT;to=FMT`: reformat a date (chrono `strftime` formats).
    Date {
        /// Source field.
        field: F,
        /// Input format; ISO 8601 dates and date-times when absent.
        from: Option<String>,
        /// Output format.
        to: String,
    },
    /// `Resolve:field=X;attribute=A`: the DN of the destination object whose `A` equals the value.
    Resolve {
        /// Source field.
        field: F,
        /// The destination attribute to match.
        attribute: String,
    },
    /// `Script:name=N`: a function the host registered.
    Script {
        /// The mapping's source field, passed as [`ScriptInput::value`].
        field: Option<F>,
        /// The function.
        script: Script,
    },
}

/// What a transform needs from outside the row while it runs.
pub trait Resolver: Sync {
    /// The DN of the one destination object whose `attribute` equals `value`: `Ok(None)` when
    /// there is none, [`ResolveError::Ambiguous`] when there are several.
    fn resolve(&self, attribute: &str, value: &str) -> Result<Option<String>, ResolveError>;
}

/// A resolver for runs without `Resolve` transforms: nothing resolves.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn resolve(&self, _: &str, _: &str) -> Result<Option<String>, ResolveError> {
        Ok(None)
    }
}

/// The per-run values a transform reads besides the row.
pub struct RunValues<'a> {
    /// `%NOW%`.
    pub now: &'a str,
    /// `%TODAY%`.
    pub today: &'a str,
    /// For `Resolve`.
    pub resolver: &'a dyn Resolver,
}

/// What `Static` variables and `Script` names resolve against at compile time.
#[derive(Debug, Clone, Default)]
pub struct TransformContext {
    /// `%NAME%` values the caller provides (the job's parameters, `--var`). The environment is
    /// read only through `%ENV:NAME%`.
    pub variables: HashMap<String, String>,
    /// Registered script functions.
    pub scripts: Scripts,
}

/// The names the language knows, for error messages.
pub const TRANSFORM_NAMES: &[&str] = &[
    "Join",
    "Static",
    "Left",
    "Right",
    "Substring",
    "Upper",
    "Lower",
    "Trim",
    "Replace",
    "Split",
    "Date",
    "Resolve",
    "Script",
];

/// Splits `Name:a=1;b=2` into the name and its parameters in order (`\;` is a literal `;`).
fn split_params(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let (name, rest) = match text.split_once(':') {
        Some((n, r)) => (n.trim(), r),
        None => (text.trim(), ""),
    };
    let mut params = Vec::new();
    let mut current = String::new();
    let mut pieces = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&';') => {
                current.push(';');
                chars.next();
            }
            ';' => pieces.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    pieces.push(current);
    for piece in pieces {
        if piece.trim().is_empty() {
            continue;
        }
        let (key, value) = piece
            .split_once('=')
            .ok_or_else(|| format!("parameter \"{piece}\" has no '='"))?;
        params.push((key.trim().to_ascii_lowercase(), value.to_string()));
    }
    Ok((name.to_string(), params))
}

struct Params {
    transform: String,
    list: Vec<(String, String)>,
    source_field: Option<String>,
}

impl Params {
    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.list.iter().position(|(k, _)| k == key)?;
        Some(self.list.remove(i).1)
    }

    fn required(&mut self, key: &str) -> Result<String, String> {
        self.take(key)
            .ok_or_else(|| format!("{} needs the parameter {key}", self.transform))
    }

    fn field(&mut self) -> Result<String, String> {
        match self.take("field") {
            Some(f) if !f.trim().is_empty() => Ok(f.trim().to_string()),
            _ => self.source_field.clone().ok_or_else(|| {
                format!(
                    "{} needs the parameter field (or a sourceField)",
                    self.transform
                )
            }),
        }
    }

    fn number(&mut self, key: &str) -> Result<usize, String> {
        let text = self.required(key)?;
        text.trim().parse().map_err(|_| {
            format!(
                "{}: {key}={text} is not a whole number of 0 or more",
                self.transform
            )
        })
    }

    fn finish(self) -> Result<(), String> {
        match self.list.first() {
            Some((k, _)) => Err(format!("{} has no parameter {k}", self.transform)),
            None => Ok(()),
        }
    }
}

impl Transform<String> {
    /// Parses a stored transform. `source_field` is the mapping's `sourceField` (empty: none).
    ///
    /// ```
    /// use datasync::transform::{Transform, TransformContext};
    /// let t = Transform::parse("Join:field=First;separator=_api_;field=Last", None, &TransformContext::default());
    /// assert!(t.is_ok());
    /// let e = Transform::parse("Foo:x=1", None, &TransformContext::default()).unwrap_err();
    /// assert_eq!(e.to_string(), "unknown transform \"Foo\"");
    /// ```
    pub fn parse(
        text: &str,
        source_field: Option<&str>,
        context: &TransformContext,
    ) -> Result<Transform<String>, TransformError> {
        Self::parse_text(text, source_field, context).map_err(TransformError::Syntax)
    }

    fn parse_text(
        text: &str,
        source_field: Option<&str>,
        context: &TransformContext,
    ) -> Result<Transform<String>, String> {
        let source_field = source_field
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from);
        if text.trim().is_empty() {
            return source_field
                .map(Transform::Copy)
                .ok_or_else(|| "neither a sourceField nor a transform".to_string());
        }
        let (name, list) = split_params(text)?;
        let canonical = TRANSFORM_NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&name))
            .ok_or_else(|| format!("unknown transform \"{name}\""))?;
        let mut p = Params {
            transform: canonical.to_string(),
            list,
            source_field,
        };
        let t = match *canonical {
            "Join" => {
                let parts: Vec<JoinPart<String>> = std::mem::take(&mut p.list)
                    .into_iter()
                    .map(|(k, v)| match k.as_str() {
                        "field" => Ok(JoinPart::Field(v.trim().to_string())),
                        "separator" => Ok(JoinPart::Text(v)),
                        other => Err(format!("Join has no parameter {other}")),
                    })
                    .collect::<Result<_, _>>()?;
                if !parts.iter().any(|p| matches!(p, JoinPart::Field(_))) {
                    return Err("Join needs at least one field".into());
                }
                Transform::Join(parts)
            }
            "Static" => Transform::Static(template(&p.required("value")?, context)?),
            "Left" | "Right" => {
                let field = p.field()?;
                let length = p.number("length")?;
                if *canonical == "Left" {
                    Transform::Left { field, length }
                } else {
                    Transform::Right { field, length }
                }
            }
            "Substring" => {
                let field = p.field()?;
                let start = p.number("start")?;
                let length = if p.list.iter().any(|(k, _)| k == "length") {
                    Some(p.number("length")?)
                } else {
                    None
                };
                Transform::Substring {
                    field,
                    start,
                    length,
                }
            }
            "Upper" => Transform::Upper(p.field()?),
            "Lower" => Transform::Lower(p.field()?),
            "Trim" => Transform::Trim(p.field()?),
            "Replace" => {
                let field = p.field()?;
                let pattern = p.required("pattern")?;
                let pattern = Regex::new(&pattern)
                    .map_err(|e| format!("Replace: pattern is not a valid regex: {e}"))?;
                let with = p.take("with").unwrap_or_default();
                Transform::Replace {
                    field,
                    pattern,
                    with,
                }
            }
            "Split" => {
                let field = p.field()?;
                let separator = p.required("separator")?;
                if separator.is_empty() {
                    return Err("Split: separator is empty".into());
                }
                let index = match p.take("index") {
                    None => 0,
                    Some(text) => text
                        .trim()
                        .parse()
                        .map_err(|_| format!("Split: index={text} is not a whole number"))?,
                };
                Transform::Split {
                    field,
                    separator,
                    index,
                }
            }
            "Date" => {
                let field = p.field()?;
                let from = p.take("from");
                let to = p.required("to")?;
                for (key, fmt) in [("from", from.as_deref()), ("to", Some(to.as_str()))] {
                    if let Some(fmt) = fmt
                        && StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error))
                    {
                        return Err(format!("Date: {key}={fmt} is not a valid date format"));
                    }
                }
                // Dates are read without a zone: a `to` that needs one (%z, %Z) could never be
                // written, and would fail every row.
                let sample = NaiveDate::from_ymd_opt(2001, 2, 3)
                    .and_then(|d| d.and_hms_opt(4, 5, 6))
                    .unwrap_or_default();
                let mut rendered = String::new();
                if fmt::Write::write_fmt(&mut rendered, format_args!("{}", sample.format(&to)))
                    .is_err()
                {
                    return Err(format!(
                        "Date: to={to} cannot be written: dates are read without a time zone, \
                         so %z, %Z and the like have nothing to show"
                    ));
                }
                Transform::Date { field, from, to }
            }
            "Resolve" => {
                let field = p.field()?;
                let attribute = p.required("attribute")?.trim().to_string();
                Transform::Resolve { field, attribute }
            }
            "Script" => {
                // `name=` is ours; `text=` is how the product stores a script, so a host may
                // register its replacement under that text.
                let name = match p.take("name") {
                    Some(n) => n,
                    None => p.required("text")?,
                };
                let script = context
                    .scripts
                    .script(&name)
                    .ok_or_else(|| format!("Script \"{name}\" is not registered by the host"))?;
                Transform::Script {
                    field: p.source_field.clone(),
                    script,
                }
            }
            _ => return Err(format!("unknown transform \"{name}\"")),
        };
        p.finish()?;
        Ok(t)
    }

    /// Every source field the transform reads.
    pub fn fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        let _ = self.map_fields(|f| {
            out.push(f.clone());
            Ok::<(), ()>(())
        });
        out
    }

    /// Binds field names to column positions; the error names the first missing column.
    pub fn bind(&self, columns: &Columns) -> Result<Transform<usize>, TransformError> {
        self.map_fields(|name| {
            columns
                .index(name)
                .ok_or_else(|| TransformError::MissingColumn {
                    column: name.clone(),
                })
        })
    }
}

fn template(text: &str, context: &TransformContext) -> Result<Vec<Segment>, String> {
    // `%NAME%` where NAME looks like a variable; any other `%` is literal (`50%` stays `50%`).
    static VARIABLE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = VARIABLE.get_or_init(|| {
        Regex::new(r"%([A-Za-z_][A-Za-z0-9_.]*(?::[A-Za-z_][A-Za-z0-9_]*)?)%")
            .unwrap_or_else(|_| unreachable!())
    });
    let mut segments = Vec::new();
    let mut last = 0;
    let push_text = |segments: &mut Vec<Segment>, t: &str| {
        if t.is_empty() {
            return;
        }
        if let Some(Segment::Text(prev)) = segments.last_mut() {
            prev.push_str(t);
        } else {
            segments.push(Segment::Text(t.to_string()));
        }
    };
    for caps in re.captures_iter(text) {
        let (Some(whole), Some(name)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        push_text(&mut segments, &text[last..whole.start()]);
        last = whole.end();
        let name = name.as_str();
        if let Some(v) = context.variables.get(name) {
            push_text(&mut segments, v);
        } else if name.eq_ignore_ascii_case("NOW") {
            segments.push(Segment::Now);
        } else if name.eq_ignore_ascii_case("TODAY") {
            segments.push(Segment::Today);
        } else if let Some(var) = name
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("ENV:"))
            .map(|_| &name[4..])
        {
            push_text(&mut segments, &environment_variable(var)?);
        } else {
            return Err(format!(
                "Static: %{name}% is not a known variable (the job's parameters, the caller's \
                 variables, NOW, TODAY, or ENV:NAME for an environment variable)"
            ));
        }
    }
    push_text(&mut segments, &text[last..]);
    Ok(segments)
}

/// Environment variables whose names start so are datasync's own (bind passwords and the
/// like): a job never reads them, or a job file could copy a secret into an attribute.
const OWN_ENVIRONMENT_PREFIX: &str = "DATASYNC_";

/// The value of `%ENV:NAME%`: only a variable the job names explicitly, never one of ours.
fn environment_variable(name: &str) -> Result<String, String> {
    if name
        .get(..OWN_ENVIRONMENT_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(OWN_ENVIRONMENT_PREFIX))
    {
        return Err(format!(
            "Static: %ENV:{name}% is one of datasync's own environment variables, which hold \
             secrets such as bind passwords; a job cannot read them"
        ));
    }
    std::env::var(name).map_err(|_| {
        format!("Static: %ENV:{name}% names an environment variable that is not set (or not UTF-8)")
    })
}

impl<F> Transform<F> {
    /// Rebuilds the transform with every field mapped through `f`.
    pub fn map_fields<G, E>(
        &self,
        mut f: impl FnMut(&F) -> Result<G, E>,
    ) -> Result<Transform<G>, E> {
        Ok(match self {
            Transform::Copy(x) => Transform::Copy(f(x)?),
            Transform::Join(parts) => Transform::Join(
                parts
                    .iter()
                    .map(|p| match p {
                        JoinPart::Field(x) => f(x).map(JoinPart::Field),
                        JoinPart::Text(t) => Ok(JoinPart::Text(t.clone())),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Transform::Static(s) => Transform::Static(s.clone()),
            Transform::Left { field, length } => Transform::Left {
                field: f(field)?,
                length: *length,
            },
            Transform::Right { field, length } => Transform::Right {
                field: f(field)?,
                length: *length,
            },
            Transform::Substring {
                field,
                start,
                length,
            } => Transform::Substring {
                field: f(field)?,
                start: *start,
                length: *length,
            },
            Transform::Upper(x) => Transform::Upper(f(x)?),
            Transform::Lower(x) => Transform::Lower(f(x)?),
            Transform::Trim(x) => Transform::Trim(f(x)?),
            Transform::Replace {
                field,
                pattern,
                with,
            } => Transform::Replace {
                field: f(field)?,
                pattern: pattern.clone(),
                with: with.clone(),
            },
            Transform::Split {
                field,
                separator,
                index,
            } => Transform::Split {
                field: f(field)?,
                separator: separator.clone(),
                index: *index,
            },
            Transform::Date { field, from, to } => Transform::Date {
                field: f(field)?,
                from: from.clone(),
                to: to.clone(),
            },
            Transform::Resolve { field, attribute } => Transform::Resolve {
                field: f(field)?,
                attribute: attribute.clone(),
            },
            Transform::Script { field, script } => Transform::Script {
                field: field.as_ref().map(&mut f).transpose()?,
                script: script.clone(),
            },
        })
    }
}

impl Transform<usize> {
    /// Computes the value for one row: `Ok(None)` is no value (the attribute is left empty).
    pub fn apply(
        &self,
        columns: &Columns,
        row: &[Option<String>],
        destination_field: &str,
        run: &RunValues<'_>,
    ) -> Result<Option<String>, TransformError> {
        let get = |i: &usize| row.get(*i).and_then(|v| v.as_deref());
        let chars = |i: &usize| get(i).map(|v| v.chars());
        let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
        Ok(match self {
            Transform::Copy(i) => get(i).map(String::from),
            Transform::Join(parts) => {
                // Sized once: a join runs for every row, and growing cost reallocations.
                let len = parts
                    .iter()
                    .map(|part| match part {
                        JoinPart::Field(i) => get(i).map_or(0, str::len),
                        JoinPart::Text(t) => t.len(),
                    })
                    .sum();
                let mut out = String::with_capacity(len);
                for part in parts {
                    match part {
                        JoinPart::Field(i) => out.push_str(get(i).unwrap_or("")),
                        JoinPart::Text(t) => out.push_str(t),
                    }
                }
                non_empty(out)
            }
            Transform::Static(segments) => {
                let mut out = String::new();
                for s in segments {
                    match s {
                        Segment::Text(t) => out.push_str(t),
                        Segment::Now => out.push_str(run.now),
                        Segment::Today => out.push_str(run.today),
                    }
                }
                non_empty(out)
            }
            Transform::Left { field, length } => {
                chars(field).and_then(|c| non_empty(c.take(*length).collect()))
            }
            Transform::Right { field, length } => get(field).and_then(|v| {
                let n = v.chars().count();
                non_empty(v.chars().skip(n.saturating_sub(*length)).collect())
            }),
            Transform::Substring {
                field,
                start,
                length,
            } => chars(field).and_then(|c| {
                let rest = c.skip(*start);
                non_empty(match length {
                    Some(n) => rest.take(*n).collect(),
                    None => rest.collect(),
                })
            }),
            Transform::Upper(i) => get(i).map(str::to_uppercase),
            Transform::Lower(i) => get(i).map(str::to_lowercase),
            Transform::Trim(i) => get(i).and_then(|v| non_empty(v.trim().to_string())),
            Transform::Replace {
                field,
                pattern,
                with,
            } => get(field).and_then(|v| non_empty(pattern.replace_all(v, with.as_str()).into())),
            Transform::Split {
                field,
                separator,
                index,
            } => get(field).and_then(|v| {
                let pieces: Vec<&str> = v.split(separator.as_str()).collect();
                let at = if *index < 0 {
                    pieces.len().checked_sub(index.unsigned_abs() as usize)
                } else {
                    Some(*index as usize)
                };
                at.and_then(|i| pieces.get(i))
                    .and_then(|p| non_empty(p.to_string()))
            }),
            Transform::Date { field, from, to } => match get(field) {
                None => None,
                Some(v) => {
                    Some(reformat_date(v, from.as_deref(), to).map_err(TransformError::Value)?)
                }
            },
            Transform::Resolve { field, attribute } => match get(field) {
                None => None,
                Some(v) => run.resolver.resolve(attribute, v)?,
            },
            Transform::Script { field, script } => {
                let input = ScriptInput {
                    value: field.as_ref().and_then(get),
                    destination_field,
                    row: RowView::new(columns, row),
                };
                script.call(&input)?
            }
        })
    }
}

fn reformat_date(value: &str, from: Option<&str>, to: &str) -> Result<String, String> {
    let value = value.trim();
    let parsed = match from {
        Some(fmt) => NaiveDateTime::parse_from_str(value, fmt).or_else(|_| {
            NaiveDate::parse_from_str(value, fmt).map(|d| d.and_time(chrono::NaiveTime::MIN))
        }),
        None => NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f"))
            .or_else(|_| chrono::DateTime::parse_from_rfc3339(value).map(|d| d.naive_local()))
            .or_else(|_| {
                NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map(|d| d.and_time(chrono::NaiveTime::MIN))
            }),
    }
    .map_err(|_| match from {
        Some(fmt) => format!("\"{value}\" is not a date in the format {fmt}"),
        None => format!("\"{value}\" is not an ISO 8601 date"),
    })?;
    let mut out = String::new();
    fmt::Write::write_fmt(&mut out, format_args!("{}", parsed.format(to)))
        .map_err(|_| format!("the format {to} cannot be written for a date without a time zone"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, source_field: Option<&str>, cells: &[(&str, &str)]) -> Option<String> {
        try_run(text, source_field, cells).unwrap()
    }

    fn try_run(
        text: &str,
        source_field: Option<&str>,
        cells: &[(&str, &str)],
    ) -> Result<Option<String>, String> {
        let mut ctx = TransformContext::default();
        ctx.variables.insert("COMPANY".into(), "Acme".into());
        ctx.scripts.register("initial", |i| {
            Ok(i.value.and_then(|v| v.chars().next()).map(String::from))
        });
        ctx.scripts
            .register("fails", |_| Err("no manager for this row".into()));
        ctx.scripts
            .register("panics", |_| panic!("a bug in the host"));
        let t = Transform::parse(text, source_field, &ctx).map_err(|e| e.to_string())?;
        let columns = Columns::new(cells.iter().map(|(c, _)| c.to_string()).collect());
        let row: Vec<Option<String>> = cells
            .iter()
            .map(|(_, v)| Some(v.to_string()).filter(|v| !v.is_empty()))
            .collect();
        let bound = t.bind(&columns).map_err(|e| e.to_string())?;
        bound
            .apply(
                &columns,
                &row,
                "cn",
                &RunValues {
                    now: "2026-01-02T03:04:05Z",
                    today: "2026-01-02",
                    resolver: &NoResolver,
                },
            )
            .map_err(|e| e.to_string())
    }

    const ANN: &[(&str, &str)] = &[
        ("First", "Ann"),
        ("Last", "Lee-Smith"),
        ("Empty", ""),
        ("Hired", "2024-06-04"),
        ("Note", "  éclair  "),
    ];

    #[test]
    fn copy_and_join() {
        assert_eq!(run("", Some("First"), ANN).as_deref(), Some("Ann"));
        assert_eq!(
            run("Join:field=First;separator=_api_;field=Last", None, ANN).as_deref(),
            Some("Ann_api_Lee-Smith")
        );
        assert_eq!(
            run(
                "Join:field=Last;separator=, ;field=First;separator=\\;;field=Empty",
                None,
                ANN
            )
            .as_deref(),
            Some("Lee-Smith, Ann;")
        );
        assert_eq!(
            run("join:field=Empty;separator=-;field=First", None, ANN).as_deref(),
            Some("-Ann")
        );
    }

    #[test]
    fn static_variables() {
        assert_eq!(
            run(
                "Static:value=%COMPANY% since %TODAY% (%NOW%) 50%",
                None,
                ANN
            )
            .as_deref(),
            Some("Acme since 2026-01-02 (2026-01-02T03:04:05Z) 50%")
        );
        let e = try_run("Static:value=%NO_SUCH_VARIABLE_X%", None, ANN).unwrap_err();
        assert!(e.contains("NO_SUCH_VARIABLE_X"), "{e}");
        assert!(try_run("Static:value=a=b", None, ANN).unwrap().as_deref() == Some("a=b"));
    }

    #[test]
    fn string_windows_count_characters() {
        assert_eq!(
            run("Left:field=Last;length=3", None, ANN).as_deref(),
            Some("Lee")
        );
        assert_eq!(
            run("Right:length=5", Some("Last"), ANN).as_deref(),
            Some("Smith")
        );
        assert_eq!(
            run("Substring:field=Last;start=4;length=3", None, ANN).as_deref(),
            Some("Smi")
        );
        assert_eq!(
            run("Substring:field=Note;start=2", None, ANN).as_deref(),
            Some("éclair  ")
        );
        assert_eq!(run("Left:field=Note;length=0", None, ANN), None);
    }

    #[test]
    fn case_trim_replace_split_date() {
        assert_eq!(
            run("Upper", Some("Note"), ANN).as_deref(),
            Some("  ÉCLAIR  ")
        );
        assert_eq!(run("Lower:field=First", None, ANN).as_deref(), Some("ann"));
        assert_eq!(run("Trim:field=Note", None, ANN).as_deref(), Some("éclair"));
        assert_eq!(
            run(
                r"Replace:field=Last;pattern=(\w+)-(\w+);with=$2 $1",
                None,
                ANN
            )
            .as_deref(),
            Some("Smith Lee")
        );
        assert_eq!(
            run("Split:field=Last;separator=-;index=-1", None, ANN).as_deref(),
            Some("Smith")
        );
        assert_eq!(run("Split:field=Last;separator=-;index=5", None, ANN), None);
        assert_eq!(
            run("Date:field=Hired;to=%d/%m/%Y", None, ANN).as_deref(),
            Some("04/06/2024")
        );
        assert_eq!(
            run(
                "Date:field=Hired;from=%Y-%m-%d;to=%Y%m%d%H%M%S.0Z",
                None,
                ANN
            )
            .as_deref(),
            Some("20240604000000.0Z")
        );
        assert!(try_run("Date:field=First;to=%Y", None, ANN).is_err());
    }

    #[test]
    fn scripts() {
        assert_eq!(
            run("Script:name=initial", Some("First"), ANN).as_deref(),
            Some("A")
        );
        let e = try_run("Script:name=fails", Some("First"), ANN).unwrap_err();
        assert!(e.contains("no manager"), "{e}");
        let e = try_run("Script:name=unknown", None, ANN).unwrap_err();
        assert!(e.contains("not registered"), "{e}");
        let e = try_run("Script:name=panics", Some("First"), ANN).unwrap_err();
        assert!(
            e.contains("Script \"panics\" panicked: a bug in the host"),
            "{e}"
        );
    }

    #[test]
    fn a_scripts_own_error_is_the_source_of_its_script_error() {
        #[derive(Debug)]
        struct NoManager;
        impl fmt::Display for NoManager {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no manager")
            }
        }
        impl std::error::Error for NoManager {}
        let mut ctx = TransformContext::default();
        ctx.scripts.register("typed", |_| Err(NoManager.into()));
        let t = Transform::parse("Script:name=typed", None, &ctx).unwrap();
        let columns = Columns::new(vec![]);
        let run = RunValues {
            now: "",
            today: "",
            resolver: &NoResolver,
        };
        let e = t
            .bind(&columns)
            .unwrap()
            .apply(&columns, &[], "cn", &run)
            .unwrap_err();
        assert!(matches!(
            &e,
            TransformError::Script(ScriptError::Failed { name, .. }) if name == "typed"
        ));
        // `TransformError::Script` is transparent: its source is the script's own error.
        let source = std::error::Error::source(&e).expect("the script's own error");
        assert!(source.downcast_ref::<NoManager>().is_some(), "{source}");
    }

    #[test]
    fn parse_errors() {
        for (text, needle) in [
            ("Foo:x=1", "unknown transform \"Foo\""),
            ("Join:separator=_", "at least one field"),
            ("Join:field=A;colour=red", "no parameter colour"),
            ("Left:field=A", "needs the parameter length"),
            ("Left:field=A;length=-1", "not a whole number"),
            ("Static:val=x", "needs the parameter value"),
            ("Replace:field=A;pattern=(", "not a valid regex"),
            ("Date:field=A;to=%Q", "not a valid date format"),
            ("Upper:field=A;extra=1", "no parameter extra"),
            ("Join:field", "has no '='"),
            ("Upper", "needs the parameter field"),
        ] {
            let e = Transform::parse(text, None, &TransformContext::default()).unwrap_err();
            assert!(matches!(e, TransformError::Syntax(_)), "{e:?}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        assert!(Transform::parse("", None, &TransformContext::default()).is_err());
    }

    #[test]
    fn binding_reports_missing_columns() {
        let t = Transform::parse(
            "Join:field=First;field=Middle",
            None,
            &TransformContext::default(),
        )
        .unwrap();
        assert_eq!(t.fields(), vec!["First", "Middle"]);
        let columns = Columns::new(vec!["first".into()]);
        let e = t.bind(&columns).unwrap_err();
        assert!(
            matches!(&e, TransformError::MissingColumn { column } if column == "Middle"),
            "{e:?}"
        );
    }
}
