//! Sources: where rows come from. A [`Source`] answers the job's source query with a [`RowSet`]:
//! named columns and rows in source order, each carrying the row number a user sees.
//!
//! Workbooks ([`ExcelSource`]) and delimited text ([`CsvSource`]) are tables; the query runs on
//! them as real SQL in an embedded SQLite (`source::sql`, private), except `SELECT * FROM [Sheet$]`, which reads
//! the table straight through with the same result. An LDAP directory ([`LdapSource`]) answers
//! an LDAP filter or a GroupID query under its base DN.

mod csv;
pub(crate) mod database;
mod excel;
#[cfg(feature = "ldap")]
mod ldap;
pub(crate) mod ldif;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "odbc")]
pub(crate) mod odbc;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod sql;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

pub use self::csv::CsvSource;
pub use self::database::{DatabaseConfig, Since, is_database_url};
pub use self::excel::ExcelSource;
#[cfg(feature = "ldap")]
pub use self::ldap::LdapSource;

/// Joins the values of a multi-valued attribute in a row.
pub const VALUE_SEPARATOR: &str = ";";
pub use self::ldif::LdifSource;
#[cfg(feature = "mysql")]
pub use self::mysql::MysqlSource;
#[cfg(feature = "odbc")]
pub use self::odbc::OdbcSource;
#[cfg(feature = "postgres")]
pub use self::postgres::PostgresSource;

/// Column names with a case-insensitive lookup (as the product's SQL and field maps treat them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    names: Vec<String>,
    lookup: HashMap<String, usize>,
}

impl Columns {
    /// Columns in order. When two names differ only in case, the first wins the lookup.
    pub fn new(names: Vec<String>) -> Columns {
        let mut lookup = HashMap::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            lookup.entry(n.to_lowercase()).or_insert(i);
        }
        Columns { names, lookup }
    }

    /// The position of column `name`, case-insensitively.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.lookup.get(&name.to_lowercase()).copied()
    }

    /// The names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no columns.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One source row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// The row number a user sees: the sheet row as Excel numbers it (the header is row 1 when it
    /// is the first row), or the line of a CSV record.
    pub number: u64,
    /// One value per column, as a user sees it; `None` is an empty cell.
    pub values: Vec<Option<String>>,
    /// Cells that hold a spreadsheet error (`#N/A`, …): column position and the error text.
    /// A row fails when a mapping reads one of them.
    pub cell_errors: Vec<(usize, String)>,
}

/// A query's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowSet {
    /// The result's columns.
    pub columns: Columns,
    /// The rows, in source (or `ORDER BY`) order.
    pub rows: Vec<SourceRow>,
}

/// What a source could not do. Each names the file, sheet, column or query at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The workbook is damaged or not a workbook.
    #[error("{path} is not a readable workbook: {message}")]
    Workbook {
        /// The file.
        path: PathBuf,
        /// The reader's explanation.
        message: String,
        /// The reader's (calamine's) own error, when it gave one.
        #[source]
        source: Option<crate::BoxError>,
    },
    /// The query names a sheet the workbook does not have.
    #[error("sheet \"{sheet}\" is not in the workbook (its sheets: {})", available.join(", "))]
    MissingSheet {
        /// The sheet asked for.
        sheet: String,
        /// The sheets there are.
        available: Vec<String>,
    },
    /// Two header cells name the same column.
    #[error("table \"{table}\" has the column \"{column}\" twice")]
    DuplicateColumn {
        /// The sheet or file.
        table: String,
        /// The repeated name.
        column: String,
    },
    /// The query is not valid SQL or fails (a missing column is reported here by SQLite).
    #[error("source query \"{query}\" failed: {message}")]
    Query {
        /// The query.
        query: String,
        /// The engine's explanation.
        message: String,
        /// The engine's own error (SQLite's, the database driver's), when it gave one.
        #[source]
        source: Option<crate::BoxError>,
    },
    /// A mapping reads a column the query result does not have.
    #[error("column \"{column}\" is not in the source (its columns: {})", available.join(", "))]
    MissingColumn {
        /// The column.
        column: String,
        /// The columns there are.
        available: Vec<String>,
    },
    /// A CSV record could not be read.
    #[error("{path} line {line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// An LDAP source could not be searched: the server and why (an LDAP result code and the
    /// server's message, or why it could not be reached).
    #[error("LDAP source {server}: {message}")]
    Directory {
        /// The server's URL.
        server: String,
        /// What went wrong.
        message: String,
        /// The client library's error, when there was one (ldap3's).
        #[source]
        source: Option<crate::BoxError>,
    },
    /// The source sent more than a run takes ([`SourceLimits`]): too many rows, too much
    /// text, or one value too large. Nothing is written.
    #[error("{}{message}", row.map(|r| format!("row {r}{}: ", column.as_ref().map(|c| format!(", column \"{c}\"")).unwrap_or_default())).unwrap_or_default())]
    TooLarge {
        /// The row at which the limit was passed.
        row: Option<u64>,
        /// The column holding the value that is too large, if one is.
        column: Option<String>,
        /// Which limit, and how to raise it.
        message: String,
    },
    /// A database source could not be reached, refused the login or broke off: the server
    /// (its URL, never a password) and the server's own message.
    #[error("database source {server}: {message}")]
    Database {
        /// The server's URL.
        server: String,
        /// What the server (or the connection) said.
        message: String,
    },
    /// The embedded directory given as the source (`db:PATH`, `ldif:PATH`) could not be read.
    #[error("source directory {path}: {source}")]
    DirectoryFile {
        /// The store or LDIF file.
        path: PathBuf,
        /// Why: the store's error, or the LDIF reader's.
        source: crate::BoxError,
    },
    /// The file's type is not one datasync reads.
    #[error("{path}: unsupported source type (xlsx, xlsm, xlsb, xls, ods, csv, tsv, txt, ldif)")]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
}

/// What one run takes from its source at most. A source without end (a recursive SQL query,
/// a file that keeps growing) or a runaway cell ends the run with [`SourceError::TooLarge`]
/// instead of taking all the memory there is.
///
/// ```
/// let limits = datasync::source::SourceLimits::default();
/// assert!(limits.max_rows >= 1_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Rows per object type.
    pub max_rows: usize,
    /// Bytes of values per object type, all rows together.
    pub max_bytes: usize,
    /// Bytes in one value.
    pub max_value_bytes: usize,
}

impl Default for SourceLimits {
    /// Room for a few million identities with photos: far above the million a run is built
    /// for, well below what exhausts a machine.
    fn default() -> Self {
        SourceLimits {
            max_rows: 5_000_000,
            max_bytes: 4 << 30,
            max_value_bytes: sql::MAX_VALUE_BYTES,
        }
    }
}

/// Receives a query's answer as the source reads it: the columns once, then each row in
/// order. The engine implements it to work on the first rows while the rest are still being
/// read; the source drives and the sink says whether to go on (the shape of grep-searcher's
/// `Sink`).
///
/// A [`RowSet`] is a sink that keeps everything:
///
/// ```
/// use datasync::source::{RowSet, Source};
/// let mut source = datasync::source::open("fixtures/sources/people.csv".as_ref()).unwrap();
/// let mut answer = RowSet::default();
/// source.query_into("SELECT * FROM [TTSheet1$]", &mut answer).unwrap();
/// assert_eq!(answer.columns.index("employeeid"), Some(0));
/// assert_eq!(answer, source.query("SELECT * FROM [TTSheet1$]").unwrap());
/// ```
pub trait RowSink {
    /// The answer's columns, before any row (also when there are no rows). `Break` stops the
    /// read; the source then returns `Ok`.
    fn columns(&mut self, columns: &Columns) -> ControlFlow<()>;
    /// The next row. `Break` stops the read; the source then returns `Ok`.
    fn row(&mut self, row: SourceRow) -> ControlFlow<()>;
    /// How a source that can spend a long time between two rows (a SQL query still computing)
    /// asks whether to stop: `None` (the default) when the sink never asks it to.
    fn stop_signal(&self) -> Option<StopSignal> {
        None
    }
}

/// Tells a source, from any thread, whether the read it is doing should stop now (the run was
/// cancelled or timed out). Cheap to clone and to ask.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// let flag = Arc::new(AtomicBool::new(false));
/// let seen = flag.clone();
/// let stop = datasync::source::StopSignal::new(move || seen.load(Ordering::Relaxed));
/// assert!(!stop.should_stop());
/// flag.store(true, Ordering::Relaxed);
/// assert!(stop.should_stop());
/// ```
#[derive(Clone)]
pub struct StopSignal(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl StopSignal {
    /// A signal that asks `check`.
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        StopSignal(std::sync::Arc::new(check))
    }

    /// Whether the read should stop now.
    pub fn should_stop(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSignal")
    }
}

impl RowSink for RowSet {
    fn columns(&mut self, columns: &Columns) -> ControlFlow<()> {
        self.columns = columns.clone();
        ControlFlow::Continue(())
    }

    fn row(&mut self, row: SourceRow) -> ControlFlow<()> {
        self.rows.push(row);
        ControlFlow::Continue(())
    }
}

impl RowSet {
    /// The whole answer of a read that hands rows to a sink: how a streaming source answers
    /// [`TableSource::table`] with what its `table_into` gives.
    pub fn collect(
        read: impl FnOnce(&mut dyn RowSink) -> Result<(), SourceError>,
    ) -> Result<RowSet, SourceError> {
        let mut answer = RowSet::default();
        read(&mut answer)?;
        Ok(answer)
    }
}

/// Hands a whole answer to a sink, stopping when it asks.
pub fn feed(answer: RowSet, sink: &mut dyn RowSink) {
    if sink.columns(&answer.columns).is_break() {
        return;
    }
    for row in answer.rows {
        if sink.row(row).is_break() {
            return;
        }
    }
}

/// A table-like source: the rows of one named table (a sheet, a file), header first.
pub trait TableSource {
    /// The table called `name` (`Sheet1$`, `[Sheet1$]` and `sheet1` name the same sheet).
    fn table(&mut self, name: &str) -> Result<RowSet, SourceError>;

    /// The same table, row by row as it is read. The default reads the whole table first;
    /// a source that can stream overrides it, and must give what [`table`](Self::table) gives.
    fn table_into(&mut self, name: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        feed(self.table(name)?, sink);
        Ok(())
    }
}

/// Where rows come from.
///
/// A source answers a query with rows in a stable order: running the same query on the same
/// data gives the same rows in the same order, which keeps reports reproducible.
pub trait Source {
    /// Runs the job's source query.
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError>;

    /// Runs the query, handing rows to `sink` as they are read. The default runs
    /// [`query`](Self::query) and then hands its rows over; the answer is the same either way.
    fn query_into(&mut self, query: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        feed(self.query(query)?, sink);
        Ok(())
    }

    /// Runs the query for a delta run, which keeps only the rows whose `since.column` is past
    /// `since.value`. A source whose server can filter (a database) asks it to, so that only
    /// the changed rows are sent and counted as read; the default reads every row, and the
    /// run then drops the ones not past the watermark. Either way the run keeps the same rows.
    fn query_since_into(
        &mut self,
        query: &str,
        since: Since<'_>,
        sink: &mut dyn RowSink,
    ) -> Result<(), SourceError> {
        let _ = since;
        self.query_into(query, sink)
    }
}

/// Opens the database `config.url` names: PostgreSQL (`postgres://`, `postgresql://`),
/// MariaDB/MySQL (`mysql://`, `mariadb://`), or, built with the `odbc` feature, any ODBC
/// driver's (`odbc:CONNECTION-STRING`).
pub fn open_database(config: DatabaseConfig) -> Result<Box<dyn Source + Send>, SourceError> {
    if config.url.starts_with("odbc:") {
        #[cfg(feature = "odbc")]
        return Ok(Box::new(OdbcSource::connect(config)?));
        #[cfg(not(feature = "odbc"))]
        return Err(
            config.error("this build has no ODBC sources; build datasync with the `odbc` feature")
        );
    }
    let scheme = config
        .url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Box::new(PostgresSource::connect(config)?)),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(config.error(
            "this build has no PostgreSQL sources; build datasync with the `postgres` feature",
        )),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => Ok(Box::new(MysqlSource::connect(config)?)),
        #[cfg(not(feature = "mysql"))]
        "mysql" | "mariadb" => Err(config
            .error("this build has no MySQL sources; build datasync with the `mysql` feature")),
        _ => {
            Err(config
                .error("not a database URL this build reads (postgres://, mysql://, mariadb://)"))
        }
    }
}

/// Refuses an answer with two columns of the same name (case-insensitively, as field maps
/// name them): a mapping could not say which it reads.
fn check_unique(columns: &Columns, table: &str) -> Result<(), SourceError> {
    if columns.lookup.len() == columns.names.len() {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    for n in &columns.names {
        if !seen.insert(n.to_lowercase()) {
            return Err(SourceError::DuplicateColumn {
                table: table.to_string(),
                column: n.clone(),
            });
        }
    }
    Ok(())
}

impl<T: TableSource> Source for T {
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError> {
        match sql::plain_select_star(query) {
            Some(table) => self.table(&table),
            None => sql::run(query, &mut |name: &str| self.table(name)),
        }
    }

    fn query_into(&mut self, query: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        match sql::plain_select_star(query) {
            // Read straight through: the first rows are at work while the rest are read.
            Some(table) => self.table_into(&table, sink),
            None => sql::run_into(query, &mut |name: &str| self.table(name), sink),
        }
    }
}

/// Opens a source file by its extension: workbooks through calamine, delimited text through csv.
pub fn open(path: &Path) -> Result<Box<dyn Source + Send>, SourceError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "csv" | "txt" => Ok(Box::new(CsvSource::open(path, b',')?)),
        "tsv" | "tab" => Ok(Box::new(CsvSource::open(path, b'\t')?)),
        "xlsx" | "xlsm" | "xlsb" | "xls" | "xla" | "xlam" | "ods" => {
            Ok(Box::new(ExcelSource::open(path)?))
        }
        "ldif" => Ok(Box::new(LdifSource::open(path)?)),
        _ => Err(SourceError::Unsupported {
            path: path.to_path_buf(),
        }),
    }
}

/// A directory entry as a source reads it: its DN, and its attributes with their values.
pub(crate) type DirectoryRow = (String, Vec<(String, Vec<String>)>);

/// Directory entries (a DN and its attributes) as rows: a `dn` column, then one column per
/// attribute any entry has, by name (names that differ only in case are one column), a
/// multi-valued attribute's values joined with [`VALUE_SEPARATOR`]. What the LDAP and the
/// embedded directory sources hand a run.
pub(crate) fn rows_from_entries(entries: impl IntoIterator<Item = DirectoryRow>) -> RowSet {
    let entries: Vec<DirectoryRow> = entries.into_iter().collect();
    let mut names: std::collections::BTreeMap<String, String> = Default::default();
    for (_, attributes) in &entries {
        for (name, _) in attributes {
            names
                .entry(name.to_lowercase())
                .or_insert_with(|| name.clone());
        }
    }
    let mut columns = vec!["dn".to_string()];
    columns.extend(names.values().cloned());
    let position: HashMap<String, usize> = names
        .keys()
        .enumerate()
        .map(|(i, k)| (k.clone(), i + 1))
        .collect();
    let rows = entries
        .into_iter()
        .enumerate()
        .map(|(i, (dn, attributes))| {
            let mut values = vec![None; columns.len()];
            values[0] = Some(dn);
            for (name, vals) in attributes {
                if let Some(&p) = position.get(&name.to_lowercase()) {
                    values[p] = Some(vals.join(VALUE_SEPARATOR)).filter(|v| !v.is_empty());
                }
            }
            SourceRow {
                number: i as u64 + 1,
                values,
                cell_errors: Vec::new(),
            }
        })
        .collect();
    RowSet {
        columns: Columns::new(columns),
        rows,
    }
}

/// Turns header cells into column names: blank headers become `F1`, `F2`, … (by position, as
/// the Excel OLE DB provider names them), and a repeated name is an error.
fn header_names(table: &str, cells: Vec<Option<String>>) -> Result<Columns, SourceError> {
    let names: Vec<String> = cells
        .into_iter()
        .enumerate()
        .map(|(i, c)| match c.map(|c| c.trim().to_string()) {
            Some(c) if !c.is_empty() => c,
            _ => format!("F{}", i + 1),
        })
        .collect();
    let columns = Columns::new(names);
    check_unique(&columns, table)?;
    Ok(columns)
}

/// Formats a number as a spreadsheet user sees it: whole numbers without `.0` (employee id
/// 1001 stays `1001`), others in their shortest exact form.
pub(crate) fn format_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        // An integer's `to_string` sizes its buffer once; `format!` grows it.
        (f as i64).to_string()
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_typed() {
        assert_eq!(format_number(1001.0), "1001");
        assert_eq!(format_number(-3.0), "-3");
        assert_eq!(format_number(0.1), "0.1");
        assert_eq!(format_number(1234.5), "1234.5");
    }

    #[test]
    fn headers() {
        let c = header_names("S", vec![Some(" First ".into()), None, Some("Last".into())]).unwrap();
        assert_eq!(c.names(), ["First", "F2", "Last"]);
        assert_eq!(c.index("LAST"), Some(2));
        let e = header_names("S", vec![Some("A".into()), Some("a".into())]).unwrap_err();
        assert!(e.to_string().contains("\"a\" twice"), "{e}");
    }
}
