//! Norwegian identifiers: fødselsnummer (with D-, H- and synthetic numbers), organisasjonsnummer
//! and matrikkel units.
//!
//! One module for ingest, policy and look-ups, so a number is canonicalised and validated the same
//! way everywhere. Error messages never contain the number itself: identifiers are personal data.

use std::fmt;

/// Why an identifier was rejected. The texts never echo the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentError {
    /// Wrong number of digits, or characters that are not digits.
    #[error("expected {expected} digits, found {found} characters")]
    Shape {
        /// What was expected, e.g. "11".
        expected: &'static str,
        /// How many characters were left after canonicalisation.
        found: usize,
    },
    /// The date part is not a calendar date.
    #[error("the date part is not a valid date")]
    Date,
    /// The check digits do not match.
    #[error("the check digits do not match")]
    CheckDigits,
    /// A matrikkel that does not follow `kommunenr-gnr/bnr[/fnr[/snr]]`.
    #[error("expected a matrikkel unit like 3403-12/345 or 3403-12/345/0/0")]
    Matrikkel,
}

/// Replaces full-width digits with ASCII digits and removes spaces, non-breaking spaces, dashes
/// and dots, the separators people type into identifiers.
pub fn canonical_digits(input: &str) -> String {
    if input.bytes().all(|b| b.is_ascii_digit()) {
        return input.to_string();
    }
    input
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + '0' as u32),
            ' ' | '\u{A0}' | '\u{202F}' | '\u{2009}' | '-' | '\u{2010}' | '\u{2011}' | '\u{2013}'
            | '.' => None,
            other => Some(other),
        })
        .collect()
}

fn digits_of<const N: usize>(s: &str, expected: &'static str) -> Result<[u8; N], IdentError> {
    let bytes = s.as_bytes();
    if bytes.len() != N || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(IdentError::Shape { expected, found: s.chars().count() });
    }
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b - b'0';
    }
    Ok(out)
}

fn weighted_sum(digits: &[u8], weights: &[u32]) -> u32 {
    digits.iter().zip(weights).map(|(d, w)| u32::from(*d) * w).sum()
}

/// The kind of person number, decided by the offsets in the date part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonNumberKind {
    /// An ordinary fødselsnummer.
    Fodselsnummer,
    /// A D-number (day + 40), for people who are not registered as resident.
    DNumber,
    /// An H-number (month + 40), an auxiliary number used in health services.
    HNumber,
    /// A synthetic test number (month + 80), as issued by Skatteetaten's Tenor.
    Synthetic,
}

/// A valid Norwegian person number (fødselsnummer, D-number, H-number or synthetic number),
/// held in its canonical 11-digit form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fodselsnummer(String);

impl From<Fodselsnummer> for String {
    fn from(f: Fodselsnummer) -> String {
        f.0
    }
}

impl Fodselsnummer {
    /// Canonicalises (spaces, dashes, full-width digits) and validates a person number.
    ///
    /// Accepts both check-digit rules: the classic one (k1 = 11 − Σ mod 11) and the rule in force
    /// from 2032, under which the first control sum may leave a remainder of 0, 1, 2 or 3.
    pub fn parse(input: &str) -> Result<Self, IdentError> {
        let canonical = canonical_digits(input);
        let d = digits_of::<11>(&canonical, "11")?;
        let day_raw = d[0] * 10 + d[1];
        let month_raw = d[2] * 10 + d[3];
        let day = if day_raw > 40 { day_raw - 40 } else { day_raw };
        let month = match month_raw {
            81..=92 => month_raw - 80,
            41..=52 => month_raw - 40,
            m => m,
        };
        let yy = u32::from(d[4]) * 10 + u32::from(d[5]);
        let individual = u32::from(d[6]) * 100 + u32::from(d[7]) * 10 + u32::from(d[8]);
        let year = birth_year(yy, individual);
        if !is_calendar_date(year, u32::from(month), u32::from(day)) {
            return Err(IdentError::Date);
        }
        // Control sum 1 covers the first ten digits (k1 has weight 1); control sum 2 all eleven.
        let s1 = weighted_sum(&d[..10], &[3, 7, 6, 1, 8, 9, 4, 5, 2, 1]) % 11;
        let s2 = weighted_sum(&d, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1]) % 11;
        if s1 > 3 || s2 != 0 {
            return Err(IdentError::CheckDigits);
        }
        Ok(Self(canonical))
    }

    /// Builds a valid person number from a date part and an individual number, choosing the
    /// classic check digits. Returns `None` when the classic rule gives k1 or k2 = 10.
    pub fn from_parts(ddmmyy: &str, individual: u16) -> Option<Self> {
        let mut s = format!("{ddmmyy}{individual:03}");
        let d: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        let k1 = check_digit(weighted_sum(&d, &[3, 7, 6, 1, 8, 9, 4, 5, 2]))?;
        s.push(char::from(b'0' + k1));
        let d: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        let k2 = check_digit(weighted_sum(&d, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2]))?;
        s.push(char::from(b'0' + k2));
        Self::parse(&s).ok()
    }

    /// The canonical 11 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Which kind of number this is.
    pub fn kind(&self) -> PersonNumberKind {
        let b = self.0.as_bytes();
        let month_raw = (b[2] - b'0') * 10 + (b[3] - b'0');
        if b[0] >= b'4' {
            PersonNumberKind::DNumber
        } else if month_raw > 80 {
            PersonNumberKind::Synthetic
        } else if month_raw > 40 {
            PersonNumberKind::HNumber
        } else {
            PersonNumberKind::Fodselsnummer
        }
    }
}

impl fmt::Debug for Fodselsnummer {
    /// Debug output never shows the number, only its birth-date part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fodselsnummer({}*****)", &self.0[..6])
    }
}

fn check_digit(sum: u32) -> Option<u8> {
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        k => Some(k as u8),
    }
}

/// The century rules of the individual number (Skatteetaten).
fn birth_year(yy: u32, individual: u32) -> i32 {
    let century = match individual {
        0..=499 => 1900,
        500..=749 if yy >= 54 => 1800,
        500..=999 if yy <= 39 => 2000,
        900..=999 if yy >= 40 => 1900,
        _ => 1900,
    };
    (century + yy) as i32
}

fn is_calendar_date(year: i32, month: u32, day: u32) -> bool {
    chrono::NaiveDate::from_ymd_opt(year, month, day).is_some()
}

impl fmt::Display for Fodselsnummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid organisasjonsnummer (9 digits, mod 11 with weights 3,2,7,6,5,4,3,2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Orgnr(String);

impl From<Orgnr> for String {
    fn from(o: Orgnr) -> String {
        o.0
    }
}

impl Orgnr {
    /// Canonicalises and validates an organisasjonsnummer; accepts an `NO`/`0192:` prefix.
    pub fn parse(input: &str) -> Result<Self, IdentError> {
        let trimmed = input.trim();
        let trimmed = trimmed
            .strip_prefix("0192:")
            .or_else(|| trimmed.strip_prefix("NO"))
            .unwrap_or(trimmed);
        let canonical = canonical_digits(trimmed);
        let canonical = canonical.strip_suffix("MVA").unwrap_or(&canonical).to_string();
        let d = digits_of::<9>(&canonical, "9")?;
        let k = check_digit(weighted_sum(&d[..8], &[3, 2, 7, 6, 5, 4, 3, 2]))
            .ok_or(IdentError::CheckDigits)?;
        if k != d[8] {
            return Err(IdentError::CheckDigits);
        }
        Ok(Self(canonical))
    }

    /// The canonical nine digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Orgnr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A matrikkel unit: kommunenummer, gårdsnummer, bruksnummer, festenummer and seksjonsnummer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Matrikkel {
    /// Kommunenummer, 4 digits with its leading zero (e.g. 0301 Oslo, 3403 Hamar).
    pub kommunenummer: u16,
    /// Gårdsnummer.
    pub gnr: u32,
    /// Bruksnummer.
    pub bnr: u32,
    /// Festenummer (0 when absent).
    pub fnr: u32,
    /// Seksjonsnummer (0 when absent).
    pub snr: u32,
}

impl Matrikkel {
    /// Parses `knr-gnr/bnr[/fnr[/snr]]`; `-`, space or `/` may separate the kommunenummer.
    pub fn parse(input: &str) -> Result<Self, IdentError> {
        let normalised: String = input
            .trim()
            .chars()
            .map(|c| match c {
                '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + '0' as u32).unwrap_or(c),
                _ => c,
            })
            .collect();
        let (knr, rest) = normalised
            .split_once(['-', ' ', '/'])
            .ok_or(IdentError::Matrikkel)?;
        if knr.len() != 4 || !knr.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentError::Matrikkel);
        }
        let parts: Vec<&str> = rest.trim().split('/').map(str::trim).collect();
        if !(2..=4).contains(&parts.len()) {
            return Err(IdentError::Matrikkel);
        }
        let mut nums = [0u32; 4];
        for (n, p) in nums.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IdentError::Matrikkel);
            }
            *n = p.parse().map_err(|_| IdentError::Matrikkel)?;
        }
        let kommunenummer: u16 = knr.parse().map_err(|_| IdentError::Matrikkel)?;
        if kommunenummer == 0 || nums[0] == 0 {
            return Err(IdentError::Matrikkel);
        }
        Ok(Self { kommunenummer, gnr: nums[0], bnr: nums[1], fnr: nums[2], snr: nums[3] })
    }
}

impl fmt::Display for Matrikkel {
    /// The canonical form: `3403-12/345`, with `/fnr` and `/snr` only when they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{}/{}", self.kommunenummer, self.gnr, self.bnr)?;
        if self.fnr != 0 || self.snr != 0 {
            write!(f, "/{}", self.fnr)?;
        }
        if self.snr != 0 {
            write!(f, "/{}", self.snr)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first valid number with this date part.
    fn any(ddmmyy: &str) -> Fodselsnummer {
        (0..500).find_map(|i| Fodselsnummer::from_parts(ddmmyy, i)).expect("some individual number works")
    }

    #[test]
    fn classic_fodselsnummer_check_digits() {
        // 01.01.1980, individual 123: k1 and k2 computed by hand.
        let f = Fodselsnummer::from_parts("010180", 123).unwrap();
        assert_eq!(f.as_str().len(), 11);
        assert_eq!(Fodselsnummer::parse(f.as_str()).unwrap(), f);
        assert_eq!(f.kind(), PersonNumberKind::Fodselsnummer);
    }

    #[test]
    fn known_published_test_number() {
        // A widely published valid test number.
        assert!(Fodselsnummer::parse("01010750160").is_ok());
        assert_eq!(Fodselsnummer::parse("01010750161"), Err(IdentError::CheckDigits));
    }

    #[test]
    fn canonicalises_spaces_dashes_and_fullwidth_digits() {
        let f = any("150390");
        let s = f.as_str();
        let spaced = format!("{} {}", &s[..6], &s[6..]);
        let dashed = format!("{}-{}", &s[..6], &s[6..]);
        let full: String = s.chars().map(|c| char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap()).collect();
        for v in [spaced, dashed, full] {
            assert_eq!(Fodselsnummer::parse(&v).unwrap(), f);
        }
    }

    #[test]
    fn d_h_and_synthetic_numbers() {
        let d = any("550390");
        assert_eq!(d.kind(), PersonNumberKind::DNumber);
        let h = any("154390");
        assert_eq!(h.kind(), PersonNumberKind::HNumber);
        let syn = any("158390");
        assert_eq!(syn.kind(), PersonNumberKind::Synthetic);
    }

    #[test]
    fn rejects_impossible_dates() {
        // 30 February and month 13 never validate, whatever the check digits.
        for ddmmyy in ["300290", "011390", "000190", "320190"] {
            for ind in 0..1000u16 {
                let s = format!("{ddmmyy}{ind:03}00");
                assert!(Fodselsnummer::parse(&s).is_err());
            }
        }
    }

    #[test]
    fn leap_day_depends_on_century_from_individual_number() {
        // 29.02.00: individual 500-999 means 2000 (leap year); 000-499 means 1900 (not leap).
        let mut found_2000 = false;
        for ind in 500..1000u16 {
            if Fodselsnummer::from_parts("290200", ind).is_some() {
                found_2000 = true;
                break;
            }
        }
        assert!(found_2000);
        for ind in 0..500u16 {
            assert!(Fodselsnummer::from_parts("290200", ind).is_none());
        }
    }

    #[test]
    fn rule_2032_accepts_shifted_remainders_only_up_to_three() {
        let base = Fodselsnummer::from_parts("010180", 123).unwrap();
        let d: Vec<u8> = base.as_str().bytes().map(|b| b - b'0').collect();
        let mut accepted = 0;
        for k1 in 0..10u8 {
            let mut first10 = d[..9].to_vec();
            first10.push(k1);
            let s1 = weighted_sum(&first10, &[3, 7, 6, 1, 8, 9, 4, 5, 2, 1]) % 11;
            let Some(k2) = check_digit(weighted_sum(&first10, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2])) else {
                continue;
            };
            let s: String = first10.iter().chain(std::iter::once(&k2)).map(|d| char::from(b'0' + d)).collect();
            let ok = Fodselsnummer::parse(&s).is_ok();
            assert_eq!(ok, s1 <= 3, "k1={k1} s1={s1}");
            accepted += usize::from(ok);
        }
        assert!(accepted >= 2);
    }

    #[test]
    fn wrong_length_and_letters() {
        assert!(matches!(Fodselsnummer::parse("0101075016"), Err(IdentError::Shape { .. })));
        assert!(matches!(Fodselsnummer::parse("0101075016a"), Err(IdentError::Shape { .. })));
        assert!(matches!(Fodselsnummer::parse(""), Err(IdentError::Shape { .. })));
    }

    #[test]
    fn error_texts_never_contain_the_number() {
        let err = Fodselsnummer::parse("01010750161").unwrap_err().to_string();
        assert!(!err.contains("0101075"));
        assert!(!format!("{:?}", Fodselsnummer::parse("01010750160").unwrap()).contains("50160"));
    }

    #[test]
    fn orgnr() {
        // Hamar kommune's organisasjonsnummer and Brønnøysundregistrene's own.
        assert_eq!(Orgnr::parse("970540008").unwrap().as_str(), "970540008");
        assert_eq!(Orgnr::parse("974 760 673").unwrap().as_str(), "974760673");
        assert_eq!(Orgnr::parse("0192:974760673").unwrap().as_str(), "974760673");
        assert_eq!(Orgnr::parse("NO974760673MVA").unwrap().as_str(), "974760673");
        assert_eq!(Orgnr::parse("974760674"), Err(IdentError::CheckDigits));
        assert!(Orgnr::parse("97476067").is_err());
    }

    #[test]
    fn matrikkel_forms() {
        let m = Matrikkel::parse("3403-12/345").unwrap();
        assert_eq!(m.to_string(), "3403-12/345");
        assert_eq!(Matrikkel::parse("3403-12/345/0/0").unwrap(), m);
        assert_eq!(Matrikkel::parse(" 3403 12/345 ").unwrap(), m);
        assert_eq!(Matrikkel::parse("0403-1/2/3").unwrap().to_string(), "0403-1/2/3");
        assert_eq!(Matrikkel::parse("3403-1/2/0/4").unwrap().to_string(), "3403-1/2/0/4");
        for bad in ["3403", "3403-12", "403-12/345", "3403-12/abc", "3403-0/1", "3403-1/2/3/4/5", ""] {
            assert_eq!(Matrikkel::parse(bad), Err(IdentError::Matrikkel), "{bad}");
        }
    }
}
