//! A PostgreSQL database as a source: the job's SQL runs on the server as written, read
//! through a portal a thousand rows at a time, so a table of any size is never held whole.
//!
//! Columns keep what their types mean, written as a user reads them: integers and decimals
//! exactly (`numeric` digit for digit), booleans as `TRUE`/`FALSE` (LDAP's spelling), dates as
//! `2026-12-03`, timestamps as `2026-12-03T08:30:00` and, with a zone, in UTC as
//! `2026-12-03T08:30:00Z`, `bytea` as base64 (how a binary attribute such as `jpegPhoto`
//! carries its bytes), NULL as no value (the attribute is then removed). A column of a type
//! that has no text form here (arrays, geometric types) is a cell error: a row fails only when
//! its field map reads one (cast it in the query, `tags::text`, to read it).

use std::str::FromStr;

use postgres::types::{FromSql, Kind, Type};
use postgres::{Client, NoTls};

use super::database::{
    DatabaseConfig, Since, cancel_on_stop, refuse_password_in_url, take_tls_mode,
};
use super::{Columns, RowSet, RowSink, Source, SourceError, SourceRow};

/// Rows fetched from the portal at once: enough to keep the connection busy, few enough that
/// the reader's memory stays small next to the run's.
const FETCH_ROWS: i32 = 1000;

/// A PostgreSQL server, read with the job's SQL.
///
/// ```no_run
/// use datasync::source::{DatabaseConfig, PostgresSource, Source};
/// let config = DatabaseConfig::new("postgres://hr@127.0.0.1/hr").with_password("s3cret");
/// let mut source = PostgresSource::connect(config)?;
/// let rows = source.query("SELECT employee_id, given_name FROM staff")?;
/// # Ok::<(), datasync::source::SourceError>(())
/// ```
pub struct PostgresSource {
    config: DatabaseConfig,
    client: Client,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSource")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// How the URL asks for TLS.
fn wants_tls(mode: &str) -> Result<bool, String> {
    match mode.to_ascii_lowercase().as_str() {
        "disable" | "allow" | "prefer" => Ok(false),
        "require" | "verify-ca" | "verify-full" => Ok(true),
        other => Err(format!(
            "sslmode={other} is not one of disable, require, verify-ca, verify-full"
        )),
    }
}

impl PostgresSource {
    /// Connects to the server and checks the user's password (a wrong one is an error here,
    /// before anything is read or written).
    pub fn connect(config: DatabaseConfig) -> Result<PostgresSource, SourceError> {
        refuse_password_in_url(&config)?;
        let (url, tls) = take_tls_mode(&config, &["sslmode"], wants_tls)?;
        let url = url.replacen("postgresql://", "postgres://", 1);
        let mut pg = postgres::Config::from_str(&url)
            .map_err(|e| config.error(format!("not a PostgreSQL URL: {e}")))?;
        if let Some(password) = &config.password {
            pg.password(password.expose());
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(std::time::Duration::from_secs(30));
        }
        pg.application_name("datasync");
        let connected = if tls {
            pg.ssl_mode(postgres::config::SslMode::Require);
            let rustls = config.tls_config().map_err(|m| config.error(m))?;
            let make = tokio_postgres_rustls::MakeRustlsConnect::new(rustls);
            pg.connect(make.clone()).map(|client| (client, Some(make)))
        } else {
            pg.ssl_mode(postgres::config::SslMode::Disable);
            pg.connect(NoTls).map(|client| (client, None))
        };
        let (client, tls) = connected.map_err(|e| config.error(server_message(&e)))?;
        Ok(PostgresSource {
            config,
            client,
            tls,
        })
    }

    /// Runs `sql` (with `params` bound as text) in a read-only transaction, handing its rows
    /// to `sink` as they arrive.
    fn stream(
        &mut self,
        shown: &str,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        sink: &mut dyn RowSink,
    ) -> Result<(), SourceError> {
        let query_error = |e: &postgres::Error| SourceError::Query {
            query: shown.to_string(),
            message: server_message(e),
            source: None,
        };
        let cancel_token = self.client.cancel_token();
        let tls = self.tls.clone();
        let stop = sink.stop_signal();
        let server = self.config.url.clone();
        let client = &mut self.client;
        cancel_on_stop(
            stop.clone(),
            move || {
                // A failed cancel leaves the query to finish; the run stops after it.
                let _ = match tls {
                    Some(tls) => cancel_token.cancel_query(tls),
                    None => cancel_token.cancel_query(NoTls),
                };
            },
            || {
                let mut tx = client
                    .build_transaction()
                    .read_only(true)
                    .start()
                    .map_err(|e| SourceError::Database {
                        server: server.clone(),
                        message: server_message(&e),
                    })?;
                let statement = tx.prepare(sql).map_err(|e| query_error(&e))?;
                let types: Vec<Type> = statement
                    .columns()
                    .iter()
                    .map(|c| c.type_().clone())
                    .collect();
                let names = statement
                    .columns()
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect();
                let columns = Columns::new(names);
                super::check_unique(&columns, shown)?;
                if sink.columns(&columns).is_break() {
                    return Ok(());
                }
                let portal = tx.bind(&statement, params).map_err(|e| query_error(&e))?;
                let mut number = 0u64;
                loop {
                    if stop.as_ref().is_some_and(|s| s.should_stop()) {
                        return Ok(());
                    }
                    let rows = tx
                        .query_portal(&portal, FETCH_ROWS)
                        .map_err(|e| query_error(&e))?;
                    if rows.is_empty() {
                        break;
                    }
                    for row in rows {
                        number += 1;
                        if sink.row(source_row(number, &row, &types)).is_break() {
                            return Ok(());
                        }
                    }
                }
                // Read only: nothing to keep, and ending it frees the portal at once.
                tx.rollback().map_err(|e| query_error(&e))
            },
        )
    }
}

/// A PostgreSQL table as a table destination's store: read whole when it is opened, and
/// written at commit as one transaction of row inserts, updates of the changed cells and
/// deletes. Values go in as text cast to each column's own type (`CAST($1::text AS date)`),
/// an empty cell as NULL.
pub(crate) struct PostgresTable {
    client: Client,
    /// The table as the job names it (checked to be a plain, perhaps schema-qualified, name).
    table: String,
    /// Each column's quoted name and its type, as `schema.type` for the casts.
    columns: Vec<(String, String)>,
}

impl std::fmt::Debug for PostgresTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTable")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PostgresTable {
    /// Connects, and reads the table `table` whole.
    pub(crate) fn open(
        config: DatabaseConfig,
        table: &str,
    ) -> Result<(PostgresTable, RowSet), SourceError> {
        let mut source = PostgresSource::connect(config)?;
        let sql = format!("SELECT * FROM {table}");
        let statement = source
            .client
            .prepare(&sql)
            .map_err(|e| SourceError::Query {
                query: sql.clone(),
                message: server_message(&e),
                source: Some(Box::new(e)),
            })?;
        let columns = statement
            .columns()
            .iter()
            .map(|c| {
                let ty = c.type_();
                (
                    quote_identifier(c.name()),
                    format!(
                        "{}.{}",
                        quote_identifier(ty.schema()),
                        quote_identifier(ty.name())
                    ),
                )
            })
            .collect();
        let rows = source.query(&sql)?;
        Ok((
            PostgresTable {
                client: source.client,
                table: table.to_string(),
                columns,
            },
            rows,
        ))
    }
}

impl crate::source::database::DatabaseTable for PostgresTable {
    fn apply(&mut self, changes: &[crate::source::database::RowChange<'_>]) -> Result<(), String> {
        let columns = &self.columns;
        let statements = crate::source::database::table_statements(
            &self.table,
            changes,
            &|i| columns[i].0.clone(),
            &|i, n| format!("CAST(${n}::text AS {})", columns[i].1),
        );
        let mut tx = self.client.transaction().map_err(|e| server_message(&e))?;
        // A statement per shape, prepared once: a first export inserts every row.
        let mut prepared: std::collections::HashMap<String, postgres::Statement> =
            Default::default();
        for statement in statements {
            let values: Vec<Option<&str>> = statement
                .params
                .iter()
                .map(|(_, v)| (!v.is_empty()).then_some(*v))
                .collect();
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v as &(dyn postgres::types::ToSql + Sync))
                .collect();
            let prepared = match prepared.get(&statement.sql) {
                Some(p) => p.clone(),
                None => {
                    let p = tx
                        .prepare_typed(&statement.sql, &vec![Type::TEXT; values.len()])
                        .map_err(|e| server_message(&e))?;
                    prepared.insert(statement.sql, p.clone());
                    p
                }
            };
            tx.execute(&prepared, &params)
                .map_err(|e| server_message(&e))?;
        }
        tx.commit().map_err(|e| server_message(&e))
    }
}

impl Source for PostgresSource {
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError> {
        RowSet::collect(|sink| self.query_into(query, sink))
    }

    fn query_into(&mut self, query: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        self.stream(query, query, &[], sink)
    }

    /// Asks the server for the rows past the watermark only: the job's query becomes a
    /// subquery, filtered on the stamp column compared in its own type (the watermark, which
    /// the last run read from that column, is cast back to it).
    fn query_since_into(
        &mut self,
        query: &str,
        since: Since<'_>,
        sink: &mut dyn RowSink,
    ) -> Result<(), SourceError> {
        let inner = query.trim().trim_end_matches(';');
        let statement = self.client.prepare(inner).map_err(|e| SourceError::Query {
            query: query.to_string(),
            message: server_message(&e),
            source: Some(Box::new(e)),
        })?;
        let column = statement
            .columns()
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(since.column));
        let Some(column) = column else {
            // The run reports the missing column, naming the job's setting.
            return self.stream(query, query, &[], sink);
        };
        let ty = column.type_();
        let sql = format!(
            "SELECT * FROM ({inner}) AS datasync_delta WHERE datasync_delta.{} > CAST($1::text AS {}.{})",
            quote_identifier(column.name()),
            quote_identifier(ty.schema()),
            quote_identifier(ty.name()),
        );
        self.stream(query, &sql, &[&since.value], sink)
    }
}

/// `name` as a PostgreSQL identifier, quoted.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server's own words for an error (its message, detail and hint, and the SQLSTATE), or
/// the client's when the server said nothing.
fn server_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        }
    }
}

/// One result row as a source row.
fn source_row(number: u64, row: &postgres::Row, types: &[Type]) -> SourceRow {
    let mut values = Vec::with_capacity(types.len());
    let mut cell_errors = Vec::new();
    for (i, ty) in types.iter().enumerate() {
        match row.try_get::<_, Cell>(i) {
            Ok(Cell(value)) => values.push(value),
            Err(e) => {
                values.push(None);
                let why = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string());
                cell_errors.push((i, format!("{} value: {why}", ty.name())));
            }
        }
    }
    SourceRow {
        number,
        values,
        cell_errors,
    }
}

/// A value of any column, as text.
struct Cell(Option<String>);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        text_of(ty, raw).map(|t| Cell(Some(t)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

type Failure = Box<dyn std::error::Error + Sync + Send>;

/// The text of one value in PostgreSQL's binary format.
fn text_of(ty: &Type, raw: &[u8]) -> Result<String, Failure> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
    Ok(match *ty {
        Type::BOOL => if bool::from_sql(ty, raw)? {
            "TRUE"
        } else {
            "FALSE"
        }
        .to_string(),
        Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
        Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
        Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
        Type::OID => u32::from_sql(ty, raw)?.to_string(),
        Type::FLOAT4 => f32::from_sql(ty, raw)?.to_string(),
        Type::FLOAT8 => f64::from_sql(ty, raw)?.to_string(),
        Type::NUMERIC => numeric_text(raw)?,
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::JSON
        | Type::XML => String::from_utf8(raw.to_vec())?,
        Type::CHAR => char::from(raw.first().copied().unwrap_or(b' ')).to_string(),
        // jsonb: a version byte (1), then the text.
        Type::JSONB => match raw.split_first() {
            Some((1, text)) => String::from_utf8(text.to_vec())?,
            _ => return Err("unknown jsonb version".into()),
        },
        Type::DATE => NaiveDate::from_sql(ty, raw)?.to_string(),
        Type::TIME => NaiveTime::from_sql(ty, raw)?.to_string(),
        Type::TIMESTAMP => NaiveDateTime::from_sql(ty, raw)?
            .format("%Y-%m-%dT%H:%M:%S%.f")
            .to_string(),
        Type::TIMESTAMPTZ => {
            DateTime::<Utc>::from_sql(ty, raw)?.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }
        Type::UUID => uuid_text(raw)?,
        // Bytes (a photo) as base64, as every binary value is carried (see
        // `destination::is_binary_attribute`).
        Type::BYTEA => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(raw)
        }
        _ => match ty.kind() {
            Kind::Enum(_) => String::from_utf8(raw.to_vec())?,
            Kind::Domain(base) => text_of(base, raw)?,
            // Extension text types (`citext`) send their text as is.
            _ if ty.name() == "citext" => String::from_utf8(raw.to_vec())?,
            _ => {
                return Err(
                    "has no text form here; cast it in the query (`column::text`) to read it"
                        .into(),
                );
            }
        },
    })
}

/// A `uuid` in its usual hyphenated form.
fn uuid_text(raw: &[u8]) -> Result<String, Failure> {
    if raw.len() != 16 {
        return Err("a uuid is 16 bytes".into());
    }
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// A `numeric` in its binary form (digit count, weight, sign and display scale, then base-10000
/// digits) as the decimal text the server would print, digit for digit.
fn numeric_text(raw: &[u8]) -> Result<String, Failure> {
    let word = |i: usize| -> Result<u16, Failure> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a numeric value is cut short".into())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => return Err("a numeric value with an unknown sign".into()),
    }
    let digits = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<Vec<u16>, _>>()?;
    let digit = |i: i64| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if weight < 0 {
        text.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                text.push_str(&digit(i).to_string());
            } else {
                text.push_str(&format!("{:04}", digit(i)));
            }
        }
    }
    if dscale > 0 {
        text.push('.');
        let mut fraction = String::new();
        let mut k = 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(weight + k)));
            k += 1;
        }
        fraction.truncate(dscale);
        text.push_str(&fraction);
    }
    if sign == 0x4000 && text.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        text.insert(0, '-');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            raw.extend(w.to_be_bytes());
        }
        for d in digits {
            raw.extend(d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_read_digit_for_digit() {
        // 12345.678 = 1|2345|.6780, dscale 3
        assert_eq!(
            numeric_text(&numeric(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.0012 = weight -1: .0012
        assert_eq!(
            numeric_text(&numeric(1, -1, 0x4000, 4, &[12])).unwrap(),
            "-0.0012"
        );
        // 0.00001234: weight -2, digits 0.0000|1234
        assert_eq!(
            numeric_text(&numeric(1, -2, 0, 8, &[1234])).unwrap(),
            "0.00001234"
        );
        // 1000000 = 100|0000 with trailing zero digit groups dropped
        assert_eq!(
            numeric_text(&numeric(1, 1, 0, 0, &[100])).unwrap(),
            "1000000"
        );
        assert_eq!(numeric_text(&numeric(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(numeric_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric_text(&[0, 1]).is_err());
        assert!(numeric_text(&numeric(2, 0, 0, 0, &[1])).is_err());
    }

    #[test]
    fn uuids_are_hyphenated() {
        let raw: Vec<u8> = (0..16).collect();
        assert_eq!(
            uuid_text(&raw).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
    }

    #[test]
    fn ssl_modes() {
        assert_eq!(wants_tls("require"), Ok(true));
        assert_eq!(wants_tls("verify-full"), Ok(true));
        assert_eq!(wants_tls("disable"), Ok(false));
        assert!(wants_tls("sometimes").is_err());
    }
}
