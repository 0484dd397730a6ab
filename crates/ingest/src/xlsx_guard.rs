//! Bounds what calamine would read from a workbook, before it opens it.
//!
//! calamine reads some parts of a workbook whole when it opens it — the shared strings (with
//! room reserved for as many strings as the part *declares*), styles, theme, the workbook and the
//! relationships — and streams the sheet's XML, one token at a time. A zip entry of a few
//! kilobytes can unpack to gigabytes. So every entry is unpacked here once, through a counter and
//! a small XML scanner, and the workbook is refused when
//!
//! - a part that calamine reads whole unpacks to more than [`MAX_PART_BYTES`] (the shared strings:
//!   [`MAX_SHARED_STRINGS_BYTES`]) — counted while unpacking, so a zip header that lies about the
//!   size does not help;
//! - the shared strings declare more strings (`uniqueCount`) than they hold;
//! - any part holds a token (text between tags, or a tag) longer than [`MAX_XML_TOKEN_BYTES`],
//!   or a document type declaration;
//! - a cell, row or dimension reference lies beyond Excel's last column (XFD) or row (1,048,576).
//!
//! Which parts calamine reads whole is decided as calamine decides it: from the package
//! relationships' `officeDocument` target.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::Problem;
use crate::limits::{MAX_PART_BYTES, MAX_SHARED_STRINGS_BYTES, MAX_XML_TOKEN_BYTES, short};

/// Excel's last column (XFD) and row.
const EXCEL_COLUMNS: u64 = 16_384;
const EXCEL_ROWS: u64 = 1_048_576;

/// Strings the shared strings part may declare beyond those it holds.
const DECLARED_SLACK: u64 = 65_536;

/// Checks the workbook at `path`. A file that is not a readable zip archive passes: calamine
/// then says why it cannot read it.
pub(crate) fn check(path: &Path, file: &str) -> Result<(), Problem> {
    let Ok(handle) = File::open(path) else { return Ok(()) };
    let Ok(mut zip) = zip::ZipArchive::new(BufReader::new(handle)) else { return Ok(()) };

    // The package relationships name the workbook; calamine looks for the parts it reads whole
    // beside it. (Every `officeDocument` target of every copy of the relationships is taken, so
    // that whichever calamine picks is bounded.)
    let mut targets = Vec::new();
    for i in 0..zip.len() {
        let Ok(entry) = zip.by_index(i) else { continue };
        let name = entry_name(&entry);
        if normal(&name) != "_rels/.rels" {
            continue;
        }
        let part = format!("{file} ({name})");
        let mut on_tag = |tag: &Tag<'_>| {
            if tag.local_name() == b"Relationship" && tag.attr(b"Type").is_some_and(|t| t.ends_with(b"/relationships/officeDocument")) {
                targets.push(tag.attr(b"Target").map(|t| decode_entities(&t)).unwrap_or_default());
            }
            Ok(())
        };
        scan(entry, MAX_PART_BYTES, &mut on_tag).map_err(|e| e.problem(&part))?;
    }
    if targets.is_empty() {
        targets.push("xl/workbook.xml".to_string());
    }
    let mut shared_strings = Vec::new();
    let mut whole = vec![normal("_rels/.rels")];
    for target in &targets {
        let (dir, name) = match target.rfind('/') {
            Some(i) => target.split_at(i + 1),
            None => ("", target.as_str()),
        };
        let dir = dir.strip_prefix('/').unwrap_or(dir);
        let name = if name.is_empty() { "workbook.xml" } else { name };
        shared_strings.push(normal(&format!("{dir}sharedStrings.xml")));
        for p in [format!("{dir}{name}"), format!("{dir}_rels/{name}.rels"), format!("{dir}styles.xml"), format!("{dir}theme/theme1.xml")] {
            whole.push(normal(&p));
        }
    }

    for i in 0..zip.len() {
        // An entry that cannot be opened (an unsupported method, encryption) is refused by
        // calamine if it needs it.
        let Ok(entry) = zip.by_index(i) else { continue };
        if entry.is_dir() {
            continue;
        }
        let name = entry_name(&entry);
        let normal_name = normal(&name);
        let part = format!("{file} ({})", short(&name));
        if shared_strings.contains(&normal_name) {
            let (mut declared, mut held) = (0u64, 0u64);
            let mut on_tag = |tag: &Tag<'_>| {
                match tag.local_name() {
                    b"sst" => {
                        declared = tag
                            .attr(b"uniqueCount")
                            .and_then(|v| std::str::from_utf8(&v).ok().and_then(|v| v.trim().parse().ok()))
                            .unwrap_or(0);
                    }
                    b"si" => held += 1,
                    _ => {}
                }
                Ok(())
            };
            scan(entry, MAX_SHARED_STRINGS_BYTES, &mut on_tag).map_err(|e| e.problem(&part))?;
            if declared > held + DECLARED_SLACK {
                return Err(Problem::file(&part, format!("the shared strings table declares {declared} strings but holds {held}")));
            }
        } else if whole.contains(&normal_name) {
            scan(entry, MAX_PART_BYTES, &mut |_| Ok(())).map_err(|e| e.problem(&part))?;
        } else {
            // Perhaps the sheet: streamed by calamine, so no bound on its size, but on every
            // token and reference in it. An entry that cannot be unpacked is no sheet calamine
            // could read either.
            let mut row = 0u64;
            let mut on_tag = |tag: &Tag<'_>| check_references(tag, &mut row);
            match scan(entry, u64::MAX, &mut on_tag) {
                Ok(()) | Err(ScanError::Io(_)) => {}
                Err(ScanError::LongToken) if row > 0 => {
                    return Err(Problem::at_row(&part, row, None, ScanError::LongToken.problem(&part).message));
                }
                Err(e) => return Err(e.problem(&part)),
            }
        }
    }
    Ok(())
}

/// A zip entry's name (empty if it cannot be decoded).
fn entry_name<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> String {
    entry.name().map(|n| n.into_owned()).unwrap_or_default()
}

/// A zip entry's name as calamine's path cache keys it.
fn normal(name: &str) -> String {
    name.replace('\\', "/").to_ascii_lowercase()
}

/// Why a part is refused.
enum ScanError {
    /// It unpacks to more than the bound.
    TooLarge(u64),
    /// A token longer than [`MAX_XML_TOKEN_BYTES`].
    LongToken,
    /// A document type declaration.
    Doctype,
    /// A reference beyond the sheet's bounds, at this row (and column).
    Reference { row: u64, column: Option<String>, message: String },
    /// It cannot be unpacked.
    Io(std::io::Error),
}

impl ScanError {
    fn problem(self, part: &str) -> Problem {
        match self {
            ScanError::TooLarge(limit) => {
                Problem::file(part, format!("the part unpacks to more than {} MiB; at most that is allowed", limit >> 20))
            }
            ScanError::LongToken => {
                Problem::file(part, format!("a value or tag longer than {} MiB; at most that is allowed", MAX_XML_TOKEN_BYTES >> 20))
            }
            ScanError::Doctype => Problem::file(part, "a document type declaration, which a workbook never has"),
            ScanError::Reference { row, column, message } => Problem::at_row(part, row.max(1), column.as_deref(), message),
            ScanError::Io(e) => Problem::file(part, format!("not a readable XLSX workbook ({e}); is the file complete?")),
        }
    }
}

/// One start tag: its bytes between `<` and `>`.
struct Tag<'a>(&'a [u8]);

impl Tag<'_> {
    /// The name without its prefix.
    fn local_name(&self) -> &[u8] {
        let end = self.0.iter().position(|b| b.is_ascii_whitespace() || *b == b'/').unwrap_or(self.0.len());
        let name = &self.0[..end];
        match name.iter().rposition(|b| *b == b':') {
            Some(i) => &name[i + 1..],
            None => name,
        }
    }

    /// The raw value of the attribute `name` (without a prefix), if present.
    fn attr(&self, name: &[u8]) -> Option<Vec<u8>> {
        let bytes = self.0;
        let mut i = bytes.iter().position(|b| b.is_ascii_whitespace())?;
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            if i >= bytes.len() {
                return None;
            }
            let start = i;
            while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let key = &bytes[start..i];
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] != b'=' {
                continue;
            }
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let quote = *bytes.get(i)?;
            if quote != b'"' && quote != b'\'' {
                return None;
            }
            let value_start = i + 1;
            let value_end = value_start + bytes[value_start..].iter().position(|b| *b == quote)?;
            i = value_end + 1;
            let local = match key.iter().rposition(|b| *b == b':') {
                Some(k) if !key.starts_with(b"xmlns") => &key[k + 1..],
                _ => key,
            };
            if local == name {
                return Some(bytes[value_start..value_end].to_vec());
            }
        }
    }
}

/// The five XML entities and character references, decoded (for a relationship's target).
fn decode_entities(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut rest = &text[..];
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks the references of a sheet's `row`, `c` and `dimension` tags, following the row.
fn check_references(tag: &Tag<'_>, row: &mut u64) -> Result<(), ScanError> {
    let text = |r: &[u8]| short(&String::from_utf8_lossy(r));
    match tag.local_name() {
        b"row" => {
            *row = match tag.attr(b"r") {
                Some(r) => match parse_reference(&r) {
                    Some((None, Some(n))) => n,
                    _ => {
                        return Err(ScanError::Reference {
                            row: *row + 1,
                            column: None,
                            message: format!("row number {} is beyond the last row of a worksheet (1048576)", text(&r)),
                        });
                    }
                },
                None => *row + 1,
            };
        }
        b"c" => {
            if let Some(r) = tag.attr(b"r")
                && !matches!(parse_reference(&r), Some((Some(_), Some(_))))
            {
                let letters: Vec<u8> = r.iter().copied().take_while(|b| !b.is_ascii_digit()).collect();
                return Err(ScanError::Reference {
                    row: *row,
                    column: Some(text(&letters)),
                    message: format!("cell {} is beyond the last column (XFD) or row (1048576) of a worksheet", text(&r)),
                });
            }
        }
        b"dimension" => {
            if let Some(r) = tag.attr(b"ref")
                && !r.split(|b| *b == b':').all(|part| parse_reference(part).is_some())
            {
                return Err(ScanError::Reference {
                    row: 1,
                    column: None,
                    message: format!("dimension {} is beyond the last column (XFD) or row (1048576) of a worksheet", text(&r)),
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// A reference like `B7`, `XFD1048576`, `AA` or `12`, with `$` allowed: its 1-based column and
/// row, when within Excel's bounds; `None` when it is malformed or beyond them.
fn parse_reference(r: &[u8]) -> Option<(Option<u64>, Option<u64>)> {
    let r: Vec<u8> = r.iter().copied().filter(|b| *b != b'$').collect();
    let letters = r.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let digits = &r[letters..];
    if letters > 3 || digits.len() > 7 || !digits.iter().all(u8::is_ascii_digit) || r.is_empty() {
        return None;
    }
    let column = (letters > 0).then(|| r[..letters].iter().fold(0u64, |n, b| n * 26 + u64::from(b.to_ascii_uppercase() - b'A') + 1));
    let row = (!digits.is_empty()).then(|| digits.iter().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')));
    if column.is_some_and(|c| c > EXCEL_COLUMNS) || row.is_some_and(|n| n == 0 || n > EXCEL_ROWS) {
        return None;
    }
    Some((column, row))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// Inside `<…>`; the byte is the open quote, if any.
    Tag(u8),
    Comment,
    CData,
    Instruction,
}

/// Unpacks `entry` through an XML scanner: no more than `limit` bytes, no token longer than
/// [`MAX_XML_TOKEN_BYTES`], no document type; `on_tag` sees every start tag.
fn scan(mut entry: impl Read, limit: u64, on_tag: &mut dyn FnMut(&Tag<'_>) -> Result<(), ScanError>) -> Result<(), ScanError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let mut state = State::Text;
    let mut token = 0usize;
    let mut tag: Vec<u8> = Vec::new();
    // The last three bytes of a comment, CDATA section or instruction, to find its end.
    let mut tail = [0u8; 3];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ScanError::Io(e)),
        };
        total += n as u64;
        if total > limit {
            return Err(ScanError::TooLarge(limit));
        }
        let mut i = 0;
        while i < n {
            match state {
                State::Text => match memchr::memchr(b'<', &buf[i..n]) {
                    Some(k) => {
                        token += k;
                        if token > MAX_XML_TOKEN_BYTES {
                            return Err(ScanError::LongToken);
                        }
                        i += k + 1;
                        state = State::Tag(0);
                        token = 1;
                        tag.clear();
                    }
                    None => {
                        token += n - i;
                        if token > MAX_XML_TOKEN_BYTES {
                            return Err(ScanError::LongToken);
                        }
                        i = n;
                    }
                },
                State::Tag(quote) => {
                    let b = buf[i];
                    i += 1;
                    token += 1;
                    if token > MAX_XML_TOKEN_BYTES {
                        return Err(ScanError::LongToken);
                    }
                    if quote != 0 {
                        if b == quote {
                            state = State::Tag(0);
                        }
                        tag.push(b);
                        continue;
                    }
                    if b == b'>' {
                        if !matches!(tag.first(), Some(b'/' | b'!' | b'?') | None) {
                            on_tag(&Tag(&tag))?;
                        }
                        state = State::Text;
                        token = 0;
                        continue;
                    }
                    tag.push(b);
                    match &tag[..] {
                        b"!--" => state = State::Comment,
                        b"![CDATA[" => state = State::CData,
                        b"!DOCTYPE" => return Err(ScanError::Doctype),
                        [b'?'] => state = State::Instruction,
                        // Quotes matter only in a tag's attributes.
                        [first, ..] if (b == b'"' || b == b'\'') && *first != b'!' => state = State::Tag(b),
                        _ => {}
                    }
                    if !matches!(state, State::Tag(_)) {
                        tail = [0; 3];
                    }
                }
                State::Comment | State::CData | State::Instruction => {
                    let b = buf[i];
                    i += 1;
                    token += 1;
                    if token > MAX_XML_TOKEN_BYTES {
                        return Err(ScanError::LongToken);
                    }
                    tail = [tail[1], tail[2], b];
                    let ended = match state {
                        State::Comment => &tail == b"-->",
                        State::CData => &tail == b"]]>",
                        _ => tail[1..] == *b"?>",
                    };
                    if ended {
                        state = State::Text;
                        token = 0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(parse_reference(b"A1"), Some((Some(1), Some(1))));
        assert_eq!(parse_reference(b"XFD1048576"), Some((Some(16_384), Some(1_048_576))));
        assert_eq!(parse_reference(b"$B$7"), Some((Some(2), Some(7))));
        assert_eq!(parse_reference(b"12"), Some((None, Some(12))));
        assert_eq!(parse_reference(b"XFE1"), None);
        assert_eq!(parse_reference(b"ZZZZZZZ1"), None);
        assert_eq!(parse_reference(b"A1048577"), None);
        assert_eq!(parse_reference(b"A0"), None);
        assert_eq!(parse_reference(b"A99999999999"), None);
    }

    #[test]
    fn tags_and_attributes() {
        let tag = Tag(b"x:c r=\"B2\" s='1' t = \"s\"");
        assert_eq!(tag.local_name(), b"c");
        assert_eq!(tag.attr(b"r").as_deref(), Some(&b"B2"[..]));
        assert_eq!(tag.attr(b"s").as_deref(), Some(&b"1"[..]));
        assert_eq!(tag.attr(b"t").as_deref(), Some(&b"s"[..]));
        assert_eq!(tag.attr(b"x"), None);
        assert_eq!(Tag(b"row/").local_name(), b"row");
        assert_eq!(decode_entities(b"a&amp;b&#47;c&#x2F;&bogus;"), "a&b/c/&bogus;");
    }

    fn scanned(xml: &[u8], limit: u64) -> Result<Vec<String>, String> {
        let mut tags = Vec::new();
        scan(xml, limit, &mut |t| {
            tags.push(String::from_utf8_lossy(t.local_name()).into_owned());
            Ok(())
        })
        .map(|()| tags)
        .map_err(|e| e.problem("p").message)
    }

    #[test]
    fn the_scanner_sees_tags_and_skips_comments_cdata_and_instructions() {
        let xml = b"<?xml version=\"1.0\"?><a x='>'><!-- <b> --><![CDATA[<c>]]><d/></a>";
        assert_eq!(scanned(xml, 1 << 20).unwrap(), ["a", "d"]);
        assert!(scanned(b"<!DOCTYPE x [<!ENTITY a \"b\">]><x/>", 1 << 20).unwrap_err().contains("document type"));
        assert!(scanned(&b"<a>".repeat(100), 10).unwrap_err().contains("unpacks to more than"));
    }

    #[test]
    fn a_long_token_is_refused_wherever_it_is() {
        let long = "x".repeat(MAX_XML_TOKEN_BYTES + 1);
        for xml in [
            format!("<a>{long}</a>"),
            format!("<a b=\"{long}\"/>"),
            format!("<a b=\"<{long}\"/>"),
            format!("<!--{long}-->"),
            format!("<![CDATA[{long}]]>"),
        ] {
            let err = scanned(xml.as_bytes(), u64::MAX).unwrap_err();
            assert!(err.contains("a value or tag longer than 4 MiB"), "{err}");
        }
        let fine = format!("<a>{}</a>", "x".repeat(MAX_XML_TOKEN_BYTES - 10));
        assert!(scanned(fine.as_bytes(), u64::MAX).is_ok());
    }
}
