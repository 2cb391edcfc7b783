//! Field transforms: the stored `Name:param=value;param=value` language, parsed once at load into
//! a [`Transform`], bound to column positions once per run, and applied per row without parsing.
//!
//! The syntax: a transform name (case-insensitive), `:`, then `param=value` pairs separated by
//! `;`. A value runs to the next `;` (write `\;` for a literal one) and may contain `=`. Where a
//! transform takes `field` and it is left out, the mapping's `sourceField` is used. See the
//! crate documentation for the table of transforms.

mod apply;
mod bind;
mod error;
mod parse;
mod password;
mod script;

use std::collections::HashMap;

use regex::Regex;

pub use crate::BoxError;
pub(crate) use error::panic_message;
pub use error::{ResolveError, ScriptError, TransformError};
pub use password::{PasswordPolicy, PasswordRule, PolicyError};
pub use script::{RowView, Script, ScriptFn, ScriptInput, Scripts};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Columns;
    use std::fmt;

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
