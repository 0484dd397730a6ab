//! Excel workbooks: a named or the first sheet, streamed cell by cell; Excel dates become dates.

use std::io::BufReader;

use calamine::{DataRef, Reader, Xlsx};

use crate::columns::{self, ColumnType, Inference};
use crate::reader::{Batcher, Context};
use crate::{BatchSink, IngestError, Problem, SourceReport, values};

/// An owned cell value.
#[derive(Debug, Clone)]
enum Cell {
    Empty,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    DateTime(chrono::NaiveDateTime),
    Error(String),
}

impl Cell {
    fn from_ref(d: &DataRef<'_>) -> Self {
        match d {
            DataRef::Empty => Cell::Empty,
            DataRef::Int(i) => Cell::Int(*i),
            DataRef::Float(f) => Cell::Float(*f),
            DataRef::String(s) => Cell::Text(s.clone()),
            DataRef::SharedString(s) => Cell::Text((*s).to_string()),
            DataRef::Bool(b) => Cell::Bool(*b),
            DataRef::DateTime(dt) => match dt.as_datetime() {
                Some(v) if dt.is_datetime() => Cell::DateTime(v),
                _ => Cell::Float(dt.as_f64()),
            },
            DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::Text(s.clone()),
            DataRef::Error(e) => Cell::Error(e.to_string()),
        }
    }

    fn observe(&self, inf: &mut Inference) {
        match self {
            Cell::Empty | Cell::Error(_) => {}
            Cell::Int(_) => inf.observe_typed(ColumnType::Integer),
            Cell::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => inf.observe_typed(ColumnType::Integer),
            Cell::Float(_) => inf.observe_typed(ColumnType::Float),
            Cell::Text(s) => inf.observe_text(s),
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

pub(crate) fn read(ctx: &Context, sink: &mut dyn BatchSink) -> Result<SourceReport, IngestError> {
    let file = ctx.file_name.as_str();
    let handle = std::fs::File::open(&ctx.path).map_err(|e| ctx.io(e))?;
    let mut workbook: Xlsx<_> = Xlsx::new(BufReader::new(handle)).map_err(|e| {
        IngestError::Invalid(vec![Problem::file(
            file,
            format!("not a readable XLSX workbook ({e}); is the file complete?"),
        )])
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
        None => names
            .first()
            .cloned()
            .ok_or_else(|| IngestError::Invalid(vec![Problem::file(file, "the workbook has no sheets")]))?,
    };
    let located = format!("{file} (sheet {sheet})");
    let bad = |e: calamine::XlsxError| {
        IngestError::Invalid(vec![Problem::file(
            &located,
            format!("cannot read the sheet ({e}); is the file complete?"),
        )])
    };
    let mut cells = workbook.worksheet_cells_reader(&sheet).map_err(bad)?;

    // Rows arrive in order; gather each row's cells, then hand the row on.
    let mut current: Option<(u32, Vec<Cell>)> = None;
    let mut finished = false;
    let mut next_row = || -> Result<Option<(u32, Vec<Cell>)>, IngestError> {
        if finished {
            return Ok(None);
        }
        loop {
            match cells.next_cell().map_err(bad)? {
                Some(cell) => {
                    let (r, c) = cell.get_position();
                    let value = Cell::from_ref(cell.get_value());
                    match &mut current {
                        Some((row, vals)) if *row == r => {
                            if vals.len() <= c as usize {
                                vals.resize(c as usize + 1, Cell::Empty);
                            }
                            vals[c as usize] = value;
                        }
                        _ => {
                            let mut vals = vec![Cell::Empty; c as usize + 1];
                            vals[c as usize] = value;
                            if let Some(done) = current.replace((r, vals)) {
                                return Ok(Some(done));
                            }
                        }
                    }
                }
                None => {
                    finished = true;
                    return Ok(current.take());
                }
            }
        }
    };

    let Some((_, header)) = next_row()? else {
        return Err(IngestError::Invalid(vec![Problem::file(&located, "the sheet is empty")]));
    };
    let names: Vec<String> = header
        .iter()
        .map(|c| match c {
            Cell::Text(s) => s.trim().to_string(),
            Cell::Empty => String::new(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    let width = names.len();
    let mut sample = Vec::new();
    let mut inference = vec![Inference::default(); width];
    let mut eof = false;
    while sample.len() < ctx.sample_rows() {
        match next_row()? {
            Some((r, vals)) => {
                for (inf, cell) in inference.iter_mut().zip(&vals) {
                    cell.observe(inf);
                }
                sample.push((r, vals));
            }
            None => {
                eof = true;
                break;
            }
        }
    }
    let inferred: Vec<ColumnType> = inference.iter().map(Inference::decide).collect();
    let plan = columns::plan(&located, &names, &inferred, &ctx.options).map_err(IngestError::Invalid)?;
    let mut batcher = Batcher::new(ctx, plan, sink)?;

    let process = |r: u32, vals: &[Cell], batcher: &mut Batcher| -> Result<bool, IngestError> {
        let excel_row = u64::from(r) + 1;
        let mut problems = Vec::new();
        if vals.len() > width && vals[width..].iter().any(|c| !matches!(c, Cell::Empty)) {
            problems.push(Problem::at_row(
                &located,
                excel_row,
                Some(&column_letters(width)),
                format!("a value beyond the {width} columns of the header"),
            ));
        }
        {
            let (cols, idx, builders) = batcher.columns();
            for ((col, src), builder) in cols.iter().zip(idx).zip(builders.iter_mut()) {
                let Some(src) = src else {
                    builder.push_null();
                    continue;
                };
                let cell = vals.get(*src).unwrap_or(&Cell::Empty);
                let result = match cell {
                    Cell::Empty => {
                        builder.push_null();
                        Ok(())
                    }
                    Cell::Int(i) => builder.push_i64(*i, col.subject),
                    Cell::Float(f) => builder.push_f64(*f, col.subject),
                    Cell::Text(s) => builder.push_text(s, col.subject),
                    Cell::Bool(b) => builder.push_bool(*b),
                    Cell::DateTime(dt) => builder.push_date_time(*dt),
                    Cell::Error(e) => {
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
        let mut stop = false;
        for p in problems {
            stop |= batcher.problem(p);
        }
        batcher.end_row()?;
        Ok(stop)
    };
    let mut stopped = false;
    for (r, vals) in &sample {
        if process(*r, vals, &mut batcher)? {
            stopped = true;
            break;
        }
    }
    drop(sample);
    if !eof && !stopped {
        while let Some((r, vals)) = next_row()? {
            if process(r, &vals, &mut batcher)? {
                break;
            }
        }
    }
    drop(next_row);
    drop(cells);
    let (sha256, bytes) = ctx.hash_file()?;
    let mut report = batcher.finish(sha256, bytes)?;
    report.sheet = Some(sheet);
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
