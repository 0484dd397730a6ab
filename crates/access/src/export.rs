//! Streaming exports: CSV, JSON, NDJSON, GeoJSON, XLSX and Parquet, written batch by batch so
//! that no result is ever held whole in memory.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use geozero::ToJson;
use geozero::ToWkt;
use geozero::wkb::Wkb;

use crate::QueryError;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values with a header.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// A GeoJSON FeatureCollection (needs a geometry column).
    GeoJson,
    /// An Excel workbook.
    Xlsx,
    /// Apache Parquet.
    Parquet,
}

impl ExportFormat {
    /// Parses a `--format` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "csv" => Self::Csv,
            "json" => Self::Json,
            "ndjson" | "jsonl" => Self::Ndjson,
            "geojson" => Self::GeoJson,
            "xlsx" => Self::Xlsx,
            "parquet" => Self::Parquet,
            _ => return None,
        })
    }

    /// The MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
            Self::GeoJson => "application/geo+json",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Ndjson => "ndjson",
            Self::GeoJson => "geojson",
            Self::Xlsx => "xlsx",
            Self::Parquet => "parquet",
        }
    }
}

/// A geometry column (WKB) and its CRS.
#[derive(Debug, Clone)]
pub struct GeometryColumn {
    /// Column name.
    pub name: String,
    /// CRS, e.g. `EPSG:25833`.
    pub crs: String,
}

/// Export settings.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The format.
    pub format: ExportFormat,
    /// Geometry columns of the source, so they are written as WKT or GeoJSON geometries.
    pub geometry: Vec<GeometryColumn>,
    /// How CSV is written.
    pub csv: CsvOptions,
}

impl ExportOptions {
    /// A format with default CSV settings.
    pub fn new(format: ExportFormat, geometry: Vec<GeometryColumn>) -> Self {
        Self { format, geometry, csv: CsvOptions::default() }
    }
}

/// CSV dialect. Norwegian Excel opens `;`-separated files with decimal commas and a UTF-8 BOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator (`,` by default).
    pub delimiter: u8,
    /// Write decimals with a comma (`3,5`).
    pub decimal_comma: bool,
    /// Start with a UTF-8 byte-order mark.
    pub bom: bool,
    /// Write text cells as they are, even those a spreadsheet would run as a formula (see
    /// [`neutralise_formulas`]).
    pub raw: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self { delimiter: b',', decimal_comma: false, bom: false, raw: false }
    }
}

/// The characters that make a spreadsheet read a cell as a formula when it starts with one
/// (OWASP, "CSV Injection"): `=`, `+`, `-`, `@`, a tab and a carriage return, and their
/// full-width, small and mathematical forms, which some spreadsheets read as the same.
const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠', '﹦', '﹢', '﹣', '﹫', '−'];

/// Where a spreadsheet may split a cell, whatever the file's own delimiter: Excel set to
/// Norwegian opens a comma-separated file split on `;`.
const CELL_SPLITS: &[char] = &[',', ';', '\t', '\n', '\r'];

/// What a spreadsheet may skip before a formula: spaces and the invisible characters.
fn skipped(c: char) -> bool {
    c.is_whitespace() && c != '\t' && c != '\r' && c != '\n'
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Whether a word is a signed number, with closing brackets after it (`-3`, `4))`, `+2.5e-3`).
fn number_word(w: &str) -> bool {
    let w = w.trim_end_matches(')');
    let w = w.strip_prefix(['+', '-', '−']).unwrap_or(w);
    let (mantissa, exponent) = match w.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (w, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => digits(a) && digits(b),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// Whether a part of a cell starts like a formula. A part after a separator that is only a
/// signed number, or numbers (`-3 4))` in WKT, `-2` in a list), runs nothing and is left alone.
fn formula_like(part: &str, first: bool) -> bool {
    let trimmed = part.trim_start_matches(skipped);
    let starts = |t: &str| t.starts_with(FORMULA_STARTS);
    if first {
        return starts(part) || starts(trimmed);
    }
    let body = trimmed.trim_end_matches(CELL_SPLITS);
    match body.chars().next() {
        // Signed numbers, each a word of its own (`-3 4))` in WKT), run nothing; `+2+3` or
        // `-(1+2)` would be computed.
        Some('+' | '-' | '＋' | '－' | '﹢' | '﹣' | '−') => !body.split(' ').filter(|w| !w.is_empty()).all(number_word),
        _ => starts(body) || starts(part),
    }
}

/// A text cell made safe to open in a spreadsheet, or `None` when it is safe as it is: each
/// part of it a spreadsheet could read as a cell of its own (the text, and what follows each
/// `,`, `;` or tab) that starts like a formula, after any spaces, gets a leading `'`.
fn defused(v: &str) -> Option<String> {
    // A part after a line break starts a row of its own in a spreadsheet that splits the
    // line, so it is read as a first cell (attack 9, F6).
    let parts: Vec<&str> = v.split_inclusive(CELL_SPLITS).collect();
    let first = |i: usize| i == 0 || parts[i - 1].ends_with(['\n', '\r']);
    let risky = |i: usize| formula_like(parts[i], first(i));
    if !(0..parts.len()).any(risky) {
        return None;
    }
    let mut out = String::with_capacity(v.len() + 2);
    for (i, part) in parts.iter().enumerate() {
        if risky(i) {
            out.push('\'');
        }
        out.push_str(part);
    }
    Some(out)
}

/// Text cells that start like a formula get a leading `'` (see [`defused`]), so Excel and
/// LibreOffice show them as text instead of running them (`=HYPERLINK(…)`). Numbers are
/// numeric columns and are left alone.
fn neutralise_formulas(batch: RecordBatch) -> Result<RecordBatch, QueryError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    let mut changed = false;
    for c in batch.columns() {
        let text = match c.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                cast(c, &DataType::Utf8).map_err(|e| QueryError::Output(e.to_string()))?
            }
            _ => {
                cols.push(c.clone());
                continue;
            }
        };
        let text = text.as_string::<i32>();
        if !text.iter().flatten().any(|v| defused(v).is_some()) {
            cols.push(c.clone());
            continue;
        }
        changed = true;
        let safe: arrow::array::StringArray = text.iter().map(|v| v.map(|v| defused(v).unwrap_or_else(|| v.to_string()))).collect();
        cols.push(cast(&safe, c.data_type()).map_err(|e| QueryError::Output(e.to_string()))?);
    }
    if !changed {
        return Ok(batch);
    }
    RecordBatch::try_new(batch.schema(), cols).map_err(|e| QueryError::Output(e.to_string()))
}

/// The most rows one Excel sheet holds (including the header).
const XLSX_MAX_ROWS: u64 = 1_048_576;

/// Writes a result stream in the chosen format; returns the number of rows written.
pub async fn write_export(
    mut stream: SendableRecordBatchStream,
    options: &ExportOptions,
    out: &mut (dyn Write + Send),
) -> Result<u64, QueryError> {
    let out_err = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    let mut rows = 0u64;
    match options.format {
        ExportFormat::Csv => {
            if options.csv.bom {
                out.write_all("\u{feff}".as_bytes()).map_err(|e| out_err(&e))?;
            }
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .with_delimiter(options.csv.delimiter)
                .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.fZ".to_string())
                .build(&mut *out);
            while let Some(batch) = stream.next().await {
                let mut batch = tabular(batch?, &options.geometry)?;
                if !options.csv.raw {
                    batch = neutralise_formulas(batch)?;
                }
                if options.csv.decimal_comma {
                    batch = decimal_commas(batch)?;
                }
                rows += batch.num_rows() as u64;
                w.write(&batch).map_err(|e| out_err(&e))?;
            }
            if rows == 0 {
                let mut schema = tabular_schema(&stream.schema(), &options.geometry);
                if options.csv.decimal_comma {
                    schema = decimal_commas(RecordBatch::new_empty(schema))?.schema();
                }
                w.write(&RecordBatch::new_empty(schema)).map_err(|e| out_err(&e))?;
            }
        }
        ExportFormat::Json | ExportFormat::Ndjson => {
            if options.format == ExportFormat::Json {
                let mut w = arrow::json::ArrayWriter::new(&mut *out);
                while let Some(batch) = stream.next().await {
                    let batch = tabular(batch?, &options.geometry)?;
                    rows += batch.num_rows() as u64;
                    w.write(&batch).map_err(|e| out_err(&e))?;
                }
                w.finish().map_err(|e| out_err(&e))?;
                if rows == 0 {
                    out.write_all(b"[]").map_err(|e| out_err(&e))?;
                }
            } else {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut *out);
                while let Some(batch) = stream.next().await {
                    let batch = tabular(batch?, &options.geometry)?;
                    rows += batch.num_rows() as u64;
                    w.write(&batch).map_err(|e| out_err(&e))?;
                }
                w.finish().map_err(|e| out_err(&e))?;
            }
        }
        ExportFormat::GeoJson => {
            let geom = options
                .geometry
                .first()
                .ok_or_else(|| QueryError::Invalid("GeoJSON needs a geometry column; this dataset has none".into()))?;
            write!(out, "{{\"type\":\"FeatureCollection\"").map_err(|e| out_err(&e))?;
            if geom.crs != "EPSG:4326" {
                let code = geom.crs.trim_start_matches("EPSG:");
                write!(out, ",\"crs\":{{\"type\":\"name\",\"properties\":{{\"name\":\"urn:ogc:def:crs:EPSG::{code}\"}}}}")
                    .map_err(|e| out_err(&e))?;
            }
            write!(out, ",\"features\":[").map_err(|e| out_err(&e))?;
            let mut first = true;
            while let Some(batch) = stream.next().await {
                rows += write_features(&batch?, &options.geometry, None, false, &mut first, &mut *out)?;
            }
            out.write_all(b"\n]}\n").map_err(|e| out_err(&e))?;
        }
        ExportFormat::Parquet => {
            let schema = plain_schema(&stream.schema());
            let props = parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut *out, schema.clone(), Some(props)).map_err(|e| out_err(&e))?;
            let mut geo = GeoParquet::new(&schema, &options.geometry);
            while let Some(batch) = stream.next().await {
                let batch = plain(batch?, &schema)?;
                geo.observe(&batch);
                rows += batch.num_rows() as u64;
                w.write(&batch).map_err(|e| out_err(&e))?;
            }
            if let Some(metadata) = geo.metadata() {
                w.append_key_value_metadata(parquet::file::metadata::KeyValue::new("geo".to_string(), metadata));
            }
            w.close().map_err(|e| out_err(&e))?;
        }
        ExportFormat::Xlsx => {
            rows = write_xlsx(stream, &options.geometry, out).await?;
        }
    }
    out.flush().map_err(|e| out_err(&e))?;
    Ok(rows)
}

/// Writes a batch as GeoJSON Features, each on a line of its own and after a comma unless it is
/// the very first (`first`, cleared by the first one written). The first of `geometry` is the
/// feature's geometry, the others become WKT properties; `id_column`, when given, is the
/// feature's `id` and not a property; `lat_lon` writes each coordinate's axes swapped (EPSG:4326's
/// own order, for OGC API Features). Returns the features written.
pub fn write_features(
    batch: &RecordBatch,
    geometry: &[GeometryColumn],
    id_column: Option<&str>,
    lat_lon: bool,
    first: &mut bool,
    out: &mut (dyn Write + Send),
) -> Result<u64, QueryError> {
    let out_err = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    let geom = geometry.first().ok_or_else(|| QueryError::Invalid("GeoJSON needs a geometry column; this dataset has none".into()))?;
    let idx = batch.schema().index_of(&geom.name).map_err(|e| out_err(&e))?;
    let shapes = cast(batch.column(idx), &DataType::Binary).map_err(|e| out_err(&e))?;
    let shapes = shapes.as_binary::<i32>();
    let mut props = batch.clone();
    let ids = match id_column.and_then(|name| batch.schema().index_of(name).ok()) {
        Some(i) => Some(cast(batch.column(i), &DataType::Utf8).map_err(|e| out_err(&e))?),
        None => None,
    };
    let drop: Vec<usize> = [Some(idx), id_column.and_then(|name| batch.schema().index_of(name).ok())].into_iter().flatten().collect();
    let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| !drop.contains(i)).collect();
    props = props.project(&keep).map_err(|e| out_err(&e))?;
    let props = tabular(props, &geometry[1..])?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&props).map_err(|e| out_err(&e))?;
        w.finish().map_err(|e| out_err(&e))?;
    }
    let mut lines = buf.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let mut written = 0u64;
    for i in 0..batch.num_rows() {
        // A row without properties is written by Arrow as nothing at all.
        let line: &[u8] = if props.num_columns() == 0 { b"{}" } else { lines.next().unwrap_or(b"{}") };
        if !std::mem::take(first) {
            out.write_all(b",").map_err(|e| out_err(&e))?;
        }
        out.write_all(b"\n{\"type\":\"Feature\",").map_err(|e| out_err(&e))?;
        if let Some(ids) = &ids {
            let ids = ids.as_string::<i32>();
            if ids.is_valid(i) {
                let id = serde_json::to_string(ids.value(i)).map_err(|e| out_err(&e))?;
                write!(out, "\"id\":{id},").map_err(|e| out_err(&e))?;
            }
        }
        let g = if shapes.is_null(i) { "null".to_string() } else { geojson_geometry(shapes.value(i), lat_lon).map_err(|e| out_err(&e))? };
        write!(out, "\"geometry\":{g},\"properties\":").map_err(|e| out_err(&e))?;
        out.write_all(line).map_err(|e| out_err(&e))?;
        out.write_all(b"}").map_err(|e| out_err(&e))?;
        written += 1;
    }
    Ok(written)
}

/// A WKB geometry as a GeoJSON geometry object, its axes swapped when `lat_lon`.
fn geojson_geometry(wkb: &[u8], lat_lon: bool) -> Result<String, geozero::error::GeozeroError> {
    use geozero::ToGeo;
    if !lat_lon {
        return Wkb(wkb).to_json();
    }
    let mut g = Wkb(wkb).to_geo()?;
    geo::MapCoordsInPlace::map_coords_in_place(&mut g, |c| geo::Coord { x: c.y, y: c.x });
    g.to_json()
}

/// The GeoParquet 1.1 metadata of a Parquet export: each geometry column's encoding (WKB), the
/// geometry types met, its CRS as PROJJSON (none for EPSG:4326, which GeoParquet reads as
/// longitude/latitude, the order Tverr stores) and the bounding box of every row written.
struct GeoParquet {
    columns: Vec<GeoColumn>,
}

struct GeoColumn {
    name: String,
    index: usize,
    crs: Option<crate::geo::Crs>,
    types: std::collections::BTreeSet<&'static str>,
    bbox: Option<[f64; 4]>,
}

/// EPSG:25832 and EPSG:25833 as PROJJSON, from PROJ 9's `projinfo -o PROJJSON`.
const PROJJSON_25832: &str = include_str!("../assets/epsg-25832.projjson");
const PROJJSON_25833: &str = include_str!("../assets/epsg-25833.projjson");

impl GeoParquet {
    fn new(schema: &Schema, geometry: &[GeometryColumn]) -> Self {
        let columns = geometry
            .iter()
            .filter_map(|g| {
                Some(GeoColumn {
                    name: g.name.clone(),
                    index: schema.index_of(&g.name).ok()?,
                    crs: crate::geo::Crs::parse(&g.crs),
                    types: Default::default(),
                    bbox: None,
                })
            })
            .collect();
        Self { columns }
    }

    fn observe(&mut self, batch: &RecordBatch) {
        use geo::BoundingRect;
        use geozero::ToGeo;
        for c in &mut self.columns {
            let Some(array) = batch.column(c.index).as_binary_opt::<i32>() else { continue };
            for value in array.iter().flatten() {
                let Ok(shape) = Wkb(value).to_geo() else { continue };
                c.types.insert(match shape {
                    geo::Geometry::Point(_) => "Point",
                    geo::Geometry::LineString(_) | geo::Geometry::Line(_) => "LineString",
                    geo::Geometry::Polygon(_) | geo::Geometry::Rect(_) | geo::Geometry::Triangle(_) => "Polygon",
                    geo::Geometry::MultiPoint(_) => "MultiPoint",
                    geo::Geometry::MultiLineString(_) => "MultiLineString",
                    geo::Geometry::MultiPolygon(_) => "MultiPolygon",
                    geo::Geometry::GeometryCollection(_) => "GeometryCollection",
                });
                if let Some(r) = shape.bounding_rect() {
                    let b = c.bbox.get_or_insert([f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY]);
                    *b = [b[0].min(r.min().x), b[1].min(r.min().y), b[2].max(r.max().x), b[3].max(r.max().y)];
                }
            }
        }
    }

    fn metadata(&self) -> Option<String> {
        let primary = self.columns.first()?;
        let mut columns = serde_json::Map::new();
        for c in &self.columns {
            let mut column = serde_json::json!({"encoding": "WKB", "geometry_types": c.types.iter().collect::<Vec<_>>()});
            let projjson = match c.crs {
                Some(crate::geo::Crs::Utm32) => Some(PROJJSON_25832),
                Some(crate::geo::Crs::Utm33) => Some(PROJJSON_25833),
                _ => None,
            };
            if let Some(text) = projjson {
                column["crs"] = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
            }
            if let Some(b) = c.bbox {
                column["bbox"] = serde_json::json!(b);
            }
            columns.insert(c.name.clone(), column);
        }
        Some(serde_json::json!({"version": "1.1.0", "primary_column": primary.name, "columns": columns}).to_string())
    }
}

/// View types become plain types, so every writer and reader understands them.
fn plain_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, v) => plain_type(v),
        other => other.clone(),
    }
}

fn plain_schema(schema: &Schema) -> Arc<Schema> {
    Arc::new(Schema::new(schema.fields().iter().map(|f| Field::new(f.name(), plain_type(f.data_type()), true)).collect::<Vec<_>>()))
}

fn plain(batch: RecordBatch, schema: &Arc<Schema>) -> Result<RecordBatch, QueryError> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| QueryError::Output(e.to_string()))?;
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| QueryError::Output(e.to_string()))
}

/// A geometry column: named as one, or marked as WKB by GeoArrow metadata (what the secure scan,
/// `ST_Transform` and `ST_SetSRID` give).
fn is_geometry(f: &Field, geometry: &[GeometryColumn]) -> bool {
    geometry.iter().any(|g| &g.name == f.name()) || f.extension_type_name() == Some("geoarrow.wkb")
}

fn tabular_schema(schema: &Schema, geometry: &[GeometryColumn]) -> Arc<Schema> {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let dt = if is_geometry(f, geometry) { DataType::Utf8 } else { plain_type(f.data_type()) };
                Field::new(f.name(), dt, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Fails when a date or timestamp lies beyond what a calendar can show: Arrow's writers would put
/// their error text in the cell instead, and that text quotes the value (from which the data it
/// was computed from can be read back). The failure names no value.
fn on_the_calendar(c: &ArrayRef) -> Result<(), QueryError> {
    // Nanoseconds in an i64 span ±292 years: always on the calendar, and no pass is needed.
    if !matches!(c.data_type(), DataType::Timestamp(..) | DataType::Date32 | DataType::Date64)
        || matches!(c.data_type(), DataType::Timestamp(TimeUnit::Nanosecond, _))
    {
        return Ok(());
    }
    let off = || QueryError::Execution("a value could not be converted to the requested type".into());
    let options = arrow::compute::CastOptions { safe: false, ..Default::default() };
    let micros = arrow::compute::cast_with_options(c, &DataType::Timestamp(TimeUnit::Microsecond, None), &options).map_err(|_| off())?;
    let micros = micros.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    match micros.iter().flatten().all(|m| chrono::DateTime::from_timestamp_micros(m).is_some()) {
        true => Ok(()),
        false => Err(off()),
    }
}

/// Plain types, with geometry columns as WKT text.
fn tabular(batch: RecordBatch, geometry: &[GeometryColumn]) -> Result<RecordBatch, QueryError> {
    let schema = tabular_schema(&batch.schema(), geometry);
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (c, f) in batch.columns().iter().zip(schema.fields()) {
        on_the_calendar(c)?;
        if f.data_type() == &DataType::Utf8 && matches!(c.data_type(), DataType::Binary | DataType::LargeBinary | DataType::BinaryView) {
            let bin = cast(c, &DataType::Binary).map_err(|e| QueryError::Output(e.to_string()))?;
            let bin: &BinaryArray = bin.as_binary::<i32>();
            let mut b = StringBuilder::with_capacity(bin.len(), bin.len() * 32);
            for i in 0..bin.len() {
                if bin.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(Wkb(bin.value(i)).to_wkt().map_err(|e| QueryError::Output(e.to_string()))?);
                }
            }
            cols.push(Arc::new(b.finish()));
        } else if c.data_type() != f.data_type() {
            cols.push(cast(c, f.data_type()).map_err(|e| QueryError::Output(e.to_string()))?);
        } else {
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(schema, cols).map_err(|e| QueryError::Output(e.to_string()))
}

/// Floating-point and decimal columns as text with a decimal comma.
fn decimal_commas(batch: RecordBatch) -> Result<RecordBatch, QueryError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (c, f) in batch.columns().iter().zip(batch.schema().fields()) {
        if matches!(
            f.data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..)
        ) {
            let text = cast(c, &DataType::Utf8).map_err(|e| QueryError::Output(e.to_string()))?;
            let text = text.as_string::<i32>();
            let replaced: arrow::array::StringArray = text.iter().map(|v| v.map(|v| v.replace('.', ","))).collect();
            cols.push(Arc::new(replaced));
            fields.push(Field::new(f.name(), DataType::Utf8, true));
        } else {
            cols.push(c.clone());
            fields.push(f.as_ref().clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| QueryError::Output(e.to_string()))
}

async fn write_xlsx(
    mut stream: SendableRecordBatchStream,
    geometry: &[GeometryColumn],
    out: &mut (dyn Write + Send),
) -> Result<u64, QueryError> {
    use rust_xlsxwriter::{Format, Workbook};
    let xerr = |e: rust_xlsxwriter::XlsxError| QueryError::Output(e.to_string());
    let mut workbook = Workbook::new();
    let date_format = Format::new().set_num_format("dd.mm.yyyy");
    let ts_format = Format::new().set_num_format("dd.mm.yyyy hh:mm:ss");
    let header_format = Format::new().set_bold();
    let sheet = workbook.add_worksheet_with_constant_memory().map_err(xerr)?;
    sheet.set_name("Data").map_err(xerr)?;
    let schema = tabular_schema(&stream.schema(), geometry);
    for (c, f) in schema.fields().iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, f.name(), &header_format).map_err(xerr)?;
    }
    let mut row: u32 = 1;
    while let Some(batch) = stream.next().await {
        let batch = tabular(batch?, geometry)?;
        if u64::from(row) + batch.num_rows() as u64 > XLSX_MAX_ROWS {
            return Err(QueryError::Output(format!(
                "the result has more rows than an Excel sheet holds ({}); use csv or parquet",
                XLSX_MAX_ROWS - 1
            )));
        }
        for i in 0..batch.num_rows() {
            for (c, col) in batch.columns().iter().enumerate() {
                if col.is_null(i) {
                    continue;
                }
                let c = c as u16;
                match col.data_type() {
                    DataType::Utf8 => {
                        sheet.write_string(row, c, col.as_string::<i32>().value(i)).map_err(xerr)?;
                    }
                    DataType::Boolean => {
                        sheet.write_boolean(row, c, col.as_boolean().value(i)).map_err(xerr)?;
                    }
                    DataType::Int64
                    | DataType::Int32
                    | DataType::Int16
                    | DataType::Int8
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Decimal128(_, _) => {
                        let f = cast(&col.slice(i, 1), &DataType::Float64).map_err(|e| QueryError::Output(e.to_string()))?;
                        let v = f.as_primitive::<arrow::datatypes::Float64Type>().value(0);
                        sheet.write_number(row, c, v).map_err(xerr)?;
                    }
                    DataType::Date32 => {
                        let days = col.as_primitive::<arrow::datatypes::Date32Type>().value(i);
                        let d = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(i64::from(days));
                        sheet.write_datetime_with_format(row, c, d, &date_format).map_err(xerr)?;
                    }
                    DataType::Timestamp(unit, _) => {
                        let t = cast(&col.slice(i, 1), &DataType::Timestamp(TimeUnit::Microsecond, None))
                            .map_err(|e| QueryError::Output(e.to_string()))?;
                        let micros = t.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(0);
                        let _ = unit;
                        let utc = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
                        let local = utc.with_timezone(&chrono_tz::Europe::Oslo).naive_local();
                        sheet.write_datetime_with_format(row, c, local, &ts_format).map_err(xerr)?;
                    }
                    _ => {
                        let s = cast(&col.slice(i, 1), &DataType::Utf8).map_err(|e| QueryError::Output(e.to_string()))?;
                        sheet.write_string(row, c, s.as_string::<i32>().value(0)).map_err(xerr)?;
                    }
                }
            }
            row += 1;
        }
    }
    let mut tmp = tempfile::tempfile().map_err(|e| QueryError::Output(e.to_string()))?;
    workbook.save_to_writer(&mut tmp).map_err(xerr)?;
    use std::io::Seek;
    tmp.rewind().map_err(|e| QueryError::Output(e.to_string()))?;
    std::io::copy(&mut tmp, out).map_err(|e| QueryError::Output(e.to_string()))?;
    Ok(u64::from(row) - 1)
}

/// One result column for API clients: its name and Tverr type (`text`, `integer`, `float`,
/// `boolean`, `date`, `timestamp`, `geometry` (as WKT text), `binary`, or Arrow's name for anything
/// else).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResultColumn {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub column_type: String,
    /// A geometry column's CRS (`EPSG:25833`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crs: Option<String>,
}

/// The columns of a result schema.
pub fn result_columns(schema: &Schema) -> Vec<ResultColumn> {
    schema
        .fields()
        .iter()
        .map(|f| {
            if is_geometry(f, &[]) {
                let crs = crate::geo::field_crs(f).map(|c| c.to_string());
                return ResultColumn { name: f.name().clone(), column_type: "geometry".into(), crs };
            }
            let t = match plain_type(f.data_type()) {
                DataType::Utf8 => "text".to_string(),
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "integer".into(),
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "integer".into(),
                DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => "float".into(),
                DataType::Boolean => "boolean".into(),
                DataType::Date32 | DataType::Date64 => "date".into(),
                DataType::Timestamp(..) => "timestamp".into(),
                DataType::Binary => "binary".into(),
                other => other.to_string(),
            };
            ResultColumn { name: f.name().clone(), column_type: t, crs: None }
        })
        .collect()
}

/// A batch as JSON objects keyed by column name, comma-separated, without the enclosing array
/// brackets (so a stream of batches can be joined into one array).
/// Geometry columns are written as WKT.
pub fn json_objects(batch: &RecordBatch, geometry: &[GeometryColumn]) -> Result<Vec<u8>, QueryError> {
    let batch = tabular(batch.clone(), geometry)?;
    let mut buf = Vec::new();
    let mut w = arrow::json::WriterBuilder::new().with_explicit_nulls(true).build::<_, arrow::json::writer::JsonArray>(&mut buf);
    w.write(&batch).map_err(|e| QueryError::Output(e.to_string()))?;
    w.finish().map_err(|e| QueryError::Output(e.to_string()))?;
    drop(w);
    let text = buf.strip_prefix(b"[").and_then(|b| b.strip_suffix(b"]")).unwrap_or(&buf);
    Ok(text.to_vec())
}

/// A batch as CSV rows, with the header line when `header` is set; text cells that start
/// like a spreadsheet formula are neutralised.
pub fn csv_rows(batch: &RecordBatch, header: bool) -> Result<Vec<u8>, QueryError> {
    csv_rows_as(batch, header, b',')
}

/// [`csv_rows`] with another field separator (`;` for Excel set to Norwegian).
pub fn csv_rows_as(batch: &RecordBatch, header: bool, delimiter: u8) -> Result<Vec<u8>, QueryError> {
    let batch = neutralise_formulas(tabular(batch.clone(), &[])?)?;
    let mut buf = Vec::new();
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(header)
        .with_delimiter(delimiter)
        .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.fZ".to_string())
        .build(&mut buf);
    w.write(&batch).map_err(|e| QueryError::Output(e.to_string()))?;
    drop(w);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_beyond_the_calendar_fails_without_its_value() {
        // Attack 5, F4: from_unixtime(postnummer * 10^11) came back as a cell reading
        // "ERROR: Cast error: Failed to convert 231900000000000 to datetime".
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Timestamp(TimeUnit::Second, None), true)]));
        let far = arrow::array::TimestampSecondArray::from(vec![Some(231_900_000_000_000), None]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(far)]).unwrap();
        for result in [json_objects(&batch, &[]).map(|_| ()), csv_rows(&batch, true).map(|_| ())] {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("could not be converted") && !message.contains("2319"), "{message}");
        }
        let near = arrow::array::TimestampSecondArray::from(vec![Some(1_765_000_000), None]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(near)]).unwrap();
        assert!(String::from_utf8(json_objects(&batch, &[]).unwrap()).unwrap().contains("2025-12-06"));
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised_unless_raw_is_asked() {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
        let text = arrow::array::StringArray::from(vec![
            Some("=HYPERLINK(\"http://x\",\"y\")"),
            Some("+47 99"),
            Some("-1+1"),
            Some("@SUM(A1)"),
            Some("\tx"),
            Some("Hamar"),
            None,
        ]);
        let numbers = arrow::array::Int64Array::from(vec![Some(-5), Some(1), None, None, None, None, None]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(text), Arc::new(numbers)]).unwrap();
        let out = String::from_utf8(csv_rows(&batch, true).unwrap()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-5");
        assert_eq!(lines[2], "'+47 99,1");
        assert_eq!(lines[3], "'-1+1,");
        assert_eq!(lines[4], "'@SUM(A1),");
        assert!(lines[5].starts_with("\"'\tx\"") || lines[5].starts_with("'\tx"), "{:?}", lines[5]);
        assert_eq!(lines[6], "Hamar,");
        // What a spreadsheet that splits on `;` or reads past spaces would run is defused too.
        for (cell, safe) in [
            (";=1+1;", ";'=1+1;"),
            ("Eier AS;=cmd|' /C calc'!A0", "Eier AS;'=cmd|' /C calc'!A0"),
            (" =1+1", "' =1+1"),
            ("\u{a0}@SUM(A1)", "'\u{a0}@SUM(A1)"),
            ("＝1+1", "'＝1+1"),
            ("a, -b", "a,' -b"),
            ("a;-1+cmd|' /C calc'!A0", "a;'-1+cmd|' /C calc'!A0"),
            ("\u{200b}=1+1", "'\u{200b}=1+1"),
            ("\u{feff}@SUM(A1)", "'\u{feff}@SUM(A1)"),
            ("﹦1+1", "'﹦1+1"),
            ("−1+cmd", "'−1+cmd"),
            ("Storgata 1, 2317 Hamar", "Storgata 1, 2317 Hamar"),
            // WKT and number lists keep their negative numbers.
            ("POLYGON((-1 -2, -3 4, -1 -2))", "POLYGON((-1 -2, -3 4, -1 -2))"),
            ("1,-2,+3.5e-2", "1,-2,+3.5e-2"),
            // Attack 9, F6: a line break starts a row of its own; more invisible characters; the
            // small commercial at; signed arithmetic after a separator.
            ("foo;-1\n=1+2", "foo;-1\n'=1+2"),
            ("a\r\n@SUM(A1)", "a\r\n'@SUM(A1)"),
            ("\u{200e}=1+1", "'\u{200e}=1+1"),
            ("\u{ad}=1+1", "'\u{ad}=1+1"),
            ("\u{3164}=1+1", "'\u{3164}=1+1"),
            ("\u{2800}=1+1", "'\u{2800}=1+1"),
            ("\u{e0020}=1+1", "'\u{e0020}=1+1"),
            ("﹫SUM(A1)", "'﹫SUM(A1)"),
            ("foo;+2+3", "foo;'+2+3"),
            ("foo;-(1+2)", "foo;'-(1+2)"),
            ("foo;-2-3", "foo;'-2-3"),
        ] {
            assert_eq!(defused(cell).as_deref().unwrap_or(cell), safe);
        }
        // Asked for raw values, the cells are written as they are.
        let kept = neutralise_formulas(batch.clone()).unwrap();
        assert_ne!(kept.column(0).as_ref(), batch.column(0).as_ref());
        assert_eq!(kept.column(1).as_ref(), batch.column(1).as_ref());
    }
}
