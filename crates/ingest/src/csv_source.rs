//! Delimited text: delimiter, encoding and BOM detection; Norwegian values; located errors.

use std::io::{BufReader, Read};

use crate::columns::{self, ColumnType, Inference};
use crate::reader::{Batcher, Context};
use crate::{BatchSink, IngestError, Problem, SourceReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf8Bom,
    Windows1252,
}

impl Encoding {
    fn label(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with BOM",
            Encoding::Windows1252 => "windows-1252",
        }
    }

    fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            return Encoding::Utf8Bom;
        }
        match std::str::from_utf8(head) {
            Ok(_) => Encoding::Utf8,
            // A multi-byte character cut off at the end of the head is still UTF-8.
            Err(e) if e.error_len().is_none() => Encoding::Utf8,
            Err(_) => Encoding::Windows1252,
        }
    }
}

/// Picks the delimiter that splits the first lines into the same, largest number of fields.
fn detect_delimiter(head: &[u8]) -> u8 {
    let text = String::from_utf8_lossy(head);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(20).collect();
    let complete = if lines.len() > 1 { &lines[..lines.len() - 1] } else { &lines[..] };
    let mut best = (b',', 0usize, false);
    for d in [b';', b',', b'\t', b'|'] {
        let counts: Vec<usize> = complete.iter().map(|l| count_outside_quotes(l, d)).collect();
        let first = counts.first().copied().unwrap_or(0);
        let consistent = first > 0 && counts.iter().all(|c| *c == first);
        if (consistent, first) > (best.2, best.1) {
            best = (d, first, consistent);
        }
    }
    best.0
}

fn count_outside_quotes(line: &str, d: u8) -> usize {
    let mut in_quotes = false;
    let mut n = 0;
    for b in line.bytes() {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == d && !in_quotes {
            n += 1;
        }
    }
    n
}

fn decode<'a>(
    encoding: Encoding,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, str>, ()> {
    match encoding {
        Encoding::Utf8 | Encoding::Utf8Bom => std::str::from_utf8(bytes).map(Into::into).map_err(|_| ()),
        Encoding::Windows1252 => Ok(encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0),
    }
}

pub(crate) fn read(ctx: &Context, sink: &mut dyn BatchSink) -> Result<SourceReport, IngestError> {
    let head = crate::reader::read_head(&ctx.path, 1 << 20).map_err(|e| ctx.io(e))?;
    let encoding = Encoding::detect(&head);
    let body_head = if encoding == Encoding::Utf8Bom { &head[3..] } else { &head[..] };
    let delimiter = detect_delimiter(body_head);
    let file = ctx.file_name.as_str();

    let mut hashing = ctx.open()?;
    if encoding == Encoding::Utf8Bom {
        let mut bom = [0u8; 3];
        hashing.read_exact(&mut bom).map_err(|e| ctx.io(e))?;
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(BufReader::with_capacity(1 << 20, &mut hashing));

    let mut record = csv::ByteRecord::new();
    let csv_error = |e: csv::Error| -> IngestError {
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        match e.kind() {
            csv::ErrorKind::Io(_) => IngestError::Io { file: file.to_string(), source: std::io::Error::other(e.to_string()) },
            _ => IngestError::Invalid(vec![Problem::at_line(file, line, None, format!("cannot parse CSV: {e}"))]),
        }
    };
    if !reader.read_byte_record(&mut record).map_err(csv_error)? {
        return Err(IngestError::Invalid(vec![Problem::file(file, "the file is empty")]));
    }
    let mut names = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        match decode(encoding, field) {
            Ok(name) => names.push(name.trim().to_string()),
            Err(()) => {
                return Err(IngestError::Invalid(vec![Problem::at_line(
                    file,
                    1,
                    None,
                    format!("header field {} is not valid {}", i + 1, encoding.label()),
                )]));
            }
        }
    }
    let width = names.len();

    // Sample: buffer the first rows, infer types, then replay them and stream the rest.
    let mut sample: Vec<csv::ByteRecord> = Vec::new();
    let mut inference = vec![Inference::default(); width];
    let mut eof = false;
    while sample.len() < ctx.sample_rows() {
        let mut r = csv::ByteRecord::new();
        if !reader.read_byte_record(&mut r).map_err(csv_error)? {
            eof = true;
            break;
        }
        if is_blank(&r) {
            continue;
        }
        for (inf, field) in inference.iter_mut().zip(r.iter()) {
            if let Ok(v) = decode(encoding, field) {
                inf.observe_text(&v);
            }
        }
        sample.push(r);
    }
    let inferred: Vec<ColumnType> = inference.iter().map(Inference::decide).collect();
    let plan = columns::plan(file, &names, &inferred, &ctx.options).map_err(IngestError::Invalid)?;
    let mut batcher = Batcher::new(ctx, plan, sink)?;

    let process = |r: &csv::ByteRecord, batcher: &mut Batcher| -> Result<bool, IngestError> {
        let line = r.position().map(|p| p.line()).unwrap_or(0);
        if r.len() != width {
            let stop = batcher.problem(Problem::at_line(
                file,
                line,
                None,
                format!("expected {width} fields as in the header, found {}", r.len()),
            ));
            return Ok(stop);
        }
        let mut stop = false;
        let mut row_problems = Vec::new();
        {
            let (cols, idx, builders) = batcher.columns();
            for ((col, src), builder) in cols.iter().zip(idx).zip(builders.iter_mut()) {
                let Some(src) = src else {
                    builder.push_null();
                    continue;
                };
                let raw = &r[*src];
                match decode(encoding, raw) {
                    Ok(text) => {
                        if let Err(msg) = builder.push_text(&text, col.subject) {
                            row_problems.push(Problem::at_line(file, line, Some(&col.name), msg));
                        }
                    }
                    Err(()) => {
                        builder.push_null();
                        row_problems.push(Problem::at_line(
                            file,
                            line,
                            Some(&col.name),
                            "not valid UTF-8 (the start of the file is UTF-8; is the rest in another encoding?)",
                        ));
                    }
                }
            }
        }
        for p in row_problems {
            stop |= batcher.problem(p);
        }
        batcher.end_row()?;
        Ok(stop)
    };

    let mut stopped = false;
    for r in &sample {
        if process(r, &mut batcher)? {
            stopped = true;
            break;
        }
    }
    drop(sample);
    if !eof && !stopped {
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let err = csv_error(e);
                    match err {
                        IngestError::Invalid(ps) => {
                            for p in ps {
                                batcher.problem(p);
                            }
                            break;
                        }
                        other => return Err(other),
                    }
                }
            }
            if is_blank(&record) {
                continue;
            }
            if process(&record, &mut batcher)? {
                break;
            }
        }
    }
    drop(reader);
    hashing.drain().map_err(|e| ctx.io(e))?;
    let (sha256, bytes) = hashing.finish();
    let mut report = batcher.finish(sha256, bytes)?;
    report.encoding = Some(encoding.label().to_string());
    report.delimiter = Some(match delimiter {
        b'\t' => "tab".to_string(),
        d => (d as char).to_string(),
    });
    Ok(report)
}

/// An empty line (one empty field) is skipped, as spreadsheets often leave one at the end.
fn is_blank(r: &csv::ByteRecord) -> bool {
    r.len() == 1 && r[0].iter().all(|b| b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(detect_delimiter(b"a;b;c\n1;2,5;3\n"), b';');
        assert_eq!(detect_delimiter(b"a,b,c\n1,\"2,5\",3\n"), b',');
        assert_eq!(detect_delimiter(b"a\tb\n1\t2\n"), b'\t');
        assert_eq!(detect_delimiter(b"a|b\n1|2\n"), b'|');
        // Decimal commas in a semicolon file do not fool it.
        assert_eq!(detect_delimiter(b"navn;belop\nA;1,5\nB;2,25\n"), b';');
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::detect(b"\xEF\xBB\xBFa;b"), Encoding::Utf8Bom);
        assert_eq!(Encoding::detect("Bjørn;Åse".as_bytes()), Encoding::Utf8);
        assert_eq!(Encoding::detect(b"Bj\xF8rn;\xC5se"), Encoding::Windows1252);
        // A character cut at the end of the head.
        assert_eq!(Encoding::detect(&"abcø".as_bytes()[..4]), Encoding::Utf8);
    }
}
