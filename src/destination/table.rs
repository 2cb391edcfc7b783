//! A table as a destination: a CSV file or a workbook's sheet, written by a job whose
//! destination is a table (`Destination.IsTableProvider`), to export a directory or feed
//! another system.
//!
//! The field map's `destinationField`s are the table's columns. Rows have no DN: the run
//! names each by its key fields (`employeeID=1001`) under [`TABLE_DN`], and a row read back
//! is named the same way, so key fields match rows as they match directory objects. Creates
//! append rows, updates change only the cells that change (other columns, and rows with no
//! key, are kept as they are), deletes remove rows (the whole table is in scope), and a
//! multi-valued attribute is joined with its field's `delimiter`.
//!
//! The table is read whole when it is opened and written at [`commit`](Destination::commit),
//! replacing the file atomically (its mode, owner and any symlink kept). A run that changes
//! nothing leaves the file untouched, byte for byte. Tables never hold passwords: the job
//! loader refuses a password mapping for a table, and a password handed over here is refused.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Destination, DestinationError, Entry, Modification, Scope, value_key};
use crate::Secret;
use crate::dn::Dn;
use crate::query::Filter;
use crate::source::database::{DatabaseTable, RowChange};
use crate::source::{RowSet, TableSource};

/// The DN rows of a table are named under: `employeeID=1001,DC=table`.
pub const TABLE_DN: &str = "DC=table";

/// The DN a row with these key values is named by: `employeeID=1001,DC=table`, or with
/// several keys `employeeID=1001+company=Acme,DC=table` (values escaped, RFC 4514).
///
/// ```
/// use datasync::destination::row_dn;
/// assert_eq!(row_dn(&[("employeeID", "1001")]), "employeeID=1001,DC=table");
/// assert_eq!(row_dn(&[("a", "x+y"), ("b", "z")]), "a=x\\2by+b=z,DC=table");
/// ```
pub fn row_dn(keys: &[(&str, &str)]) -> String {
    let mut dn = String::new();
    for (i, (name, value)) in keys.iter().enumerate() {
        if i > 0 {
            dn.push('+');
        }
        dn.push_str(name);
        dn.push('=');
        dn.push_str(&crate::dn::escape_value(value));
    }
    dn.push(',');
    dn.push_str(TABLE_DN);
    dn
}

/// A table's columns as a job's field map makes them: each column's name and the delimiter
/// its multi-valued cells are joined with, and which columns are the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSpec {
    /// Column names and their delimiters, in field-map order.
    pub columns: Vec<(String, Option<String>)>,
    /// The key columns, in field-map order.
    pub keys: Vec<String>,
}

/// Where a table lives.
#[derive(Debug)]
enum Backing {
    /// A file, replaced whole at commit.
    File { format: Format, _lock: File },
    /// A database table, changed row by row at commit.
    Database {
        table: std::sync::Mutex<Box<dyn DatabaseTable>>,
        /// The rows as read at open, by position: what commit compares with.
        read: Vec<Vec<String>>,
    },
}

/// The kind of file a table lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    /// Delimited text; the first record is the header.
    Csv { delimiter: u8 },
    /// A sheet of an `.xlsx` workbook that holds no other sheet.
    Xlsx { sheet: String },
}

/// The table as held during a run.
#[derive(Debug, Default)]
struct Rows {
    /// Column names: the file's, then the spec's the file lacked.
    header: Vec<String>,
    /// Each row's cells, by header position; `None` once deleted.
    cells: Vec<Option<Vec<String>>>,
    /// A row's DN key (see [`dn_key`]) to its position.
    index: HashMap<String, usize>,
}

/// A table as a destination: a CSV file, a workbook sheet, or a database table. Rows are
/// named by their keys ([`row_dn`]); creates append rows, updates change only the changed
/// cells, deletes remove rows, and an unchanged run writes nothing. The table is read whole
/// at open and written at [`commit`](Destination::commit): a file replaced atomically, a
/// database table in one transaction. Passwords are refused.
///
/// ```
/// use datasync::destination::{TableDestination, TableSpec, row_dn, Destination};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("staff.csv");
/// let spec = TableSpec {
///     columns: vec![("employeeID".into(), None), ("telephoneNumber".into(), Some(";".into()))],
///     keys: vec!["employeeID".into()],
/// };
/// let table = TableDestination::open(&path, "Sheet1", spec)?;
/// let mut row = datasync::Entry::new(row_dn(&[("employeeID", "7")]));
/// row.set("employeeID", vec!["7".into()]);
/// row.set("telephoneNumber", vec!["1".into(), "2".into()]);
/// table.add(&row, None)?;
/// table.commit()?;
/// assert_eq!(std::fs::read_to_string(&path)?, "employeeID,telephoneNumber\n7,1;2\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TableDestination {
    /// The file, or the database table's server and name (for messages).
    path: PathBuf,
    backing: Backing,
    spec: TableSpec,
    rows: RwLock<Rows>,
    dirty: AtomicBool,
}

/// The key a DN is indexed by: its normal form (or, for one that does not parse, its text).
fn dn_key(dn: &str) -> String {
    crate::dn::normalize(dn).unwrap_or_else(|_| dn.to_lowercase())
}

impl TableDestination {
    /// Opens the table in `path` (`.csv`, `.tsv`, `.txt` or `.xlsx`; `sheet` names the
    /// workbook's sheet), or starts it when the file does not exist yet. Two rows with the
    /// same key are refused, naming both.
    pub fn open(
        path: &Path,
        sheet: &str,
        spec: TableSpec,
    ) -> Result<TableDestination, DestinationError> {
        let path = super::resolve_directory_file(path, "csv:PATH or xlsx:PATH")?;
        let io = |source| DestinationError::Io {
            path: path.clone(),
            source,
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let format = match ext.as_str() {
            "csv" | "txt" => Format::Csv { delimiter: b',' },
            "tsv" | "tab" => Format::Csv { delimiter: b'\t' },
            "xlsx" => Format::Xlsx {
                sheet: sheet.to_string(),
            },
            _ => {
                return Err(DestinationError::Rejected {
                    message: format!(
                        "{}: a table destination is a .csv, .tsv, .txt or .xlsx file",
                        path.display()
                    ),
                });
            }
        };
        let lock = super::lock_beside(&path)?;
        crate::files::remove_stale_temps(&path);
        // Whether the file can be replaced is found now, not when the run commits.
        drop(crate::files::Replacement::begin(&path, 0o644).map_err(io)?);
        let read = if path.exists() {
            Some(read_table(&path, &format)?)
        } else {
            None
        };
        let backing = Backing::File {
            format,
            _lock: lock,
        };
        TableDestination::holding(path, backing, spec, read)
    }

    /// A table in a database: `postgres://…`, `mysql://…` or (with the `odbc` feature)
    /// `odbc:CONNECTION-STRING` (the password apart, as for a source), the table as the job's `Destination.Table` names it (`staff`, `hr.staff`). The
    /// table must have a column for every field; it is read whole now, and commit applies the
    /// run's inserts, updates of changed cells, and deletes in one transaction. An unchanged
    /// run sends no statement.
    // A build without any database feature refuses every URL here.
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
        allow(unreachable_code, unused_variables)
    )]
    pub fn database(
        config: crate::source::DatabaseConfig,
        table: &str,
        spec: TableSpec,
    ) -> Result<TableDestination, DestinationError> {
        if table.is_empty()
            || !table
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '$'))
        {
            return Err(DestinationError::Rejected {
                message: format!(
                    "table \"{table}\": a table destination names a table as letters, digits, \
                     `_`, `$` and a schema's `.`"
                ),
            });
        }
        let server = config.url.clone();
        let failed = |e: crate::source::SourceError| DestinationError::Rejected {
            message: format!("table {table} on {server}: {e}"),
        };
        let lower = config.url.to_ascii_lowercase();
        let (store, read): (Box<dyn DatabaseTable>, RowSet) =
            if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
                #[cfg(feature = "postgres")]
                {
                    let (t, rows) = crate::source::postgres::PostgresTable::open(config, table)
                        .map_err(failed)?;
                    (Box::new(t), rows)
                }
                #[cfg(not(feature = "postgres"))]
                return Err(failed(config.error(
                    "this build has no PostgreSQL tables; build datasync with the `postgres` \
                     feature",
                )));
            } else if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
                #[cfg(feature = "mysql")]
                {
                    let (t, rows) =
                        crate::source::mysql::MysqlTable::open(config, table).map_err(failed)?;
                    (Box::new(t), rows)
                }
                #[cfg(not(feature = "mysql"))]
                return Err(failed(config.error(
                    "this build has no MySQL tables; build datasync with the `mysql` feature",
                )));
            } else if lower.starts_with("odbc:") {
                #[cfg(feature = "odbc")]
                {
                    let (t, rows) =
                        crate::source::odbc::OdbcTable::open(config, table).map_err(failed)?;
                    (Box::new(t), rows)
                }
                #[cfg(not(feature = "odbc"))]
                return Err(DestinationError::Rejected {
                    message: "this build has no ODBC tables; build datasync with the `odbc` \
                              feature"
                        .into(),
                });
            } else {
                return Err(DestinationError::Rejected {
                    message: format!(
                        "{server}: a database table destination is postgres://, mysql:// or odbc:"
                    ),
                });
            };
        let missing: Vec<&str> = spec
            .columns
            .iter()
            .map(|(c, _)| c.as_str())
            .filter(|c| read.columns.index(c).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(DestinationError::Rejected {
                message: format!(
                    "table {table} on {server} has no column {} (its columns: {})",
                    missing.join(", "),
                    read.columns.names().join(", ")
                ),
            });
        }
        let snapshot = read
            .rows
            .iter()
            .map(|r| {
                r.values
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect()
            })
            .collect();
        let backing = Backing::Database {
            table: std::sync::Mutex::new(store),
            read: snapshot,
        };
        TableDestination::holding(
            PathBuf::from(format!("{server} {table}")),
            backing,
            spec,
            Some(read),
        )
    }

    /// The destination over `read` (the table as it stands, if it exists yet).
    fn holding(
        path: PathBuf,
        backing: Backing,
        spec: TableSpec,
        read: Option<RowSet>,
    ) -> Result<TableDestination, DestinationError> {
        let mut rows = Rows::default();
        if let Some(read) = read {
            rows.header = read.columns.names().to_vec();
            rows.cells = read
                .rows
                .into_iter()
                .map(|r| {
                    Some(
                        r.values
                            .into_iter()
                            .map(Option::unwrap_or_default)
                            .collect(),
                    )
                })
                .collect();
            for cells in rows.cells.iter_mut().flatten() {
                cells.resize(rows.header.len(), String::new());
            }
        }
        for (name, _) in &spec.columns {
            if !rows.header.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                rows.header.push(name.clone());
                for cells in rows.cells.iter_mut().flatten() {
                    cells.push(String::new());
                }
            }
        }
        let table = TableDestination {
            path,
            backing,
            spec,
            rows: RwLock::new(Rows::default()),
            dirty: AtomicBool::new(false),
        };
        for (i, cells) in rows.cells.iter().enumerate() {
            let Some(dn) = table.dn_of(&rows.header, cells.as_deref().unwrap_or(&[])) else {
                // A row without a key is kept as it is, out of every run's reach.
                continue;
            };
            if let Some(first) = rows.index.insert(dn_key(&dn), i) {
                return Err(DestinationError::Rejected {
                    message: format!(
                        "{}: rows {} and {} have the same key ({dn}); a key names one row",
                        table.path.display(),
                        first + 2,
                        i + 2
                    ),
                });
            }
        }
        *table.rows.write().unwrap_or_else(|p| p.into_inner()) = rows;
        Ok(table)
    }

    /// The file the table lives in (for a database table: its server and name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changes a database table needs to hold the rows as they are now, against the
    /// rows as read (`read`, by position; rows after them are new).
    fn changes<'a>(&self, rows: &'a Rows, read: &'a [Vec<String>]) -> Vec<RowChange<'a>> {
        let key_at: Vec<usize> = self
            .spec
            .keys
            .iter()
            .filter_map(|k| rows.header.iter().position(|h| h.eq_ignore_ascii_case(k)))
            .collect();
        let keys_of = |cells: &'a [String]| -> Vec<(usize, &'a str)> {
            key_at.iter().map(|&i| (i, cells[i].as_str())).collect()
        };
        let mut changes = Vec::new();
        for (i, now) in rows.cells.iter().enumerate() {
            match (read.get(i), now) {
                (Some(was), None) => changes.push(RowChange::Delete { keys: keys_of(was) }),
                (Some(was), Some(now)) if was != now => changes.push(RowChange::Update {
                    keys: keys_of(was),
                    cells: now
                        .iter()
                        .enumerate()
                        .filter(|(c, v)| was.get(*c) != Some(*v))
                        .map(|(c, v)| (c, v.as_str()))
                        .collect(),
                }),
                (None, Some(now)) => changes.push(RowChange::Insert(now)),
                _ => {}
            }
        }
        changes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The delimiter of column `name`, if it is multi-valued.
    fn delimiter(&self, name: &str) -> Option<&str> {
        self.spec
            .columns
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(name))
            .and_then(|(_, d)| d.as_deref())
    }

    /// A cell's values: split by the column's delimiter, empty parts dropped.
    fn values_of(&self, name: &str, cell: &str) -> Vec<String> {
        if cell.is_empty() {
            return Vec::new();
        }
        match self.delimiter(name) {
            Some(d) => cell
                .split(d)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect(),
            None => vec![cell.to_string()],
        }
    }

    /// Values as a cell: joined with the column's delimiter (`;` for a column with none).
    fn cell_of(&self, name: &str, values: &[String]) -> String {
        values.join(self.delimiter(name).unwrap_or(";"))
    }

    /// The DN of a row with these cells, `None` when a key cell is empty.
    fn dn_of(&self, header: &[String], cells: &[String]) -> Option<String> {
        let mut keys = Vec::with_capacity(self.spec.keys.len());
        for key in &self.spec.keys {
            let at = header.iter().position(|h| h.eq_ignore_ascii_case(key))?;
            let value = cells.get(at).filter(|v| !v.is_empty())?;
            keys.push((key.as_str(), value.as_str()));
        }
        (!keys.is_empty()).then(|| row_dn(&keys))
    }

    /// A row as an entry: one attribute per non-empty cell.
    fn entry_of(&self, dn: &str, header: &[String], cells: &[String]) -> Entry {
        let attributes = header
            .iter()
            .zip(cells)
            .filter(|(_, c)| !c.is_empty())
            .map(|(h, c)| (h.as_str().into(), self.values_of(h, c)))
            .collect();
        Entry::from_attributes(dn, attributes)
    }

    fn is_table(dn: &str) -> bool {
        dn_key(dn) == dn_key(TABLE_DN)
    }

    /// The position of `name` in the header, adding the column when it is not there.
    fn column(rows: &mut Rows, name: &str) -> usize {
        if let Some(at) = rows
            .header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
        {
            return at;
        }
        rows.header.push(name.to_string());
        for cells in rows.cells.iter_mut().flatten() {
            cells.push(String::new());
        }
        rows.header.len() - 1
    }

    fn rejected(&self, message: String) -> DestinationError {
        DestinationError::Rejected {
            message: format!("{}: {message}", self.path.display()),
        }
    }
}

/// Reads the table in `path` as it stands.
fn read_table(path: &Path, format: &Format) -> Result<RowSet, DestinationError> {
    let unreadable = |e: crate::source::SourceError| DestinationError::Rejected {
        message: format!("the table {}: {e}", path.display()),
    };
    match format {
        Format::Csv { delimiter } => crate::source::CsvSource::open(path, *delimiter)
            .and_then(|mut s| s.table("table"))
            .map_err(unreadable),
        Format::Xlsx { sheet } => {
            use calamine::Reader;
            let workbook =
                calamine::open_workbook_auto(path).map_err(|e| DestinationError::Rejected {
                    message: format!("{} is not a readable workbook: {e}", path.display()),
                })?;
            let others: Vec<String> = workbook
                .sheet_names()
                .into_iter()
                .filter(|s| !s.eq_ignore_ascii_case(sheet))
                .collect();
            if !others.is_empty() {
                // Writing the sheet means writing the workbook, and the other sheets would
                // lose their formatting and formulas.
                return Err(DestinationError::Rejected {
                    message: format!(
                        "{} holds other sheets ({}); a table destination writes a workbook of \
                         its own (sheet {sheet})",
                        path.display(),
                        others.join(", ")
                    ),
                });
            }
            crate::source::ExcelSource::open(path)
                .and_then(|mut s| s.table(sheet))
                .map_err(unreadable)
        }
    }
}

impl Destination for TableDestination {
    fn search_each(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        _attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), DestinationError> {
        let rows = self.read();
        if Self::is_table(base) {
            if scope == Scope::Base {
                let table = Entry::new(TABLE_DN);
                if filter.matches_by(&|a: &str| table.get(a)) {
                    each(&table);
                }
                return Ok(());
            }
            // Live rows, in the table's order; a row without a key is out of reach.
            for cells in rows.cells.iter().flatten() {
                let Some(dn) = self.dn_of(&rows.header, cells) else {
                    continue;
                };
                let entry = self.entry_of(&dn, &rows.header, cells);
                if filter.matches_by(&|a: &str| entry.get(a)) {
                    each(&entry);
                }
            }
            return Ok(());
        }
        let Some(cells) = rows
            .index
            .get(&dn_key(base))
            .and_then(|&at| rows.cells[at].as_deref())
        else {
            return Err(DestinationError::NoSuchObject {
                dn: base.to_string(),
            });
        };
        let entry = self.entry_of(base, &rows.header, cells);
        if filter.matches_by(&|a: &str| entry.get(a)) {
            each(&entry);
        }
        Ok(())
    }

    fn read_entry(
        &self,
        dn: &str,
        _attributes: &[String],
    ) -> Result<Option<Entry>, DestinationError> {
        let rows = self.read();
        Ok(rows
            .index
            .get(&dn_key(dn))
            .and_then(|&at| rows.cells[at].as_deref())
            .map(|cells| self.entry_of(dn, &rows.header, cells)))
    }

    fn exists(&self, dn: &str) -> Result<bool, DestinationError> {
        Ok(Self::is_table(dn) || self.read().index.contains_key(&dn_key(dn)))
    }

    fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
        if password.is_some() {
            return Err(self.rejected(format!("{}: a table never holds passwords", entry.dn)));
        }
        let parsed = Dn::parse(&entry.dn)?;
        if parsed
            .parent()
            .is_none_or(|p| p.normalized() != dn_key(TABLE_DN))
        {
            return Err(self.rejected(format!("{} is not a row of the table", entry.dn)));
        }
        let mut rows = self.write();
        let mut cells = vec![String::new(); rows.header.len()];
        for (name, _) in &self.spec.columns {
            let at = Self::column(&mut rows, name);
            cells.resize(rows.header.len(), String::new());
            cells[at] = self.cell_of(name, entry.get(name));
        }
        // The row must be found under the name it is added with.
        let named = self.dn_of(&rows.header, &cells);
        if named.as_deref().map(dn_key) != Some(dn_key(&entry.dn)) {
            return Err(self.rejected(format!(
                "{}: the row's key cells name it {}",
                entry.dn,
                named.unwrap_or_else(|| "nothing (a key is empty)".into())
            )));
        }
        let key = dn_key(&entry.dn);
        if rows.index.contains_key(&key) {
            return Err(DestinationError::AlreadyExists {
                dn: entry.dn.clone(),
            });
        }
        rows.cells.push(Some(cells));
        let at = rows.cells.len() - 1;
        rows.index.insert(key, at);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        let mut rows = self.write();
        let Some(&at) = rows.index.get(&dn_key(dn)) else {
            return Err(DestinationError::NoSuchObject { dn: dn.to_string() });
        };
        // All the changes or none: worked out on a copy.
        let mut header_added = Vec::new();
        for change in changes {
            if let Some(name) = change.attribute()
                && !rows.header.iter().any(|h| h.eq_ignore_ascii_case(name))
            {
                header_added.push(name.to_string());
            }
        }
        if let (Some(name), Backing::Database { .. }) = (header_added.first(), &self.backing) {
            // A database table's columns are the table's own.
            return Err(self.rejected(format!("{dn}: the table has no column {name}")));
        }
        let mut cells = rows.cells[at].clone().unwrap_or_default();
        let mut header = rows.header.clone();
        for name in &header_added {
            header.push(name.clone());
            cells.push(String::new());
        }
        for change in changes {
            let Some(name) = change.attribute() else {
                return Err(self.rejected(format!("{dn}: a table never holds passwords")));
            };
            let Some(col) = header.iter().position(|h| h.eq_ignore_ascii_case(name)) else {
                continue;
            };
            let mut values = self.values_of(name, &cells[col]);
            match change {
                Modification::Replace(_, new) => values = new.clone(),
                Modification::AddValues(_, new) => {
                    for v in new {
                        if !values.iter().any(|x| value_key(x) == value_key(v)) {
                            values.push(v.clone());
                        }
                    }
                }
                Modification::DeleteValues(_, gone) => {
                    let gone: Vec<String> = gone.iter().map(|v| value_key(v)).collect();
                    values.retain(|x| !gone.contains(&value_key(x)));
                }
                Modification::SetPassword(_) => {}
            }
            cells[col] = self.cell_of(name, &values);
        }
        if self.dn_of(&header, &cells).map(|d| dn_key(&d)) != Some(dn_key(dn)) {
            return Err(self.rejected(format!(
                "{dn}: a change to a key cell would rename the row; a table's rows keep their keys"
            )));
        }
        for name in header_added {
            Self::column(&mut rows, &name);
        }
        if rows.cells[at].as_ref() != Some(&cells) {
            rows.cells[at] = Some(cells);
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError> {
        Err(self.rejected(format!(
            "cannot rename {dn} to {new_dn}: a table's rows are named by their keys"
        )))
    }

    fn delete(&self, dn: &str) -> Result<(), DestinationError> {
        let mut rows = self.write();
        let Some(at) = rows.index.remove(&dn_key(dn)) else {
            return Err(DestinationError::NoSuchObject { dn: dn.to_string() });
        };
        rows.cells[at] = None;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn commit(&self) -> Result<(), DestinationError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            // Nothing changed: the file stays as it is, byte for byte.
            return Ok(());
        }
        let format = match &self.backing {
            Backing::File { format, .. } => format,
            Backing::Database { table, read } => {
                let rows = self.read();
                let changes = self.changes(&rows, read);
                let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
                return table.apply(&changes).map_err(|message| {
                    // Kept for the next try: nothing was written.
                    self.dirty.store(true, Ordering::Release);
                    DestinationError::Rejected {
                        message: format!("{}: {message}; no row was written", self.path.display()),
                    }
                });
            }
        };
        let io = |source| DestinationError::Io {
            path: self.path.clone(),
            source,
        };
        // Written from the table as it is held: a copy would double the memory at the end.
        let table = self.read();
        let (header, rows) = (&table.header, table.cells.iter().flatten());
        let mut replacement = crate::files::Replacement::begin(&self.path, 0o644).map_err(io)?;
        match format {
            Format::Csv { delimiter } => {
                let mut writer = csv::WriterBuilder::new()
                    .delimiter(*delimiter)
                    .from_writer(std::io::BufWriter::new(replacement.file()));
                let csv_error = |e: csv::Error| DestinationError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e.to_string()),
                };
                writer.write_record(header).map_err(csv_error)?;
                for row in rows {
                    writer.write_record(row).map_err(csv_error)?;
                }
                writer
                    .into_inner()
                    .map_err(|e| io(e.into_error()))?
                    .into_inner()
                    .map_err(|e| io(e.into_error()))?;
            }
            Format::Xlsx { sheet } => {
                let bytes = xlsx_bytes(sheet, header, rows)
                    .map_err(|m| self.rejected(format!("cannot write the workbook: {m}")))?;
                use std::io::Write;
                replacement.file().write_all(&bytes).map_err(io)?;
            }
        }
        replacement.commit().map_err(io)
    }
}

/// A workbook of one sheet holding the table. A cell whose text a number reads back as
/// exactly (`1001`, `0.5`) is written as that number, as a user typing it would have; all
/// other cells (`007`, `555-0100`) as text.
fn xlsx_bytes<'a>(
    sheet: &str,
    header: &[String],
    rows: impl Iterator<Item = &'a Vec<String>>,
) -> Result<Vec<u8>, String> {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let worksheet = workbook.add_worksheet();
    worksheet.set_name(sheet).map_err(|e| e.to_string())?;
    for (c, name) in header.iter().enumerate() {
        worksheet
            .write_string(0, c as u16, name)
            .map_err(|e| e.to_string())?;
    }
    for (r, row) in rows.enumerate() {
        let r = u32::try_from(r + 1).map_err(|_| "too many rows for a sheet".to_string())?;
        for (c, cell) in row.iter().enumerate() {
            if cell.is_empty() {
                continue;
            }
            let c = c as u16;
            match cell.parse::<f64>() {
                Ok(n) if n.is_finite() && crate::source::format_number(n) == *cell => {
                    worksheet.write_number(r, c, n)
                }
                _ => worksheet.write_string(r, c, cell),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    workbook.save_to_buffer().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TableSpec {
        TableSpec {
            columns: vec![
                ("id".into(), None),
                ("name".into(), None),
                ("phones".into(), Some("|".into())),
            ],
            keys: vec!["id".into()],
        }
    }

    #[test]
    fn updates_change_their_cells_only_and_an_unchanged_run_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let original = "id,extra,name,phones\n1,keep me,Ann,1|2\n,no key,x,\n2,,Bob,\n";
        std::fs::write(&path, original).unwrap();
        let table = TableDestination::open(&path, "Sheet1", spec()).unwrap();
        let ann = table
            .read_entry(&row_dn(&[("id", "1")]), &[])
            .unwrap()
            .unwrap();
        assert_eq!(ann.get("phones"), ["1", "2"]);
        assert_eq!(ann.first("extra"), Some("keep me"));
        // A change to nothing: no write.
        table
            .modify(
                &ann.dn,
                &[Modification::Replace("name".into(), vec!["Ann".into()])],
            )
            .unwrap();
        table.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

        table
            .modify(
                &ann.dn,
                &[Modification::AddValues(
                    "phones".into(),
                    vec!["3".into(), "1".into()],
                )],
            )
            .unwrap();
        table.delete(&row_dn(&[("id", "2")])).unwrap();
        let err = table
            .modify(
                &ann.dn,
                &[Modification::Replace("id".into(), vec!["9".into()])],
            )
            .unwrap_err();
        assert!(err.to_string().contains("rename"), "{err}");
        table.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "id,extra,name,phones\n1,keep me,Ann,1|2|3\n,no key,x,\n"
        );
    }

    #[test]
    fn two_rows_with_one_key_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id,name\n1,a\n1,b\n").unwrap();
        let err = TableDestination::open(&path, "Sheet1", spec()).unwrap_err();
        assert!(err.to_string().contains("rows 2 and 3"), "{err}");
    }

    #[test]
    fn passwords_and_renames_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let table = TableDestination::open(&dir.path().join("t.csv"), "Sheet1", spec()).unwrap();
        let mut row = Entry::new(row_dn(&[("id", "1")]));
        row.set("id", vec!["1".into()]);
        assert!(table.add(&row, Some(&Secret::new("x"))).is_err());
        assert!(table.rename(&row.dn, "id=2,DC=table").is_err());
        table.add(&row, None).unwrap();
        assert!(matches!(
            table.add(&row, None),
            Err(DestinationError::AlreadyExists { .. })
        ));
    }
}
