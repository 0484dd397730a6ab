//! Cuts delimited text into chunks of whole records, so that the records can be parsed in
//! parallel. It follows quoting exactly as `csv_core` does with its defaults (`"` quotes, doubled
//! quotes escape, `\r`, `\n` and `\r\n` end a record), so a cut never falls inside a record.

use std::io::{self, Read};

/// Whole records, with the line number their first byte is on.
pub(crate) struct Chunk {
    /// Position in the file, counting from 0.
    pub seq: u64,
    /// 1-based line number of the chunk's first byte.
    pub first_line: u64,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the end of the quoting or the first of a doubled quote.
    QuoteInQuoted,
    /// After a `\r` that ended a record; a `\n` right after belongs to it.
    AfterCr,
}

/// A record longer than this is refused rather than buffered without bound.
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;

const READ_STEP: usize = 1 << 20;

/// The chunker failed: the input could not be read, a record never ends, or a long record has
/// more fields than allowed.
pub(crate) enum ChunkError {
    Io(io::Error),
    /// A record starting on this line is longer than [`MAX_RECORD_BYTES`].
    RecordTooLong {
        line: u64,
    },
    /// A record starting on this line has `fields` fields, more than `max`.
    TooManyFields {
        line: u64,
        fields: usize,
        max: usize,
    },
}

impl From<io::Error> for ChunkError {
    fn from(e: io::Error) -> Self {
        ChunkError::Io(e)
    }
}

/// Reads a stream and hands it out in chunks that start and end on record boundaries.
pub(crate) struct Chunker<R> {
    reader: R,
    delimiter: u8,
    /// Unhanded bytes; always starts at the start of a record.
    buf: Vec<u8>,
    eof: bool,
    line: u64,
    seq: u64,
    max_record: usize,
    /// A record longer than [`crate::limits::FIELD_COUNT_FROM`] with more fields than this is
    /// refused before it is split into fields (whose bounds would take 8 bytes per delimiter).
    max_fields: usize,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, delimiter: u8) -> Self {
        Self {
            reader,
            delimiter,
            buf: Vec::new(),
            eof: false,
            line: 1,
            seq: 0,
            max_record: MAX_RECORD_BYTES,
            // The header is counted by the caller, with a message of its own.
            max_fields: usize::MAX,
        }
    }

    /// Long records with more fields than `max` are refused from now on.
    pub fn set_max_fields(&mut self, max: usize) {
        self.max_fields = max;
    }

    /// Refuses the record `buf[start..end]` if it is long and has too many fields.
    fn check_fields(&self, start: usize, end: usize) -> Result<(), ChunkError> {
        if end - start <= crate::limits::FIELD_COUNT_FROM {
            return Ok(());
        }
        let (fields, _) = count_fields(&self.buf[start..end], self.delimiter, usize::MAX);
        if fields > self.max_fields {
            let line = self.line + count_newlines(&self.buf[..start]);
            return Err(ChunkError::TooManyFields { line, fields, max: self.max_fields });
        }
        Ok(())
    }

    /// The sequence number the next chunk will get.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// The underlying reader, once the chunker is done with it.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// The next chunk: at most `max_records` records, and no more records once `max_bytes` is
    /// reached. `None` at the end of the input.
    pub fn next_chunk(&mut self, max_records: usize, max_bytes: usize) -> Result<Option<Chunk>, ChunkError> {
        let mut state = State::FieldStart;
        let mut i = 0;
        let mut records = 0;
        let mut cut = 0;
        let delimiter = self.delimiter;
        'fill: loop {
            let buf = &self.buf[..];
            while i < buf.len() {
                let mut ended = false;
                match state {
                    State::Quoted => match memchr::memchr(b'"', &buf[i..]) {
                        Some(k) => {
                            i += k + 1;
                            state = State::QuoteInQuoted;
                        }
                        None => i = buf.len(),
                    },
                    State::QuoteInQuoted => {
                        let b = buf[i];
                        i += 1;
                        state = match b {
                            b'"' => State::Quoted,
                            b'\n' => {
                                ended = true;
                                State::FieldStart
                            }
                            b'\r' => State::AfterCr,
                            _ if b == delimiter => State::FieldStart,
                            _ => State::Unquoted,
                        };
                    }
                    State::AfterCr => {
                        // A `\n` right after belongs to the record; anything else starts the next.
                        if buf[i] == b'\n' {
                            i += 1;
                        }
                        ended = true;
                        state = State::FieldStart;
                    }
                    State::FieldStart if buf[i] == b'"' => {
                        i += 1;
                        state = State::Quoted;
                    }
                    State::FieldStart | State::Unquoted => {
                        // Jump to the next byte that can matter. A quote there opens quoting only
                        // at the start of a field.
                        let from = i;
                        match memchr::memchr3(b'\n', b'\r', b'"', &buf[i..]) {
                            Some(k) => {
                                let p = i + k;
                                i = p + 1;
                                state = match buf[p] {
                                    b'\n' => {
                                        ended = true;
                                        State::FieldStart
                                    }
                                    b'\r' => State::AfterCr,
                                    _ if p > from && buf[p - 1] == delimiter => State::Quoted,
                                    _ => State::Unquoted,
                                };
                            }
                            None => {
                                i = buf.len();
                                state = if buf[i - 1] == delimiter { State::FieldStart } else { State::Unquoted };
                            }
                        }
                    }
                }
                if ended {
                    self.check_fields(cut, i)?;
                    cut = i;
                    records += 1;
                    if records >= max_records || cut >= max_bytes {
                        break 'fill;
                    }
                }
            }
            if self.eof {
                self.check_fields(cut, self.buf.len())?;
                cut = self.buf.len();
                break;
            }
            if i - cut > self.max_record {
                let line = self.line + count_newlines(&self.buf[..cut]);
                return Err(ChunkError::RecordTooLong { line });
            }
            self.fill(max_bytes)?;
        }
        if cut == 0 {
            return Ok(None);
        }
        let mut rest = Vec::with_capacity(Self::capacity(max_bytes));
        rest.extend_from_slice(&self.buf[cut..]);
        self.buf.truncate(cut);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let chunk = Chunk { seq: self.seq, first_line: self.line, bytes };
        self.seq += 1;
        self.line += count_newlines(&chunk.bytes);
        Ok(Some(chunk))
    }

    /// A buffer size that holds a chunk of `max_bytes` without growing.
    fn capacity(max_bytes: usize) -> usize {
        max_bytes.min(MAX_RECORD_BYTES).saturating_add(2 * READ_STEP)
    }

    fn fill(&mut self, max_bytes: usize) -> io::Result<()> {
        let len = self.buf.len();
        if self.buf.capacity() < len + READ_STEP {
            self.buf.reserve(Self::capacity(max_bytes).max(len + READ_STEP) - len);
        }
        self.buf.resize(len + READ_STEP, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        self.eof = n == 0;
        Ok(())
    }
}

/// The fields of the record at the start of `bytes` (quoted as `csv_core` quotes), and the offset
/// where field `nth` (0-based) starts, if it does. Stops at the record's end.
pub(crate) fn count_fields(bytes: &[u8], delimiter: u8, nth: usize) -> (usize, Option<usize>) {
    let mut state = State::FieldStart;
    let mut fields = 1;
    let mut start = (nth == 0).then_some(0);
    for (i, &b) in bytes.iter().enumerate() {
        let next_field = match state {
            State::FieldStart if b == b'"' => {
                state = State::Quoted;
                false
            }
            State::Quoted => {
                if b == b'"' {
                    state = State::QuoteInQuoted;
                }
                false
            }
            State::QuoteInQuoted if b == b'"' => {
                state = State::Quoted;
                false
            }
            _ if b == b'\n' || b == b'\r' => break,
            _ if b == delimiter => true,
            _ => {
                state = State::Unquoted;
                false
            }
        };
        if next_field {
            state = State::FieldStart;
            if fields == nth {
                start = Some(i + 1);
            }
            fields += 1;
        }
    }
    (fields, start)
}

/// Line ends in `bytes`: `\n`, `\r\n` and a lone `\r` each end one line.
pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    let lf = memchr::memchr_iter(b'\n', bytes).count();
    let lone_cr = memchr::memchr_iter(b'\r', bytes).filter(|&i| bytes.get(i + 1) != Some(&b'\n')).count();
    (lf + lone_cr) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &str, max_records: usize, max_bytes: usize) -> Vec<(u64, String)> {
        // A tiny reader exercises records that span reads.
        let reader = io::BufReader::with_capacity(3, input.as_bytes());
        let mut c = Chunker::new(reader, b';');
        let mut out = Vec::new();
        while let Some(chunk) = c.next_chunk(max_records, max_bytes).ok().flatten() {
            out.push((chunk.first_line, String::from_utf8(chunk.bytes).unwrap()));
        }
        out
    }

    #[test]
    fn cuts_only_between_records() {
        let input = "a;b\n1;\"x\ny\"\n2;\"say \"\"hi\"\"\n!\"\n3;z";
        let got = chunks(input, 1, usize::MAX);
        assert_eq!(
            got,
            vec![
                (1, "a;b\n".to_string()),
                (2, "1;\"x\ny\"\n".to_string()),
                (4, "2;\"say \"\"hi\"\"\n!\"\n".to_string()),
                (6, "3;z".to_string()),
            ]
        );
        assert_eq!(chunks(input, 100, usize::MAX), vec![(1, input.to_string())]);
        // A byte budget cuts after the record that reaches it.
        assert_eq!(chunks(input, 100, 5).len(), 3);
    }

    #[test]
    fn an_unclosed_quote_is_refused_not_buffered() {
        let input = format!("a;b\n1;2\n3;\"{}\n4;5\n", "x\n".repeat(3 << 20));
        let mut c = Chunker::new(input.as_bytes(), b';');
        c.max_record = 1 << 20;
        assert!(c.next_chunk(1, usize::MAX).is_ok());
        assert!(c.next_chunk(1, usize::MAX).is_ok());
        match c.next_chunk(1, usize::MAX) {
            Err(ChunkError::RecordTooLong { line }) => assert_eq!(line, 3),
            _ => panic!("a record that never ends must be refused"),
        }
    }

    #[test]
    fn line_endings() {
        assert_eq!(chunks("a\r\nb\r\n", 1, usize::MAX), vec![(1, "a\r\n".into()), (2, "b\r\n".into())]);
        // A lone CR ends a line too (old Mac files), as it ends a record.
        assert_eq!(chunks("a\rb\rc", 1, usize::MAX), vec![(1, "a\r".into()), (2, "b\r".into()), (3, "c".into())]);
        // A quote in the middle of an unquoted field is a plain character, as in csv_core.
        assert_eq!(chunks("a\"b;c\nd", 1, usize::MAX), vec![(1, "a\"b;c\n".into()), (2, "d".into())]);
        // A quoted field followed by more text goes on unquoted.
        assert_eq!(chunks("\"a\"b\nc", 1, usize::MAX), vec![(1, "\"a\"b\n".into()), (2, "c".into())]);
        assert!(chunks("", 1, usize::MAX).is_empty());
    }

    #[test]
    fn fields_are_counted_as_csv_splits_them() {
        for input in [&b"a;b;c\n"[..], b"a;\"b;c\";d", b"\"a\"\"b;c\";d;\r\n", b";;", b"", b"x\"y;z\n1;2"] {
            let (n, _) = count_fields(input, b';', usize::MAX);
            assert_eq!(n, records(input).first().map_or(1, Vec::len), "{}", String::from_utf8_lossy(input));
        }
        assert_eq!(count_fields(b"a;\"b;c\";dd;e", b';', 2), (4, Some(8)));
        assert_eq!(count_fields(b"a;b", b';', 5), (2, None));
    }

    #[test]
    fn a_long_record_with_too_many_fields_is_refused_before_it_is_split() {
        let long = format!("a;b\n1;2\n{}x\n3;4\n", ";".repeat(crate::limits::FIELD_COUNT_FROM + 1));
        let mut c = Chunker::new(long.as_bytes(), b';');
        c.set_max_fields(2);
        assert!(c.next_chunk(1, usize::MAX).is_ok());
        assert!(c.next_chunk(1, usize::MAX).is_ok());
        match c.next_chunk(1, usize::MAX) {
            Err(ChunkError::TooManyFields { line: 3, fields, max: 2 }) => {
                assert_eq!(fields, crate::limits::FIELD_COUNT_FROM + 2);
            }
            _ => panic!("a long record with too many fields must be refused"),
        }
        // A long record of two fields (a long quoted value with delimiters in it) is fine.
        let quoted = format!("a;b\n1;\"{}\"\n", ";".repeat(crate::limits::FIELD_COUNT_FROM + 1));
        let mut c = Chunker::new(quoted.as_bytes(), b';');
        c.set_max_fields(2);
        assert!(c.next_chunk(1, usize::MAX).is_ok());
        assert!(matches!(c.next_chunk(1, usize::MAX), Ok(Some(_))));
    }

    fn records(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut r = csv::ReaderBuilder::new().delimiter(b';').has_headers(false).flexible(true).from_reader(bytes);
        r.byte_records().map(|rec| rec.unwrap().iter().map(<[u8]>::to_vec).collect()).collect()
    }

    #[test]
    fn chunks_parse_to_the_same_records_as_the_whole() {
        // Random text over the bytes that matter, with a small deterministic generator.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = b"ab;;\"\"\n\r ";
        for _ in 0..2000 {
            let len = (seed % 60) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let whole = records(&input);
            for max_records in [1, 2, 5] {
                let mut c = Chunker::new(io::BufReader::with_capacity(4, &input[..]), b';');
                let mut pieces = Vec::new();
                let mut offset = 0;
                while let Some(chunk) = c.next_chunk(max_records, usize::MAX).ok().flatten() {
                    assert_eq!(chunk.first_line, 1 + count_newlines(&input[..offset]));
                    offset += chunk.bytes.len();
                    pieces.extend(records(&chunk.bytes));
                }
                assert_eq!(offset, input.len());
                assert_eq!(pieces, whole, "{:?} in chunks of {max_records}", String::from_utf8_lossy(&input));
            }
        }
    }
}
