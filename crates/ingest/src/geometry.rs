//! Geometries written as text in a column: WKT, EWKT (`SRID=25833;POINT(…)`) and hex WKB or EWKB,
//! as QGIS, PostGIS and Tverr's own CSV export write them. They are stored as WKB (2D), like
//! GeoJSON geometries, with at most [`MAX_POINTS`] points each.

use geozero::{CoordDimensions, GeomProcessor, GeozeroGeometry, ToWkb};

use crate::limits::{self, MAX_POINTS};

/// The CRSs Tverr stores, by EPSG code.
pub(crate) const SUPPORTED_SRIDS: [u32; 3] = [4326, 25832, 25833];

/// Column names that say the column holds geometries (compared in lower case).
const GEOMETRY_NAMES: [&str; 14] = [
    "wkt",
    "ewkt",
    "wkb",
    "ewkb",
    "geometry",
    "geom",
    "the_geom",
    "wkb_geometry",
    "geometri",
    "geometrie",
    "shape",
    "geography",
    "geog",
    "geometry_wkt",
];

/// Whether a column's name says it holds geometries.
pub(crate) fn is_geometry_name(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    GEOMETRY_NAMES.contains(&name.as_str())
}

/// WKT geometry keywords.
const KEYWORDS: [&str; 7] = ["POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"];

/// How a value writes its geometry, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    Wkt,
    HexWkb,
}

/// The SRID prefix of EWKT (`SRID=25833;`), and the rest.
fn split_srid(value: &str) -> Result<(Option<u32>, &str), String> {
    let v = value.trim();
    if !v.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("SRID=")) {
        return Ok((None, v));
    }
    let rest = &v[5..];
    let end = rest.find(';').ok_or("an EWKT SRID must end with \";\"")?;
    let srid = rest[..end].trim().parse::<u32>().map_err(|_| "the EWKT SRID is not a number".to_string())?;
    Ok((Some(srid), rest[end + 1..].trim_start()))
}

/// Whether `value` looks like a geometry written as text (without parsing it).
pub(crate) fn written(value: &str) -> Option<Written> {
    let v = value.trim();
    let (_, rest) = split_srid(v).ok()?;
    let head: String = rest.chars().take(20).collect::<String>().to_ascii_uppercase();
    if let Some(k) = KEYWORDS.iter().filter(|k| head.starts_with(**k)).max_by_key(|k| k.len()) {
        let after = head[k.len()..].trim_start();
        // A dimension (`POINT Z (…)`, `POINTZM(…)`) may come before the coordinates.
        let after = ["ZM", "Z", "M"]
            .iter()
            .find_map(|d| after.strip_prefix(d).filter(|r| r.starts_with([' ', '('])))
            .map_or(after, str::trim_start);
        if after.starts_with('(') || after.starts_with("EMPTY") {
            return Some(Written::Wkt);
        }
    }
    let hex = v.len() >= 10 && v.len().is_multiple_of(2) && v.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && (v.starts_with("00") || v.starts_with("01"))).then_some(Written::HexWkb)
}

/// A geometry read from text.
#[derive(Debug)]
pub(crate) struct Geometry {
    /// 2D OGC WKB.
    pub wkb: Vec<u8>,
    /// The SRID the value names (EWKT, EWKB), if any.
    pub srid: Option<u32>,
    /// Whether every coordinate is within longitude/latitude ranges.
    pub fits_wgs84: bool,
}

/// Counts the points of a geometry and their extent, refusing more than [`MAX_POINTS`], and
/// checks its structure as the GeoJSON reader does: a line string has at least two points, a
/// polygon at least one ring, and a ring at least four points, the first equal to the last.
#[derive(Default)]
struct Count {
    points: usize,
    outside_wgs84: bool,
    /// Inside a polygon: line strings are its rings.
    in_polygon: bool,
    /// The current line string, if one is being read.
    line: Option<Line>,
}

/// A line string as it is read: its points so far, its first and its last.
#[derive(Default)]
struct Line {
    points: usize,
    first: (f64, f64),
    last: (f64, f64),
}

fn invalid(message: &str) -> geozero::error::GeozeroError {
    geozero::error::GeozeroError::Geometry(message.into())
}

impl GeomProcessor for Count {
    fn xy(&mut self, x: f64, y: f64, _idx: usize) -> geozero::error::Result<()> {
        self.points += 1;
        if self.points > MAX_POINTS {
            return Err(geozero::error::GeozeroError::Geometry(limits::too_many_points()));
        }
        if !x.is_finite() || !y.is_finite() {
            return Err(invalid("a coordinate is not a number"));
        }
        if x.abs() > limits::MAX_COORDINATE || y.abs() > limits::MAX_COORDINATE {
            return Err(geozero::error::GeozeroError::Geometry(limits::coordinate_out_of_range()));
        }
        self.outside_wgs84 |= !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y);
        if let Some(line) = &mut self.line {
            if line.points == 0 {
                line.first = (x, y);
            }
            line.last = (x, y);
            line.points += 1;
        }
        Ok(())
    }

    fn linestring_begin(&mut self, _tagged: bool, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        self.line = Some(Line::default());
        Ok(())
    }

    fn linestring_end(&mut self, _tagged: bool, _idx: usize) -> geozero::error::Result<()> {
        let Some(Line { points: n, first, last }) = self.line.take() else { return Ok(()) };
        if self.in_polygon {
            if n < 4 {
                return Err(invalid(&format!("a Polygon ring needs at least 4 positions, found {n}")));
            }
            if first != last {
                return Err(invalid("a Polygon ring must be closed (first and last positions equal)"));
            }
        } else if n < 2 {
            return Err(invalid(&format!("a LineString needs at least 2 positions, found {n}")));
        }
        Ok(())
    }

    fn polygon_begin(&mut self, _tagged: bool, size: usize, _idx: usize) -> geozero::error::Result<()> {
        if size == 0 {
            return Err(invalid("a Polygon needs at least one ring"));
        }
        self.in_polygon = true;
        Ok(())
    }

    fn polygon_end(&mut self, _tagged: bool, _idx: usize) -> geozero::error::Result<()> {
        self.in_polygon = false;
        Ok(())
    }

    // Only the seven simple feature types are stored: the distance and area functions know no
    // others (a TIN made every spatial query over its dataset fail).
    fn circularstring_begin(&mut self, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("CircularString"))
    }

    fn compoundcurve_begin(&mut self, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("CompoundCurve"))
    }

    fn curvepolygon_begin(&mut self, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("CurvePolygon"))
    }

    fn multicurve_begin(&mut self, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("MultiCurve"))
    }

    fn multisurface_begin(&mut self, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("MultiSurface"))
    }

    fn triangle_begin(&mut self, _tagged: bool, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("Triangle"))
    }

    fn polyhedralsurface_begin(&mut self, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("PolyhedralSurface"))
    }

    fn tin_begin(&mut self, _size: usize, _idx: usize) -> geozero::error::Result<()> {
        Err(unsupported("TIN"))
    }
}

fn unsupported(kind: &str) -> geozero::error::GeozeroError {
    invalid(&format!(
        "a {kind} is not supported: Point, LineString, Polygon, MultiPoint, MultiLineString, MultiPolygon or GeometryCollection"
    ))
}

/// An error from a geometry library, shortened: messages never carry much of the value.
fn reason(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let text = text.strip_prefix("processing geometry `").and_then(|t| t.strip_suffix('`')).unwrap_or(&text);
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Reads a WKT, EWKT, hex WKB or hex EWKB value.
pub(crate) fn parse(value: &str) -> Result<Geometry, String> {
    match written(value) {
        Some(Written::HexWkb) => parse_hex(value.trim()),
        Some(Written::Wkt) => parse_wkt(value),
        None => Err("expected a geometry as WKT (e.g. POINT(10.7 59.9)), EWKT (SRID=25833;POINT(…)) or hex WKB".into()),
    }
}

fn parse_wkt(value: &str) -> Result<Geometry, String> {
    let (srid, text) = split_srid(value)?;
    // Every point but the first follows a comma: more commas than this are more points than
    // allowed, refused before anything is built.
    if memchr::memchr_iter(b',', text.as_bytes()).count() >= 2 * MAX_POINTS {
        return Err(limits::too_many_points());
    }
    let wkb = geozero::wkt::Wkt(text).to_wkb(CoordDimensions::xy()).map_err(|e| format!("invalid WKT: {}", reason(e)))?;
    let mut count = Count::default();
    geozero::wkb::Wkb(&wkb).process_geom(&mut count).map_err(|e| format!("invalid WKT: {}", reason(e)))?;
    Ok(Geometry { wkb, srid, fits_wgs84: !count.outside_wgs84 })
}

fn parse_hex(value: &str) -> Result<Geometry, String> {
    let bytes = hex::decode(value).map_err(|_| "invalid hex WKB".to_string())?;
    parse_wkb(&bytes)
}

/// Reads WKB or EWKB bytes (a Parquet geometry column's values) with the same checks as every
/// other notation, as 2D OGC WKB.
pub(crate) fn parse_wkb(bytes: &[u8]) -> Result<Geometry, String> {
    // The header: byte order, type (EWKB flags in the high bits), SRID if flagged.
    let little = match bytes.first() {
        Some(1) => true,
        Some(0) => false,
        _ => return Err("invalid WKB: the first byte must be 0 or 1 (byte order)".into()),
    };
    let word = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    };
    let kind = word(1).ok_or("invalid WKB: too short")?;
    let extended = kind & 0xE000_0000 != 0;
    let srid = if kind & 0x2000_0000 != 0 { Some(word(5).ok_or("invalid EWKB: too short")?) } else { None };
    // Counted first, without building anything: a header may claim any number of points.
    let mut count = Count::default();
    let counted =
        if extended { geozero::wkb::Ewkb(&bytes).process_geom(&mut count) } else { geozero::wkb::Wkb(&bytes).process_geom(&mut count) };
    counted.map_err(|e| format!("invalid WKB: {}", reason(e)))?;
    let wkb = if extended {
        geozero::wkb::Ewkb(&bytes).to_wkb(CoordDimensions::xy())
    } else {
        geozero::wkb::Wkb(&bytes).to_wkb(CoordDimensions::xy())
    }
    .map_err(|e| format!("invalid WKB: {}", reason(e)))?;
    Ok(Geometry { wkb, srid, fits_wgs84: !count.outside_wgs84 })
}

/// The EPSG code of a CRS as Tverr writes it (`EPSG:25833`).
pub(crate) fn epsg(crs: &str) -> Option<u32> {
    crs.strip_prefix("EPSG:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognised_forms() {
        assert_eq!(written("POINT(1 2)"), Some(Written::Wkt));
        assert_eq!(written(" point (1 2)"), Some(Written::Wkt));
        assert_eq!(written("MULTIPOLYGON(((0 0,1 0,1 1,0 0)))"), Some(Written::Wkt));
        assert_eq!(written("POINT Z (1 2 3)"), Some(Written::Wkt));
        assert_eq!(written("POINT EMPTY"), Some(Written::Wkt));
        assert_eq!(written("SRID=25833;POINT(1 2)"), Some(Written::Wkt));
        assert_eq!(written("0101000000000000000000F03F0000000000000040"), Some(Written::HexWkb));
        assert_eq!(written("Pointe-Noire"), None);
        assert_eq!(written("Point Alpha (kiosk)"), None);
        assert_eq!(written("Point Mall (Hamar)"), None);
        assert_eq!(written("POINTZM(1 2 3 4)"), Some(Written::Wkt));
        assert_eq!(written("12345678"), None);
        assert_eq!(written(""), None);
    }

    #[test]
    fn every_form_gives_the_same_wkb() {
        let wkt = parse("POINT(10.5 59.9)").unwrap();
        assert_eq!(wkt.srid, None);
        assert!(wkt.fits_wgs84);
        let ewkt = parse("SRID=4326;POINT(10.5 59.9)").unwrap();
        assert_eq!(ewkt.srid, Some(4326));
        assert_eq!(ewkt.wkb, wkt.wkb);
        let hex = parse(&hex::encode_upper(&wkt.wkb)).unwrap();
        assert_eq!(hex.wkb, wkt.wkb);
        // EWKB as PostGIS writes it: little-endian point with the SRID flag and SRID 4326.
        let ewkb = parse("0101000020E610000000000000000025403333333333F34D40").unwrap();
        assert_eq!(ewkb.srid, Some(4326));
        assert_eq!(ewkb.wkb, wkt.wkb);
        // Z is dropped, as for GeoJSON.
        assert_eq!(parse("POINT Z (10.5 59.9 100)").unwrap().wkb, wkt.wkb);
        let utm = parse("SRID=25833;LINESTRING(287000 6744500, 287100 6744600)").unwrap();
        assert_eq!(utm.srid, Some(25833));
        assert!(!utm.fits_wgs84);
    }

    #[test]
    fn bad_values_are_refused_without_echoing_them() {
        let long = format!("POLYGON(({}))", "1 2 3 4 5 ".repeat(10_000));
        for bad in ["POINT(1)", "POINT(1 2", "LINESTRING(a b, c d)", "SRID=x;POINT(1 2)", "0102000000FFFFFFFF", long.as_str()] {
            let err = parse(bad).unwrap_err();
            assert!(err.len() < 200, "{err}");
            assert!(!err.contains("1 2 3 4 5 1 2 3 4 5"), "{err}");
        }
    }

    #[test]
    fn degenerate_shapes_and_far_coordinates_are_refused_as_in_geojson() {
        for (bad, says) in [
            ("POLYGON((1 2, 3 4, 5 6))", "at least 4 positions, found 3"),
            ("POLYGON((1 2))", "at least 4 positions, found 1"),
            ("POLYGON((0 0, 1 0, 1 1, 0 1))", "must be closed"),
            ("MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 6, 5 5)))", "at least 4 positions, found 3"),
            ("POLYGON((0 0, 9 0, 9 9, 0 0), (1 1, 2 2, 1 1))", "at least 4 positions, found 3"),
            ("LINESTRING(1 2)", "at least 2 positions, found 1"),
            ("MULTILINESTRING((0 0, 1 1), (2 2))", "at least 2 positions, found 1"),
            ("POINT(1e300 0)", "out of range"),
            ("SRID=25833;LINESTRING(0 0, 0 -1000000001)", "out of range"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        for good in ["POLYGON((0 0, 1 0, 1 1, 0 0))", "MULTILINESTRING((0 0, 1 1), (2 2, 3 3))", "POINT(-1000000000 1000000000)"] {
            parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        // The same checks on hex WKB: a ring of three points.
        let ring3 = geozero::wkt::Wkt("POLYGON((1 2, 3 4, 1 2))").to_wkb(CoordDimensions::xy()).unwrap();
        assert!(parse(&hex::encode(ring3)).unwrap_err().contains("at least 4 positions"));
    }

    #[test]
    fn a_geometry_of_more_than_a_million_points_is_refused() {
        let points = |n: usize| (0..n).map(|i| format!("{} 1", i % 100)).collect::<Vec<_>>().join(",");
        let ok = format!("LINESTRING({})", points(MAX_POINTS));
        assert!(parse(&ok).is_ok());
        let too_many = format!("LINESTRING({})", points(MAX_POINTS + 1));
        assert!(parse(&too_many).unwrap_err().contains("more than 1000000 points"));
        // A WKB header that claims four billion points, with none behind it.
        let err = parse("0102000000FFFFFFFF00000000000000000000000000000000").unwrap_err();
        assert!(err.starts_with("invalid WKB"), "{err}");
        // Counted in WKB too.
        let wkb = parse(&ok).unwrap().wkb;
        let mut more = wkb.clone();
        more[5..9].copy_from_slice(&(MAX_POINTS as u32 + 1).to_le_bytes());
        more.extend_from_slice(&[0; 16]);
        assert!(parse(&hex::encode(&more)).unwrap_err().contains("more than 1000000 points"));
    }
}
