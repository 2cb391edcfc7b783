//! Workbooks through calamine: `.xlsx`, `.xlsm`, `.xlsb`, `.xls`, `.ods`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use std::ops::ControlFlow;

use calamine::{Data, DataRef, Dimensions, Reader, Sheets, XlsxCellReader, open_workbook_auto};

use super::{
    Columns, RowSet, RowSink, SourceError, SourceRow, TableSource, format_number, header_names,
};

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
            source: Some(Box::new(e)),
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

impl ExcelSource {
    /// The workbook's name for the sheet a query calls `name`.
    fn find_sheet(&self, name: &str) -> Result<String, SourceError> {
        let wanted = sheet_name(name);
        let sheets = self.workbook.sheet_names();
        sheets
            .iter()
            .find(|s| s.eq_ignore_ascii_case(wanted))
            .cloned()
            .ok_or_else(|| SourceError::MissingSheet {
                sheet: wanted.to_string(),
                available: sheets,
            })
    }

    /// Reads the sheet whole (through calamine's range) and hands its rows to `sink`: the
    /// way for `.xls`, `.xlsb`, `.ods`, and `.xlsx` sheets that declare no used range.
    fn range_into(&mut self, sheet: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        let mut range =
            self.workbook
                .worksheet_range(sheet)
                .map_err(|e| SourceError::Workbook {
                    path: self.path.clone(),
                    message: format!("sheet \"{sheet}\": {e}"),
                    source: Some(Box::new(e)),
                })?;
        let (first_row, _) = range.start().unwrap_or((0, 0));
        let height = range.height();
        if height == 0 {
            let _ = sink.columns(&Columns::default());
            return Ok(());
        }
        let columns = header_names(
            sheet,
            range[0]
                .iter_mut()
                .map(|c| take_cell(c).ok().flatten())
                .collect(),
        )?;
        if sink.columns(&columns).is_break() {
            return Ok(());
        }
        for i in 1..height {
            // The range is ours: its strings move into the rows instead of being copied.
            let mut row = DataRow::default();
            for (col, c) in range[i].iter_mut().enumerate() {
                row.push(col, take_cell(c));
            }
            // Excel numbers rows from 1; the header is at `first_row`, data after it.
            if let Some(row) = row.finish(u64::from(first_row) + i as u64 + 1)
                && sink.row(row).is_break()
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// One data row being assembled, cell by cell.
#[derive(Default)]
struct DataRow {
    values: Vec<Option<String>>,
    cell_errors: Vec<(usize, String)>,
}

impl DataRow {
    fn with_width(width: usize) -> DataRow {
        DataRow {
            values: vec![None; width],
            cell_errors: Vec::new(),
        }
    }

    /// Sets column `col` (growing the row to reach it).
    fn push(&mut self, col: usize, cell: Result<Option<String>, String>) {
        if self.values.len() <= col {
            self.values.resize(col + 1, None);
        }
        match cell {
            Ok(v) => self.values[col] = v,
            Err(e) => self.cell_errors.push((col, e)),
        }
    }

    /// The row, unless it is blank: a blank line in a sheet is not a record.
    fn finish(self, number: u64) -> Option<SourceRow> {
        if self.values.iter().all(Option::is_none) && self.cell_errors.is_empty() {
            return None;
        }
        Some(SourceRow {
            number,
            values: self.values,
            cell_errors: self.cell_errors,
        })
    }
}

/// `A1`-style name of a zero-based cell position, for messages.
fn cell_name((row, col): (u32, u32)) -> String {
    let mut letters = Vec::new();
    let mut c = col + 1;
    while c > 0 {
        let rem = (c - 1) % 26;
        letters.push(char::from(b'A' + rem as u8));
        c = (c - 1) / 26;
    }
    letters.iter().rev().collect::<String>() + &(row + 1).to_string()
}

/// An `.xlsx` sheet streamed cell by cell (calamine's cell reader), so rows reach the sink
/// while the rest of the sheet is still being parsed and no whole-sheet grid is built.
///
/// The columns are those of the sheet's declared used range (its `<dimension>`, what Excel
/// and the product's OLE DB provider treat as the table), widened to the header row's cells;
/// the header is the first row with a value. A value outside those columns means the file
/// declares a wrong range: that is an error, not a silently dropped cell.
fn stream_xlsx<RS: std::io::Read + std::io::Seek>(
    reader: &mut XlsxCellReader<'_, RS>,
    path: &Path,
    sheet: &str,
    sink: &mut dyn RowSink,
) -> Result<(), SourceError> {
    let declared = reader.dimensions();
    let fail = |message: String| SourceError::Workbook {
        path: path.to_path_buf(),
        message: format!("sheet \"{sheet}\": {message}"),
        source: None,
    };
    // (first column, width) once the header is read.
    let mut span: Option<(u32, usize)> = None;
    let mut current: Option<u32> = None;
    let mut cells: Vec<(u32, Result<Option<String>, String>)> = Vec::new();
    // Hands over the row `current` holds; `Break` when the sink wants no more.
    let mut flush = |row: u32,
                     cells: &mut Vec<(u32, Result<Option<String>, String>)>,
                     span: &mut Option<(u32, usize)>|
     -> Result<ControlFlow<()>, SourceError> {
        match *span {
            None => {
                let first = cells.iter().map(|c| c.0).min().unwrap_or(0);
                let last = cells.iter().map(|c| c.0).max().unwrap_or(0);
                let first = first.min(declared.start.1);
                let last = last.max(declared.end.1);
                let width = (last - first) as usize + 1;
                let mut names = vec![None; width];
                for (col, value) in cells.drain(..) {
                    names[(col - first) as usize] = value.ok().flatten();
                }
                *span = Some((first, width));
                let columns = header_names(sheet, names)?;
                Ok(sink.columns(&columns))
            }
            Some((first, width)) => {
                let mut out = DataRow::with_width(width);
                for (col, value) in cells.drain(..) {
                    let at = col.checked_sub(first).map(|c| c as usize);
                    match at {
                        Some(at) if at < width => out.push(at, value),
                        _ => {
                            return Err(fail(format!(
                                "cell {} lies outside the sheet's declared range {}:{}; \
                                 open and save the workbook in Excel to repair it",
                                cell_name((row, col)),
                                cell_name(declared.start),
                                cell_name(declared.end),
                            )));
                        }
                    }
                }
                Ok(match out.finish(u64::from(row) + 1) {
                    Some(r) => sink.row(r),
                    None => ControlFlow::Continue(()),
                })
            }
        }
    };
    loop {
        let cell = reader.next_cell().map_err(|e| fail(e.to_string()))?;
        let Some(cell) = cell else { break };
        let value = cell.get_value();
        if matches!(value, DataRef::Empty) {
            continue;
        }
        let (row, col) = cell.get_position();
        match current {
            Some(r) if r == row => {}
            Some(r) if row < r => {
                return Err(fail(format!(
                    "row {} comes after row {} in the file; open and save the workbook in Excel to repair it",
                    row + 1,
                    r + 1
                )));
            }
            Some(r) => {
                if flush(r, &mut cells, &mut span)?.is_break() {
                    return Ok(());
                }
                current = Some(row);
            }
            None => current = Some(row),
        }
        cells.push((col, cell_ref(value)));
    }
    match current {
        Some(r) => {
            let _ = flush(r, &mut cells, &mut span)?;
        }
        None => {
            let _ = sink.columns(&Columns::default());
        }
    }
    Ok(())
}

/// A streamed cell as a user sees it in Excel; `Err` for an error cell.
fn cell_ref(value: &DataRef<'_>) -> Result<Option<String>, String> {
    match value {
        DataRef::SharedString("") => Ok(None),
        DataRef::SharedString(s) => Ok(Some((*s).to_string())),
        DataRef::String(s) if s.is_empty() => Ok(None),
        DataRef::String(s) => Ok(Some(s.clone())),
        DataRef::Int(i) => cell(&Data::Int(*i)),
        DataRef::Float(f) => cell(&Data::Float(*f)),
        DataRef::Bool(b) => cell(&Data::Bool(*b)),
        DataRef::DateTime(d) => cell(&Data::DateTime(*d)),
        DataRef::DateTimeIso(s) => Ok(Some(s.clone())),
        DataRef::DurationIso(s) => Ok(Some(s.clone())),
        DataRef::Error(e) => cell(&Data::Error(e.clone())),
        DataRef::Empty => Ok(None),
    }
}

impl TableSource for ExcelSource {
    fn table(&mut self, name: &str) -> Result<RowSet, SourceError> {
        RowSet::collect(|sink| self.table_into(name, sink))
    }

    fn table_into(&mut self, name: &str, sink: &mut dyn RowSink) -> Result<(), SourceError> {
        let sheet = self.find_sheet(name)?;
        if let Sheets::Xlsx(xlsx) = &mut self.workbook
            // A sheet that declares no used range (or only `A1`) is read whole instead, as is
            // anything the cell reader cannot open (a chart sheet): the range path knows them.
            && let Ok(mut reader) = xlsx.worksheet_cells_reader(&sheet)
            && reader.dimensions() != Dimensions::default()
        {
            return stream_xlsx(&mut reader, &self.path, &sheet, sink);
        }
        self.range_into(&sheet, sink)
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
                    Some(t) if dt.as_f64() < 1.0 => Some(iso_datetime(&t, false, true)),
                    Some(t) if t.time() == chrono::NaiveTime::MIN => {
                        Some(iso_datetime(&t, true, false))
                    }
                    Some(t) => Some(iso_datetime(&t, true, true)),
                    None => Some(format_number(dt.as_f64())),
                }
            }
        }
        Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
        Data::Error(e) => return Err(format!("{e}")),
    })
}

/// `t` in ISO 8601: `YYYY-MM-DD`, `HH:MM:SS` or both joined by `T`. Written digit by digit:
/// a date column is a tenth of a sheet's cells, and chrono's `format` parses its pattern on
/// every call.
fn iso_datetime(t: &chrono::NaiveDateTime, date: bool, time: bool) -> String {
    use chrono::{Datelike, Timelike};
    fn two(out: &mut String, n: u32) {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    }
    let mut out = String::with_capacity(19);
    if date {
        // Excel's calendar ends in 9999; chrono's `%Y` pads to four digits the same way.
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return t
                .format(if time {
                    "%Y-%m-%dT%H:%M:%S"
                } else {
                    "%Y-%m-%d"
                })
                .to_string();
        }
        two(&mut out, year as u32 / 100);
        two(&mut out, year as u32 % 100);
        out.push('-');
        two(&mut out, t.month());
        out.push('-');
        two(&mut out, t.day());
        if time {
            out.push('T');
        }
    }
    if time {
        two(&mut out, t.hour());
        out.push(':');
        two(&mut out, t.minute());
        out.push(':');
        two(&mut out, t.second());
    }
    out
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
        let serial = |f: f64| {
            let dt = calamine::ExcelDateTime::new(f, calamine::ExcelDateTimeType::DateTime, false);
            cell(&Data::DateTime(dt)).unwrap().unwrap_or_default()
        };
        assert_eq!(serial(45447.0), "2024-06-04");
        assert_eq!(serial(45447.5), "2024-06-04T12:00:00");
        assert_eq!(serial(0.75), "18:00:00");
        assert_eq!(serial(2.0), "1900-01-02");
    }

    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        let cases = [
            (1, 1, 1, 0, 0, 0),
            (999, 12, 31, 23, 59, 59),
            (2024, 2, 29, 9, 5, 7),
        ];
        for (y, mo, d, h, mi, se) in cases.into_iter().chain([(9999, 12, 31, 0, 0, 1)]) {
            let t = chrono::NaiveDate::from_ymd_opt(y, mo, d)
                .and_then(|d| d.and_hms_opt(h, mi, se))
                .unwrap();
            assert_eq!(
                iso_datetime(&t, true, true),
                t.format("%Y-%m-%dT%H:%M:%S").to_string()
            );
            assert_eq!(
                iso_datetime(&t, true, false),
                t.format("%Y-%m-%d").to_string()
            );
            assert_eq!(
                iso_datetime(&t, false, true),
                t.format("%H:%M:%S").to_string()
            );
        }
        let far = chrono::NaiveDate::from_ymd_opt(10_000, 1, 2)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap();
        assert_eq!(
            iso_datetime(&far, true, false),
            far.format("%Y-%m-%d").to_string()
        );
    }

    fn streamed_and_whole(path: &Path, sheet: &str) -> (RowSet, RowSet) {
        let mut source = ExcelSource::open(path).unwrap();
        let mut streamed = RowSet::default();
        source.table_into(sheet, &mut streamed).unwrap();
        let mut whole = RowSet::default();
        let sheet = source.find_sheet(sheet).unwrap();
        source.range_into(&sheet, &mut whole).unwrap();
        (streamed, whole)
    }

    #[test]
    fn a_streamed_sheet_reads_like_the_whole_sheet() {
        let (streamed, whole) =
            streamed_and_whole("fixtures/sources/people.xlsx".as_ref(), "TTSheet1");
        assert_eq!(streamed.rows.len(), 8);
        assert_eq!(streamed, whole);

        // A table that starts at B2, with a blank header, a blank line, a number, a date, a
        // boolean and an error cell.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("awkward.xlsx");
        let mut wb = rust_xlsxwriter::Workbook::new();
        let sheet = wb.add_worksheet();
        sheet.set_name("Odd").unwrap();
        sheet.write_string(1, 1, "Id").unwrap();
        sheet.write_string(1, 3, "When").unwrap();
        sheet.write_string(1, 4, "Ok").unwrap();
        sheet.write_number(2, 1, 7.0).unwrap();
        sheet.write_string(2, 2, "x").unwrap();
        let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
        let day = rust_xlsxwriter::ExcelDateTime::from_ymd(2024, 6, 4).unwrap();
        sheet.write_datetime_with_format(2, 3, day, &date).unwrap();
        sheet.write_boolean(4, 4, true).unwrap();
        sheet
            .write_formula(
                4,
                1,
                rust_xlsxwriter::Formula::new("=NA()").set_result("#N/A"),
            )
            .unwrap();
        wb.save(&path).unwrap();
        let (streamed, whole) = streamed_and_whole(&path, "odd");
        assert_eq!(streamed.columns.names(), ["Id", "F2", "When", "Ok"]);
        assert_eq!(streamed, whole);
        let rows: Vec<(u64, Vec<Option<&str>>)> = streamed
            .rows
            .iter()
            .map(|r| (r.number, r.values.iter().map(Option::as_deref).collect()))
            .collect();
        assert_eq!(
            rows,
            [
                (3, vec![Some("7"), Some("x"), Some("2024-06-04"), None]),
                (5, vec![None, None, None, Some("TRUE")]),
            ]
        );
        assert_eq!(streamed.rows[1].cell_errors, [(0, "#N/A".to_string())]);
    }

    #[test]
    fn a_cell_outside_the_declared_range_is_an_error() {
        // A sheet with a value beyond its header, then its `<dimension>` cut to the header's
        // two columns: a damaged file.
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("written.xlsx");
        let mut wb = rust_xlsxwriter::Workbook::new();
        let sheet = wb.add_worksheet();
        sheet.write_string(0, 0, "Id").unwrap();
        sheet.write_string(0, 1, "Name").unwrap();
        sheet.write_string(1, 0, "1").unwrap();
        sheet.write_string(1, 3, "stray").unwrap();
        wb.save(&written).unwrap();
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&written).unwrap()).unwrap();
        let path = dir.path().join("damaged.xlsx");
        let mut out = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..zip.len() {
            let mut file = zip.by_index(i).unwrap();
            let name = file.name().unwrap().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
            if name == "xl/worksheets/sheet1.xml" {
                let text = String::from_utf8(bytes).unwrap();
                assert!(text.contains("<dimension ref=\"A1:D2\"/>"), "{text}");
                bytes = text.replace("A1:D2", "A1:B2").into_bytes();
            }
            out.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut out, &bytes).unwrap();
        }
        out.finish().unwrap();
        let mut source = ExcelSource::open(&path).unwrap();
        let e = source.table("[Sheet1$]").unwrap_err().to_string();
        assert!(
            e.contains("sheet \"Sheet1\": cell D2 lies outside the sheet's declared range A1:B2"),
            "{e}"
        );
    }
}
