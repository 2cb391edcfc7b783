//! Binding: a parsed transform's field names become column positions once per run, so that
//! applying it to a row looks nothing up by name.

use super::{JoinPart, Transform, TransformError};
use crate::source::Columns;

impl Transform<String> {
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
