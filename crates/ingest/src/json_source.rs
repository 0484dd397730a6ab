//! JSON arrays of objects, NDJSON and GeoJSON FeatureCollections, streamed element by element.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::chunker::MAX_RECORD_BYTES;
use crate::columns::{self, ColumnType, Inference};
use crate::limits::{self, MAX_COLUMNS, MAX_ELEMENT_BYTES, MAX_POINTS, SAMPLE_BYTES};
use crate::reader::{Batcher, Context};
use crate::{BatchSink, IngestError, Problem, SourceReport, values};

/// The JSON shapes Tverr reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Array,
    Lines,
    GeoJson,
}

/// The name of the geometry column made from GeoJSON features.
pub const GEOMETRY_COLUMN: &str = "geometry";

/// Where a row came from.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Line(u64),
    Row(u64),
}

impl Loc {
    fn problem(self, file: &str, column: Option<&str>, msg: impl Into<String>) -> Problem {
        match self {
            Loc::Line(l) => Problem::at_line(file, l, column, msg),
            Loc::Row(r) => Problem::at_row(file, r, column, msg),
        }
    }
}

struct Row {
    loc: Loc,
    fields: Map<String, Value>,
    geometry: Option<Vec<u8>>,
    /// About how much memory the row takes (for the sample's budget).
    size: usize,
}

/// Collects a sample to infer the columns, then streams rows into the batcher.
struct RowConsumer<'a, 's> {
    ctx: &'a Context,
    geo: bool,
    sample: Vec<Row>,
    sample_bytes: usize,
    /// Rows the columns were inferred from.
    sampled: usize,
    names: Vec<String>,
    index: HashMap<String, usize>,
    inference: Vec<Inference>,
    batcher: Option<Batcher<'s>>,
    sink: Option<&'s mut dyn BatchSink>,
    /// Problems found before the batcher exists (during sampling).
    early: Vec<Problem>,
    stop: bool,
    crs: Option<String>,
}

impl<'a, 's> RowConsumer<'a, 's> {
    fn new(ctx: &'a Context, geo: bool, sink: &'s mut dyn BatchSink) -> Self {
        let mut c = Self {
            ctx,
            geo,
            sample: Vec::new(),
            sample_bytes: 0,
            sampled: 0,
            names: Vec::new(),
            index: HashMap::new(),
            inference: Vec::new(),
            batcher: None,
            sink: Some(sink),
            early: Vec::new(),
            stop: false,
            crs: None,
        };
        if geo {
            c.column(GEOMETRY_COLUMN);
        }
        c
    }

    /// The index of the column `name`, added if new; `None` when that would be one column more
    /// than [`MAX_COLUMNS`].
    fn column(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.index.get(name) {
            return Some(*i);
        }
        if self.names.len() >= MAX_COLUMNS {
            return None;
        }
        self.names.push(name.to_string());
        self.inference.push(Inference::default());
        self.index.insert(name.to_string(), self.names.len() - 1);
        Some(self.names.len() - 1)
    }

    fn problem(&mut self, p: Problem) {
        match &mut self.batcher {
            Some(b) => self.stop |= b.problem(p),
            None => {
                self.early.push(p);
                self.stop |= self.early.len() >= crate::MAX_PROBLEMS;
            }
        }
    }

    fn push(&mut self, row: Row) -> Result<(), IngestError> {
        if self.batcher.is_none() {
            for (k, v) in &row.fields {
                if self.geo && k == GEOMETRY_COLUMN {
                    continue;
                }
                let Some(i) = self.column(k) else {
                    let p = row.loc.problem(
                        &self.ctx.file_name,
                        Some(&limits::short(k)),
                        limits::too_many_columns(format!("more than {MAX_COLUMNS}")),
                    );
                    self.problem(p);
                    self.stop = true;
                    return Ok(());
                };
                if let Some(t) = json_type(v) {
                    self.inference[i].observe_typed(t);
                }
            }
            self.sample_bytes += row.size;
            self.sample.push(row);
            if self.sample.len() >= self.ctx.sample_rows() || self.sample_bytes >= SAMPLE_BYTES {
                self.start()?;
            }
            return Ok(());
        }
        self.write(row)
    }

    fn start(&mut self) -> Result<(), IngestError> {
        let mut inferred: Vec<ColumnType> = self.inference.iter().map(Inference::decide).collect();
        if self.geo {
            inferred[0] = ColumnType::Geometry;
        }
        let plan = columns::plan(&self.ctx.file_name, &self.names, &inferred, &self.ctx.options).map_err(IngestError::Invalid)?;
        self.sampled = self.sample.len();
        let sink = self.sink.take().expect("started once");
        let mut batcher = Batcher::new(self.ctx, plan, sink)?;
        for p in self.early.drain(..) {
            batcher.problem(p);
        }
        self.batcher = Some(batcher);
        for row in std::mem::take(&mut self.sample) {
            self.write(row)?;
            if self.stop {
                break;
            }
        }
        Ok(())
    }

    fn write(&mut self, mut row: Row) -> Result<(), IngestError> {
        let file = self.ctx.file_name.clone();
        let batcher = self.batcher.as_mut().expect("started");
        let mut problems = Vec::new();
        for key in row.fields.keys() {
            if !(self.index.contains_key(key.as_str()) || self.geo && key == GEOMETRY_COLUMN) {
                problems.push(row.loc.problem(&file, Some(key), format!("field not present in the first {} records", self.sampled)));
            }
        }
        {
            let (cols, idx, builders) = batcher.columns();
            for ((col, src), builder) in cols.iter().zip(idx).zip(builders.iter_mut()) {
                if src.is_none() {
                    builder.push_null();
                    continue;
                }
                if builder.column_type() == ColumnType::Geometry {
                    match row.geometry.take() {
                        Some(wkb) => builder.push_bytes(&wkb),
                        None => builder.push_null(),
                    }
                    continue;
                }
                let result = match row.fields.get(&col.name) {
                    None | Some(Value::Null) => {
                        builder.push_null();
                        Ok(())
                    }
                    Some(Value::Bool(b)) => builder.push_bool(*b),
                    Some(Value::Number(n)) => match n.as_i64() {
                        Some(i) => builder.push_i64(i, col.subject),
                        None => builder.push_f64(n.as_f64().unwrap_or(f64::NAN), col.subject),
                    },
                    Some(Value::String(s)) => builder.push_text(s, col.subject),
                    Some(other) => builder.push_text(&other.to_string(), col.subject),
                };
                if let Err(msg) = result {
                    problems.push(row.loc.problem(&file, Some(&col.name), msg));
                }
            }
        }
        for p in problems {
            self.stop |= batcher.problem(p);
        }
        batcher.end_row()
    }

    fn finish(mut self, sha256: String, bytes: u64) -> Result<SourceReport, IngestError> {
        if self.batcher.is_none() {
            if self.sample.is_empty() && self.early.is_empty() {
                let what = if self.geo { "the FeatureCollection has no features" } else { "the file has no records" };
                return Err(IngestError::Invalid(vec![Problem::file(&self.ctx.file_name, what)]));
            }
            self.start()?;
        }
        self.batcher.take().expect("started").finish(sha256, bytes)
    }
}

fn json_type(v: &Value) -> Option<ColumnType> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_i64() => ColumnType::Integer,
        Value::Number(_) => ColumnType::Float,
        Value::String(s) if values::parse_date(s).is_some() => ColumnType::Date,
        Value::String(s) if values::parse_timestamp(s).is_some() => ColumnType::Timestamp,
        _ => ColumnType::Text,
    })
}

/// Sentinel error text used to unwind serde when the consumer wants to stop.
const STOP: &str = "\u{0}tverr-stop";

/// Sentinel error text for an element larger than [`MAX_ELEMENT_BYTES`].
const TOO_LARGE: &str = "\u{0}tverr-too-large";

/// Sentinel error text for a `crs` member larger than [`MAX_CRS_BYTES`].
const CRS_TOO_LARGE: &str = "\u{0}tverr-crs-too-large";

/// The most memory a GeoJSON `crs` member may take once read.
const MAX_CRS_BYTES: usize = 1 << 20;

/// Parses one JSON value as `serde_json::Value` does, counting the memory it takes (32 bytes a
/// value, plus the text of strings and keys) against a budget, and failing with [`TOO_LARGE`]
/// before it is spent: a feature of ten million points is refused while it is read, not after.
struct Bounded<'b> {
    left: &'b std::cell::Cell<usize>,
    /// The error text when the budget is spent.
    sentinel: &'static str,
}

impl Bounded<'_> {
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let left = self.left.get();
        if bytes > left {
            return Err(E::custom(self.sentinel));
        }
        self.left.set(left - bytes);
        Ok(())
    }

    fn again(&self) -> Self {
        Bounded { left: self.left, sentinel: self.sentinel }
    }
}

/// The memory one `Value` takes besides its contents.
const VALUE_BYTES: usize = std::mem::size_of::<Value>();

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.charge(VALUE_BYTES)?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.charge(VALUE_BYTES)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.charge(VALUE_BYTES)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.charge(VALUE_BYTES)?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.charge(VALUE_BYTES + v.len())?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.charge(VALUE_BYTES + v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.charge(VALUE_BYTES)?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.charge(VALUE_BYTES)?;
        let mut values = Vec::new();
        while let Some(v) = seq.next_element_seed(self.again())? {
            values.push(v);
        }
        Ok(Value::Array(values))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.charge(VALUE_BYTES)?;
        let mut values = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.charge(VALUE_BYTES + key.len())?;
            let v = map.next_value_seed(self.again())?;
            values.insert(key, v);
        }
        Ok(Value::Object(values))
    }
}

/// Parses one element within the budget; returns it with the memory it takes.
fn bounded_element<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<Option<(Value, usize)>, A::Error> {
    let left = std::cell::Cell::new(MAX_ELEMENT_BYTES);
    Ok(seq.next_element_seed(Bounded { left: &left, sentinel: TOO_LARGE })?.map(|v| (v, MAX_ELEMENT_BYTES - left.get())))
}

/// The problem for an element larger than [`MAX_ELEMENT_BYTES`].
fn too_large(file: &str, loc: Loc, geo: bool) -> Problem {
    let what = if geo { "feature" } else { "record" };
    let hint = if geo { format!(" (a geometry may have at most {MAX_POINTS} points)") } else { String::new() };
    loc.problem(file, None, format!("the {what} takes more than {} MiB once read; at most that is allowed{hint}", MAX_ELEMENT_BYTES >> 20))
}

struct ElementSeq<'c, F>(&'c mut F);

impl<'de, F: FnMut(Value, usize) -> Result<(), ()>> Visitor<'de> for ElementSeq<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some((v, size)) = bounded_element(&mut seq)? {
            (self.0)(v, size).map_err(|()| de::Error::custom(STOP))?;
        }
        Ok(())
    }
}

impl<'de, F: FnMut(Value, usize) -> Result<(), ()>> DeserializeSeed<'de> for ElementSeq<'_, F> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// The top level of a GeoJSON document: streams `features`, keeps `type` and `crs`.
struct FeatureCollection<'c, F> {
    on_feature: &'c mut F,
    kind: &'c mut Option<String>,
    crs: &'c mut Option<Value>,
}

impl<'de, F: FnMut(Value, usize) -> Result<(), ()>> Visitor<'de> for FeatureCollection<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GeoJSON FeatureCollection object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => *self.kind = Some(map.next_value()?),
                "crs" => {
                    let left = std::cell::Cell::new(MAX_CRS_BYTES);
                    *self.crs = Some(map.next_value_seed(Bounded { left: &left, sentinel: CRS_TOO_LARGE })?);
                }
                "features" => map.next_value_seed(ElementSeq(&mut *self.on_feature))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn read(ctx: &Context, shape: Shape, sink: &mut dyn BatchSink) -> Result<SourceReport, IngestError> {
    let file = ctx.file_name.clone();
    let mut hashing = ctx.open()?;
    let mut consumer = RowConsumer::new(ctx, shape == Shape::GeoJson, sink);
    let mut failure: Option<IngestError> = None;
    let mut row_no = 0u64;
    let mut bbox = BBox::default();

    match shape {
        Shape::Lines => {
            let mut reader = BufReader::with_capacity(1 << 20, &mut hashing);
            let mut bytes = Vec::new();
            let mut line_no = 0u64;
            loop {
                // A line is read up to the record limit, not without bound.
                bytes.clear();
                let n = (&mut reader).take(MAX_RECORD_BYTES as u64 + 1).read_until(b'\n', &mut bytes).map_err(|e| ctx.io(e))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                let loc = Loc::Line(line_no);
                if bytes.len() > MAX_RECORD_BYTES {
                    let msg = format!("the line is longer than {} MiB; at most that is allowed", MAX_RECORD_BYTES >> 20);
                    consumer.problem(loc.problem(&file, None, msg));
                    break;
                }
                let Ok(line) = std::str::from_utf8(&bytes) else {
                    return Err(IngestError::Invalid(vec![loc.problem(&file, None, "not valid UTF-8")]));
                };
                let trimmed = line.trim().trim_start_matches('\u{feff}');
                if trimmed.is_empty() {
                    continue;
                }
                let left = std::cell::Cell::new(MAX_ELEMENT_BYTES);
                let mut de = serde_json::Deserializer::from_str(trimmed);
                let parsed = Bounded { left: &left, sentinel: TOO_LARGE }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
                let size = MAX_ELEMENT_BYTES - left.get();
                match parsed {
                    Ok(Value::Object(fields)) => consumer.push(Row { loc, fields, geometry: None, size })?,
                    Ok(_) => consumer.problem(loc.problem(&file, None, "expected a JSON object")),
                    Err(e) if e.to_string().starts_with(TOO_LARGE) => consumer.problem(too_large(&file, loc, false)),
                    Err(e) => consumer.problem(loc.problem(&file, None, format!("invalid JSON: {}", serde_message(&e)))),
                }
                if consumer.stop {
                    break;
                }
            }
        }
        Shape::Array | Shape::GeoJson => {
            let reader = BufReader::with_capacity(1 << 20, &mut hashing);
            let mut de = serde_json::Deserializer::from_reader(reader);
            let geo = shape == Shape::GeoJson;
            let mut on_element = |v: Value, size: usize| -> Result<(), ()> {
                row_no += 1;
                let loc = Loc::Row(row_no);
                let row = if geo {
                    feature_row(&file, loc, v, &mut bbox)
                } else {
                    match v {
                        Value::Object(fields) => Ok(Row { loc, fields, geometry: None, size }),
                        _ => Err(loc.problem(&file, None, "expected a JSON object")),
                    }
                };
                match row {
                    Ok(row) => {
                        if let Err(e) = consumer.push(row) {
                            failure = Some(e);
                            return Err(());
                        }
                    }
                    Err(p) => consumer.problem(p),
                }
                if consumer.stop { Err(()) } else { Ok(()) }
            };
            let mut kind = None;
            let mut crs_value = None;
            let result = if geo {
                de::Deserializer::deserialize_map(
                    &mut de,
                    FeatureCollection { on_feature: &mut on_element, kind: &mut kind, crs: &mut crs_value },
                )
            } else {
                de::Deserializer::deserialize_seq(&mut de, ElementSeq(&mut on_element))
            };
            let result = result.and_then(|()| de.end());
            if let Some(e) = failure {
                return Err(e);
            }
            match result {
                Err(e) if e.to_string().starts_with(STOP) => {}
                Err(e) if e.to_string().starts_with(TOO_LARGE) => consumer.problem(too_large(&file, Loc::Row(row_no + 1), geo)),
                Err(e) if e.to_string().starts_with(CRS_TOO_LARGE) => consumer.problem(Problem::at_line(
                    &file,
                    e.line() as u64,
                    Some("crs"),
                    format!("the crs member takes more than {} MiB once read", MAX_CRS_BYTES >> 20),
                )),
                Err(e) => {
                    let msg = if e.is_data() && e.to_string().contains("invalid type") {
                        match shape {
                            Shape::GeoJson => "expected a GeoJSON FeatureCollection object".to_string(),
                            _ => "expected a JSON array of objects (use --format ndjson for one object per line)".to_string(),
                        }
                    } else {
                        format!("invalid JSON: {}", serde_message(&e))
                    };
                    consumer.problem(Problem::at_line(&file, e.line() as u64, None, msg));
                }
                Ok(()) => {}
            }
            if geo {
                if result_is_ok_kind(&kind) {
                    // Without a `crs` member or `--crs`, a file appended to a dataset is in the
                    // dataset's CRS; one that names another is refused (nothing is reprojected).
                    let dataset_crs = ctx.options.target.as_ref().and_then(|t| t.crs.get(GEOMETRY_COLUMN)).cloned();
                    let crs = resolve_crs(&file, crs_value.as_ref(), ctx.options.crs.as_deref().or(dataset_crs.as_deref()));
                    match crs {
                        Ok(crs) => {
                            if let Some(d) = dataset_crs.filter(|d| *d != crs) {
                                consumer.problem(Problem::file(&file, format!("the file's CRS {crs} differs from the dataset's CRS {d}")));
                            }
                            if crs == "EPSG:4326" && !bbox.fits_wgs84() {
                                consumer.problem(Problem::file(
                                    &file,
                                    "coordinates are outside longitude/latitude ranges for EPSG:4326; \
                                     if they are UTM, give the CRS (e.g. --crs EPSG:25833)",
                                ));
                            }
                            consumer.ctx_crs(crs);
                        }
                        Err(p) => consumer.problem(p),
                    }
                } else {
                    consumer.problem(Problem::file(&file, "expected \"type\": \"FeatureCollection\""));
                }
            }
        }
    }
    hashing.drain().map_err(|e| ctx.io(e))?;
    let (sha256, bytes) = hashing.finish();
    let crs = consumer.crs.take();
    let mut report = consumer.finish(sha256, bytes)?;
    report.encoding = Some("UTF-8".into());
    report.crs = crs;
    Ok(report)
}

fn result_is_ok_kind(kind: &Option<String>) -> bool {
    kind.as_deref() == Some("FeatureCollection")
}

impl RowConsumer<'_, '_> {
    fn ctx_crs(&mut self, crs: String) {
        self.crs = Some(crs);
    }
}

fn serde_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &s[..i], e.column()),
        None => s,
    }
}

/// Turns one GeoJSON feature into a row: its properties plus the geometry as WKB.
fn feature_row(file: &str, loc: Loc, v: Value, bbox: &mut BBox) -> Result<Row, Problem> {
    let Value::Object(mut feature) = v else {
        return Err(loc.problem(file, None, "expected a GeoJSON Feature object"));
    };
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(loc.problem(file, None, "expected \"type\": \"Feature\""));
    }
    let fields = match feature.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(loc.problem(file, Some("properties"), "expected an object or null")),
    };
    if fields.contains_key(GEOMETRY_COLUMN) {
        return Err(loc.problem(file, Some(GEOMETRY_COLUMN), "a property may not be named \"geometry\""));
    }
    let geometry = match feature.remove("geometry") {
        None | Some(Value::Null) => None,
        Some(g) => {
            check_geometry(&g, bbox).map_err(|m| loc.problem(file, Some(GEOMETRY_COLUMN), format!("invalid geometry: {m}")))?;
            use geozero::ToWkb;
            let text = g.to_string();
            let wkb = geozero::geojson::GeoJson(&text)
                .to_wkb(geozero::CoordDimensions::xy())
                .map_err(|e| loc.problem(file, Some(GEOMETRY_COLUMN), format!("invalid geometry: {e}")))?;
            Some(wkb)
        }
    };
    let size = geometry.as_ref().map_or(0, Vec::len) + fields.iter().map(|(k, v)| k.len() + value_size(v)).sum::<usize>();
    Ok(Row { loc, fields, geometry, size })
}

/// About how much memory a parsed value takes.
fn value_size(v: &Value) -> usize {
    VALUE_BYTES
        + match v {
            Value::String(s) => s.len(),
            Value::Array(a) => a.iter().map(value_size).sum(),
            Value::Object(m) => m.iter().map(|(k, v)| k.len() + value_size(v)).sum(),
            _ => 0,
        }
}

/// The extent of all coordinates seen, to catch UTM coordinates labelled as WGS84.
#[derive(Debug)]
struct BBox {
    min_x: f64,
    min_y: f64,
    max_x: f64,
    max_y: f64,
}

impl Default for BBox {
    fn default() -> Self {
        Self { min_x: f64::MAX, min_y: f64::MAX, max_x: f64::MIN, max_y: f64::MIN }
    }
}

impl BBox {
    fn add(&mut self, x: f64, y: f64) {
        self.min_x = self.min_x.min(x);
        self.max_x = self.max_x.max(x);
        self.min_y = self.min_y.min(y);
        self.max_y = self.max_y.max(y);
    }
    fn fits_wgs84(&self) -> bool {
        self.min_x > self.max_x || (self.min_x >= -180.0 && self.max_x <= 180.0 && self.min_y >= -90.0 && self.max_y <= 90.0)
    }
}

/// The extent and the points of one geometry, as it is checked.
struct Walk<'b> {
    bbox: &'b mut BBox,
    points: usize,
}

fn position(v: &Value, w: &mut Walk<'_>) -> Result<(), String> {
    w.points += 1;
    if w.points > MAX_POINTS {
        return Err(limits::too_many_points());
    }
    let arr = v.as_array().ok_or("a position must be an array of numbers")?;
    if !(2..=3).contains(&arr.len()) {
        return Err(format!("a position needs 2 or 3 numbers, found {}", arr.len()));
    }
    let nums: Vec<f64> =
        arr.iter().map(|n| n.as_f64().filter(|f| f.is_finite()).ok_or("a coordinate is not a number")).collect::<Result<_, _>>()?;
    if nums[0].abs() > limits::MAX_COORDINATE || nums[1].abs() > limits::MAX_COORDINATE {
        return Err(limits::coordinate_out_of_range());
    }
    w.bbox.add(nums[0], nums[1]);
    Ok(())
}

fn positions(v: &Value, min: usize, what: &str, w: &mut Walk<'_>) -> Result<usize, String> {
    let arr = v.as_array().ok_or_else(|| format!("{what} coordinates must be an array"))?;
    if arr.len() < min {
        return Err(format!("{what} needs at least {min} positions, found {}", arr.len()));
    }
    for p in arr {
        position(p, w)?;
    }
    Ok(arr.len())
}

fn polygon(v: &Value, w: &mut Walk<'_>) -> Result<(), String> {
    let rings = v.as_array().ok_or("Polygon coordinates must be an array of rings")?;
    if rings.is_empty() {
        return Err("a Polygon needs at least one ring".into());
    }
    for ring in rings {
        positions(ring, 4, "a Polygon ring", w)?;
        let pts = ring.as_array().expect("checked");
        if pts.first() != pts.last() {
            return Err("a Polygon ring must be closed (first and last positions equal)".into());
        }
    }
    Ok(())
}

fn each<'v>(v: &'v Value, what: &str) -> Result<&'v Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{what} coordinates must be an array"))
}

/// Checks a GeoJSON geometry: its structure, its positions, at most [`MAX_POINTS`] of them.
fn check_geometry(g: &Value, bbox: &mut BBox) -> Result<(), String> {
    walk_geometry(g, &mut Walk { bbox, points: 0 })
}

fn walk_geometry(g: &Value, w: &mut Walk<'_>) -> Result<(), String> {
    let kind = g.get("type").and_then(Value::as_str).ok_or("missing \"type\"")?;
    if kind == "GeometryCollection" {
        let parts = g.get("geometries").and_then(Value::as_array).ok_or("missing \"geometries\"")?;
        return parts.iter().try_for_each(|p| walk_geometry(p, w));
    }
    let c = g.get("coordinates").ok_or("missing \"coordinates\"")?;
    match kind {
        "Point" => position(c, w),
        "MultiPoint" => positions(c, 0, "MultiPoint", w).map(|_| ()),
        "LineString" => positions(c, 2, "a LineString", w).map(|_| ()),
        "MultiLineString" => each(c, "MultiLineString")?.iter().try_for_each(|l| positions(l, 2, "a LineString", w).map(|_| ())),
        "Polygon" => polygon(c, w),
        "MultiPolygon" => each(c, "MultiPolygon")?.iter().try_for_each(|p| polygon(p, w)),
        other => Err(format!("unknown geometry type {}", values::quote(other))),
    }
}

/// The CRS from the `crs` member, the option, or EPSG:4326 (RFC 7946).
fn resolve_crs(file: &str, member: Option<&Value>, option: Option<&str>) -> Result<String, Problem> {
    let named = member
        .and_then(|m| m.as_str().map(str::to_string).or_else(|| m.pointer("/properties/name").and_then(Value::as_str).map(str::to_string)));
    let raw = match (named, option) {
        (Some(n), _) => n,
        (None, Some(o)) => o.to_string(),
        (None, None) => return Ok("EPSG:4326".into()),
    };
    normalise_crs(&raw).ok_or_else(|| {
        Problem::file(file, format!("unsupported CRS {}; expected EPSG:4326, EPSG:25832 or EPSG:25833", values::quote(&raw)))
    })
}

/// Maps the spellings of the supported CRSs to `EPSG:NNNN`.
pub fn normalise_crs(raw: &str) -> Option<String> {
    let upper = raw.trim().to_ascii_uppercase();
    if upper.ends_with("CRS84") {
        return Some("EPSG:4326".into());
    }
    let code = upper.rsplit([':', '/']).next()?;
    match code {
        "4326" | "25832" | "25833" => Some(format!("EPSG:{code}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crs_spellings() {
        assert_eq!(normalise_crs("urn:ogc:def:crs:EPSG::25833").as_deref(), Some("EPSG:25833"));
        assert_eq!(normalise_crs("EPSG:25832").as_deref(), Some("EPSG:25832"));
        assert_eq!(normalise_crs("urn:ogc:def:crs:OGC:1.3:CRS84").as_deref(), Some("EPSG:4326"));
        assert_eq!(normalise_crs("http://www.opengis.net/def/crs/EPSG/0/4326").as_deref(), Some("EPSG:4326"));
        assert_eq!(normalise_crs("EPSG:3857"), None);
    }

    #[test]
    fn geometry_checks() {
        let mut b = BBox::default();
        let ok = serde_json::json!({"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]});
        assert!(check_geometry(&ok, &mut b).is_ok());
        let open = serde_json::json!({"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]});
        assert!(check_geometry(&open, &mut b).unwrap_err().contains("closed"));
        let short = serde_json::json!({"type":"Point","coordinates":[1]});
        assert!(check_geometry(&short, &mut b).is_err());
        let bad = serde_json::json!({"type":"Pointy","coordinates":[1,2]});
        assert!(check_geometry(&bad, &mut b).unwrap_err().contains("unknown geometry type"));
    }
}
