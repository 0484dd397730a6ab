//! Column types, type inference from a sample, and the builders that turn parsed values into
//! Arrow arrays.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use serde::Serialize;
use tverr_core::SubjectKind;

use crate::limits::{self, MAX_COLUMNS};
use crate::{IngestOptions, Problem, TargetSchema};
use crate::{geometry, values};

/// Arrow field metadata key naming the geometry encoding (`WKB`).
pub const GEOMETRY_ENCODING_KEY: &str = "tverr.geometry";

/// The column types Tverr stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// `ja`/`nei`, `true`/`false`.
    Boolean,
    /// 64-bit signed integer.
    Integer,
    /// 64-bit float (decimal comma or point in text).
    Float,
    /// A calendar date.
    Date,
    /// An instant, stored as UTC microseconds.
    Timestamp,
    /// Text (UTF-8).
    Text,
    /// A geometry, stored as WKB; its CRS is recorded in the catalogue.
    Geometry,
}

impl ColumnType {
    /// The names accepted by `--type`.
    pub const NAMES: &'static str = "boolean, integer, float, date, timestamp, text, geometry";

    /// Parses a `--type` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "boolean" | "bool" => ColumnType::Boolean,
            "integer" | "int" | "bigint" | "heltall" => ColumnType::Integer,
            "float" | "double" | "number" | "desimaltall" => ColumnType::Float,
            "date" | "dato" => ColumnType::Date,
            "timestamp" | "tidspunkt" => ColumnType::Timestamp,
            "text" | "string" | "tekst" => ColumnType::Text,
            "geometry" | "geometri" | "wkt" => ColumnType::Geometry,
            _ => return None,
        })
    }

    /// The Arrow type this column is stored as.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Integer => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Text => DataType::Utf8,
            ColumnType::Geometry => DataType::Binary,
        }
    }

    /// The column type of a stored Arrow type.
    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Boolean => ColumnType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnType::Integer,
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => ColumnType::Integer,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float,
            DataType::Decimal32(_, _) | DataType::Decimal64(_, _) | DataType::Decimal128(_, _) => ColumnType::Float,
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::Timestamp(_, _) => ColumnType::Timestamp,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ColumnType::Geometry,
            _ => return None,
        })
    }

    /// How an expected value of this type is described in errors.
    pub fn expectation(self) -> &'static str {
        match self {
            ColumnType::Boolean => "ja/nei or true/false",
            ColumnType::Integer => "an integer",
            ColumnType::Float => "a number (decimal comma or point)",
            ColumnType::Date => "a date (dd.mm.yyyy or yyyy-mm-dd)",
            ColumnType::Timestamp => "a timestamp (yyyy-mm-ddThh:mm:ss or dd.mm.yyyy hh:mm)",
            ColumnType::Text => "text",
            ColumnType::Geometry => "a geometry (WKT, EWKT or hex WKB)",
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Text => "text",
            ColumnType::Geometry => "geometry",
        })
    }
}

/// Tracks which types every non-empty sample value of a column fits.
#[derive(Debug, Clone)]
pub(crate) struct Inference {
    non_empty: usize,
    boolean: bool,
    integer: bool,
    float: bool,
    date: bool,
    timestamp: bool,
    /// A value like `0150` (postnummer, kommunenummer): numbers would lose the zero.
    leading_zero: bool,
    /// Every value looks like a geometry written as text (WKT, EWKT, hex WKB).
    geometry_written: bool,
    /// Every value is a valid geometry, and at least one is WKT (hex alone could be anything).
    geometry_valid: bool,
    wkt: bool,
    /// The first SRID a value names (EWKT, EWKB).
    pub srid: Option<u32>,
}

impl Default for Inference {
    fn default() -> Self {
        Self {
            non_empty: 0,
            boolean: true,
            integer: true,
            float: true,
            date: true,
            timestamp: true,
            leading_zero: false,
            geometry_written: true,
            geometry_valid: true,
            wkt: false,
            srid: None,
        }
    }
}

impl Inference {
    /// Looks at one text value.
    pub fn observe_text(&mut self, value: &str) {
        let v = value.trim();
        if v.is_empty() {
            return;
        }
        self.non_empty += 1;
        if self.boolean {
            self.boolean = values::parse_bool(v).is_some();
        }
        let digits = v.bytes().filter(u8::is_ascii_digit).count();
        if v.len() > 1 && v.starts_with('0') && v.as_bytes()[1].is_ascii_digit() || digits > 15 {
            self.leading_zero = true;
        }
        if self.integer {
            self.integer = values::parse_int(v).is_some();
        }
        if self.float {
            self.float = values::parse_float(v).is_some();
        }
        if self.date {
            self.date = values::parse_date(v).is_some();
        }
        if self.timestamp {
            self.timestamp = values::parse_timestamp(v).is_some();
        }
        if self.geometry_written {
            match geometry::written(v) {
                Some(written) => {
                    self.wkt |= written == geometry::Written::Wkt;
                    if self.geometry_valid {
                        match geometry::parse(v) {
                            Ok(g) => self.srid = self.srid.or(g.srid),
                            Err(_) => self.geometry_valid = false,
                        }
                    }
                }
                None => self.geometry_written = false,
            }
        }
    }

    /// Records a value that is already typed (JSON, XLSX).
    pub fn observe_typed(&mut self, t: ColumnType) {
        self.non_empty += 1;
        self.geometry_written = false;
        self.boolean &= t == ColumnType::Boolean;
        self.integer &= t == ColumnType::Integer;
        self.float &= matches!(t, ColumnType::Integer | ColumnType::Float);
        self.date &= t == ColumnType::Date;
        self.timestamp &= matches!(t, ColumnType::Date | ColumnType::Timestamp);
    }

    /// The type of text column `name`: a geometry when every value is a valid WKT (or EWKT, or
    /// hex WKB besides), or when the name says so and every value looks like one (so that a
    /// broken one is an error at its line, not a reason to store the column as text);
    /// otherwise [`Inference::decide`].
    pub fn decide_for(&self, name: &str) -> ColumnType {
        let geometry =
            self.non_empty > 0 && self.geometry_written && ((self.geometry_valid && self.wkt) || geometry::is_geometry_name(name));
        if geometry { ColumnType::Geometry } else { self.decide() }
    }

    /// The narrowest type that fits every value seen.
    pub fn decide(&self) -> ColumnType {
        if self.non_empty == 0 {
            ColumnType::Text
        } else if self.boolean {
            ColumnType::Boolean
        } else if self.integer && !self.leading_zero {
            ColumnType::Integer
        } else if self.float && !self.leading_zero {
            ColumnType::Float
        } else if self.date {
            ColumnType::Date
        } else if self.timestamp {
            ColumnType::Timestamp
        } else {
            ColumnType::Text
        }
    }
}

/// A column as it will be written.
#[derive(Debug, Clone)]
pub(crate) struct ColumnPlan {
    pub name: String,
    pub column_type: ColumnType,
    pub subject: Option<SubjectKind>,
    /// The EPSG code of a geometry column read from text, which its values must be in.
    pub srid: Option<u32>,
}

/// The file's columns mapped onto the table's, in the table's order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Output columns, in output order.
    pub columns: Vec<ColumnPlan>,
    /// For each output column, the index of the source column (None: fill with null).
    pub source_index: Vec<Option<usize>>,
    /// Columns new to the table.
    pub added: Vec<String>,
}

/// Checks the source's header and decides every column's type.
///
/// `inferred` holds, per source column, the type inferred from the sample (or forced by the
/// source, e.g. geometry). Returns located problems for duplicate, unknown and missing columns.
pub(crate) fn plan(file: &str, source_names: &[String], inferred: &[ColumnType], options: &IngestOptions) -> Result<Plan, Vec<Problem>> {
    if source_names.len() > MAX_COLUMNS {
        return Err(vec![limits::column_limit(file, None, &source_names[MAX_COLUMNS], source_names.len())]);
    }
    let mut problems = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, name) in source_names.iter().enumerate() {
        if name.trim().is_empty() {
            problems.push(Problem::file(file, format!("column {} has no name in the header", i + 1)));
        } else if seen.insert(name.as_str(), i).is_some() {
            problems.push(Problem::column(file, name, "the column name appears more than once in the header"));
        }
    }
    for name in options.types.keys().chain(options.subjects.keys()) {
        if !seen.contains_key(name.as_str()) {
            problems.push(Problem::column(file, name, "named in an option but not found in the file"));
        }
    }
    let subject_of = |name: &str| -> Option<SubjectKind> {
        options.subjects.get(name).copied().or_else(|| options.target.as_ref().and_then(|t| t.subjects.get(name).copied()))
    };
    let source_type = |i: usize, name: &str| -> ColumnType {
        if subject_of(name).is_some() { ColumnType::Text } else { options.types.get(name).copied().unwrap_or(inferred[i]) }
    };

    let plan = match &options.target {
        None => Plan {
            columns: source_names
                .iter()
                .enumerate()
                .map(|(i, n)| ColumnPlan { name: n.clone(), column_type: source_type(i, n), subject: subject_of(n), srid: None })
                .collect(),
            source_index: (0..source_names.len()).map(Some).collect(),
            added: Vec::new(),
        },
        Some(TargetSchema { schema, .. }) => {
            let mut columns = Vec::new();
            let mut source_index = Vec::new();
            let mut missing = Vec::new();
            for field in schema.fields() {
                let column_type = ColumnType::from_arrow(field.data_type()).unwrap_or(ColumnType::Text);
                match seen.get(field.name().as_str()) {
                    Some(i) => {
                        if let Some(forced) = options.types.get(field.name())
                            && *forced != column_type
                        {
                            problems.push(Problem::column(
                                file,
                                field.name(),
                                format!("--type {forced} does not match the dataset's type {column_type}"),
                            ));
                        }
                        source_index.push(Some(*i));
                    }
                    None => {
                        missing.push(field.name().clone());
                        source_index.push(None);
                    }
                }
                columns.push(ColumnPlan { name: field.name().clone(), column_type, subject: subject_of(field.name()), srid: None });
            }
            if !missing.is_empty() {
                problems.push(Problem::file(file, format!("missing columns that the dataset has: {}", missing.join(", "))));
            }
            let unknown: Vec<(usize, &String)> =
                source_names.iter().enumerate().filter(|(_, n)| schema.field_with_name(n).is_err()).collect();
            let mut added = Vec::new();
            if !unknown.is_empty() && !options.evolve {
                let names: Vec<&str> = unknown.iter().map(|(_, n)| n.as_str()).collect();
                problems.push(Problem::file(
                    file,
                    format!("columns that the dataset does not have: {} (use --evolve to add them)", names.join(", ")),
                ));
            } else {
                for (i, n) in unknown {
                    columns.push(ColumnPlan { name: n.clone(), column_type: source_type(i, n), subject: subject_of(n), srid: None });
                    source_index.push(Some(i));
                    added.push(n.clone());
                }
            }
            Plan { columns, source_index, added }
        }
    };
    if plan.columns.len() > MAX_COLUMNS {
        problems
            .push(Problem::file(file, format!("the dataset would have {} columns; at most {MAX_COLUMNS} are allowed", plan.columns.len())));
    }
    if problems.is_empty() { Ok(plan) } else { Err(problems) }
}

/// Decides the CRS of each geometry column read from text (CSV, XLSX) and records it in the
/// plan, so that every value is checked against it: the dataset's CRS for a column it has, else
/// `--crs`, else the SRID the sample's first EWKT or EWKB names, else EPSG:4326. Returns the CRS
/// of the new geometry columns, for the catalogue.
pub(crate) fn text_geometry_crs(
    file: &str,
    plan: &mut Plan,
    inference: &[Inference],
    options: &IngestOptions,
) -> Result<Option<String>, Vec<Problem>> {
    let mut problems = Vec::new();
    let option = options.crs.as_deref().and_then(geometry::epsg);
    let mut new_crs: Option<u32> = None;
    for (col, src) in plan.columns.iter_mut().zip(&plan.source_index) {
        if col.column_type != ColumnType::Geometry {
            continue;
        }
        let existing = options.target.as_ref().filter(|t| t.schema.field_with_name(&col.name).is_ok());
        let srid = match existing {
            Some(target) => {
                let crs = target.crs.get(&col.name).and_then(|c| geometry::epsg(c)).unwrap_or(4326);
                if let Some(o) = option.filter(|o| *o != crs) {
                    problems.push(Problem::column(file, &col.name, format!("--crs EPSG:{o} does not match the dataset's CRS EPSG:{crs}")));
                }
                crs
            }
            None => {
                let sampled = src.and_then(|s| inference.get(s)).and_then(|i| i.srid);
                let srid = option.or(sampled).unwrap_or(4326);
                if !geometry::SUPPORTED_SRIDS.contains(&srid) {
                    problems.push(Problem::column(
                        file,
                        &col.name,
                        format!("unsupported SRID {srid}; expected 4326, 25832 or 25833 (EPSG)"),
                    ));
                }
                match new_crs {
                    Some(other) if other != srid => problems.push(Problem::column(
                        file,
                        &col.name,
                        format!(
                            "EPSG:{srid} differs from another geometry column's EPSG:{other}; a file's new geometry columns share one CRS"
                        ),
                    )),
                    _ => new_crs = Some(srid),
                }
                srid
            }
        };
        col.srid = Some(srid);
    }
    if problems.is_empty() { Ok(new_crs.map(|s| format!("EPSG:{s}"))) } else { Err(problems) }
}

/// Builds one Arrow array from parsed values.
pub(crate) enum Builder {
    Boolean(BooleanBuilder),
    Integer(Int64Builder),
    Float(Float64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    /// WKB; text values must be in the CRS with this EPSG code.
    Geometry(BinaryBuilder, Option<u32>),
}

impl Builder {
    /// A builder for a planned column.
    pub fn for_column(c: &ColumnPlan, capacity: usize) -> Self {
        match Builder::new(c.column_type, capacity) {
            Builder::Geometry(b, _) => Builder::Geometry(b, c.srid),
            other => other,
        }
    }

    pub fn new(t: ColumnType, capacity: usize) -> Self {
        match t {
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Integer => Builder::Integer(Int64Builder::with_capacity(capacity)),
            ColumnType::Float => Builder::Float(Float64Builder::with_capacity(capacity)),
            ColumnType::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC")),
            ColumnType::Text => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            ColumnType::Geometry => Builder::Geometry(BinaryBuilder::with_capacity(capacity, capacity * 32), None),
        }
    }

    pub fn push_null(&mut self) {
        match self {
            Builder::Boolean(b) => b.append_null(),
            Builder::Integer(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Geometry(b, _) => b.append_null(),
        }
    }

    /// Parses and appends a text value; an empty value is null. On error appends null and
    /// returns the message.
    pub fn push_text(&mut self, value: &str, subject: Option<SubjectKind>) -> Result<(), String> {
        if values::trim(value).is_empty() {
            self.push_null();
            return Ok(());
        }
        if let Builder::Geometry(b, srid) = self {
            return push_geometry(b, *srid, value);
        }
        let ok = match self {
            Builder::Boolean(b) => values::parse_bool(value).map(|v| b.append_value(v)).is_some(),
            Builder::Integer(b) => values::parse_int(value).map(|v| b.append_value(v)).is_some(),
            Builder::Float(b) => values::parse_float(value).map(|v| b.append_value(v)).is_some(),
            Builder::Date(b) => values::parse_date(value).map(|v| b.append_value(values::date_to_days(v))).is_some(),
            Builder::Timestamp(b) => values::parse_timestamp(value).map(|v| b.append_value(v)).is_some(),
            Builder::Text(b) => match subject {
                None => {
                    b.append_value(value);
                    true
                }
                Some(kind) => match kind.canonicalise(value) {
                    Ok(canonical) => {
                        b.append_value(canonical);
                        true
                    }
                    Err(e) => {
                        b.append_null();
                        return Err(format!("invalid {}: {e}", kind.label()));
                    }
                },
            },
            Builder::Geometry(..) => false,
        };
        if ok {
            Ok(())
        } else {
            self.push_null();
            Err(format!("expected {}, found {}", self.column_type().expectation(), values::quote(value)))
        }
    }

    pub fn column_type(&self) -> ColumnType {
        match self {
            Builder::Boolean(_) => ColumnType::Boolean,
            Builder::Integer(_) => ColumnType::Integer,
            Builder::Float(_) => ColumnType::Float,
            Builder::Date(_) => ColumnType::Date,
            Builder::Timestamp(_) => ColumnType::Timestamp,
            Builder::Text(_) => ColumnType::Text,
            Builder::Geometry(..) => ColumnType::Geometry,
        }
    }

    pub fn push_bool(&mut self, v: bool) -> Result<(), String> {
        match self {
            Builder::Boolean(b) => b.append_value(v),
            Builder::Text(b) => b.append_value(if v { "true" } else { "false" }),
            _ => return self.mismatch(if v { "true" } else { "false" }),
        }
        Ok(())
    }

    pub fn push_i64(&mut self, v: i64, subject: Option<SubjectKind>) -> Result<(), String> {
        match self {
            Builder::Integer(b) => b.append_value(v),
            Builder::Float(b) => b.append_value(v as f64),
            Builder::Text(_) => return self.push_text(&v.to_string(), subject),
            _ => return self.mismatch(&v.to_string()),
        }
        Ok(())
    }

    pub fn push_f64(&mut self, v: f64, subject: Option<SubjectKind>) -> Result<(), String> {
        match self {
            Builder::Float(b) => b.append_value(v),
            Builder::Integer(b) if v.fract() == 0.0 && v.abs() < 9.0e15 => b.append_value(v as i64),
            Builder::Text(_) if v.fract() == 0.0 && v.abs() < 1.0e15 => {
                return self.push_text(&format!("{}", v as i64), subject);
            }
            Builder::Text(_) => return self.push_text(&v.to_string(), subject),
            _ => return self.mismatch(&v.to_string()),
        }
        Ok(())
    }

    pub fn push_date_time(&mut self, dt: chrono::NaiveDateTime) -> Result<(), String> {
        match self {
            Builder::Date(b) if dt.time() == chrono::NaiveTime::MIN => b.append_value(values::date_to_days(dt.date())),
            Builder::Timestamp(b) => {
                let micros = chrono::TimeZone::from_local_datetime(&chrono_tz::Europe::Oslo, &dt)
                    .earliest()
                    .map(|t| t.naive_utc().and_utc().timestamp_micros())
                    .ok_or_else(|| "a local time that does not exist in Europe/Oslo".to_string())?;
                b.append_value(micros)
            }
            Builder::Text(b) => b.append_value(dt.format("%Y-%m-%dT%H:%M:%S").to_string()),
            _ => return self.mismatch(&dt.to_string()),
        }
        Ok(())
    }

    pub fn push_bytes(&mut self, v: &[u8]) {
        match self {
            Builder::Geometry(b, _) => b.append_value(v),
            other => other.push_null(),
        }
    }

    fn mismatch(&mut self, found: &str) -> Result<(), String> {
        self.push_null();
        Err(format!("expected {}, found {}", self.column_type().expectation(), values::quote(found)))
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Integer(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Geometry(b, _) => Arc::new(b.finish()),
        }
    }
}

/// Appends a geometry written as text, in the CRS `srid` (null and an error if it is not one).
fn push_geometry(b: &mut BinaryBuilder, srid: Option<u32>, value: &str) -> Result<(), String> {
    let checked = geometry::parse(value).and_then(|g| {
        if let (Some(named), Some(crs)) = (g.srid, srid)
            && named != crs
        {
            return Err(format!("SRID {named} differs from the column's CRS EPSG:{crs}"));
        }
        if srid == Some(4326) && !g.fits_wgs84 {
            return Err("coordinates are outside longitude/latitude ranges for EPSG:4326; \
                        if they are UTM, give the CRS (e.g. --crs EPSG:25833)"
                .into());
        }
        Ok(g.wkb)
    });
    match checked {
        Ok(wkb) => {
            b.append_value(wkb);
            Ok(())
        }
        Err(msg) => {
            b.append_null();
            Err(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[&str]) -> ColumnType {
        let mut inf = Inference::default();
        for v in values {
            inf.observe_text(v);
        }
        inf.decide()
    }

    #[test]
    fn inference() {
        assert_eq!(infer(&["1", "2", ""]), ColumnType::Integer);
        assert_eq!(infer(&["1", "2,5"]), ColumnType::Float);
        assert_eq!(infer(&["ja", "nei"]), ColumnType::Boolean);
        assert_eq!(infer(&["17.05.2024", "2024-01-01"]), ColumnType::Date);
        assert_eq!(infer(&["2024-01-01T10:00:00Z", "17.05.2024 10:00"]), ColumnType::Timestamp);
        assert_eq!(infer(&["0150", "2317"]), ColumnType::Text, "postnummer keeps its zero");
        assert_eq!(infer(&["", ""]), ColumnType::Text);
        assert_eq!(infer(&["Hamar", "1"]), ColumnType::Text);
        assert_eq!(infer(&["12345678901234567"]), ColumnType::Text);
        assert_eq!(infer(&["01.05.2024", "09.12.2023"]), ColumnType::Date, "leading zeros in dates are fine");
    }
}
