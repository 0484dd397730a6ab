//! Whole reads through [`read_file`]: inputs made to exhaust memory (issue 23, item 13), generated
//! here rather than committed, and geometries written as text (item 17).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::{BatchSink, ColumnType, IngestError, IngestOptions, SourceReport, TargetSchema, read_file};

/// Keeps what it is given.
#[derive(Default)]
struct Keep {
    schema: Option<SchemaRef>,
    batches: Vec<RecordBatch>,
}

impl BatchSink for Keep {
    fn schema(&mut self, schema: &SchemaRef) -> Result<(), IngestError> {
        self.schema = Some(schema.clone());
        Ok(())
    }
    fn batch(&mut self, batch: RecordBatch) -> Result<(), IngestError> {
        self.batches.push(batch);
        Ok(())
    }
}

fn read_bytes(name: &str, bytes: &[u8], options: &IngestOptions) -> Result<(SourceReport, Keep), IngestError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let mut keep = Keep::default();
    let report = read_file(&path, options, &mut keep)?;
    Ok((report, keep))
}

/// The one problem of a refused read, as the CLI prints it.
fn refused(result: Result<(SourceReport, Keep), IngestError>) -> String {
    match result {
        Ok(_) => panic!("the input was accepted"),
        Err(e) => e.to_string(),
    }
}

fn options() -> IngestOptions {
    IngestOptions::default()
}

// --- Item 13: dimensions bounded before memory is allocated for them. ---

#[test]
fn a_header_of_200000_columns_is_refused_before_anything_is_built() {
    // The issue's file: a 1.9 MB CSV whose header has 200,000 columns.
    let mut csv = (1..=200_000).map(|i| format!("kolonne{i}")).collect::<Vec<_>>().join(";");
    csv.push_str("\n1;2\n");
    let err = refused(read_bytes("wide.csv", csv.as_bytes(), &options()));
    assert_eq!(err, "wide.csv: line 1, column \"kolonne2001\": the file has 200000 columns; at most 2000 are allowed");
    // Exactly the limit is fine.
    let mut csv = (1..=crate::MAX_COLUMNS).map(|i| format!("k{i}")).collect::<Vec<_>>().join(";");
    csv.push('\n');
    csv.push_str(&vec!["1"; crate::MAX_COLUMNS].join(";"));
    let (report, _) = read_bytes("widest.csv", csv.as_bytes(), &options()).unwrap();
    assert_eq!(report.columns.len(), crate::MAX_COLUMNS);
}

#[test]
fn a_long_record_of_many_fields_is_refused_before_it_is_split() {
    let mut csv = b"id;navn\n1;Per\n".to_vec();
    csv.extend(std::iter::repeat_n(b';', 600_000));
    csv.extend_from_slice(b"x\n3;Per\n");
    let err = refused(read_bytes("ragged.csv", &csv, &options()));
    assert_eq!(err, "ragged.csv: line 3: expected 2 fields as in the header, found 600001");
}

/// Writes a zip of `parts` (deflated).
fn zip_of(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in parts {
        zip.start_file(*name, deflated).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

const RELS: &str = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="WORKBOOK"/></Relationships>"#;
const WORKBOOK: &str = r#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
const WORKBOOK_RELS: &str = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
const SHEET: &str = r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2"><c r="A2"><v>1</v></c></row></sheetData></worksheet>"#;

/// A workbook in directory `dir` (`xl/`) with these extra parts there.
fn workbook(dir: &str, extra: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let rels = RELS.replace("WORKBOOK", &format!("{dir}workbook.xml"));
    let names: Vec<String> = ["workbook.xml", "_rels/workbook.xml.rels", "worksheets/sheet1.xml"]
        .iter()
        .chain(extra.iter().map(|(n, _)| n))
        .map(|n| format!("{dir}{n}"))
        .collect();
    let mut parts: Vec<(&str, &[u8])> = vec![
        ("_rels/.rels", rels.as_bytes()),
        (names[0].as_str(), WORKBOOK.as_bytes()),
        (names[1].as_str(), WORKBOOK_RELS.as_bytes()),
        (names[2].as_str(), SHEET.as_bytes()),
    ];
    for (i, (_, bytes)) in extra.iter().enumerate() {
        parts.push((names[3 + i].as_str(), bytes.as_slice()));
    }
    zip_of(&parts)
}

fn shared_strings(count: usize) -> Vec<u8> {
    let mut xml =
        format!(r#"<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" uniqueCount="{count}">"#);
    xml.push_str(&"<si><t>navn</t></si>".repeat(count));
    xml.push_str("</sst>");
    xml.into_bytes()
}

#[test]
fn shared_strings_that_unpack_beyond_the_limit_are_refused_before_calamine_reads_them() {
    // A small table reads.
    let small = workbook("xl/", &[("sharedStrings.xml", shared_strings(10))]);
    let (report, _) = read_bytes("small.xlsx", &small, &options()).unwrap();
    assert_eq!(report.rows, 1);
    // 80 MiB of shared strings in a workbook of some 100 KB (the issue's file unpacked to gigabytes).
    let bomb = workbook("xl/", &[("sharedStrings.xml", shared_strings(4 << 20))]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let err = refused(read_bytes("bomb.xlsx", &bomb, &options()));
    assert_eq!(err, "bomb.xlsx (xl/sharedStrings.xml): the part unpacks to more than 64 MiB; at most that is allowed");
    // The same wherever the package puts the workbook: calamine looks beside it.
    let moved = workbook("elsewhere/deeper/", &[("sharedStrings.xml", shared_strings(4 << 20))]);
    let err = refused(read_bytes("moved.xlsx", &moved, &options()));
    assert!(err.starts_with("moved.xlsx (elsewhere/deeper/sharedStrings.xml): the part unpacks to more than 64 MiB"), "{err}");
}

#[test]
fn every_part_read_whole_is_bounded() {
    let big = |tag: &str| format!("<{tag}>{}</{tag}>", "<x/>".repeat(5 << 20)).into_bytes();
    for (name, bytes) in [("styles.xml", big("styleSheet")), ("theme/theme1.xml", big("theme"))] {
        let book = workbook("xl/", &[("sharedStrings.xml", shared_strings(1)), (name, bytes)]);
        let err = refused(read_bytes("parts.xlsx", &book, &options()));
        assert_eq!(err, format!("parts.xlsx (xl/{name}): the part unpacks to more than 16 MiB; at most that is allowed"));
    }
    // A sheet is streamed: a large one is fine (its tokens and references are what is bounded).
    let rows: String = (3..=400_000).map(|r| format!(r#"<row r="{r}"><c r="A{r}"><v>{r}</v></c></row>"#)).collect();
    let sheet = SHEET.replace("</sheetData>", &format!("{rows}</sheetData>"));
    assert!(sheet.len() > 16 << 20);
    let rels = RELS.replace("WORKBOOK", "xl/workbook.xml");
    let strings = shared_strings(1);
    let book = zip_of(&[
        ("_rels/.rels", rels.as_bytes()),
        ("xl/workbook.xml", WORKBOOK.as_bytes()),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS.as_bytes()),
        ("xl/sharedStrings.xml", &strings),
        ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
    ]);
    let (report, _) = read_bytes("long.xlsx", &book, &options()).unwrap();
    assert_eq!(report.rows, 400_000 - 1);
}

#[test]
fn a_geojson_geometry_of_more_than_a_million_points_is_refused() {
    let line = |n: usize| {
        let coords = (0..n).map(|i| format!("[{}.5,59.5]", i % 100)).collect::<Vec<_>>().join(",");
        format!(
            r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{"navn":"ok"}},"geometry":{{"type":"Point","coordinates":[10.5,59.5]}}}},{{"type":"Feature","properties":{{"navn":"lang"}},"geometry":{{"type":"LineString","coordinates":[{coords}]}}}}]}}"#
        )
    };
    let err = refused(read_bytes("lang.geojson", line(crate::MAX_POINTS + 1).as_bytes(), &options()));
    assert_eq!(
        err,
        "lang.geojson: row 2, column \"geometry\": invalid geometry: the geometry has more than 1000000 points; at most 1000000 are allowed"
    );
    let (report, _) = read_bytes("lang.geojson", line(1000).as_bytes(), &options()).unwrap();
    assert_eq!(report.rows, 2);
}

#[test]
fn a_json_element_too_large_to_hold_is_refused_while_it_is_read() {
    // Nine million numbers in one record: 18 MB of text, 288 MB as values (refused at 128 MiB).
    let numbers = "0,".repeat(9_000_000);
    let record = format!("{{\"a\":[{numbers}0]}}");
    let err = refused(read_bytes("big.ndjson", format!("{{\"a\":1}}\n{record}\n").as_bytes(), &options()));
    assert_eq!(err, "big.ndjson: line 2: the record takes more than 128 MiB once read; at most that is allowed");
    let err = refused(read_bytes("big.json", format!("[{{\"a\":1}},{record}]").as_bytes(), &options()));
    assert_eq!(err, "big.json: row 2: the record takes more than 128 MiB once read; at most that is allowed");
    let feature = format!(r#"{{"type":"Feature","properties":{{"a":[{numbers}0]}},"geometry":null}}"#);
    let collection = format!(r#"{{"type":"FeatureCollection","features":[{feature}]}}"#);
    let err = refused(read_bytes("big.geojson", collection.as_bytes(), &options()));
    assert!(err.starts_with("big.geojson: row 1: the feature takes more than 128 MiB once read"), "{err}");
    assert!(err.ends_with("(a geometry may have at most 1000000 points)"), "{err}");
}

#[test]
fn an_ndjson_line_longer_than_the_record_limit_is_refused() {
    let mut text = b"{\"a\":1}\n{\"a\":\"".to_vec();
    text.extend(std::iter::repeat_n(b'x', crate::chunker::MAX_RECORD_BYTES + 10));
    text.extend_from_slice(b"\"}\n");
    let err = refused(read_bytes("long.ndjson", &text, &options()));
    assert_eq!(err, "long.ndjson: line 2: the line is longer than 64 MiB; at most that is allowed");
}

#[test]
fn parquet_with_more_columns_than_allowed_is_refused() {
    let fields: Vec<Field> = (0..crate::MAX_COLUMNS + 1).map(|i| Field::new(format!("k{i}"), DataType::Int64, true)).collect();
    let schema = Arc::new(Schema::new(fields));
    let columns = (0..schema.fields().len()).map(|_| Arc::new(arrow::array::Int64Array::from(vec![1])) as arrow::array::ArrayRef).collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let err = refused(read_bytes("wide.parquet", &bytes, &options()));
    assert_eq!(err, "wide.parquet, column \"k2000\": the file has 2001 columns; at most 2000 are allowed");
}

// --- Item 17: geometries written as text become geometry columns. ---

fn geometry_column(keep: &Keep, name: &str) -> Vec<Option<Vec<u8>>> {
    let schema = keep.schema.as_ref().unwrap();
    let (i, field) = schema.column_with_name(name).unwrap();
    assert_eq!(field.data_type(), &DataType::Binary, "{name}");
    assert_eq!(field.metadata().get(crate::GEOMETRY_ENCODING_KEY).map(String::as_str), Some("WKB"));
    keep.batches
        .iter()
        .flat_map(|b| {
            let a = b.column(i).as_any().downcast_ref::<BinaryArray>().unwrap().clone();
            (0..a.len()).map(move |r| (!a.is_null(r)).then(|| a.value(r).to_vec())).collect::<Vec<_>>()
        })
        .collect()
}

fn wkb_of_geojson(geojson: &str) -> Vec<u8> {
    use geozero::ToWkb;
    geozero::geojson::GeoJson(geojson).to_wkb(geozero::CoordDimensions::xy()).unwrap()
}

#[test]
fn wkt_ewkt_and_hex_wkb_in_csv_become_geometry_columns_stored_as_geojson_geometries_are() {
    let point = wkb_of_geojson(r#"{"type":"Point","coordinates":[287000,6744500]}"#);
    let polygon = wkb_of_geojson(r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#);
    // QGIS writes the geometry first, as WKT, comma separated and quoted.
    let qgis = "WKT,navn,plasser\n\"POINT (287000 6744500)\",Solsikken,3\n\"POLYGON ((0 0,1 0,1 1,0 0))\",Tunet,0\n,Uten sted,1\n";
    let with_crs = IngestOptions { crs: Some("EPSG:25833".into()), ..options() };
    let (report, keep) = read_bytes("qgis.csv", qgis.as_bytes(), &with_crs).unwrap();
    assert_eq!(report.crs.as_deref(), Some("EPSG:25833"));
    assert_eq!(report.columns[0].column_type, ColumnType::Geometry);
    assert_eq!(geometry_column(&keep, "WKT"), vec![Some(point.clone()), Some(polygon.clone()), None]);
    // EWKT names its CRS; no option needed.
    let ewkt = "geometry;navn\n\"SRID=25833;POINT(287000 6744500)\";Solsikken\n";
    let (report, keep) = read_bytes("ewkt.csv", ewkt.as_bytes(), &options()).unwrap();
    assert_eq!(report.crs.as_deref(), Some("EPSG:25833"));
    assert_eq!(geometry_column(&keep, "geometry"), vec![Some(point.clone())]);
    // Hex WKB and EWKB, as PostGIS and ogr2ogr write them.
    let hex = format!("geom;navn\n{};a\n0101000020E96400000000000060841141000000006DBA5941;b\n", hex::encode_upper(&point));
    let (report, keep) = read_bytes("hex.csv", hex.as_bytes(), &options()).unwrap();
    assert_eq!(report.crs.as_deref(), Some("EPSG:25833"));
    assert_eq!(geometry_column(&keep, "geom"), vec![Some(point.clone()), Some(point.clone())]);
    // WGS84 without anything said.
    let wgs = "sted;navn\nPOINT(10.68 60.79);Hamar\n";
    let (report, keep) = read_bytes("wgs.csv", wgs.as_bytes(), &options()).unwrap();
    assert_eq!(report.crs.as_deref(), Some("EPSG:4326"));
    assert_eq!(geometry_column(&keep, "sted").len(), 1);
}

#[test]
fn text_that_merely_looks_like_a_geometry_stays_text() {
    for (csv, why) in [
        ("sted;navn\nPOINT(10.68 60.79);Hamar\nPoint of sale;Kiosk\n", "not every value is WKT"),
        ("kode;navn\n0101000000;a\n0101000001;b\n", "hex alone under an ordinary name"),
        ("sted;navn\nPOINT(1);a\n", "not a valid geometry under an ordinary name"),
    ] {
        let (report, _) = read_bytes("t.csv", csv.as_bytes(), &options()).unwrap();
        assert_eq!(report.columns[0].column_type, ColumnType::Text, "{why}");
        assert_eq!(report.crs, None, "{why}");
    }
}

#[test]
fn wkt_appended_to_a_dataset_is_read_in_the_datasets_crs() {
    let mut meta = std::collections::HashMap::new();
    meta.insert(crate::GEOMETRY_ENCODING_KEY.to_string(), "WKB".to_string());
    let schema = Arc::new(Schema::new(vec![
        Field::new("geometry", DataType::Binary, true).with_metadata(meta),
        Field::new("navn", DataType::Utf8, true),
    ]));
    let target =
        TargetSchema { schema, subjects: BTreeMap::new(), crs: BTreeMap::from([("geometry".to_string(), "EPSG:25833".to_string())]) };
    let append = IngestOptions { target: Some(target), ..options() };
    // UTM coordinates without an SRID: the dataset's CRS, not EPSG:4326.
    let (report, keep) = read_bytes("more.csv", b"geometry;navn\nPOINT(287000 6744500);A\n", &append).unwrap();
    assert_eq!(report.crs, None, "an existing column keeps its CRS");
    assert_eq!(geometry_column(&keep, "geometry").len(), 1);
    // Another SRID, or another --crs, is refused (nothing is reprojected).
    let err = refused(read_bytes("other.csv", b"geometry,navn\n\"SRID=4326;POINT(10.6 60.7)\",A\n", &append));
    assert_eq!(err, "other.csv: line 2, column \"geometry\": SRID 4326 differs from the column's CRS EPSG:25833");
    let other = IngestOptions { crs: Some("EPSG:25832".into()), ..append.clone() };
    let err = refused(read_bytes("other.csv", b"geometry;navn\nPOINT(287000 6744500);A\n", &other));
    assert_eq!(err, "other.csv, column \"geometry\": --crs EPSG:25832 does not match the dataset's CRS EPSG:25833");
    // An empty value is null.
    let (_, keep) = read_bytes("more.csv", b"geometry;navn\n;A\n", &append).unwrap();
    assert_eq!(geometry_column(&keep, "geometry"), vec![None]);
    // GeoJSON without a crs member appended to the dataset is in its CRS, too.
    let geojson = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"navn":"A"},"geometry":{"type":"Point","coordinates":[287000,6744500]}}]}"#;
    assert!(read_bytes("more.geojson", geojson.as_bytes(), &append).is_ok());
    let named = geojson.replace(r#""features""#, r#""crs":{"type":"name","properties":{"name":"EPSG:4326"}},"features""#);
    let err = refused(read_bytes("named.geojson", named.as_bytes(), &append));
    assert!(err.contains("the file's CRS EPSG:4326 differs from the dataset's CRS EPSG:25833"), "{err}");
}

#[test]
fn wkt_in_a_workbook_becomes_a_geometry_column() {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "WKT").unwrap();
    sheet.write_string(0, 1, "navn").unwrap();
    sheet.write_string(1, 0, "SRID=25833;POINT(287000 6744500)").unwrap();
    sheet.write_string(1, 1, "Solsikken").unwrap();
    let bytes = book.save_to_buffer().unwrap();
    let (report, keep) = read_bytes("geo.xlsx", &bytes, &options()).unwrap();
    assert_eq!(report.crs.as_deref(), Some("EPSG:25833"));
    assert_eq!(geometry_column(&keep, "WKT"), vec![Some(wkb_of_geojson(r#"{"type":"Point","coordinates":[287000,6744500]}"#))]);
}

#[test]
fn parquet_geometries_are_checked_like_every_other_notation() {
    use geozero::ToWkb;
    let wkb = |wkt: &str| geozero::wkt::Wkt(wkt).to_wkb(geozero::CoordDimensions::xy()).unwrap();
    let parquet = |values: Vec<Option<Vec<u8>>>| {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false), Field::new("geometry", DataType::Binary, true)]));
        let n = arrow::array::Int64Array::from_iter_values(0..values.len() as i64);
        let g: BinaryArray = values.iter().map(|v| v.as_deref()).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(n), Arc::new(g)]).unwrap();
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    };
    let good = wkb("POLYGON((0 0, 1 0, 1 1, 0 0))");
    for (bad, says) in [
        (vec![1u8, 2, 3], "invalid WKB"),
        (wkb("POLYGON((0 0, 1 0, 0 0))"), "at least 4 positions, found 3"),
        (wkb("LINESTRING(0 0, 1e300 0)"), "out of range"),
        (Vec::new(), "invalid WKB"),
        (hex::decode("0111000000010000000400000000000000000000000000000000000000000000000000F03F0000000000000000000000000000F03F00000000000000000000000000000000").unwrap(), "Triangle is not supported"),
    ] {
        let bytes = parquet(vec![Some(good.clone()), None, Some(bad)]);
        let err = refused(read_bytes("parceller.parquet", &bytes, &options()));
        assert!(err.starts_with("parceller.parquet: row 3, column \"geometry\"") && err.contains(says), "{err}");
    }
    let bytes = parquet(vec![Some(good.clone()), None]);
    let (_, keep) = read_bytes("parceller.parquet", &bytes, &options()).unwrap();
    assert_eq!(geometry_column(&keep, "geometry"), vec![Some(good), None]);
}
