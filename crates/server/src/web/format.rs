//! Values as a reader of the page's language reads them: numbers with a decimal comma and
//! grouped thousands in bokmål (`1 234,5`), dates as `06.12.2026` or `6. desember 2026`, moments
//! in Norwegian local time, type names and shapes in words, licences by name. Every value a page
//! shows passes through here; coordinates, WKT and ISO timestamps never reach a page as text.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};

use super::Lang;
use tverr_access::ingest::ColumnType;

/// A number as the page's language writes it: `1 299,5` in bokmål (a narrow no-break space
/// between thousands), `1,299.5` in English; `decimals` places.
pub(super) fn number(lang: Lang, x: f64, decimals: usize) -> String {
    group(lang, &format!("{:.*}", decimals, x.abs()), x < 0.0 && x.abs() >= 0.5 * 10f64.powi(-(decimals as i32)))
}

/// A whole number as the page's language writes it.
pub(super) fn count(lang: Lang, n: i64) -> String {
    group(lang, &n.unsigned_abs().to_string(), n < 0)
}

/// A measured value with as many decimals as it has (the shortest text that reads back as
/// the same number), as the page's language writes it.
pub(super) fn decimal(lang: Lang, x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    group(lang, &format!("{}", x.abs()), x < 0.0)
}

/// Digits `whole[.fraction]` grouped and pointed for `lang`, with a minus sign when `negative`.
fn group(lang: Lang, text: &str, negative: bool) -> String {
    let (whole, fraction) = text.split_once('.').map_or((text, None), |(w, f)| (w, Some(f)));
    let (separator, point) = match lang {
        Lang::Nb => ('\u{202f}', ','),
        Lang::En => (',', '.'),
    };
    let mut out = String::new();
    if negative {
        out.push('−');
    }
    let grouped = whole.len() > 3;
    for (i, c) in whole.chars().enumerate() {
        if grouped && i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(c);
    }
    if let Some(f) = fraction {
        out.push(point);
        out.push_str(f);
    }
    out
}

/// A date in a table: `06.12.2026` in bokmål, `6 Dec 2026` in English.
pub(super) fn day(lang: Lang, d: NaiveDate) -> String {
    match lang {
        Lang::Nb => d.format("%d.%m.%Y").to_string(),
        Lang::En => d.format("%-d %b %Y").to_string(),
    }
}

/// A month: `jan. 2020` in bokmål, `Jan 2020` in English.
pub(super) fn month(lang: Lang, d: NaiveDate) -> String {
    use chrono::Datelike;
    const MONTHS_NB: [&str; 12] = ["jan.", "feb.", "mars", "april", "mai", "juni", "juli", "aug.", "sep.", "okt.", "nov.", "des."];
    match lang {
        Lang::Nb => format!("{} {}", MONTHS_NB[d.month0() as usize], d.year()),
        Lang::En => d.format("%b %Y").to_string(),
    }
}

/// A date in running text: `6. desember 2026` in bokmål, `6 December 2026` in English.
pub(super) fn long_day(lang: Lang, d: NaiveDate) -> String {
    use chrono::Datelike;
    const MONTHS_NB: [&str; 12] =
        ["januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september", "oktober", "november", "desember"];
    match lang {
        Lang::Nb => format!("{}. {} {}", d.day(), MONTHS_NB[d.month0() as usize], d.year()),
        Lang::En => d.format("%-d %B %Y").to_string(),
    }
}

/// An ISO date (`2017-10-03`, or the date part of a longer text) as a table shows it; text
/// that is no date is returned as it is.
pub(super) fn date(lang: Lang, iso: &str) -> String {
    match NaiveDate::parse_from_str(iso.get(..10).unwrap_or(iso), "%Y-%m-%d") {
        Ok(d) => day(lang, d),
        Err(_) => iso.to_string(),
    }
}

/// A moment in Norwegian local time: `06.12.2026 kl. 14.30` in bokmål, `6 Dec 2026, 14:30` in
/// English.
pub(super) fn moment(lang: Lang, at: DateTime<Utc>) -> String {
    let local = at.with_timezone(&chrono_tz::Europe::Oslo);
    match lang {
        Lang::Nb => format!("{} kl. {}", day(lang, local.date_naive()), local.format("%H.%M")),
        Lang::En => format!("{}, {}", day(lang, local.date_naive()), local.format("%H:%M")),
    }
}

/// A moment to the second, for the access log: `07.12.2026 kl. 03.56.31` in bokmål,
/// `7 Dec 2026, 03:56:31` in English; text that is no RFC 3339 moment is returned as it is.
pub(super) fn moment_exact(lang: Lang, rfc3339: &str) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(rfc3339) else { return rfc3339.to_string() };
    let local = t.with_timezone(&chrono_tz::Europe::Oslo);
    match lang {
        Lang::Nb => format!("{} kl. {}", day(lang, local.date_naive()), local.format("%H.%M.%S")),
        Lang::En => format!("{}, {}", day(lang, local.date_naive()), local.format("%H:%M:%S")),
    }
}

/// A moment written as RFC 3339 (the catalogue's and the access log's form) in local time;
/// text that is no moment is returned as it is.
pub(super) fn moment_text(lang: Lang, rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => moment(lang, t.with_timezone(&Utc)),
        Err(_) => match NaiveDate::parse_from_str(rfc3339, "%Y-%m-%d") {
            Ok(d) => day(lang, d),
            Err(_) => rfc3339.to_string(),
        },
    }
}

/// A column type in words.
pub(super) fn type_name(lang: Lang, t: ColumnType) -> &'static str {
    lang.t(match t {
        ColumnType::Boolean => "type_boolean",
        ColumnType::Integer => "type_integer",
        ColumnType::Float => "type_float",
        ColumnType::Date => "type_date",
        ColumnType::Timestamp => "type_timestamp",
        ColumnType::Text => "type_text",
        ColumnType::Geometry => "type_geometry",
    })
}

/// A geometry in a table cell: what it is, in words (the map shows where).
pub(super) fn shape(lang: Lang, g: &geo::Geometry) -> &'static str {
    lang.t(match g {
        geo::Geometry::Point(_) | geo::Geometry::MultiPoint(_) => "shape_point",
        geo::Geometry::Polygon(_) | geo::Geometry::MultiPolygon(_) | geo::Geometry::Rect(_) | geo::Geometry::Triangle(_) => "shape_area",
        geo::Geometry::LineString(_) | geo::Geometry::MultiLineString(_) | geo::Geometry::Line(_) => "shape_line",
        geo::Geometry::GeometryCollection(_) => "shape_collection",
    })
}

/// Whether a whole-number column holds a code or a year (`byggeaar`, `postnummer`,
/// `gaardsnummer`, `kommunenr`), written without grouping.
pub(super) fn is_code(column: &str) -> bool {
    let c = column.to_lowercase();
    ["aar", "år", "year", "nummer", "number"].iter().any(|w| c.contains(w))
        || ["nr", "kode", "code", "_id"].iter().any(|w| c.ends_with(w))
        || c == "id"
}

/// One cell of an Arrow array in column `column` as the page's language writes it; `None` for
/// a geometry (the caller draws it), an empty text for a null.
pub(super) fn cell(lang: Lang, array: &dyn Array, row: usize, column: &str) -> Option<String> {
    if array.is_null(row) {
        return Some(String::new());
    }
    Some(match array.data_type() {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => return None,
        DataType::Boolean => lang.t(if array.as_boolean().value(row) { "yes" } else { "no" }).to_string(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let v = arrow::compute::cast(&array.slice(row, 1), &DataType::Int64).ok()?;
            let n = v.as_primitive::<arrow::datatypes::Int64Type>().value(0);
            if is_code(column) { n.to_string() } else { count(lang, n) }
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let v = arrow::compute::cast(&array.slice(row, 1), &DataType::Float64).ok()?;
            let n = v.as_primitive::<arrow::datatypes::Float64Type>().value(0);
            if is_code(column) { format!("{n:.0}") } else { number(lang, n, 0) }
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let v = arrow::compute::cast(&array.slice(row, 1), &DataType::Float64).ok()?;
            decimal(lang, v.as_primitive::<arrow::datatypes::Float64Type>().value(0))
        }
        DataType::Date32 | DataType::Date64 => {
            let v = arrow::compute::cast(&array.slice(row, 1), &DataType::Date32).ok()?;
            let days = v.as_primitive::<arrow::datatypes::Date32Type>().value(0);
            NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|e| e.checked_add_signed(chrono::Duration::days(days.into())))
                .map(|d| day(lang, d))
                .unwrap_or_default()
        }
        DataType::Timestamp(..) => {
            let v = arrow::compute::cast(&array.slice(row, 1), &DataType::Timestamp(TimeUnit::Microsecond, None)).ok()?;
            let micros = v.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(0);
            DateTime::from_timestamp_micros(micros).map(|t| moment(lang, t)).unwrap_or_default()
        }
        _ => {
            let options = arrow::util::display::FormatOptions::default().with_null("");
            arrow::util::display::ArrayFormatter::try_new(array, &options).ok()?.value(row).to_string()
        }
    })
}

/// A value of a JSON row (the API's form of a row) as the page's language writes it.
pub(super) fn json(lang: Lang, v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) if s.len() >= 20 && s.as_bytes()[10] == b'T' => moment_text(lang, s),
        Some(serde_json::Value::String(s)) if s.len() == 10 && s.as_bytes()[4] == b'-' => date(lang, s),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Bool(b)) => lang.t(if *b { "yes" } else { "no" }).to_string(),
        Some(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => count(lang, i),
            (None, Some(f)) => decimal(lang, f),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// The text of a JSON row's value, unformatted (names, codes, addresses).
pub(super) fn plain(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A licence by its name and the address of its text: the licences Norwegian open data uses,
/// known by their URIs; any other licence is shown by its address.
pub(super) fn licence(uri: &str) -> (String, String) {
    const KNOWN: &[(&str, &str)] = &[
        ("data.norge.no/nlod/no/2.0", "NLOD 2.0"),
        ("data.norge.no/nlod/en/2.0", "NLOD 2.0"),
        ("data.norge.no/nlod/no/1.0", "NLOD 1.0"),
        ("creativecommons.org/licenses/by/4.0", "CC BY 4.0"),
        ("creativecommons.org/licenses/by-sa/4.0", "CC BY-SA 4.0"),
        ("creativecommons.org/publicdomain/zero/1.0", "CC0 1.0"),
        ("opendatacommons.org/licenses/odbl", "ODbL"),
        ("opendatacommons.org/licenses/by", "ODC-By"),
    ];
    let bare = uri.trim().trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    match KNOWN.iter().find(|(u, _)| bare.eq_ignore_ascii_case(u) || bare.to_ascii_lowercase().starts_with(&format!("{u}/"))) {
        Some((_, name)) => ((*name).to_string(), uri.trim().to_string()),
        None => match uri.trim() {
            "NLOD-2.0" | "NLOD 2.0" | "nlod" => ("NLOD 2.0".into(), "https://data.norge.no/nlod/no/2.0".into()),
            "CC-BY-4.0" | "CC BY 4.0" => ("CC BY 4.0".into(), "https://creativecommons.org/licenses/by/4.0/".into()),
            "CC0-1.0" | "CC0 1.0" => ("CC0 1.0".into(), "https://creativecommons.org/publicdomain/zero/1.0/".into()),
            other => (other.to_string(), other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_each_language_writes_them() {
        assert_eq!(number(Lang::Nb, 1299.5, 1), "1\u{202f}299,5");
        assert_eq!(number(Lang::Nb, 12990.5, 1), "12\u{202f}990,5");
        assert_eq!(number(Lang::En, 1299.5, 1), "1,299.5");
        assert_eq!(number(Lang::Nb, -0.04, 1), "0,0");
        assert_eq!(number(Lang::Nb, -3.0, 0), "−3");
        assert_eq!(count(Lang::Nb, 5_500_000), "5\u{202f}500\u{202f}000");
        assert_eq!(count(Lang::Nb, -12), "−12");
        assert_eq!(decimal(Lang::Nb, 7.32), "7,32");
        assert_eq!(decimal(Lang::Nb, -1.38), "−1,38");
        assert_eq!(decimal(Lang::En, 123456.25), "123,456.25");
        assert_eq!(decimal(Lang::Nb, f64::NAN), "–");
        assert_eq!(number(Lang::Nb, 1299.04, 1), "1\u{202f}299,0");
        assert_eq!(number(Lang::En, 1299.04, 1), "1,299.0");
        assert_eq!(number(Lang::Nb, 14_990_000.0, 0), "14\u{202f}990\u{202f}000");
        assert_eq!(number(Lang::Nb, 0.0, 1), "0,0");
        assert_eq!(number(Lang::Nb, -1234.0, 0), "−1\u{202f}234");
    }

    #[test]
    fn dates_and_moments_in_norwegian_local_time() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        assert_eq!(day(Lang::Nb, d), "06.12.2026");
        assert_eq!(long_day(Lang::Nb, d), "6. desember 2026");
        assert_eq!(long_day(Lang::En, d), "6 December 2026");
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(moment_text(Lang::Nb, "2026-12-06T23:30:00Z"), "07.12.2026 kl. 00.30");
        assert_eq!(moment_text(Lang::Nb, "2026-07-01T10:00:00.123Z"), "01.07.2026 kl. 12.00");
        assert_eq!(moment_text(Lang::En, "2026-07-01T10:00:00Z"), "1 Jul 2026, 12:00");
        assert_eq!(moment_text(Lang::Nb, "2026-07-01"), "01.07.2026");
        assert_eq!(moment_text(Lang::Nb, "i går"), "i går");
        assert_eq!(date(Lang::Nb, "ikke en dato"), "ikke en dato");
        assert_eq!(date(Lang::Nb, "2017-10-03"), "03.10.2017");
        assert_eq!(date(Lang::En, "2017-10-03"), "3 Oct 2017");
    }

    #[test]
    fn arrow_cells_are_written_for_reading() {
        use arrow::array::{BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
        let f = Float64Array::from(vec![Some(7.32), None]);
        assert_eq!(cell(Lang::Nb, &f, 0, "verdi").unwrap(), "7,32");
        assert_eq!(cell(Lang::Nb, &f, 1, "verdi").unwrap(), "");
        assert_eq!(cell(Lang::Nb, &Int64Array::from(vec![123456]), 0, "verdi").unwrap(), "123\u{202f}456");
        assert_eq!(cell(Lang::Nb, &BooleanArray::from(vec![true]), 0, "verdi").unwrap(), "ja");
        assert_eq!(cell(Lang::En, &BooleanArray::from(vec![false]), 0, "verdi").unwrap(), "no");
        assert_eq!(cell(Lang::Nb, &Date32Array::from(vec![20_428]), 0, "verdi").unwrap(), "06.12.2025");
        let t = TimestampMicrosecondArray::from(vec![1_577_858_400_000_000]).with_timezone("UTC");
        assert_eq!(cell(Lang::Nb, &t, 0, "verdi").unwrap(), "01.01.2020 kl. 07.00");
        assert_eq!(cell(Lang::Nb, &StringArray::from(vec!["Storgata 1"]), 0, "verdi").unwrap(), "Storgata 1");
        assert_eq!(cell(Lang::Nb, &Int64Array::from(vec![1987]), 0, "byggeaar").unwrap(), "1987");
        assert!(cell(Lang::Nb, &arrow::array::BinaryArray::from(vec![&b"x"[..]]), 0, "verdi").is_none());
    }

    #[test]
    fn licences_by_name() {
        assert_eq!(licence("https://data.norge.no/nlod/no/2.0").0, "NLOD 2.0");
        assert_eq!(licence("http://creativecommons.org/licenses/by/4.0/").0, "CC BY 4.0");
        assert_eq!(licence("CC-BY-4.0").1, "https://creativecommons.org/licenses/by/4.0/");
        assert_eq!(licence("https://example.org/min-lisens").0, "https://example.org/min-lisens");
    }
}
