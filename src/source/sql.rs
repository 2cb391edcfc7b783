//! The source query as real SQL, on an embedded SQLite (`rusqlite`, bundled).
//!
//! We do not parse SQL ourselves. Tables are loaded on demand: the query is prepared, and each
//! `no such table: X` SQLite answers loads table `X` from the source and tries again, so only
//! the sheets a query names are read. SQLite accepts the product's `[Sheet1$]` quoting as is.
//!
//! Values go in typed so comparisons mean what a user expects: canonical whole numbers as
//! INTEGER, exact decimals as REAL, everything else as TEXT (so `007` keeps its zeros). Dates
//! are ISO 8601 text and compare correctly as text. Booleans are the text `TRUE`/`FALSE`.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, params_from_iter};

use super::{Columns, RowSet, RowSink, SourceError, SourceRow, format_number};

/// The hidden column that carries each row's sheet row number through the query, so a report
/// names the row a user sees in Excel even after `WHERE` and `ORDER BY`. `SELECT *` returns it
/// (it is removed from the result); a query that lists columns loses it, and rows are then
/// numbered by their place in the result.
const ROW_COLUMN: &str = "__datasync_row";

/// The table of `SELECT * FROM [Sheet1$]` (with an optional `;`), which is read directly: the
/// same rows in the same order as SQLite would give, without loading them into it.
pub fn plain_select_star(query: &str) -> Option<String> {
    static PLAIN: OnceLock<Regex> = OnceLock::new();
    let re = PLAIN.get_or_init(|| {
        Regex::new(r#"(?is)^\s*select\s+\*\s+from\s+(\[[^\]]+\]|"[^"]+"|`[^`]+`|[\w$.]+)\s*;?\s*$"#)
            .unwrap_or_else(|_| unreachable!())
    });
    let caps = re.captures(query)?;
    let t = caps.get(1)?.as_str();
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or_else(|| t.strip_prefix('`').and_then(|t| t.strip_suffix('`')))
        .unwrap_or(t);
    Some(t.to_string())
}

/// The longest text or blob SQLite may make while it runs a source query (its
/// `SQLITE_LIMIT_LENGTH`): a query that builds a larger value (`randomblob(300000000)`) fails
/// with the row it was on instead of taking the memory.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// How many SQLite steps run between two looks at whether the read should stop.
const STEPS_BETWEEN_STOP_CHECKS: i32 = 10_000;

/// Runs `query` in a fresh in-memory SQLite, loading tables through `table` as the query needs
/// them, and returns the whole answer.
pub fn run(
    query: &str,
    table: &mut dyn FnMut(&str) -> Result<RowSet, SourceError>,
) -> Result<RowSet, SourceError> {
    RowSet::collect(|sink| run_into(query, table, sink))
}

/// Runs `query` as [`run`] does, handing each row to `sink` as SQLite makes it, so a query
/// that returns many rows is never held whole here.
///
/// The query is bounded: it may only read (`ATTACH` and `DETACH`, which would open or create
/// files, are refused, as is anything that writes), no value may exceed [`MAX_VALUE_BYTES`],
/// and a query that runs on without returning rows (a recursive CTE without end) stops as soon
/// as the sink's [`stop_signal`](RowSink::stop_signal) says so (a cancel, a time-out).
pub fn run_into(
    query: &str,
    table: &mut dyn FnMut(&str) -> Result<RowSet, SourceError>,
    sink: &mut dyn RowSink,
) -> Result<(), SourceError> {
    let fail = |message: String, source: Option<rusqlite::Error>| SourceError::Query {
        query: query.to_string(),
        message,
        source: source.map(|e| Box::new(e) as crate::BoxError),
    };
    let sqlite = |e: rusqlite::Error| fail(e.to_string(), Some(e));
    let mut conn = Connection::open_in_memory().map_err(sqlite)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES as i32)
        .and_then(|_| conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0))
        .map_err(sqlite)?;
    if let Some(stop) = sink.stop_signal() {
        conn.progress_handler(STEPS_BETWEEN_STOP_CHECKS, Some(move || stop.should_stop()))
            .map_err(sqlite)?;
    }
    guard_statements(&mut conn).map_err(sqlite)?;
    let mut loaded: HashSet<String> = HashSet::new();
    loop {
        match conn.prepare(query) {
            Ok(mut statement) => {
                if !statement.readonly() {
                    return Err(fail("only SELECT queries are allowed".into(), None));
                }
                return stream(&mut statement, sink)
                    .map_err(|StreamError { row, error }| fail(explain(&error, row), Some(error)));
            }
            Err(e) => {
                let message = explain(&e, None);
                let Some(name) = message.strip_prefix("no such table: ") else {
                    return Err(fail(message, Some(e)));
                };
                let name = name.trim().to_string();
                if !loaded.insert(name.to_lowercase()) {
                    return Err(fail(message, Some(e)));
                }
                let rows = table(&name)?;
                load(&conn, &name, &rows).map_err(|e| fail(explain(&e, None), Some(e)))?;
            }
        }
    }
}

/// Installs the authorizer that keeps a source query to reading: `ATTACH`, `DETACH` and
/// `PRAGMA` are denied when a statement is prepared (the tables we load need none of them).
fn guard_statements(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } | AuthAction::Pragma { .. } => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }))
}

/// SQLite's error in words a user can act on; `row` is the row being read, if any.
fn explain(error: &rusqlite::Error, row: Option<u64>) -> String {
    let code = error.sqlite_error_code();
    let at = row.map(|r| format!("row {r}: ")).unwrap_or_default();
    match code {
        Some(rusqlite::ErrorCode::AuthorizationForStatementDenied) => {
            "a source query may only read: ATTACH, DETACH and PRAGMA are not allowed".into()
        }
        Some(rusqlite::ErrorCode::TooBig) => format!(
            "{at}a value is larger than the {} MiB a source value may have",
            MAX_VALUE_BYTES >> 20
        ),
        Some(rusqlite::ErrorCode::OperationInterrupted) => {
            "the query was stopped (the run was cancelled or timed out)".into()
        }
        _ => format!("{at}{error}"),
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn load(conn: &Connection, name: &str, rows: &RowSet) -> rusqlite::Result<()> {
    let mut columns: Vec<String> = rows.columns.names().iter().map(|c| quote(c)).collect();
    columns.push(quote(ROW_COLUMN));
    // Columns without a declared type have no affinity: values keep the type they are given.
    conn.execute_batch(&format!(
        "CREATE TABLE {} ({});",
        quote(name),
        columns.join(", ")
    ))?;
    let placeholders = vec!["?"; columns.len()].join(", ");
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare(&format!(
            "INSERT INTO {} VALUES ({placeholders})",
            quote(name)
        ))?;
        for row in &rows.rows {
            let values = row
                .values
                .iter()
                .map(|v| typed(v.as_deref()))
                .chain(std::iter::once(Value::Integer(row.number as i64)));
            insert.execute(params_from_iter(values))?;
        }
    }
    tx.commit()
}

fn typed(value: Option<&str>) -> Value {
    let Some(v) = value else {
        return Value::Null;
    };
    if let Ok(i) = v.parse::<i64>()
        && i.to_string() == v
    {
        return Value::Integer(i);
    }
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
        && format_number(f) == v
    {
        return Value::Real(f);
    }
    Value::Text(v.to_string())
}

/// SQLite failed while a query was streamed, on this row if it was reading one (numbered as
/// the answer's rows are).
struct StreamError {
    row: Option<u64>,
    error: rusqlite::Error,
}

fn stream(
    statement: &mut rusqlite::Statement<'_>,
    sink: &mut dyn RowSink,
) -> Result<(), StreamError> {
    let sqlite = |row| move |error| StreamError { row, error };
    let names: Vec<String> = statement.column_names().map(|s| s.to_string()).collect();
    let row_column = names.iter().position(|n| n == ROW_COLUMN);
    let kept: Vec<usize> = (0..names.len())
        .filter(|i| names[*i] != ROW_COLUMN)
        .collect();
    let columns = Columns::new(kept.iter().map(|i| names[*i].clone()).collect());
    if sink.columns(&columns).is_break() {
        return Ok(());
    }
    let mut rows = statement.query([]).map_err(sqlite(None))?;
    let mut ordinal = 1u64;
    loop {
        let next = ordinal + 1;
        let Some(row) = rows.next().map_err(sqlite(Some(next)))? else {
            return Ok(());
        };
        ordinal = next;
        let mut values = Vec::with_capacity(kept.len());
        for i in &kept {
            values.push(match row.get_ref(*i).map_err(sqlite(Some(ordinal)))? {
                ValueRef::Null => None,
                ValueRef::Integer(n) => Some(n.to_string()),
                ValueRef::Real(f) => Some(format_number(f)),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Some(String::from_utf8_lossy(t).into_owned()).filter(|s| !s.is_empty())
                }
            });
        }
        let number = match row_column {
            Some(i) => row.get::<_, i64>(i).map(|n| n as u64).unwrap_or(ordinal),
            None => ordinal,
        };
        let row = SourceRow {
            number,
            values,
            cell_errors: Vec::new(),
        };
        if sink.row(row).is_break() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people() -> RowSet {
        let rows = [
            ("1001", "Ann", "Sales", "007"),
            ("999", "Bob", "R&D", "12"),
            ("1500", "Cy", "Sales", ""),
        ];
        RowSet {
            columns: Columns::new(vec![
                "Id".into(),
                "First".into(),
                "Dept".into(),
                "Code".into(),
            ]),
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, (a, b, c, d))| SourceRow {
                    number: i as u64 + 2,
                    values: [a, b, c, d]
                        .iter()
                        .map(|v| Some(v.to_string()).filter(|v| !v.is_empty()))
                        .collect(),
                    cell_errors: vec![],
                })
                .collect(),
        }
    }

    fn query(q: &str) -> Result<RowSet, SourceError> {
        run(q, &mut |name: &str| {
            if super::super::excel::sheet_name(name).eq_ignore_ascii_case("People") {
                Ok(people())
            } else {
                Err(SourceError::MissingSheet {
                    sheet: name.into(),
                    available: vec!["People".into()],
                })
            }
        })
    }

    #[test]
    fn plain_select_star_is_recognised() {
        assert_eq!(
            plain_select_star("SELECT * FROM [TTSheet1$]").as_deref(),
            Some("[TTSheet1$]")
        );
        assert_eq!(
            plain_select_star(" select *\nfrom People ; ").as_deref(),
            Some("People")
        );
        assert_eq!(plain_select_star("SELECT * FROM [a$] WHERE x = 1"), None);
        assert_eq!(plain_select_star("SELECT First FROM [a$]"), None);
    }

    #[test]
    fn where_order_and_row_numbers() {
        let r = query("SELECT * FROM [People$] WHERE Id > 1000 ORDER BY Id DESC").unwrap();
        assert_eq!(r.columns.names(), ["Id", "First", "Dept", "Code"]);
        let firsts: Vec<_> = r
            .rows
            .iter()
            .map(|r| r.values[1].clone().unwrap())
            .collect();
        assert_eq!(firsts, ["Cy", "Ann"]);
        assert_eq!(r.rows[0].number, 4); // sheet row of Cy
        assert_eq!(r.rows[1].values[0].as_deref(), Some("1001"));
    }

    #[test]
    fn like_in_null_not_and_aliases() {
        let r = query(
            "SELECT First AS GivenName, Code FROM [People$] \
             WHERE (Dept LIKE 'sal%' OR Dept IN ('R&D')) AND NOT Code IS NULL",
        )
        .unwrap();
        assert_eq!(r.columns.names(), ["GivenName", "Code"]);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0].values[1].as_deref(), Some("007"));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let e = query("SELECT * FROM [Nope$] WHERE 1").unwrap_err();
        assert!(matches!(e, SourceError::MissingSheet { .. }), "{e}");
        let e = query("SELECT Salary FROM [People$]").unwrap_err();
        assert!(e.to_string().contains("no such column: Salary"), "{e}");
        let e = query("SELEKT * FROM [People$]").unwrap_err();
        assert!(e.to_string().contains("syntax error"), "{e}");
        let e = query("DELETE FROM [People$]").unwrap_err();
        assert!(e.to_string().contains("only SELECT"), "{e}");
    }
}
