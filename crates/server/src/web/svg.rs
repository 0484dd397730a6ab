//! Maps and charts drawn on the server as SVG from the data itself: no tile server, no script.
//! Each drawing is an image with a text alternative (`role="img"` and a `<title>`); the page
//! also shows the same data as a table.

use std::collections::BTreeMap;
use std::fmt::Write;

use geo::{BoundingRect, Coord, CoordsIter, Geometry};

/// Text for SVG/HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const MAP_WIDTH: f64 = 800.0;

/// The most vertices one map draws: past it, shapes are simplified to the drawing's resolution
/// and then left out, so no geometry makes the page large (a line of two million points once
/// made a 26 MB page).
pub const MAP_VERTICES: usize = 20_000;

/// A map of projected geometries (metres), scaled to fit, with a scale bar, drawn over the
/// organisation's `outline` when given (which then also sets the extent); `labels[i]` is the
/// hover title of shape `i` when given.
pub fn map(shapes: &[Geometry], labels: &[String], alt: &str, outline: Option<&Geometry>) -> String {
    map_classed(shapes, &[], labels, alt, outline)
}

/// [`map`] with a class per shape (`classes[i]`, added to the shape's own), so layers can be
/// styled apart (a parcel, the plans around it, its neighbours).
pub fn map_classed(shapes: &[Geometry], classes: &[&str], labels: &[String], alt: &str, outline: Option<&Geometry>) -> String {
    let mut bounds: Option<geo::Rect> = None;
    for s in shapes.iter().chain(outline) {
        if let Some(r) = s.bounding_rect() {
            bounds = Some(match bounds {
                None => r,
                Some(b) => geo::Rect::new(
                    Coord { x: b.min().x.min(r.min().x), y: b.min().y.min(r.min().y) },
                    Coord { x: b.max().x.max(r.max().x), y: b.max().y.max(r.max().y) },
                ),
            });
        }
    }
    let Some(b) = bounds else { return String::new() };
    let (w, h) = (b.width().max(1.0), b.height().max(1.0));
    let pad = 0.06 * w.max(h);
    let (min_x, max_y) = (b.min().x - pad, b.max().y + pad);
    let scale = MAP_WIDTH / (w + 2.0 * pad);
    let height = ((h + 2.0 * pad) * scale).clamp(200.0, 900.0);
    let px = |c: Coord| ((c.x - min_x) * scale, (max_y - c.y) * scale);
    // Detail finer than half a pixel is not seen: drop it when there is much of it.
    let total: usize = shapes.iter().map(|g| g.coords_count()).sum();
    let simplified: Vec<Geometry>;
    let shapes = if total > MAP_VERTICES {
        let tolerance = 0.5 / scale;
        simplified = shapes.iter().map(|g| simplify(g, tolerance)).collect();
        simplified.as_slice()
    } else {
        shapes
    };
    let mut budget = MAP_VERTICES;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"map\" viewBox=\"0 0 {MAP_WIDTH} {height:.0}\" role=\"img\" aria-labelledby=\"map-title\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"map-title\">{}</title><rect class=\"map-ground\" x=\"0\" y=\"0\" width=\"{MAP_WIDTH}\" height=\"{height:.0}\"/>",
        escape(alt)
    );
    if let Some(o) = outline {
        let mut ring = String::new();
        draw(&mut ring, o, &px, "");
        out.push_str(&ring.replace("class=\"area\"", "class=\"outline\""));
    }
    for (i, s) in shapes.iter().enumerate() {
        let vertices = s.coords_count();
        if vertices > budget {
            break;
        }
        budget -= vertices;
        let title = labels.get(i).map(|l| format!("<title lang=\"nb\">{}</title>", escape(l))).unwrap_or_default();
        match classes.get(i) {
            Some(class) => {
                let mut shape = String::new();
                draw(&mut shape, s, &px, &title);
                for kind in ["area", "point", "line"] {
                    shape = shape.replace(&format!("class=\"{kind}\""), &format!("class=\"{kind} {}\"", escape(class)));
                }
                out.push_str(&shape);
            }
            None => draw(&mut out, s, &px, &title),
        }
    }
    // A scale bar of a round length about a fifth of the width.
    let target = (w + 2.0 * pad) / 5.0;
    let step = [1.0, 2.0, 5.0].iter().flat_map(|m| (0..7).map(move |e| m * 10f64.powi(e))).filter(|l| *l <= target).fold(1.0, f64::max);
    let bar = step * scale;
    let label = if step >= 1000.0 { format!("{} km", step / 1000.0) } else { format!("{step} m") };
    let y = height - 20.0;
    let _ = write!(
        out,
        "<g class=\"scale\"><line x1=\"16\" y1=\"{y:.0}\" x2=\"{:.0}\" y2=\"{y:.0}\"/><text x=\"16\" y=\"{:.0}\">{label}</text></g></svg>",
        16.0 + bar,
        y - 10.0
    );
    out
}

/// A line or area with the vertices closer than `tolerance` to the simplified outline removed
/// (Ramer–Douglas–Peucker); points are kept as they are.
fn simplify(g: &Geometry, tolerance: f64) -> Geometry {
    use geo::Simplify;
    match g {
        Geometry::LineString(l) => Geometry::LineString(l.simplify(tolerance)),
        Geometry::MultiLineString(m) => Geometry::MultiLineString(m.simplify(tolerance)),
        Geometry::Polygon(p) => Geometry::Polygon(p.simplify(tolerance)),
        Geometry::MultiPolygon(m) => Geometry::MultiPolygon(m.simplify(tolerance)),
        Geometry::GeometryCollection(c) => Geometry::GeometryCollection(c.iter().map(|g| simplify(g, tolerance)).collect()),
        other => other.clone(),
    }
}

fn draw(out: &mut String, g: &Geometry, px: &impl Fn(Coord) -> (f64, f64), title: &str) {
    let ring = |out: &mut String, coords: &mut dyn Iterator<Item = Coord>| {
        for (i, c) in coords.enumerate() {
            let (x, y) = px(c);
            let _ = write!(out, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" });
        }
    };
    match g {
        Geometry::Point(p) => {
            let (x, y) = px(p.0);
            let _ = write!(out, "<circle class=\"point\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"10\">{title}</circle>");
        }
        Geometry::MultiPoint(m) => m.iter().for_each(|p| draw(out, &Geometry::Point(*p), px, title)),
        Geometry::Polygon(p) => {
            out.push_str("<path class=\"area\" d=\"");
            ring(out, &mut p.exterior().coords().copied());
            out.push('Z');
            for hole in p.interiors() {
                ring(out, &mut hole.coords().copied());
                out.push('Z');
            }
            let _ = write!(out, "\" fill-rule=\"evenodd\">{title}</path>");
        }
        Geometry::MultiPolygon(m) => m.iter().for_each(|p| draw(out, &Geometry::Polygon(p.clone()), px, title)),
        Geometry::LineString(l) => {
            out.push_str("<path class=\"line\" d=\"");
            ring(out, &mut l.coords().copied());
            let _ = write!(out, "\">{title}</path>");
        }
        Geometry::MultiLineString(m) => m.iter().for_each(|l| draw(out, &Geometry::LineString(l.clone()), px, title)),
        Geometry::GeometryCollection(c) => c.iter().for_each(|g| draw(out, g, px, title)),
        _ => {}
    }
}

/// One small line chart per series, each scaled to its own range.
pub fn charts(series: &BTreeMap<String, Vec<(chrono::NaiveDate, f64)>>, value: &str, lang: super::Lang) -> String {
    let (w, h, left, bottom) = (640.0, 180.0, 56.0, 24.0);
    let mut out = String::new();
    for (i, (name, points)) in series.iter().enumerate() {
        if points.len() < 2 {
            continue;
        }
        let (t0, t1) = (points[0].0, points[points.len() - 1].0);
        let span = (t1 - t0).num_days().max(1) as f64;
        let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
        let range = (hi - lo).max(1e-9);
        let x = |d: chrono::NaiveDate| left + (d - t0).num_days() as f64 / span * (w - left - 8.0);
        let y = |v: f64| 8.0 + (hi - v) / range * (h - bottom - 16.0);
        let id = format!("chart-{i}");
        let _ = write!(
            out,
            "<figure class=\"chart\"><figcaption id=\"{id}\">{} – <span lang=\"nb\">{}</span></figcaption>\
             <svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\">\
             <line class=\"axis\" x1=\"{left}\" y1=\"8\" x2=\"{left}\" y2=\"{}\"/>\
             <line class=\"axis\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
             <text x=\"{}\" y=\"16\" text-anchor=\"end\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <text x=\"{left}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><polyline class=\"series\" points=\"",
            escape(name),
            escape(value),
            h - bottom,
            h - bottom,
            w - 8.0,
            h - bottom,
            left - 6.0,
            super::format::number(lang, hi, 2),
            left - 6.0,
            h - bottom - 6.0,
            super::format::number(lang, lo, 2),
            h - 6.0,
            super::format::month(lang, t0),
            w - 8.0,
            h - 6.0,
            super::format::month(lang, t1),
        );
        for (d, v) in points {
            let _ = write!(out, "{:.1},{:.1} ", x(*d), y(*v));
        }
        out.push_str("\"/></svg></figure>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_points_fall_inside_the_drawing() {
        let shapes = vec![Geometry::Point(geo::Point::new(0.0, 0.0)), Geometry::Point(geo::Point::new(1000.0, 500.0))];
        let svg = map(&shapes, &["<script>x</script>".into(), "A & B".into()], "Kart \"over\"", None);
        assert!(svg.contains("&lt;script&gt;x&lt;/script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains("A &amp; B") && svg.contains("Kart &quot;over&quot;"));
        for cx in svg.split("cx=\"").skip(1) {
            let v: f64 = cx[..cx.find('"').expect("quote")].parse().expect("number");
            assert!((0.0..=MAP_WIDTH).contains(&v), "{v} outside the drawing");
        }
        assert!(svg.contains("200 m"), "a scale bar of a round length: {svg}");
    }

    #[test]
    fn an_outline_sets_the_extent_and_is_drawn_under_the_data() {
        let square = geo::Polygon::new(
            geo::LineString::from(vec![(0.0, 0.0), (10_000.0, 0.0), (10_000.0, 10_000.0), (0.0, 10_000.0), (0.0, 0.0)]),
            vec![],
        );
        let shapes = vec![Geometry::Point(geo::Point::new(5_000.0, 5_000.0))];
        let svg = map(&shapes, &[], "x", Some(&Geometry::Polygon(square)));
        assert!(svg.find("class=\"outline\"").expect("outline") < svg.find("class=\"point\"").expect("point"));
        assert!(svg.contains("cx=\"400.0\""), "the point is in the middle of the outline's extent: {svg}");
        assert!(svg.contains("2 km"));
    }

    #[test]
    fn a_map_of_a_huge_geometry_stays_small() {
        // Two million points of a zigzag line across ten kilometres.
        let line: Vec<(f64, f64)> = (0..2_000_000).map(|i| (f64::from(i) * 0.005, if i % 2 == 0 { 0.0 } else { 0.001 })).collect();
        let shapes = vec![Geometry::LineString(geo::LineString::from(line))];
        let svg = map(&shapes, &[], "x", None);
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
        assert!(svg.contains("class=\"line\""), "the line is still drawn");
        // Many shapes: at most MAP_VERTICES vertices in all.
        let points: Vec<Geometry> = (0..50_000).map(|i| Geometry::Point(geo::Point::new(f64::from(i), f64::from(i % 7)))).collect();
        let svg = map(&points, &[], "x", None);
        assert_eq!(svg.matches("<circle").count(), MAP_VERTICES);
    }

    #[test]
    fn a_chart_has_one_line_per_series_with_its_range_as_text() {
        let d = |m| chrono::NaiveDate::from_ymd_opt(2024, m, 1).expect("date");
        let mut s = BTreeMap::new();
        s.insert("pH".to_string(), vec![(d(1), 7.2), (d(2), 7.6)]);
        s.insert("temperatur".to_string(), vec![(d(1), 1.0), (d(3), 9.5)]);
        let svg = charts(&s, "verdi", super::super::Lang::Nb);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("7,60") && svg.contains("1,00") && svg.contains("mars 2024"), "{svg}");
    }
}
