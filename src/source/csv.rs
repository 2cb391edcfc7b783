//! Delimited text (CSV, TSV) through the `csv` crate. The first record is the header.

use std::path::{Path, PathBuf};

use super::{Columns, RowSet, RowSink, SourceError, SourceRow, TableSource, header_names};

/// A CSV or TSV file: one table, which answers to any table name in the query (a job written
/// for a workbook runs unchanged on the same data exported as CSV).
pub struct CsvSource {
    path: PathBuf,
    text: String,
    delimiter: u8,
}

impl CsvSource {
    /// Reads the file (UTF-8, with or without a byte-order mark).
    pub fn open(path: &Path, delimiter: u8) -> Result<CsvSource, SourceError> {
        let bytes = std::fs::read(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let column = at
                - bytes[..at]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            SourceError::Csv {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "column {column} (byte 0x{:02X}): the file is not UTF-8 text; save it as \
                     UTF-8 (it may be Latin-1 or a Windows code page)",
                    bytes[at]
                ),
            }
        })?;
        let text = text
            .strip_prefix('\u{feff}')
            .map(String::from)
            .unwrap_or(text);
        Ok(CsvSource {
            path: path.to_path_buf(),
            text,
            delimiter,
        })
    }
}

impl TableSource for CsvSource {
    fn table(&mut self, name: &str) -> Result<RowSet, SourceError> {
        RowSet::collect(|sink| self.table_into(name, sink))
    }

    fn table_into(&mut self, _name: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(false)
            .from_reader(self.text.as_bytes());
        let err = |line: u64, message: String| SourceError::Csv {
            path: self.path.clone(),
            line,
            message,
        };
        let mut records = reader.records();
        let Some(header) = records.next() else {
            let _ = sink.columns(&Columns::default());
            return Ok(());
        };
        let header = header.map_err(|e| err(1, e.to_string()))?;
        let table = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let columns = header_names(&table, header.iter().map(|h| Some(h.to_string())).collect())?;
        if sink.columns(&columns).is_break() {
            return Ok(());
        }
        for record in records {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                err(line, e.to_string())
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let values: Vec<Option<String>> = record
                .iter()
                .map(|v| Some(v.to_string()).filter(|v| !v.is_empty()))
                .collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            let row = SourceRow {
                number: line,
                values,
                cell_errors: Vec::new(),
            };
            if sink.row(row).is_break() {
                break;
            }
        }
        Ok(())
    }
}
