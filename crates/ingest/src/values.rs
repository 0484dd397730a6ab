//! Parsing of single text values in the forms Norwegian systems export: decimal comma, space as
//! thousands separator, `dd.mm.yyyy` dates, `ja`/`nei`.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

/// `ja`/`nei`, `true`/`false`, `yes`/`no` (any case).
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = trim(s);
    let is = |word: &str| s.eq_ignore_ascii_case(word);
    if is("ja") || is("true") || is("yes") || is("sann") {
        Some(true)
    } else if is("nei") || is("false") || is("no") || is("usann") {
        Some(false)
    } else {
        None
    }
}

/// `str::trim`, with a fast path for the common value that has nothing to trim.
pub fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

fn strip_grouping(s: &str) -> std::borrow::Cow<'_, str> {
    // Grouping characters are a space or non-ASCII spaces; plain ASCII without spaces has none.
    if s.bytes().any(|b| b == b' ' || b >= 0x80) && s.contains([' ', '\u{A0}', '\u{202F}']) {
        std::borrow::Cow::Owned(s.chars().filter(|c| !matches!(c, ' ' | '\u{A0}' | '\u{202F}')).collect())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// An integer, optionally signed, optionally grouped with spaces (`1 234`).
pub fn parse_int(s: &str) -> Option<i64> {
    let s = strip_grouping(trim(s));
    let digits = s.strip_prefix(['-', '+']).unwrap_or(&s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A decimal number with `,` or `.` as decimal separator (`12,5`, `1 234,50`, `1.234,50`, `3.5`).
pub fn parse_float(s: &str) -> Option<f64> {
    let s = strip_grouping(trim(s));
    let body = s.strip_prefix(['-', '+']).unwrap_or(&s);
    let (mut commas, mut dots, mut last_comma, mut last_dot) = (0, 0, 0, 0);
    for (i, b) in body.bytes().enumerate() {
        match b {
            b'0'..=b'9' => {}
            b',' => (commas, last_comma) = (commas + 1, i),
            b'.' => (dots, last_dot) = (dots + 1, i),
            _ => return None,
        }
    }
    if !body.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    // `1.234,50`: dots group thousands and the comma is the decimal separator.
    let grouped_dots = commas == 1 && dots > 0 && last_comma > last_dot;
    if commas > 1 || (commas == 1 && dots > 0 && !grouped_dots) || (commas == 0 && dots > 1) {
        return None;
    }
    if commas == 0 {
        return s.parse().ok();
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    for b in s.bytes().filter(|b| !(grouped_dots && *b == b'.')) {
        *buf.get_mut(n)? = if b == b',' { b'.' } else { b };
        n += 1;
    }
    std::str::from_utf8(&buf[..n]).ok()?.parse().ok()
}

fn num(s: &str, len: std::ops::RangeInclusive<usize>) -> Option<u32> {
    if len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None }
}

/// `dd.mm.yyyy` (also `d.m.yyyy`) or ISO `yyyy-mm-dd`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = trim(s);
    if let Some((d, rest)) = s.split_once('.') {
        let (m, y) = rest.split_once('.')?;
        return NaiveDate::from_ymd_opt(num(y, 4..=4)? as i32, num(m, 1..=2)?, num(d, 1..=2)?);
    }
    let mut parts = s.splitn(3, '-');
    let y = num(parts.next()?, 4..=4)?;
    let m = num(parts.next()?, 2..=2)?;
    let d = num(parts.next()?, 2..=2)?;
    NaiveDate::from_ymd_opt(y as i32, m, d)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let mut parts = s.splitn(3, ':');
    let h = num(parts.next()?, 1..=2)?;
    let m = num(parts.next()?, 2..=2)?;
    let (sec, nanos) = match parts.next() {
        None => (0, 0),
        Some(rest) => {
            let (whole, frac) = rest.split_once(['.', ',']).unwrap_or((rest, ""));
            let sec = num(whole, 2..=2)?;
            let nanos = if frac.is_empty() {
                0
            } else {
                let digits = &frac[..frac.len().min(9)];
                num(digits, 1..=9)? * 10u32.pow(9 - digits.len() as u32)
            };
            (sec, nanos)
        }
    };
    NaiveTime::from_hms_nano_opt(h, m, sec, nanos)
}

/// A timestamp, as microseconds since the Unix epoch (UTC).
///
/// ISO 8601 with `T` or a space, with `Z` or an offset; or `dd.mm.yyyy hh:mm[:ss]`. Times without
/// an offset are Norwegian local time (Europe/Oslo), as Norwegian systems export them.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = trim(s);
    let (date_part, time_part) = s.split_once(['T', ' '])?;
    let date = parse_date(date_part)?;
    let time_part = time_part.trim();
    let (time_text, offset_secs) = if let Some(t) = time_part.strip_suffix('Z') {
        (t, Some(0))
    } else if let Some(idx) = time_part.rfind(['+', '-']).filter(|i| *i >= 4) {
        let (t, off) = time_part.split_at(idx);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = &off[1..];
        let (oh, om) = off.split_once(':').unwrap_or_else(|| off.split_at(off.len().min(2)));
        let secs = num(oh, 2..=2)? as i32 * 3600 + if om.is_empty() { 0 } else { num(om, 2..=2)? as i32 * 60 };
        (t, Some(sign * secs))
    } else {
        (time_part, None)
    };
    let naive = NaiveDateTime::new(date, parse_time(time_text)?);
    let utc = match offset_secs {
        Some(off) => naive - chrono::Duration::seconds(i64::from(off)),
        None => chrono_tz::Europe::Oslo.from_local_datetime(&naive).earliest()?.naive_utc(),
    };
    Some(utc.and_utc().timestamp_micros())
}

/// Days since the Unix epoch, as Arrow's Date32 counts them.
pub fn date_to_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid epoch")).num_days() as i32
}

/// A short, safe rendering of a bad value for an error message.
pub fn quote(value: &str) -> String {
    format!("{:?}", crate::limits::short(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_norwegian_forms() {
        assert_eq!(parse_int("1 234"), Some(1234));
        assert_eq!(parse_int("-17"), Some(-17));
        assert_eq!(parse_int("12,5"), None);
        assert_eq!(parse_float("12,5"), Some(12.5));
        assert_eq!(parse_float("1 234,50"), Some(1234.5));
        assert_eq!(parse_float("1.234,50"), Some(1234.5));
        assert_eq!(parse_float("3.25"), Some(3.25));
        assert_eq!(parse_float("-0,5"), Some(-0.5));
        assert_eq!(parse_float("1.234.567,5"), Some(1234567.5));
        assert_eq!(parse_float("+7"), Some(7.0));
        for bad in ["", "inf", "NaN", "1,2,3", "abc", "1e5", ",", "-", "1,5.0", "1.2.3", "1.5,"] {
            assert_eq!(parse_float(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_date("17.05.2024"), NaiveDate::from_ymd_opt(2024, 5, 17));
        assert_eq!(parse_date("1.5.2024"), NaiveDate::from_ymd_opt(2024, 5, 1));
        assert_eq!(parse_date("2024-05-17"), NaiveDate::from_ymd_opt(2024, 5, 17));
        assert_eq!(parse_date("31.02.2024"), None);
        assert_eq!(parse_date("2024-5-17"), None);
        let utc = parse_timestamp("2024-05-17T12:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2024-05-17T14:00:00+02:00"), Some(utc));
        // Oslo is UTC+2 in May.
        assert_eq!(parse_timestamp("17.05.2024 14:00"), Some(utc));
        assert_eq!(parse_timestamp("2024-05-17 14:00:00"), Some(utc));
        assert_eq!(parse_timestamp("2024-05-17T12:00:00.5Z"), Some(utc + 500_000));
        assert_eq!(parse_timestamp("2024-05-17"), None);
        assert_eq!(parse_timestamp("2024-05-17T25:00"), None);
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("Ja"), Some(true));
        assert_eq!(parse_bool("NEI"), Some(false));
        assert_eq!(parse_bool("1"), None);
    }
}
