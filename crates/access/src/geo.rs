//! Coordinate reference systems and the geo functions Tverr adds to SQL next to geodatafusion's:
//! `ST_SetSRID`, `ST_SRID`, `ST_Transform` (proj4rs), `ST_DWithin` and `ST_Intersection`.
//!
//! Geometries are WKB. A geometry column's CRS is catalogue metadata; the secure scan releases
//! each geometry column through `ST_SetSRID`, so the CRS travels with the column as GeoArrow
//! field metadata and `ST_Transform(geometry, 4326)` knows where it starts. Coordinates are
//! always easting/longitude first (x, y), as in GeoJSON and PostGIS, whatever the CRS's
//! official axis order.

use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use geo::{BoundingRect, Coord, Distance, Euclidean, Geodesic, Geometry, Intersects, Point, Rect};
use geoarrow_schema::{Metadata, WkbType};
use geozero::{CoordDimensions, ToGeo, ToWkb};
use proj4rs::Proj;

/// The coordinate reference systems Tverr stores and transforms between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Crs {
    /// WGS 84 longitude/latitude in degrees (EPSG:4326, x = longitude).
    Wgs84,
    /// ETRS89 / UTM zone 32N in metres (EPSG:25832), western Norway.
    Utm32,
    /// ETRS89 / UTM zone 33N in metres (EPSG:25833), Norway's national map projection.
    Utm33,
}

static WGS84: LazyLock<Proj> = LazyLock::new(|| Proj::from_proj_string("+proj=longlat +datum=WGS84 +no_defs").expect("WGS 84"));
static UTM32: LazyLock<Proj> = LazyLock::new(|| utm(32));
static UTM33: LazyLock<Proj> = LazyLock::new(|| utm(33));

/// ETRS89 / UTM zone `zone` north. ETRS89 and WGS 84 are taken as equal (they differ by well under
/// a metre in Norway, and EPSG's own transformation between them is the null one).
fn utm(zone: u8) -> Proj {
    Proj::from_proj_string(&format!("+proj=utm +zone={zone} +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs")).expect("UTM")
}

impl Crs {
    /// Every supported CRS.
    pub const ALL: [Crs; 3] = [Crs::Wgs84, Crs::Utm32, Crs::Utm33];

    /// Reads `EPSG:25833`, `25833`, `urn:ogc:def:crs:EPSG::25833`,
    /// `http://www.opengis.net/def/crs/EPSG/0/25833` or CRS84 (as EPSG:4326).
    pub fn parse(text: &str) -> Option<Crs> {
        let t = text.trim().trim_start_matches('<').trim_end_matches('>');
        let lower = t.to_ascii_lowercase();
        if lower == "crs84" || lower.ends_with("/ogc/1.3/crs84") || lower == "urn:ogc:def:crs:ogc:1.3:crs84" {
            return Some(Crs::Wgs84);
        }
        let code = lower
            .strip_prefix("epsg:")
            .or_else(|| lower.strip_prefix("urn:ogc:def:crs:epsg::"))
            .or_else(|| lower.strip_prefix("http://www.opengis.net/def/crs/epsg/0/"))
            .or_else(|| lower.strip_prefix("https://www.opengis.net/def/crs/epsg/0/"))
            .unwrap_or(&lower);
        match code.parse::<i64>().ok()? {
            4326 => Some(Crs::Wgs84),
            25832 => Some(Crs::Utm32),
            25833 => Some(Crs::Utm33),
            _ => None,
        }
    }

    /// The EPSG code.
    pub fn srid(self) -> i64 {
        match self {
            Crs::Wgs84 => 4326,
            Crs::Utm32 => 25832,
            Crs::Utm33 => 25833,
        }
    }

    /// The OGC URI (what OGC API Features' `Content-Crs` carries).
    pub fn uri(self) -> String {
        format!("http://www.opengis.net/def/crs/EPSG/0/{}", self.srid())
    }

    /// Degrees rather than metres.
    pub fn is_geographic(self) -> bool {
        self == Crs::Wgs84
    }

    fn proj(self) -> &'static Proj {
        match self {
            Crs::Wgs84 => &WGS84,
            Crs::Utm32 => &UTM32,
            Crs::Utm33 => &UTM33,
        }
    }

    /// What a caller may write, for error messages.
    pub fn supported() -> &'static str {
        "EPSG:4326, EPSG:25832 or EPSG:25833"
    }
}

impl fmt::Display for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPSG:{}", self.srid())
    }
}

/// The geometry columns a grant releases with a CRS Tverr knows, in the dataset's order.
pub fn granted_geometry(grant: &tverr_policy::Grant) -> Vec<(String, Crs)> {
    grant.columns().iter().filter_map(|c| Some((c.name.clone(), Crs::parse(c.crs.as_deref()?)?))).collect()
}

/// Transforms one coordinate; degrees for geographic systems.
fn transform_with(from: &Proj, from_geographic: bool, to: &Proj, to_geographic: bool, x: f64, y: f64) -> Result<(f64, f64), String> {
    if !x.is_finite() || !y.is_finite() {
        return Err("a coordinate is not a number".into());
    }
    let mut p = if from_geographic { (x.to_radians(), y.to_radians()) } else { (x, y) };
    proj4rs::transform::transform(from, to, &mut p).map_err(|_| "a coordinate cannot be transformed".to_string())?;
    let out = if to_geographic { (p.0.to_degrees(), p.1.to_degrees()) } else { p };
    if out.0.is_finite() && out.1.is_finite() { Ok(out) } else { Err("a coordinate has no position in the target CRS".into()) }
}

/// Why a geo function failed: the only execution errors Tverr shows as they are, after the
/// function's name (`ST_Transform: …`), because none of them quotes a value.
pub const FAILURES: &[&str] = &[
    GUARDED_FAILURE,
    "a value is not a valid WKB geometry",
    "a coordinate is not a number",
    "a coordinate cannot be transformed",
    "a coordinate has no position in the target CRS",
    "a distance is negative or not a number",
    AREAS_ONLY,
];

/// What `ST_Intersection` says of a geometry that is not an area.
const AREAS_ONLY: &str = "both geometries must be polygons or multipolygons";

/// The names in front of [`FAILURES`].
pub const FAILING_FUNCTIONS: &[&str] = &["ST_Transform", "ST_DWithin", "ST_Intersection", "ST_ functions"];

/// Transforms a coordinate pair between two CRSs.
pub fn transform_point(from: Crs, to: Crs, x: f64, y: f64) -> Result<(f64, f64), String> {
    if from == to {
        return Ok((x, y));
    }
    transform_with(from.proj(), from.is_geographic(), to.proj(), to.is_geographic(), x, y)
}

/// Transforms every coordinate of a geometry in place.
pub fn transform_geometry(g: &mut Geometry, from: Crs, to: Crs) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    each_coord(g, &mut |c| {
        (c.x, c.y) = transform_point(from, to, c.x, c.y)?;
        Ok(())
    })
}

/// Calls `f` on every coordinate (rectangles and triangles become polygons first).
fn each_coord(g: &mut Geometry, f: &mut dyn FnMut(&mut Coord) -> Result<(), String>) -> Result<(), String> {
    fn ring(l: &mut geo::LineString, f: &mut dyn FnMut(&mut Coord) -> Result<(), String>) -> Result<(), String> {
        l.0.iter_mut().try_for_each(f)
    }
    fn polygon(p: &mut geo::Polygon, f: &mut dyn FnMut(&mut Coord) -> Result<(), String>) -> Result<(), String> {
        let (mut exterior, mut interiors) = std::mem::replace(p, geo::Polygon::new(geo::LineString::new(vec![]), vec![])).into_inner();
        ring(&mut exterior, f)?;
        interiors.iter_mut().try_for_each(|r| ring(r, f))?;
        *p = geo::Polygon::new(exterior, interiors);
        Ok(())
    }
    match g {
        Geometry::Point(p) => f(&mut p.0),
        Geometry::Line(l) => {
            f(&mut l.start)?;
            f(&mut l.end)
        }
        Geometry::LineString(l) => ring(l, f),
        Geometry::Polygon(p) => polygon(p, f),
        Geometry::MultiPoint(m) => m.0.iter_mut().try_for_each(|p| f(&mut p.0)),
        Geometry::MultiLineString(m) => m.0.iter_mut().try_for_each(|l| ring(l, f)),
        Geometry::MultiPolygon(m) => m.0.iter_mut().try_for_each(|p| polygon(p, f)),
        Geometry::GeometryCollection(c) => c.0.iter_mut().try_for_each(|g| each_coord(g, f)),
        Geometry::Rect(r) => {
            *g = Geometry::Polygon(r.to_polygon());
            each_coord(g, f)
        }
        Geometry::Triangle(t) => {
            *g = Geometry::Polygon(t.to_polygon());
            each_coord(g, f)
        }
    }
}

/// A rectangle given in `from`, as a polygon in `to`: each edge is divided into 32 pieces
/// first, so the curved image of a straight edge is followed closely.
pub fn bbox_polygon(min_x: f64, min_y: f64, max_x: f64, max_y: f64, from: Crs, to: Crs) -> Result<Geometry, String> {
    const STEPS: usize = 32;
    // A box in degrees taken to UTM is first cut to where the zone's projection holds (60° of
    // longitude either side of its meridian, 80° S to 84° N): a box over the whole world would
    // otherwise have no image, and no stored geometry lies outside.
    let (min_x, min_y, max_x, max_y) = match (from.is_geographic(), to) {
        (true, Crs::Utm32 | Crs::Utm33) => {
            let meridian = if to == Crs::Utm32 { 9.0 } else { 15.0 };
            let cut = (min_x.max(meridian - 60.0), min_y.max(-80.0), max_x.min(meridian + 60.0), max_y.min(84.0));
            if cut.0 > cut.2 || cut.1 > cut.3 {
                // Nowhere the zone reaches: a box at the meridian's foot that meets nothing stored.
                (meridian, -80.0, meridian, -80.0)
            } else {
                cut
            }
        }
        _ => (min_x, min_y, max_x, max_y),
    };
    let corners = [(min_x, min_y), (max_x, min_y), (max_x, max_y), (min_x, max_y), (min_x, min_y)];
    let mut ring = Vec::with_capacity(4 * STEPS + 1);
    for w in corners.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        for i in 0..STEPS {
            let t = i as f64 / STEPS as f64;
            ring.push(Coord { x: x0 + (x1 - x0) * t, y: y0 + (y1 - y0) * t });
        }
    }
    ring.push(ring[0]);
    let mut g = Geometry::Polygon(geo::Polygon::new(geo::LineString::new(ring), vec![]));
    transform_geometry(&mut g, from, to)?;
    Ok(g)
}

/// A geometry as WKB.
pub fn to_wkb(g: &Geometry) -> Result<Vec<u8>, String> {
    g.to_wkb(CoordDimensions::xy()).map_err(|e| e.to_string())
}

fn from_wkb(bytes: &[u8]) -> DfResult<Geometry> {
    match geozero::wkb::Wkb(bytes).to_geo() {
        Ok(g) => Ok(g),
        Err(_) => exec_err!("ST_ functions: a value is not a valid WKB geometry"),
    }
}

/// The CRS a geometry field carries (GeoArrow metadata), if any.
pub fn field_crs(field: &Field) -> Option<Crs> {
    let metadata = Metadata::try_from(field).ok()?;
    let value = metadata.crs().crs_value()?;
    match value {
        serde_json::Value::String(s) => Crs::parse(s),
        serde_json::Value::Number(n) => Crs::parse(&n.to_string()),
        serde_json::Value::Object(o) => {
            let id = o.get("id")?;
            Crs::parse(&id.get("code")?.to_string())
        }
        _ => None,
    }
}

/// A WKB field that carries its CRS.
pub fn geometry_field(name: &str, crs: Crs) -> Field {
    let crs = geoarrow_schema::Crs::from_authority_code(crs.to_string());
    Field::new(name, DataType::Binary, true).with_extension_type(WkbType::new(Arc::new(Metadata::new(crs, None))))
}

/// Whether a field can hold geometries: WKB, WKT or a GeoArrow type.
fn is_geometry(field: &Field) -> bool {
    matches!(field.data_type(), DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
        || geoarrow_schema::GeoArrowType::from_extension_field(field).ok().flatten().is_some()
}

/// Any geometry argument as plain WKB.
fn wkb_array(array: &ArrayRef, field: &Field) -> DfResult<BinaryArray> {
    let geo_err = |e: geoarrow_schema::error::GeoArrowError| datafusion::error::DataFusionError::Execution(e.to_string());
    match array.data_type() {
        DataType::Binary => Ok(array.as_binary::<i32>().clone()),
        DataType::LargeBinary | DataType::BinaryView => Ok(cast(array, &DataType::Binary)?.as_binary::<i32>().clone()),
        _ => {
            let geo = geoarrow_array::array::from_arrow_array(array.as_ref(), field).map_err(geo_err)?;
            let wkb = geoarrow_array::cast::to_wkb::<i32>(geo.as_ref()).map_err(geo_err)?;
            Ok(geoarrow_array::GeoArrowArray::into_array_ref(wkb).as_binary::<i32>().clone())
        }
    }
}

/// An SRID argument given as a constant: `25833` or `'EPSG:25833'`.
fn srid_argument(function: &str, value: Option<&ScalarValue>) -> DfResult<Crs> {
    let text = match value {
        Some(ScalarValue::Int64(Some(n))) => n.to_string(),
        Some(ScalarValue::Int32(Some(n))) => n.to_string(),
        Some(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => s.clone(),
        _ => return plan_err!("{function}: the SRID must be a constant such as 25833 or 'EPSG:25833'"),
    };
    Crs::parse(&text).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!("{function}: unsupported CRS {text}; Tverr supports {}", Crs::supported()))
    })
}

fn geometry_argument(function: &str, field: &Field) -> DfResult<()> {
    if is_geometry(field) { Ok(()) } else { plan_err!("{function}: expected a geometry, found {} ({})", field.name(), field.data_type()) }
}

/// `ST_SetSRID(geometry, srid)`: the same geometries, marked as being in `srid`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SetSrid {
    signature: Signature,
}

impl SetSrid {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { signature: Signature::any(2, Volatility::Immutable) })
    }
}

impl ScalarUDFImpl for SetSrid {
    fn name(&self) -> &str {
        "st_setsrid"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        geometry_argument("ST_SetSRID", &args.arg_fields[0])?;
        let crs = srid_argument("ST_SetSRID", args.scalar_arguments[1])?;
        Ok(Arc::new(geometry_field(args.arg_fields[0].name(), crs)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        let wkb: ArrayRef = Arc::new(wkb_array(&array, &args.arg_fields[0])?);
        Ok(ColumnarValue::Array(wkb))
    }
}

/// `ST_SRID(geometry)`: the EPSG code a geometry is marked with, or null.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Srid {
    signature: Signature,
}

impl Srid {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { signature: Signature::any(1, Volatility::Immutable) })
    }
}

impl ScalarUDFImpl for Srid {
    fn name(&self) -> &str {
        "st_srid"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        geometry_argument("ST_SRID", &args.arg_fields[0])?;
        Ok(Arc::new(Field::new(self.name(), DataType::Int64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Int64(field_crs(&args.arg_fields[0]).map(Crs::srid))))
    }
}

/// `ST_Transform(geometry, to_srid)` (the geometry must carry its CRS) or
/// `ST_Transform(geometry, from_srid, to_srid)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    signature: Signature,
    /// A geometry with no position in the target CRS becomes null instead of failing the query.
    lenient: bool,
}

impl Transform {
    /// The function.
    pub fn udf() -> ScalarUDF {
        let signature = Signature::one_of(vec![TypeSignature::Any(2), TypeSignature::Any(3)], Volatility::Immutable);
        ScalarUDF::new_from_impl(Self { signature, lenient: false })
    }

    /// The function as reads use it for their output CRS (never registered by name): one stored
    /// geometry that has no position in the asked CRS (a steward's typo of 10⁹ metres) is shown
    /// as null, not a failure of every read of the dataset in that CRS.
    pub fn output_udf() -> ScalarUDF {
        let signature = Signature::one_of(vec![TypeSignature::Any(2), TypeSignature::Any(3)], Volatility::Immutable);
        ScalarUDF::new_from_impl(Self { signature, lenient: true })
    }

    fn crs_pair(fields: &[FieldRef], scalars: &[Option<&ScalarValue>]) -> DfResult<(Crs, Crs)> {
        geometry_argument("ST_Transform", &fields[0])?;
        if fields.len() == 3 {
            return Ok((srid_argument("ST_Transform", scalars[1])?, srid_argument("ST_Transform", scalars[2])?));
        }
        let to = srid_argument("ST_Transform", scalars[1])?;
        match field_crs(&fields[0]) {
            Some(from) => Ok((from, to)),
            None => plan_err!(
                "ST_Transform: the CRS of {} is not known; give it: ST_Transform(geometry, from_srid, to_srid) or ST_SetSRID(geometry, srid)",
                fields[0].name()
            ),
        }
    }
}

impl ScalarUDFImpl for Transform {
    fn name(&self) -> &str {
        if self.lenient { "tverr_output_transform" } else { "st_transform" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let (_, to) = Self::crs_pair(args.arg_fields, args.scalar_arguments)?;
        Ok(Arc::new(geometry_field(args.arg_fields[0].name(), to)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalars: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let (from, to) = Self::crs_pair(&args.arg_fields, &scalars)?;
        let input = wkb_array(&args.args[0].to_array(args.number_rows)?, &args.arg_fields[0])?;
        let mut out = BinaryBuilder::with_capacity(input.len(), input.value_data().len());
        for value in input.iter() {
            match value {
                None => out.append_null(),
                Some(bytes) => {
                    let mut g = from_wkb(bytes)?;
                    match transform_geometry(&mut g, from, to) {
                        Ok(()) => out.append_value(to_wkb(&g).map_err(datafusion::error::DataFusionError::Execution)?),
                        Err(_) if self.lenient => out.append_null(),
                        Err(e) => return Err(datafusion::error::DataFusionError::Execution(format!("ST_Transform: {e}"))),
                    }
                }
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

/// `ST_DWithin(a, b, distance)`: whether `a` and `b` are at most `distance` apart (0: they
/// touch or overlap). When both carry a CRS and they differ, `b` is transformed into `a`'s; a
/// geometry without one is taken to be in the other's. Distances are in metres for EPSG:4326
/// (on the ellipsoid for two points, otherwise in the UTM zone of `a`) and in the CRS's units
/// for the others (metres for UTM).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DWithin {
    signature: Signature,
}

impl DWithin {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { signature: Signature::any(3, Volatility::Immutable) })
    }
}

/// The UTM zone (as a projection) of a longitude.
fn utm_for(longitude: f64) -> Proj {
    let zone = (((longitude + 180.0) / 6.0).floor() as i64 + 1).clamp(1, 60) as u8;
    utm(zone)
}

/// Geometries ready to be compared with one `b`.
struct Near {
    b: Geometry,
    /// `b`'s bounding box grown by the distance, in the comparison's plane.
    reach: Option<Rect>,
    distance: f64,
    geographic: bool,
}

impl Near {
    fn new(b: Geometry, distance: f64, geographic: bool) -> Self {
        let reach = if geographic {
            None
        } else {
            b.bounding_rect().map(|r| {
                let d = Coord { x: distance, y: distance };
                Rect::new(r.min() - d, r.max() + d)
            })
        };
        Self { b, reach, distance, geographic }
    }

    /// Whether `a` is within the distance; `None` (unknown) when either cannot be measured.
    fn within(&self, a: &Geometry) -> DfResult<Option<bool>> {
        if !measurable(a) || !measurable(&self.b) {
            return Ok(None);
        }
        self.measured(a).map(Some)
    }

    fn measured(&self, a: &Geometry) -> DfResult<bool> {
        if !self.geographic {
            if let (Some(reach), Some(ra)) = (self.reach, a.bounding_rect())
                && !reach.intersects(&ra)
            {
                return Ok(false);
            }
            return Ok(if self.distance == 0.0 { a.intersects(&self.b) } else { Euclidean.distance(a, &self.b) <= self.distance });
        }
        // Meeting a shape given in degrees (a box in longitude and latitude) is meeting it in
        // degrees; only a distance needs the ellipsoid.
        if self.distance == 0.0 {
            return Ok(a.intersects(&self.b));
        }
        if let (Geometry::Point(pa), Geometry::Point(pb)) = (a, &self.b) {
            return Ok(Geodesic.distance(*pa, *pb) <= self.distance);
        }
        // Anything else in degrees: compare in the UTM zone of a.
        let Some(centre) = a.bounding_rect().map(|r| r.center()) else { return Ok(false) };
        let zone = utm_for(centre.x);
        let project = |g: &Geometry| -> DfResult<Geometry> {
            let mut g = g.clone();
            each_coord(&mut g, &mut |c| {
                (c.x, c.y) = transform_with(&WGS84, true, &zone, false, c.x, c.y)?;
                Ok(())
            })
            .map_err(|e| datafusion::error::DataFusionError::Execution(format!("ST_DWithin: {e}")))?;
            Ok(g)
        };
        Near::new(project(&self.b)?, self.distance, false).measured(&project(a)?)
    }
}

/// Coordinates beyond this are not measured (the ingest refuses them; older data may hold them).
const MAX_COORDINATE: f64 = 1e9;

/// Whether distances to a geometry can be computed: every coordinate finite and within
/// ±[`MAX_COORDINATE`], line strings of two points or more, polygon rings of four or more, closed,
/// and no empty collection. The geometry library cannot measure others (it panics), so their
/// distance is unknown rather than a failure of every read near them.
fn measurable(g: &Geometry) -> bool {
    fn coord(c: &Coord) -> bool {
        c.x.is_finite() && c.y.is_finite() && c.x.abs() <= MAX_COORDINATE && c.y.abs() <= MAX_COORDINATE
    }
    fn line(l: &geo::LineString, min: usize) -> bool {
        l.0.len() >= min && l.0.iter().all(coord)
    }
    fn ring(l: &geo::LineString) -> bool {
        line(l, 4) && l.0.first() == l.0.last()
    }
    fn polygon(p: &geo::Polygon) -> bool {
        ring(p.exterior()) && p.interiors().iter().all(ring)
    }
    match g {
        Geometry::Point(p) => coord(&p.0),
        Geometry::Line(l) => coord(&l.start) && coord(&l.end),
        Geometry::LineString(l) => line(l, 2),
        Geometry::Polygon(p) => polygon(p),
        Geometry::MultiPoint(m) => !m.0.is_empty() && m.0.iter().all(|p| coord(&p.0)),
        Geometry::MultiLineString(m) => !m.0.is_empty() && m.0.iter().all(|l| line(l, 2)),
        Geometry::MultiPolygon(m) => !m.0.is_empty() && m.0.iter().all(polygon),
        Geometry::GeometryCollection(c) => !c.0.is_empty() && c.0.iter().all(measurable),
        Geometry::Rect(r) => coord(&r.min()) && coord(&r.max()),
        Geometry::Triangle(t) => t.to_array().iter().all(coord),
    }
}

impl ScalarUDFImpl for DWithin {
    fn name(&self) -> &str {
        "st_dwithin"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        geometry_argument("ST_DWithin", &args.arg_fields[0])?;
        geometry_argument("ST_DWithin", &args.arg_fields[1])?;
        if !args.arg_fields[2].data_type().is_numeric() {
            return plan_err!("ST_DWithin: the distance must be a number, found {}", args.arg_fields[2].data_type());
        }
        Ok(Arc::new(Field::new(self.name(), DataType::Boolean, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let crs_a = field_crs(&args.arg_fields[0]);
        let crs_b = field_crs(&args.arg_fields[1]);
        let geographic = crs_a.or(crs_b).is_some_and(Crs::is_geographic);
        let exec = |e: String| datafusion::error::DataFusionError::Execution(format!("ST_DWithin: {e}"));
        let load = |bytes: &[u8]| -> DfResult<Geometry> {
            let mut g = from_wkb(bytes)?;
            if let (Some(from), Some(to)) = (crs_b, crs_a) {
                transform_geometry(&mut g, from, to).map_err(exec)?;
            }
            Ok(g)
        };
        let a = wkb_array(&args.args[0].to_array(rows)?, &args.arg_fields[0])?;
        let distances = cast(&args.args[2].to_array(rows)?, &DataType::Float64)?;
        let distances = distances.as_primitive::<arrow::datatypes::Float64Type>();
        let mut out = BooleanBuilder::with_capacity(rows);
        // A constant b (the usual case: a point or a box) is read once.
        let constant = match (&args.args[1], &args.args[2]) {
            (ColumnarValue::Scalar(b), ColumnarValue::Scalar(d)) => {
                let b = wkb_array(&b.to_array_of_size(1)?, &args.arg_fields[1])?;
                // From the scalar itself: a batch may have no rows.
                let d = cast(&d.to_array_of_size(1)?, &DataType::Float64)?;
                let d = d.as_primitive::<arrow::datatypes::Float64Type>();
                let d = d.is_valid(0).then(|| d.value(0));
                match (b.is_valid(0), d) {
                    (true, Some(d)) if d >= 0.0 && d.is_finite() => Some(Some(Near::new(load(b.value(0))?, d, geographic))),
                    (true, Some(_)) => return exec_err!("ST_DWithin: a distance is negative or not a number"),
                    _ => Some(None),
                }
            }
            _ => None,
        };
        let bs = match constant {
            Some(_) => None,
            None => Some(wkb_array(&args.args[1].to_array(rows)?, &args.arg_fields[1])?),
        };
        for i in 0..rows {
            if a.is_null(i) {
                out.append_null();
                continue;
            }
            let ga = from_wkb(a.value(i))?;
            match (&constant, &bs) {
                (Some(None), _) => out.append_null(),
                (Some(Some(near)), _) => out.append_option(near.within(&ga)?),
                (None, Some(bs)) => {
                    if bs.is_null(i) || distances.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    let d = distances.value(i);
                    if !(d >= 0.0 && d.is_finite()) {
                        return exec_err!("ST_DWithin: a distance is negative or not a number");
                    }
                    out.append_option(Near::new(load(bs.value(i))?, d, geographic).within(&ga)?);
                }
                (None, None) => unreachable!("b is either constant or an array"),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

/// `ST_Intersection(a, b)`: the area `a` and `b` share, as a (multi)polygon in `a`'s CRS (`b` is
/// transformed into it when both carry one and they differ). Both must be areal (polygons or
/// multipolygons); an empty result is an empty multipolygon, whose `ST_Area` is 0.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Intersection {
    signature: Signature,
}

impl Intersection {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { signature: Signature::any(2, Volatility::Immutable) })
    }
}

/// An areal geometry as a multipolygon, or why it is not one.
fn areal(g: Geometry) -> DfResult<geo::MultiPolygon> {
    match g {
        Geometry::Polygon(p) => Ok(geo::MultiPolygon::new(vec![p])),
        Geometry::MultiPolygon(m) => Ok(m),
        Geometry::Rect(r) => Ok(geo::MultiPolygon::new(vec![r.to_polygon()])),
        _ => exec_err!("ST_Intersection: {AREAS_ONLY}"),
    }
}

impl ScalarUDFImpl for Intersection {
    fn name(&self) -> &str {
        "st_intersection"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        geometry_argument("ST_Intersection", &args.arg_fields[0])?;
        geometry_argument("ST_Intersection", &args.arg_fields[1])?;
        Ok(Arc::new(match field_crs(&args.arg_fields[0]).or_else(|| field_crs(&args.arg_fields[1])) {
            Some(crs) => geometry_field(self.name(), crs),
            None => Field::new(self.name(), DataType::Binary, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use geo::BooleanOps;
        let rows = args.number_rows;
        let (crs_a, crs_b) = (field_crs(&args.arg_fields[0]), field_crs(&args.arg_fields[1]));
        let a = wkb_array(&args.args[0].to_array(rows)?, &args.arg_fields[0])?;
        let b = wkb_array(&args.args[1].to_array(rows)?, &args.arg_fields[1])?;
        let mut out = BinaryBuilder::with_capacity(rows, 64 * rows);
        // A constant b (a parcel compared with every plan) is read once.
        let constant = matches!(args.args[1], ColumnarValue::Scalar(_));
        let load_b = |i: usize| -> DfResult<Option<geo::MultiPolygon>> {
            if b.is_null(i) {
                return Ok(None);
            }
            let mut g = from_wkb(b.value(i))?;
            if let (Some(from), Some(to)) = (crs_b, crs_a) {
                transform_geometry(&mut g, from, to)
                    .map_err(|e| datafusion::error::DataFusionError::Execution(format!("ST_Intersection: {e}")))?;
            }
            areal(g).map(Some)
        };
        let fixed = if constant && rows > 0 { Some(load_b(0)?) } else { None };
        for i in 0..rows {
            let gb = match &fixed {
                Some(g) => g.clone(),
                None => load_b(i)?,
            };
            match (a.is_null(i), gb) {
                (false, Some(gb)) => {
                    let shared = areal(from_wkb(a.value(i))?)?.intersection(&gb);
                    out.append_value(to_wkb(&Geometry::MultiPolygon(shared)).map_err(datafusion::error::DataFusionError::Execution)?);
                }
                _ => out.append_null(),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

/// The geo functions, built once.
static FUNCTIONS: LazyLock<Vec<Arc<ScalarUDF>>> = LazyLock::new(|| {
    let ctx = SessionContext::new();
    geodatafusion::register(&ctx);
    let state = ctx.state();
    let mut functions: Vec<Arc<ScalarUDF>> = state
        .scalar_functions()
        .iter()
        .filter(|(name, _)| name.starts_with("st_") || *name == "box2d" || *name == "box3d" || *name == "geometrytype")
        .map(|(_, f)| f.clone())
        .collect();
    functions.retain(|f| !matches!(f.name(), "st_setsrid" | "st_srid" | "st_transform" | "st_dwithin" | "st_intersection"));
    // geodatafusion's functions panic on some inputs (a NULL geometry beside a column, for
    // `ST_Intersects`); each call is made a failure of that query instead.
    let mut functions: Vec<Arc<ScalarUDF>> =
        functions.into_iter().map(|f| Arc::new(ScalarUDF::new_from_impl(Guarded { inner: f.inner().clone(), bound: None }))).collect();
    functions.extend([SetSrid::udf(), Srid::udf(), Transform::udf(), DWithin::udf()].map(Arc::new));
    // Polygon clipping can panic on degenerate rings: guarded like geodatafusion's functions.
    functions.push(Arc::new(ScalarUDF::new_from_impl(Guarded { inner: Intersection::udf().inner().clone(), bound: None })));
    functions
});

/// A function of a dependency behind a guard. A geo function (`bound: None`): its panics become
/// the query's error ("the function failed on its input"), so no input can end the process that
/// runs it. A text function (`bound: Some`): its result's size is bounded before it runs
/// (`text.rs`).
#[derive(Debug)]
pub(crate) struct Guarded {
    pub(crate) inner: Arc<dyn ScalarUDFImpl>,
    pub(crate) bound: Option<crate::text::Growth>,
}

impl PartialEq for Guarded {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name() && self.inner.signature() == other.inner.signature() && self.bound == other.bound
    }
}

impl Eq for Guarded {}

impl std::hash::Hash for Guarded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn simplify(
        &self,
        args: Vec<datafusion::logical_expr::Expr>,
        info: &datafusion::logical_expr::simplify::SimplifyContext,
    ) -> DfResult<datafusion::logical_expr::simplify::ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let Some(growth) = self.bound {
            crate::text::check(self.inner.name(), growth, &args.args, args.number_rows)?;
            return self.inner.invoke_with_args(args);
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.invoke_with_args(args))) {
            Ok(result) => result,
            Err(_) => exec_err!("ST_ functions: {}", GUARDED_FAILURE),
        }
    }
}

/// What a guarded geo function that panicked says (after "ST_ functions: ").
const GUARDED_FAILURE: &str = "a geometry is missing or cannot be used here";

/// The names of the geo functions a query may call.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().flat_map(|f| std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)))
}

/// Registers the geo functions in a session.
pub fn register(ctx: &SessionContext) {
    for f in FUNCTIONS.iter() {
        ctx.register_udf(f.as_ref().clone());
    }
}

/// A spatial filter of a REST read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spatial {
    /// Rows whose geometry meets this rectangle.
    Bbox {
        /// West.
        min_x: f64,
        /// South.
        min_y: f64,
        /// East.
        max_x: f64,
        /// North.
        max_y: f64,
        /// The rectangle's CRS.
        crs: Crs,
    },
    /// Rows whose geometry is at most `metres` from a point.
    Near {
        /// Easting or longitude.
        x: f64,
        /// Northing or latitude.
        y: f64,
        /// Distance in metres.
        metres: f64,
        /// The point's CRS.
        crs: Crs,
    },
}

impl Spatial {
    /// The geometry to compare with, in `target` (the column's CRS), and the distance.
    pub fn in_crs(&self, target: Crs) -> Result<(Geometry, f64), String> {
        match *self {
            Spatial::Bbox { min_x, min_y, max_x, max_y, crs } => Ok((bbox_polygon(min_x, min_y, max_x, max_y, crs, target)?, 0.0)),
            Spatial::Near { x, y, metres, crs } => {
                let (x, y) = transform_point(crs, target, x, y)?;
                Ok((Geometry::Point(Point::new(x, y)), metres))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference points (`tests/geo/known_points.csv`): longitude, latitude and their
    /// EPSG:25832 and EPSG:25833 coordinates as PROJ computes them.
    fn known_points() -> Vec<[f64; 6]> {
        let text = include_str!("../../../tests/geo/known_points.csv");
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("name"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let n: Vec<f64> = f[1..].iter().map(|v| v.trim().parse().expect("number")).collect();
                [n[0], n[1], n[2], n[3], n[4], n[5]]
            })
            .collect()
    }

    #[test]
    fn parses_the_ways_a_crs_is_written() {
        for text in [
            "EPSG:25833",
            "epsg:25833",
            "25833",
            "urn:ogc:def:crs:EPSG::25833",
            "http://www.opengis.net/def/crs/EPSG/0/25833",
            "<http://www.opengis.net/def/crs/EPSG/0/25833>",
        ] {
            assert_eq!(Crs::parse(text), Some(Crs::Utm33), "{text}");
        }
        assert_eq!(Crs::parse("CRS84"), Some(Crs::Wgs84));
        assert_eq!(Crs::parse("http://www.opengis.net/def/crs/OGC/1.3/CRS84"), Some(Crs::Wgs84));
        assert_eq!(Crs::parse("EPSG:3857"), None);
        assert_eq!(Crs::parse("EPSG:"), None);
        assert_eq!(Crs::parse(""), None);
    }

    #[test]
    fn transforms_match_proj_at_known_points() {
        let points = known_points();
        assert!(points.len() >= 10);
        for [lon, lat, x32, y32, x33, y33] in points {
            for (crs, x, y) in [(Crs::Utm32, x32, y32), (Crs::Utm33, x33, y33)] {
                let (gx, gy) = transform_point(Crs::Wgs84, crs, lon, lat).unwrap();
                assert!((gx - x).abs() < 0.001 && (gy - y).abs() < 0.001, "{lon},{lat} → {crs}: ({gx}, {gy}), PROJ says ({x}, {y})");
                let (blon, blat) = transform_point(crs, Crs::Wgs84, x, y).unwrap();
                assert!(
                    (blon - lon).abs() < 1e-8 && (blat - lat).abs() < 1e-8,
                    "{crs} ({x}, {y}) → ({blon}, {blat}), expected ({lon}, {lat})"
                );
            }
            let (ux, uy) = transform_point(Crs::Utm32, Crs::Utm33, x32, y32).unwrap();
            assert!((ux - x33).abs() < 0.001 && (uy - y33).abs() < 0.001, "zone 32 → 33 at {lon},{lat}");
        }
    }

    #[test]
    fn the_central_meridian_maps_to_the_false_easting() {
        let (x, y) = transform_point(Crs::Wgs84, Crs::Utm33, 15.0, 0.0).unwrap();
        assert!((x - 500_000.0).abs() < 1e-6 && y.abs() < 1e-6, "({x}, {y})");
        let (x, _) = transform_point(Crs::Wgs84, Crs::Utm32, 9.0, 61.0).unwrap();
        assert!((x - 500_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_bbox_in_degrees_becomes_a_curved_polygon_in_utm() {
        let g = bbox_polygon(10.0, 60.0, 11.0, 61.0, Crs::Wgs84, Crs::Utm33).unwrap();
        let Geometry::Polygon(p) = &g else { panic!("polygon") };
        assert_eq!(p.exterior().0.len(), 129);
        let (cx, cy) = transform_point(Crs::Wgs84, Crs::Utm33, 10.5, 60.5).unwrap();
        assert!(g.intersects(&Point::new(cx, cy)));
        let (ox, oy) = transform_point(Crs::Wgs84, Crs::Utm33, 11.01, 60.5).unwrap();
        assert!(!g.intersects(&Point::new(ox, oy)));
    }

    #[test]
    fn distances_in_degrees_are_metres_on_the_ellipsoid() {
        // One minute of latitude at 60° N is 1856.874 m on the WGS 84 ellipsoid (PROJ's geod).
        let b = Geometry::Point(Point::new(10.0, 60.0));
        let a = Geometry::Point(Point::new(10.0, 60.0 + 1.0 / 60.0));
        assert!(Near::new(b.clone(), 1856.88, true).within(&a).unwrap().unwrap());
        assert!(!Near::new(b.clone(), 1856.86, true).within(&a).unwrap().unwrap());
        // A line through a, compared in UTM zone 32: the straight segment lies about 4 m north of
        // the parallel through a.
        let line = Geometry::LineString(geo::LineString::from(vec![(9.9, 60.0 + 1.0 / 60.0), (10.1, 60.0 + 1.0 / 60.0)]));
        assert!(Near::new(b.clone(), 1865.0, true).within(&line).unwrap().unwrap());
        assert!(!Near::new(b, 1850.0, true).within(&line).unwrap().unwrap());
    }

    #[test]
    fn a_shape_that_cannot_be_measured_is_at_an_unknown_distance() {
        let near = Near::new(Geometry::Point(Point::new(0.0, 0.0)), 10.0, false);
        // A ring of two points (closed to three) and a coordinate past a billion: the geometry
        // library would panic on both.
        let sliver = Geometry::Polygon(geo::Polygon::new(geo::LineString::from(vec![(1.0, 1.0), (2.0, 2.0)]), vec![]));
        let far = Geometry::LineString(geo::LineString::from(vec![(1.0, 1.0), (1e308, 1.0)]));
        let empty = Geometry::MultiPolygon(geo::MultiPolygon(vec![]));
        for g in [&sliver, &far, &empty] {
            assert_eq!(near.within(g).unwrap(), None, "{g:?}");
        }
        assert_eq!(Near::new(far.clone(), 10.0, false).within(&Geometry::Point(Point::new(0.0, 0.0))).unwrap(), None);
        assert_eq!(near.within(&Geometry::Point(Point::new(3.0, 4.0))).unwrap(), Some(true));
    }

    #[test]
    fn wkb_round_trips_through_a_transform() {
        let mut g = Geometry::Point(Point::new(287_000.0, 6_744_500.0));
        transform_geometry(&mut g, Crs::Utm33, Crs::Wgs84).unwrap();
        let bytes = to_wkb(&g).unwrap();
        let mut back = from_wkb(&bytes).unwrap();
        transform_geometry(&mut back, Crs::Wgs84, Crs::Utm33).unwrap();
        let Geometry::Point(p) = back else { panic!("a point") };
        assert!((p.x() - 287_000.0).abs() < 1e-6 && (p.y() - 6_744_500.0).abs() < 1e-6);
        assert!(from_wkb(b"not wkb").is_err());
    }

    #[tokio::test]
    async fn the_intersection_of_two_squares_is_their_shared_area() {
        let ctx = SessionContext::new();
        register(&ctx);
        let sql = "SELECT ST_Area(ST_Intersection(ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'), \
                   ST_GeomFromText('POLYGON((5 0, 20 0, 20 10, 5 10, 5 0))'))) AS shared, \
                   ST_Area(ST_Intersection(ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))'), \
                   ST_GeomFromText('POLYGON((5 5, 6 5, 6 6, 5 6, 5 5))'))) AS apart";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let value = |c: usize| batches[0].column(c).as_primitive::<arrow::datatypes::Float64Type>().value(0);
        assert!((value(0) - 50.0).abs() < 1e-9, "shared {}", value(0));
        assert_eq!(value(1), 0.0);
        let points = "SELECT ST_Intersection(ST_Point(1, 1), ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))'))";
        let failed = ctx.sql(points).await.unwrap().collect().await.unwrap_err().to_string();
        assert!(failed.contains(&format!("ST_Intersection: {AREAS_ONLY}")), "{failed}");
    }
}
