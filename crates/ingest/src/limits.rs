//! Bounds on every dimension of an input, each checked before memory is allocated for it: a file
//! of a few kilobytes must not make the reader allocate gigabytes (issue 23, item 13).
//!
//! | what | bound | where it is checked |
//! |---|---|---|
//! | columns of a file | [`MAX_COLUMNS`] | CSV header (counted before it is split), an XLSX header cell, a new JSON field, a Parquet schema, the planned table |
//! | fields of a long CSV record | the header's width | `chunker.rs`, for records over [`FIELD_COUNT_FROM`] bytes, before they are split |
//! | an XLSX cell beyond the header | not stored | `xlsx_source.rs` (rows are kept sparse, shared strings borrowed) |
//! | XLSX parts read whole by calamine | [`MAX_SHARED_STRINGS_BYTES`], [`MAX_PART_BYTES`] unpacked | `xlsx_guard.rs`, counted while unpacking, before calamine opens the file |
//! | one XML token (a value, a tag) in any XLSX part | [`MAX_XML_TOKEN_BYTES`] | `xlsx_guard.rs` |
//! | XLSX cell references | Excel's own (XFD, row 1,048,576) | `xlsx_guard.rs` |
//! | points of one geometry | [`MAX_POINTS`] | GeoJSON, WKT, WKB |
//! | one JSON element (a record, a feature) | [`MAX_ELEMENT_BYTES`] in memory | `json_source.rs`, while it is parsed |
//! | the type-inference sample | [`SAMPLE_BYTES`] besides its row count | every source |

use crate::Problem;

/// The most columns a file (and a table) may have.
pub const MAX_COLUMNS: usize = 2_000;

/// The most points (positions) one geometry may have.
pub const MAX_POINTS: usize = 1_000_000;

/// The most a sample kept for type inference may hold, about, in bytes.
pub(crate) const SAMPLE_BYTES: usize = 64 << 20;

/// A CSV record longer than this has its fields counted before it is split.
pub(crate) const FIELD_COUNT_FROM: usize = 1 << 20;

/// The most memory one JSON element may take once parsed, about, in bytes (values are counted
/// at 32 bytes each, strings by their length). A feature with [`MAX_POINTS`] points takes about
/// 100 MiB.
pub(crate) const MAX_ELEMENT_BYTES: usize = 128 << 20;

/// The most an XLSX workbook's shared strings part may unpack to.
pub(crate) const MAX_SHARED_STRINGS_BYTES: u64 = 64 << 20;

/// The most any other XLSX part that calamine reads whole (workbook, styles, theme,
/// relationships) may unpack to.
pub(crate) const MAX_PART_BYTES: u64 = 16 << 20;

/// The longest XML token (text between tags, or one tag) in an XLSX part. Excel itself keeps a
/// cell to 32,767 characters.
pub(crate) const MAX_XML_TOKEN_BYTES: usize = 4 << 20;

/// The message for a file with too many columns.
pub(crate) fn too_many_columns(columns: impl std::fmt::Display) -> String {
    format!("the file has {columns} columns; at most {MAX_COLUMNS} are allowed")
}

/// The problem for a file of `columns` columns, located at the first column too many, `name`.
pub(crate) fn column_limit(file: &str, line: Option<u64>, name: &str, columns: impl std::fmt::Display) -> Problem {
    let name = short(name);
    match line {
        Some(line) => Problem::at_line(file, line, Some(&name), too_many_columns(columns)),
        None => Problem::column(file, &name, too_many_columns(columns)),
    }
}

/// A name or value cut to at most 40 characters, so a message never carries a huge input.
pub(crate) fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The largest coordinate value a geometry may have, in any CRS: a billion (metres, feet or
/// degrees), well past every coordinate on Earth in the CRSs Tverr reads, and small enough that
/// distances and areas stay finite.
pub const MAX_COORDINATE: f64 = 1e9;

/// The message for a coordinate beyond [`MAX_COORDINATE`].
pub(crate) fn coordinate_out_of_range() -> String {
    "a coordinate is out of range: at most 1000000000 either way".to_string()
}

/// The message for a geometry with too many points.
pub(crate) fn too_many_points() -> String {
    format!("the geometry has more than {MAX_POINTS} points; at most {MAX_POINTS} are allowed")
}
