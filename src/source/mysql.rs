//! A MariaDB or MySQL database as a source: the job's SQL runs on the server as written, in a
//! read-only transaction, its rows read off the connection as they come (the driver does not
//! buffer a result), so a table of any size is never held whole.
//!
//! Values arrive in the server's text form and keep it: integers and `DECIMAL` exactly, dates
//! as `1999-12-31`, `DATETIME` as `2026-12-03T08:30:00`, `TIMESTAMP` (which the server keeps in
//! UTC; the session asks for UTC) as `2026-12-03T08:30:00Z`, `TINYINT(1)` (`BOOLEAN`) as
//! `TRUE`/`FALSE`, binary columns (`BLOB`, `VARBINARY`, `BIT`) as base64 (how a binary
//! attribute such as `thumbnailPhoto` carries its bytes), NULL as no value.

use mysql::consts::{ColumnFlags, ColumnType};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, SslOpts, Value};

use super::database::{
    DatabaseConfig, Since, cancel_on_stop, refuse_password_in_url, take_tls_mode,
};
use super::{Columns, RowSet, RowSink, Source, SourceError, SourceRow};

/// The character set number MySQL gives binary strings.
const BINARY_CHARSET: u16 = 63;

/// A MariaDB or MySQL server, read with the job's SQL.
///
/// ```no_run
/// use datasync::source::{DatabaseConfig, MysqlSource, Source};
/// let config = DatabaseConfig::new("mysql://hr@127.0.0.1/hr").with_password("s3cret");
/// let mut source = MysqlSource::connect(config)?;
/// let rows = source.query("SELECT employee_id, given_name FROM staff")?;
/// # Ok::<(), datasync::source::SourceError>(())
/// ```
pub struct MysqlSource {
    config: DatabaseConfig,
    opts: Opts,
    conn: Conn,
}

impl std::fmt::Debug for MysqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlSource")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// How the URL asks for TLS (`ssl-mode`, as the `mysql` client spells it).
fn wants_tls(mode: &str) -> Result<bool, String> {
    match mode.to_ascii_uppercase().replace('-', "_").as_str() {
        "DISABLED" | "PREFERRED" => Ok(false),
        "REQUIRED" | "VERIFY_CA" | "VERIFY_IDENTITY" => Ok(true),
        other => Err(format!(
            "ssl-mode={other} is not one of DISABLED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"
        )),
    }
}

impl MysqlSource {
    /// Connects to the server and logs on (a wrong password is an error here, before anything
    /// is read or written).
    pub fn connect(config: DatabaseConfig) -> Result<MysqlSource, SourceError> {
        refuse_password_in_url(&config)?;
        let (url, tls) = take_tls_mode(&config, &["ssl-mode", "sslmode"], wants_tls)?;
        let url = match url.split_once("://") {
            Some((_, rest)) => format!("mysql://{rest}"),
            None => url,
        };
        let opts =
            Opts::from_url(&url).map_err(|e| config.error(format!("not a MySQL URL: {e}")))?;
        let mut builder = OptsBuilder::from_opts(opts)
            .pass(config.password.as_ref().map(|p| p.expose().to_string()))
            .tcp_connect_timeout(Some(std::time::Duration::from_secs(30)))
            // The driver would move a connection to 127.0.0.1 onto the server's Unix socket,
            // which it never encrypts: the URL names a TCP server, and TLS is asked for there.
            .prefer_socket(false)
            // TIMESTAMP values in UTC, whatever the server's zone; text in UTF-8.
            .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
        if tls {
            let ssl = match &config.tls_verify {
                crate::tls::TlsVerify::CaFile(path) => {
                    SslOpts::default().with_root_cert_path(Some(path.clone()))
                }
                crate::tls::TlsVerify::SystemRoots => SslOpts::default(),
                crate::tls::TlsVerify::DangerouslyAcceptAnyCertificate => {
                    return Err(config.error(
                        "a database source always checks the server's certificate; give its \
                         CA with --ca-file",
                    ));
                }
            };
            builder = builder.ssl_opts(Some(ssl));
        }
        let opts = Opts::from(builder);
        let conn = Conn::new(opts.clone()).map_err(|e| config.error(server_message(&e)))?;
        Ok(MysqlSource { config, opts, conn })
    }

    /// Stops the query running on this source's connection, from another connection: the
    /// driver otherwise reads a result to its end before the connection can be used again.
    fn kill_query(opts: &Opts, id: u32) {
        if let Ok(mut other) = Conn::new(opts.clone()) {
            let _ = other.query_drop(format!("KILL QUERY {id}"));
        }
    }

    fn stream(
        &mut self,
        shown: &str,
        sql: &str,
        sink: &mut dyn RowSink,
    ) -> Result<(), SourceError> {
        let query_error = |e: &mysql::Error| SourceError::Query {
            query: shown.to_string(),
            message: server_message(e),
            source: None,
        };
        let server = self.config.url.clone();
        self.conn
            .query_drop("START TRANSACTION READ ONLY")
            .map_err(|e| SourceError::Database {
                server,
                message: server_message(&e),
            })?;
        let id = self.conn.connection_id();
        let opts = self.opts.clone();
        let stop = sink.stop_signal();
        let conn = &mut self.conn;
        let answer = cancel_on_stop(
            stop.clone(),
            || Self::kill_query(&opts, id),
            || -> Result<(), SourceError> {
                let mut result = conn.query_iter(sql).map_err(|e| query_error(&e))?;
                let kinds: Vec<Kind> = result.columns().as_ref().iter().map(Kind::of).collect();
                let names = result
                    .columns()
                    .as_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                let columns = Columns::new(names);
                super::check_unique(&columns, shown)?;
                if sink.columns(&columns).is_break() {
                    Self::kill_query(&opts, id);
                    return Ok(());
                }
                let mut number = 0u64;
                for row in result.by_ref() {
                    let row = row.map_err(|e| query_error(&e))?;
                    number += 1;
                    if sink
                        .row(source_row(number, row.unwrap(), &kinds))
                        .is_break()
                    {
                        // Dropping the result would read the rest of it first.
                        Self::kill_query(&opts, id);
                        return Ok(());
                    }
                }
                Ok(())
            },
        );
        // Read only: nothing to keep. A killed query leaves an error behind, which is read
        // and dropped with the rest of its result.
        let _ = self.conn.query_drop("ROLLBACK");
        answer
    }
}

/// A MariaDB or MySQL table as a table destination's store: read whole when it is opened,
/// and written at commit as one transaction of row inserts, updates of the changed cells and
/// deletes. Values go in as text in the server's forms (`TRUE` as 1 in a `BOOLEAN`, an ISO
/// time as `2026-12-03 08:30:00`), an empty cell as NULL.
pub(crate) struct MysqlTable {
    conn: Conn,
    table: String,
    /// Each column's quoted name and how its text is written.
    columns: Vec<(String, Kind)>,
}

impl std::fmt::Debug for MysqlTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlTable")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl MysqlTable {
    /// Connects, and reads the table `table` whole.
    pub(crate) fn open(
        config: DatabaseConfig,
        table: &str,
    ) -> Result<(MysqlTable, RowSet), SourceError> {
        let mut source = MysqlSource::connect(config)?;
        let sql = format!("SELECT * FROM {table}");
        let columns = {
            let result = source
                .conn
                .query_iter(format!("{sql} LIMIT 0"))
                .map_err(|e| SourceError::Query {
                    query: sql.clone(),
                    message: server_message(&e),
                    source: Some(Box::new(e)),
                })?;
            result
                .columns()
                .as_ref()
                .iter()
                .map(|c| {
                    (
                        format!("`{}`", c.name_str().replace('`', "``")),
                        Kind::of(c),
                    )
                })
                .collect()
        };
        let rows = source.query(&sql)?;
        Ok((
            MysqlTable {
                conn: source.conn,
                table: table.to_string(),
                columns,
            },
            rows,
        ))
    }

    /// A cell as the server takes it.
    fn value(&self, at: usize, text: &str) -> Value {
        if text.is_empty() {
            return Value::NULL;
        }
        let kind = self.columns.get(at).map_or(Kind::Text, |c| c.1);
        let text = match kind {
            Kind::Boolean if text.eq_ignore_ascii_case("true") => "1".to_string(),
            Kind::Boolean if text.eq_ignore_ascii_case("false") => "0".to_string(),
            Kind::LocalTime | Kind::UtcTime => {
                server_time(text).unwrap_or_else(|| text.to_string())
            }
            _ => text.to_string(),
        };
        Value::Bytes(text.into_bytes())
    }
}

impl crate::source::database::DatabaseTable for MysqlTable {
    fn apply(&mut self, changes: &[crate::source::database::RowChange<'_>]) -> Result<(), String> {
        let statements = crate::source::database::table_statements(
            &self.table,
            changes,
            &|i| self.columns[i].0.clone(),
            &|_, _| "?".to_string(),
        );
        let statements: Vec<(String, Vec<Value>)> = statements
            .into_iter()
            .map(|s| {
                let params = s.params.iter().map(|(i, v)| self.value(*i, v)).collect();
                (s.sql, params)
            })
            .collect();
        let mut tx = self
            .conn
            .start_transaction(mysql::TxOpts::default())
            .map_err(|e| server_message(&e))?;
        for (sql, params) in statements {
            tx.exec_drop(sql, mysql::Params::Positional(params))
                .map_err(|e| server_message(&e))?;
        }
        tx.commit().map_err(|e| server_message(&e))
    }
}

impl Source for MysqlSource {
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError> {
        RowSet::collect(|sink| self.query_into(query, sink))
    }

    fn query_into(&mut self, query: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        self.stream(query, query, sink)
    }

    /// Asks the server for the rows past the watermark only: the job's query becomes a
    /// derived table filtered on the stamp column. The watermark goes in as a hex literal
    /// (no quoting to get wrong, whatever the SQL mode), as the server's own datetime text
    /// when it is one, so the server compares it in the column's type.
    fn query_since_into(
        &mut self,
        query: &str,
        since: Since<'_>,
        sink: &mut dyn RowSink,
    ) -> Result<(), SourceError> {
        let inner = query.trim().trim_end_matches(';');
        let value = server_time(since.value).unwrap_or_else(|| since.value.to_string());
        let hex: String = value.bytes().map(|b| format!("{b:02X}")).collect();
        let sql = format!(
            "SELECT * FROM ({inner}) AS datasync_delta WHERE datasync_delta.`{}` > CONVERT(X'{hex}' USING utf8mb4)",
            since.column.replace('`', "``"),
        );
        self.stream(query, &sql, sink)
    }
}

/// An ISO 8601 time as the server writes a `DATETIME` (`2026-12-03 08:30:00.5`), in UTC when
/// it has a zone (the session's zone is UTC).
fn server_time(text: &str) -> Option<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.f").to_string())
}

/// The server's own words for an error (its message, error number and SQLSTATE), or the
/// driver's.
fn server_message(e: &mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(server) => format!(
            "{} (error {}, SQLSTATE {})",
            server.message, server.code, server.state
        ),
        other => other.to_string(),
    }
}

/// How a column's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// As the server sent it.
    Text,
    /// `TINYINT(1)`: 0 and 1 as `FALSE` and `TRUE`.
    Boolean,
    /// `DATETIME`: the space becomes ISO 8601's `T`.
    LocalTime,
    /// `TIMESTAMP`: in UTC, marked `Z`.
    UtcTime,
    /// Bytes with no text form.
    Binary,
}

impl Kind {
    fn of(column: &mysql::Column) -> Kind {
        let binary_charset = column.character_set() == BINARY_CHARSET;
        match column.column_type() {
            ColumnType::MYSQL_TYPE_TINY if column.column_length() == 1 => Kind::Boolean,
            ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => Kind::LocalTime,
            ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => Kind::UtcTime,
            ColumnType::MYSQL_TYPE_BIT | ColumnType::MYSQL_TYPE_GEOMETRY => Kind::Binary,
            ColumnType::MYSQL_TYPE_TINY_BLOB
            | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
            | ColumnType::MYSQL_TYPE_LONG_BLOB
            | ColumnType::MYSQL_TYPE_BLOB
            | ColumnType::MYSQL_TYPE_VARCHAR
            | ColumnType::MYSQL_TYPE_VAR_STRING
            | ColumnType::MYSQL_TYPE_STRING
                if binary_charset && column.flags().contains(ColumnFlags::BINARY_FLAG) =>
            {
                Kind::Binary
            }
            _ => Kind::Text,
        }
    }
}

/// One result row as a source row.
fn source_row(number: u64, values: Vec<Value>, kinds: &[Kind]) -> SourceRow {
    let mut texts = Vec::with_capacity(values.len());
    let mut cell_errors = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let kind = kinds.get(i).copied().unwrap_or(Kind::Text);
        match text_of(kind, value) {
            Ok(text) => texts.push(text),
            Err(why) => {
                texts.push(None);
                cell_errors.push((i, why));
            }
        }
    }
    SourceRow {
        number,
        values: texts,
        cell_errors,
    }
}

fn text_of(kind: Kind, value: Value) -> Result<Option<String>, String> {
    let bytes = match value {
        Value::NULL => return Ok(None),
        Value::Bytes(bytes) => bytes,
        // The text protocol sends only text; anything else is printed as the driver sees it.
        other => return Ok(Some(other.as_sql(true).trim_matches('\'').to_string())),
    };
    if kind == Kind::Binary {
        // Bytes (a photo) as base64, as every binary value is carried (see
        // `destination::is_binary_attribute`).
        use base64::Engine;
        return Ok(Some(
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "the value is not UTF-8 text".to_string())?;
    Ok(Some(match kind {
        Kind::Boolean => match text.as_str() {
            "0" => "FALSE".into(),
            "1" => "TRUE".into(),
            _ => text,
        },
        Kind::LocalTime => text.replacen(' ', "T", 1),
        Kind::UtcTime => format!("{}Z", text.replacen(' ', "T", 1)),
        Kind::Text | Kind::Binary => text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_go_back_to_the_server_in_its_own_form() {
        assert_eq!(
            server_time("2026-12-03T09:30:00.5+01:00").as_deref(),
            Some("2026-12-03 08:30:00.500")
        );
        assert_eq!(
            server_time("2026-12-03T08:30:00").as_deref(),
            Some("2026-12-03 08:30:00")
        );
        assert_eq!(server_time("1042"), None);
    }

    #[test]
    fn text_kinds() {
        let t = |k, s: &str| text_of(k, Value::Bytes(s.as_bytes().to_vec()));
        assert_eq!(t(Kind::Boolean, "1"), Ok(Some("TRUE".into())));
        assert_eq!(t(Kind::Boolean, "7"), Ok(Some("7".into())));
        assert_eq!(
            t(Kind::UtcTime, "2026-12-03 08:30:00.500000"),
            Ok(Some("2026-12-03T08:30:00.500000Z".into()))
        );
        assert_eq!(t(Kind::Binary, "\u{1}"), Ok(Some("AQ==".into())));
        assert_eq!(text_of(Kind::Text, Value::NULL), Ok(None));
        assert_eq!(
            text_of(Kind::Text, Value::Bytes(vec![0xff])),
            Err("the value is not UTF-8 text".into())
        );
        assert_eq!(wants_tls("verify-identity"), Ok(true));
        assert_eq!(wants_tls("DISABLED"), Ok(false));
    }
}
