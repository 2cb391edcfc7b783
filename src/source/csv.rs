//! Delimited text (CSV, TSV) through the `csv` crate. The first record is the header.

use std::path::{Path, PathBuf};

use super::{Columns, RowSet, RowSink, SourceError, SourceRow, TableSource, header_names};

/// A CSV or TSV file: one table, which answers to any table name in the query (a job written
/// for a workbook runs unchanged on the same data exported as CSV). The file is streamed, a
/// record at a time: a million-row file is never held whole.
pub struct CsvSource {
    path: PathBuf,
    delimiter: u8,
}

impl CsvSource {
    /// Opens the file (UTF-8, with or without a byte-order mark; text that is not UTF-8 is
    /// refused when it is read, naming its line and column).
    pub fn open(path: &Path, delimiter: u8) -> Result<CsvSource, SourceError> {
        std::fs::File::open(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(CsvSource {
            path: path.to_path_buf(),
            delimiter,
        })
    }

    /// A record's fields as text; `Err` names the line, the column and the byte that is not
    /// UTF-8.
    fn fields<'r>(
        &self,
        record: &'r csv::ByteRecord,
        line: u64,
    ) -> Result<Vec<&'r str>, SourceError> {
        let mut fields = Vec::with_capacity(record.len());
        // The column counts the fields before and their delimiters (exact for unquoted ones).
        let mut column = 1;
        for field in record.iter() {
            match std::str::from_utf8(field) {
                Ok(text) => fields.push(text),
                Err(e) => {
                    let at = e.valid_up_to();
                    return Err(SourceError::Csv {
                        path: self.path.clone(),
                        line,
                        message: format!(
                            "column {} (byte 0x{:02X}): the file is not UTF-8 text; save it as \
                             UTF-8 (it may be Latin-1 or a Windows code page)",
                            column + at,
                            field[at]
                        ),
                    });
                }
            }
            column += field.len() + 1;
        }
        Ok(fields)
    }
}

impl TableSource for CsvSource {
    fn table(&mut self, name: &str) -> Result<RowSet, SourceError> {
        RowSet::collect(|sink| self.table_into(name, sink))
    }

    fn table_into(&mut self, _name: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        let file = std::fs::File::open(&self.path).map_err(|source| SourceError::Open {
            path: self.path.clone(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(false)
            .buffer_capacity(1 << 20)
            .from_reader(file);
        let err = |line: u64, message: String| SourceError::Csv {
            path: self.path.clone(),
            line,
            message,
        };
        let mut record = csv::ByteRecord::new();
        let read = |reader: &mut csv::Reader<std::fs::File>, record: &mut csv::ByteRecord| {
            reader.read_byte_record(record).map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                err(line, e.to_string())
            })
        };
        if !read(&mut reader, &mut record)? {
            let _ = sink.columns(&Columns::default());
            return Ok(());
        }
        let mut header = self.fields(&record, 1)?;
        // A byte-order mark (as Windows tools write) is not part of the first name.
        if let Some(first) = header.first_mut() {
            *first = first.strip_prefix('\u{feff}').unwrap_or(first);
        }
        let table = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let columns = header_names(&table, header.iter().map(|h| Some(h.to_string())).collect())?;
        if sink.columns(&columns).is_break() {
            return Ok(());
        }
        while read(&mut reader, &mut record)? {
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let values: Vec<Option<String>> = self
                .fields(&record, line)?
                .into_iter()
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
