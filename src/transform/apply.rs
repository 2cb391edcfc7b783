//! Applying a bound transform to one row: no parsing and no lookups by name, one call per
//! mapped attribute per row.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};

use super::{JoinPart, RowView, RunValues, ScriptInput, Segment, Transform, TransformError};
use crate::source::Columns;

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
