//! Workbooks through calamine: `.xlsx`, `.xlsm`, `.xlsb`, `.xls`, `.ods`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use calamine::{Data, Reader, Sheets, open_workbook_auto};

use super::{RowSet, SourceError, SourceRow, TableSource, format_number, header_names};

/// A workbook; each sheet is a table, the first row of its used range the header.
pub struct ExcelSource {
    path: PathBuf,
    workbook: Sheets<BufReader<File>>,
}

impl ExcelSource {
    /// Opens a workbook; a damaged or foreign file is an error here, before any query.
    pub fn open(path: &Path) -> Result<ExcelSource, SourceError> {
        if let Err(source) = File::open(path) {
            return Err(SourceError::Open {
                path: path.to_path_buf(),
                source,
            });
        }
        let workbook = open_workbook_auto(path).map_err(|e| SourceError::Workbook {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(ExcelSource {
            path: path.to_path_buf(),
            workbook,
        })
    }

    /// The sheet names, in workbook order.
    pub fn sheet_names(&self) -> Vec<String> {
        self.workbook.sheet_names()
    }
}

/// `[Sheet1$]`, `Sheet1$` and `sheet1` all name the sheet `Sheet1`.
pub(crate) fn sheet_name(table: &str) -> &str {
    let t = table.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    t.strip_suffix('$').unwrap_or(t)
}

impl TableSource for ExcelSource {
    fn table(&mut self, name: &str) -> Result<RowSet, SourceError> {
        let wanted = sheet_name(name);
        let sheets = self.workbook.sheet_names();
        let Some(sheet) = sheets
            .iter()
            .find(|s| s.eq_ignore_ascii_case(wanted))
            .cloned()
        else {
            return Err(SourceError::MissingSheet {
                sheet: wanted.to_string(),
                available: sheets,
            });
        };
        let mut range =
            self.workbook
                .worksheet_range(&sheet)
                .map_err(|e| SourceError::Workbook {
                    path: self.path.clone(),
                    message: format!("sheet \"{sheet}\": {e}"),
                })?;
        let (first_row, _) = range.start().unwrap_or((0, 0));
        let height = range.height();
        if height == 0 {
            return Ok(RowSet::default());
        }
        let columns = header_names(
            &sheet,
            range[0]
                .iter_mut()
                .map(|c| take_cell(c).ok().flatten())
                .collect(),
        )?;
        let mut out = Vec::with_capacity(height - 1);
        for i in 1..height {
            // The range is ours: its strings move into the rows instead of being copied.
            let cells = &mut range[i];
            let mut values = Vec::with_capacity(cells.len());
            let mut cell_errors = Vec::new();
            for (col, c) in cells.iter_mut().enumerate() {
                match take_cell(c) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        cell_errors.push((col, e));
                        values.push(None);
                    }
                }
            }
            if values.iter().all(Option::is_none) && cell_errors.is_empty() {
                continue; // a blank line in the sheet is not a record
            }
            out.push(SourceRow {
                // Excel numbers rows from 1; the header is at `first_row`, data after it.
                number: u64::from(first_row) + i as u64 + 1,
                values,
                cell_errors,
            });
        }
        Ok(RowSet { columns, rows: out })
    }
}

/// A cell as a user sees it in Excel, taken out of the range (text is moved, not copied);
/// `Err` for an error cell (`#N/A`, `#DIV/0!`, …).
fn take_cell(data: &mut Data) -> Result<Option<String>, String> {
    match std::mem::take(data) {
        Data::String(s) if s.is_empty() => Ok(None),
        Data::String(s) => Ok(Some(s)),
        other => cell(&other),
    }
}

/// A cell as a user sees it in Excel; `Err` for an error cell (`#N/A`, `#DIV/0!`, …).
fn cell(data: &Data) -> Result<Option<String>, String> {
    Ok(match data {
        Data::Empty => None,
        Data::String(s) if s.is_empty() => None,
        Data::String(s) => Some(s.clone()),
        Data::Int(i) => Some(i.to_string()),
        Data::Float(f) => Some(format_number(*f)),
        Data::Bool(b) => Some(if *b { "TRUE" } else { "FALSE" }.to_string()),
        Data::DateTime(dt) => {
            if dt.is_duration() {
                Some(format_duration(dt.as_f64()))
            } else {
                match dt.as_datetime() {
                    Some(t) if dt.as_f64() < 1.0 => Some(t.format("%H:%M:%S").to_string()),
                    Some(t) if t.time() == chrono::NaiveTime::MIN => {
                        Some(t.format("%Y-%m-%d").to_string())
                    }
                    Some(t) => Some(t.format("%Y-%m-%dT%H:%M:%S").to_string()),
                    None => Some(format_number(dt.as_f64())),
                }
            }
        }
        Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
        Data::Error(e) => return Err(format!("{e}")),
    })
}

/// A duration in days as `[h]:mm:ss`, as Excel shows elapsed time.
fn format_duration(days: f64) -> String {
    let total = (days * 86_400.0).round() as i64;
    let sign = if total < 0 { "-" } else { "" };
    let t = total.abs();
    format!("{sign}{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_in_queries() {
        assert_eq!(sheet_name("[TTSheet1$]"), "TTSheet1");
        assert_eq!(sheet_name("TTSheet1$"), "TTSheet1");
        assert_eq!(sheet_name("People"), "People");
    }

    #[test]
    fn cells_as_users_see_them() {
        assert_eq!(cell(&Data::Float(1001.0)).unwrap().as_deref(), Some("1001"));
        assert_eq!(cell(&Data::Int(7)).unwrap().as_deref(), Some("7"));
        assert_eq!(cell(&Data::Bool(true)).unwrap().as_deref(), Some("TRUE"));
        assert_eq!(cell(&Data::String(String::new())).unwrap(), None);
        assert_eq!(cell(&Data::Empty).unwrap(), None);
        assert!(cell(&Data::Error(calamine::CellErrorType::NA)).is_err());
        assert_eq!(format_duration(1.5), "36:00:00");
    }
}
