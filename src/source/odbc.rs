//! Any database with an ODBC driver as a source (SQL Server, Oracle, DB2, and PostgreSQL or
//! MariaDB through theirs): `odbc:CONNECTION-STRING`, as the product reaches them. Built with
//! the `odbc` feature, which links the system's ODBC driver manager (unixODBC).
//!
//! The job's SQL goes to the driver as written. Rows are fetched one at a time and each value
//! read whole as text, however long; whether the driver itself streams depends on it:
//! psqlODBC holds a whole result unless the connection string says `UseDeclareFetch=1`, and
//! MariaDB's driver unless it says `NO_CACHE=1`. Values keep the driver's text, with a
//! timestamp's space made ISO 8601's `T` and a `BIT` read `TRUE`/`FALSE` (psqlODBC reports
//! booleans as `BIT` with `BoolsAsChar=0`, and as the text `1`/`0` otherwise); binary columns
//! read as base64, as a binary attribute (`jpegPhoto`) carries its bytes. A delta run reads every row and the run keeps the changed ones (a generic
//! filter on the stamp column would need the column's type, which drivers spell differently).
//!
//! The password comes apart from the connection string (`DATASYNC_SOURCE_PASSWORD` on the
//! command line) and is added as `PWD` when connecting; a connection string that holds one is
//! refused, as a URL holding one is.

use odbc_api::{ConnectionOptions, Cursor, DataType, ResultSetMetadata};

use super::database::DatabaseConfig;
use super::{Columns, RowSet, RowSink, Source, SourceError, SourceRow};

/// A database reached through its ODBC driver.
///
/// ```no_run
/// use datasync::source::{DatabaseConfig, OdbcSource, Source};
/// let config = DatabaseConfig::new("odbc:Driver={PostgreSQL Unicode};Server=db;Database=hr;UID=hr;UseDeclareFetch=1")
///     .with_password("s3cret");
/// let mut source = OdbcSource::connect(config)?;
/// let rows = source.query("SELECT employee_id, given_name FROM staff")?;
/// # Ok::<(), datasync::source::SourceError>(())
/// ```
pub struct OdbcSource {
    config: DatabaseConfig,
    connection: odbc_api::Connection<'static>,
}

impl std::fmt::Debug for OdbcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdbcSource")
            .field("connection", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// The connection string's attribute names that carry a password.
const PASSWORD_KEYS: [&str; 2] = ["pwd", "password"];

/// The names of a connection string's attributes (`Driver={x;y};UID=hr` has `driver`, `uid`),
/// reading braced values as one.
fn attribute_names(connection_string: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = connection_string;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        names.push(rest[..eq].trim().to_ascii_lowercase());
        rest = &rest[eq + 1..];
        if rest.trim_start().starts_with('{') {
            // A braced value ends at a `}` not doubled.
            let bytes = rest.as_bytes();
            let mut i = rest.find('{').unwrap_or(0) + 1;
            while i < bytes.len() {
                if bytes[i] == b'}' {
                    if bytes.get(i + 1) == Some(&b'}') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            rest = rest.get(i + 1..).unwrap_or("");
        }
        rest = match rest.find(';') {
            Some(semi) => &rest[semi + 1..],
            None => "",
        };
    }
    names
}

/// `value` as a connection-string value: braced, with `}` doubled.
fn braced(value: &str) -> String {
    format!("{{{}}}", value.replace('}', "}}"))
}

impl OdbcSource {
    /// Connects through the driver the connection string names (`odbc:` and the string).
    pub fn connect(config: DatabaseConfig) -> Result<OdbcSource, SourceError> {
        let given = config.url.strip_prefix("odbc:").unwrap_or(&config.url);
        if attribute_names(given)
            .iter()
            .any(|n| PASSWORD_KEYS.contains(&n.as_str()))
        {
            return Err(SourceError::Database {
                server: "odbc".into(),
                message: "the connection string holds a password (PWD); give it in \
                          DATASYNC_SOURCE_PASSWORD (or DatabaseConfig::password) instead"
                    .into(),
            });
        }
        let mut connection_string = given.trim_end_matches(';').to_string();
        if let Some(password) = &config.password {
            connection_string.push_str(&format!(";PWD={}", braced(password.expose())));
        }
        let environment = odbc_api::environment()
            .map_err(|e| config.error(format!("the ODBC driver manager: {e}")))?;
        let connection = environment
            .connect_with_connection_string(&connection_string, ConnectionOptions::default())
            .map_err(|e| config.error(e.to_string()))?;
        Ok(OdbcSource { config, connection })
    }
}

impl Source for OdbcSource {
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError> {
        RowSet::collect(|sink| self.query_into(query, sink))
    }

    fn query_into(&mut self, query: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        let query_error = |e: odbc_api::Error| SourceError::Query {
            query: query.to_string(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        };
        let stop = sink.stop_signal();
        let Some(mut cursor) = self
            .connection
            .execute(query, (), None)
            .map_err(query_error)?
        else {
            return Err(SourceError::Query {
                query: query.to_string(),
                message: "the statement returns no rows".into(),
                source: None,
            });
        };
        let count = cursor.num_result_cols().map_err(query_error)?;
        let count = u16::try_from(count).unwrap_or(0);
        let mut names = Vec::with_capacity(usize::from(count));
        let mut kinds = Vec::with_capacity(usize::from(count));
        for column in 1..=count {
            names.push(cursor.col_name(column).map_err(query_error)?);
            kinds.push(Kind::of(cursor.col_data_type(column).map_err(query_error)?));
        }
        let columns = Columns::new(names);
        super::check_unique(&columns, query)?;
        if sink.columns(&columns).is_break() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        let mut number = 0u64;
        while let Some(mut row) = cursor.next_row().map_err(query_error)? {
            if stop.as_ref().is_some_and(|s| s.should_stop()) {
                return Ok(());
            }
            number += 1;
            let mut values = Vec::with_capacity(kinds.len());
            let mut cell_errors = Vec::new();
            for (i, kind) in kinds.iter().enumerate() {
                let column = (i + 1) as u16;
                if *kind == Kind::Binary {
                    // Bytes (a photo) as base64, as every binary value is carried (see
                    // `destination::is_binary_attribute`).
                    use base64::Engine;
                    let present = row.get_binary(column, &mut buffer).map_err(query_error)?;
                    values.push(
                        present.then(|| base64::engine::general_purpose::STANDARD.encode(&buffer)),
                    );
                    continue;
                }
                if !row.get_text(column, &mut buffer).map_err(query_error)? {
                    values.push(None);
                    continue;
                }
                match String::from_utf8(std::mem::take(&mut buffer)) {
                    Ok(text) => values.push(Some(kind.shape(text))),
                    Err(_) => {
                        values.push(None);
                        cell_errors.push((i, "the value is not UTF-8 text".to_string()));
                    }
                }
            }
            let row = SourceRow {
                number,
                values,
                cell_errors,
            };
            if sink.row(row).is_break() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A table reached through ODBC as a table destination's store: read whole when it is
/// opened, and written at commit in one transaction (autocommit off) of row inserts, updates
/// of the changed cells and deletes, each value a text parameter the driver converts to the
/// column's type (`TRUE`/`FALSE` sent as 1/0 to a `BIT` column), an empty cell as NULL.
pub(crate) struct OdbcTable {
    connection: odbc_api::Connection<'static>,
    table: String,
    /// Each column's quoted name (in the driver's identifier quote) and how it is written.
    columns: Vec<(String, Kind)>,
}

impl std::fmt::Debug for OdbcTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdbcTable")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl OdbcTable {
    /// Connects, and reads the table `table` whole.
    pub(crate) fn open(
        config: DatabaseConfig,
        table: &str,
    ) -> Result<(OdbcTable, RowSet), SourceError> {
        let mut source = OdbcSource::connect(config)?;
        let sql = format!("SELECT * FROM {table}");
        let query_error = |e: odbc_api::Error| SourceError::Query {
            query: sql.clone(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        };
        let quote = source
            .connection
            .identifier_quote_char()
            .ok()
            .flatten()
            .filter(|c| *c != ' ')
            .unwrap_or('"');
        let columns = {
            let mut prepared = source.connection.prepare(&sql).map_err(query_error)?;
            let count =
                u16::try_from(prepared.num_result_cols().map_err(query_error)?).unwrap_or(0);
            let mut columns = Vec::with_capacity(usize::from(count));
            for column in 1..=count {
                let name = prepared.col_name(column).map_err(query_error)?;
                let kind = Kind::of(prepared.col_data_type(column).map_err(query_error)?);
                let doubled = name.replace(quote, &format!("{quote}{quote}"));
                columns.push((format!("{quote}{doubled}{quote}"), kind));
            }
            columns
        };
        let rows = source.query(&sql)?;
        Ok((
            OdbcTable {
                connection: source.connection,
                table: table.to_string(),
                columns,
            },
            rows,
        ))
    }

    /// A cell as a parameter.
    fn parameter(&self, at: usize, text: &str) -> odbc_api::parameter::VarCharBox {
        if text.is_empty() {
            return odbc_api::parameter::VarCharBox::null();
        }
        let text = match self.columns.get(at).map(|c| c.1) {
            Some(Kind::Boolean) if text.eq_ignore_ascii_case("true") => "1",
            Some(Kind::Boolean) if text.eq_ignore_ascii_case("false") => "0",
            _ => text,
        };
        odbc_api::parameter::VarCharBox::from_string(text.to_string())
    }

    fn apply_all(&self, changes: &[crate::source::database::RowChange<'_>]) -> Result<(), String> {
        let statements = crate::source::database::table_statements(
            &self.table,
            changes,
            &|i| self.columns[i].0.clone(),
            &|_, _| "?".to_string(),
        );
        for statement in statements {
            let params: Vec<odbc_api::parameter::VarCharBox> = statement
                .params
                .iter()
                .map(|(i, v)| self.parameter(*i, v))
                .collect();
            self.connection
                .execute(&statement.sql, params.as_slice(), None)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl crate::source::database::DatabaseTable for OdbcTable {
    fn apply(&mut self, changes: &[crate::source::database::RowChange<'_>]) -> Result<(), String> {
        self.connection
            .set_autocommit(false)
            .map_err(|e| e.to_string())?;
        let applied = self
            .apply_all(changes)
            .and_then(|()| self.connection.commit().map_err(|e| e.to_string()));
        if applied.is_err() {
            let _ = self.connection.rollback();
        }
        let _ = self.connection.set_autocommit(true);
        applied
    }
}

/// How a column's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// `BIT`: `1` and `0` as `TRUE` and `FALSE`.
    Boolean,
    /// `TIMESTAMP`: the space becomes ISO 8601's `T`.
    Timestamp,
    Binary,
}

impl Kind {
    fn of(data_type: DataType) -> Kind {
        match data_type {
            DataType::Bit => Kind::Boolean,
            DataType::Timestamp { .. } => Kind::Timestamp,
            DataType::Binary { .. }
            | DataType::Varbinary { .. }
            | DataType::LongVarbinary { .. } => Kind::Binary,
            _ => Kind::Text,
        }
    }

    fn shape(self, text: String) -> String {
        match self {
            Kind::Boolean => match text.as_str() {
                "1" => "TRUE".into(),
                "0" => "FALSE".into(),
                _ => text,
            },
            Kind::Timestamp => text.replacen(' ', "T", 1),
            Kind::Text | Kind::Binary => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_found_in_any_spelling_and_braces() {
        let names = attribute_names("Driver={PostgreSQL Unicode};Server=db;Pwd = x");
        assert_eq!(names, ["driver", "server", "pwd"]);
        // `PWD=` inside a braced value is not an attribute.
        let names = attribute_names("Driver={a;PWD=b}}c};UID=hr");
        assert_eq!(names, ["driver", "uid"]);
        assert_eq!(braced("a}b;c"), "{a}}b;c}");
    }

    #[test]
    fn kinds_shape_their_text() {
        assert_eq!(Kind::Boolean.shape("1".into()), "TRUE");
        assert_eq!(
            Kind::Timestamp.shape("2026-12-03 08:30:00.500".into()),
            "2026-12-03T08:30:00.500"
        );
        assert_eq!(Kind::Text.shape("a b".into()), "a b");
    }
}
