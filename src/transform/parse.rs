//! Parsing the stored `Name:param=value;…` text into a [`Transform`], with `Static`'s `%NAME%`
//! variables expanded and `Script` names looked up, once when the job loads.

use std::fmt;

use chrono::NaiveDate;
use chrono::format::{Item, StrftimeItems};
use regex::Regex;

use super::{JoinPart, Segment, TRANSFORM_NAMES, Transform, TransformContext, TransformError};

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
