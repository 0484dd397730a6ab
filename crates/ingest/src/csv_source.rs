//! Delimited text: delimiter, encoding and BOM detection; Norwegian values; located errors.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use crate::chunker::{self, Chunk, ChunkError, Chunker};
use crate::columns::{self, Builder, ColumnType, Inference};
use crate::limits::{self, MAX_COLUMNS, SAMPLE_BYTES};
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

    /// The encoding of a file that starts with `head`.
    ///
    /// A file that is valid UTF-8 except for a few bytes is UTF-8, and those bytes are errors at
    /// their lines: reading it as Windows-1252 would turn every `æøå` into `Ã¦Ã¸Ã¥` without a
    /// word. Windows-1252 is chosen only when the head holds no valid multi-byte UTF-8 character,
    /// or [`CLEARLY_MORE`] times more invalid sequences than valid ones (a Windows-1252 text
    /// almost never holds a valid UTF-8 sequence; `Ã¦` written in it does).
    fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            return Encoding::Utf8Bom;
        }
        let (valid, invalid) = utf8_census(head);
        if invalid > 0 && (valid == 0 || invalid > CLEARLY_MORE * valid) { Encoding::Windows1252 } else { Encoding::Utf8 }
    }
}

/// How many times more invalid than valid multi-byte UTF-8 sequences make a head Windows-1252.
const CLEARLY_MORE: usize = 4;

/// The valid multi-byte UTF-8 characters and the invalid sequences in `bytes`. A character cut
/// off at the end (the end of a head) is neither.
fn utf8_census(mut bytes: &[u8]) -> (usize, usize) {
    let multi_byte = |s: &[u8]| s.iter().filter(|b| **b >= 0xC0).count();
    let (mut valid, mut invalid) = (0, 0);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return (valid + multi_byte(bytes), invalid),
            Err(e) => {
                valid += multi_byte(&bytes[..e.valid_up_to()]);
                let Some(len) = e.error_len() else { return (valid, invalid) };
                invalid += 1;
                bytes = &bytes[e.valid_up_to() + len..];
            }
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

/// Chunks handed to the parsers: about this many bytes each (and at most `batch_rows` rows).
const CHUNK_BYTES: usize = 4 << 20;

/// What every parser thread needs to know about the file.
struct Shape<'a> {
    file: &'a str,
    encoding: Encoding,
    delimiter: u8,
    width: usize,
    plan: &'a columns::Plan,
}

/// One chunk, parsed: its batch's arrays, its rows and the problems found in it.
struct Parsed {
    seq: u64,
    arrays: Vec<arrow::array::ArrayRef>,
    rows: usize,
    problems: Vec<Problem>,
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
    let mut chunker = Chunker::new(hashing, delimiter);
    let chunk_error = |e: ChunkError| match e {
        ChunkError::Io(e) => ctx.io(e),
        ChunkError::RecordTooLong { line } => IngestError::Invalid(vec![Problem::at_line(
            file,
            line,
            None,
            format!("a record starting here is longer than {} MiB; is a quote not closed?", chunker::MAX_RECORD_BYTES >> 20),
        )]),
        ChunkError::TooManyFields { line, fields, max } => IngestError::Invalid(vec![Problem::at_line(
            file,
            line,
            None,
            format!("expected {max} fields as in the header, found {fields}"),
        )]),
    };

    // The header: the first record that is not blank.
    let names = loop {
        let Some(chunk) = chunker.next_chunk(1, CHUNK_BYTES).map_err(chunk_error)? else {
            return Err(IngestError::Invalid(vec![Problem::file(file, "the file is empty")]));
        };
        // Counted before the header is split: a header of 200,000 fields must not become
        // 200,000 columns of builders.
        let (fields, extra) = chunker::count_fields(&chunk.bytes, delimiter, MAX_COLUMNS);
        if fields > MAX_COLUMNS {
            let extra = &chunk.bytes[extra.unwrap_or(0)..];
            let (_, end) = chunker::count_fields(extra, delimiter, 1);
            let name = String::from_utf8_lossy(&extra[..end.map_or(extra.len(), |e| e - 1)]);
            let name = name.trim().trim_matches('"');
            return Err(IngestError::Invalid(vec![limits::column_limit(file, Some(chunk.first_line), name, fields)]));
        }
        let mut found = None;
        for_each_record(encoding, delimiter, &chunk, |_, r| {
            found = Some(r.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
        });
        if let Some(fields) = found {
            let mut names = Vec::with_capacity(fields.len());
            for (i, field) in fields.iter().enumerate() {
                match std::str::from_utf8(field) {
                    Ok(name) => names.push(name.trim().to_string()),
                    Err(_) => {
                        return Err(IngestError::Invalid(vec![Problem::at_line(
                            file,
                            chunk.first_line,
                            None,
                            format!("header field {} is not valid {}", i + 1, encoding.label()),
                        )]));
                    }
                }
            }
            break names;
        }
    };
    let width = names.len();
    chunker.set_max_fields(width);
    let batch_rows = ctx.batch_rows();

    // Sample: read chunks until they hold enough rows, infer the types from them, then parse
    // them again with everything else.
    let first_seq = chunker.next_seq();
    let mut sample: Vec<Chunk> = Vec::new();
    let mut inference = vec![Inference::default(); width];
    let mut sampled = 0;
    let mut sample_bytes = 0;
    while sampled < ctx.sample_rows() && sample_bytes < SAMPLE_BYTES {
        let Some(chunk) = chunker.next_chunk(batch_rows, CHUNK_BYTES).map_err(chunk_error)? else {
            break;
        };
        sample_bytes += chunk.bytes.len();
        for_each_record(encoding, delimiter, &chunk, |_, r| {
            if sampled >= ctx.sample_rows() || is_blank(r) {
                return;
            }
            sampled += 1;
            for (inf, field) in inference.iter_mut().zip(r.iter()) {
                if let Ok(v) = std::str::from_utf8(field) {
                    inf.observe_text(v);
                }
            }
        });
        sample.push(chunk);
    }
    let inferred: Vec<ColumnType> = inference.iter().zip(&names).map(|(i, n)| i.decide_for(n)).collect();
    let mut plan = columns::plan(file, &names, &inferred, &ctx.options).map_err(IngestError::Invalid)?;
    let crs = columns::text_geometry_crs(file, &mut plan, &inference, &ctx.options).map_err(IngestError::Invalid)?;
    let mut batcher = Batcher::new(ctx, plan, sink)?;
    let plan = batcher.plan.clone();
    let shape = Shape { file, encoding, delimiter, width, plan: &plan };

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let stop = AtomicBool::new(false);
    let (chunker, sink_result) = std::thread::scope(|scope| {
        let (work_tx, work_rx) = mpsc::sync_channel::<Chunk>(workers);
        let (done_tx, done_rx) = mpsc::sync_channel::<Parsed>(workers);
        let work_rx = Arc::new(Mutex::new(work_rx));
        let stop = &stop;
        let producer = scope.spawn(move || -> Result<Chunker<_>, ChunkError> {
            for chunk in sample {
                if work_tx.send(chunk).is_err() {
                    return Ok(chunker);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                match chunker.next_chunk(batch_rows, CHUNK_BYTES)? {
                    Some(chunk) => {
                        if work_tx.send(chunk).is_err() {
                            break;
                        }
                    }
                    None => break,
                }
            }
            Ok(chunker)
        });
        for _ in 0..workers {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            let shape = &shape;
            scope.spawn(move || {
                loop {
                    let next = work_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok(chunk) = next else { break };
                    if stop.load(Ordering::Relaxed) || done_tx.send(parse_chunk(shape, &chunk)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(work_rx);

        // Hand the batches on in file order, so rows keep their order and problems their lines.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = first_seq;
        let mut sink_result = Ok(());
        'receive: for parsed in done_rx.iter() {
            waiting.insert(parsed.seq, parsed);
            while let Some(p) = waiting.remove(&next) {
                next += 1;
                let mut full = false;
                for problem in p.problems {
                    full |= batcher.problem(problem);
                }
                if let Err(e) = batcher.push_arrays(p.arrays, p.rows) {
                    sink_result = Err(e);
                }
                if full || sink_result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                    break 'receive;
                }
            }
        }
        drop(done_rx);
        (producer.join().expect("the chunker thread panicked"), sink_result)
    });
    sink_result?;
    let mut hashing = chunker.map_err(chunk_error)?.into_inner();
    hashing.drain().map_err(|e| ctx.io(e))?;
    let (sha256, bytes) = hashing.finish();
    let mut report = batcher.finish(sha256, bytes)?;
    report.encoding = Some(encoding.label().to_string());
    report.crs = crs;
    report.delimiter = Some(match delimiter {
        b'\t' => "tab".to_string(),
        d => (d as char).to_string(),
    });
    Ok(report)
}

/// Calls `f` with the line number and fields of every record in the chunk, decoded to UTF-8
/// when the file is in Windows-1252 (UTF-8 files are checked field by field, to locate errors).
fn for_each_record(encoding: Encoding, delimiter: u8, chunk: &Chunk, mut f: impl FnMut(u64, &csv::ByteRecord)) {
    let text: std::borrow::Cow<'_, [u8]> = match encoding {
        Encoding::Windows1252 => match encoding_rs::WINDOWS_1252.decode_without_bom_handling(&chunk.bytes).0 {
            std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
            std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
        },
        Encoding::Utf8 | Encoding::Utf8Bom => std::borrow::Cow::Borrowed(&chunk.bytes),
    };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(&text[..]);
    let mut record = csv::ByteRecord::new();
    // The line of a record is counted here from its byte offset. After a CRLF the csv crate
    // reports the next record as starting at the `\n` (it ends records at the `\r`), so its own
    // line count is one short per CRLF line, and CRLF is what Excel writes.
    let (mut line, mut counted_to) = (chunk.first_line, 0usize);
    // Reading from memory cannot fail, and `flexible` accepts every record length.
    while reader.read_byte_record(&mut record).unwrap_or(false) {
        let mut start =
            record.position().map_or(counted_to, |p| usize::try_from(p.byte()).unwrap_or(counted_to)).clamp(counted_to, text.len());
        while start < text.len() && matches!(text[start], b'\r' | b'\n') {
            start += 1;
        }
        line += chunker::count_newlines(&text[counted_to..start]);
        counted_to = start;
        f(line, &record);
    }
}

/// Parses one chunk into a batch's worth of arrays.
fn parse_chunk(shape: &Shape<'_>, chunk: &Chunk) -> Parsed {
    let plan = shape.plan;
    let mut builders: Vec<Builder> = plan.columns.iter().map(|c| Builder::for_column(c, 1024)).collect();
    let mut problems = Vec::new();
    let mut rows = 0;
    for_each_record(shape.encoding, shape.delimiter, chunk, |line, r| {
        if is_blank(r) || problems.len() >= crate::MAX_PROBLEMS {
            return;
        }
        rows += 1;
        if r.len() != shape.width {
            problems.push(Problem::at_line(
                shape.file,
                line,
                None,
                format!("expected {} fields as in the header, found {}", shape.width, r.len()),
            ));
            builders.iter_mut().for_each(Builder::push_null);
            return;
        }
        // One UTF-8 check per record; only a record that fails is checked field by field.
        let text = std::str::from_utf8(r.as_slice()).ok();
        for ((col, src), builder) in plan.columns.iter().zip(&plan.source_index).zip(builders.iter_mut()) {
            let Some(src) = *src else {
                builder.push_null();
                continue;
            };
            let field = match text {
                Some(text) => r.range(src).and_then(|range| text.get(range)),
                None => std::str::from_utf8(&r[src]).ok(),
            };
            match field {
                Some(field) => {
                    if let Err(msg) = builder.push_text(field, col.subject) {
                        problems.push(Problem::at_line(shape.file, line, Some(&col.name), msg));
                    }
                }
                None => {
                    builder.push_null();
                    problems.push(Problem::at_line(
                        shape.file,
                        line,
                        Some(&col.name),
                        "not valid UTF-8 (the file is UTF-8; is this line in another encoding?)",
                    ));
                }
            }
        }
    });
    let arrays = builders.iter_mut().map(Builder::finish).collect();
    Parsed { seq: chunk.seq, arrays, rows, problems }
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

    /// A UTF-8 file with a few stray bytes stays UTF-8 (the bytes are errors at their lines),
    /// wherever in the head they are; a Windows-1252 file is still one.
    #[test]
    fn stray_bytes_do_not_make_utf8_windows_1252() {
        let rows = |n: usize| "1;Ærlig Åse Ødegård\n".repeat(n).into_bytes();
        let with_at = |at: usize, stray: &[u8]| {
            let mut head = b"id;navn\n".to_vec();
            head.extend(rows(at));
            head.extend_from_slice(stray);
            head.extend(rows(20_000 - at));
            head
        };
        for stray in [&b"2;\xff\xfe\n"[..], b"2;Bj\xf8rn \xc6r\xf8\n", b"\xff\xfe\xff\xfe\xff\xfe\n"] {
            for at in [0, 1, 10_000, 19_999] {
                assert_eq!(Encoding::detect(&with_at(at, stray)), Encoding::Utf8, "at row {at}");
            }
        }
        // Only a little UTF-8 and a little damage: still UTF-8.
        assert_eq!(Encoding::detect(b"id;navn\n1;\xc3\x85se\n2;Bj\xf8rn\n"), Encoding::Utf8);
        // Genuine Windows-1252: no valid sequence, or one accidental one among many invalid.
        let cp1252 = b"navn;sted\nBj\xf8rn \xc6r\xf8;\xc5sg\xe5rdstrand\n".repeat(1000);
        assert_eq!(Encoding::detect(&cp1252), Encoding::Windows1252);
        let mut accidental = cp1252.clone();
        accidental.extend_from_slice(b"\xc3\xa6;x\n"); // "Ã¦" written in Windows-1252 is valid UTF-8
        assert_eq!(Encoding::detect(&accidental), Encoding::Windows1252);
        // A BOM says UTF-8 whatever follows.
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(&with_at(5, b"\xff\xfe\n"));
        assert_eq!(Encoding::detect(&bom), Encoding::Utf8Bom);
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn records_keep_their_file_line_whatever_the_line_ends() {
        for text in [&b"a;1\r\nb;2\r\nc;x\r\n"[..], b"a;1\nb;2\nc;x\n", b"a;1\rb;2\rc;x", b"a;1\r\n\r\nb;2\r\n\"c\nd\";x\r\ne;y"] {
            let chunk = Chunk { seq: 0, first_line: 2, bytes: text.to_vec() };
            let mut lines = Vec::new();
            for_each_record(Encoding::Utf8, b';', &chunk, |line, _| lines.push(line));
            let expected: &[u64] = if text.len() > 20 { &[2, 4, 5, 7] } else { &[2, 3, 4] };
            assert_eq!(lines, expected, "{}", String::from_utf8_lossy(text).escape_debug());
        }
    }
}
