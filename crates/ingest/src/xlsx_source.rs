//! Excel workbooks: a named or the first sheet, streamed cell by cell; Excel dates become dates.
//!
//! Before calamine opens a workbook, `xlsx_guard` bounds what it would read whole. Here, rows are
//! kept sparse (only cells that hold something), shared strings are borrowed from calamine's
//! table rather than copied, and a cell beyond the header's columns is a problem, never a reason
//! to grow a row.

use std::io::BufReader;

use calamine::{DataRef, Reader, Xlsx, XlsxCellReader};

use crate::columns::{self, ColumnType, Inference};
use crate::limits::{self, MAX_COLUMNS, SAMPLE_BYTES};
use crate::reader::{Batcher, Context};
use crate::{BatchSink, IngestError, Problem, SourceReport, values};

/// A cell value that is not empty; text from the shared strings table is borrowed.
#[derive(Debug, Clone)]
enum Cell<'a> {
    Int(i64),
    Float(f64),
    Text(String),
    Shared(&'a str),
    Bool(bool),
    DateTime(chrono::NaiveDateTime),
    Error(String),
}

impl<'a> Cell<'a> {
    fn from_ref(d: &DataRef<'a>) -> Option<Self> {
        Some(match d {
            DataRef::Empty => return None,
            DataRef::Int(i) => Cell::Int(*i),
            DataRef::Float(f) => Cell::Float(*f),
            DataRef::String(s) => Cell::Text(s.clone()),
            DataRef::SharedString(s) => Cell::Shared(s),
            DataRef::Bool(b) => Cell::Bool(*b),
            DataRef::DateTime(dt) => match dt.as_datetime() {
                Some(v) if dt.is_datetime() => Cell::DateTime(v),
                _ => Cell::Float(dt.as_f64()),
            },
            DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::Text(s.clone()),
            DataRef::Error(e) => Cell::Error(e.to_string()),
        })
    }

    /// About how much memory the cell takes, for the sample's budget.
    fn size(&self) -> usize {
        std::mem::size_of::<(u32, Self)>()
            + match self {
                Cell::Text(s) | Cell::Error(s) => s.len(),
                _ => 0,
            }
    }

    fn observe(&self, inf: &mut Inference) {
        match self {
            Cell::Error(_) => {}
            Cell::Int(_) => inf.observe_typed(ColumnType::Integer),
            Cell::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => inf.observe_typed(ColumnType::Integer),
            Cell::Float(_) => inf.observe_typed(ColumnType::Float),
            Cell::Text(s) => inf.observe_text(s),
            Cell::Shared(s) => inf.observe_text(s),
            Cell::Bool(_) => inf.observe_typed(ColumnType::Boolean),
            Cell::DateTime(dt) if dt.time() == chrono::NaiveTime::MIN => inf.observe_typed(ColumnType::Date),
            Cell::DateTime(_) => inf.observe_typed(ColumnType::Timestamp),
        }
    }
}

/// Spreadsheet column letters for a 0-based index (0 → A, 26 → AA).
fn column_letters(mut i: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// One row's cells that hold something, by 0-based column.
struct Row<'a> {
    /// The 0-based row number.
    r: u32,
    cells: Vec<(u32, Cell<'a>)>,
    /// The first column, at or beyond the limit, of a cell that holds something; the cell is not
    /// kept.
    beyond: Option<u32>,
    /// The last such column.
    last_beyond: u32,
    /// About how much memory the row takes.
    size: usize,
}

/// Gathers the cells of each row; cells at or beyond `limit` columns are noted, not kept.
struct Rows<'a, R: std::io::Read + std::io::Seek> {
    cells: XlsxCellReader<'a, R>,
    current: Option<Row<'a>>,
    finished: bool,
    limit: u32,
}

impl<'a, R: std::io::Read + std::io::Seek> Rows<'a, R> {
    fn next(&mut self) -> Result<Option<Row<'a>>, calamine::XlsxError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let Some(cell) = self.cells.next_cell()? else {
                self.finished = true;
                return Ok(self.current.take());
            };
            let (r, c) = cell.get_position();
            let value = Cell::from_ref(cell.get_value());
            let done = match &self.current {
                Some(row) if row.r != r => self.current.take(),
                _ => None,
            };
            let row = self.current.get_or_insert_with(|| Row { r, cells: Vec::new(), beyond: None, last_beyond: 0, size: 0 });
            if let Some(value) = value {
                if c >= self.limit {
                    row.beyond = Some(row.beyond.map_or(c, |b| b.min(c)));
                    row.last_beyond = row.last_beyond.max(c);
                } else {
                    // Cells come in column order; a cell given twice replaces the first. A row
                    // holds at most `limit` cells, however often a cell is repeated.
                    let same = match row.cells.last() {
                        Some(last) if last.0 == c => Some(row.cells.len() - 1),
                        _ if row.cells.len() >= self.limit as usize => row.cells.iter().position(|(k, _)| *k == c),
                        _ => None,
                    };
                    match same {
                        Some(k) => row.cells[k].1 = value,
                        None => {
                            row.size += value.size();
                            row.cells.push((c, value));
                        }
                    }
                }
            }
            if done.is_some() {
                return Ok(done);
            }
        }
    }
}

pub(crate) fn read(ctx: &Context, sink: &mut dyn BatchSink) -> Result<SourceReport, IngestError> {
    let file = ctx.file_name.as_str();
    crate::xlsx_guard::check(&ctx.path, file).map_err(|p| IngestError::Invalid(vec![p]))?;
    let handle = std::fs::File::open(&ctx.path).map_err(|e| ctx.io(e))?;
    let mut workbook: Xlsx<_> = Xlsx::new(BufReader::new(handle)).map_err(|e| {
        IngestError::Invalid(vec![Problem::file(file, format!("not a readable XLSX workbook ({e}); is the file complete?"))])
    })?;
    let names = workbook.sheet_names();
    let sheet = match &ctx.options.sheet {
        Some(s) if names.contains(s) => s.clone(),
        Some(s) => {
            return Err(IngestError::Invalid(vec![Problem::file(
                file,
                format!("no sheet named {}; the workbook has: {}", values::quote(s), names.join(", ")),
            )]));
        }
        None => names.first().cloned().ok_or_else(|| IngestError::Invalid(vec![Problem::file(file, "the workbook has no sheets")]))?,
    };
    let located = format!("{file} (sheet {sheet})");
    let bad = |e: calamine::XlsxError| {
        IngestError::Invalid(vec![Problem::file(&located, format!("cannot read the sheet ({e}); is the file complete?"))])
    };
    let cells = workbook.worksheet_cells_reader(&sheet).map_err(bad)?;
    let mut rows = Rows { cells, current: None, finished: false, limit: MAX_COLUMNS as u32 };

    let Some(header) = rows.next().map_err(bad)? else {
        return Err(IngestError::Invalid(vec![Problem::file(&located, "the sheet is empty")]));
    };
    if let Some(c) = header.beyond {
        let name = column_letters(c as usize);
        return Err(IngestError::Invalid(vec![Problem::at_row(
            &located,
            u64::from(header.r) + 1,
            Some(&name),
            limits::too_many_columns(u64::from(header.last_beyond) + 1),
        )]));
    }
    let width = header.cells.iter().map(|(c, _)| *c as usize + 1).max().unwrap_or(0);
    let mut names = vec![String::new(); width];
    for (c, cell) in &header.cells {
        names[*c as usize] = match cell {
            Cell::Text(s) => s.trim().to_string(),
            Cell::Shared(s) => s.trim().to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            other => format!("{other:?}"),
        };
    }
    drop(header);
    rows.limit = width as u32;
    let mut sample = Vec::new();
    let mut sample_bytes = 0;
    let mut inference = vec![Inference::default(); width];
    let mut eof = false;
    while sample.len() < ctx.sample_rows() && sample_bytes < SAMPLE_BYTES {
        match rows.next().map_err(bad)? {
            Some(row) => {
                for (c, cell) in &row.cells {
                    cell.observe(&mut inference[*c as usize]);
                }
                sample_bytes += row.size;
                sample.push(row);
            }
            None => {
                eof = true;
                break;
            }
        }
    }
    let inferred: Vec<ColumnType> = inference.iter().zip(&names).map(|(i, n)| i.decide_for(n)).collect();
    let mut plan = columns::plan(&located, &names, &inferred, &ctx.options).map_err(IngestError::Invalid)?;
    let crs = columns::text_geometry_crs(&located, &mut plan, &inference, &ctx.options).map_err(IngestError::Invalid)?;
    let mut batcher = Batcher::new(ctx, plan, sink)?;

    // Where each source column's cell is in the row being processed.
    let mut at: Vec<Option<usize>> = vec![None; width];
    let mut process = |row: &Row<'_>, batcher: &mut Batcher| -> Result<bool, IngestError> {
        let excel_row = u64::from(row.r) + 1;
        let mut problems = Vec::new();
        if let Some(c) = row.beyond {
            problems.push(Problem::at_row(
                &located,
                excel_row,
                Some(&column_letters(c as usize)),
                format!("a value beyond the {width} columns of the header"),
            ));
        }
        for (k, (c, _)) in row.cells.iter().enumerate() {
            at[*c as usize] = Some(k);
        }
        {
            let (cols, idx, builders) = batcher.columns();
            for ((col, src), builder) in cols.iter().zip(idx).zip(builders.iter_mut()) {
                let Some(src) = src else {
                    builder.push_null();
                    continue;
                };
                let result = match at.get(*src).copied().flatten().map(|k| &row.cells[k].1) {
                    None => {
                        builder.push_null();
                        Ok(())
                    }
                    Some(Cell::Int(i)) => builder.push_i64(*i, col.subject),
                    Some(Cell::Float(f)) => builder.push_f64(*f, col.subject),
                    Some(Cell::Text(s)) => builder.push_text(s, col.subject),
                    Some(Cell::Shared(s)) => builder.push_text(s, col.subject),
                    Some(Cell::Bool(b)) => builder.push_bool(*b),
                    Some(Cell::DateTime(dt)) => builder.push_date_time(*dt),
                    Some(Cell::Error(e)) => {
                        builder.push_null();
                        Err(format!("the cell holds an Excel error ({e})"))
                    }
                };
                if let Err(msg) = result {
                    let name = format!("{} ({})", col.name, column_letters(*src));
                    problems.push(Problem::at_row(&located, excel_row, Some(&name), msg));
                }
            }
        }
        for (c, _) in &row.cells {
            at[*c as usize] = None;
        }
        let mut stop = false;
        for p in problems {
            stop |= batcher.problem(p);
        }
        batcher.end_row()?;
        Ok(stop)
    };
    let mut stopped = false;
    for row in &sample {
        if process(row, &mut batcher)? {
            stopped = true;
            break;
        }
    }
    drop(sample);
    if !eof && !stopped {
        while let Some(row) = rows.next().map_err(bad)? {
            if process(&row, &mut batcher)? {
                break;
            }
        }
    }
    drop(rows);
    let (sha256, bytes) = ctx.hash_file()?;
    let mut report = batcher.finish(sha256, bytes)?;
    report.sheet = Some(sheet);
    report.crs = crs;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn letters() {
        assert_eq!(super::column_letters(0), "A");
        assert_eq!(super::column_letters(25), "Z");
        assert_eq!(super::column_letters(26), "AA");
        assert_eq!(super::column_letters(27), "AB");
    }
}
