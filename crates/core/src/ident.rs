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
            ' ' | '\u{A0}' | '\u{202F}' | '\u{2009}' | '-' | '\u{2010}' | '\u{2011}' | '\u{2013}' | '.' => None,
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

    /// The date of birth the number holds (the D-, H- and synthetic offsets taken off; the
    /// century from the individual number).
    pub fn birth_date(&self) -> chrono::NaiveDate {
        let d: Vec<u32> = self.0.bytes().map(|b| u32::from(b - b'0')).collect();
        let (day_raw, month_raw) = (d[0] * 10 + d[1], d[2] * 10 + d[3]);
        let day = if day_raw > 40 { day_raw - 40 } else { day_raw };
        let month = match month_raw {
            81..=92 => month_raw - 80,
            41..=52 => month_raw - 40,
            m => m,
        };
        let year = birth_year(d[4] * 10 + d[5], d[6] * 100 + d[7] * 10 + d[8]);
        chrono::NaiveDate::from_ymd_opt(year, month, day).expect("a parsed number holds a calendar date")
    }

    /// The person's age in whole years on `day`.
    pub fn age_on(&self, day: chrono::NaiveDate) -> i32 {
        use chrono::Datelike;
        let birth = self.birth_date();
        let mut age = day.year() - birth.year();
        if (day.month(), day.day()) < (birth.month(), birth.day()) {
            age -= 1;
        }
        age
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
        let trimmed = trimmed.strip_prefix("0192:").or_else(|| trimmed.strip_prefix("NO")).unwrap_or(trimmed);
        let canonical = canonical_digits(trimmed);
        let canonical = canonical.strip_suffix("MVA").unwrap_or(&canonical).to_string();
        let d = digits_of::<9>(&canonical, "9")?;
        let k = check_digit(weighted_sum(&d[..8], &[3, 2, 7, 6, 5, 4, 3, 2])).ok_or(IdentError::CheckDigits)?;
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

/// Kommunenummer renumberings (`data/kommunenummer.tsv`): old number → the one that replaced it.
static RENUMBERED: std::sync::LazyLock<std::collections::HashMap<u16, u16>> = std::sync::LazyLock::new(|| {
    include_str!("../data/kommunenummer.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split('\t');
            let mut number = || parts.next().and_then(|p| p.parse::<u16>().ok()).expect("kommunenummer.tsv: old and new are numbers");
            (number(), number())
        })
        .collect()
});

/// The kommunenummer in force for `knr`: renumberings are followed to the end of their chain
/// (0533 Lunner → 3054 → 3234). A number that was never renumbered is returned as it is.
pub fn current_kommunenummer(knr: u16) -> u16 {
    let mut current = knr;
    // The table has no cycles (tested); the bound guards against a bad edit all the same.
    for _ in 0..8 {
        match RENUMBERED.get(&current) {
            Some(next) => current = *next,
            None => break,
        }
    }
    current
}

impl Matrikkel {
    /// Parses a matrikkel unit that names its kommune: `knr-gnr/bnr[/fnr[/snr]]`, with `-`, a
    /// space or `/` after the kommunenummer, or the words `knr 3403 gnr 12 bnr 345`.
    /// Historical kommunenummer are mapped to today's (0403 → 3403), and a kommunenummer that
    /// lost its leading zero in a spreadsheet (`301-…`) gets it back.
    pub fn parse(input: &str) -> Result<Self, IdentError> {
        Self::parse_in(input, None)
    }

    /// Like [`Matrikkel::parse`], and also accepts the short forms people use inside their own
    /// kommune, `gnr/bnr[/fnr[/snr]]` and `gnr 12 bnr 345`, taking the kommune from `home`.
    pub fn parse_in(input: &str, home: Option<u16>) -> Result<Self, IdentError> {
        let normalised: String = input
            .trim()
            .chars()
            .map(|c| match c {
                '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + '0' as u32).unwrap_or(c),
                '\u{FF0F}' => '/',
                '\u{2010}' | '\u{2011}' | '\u{2013}' | '\u{FF0D}' => '-',
                '\u{A0}' | '\u{202F}' | '\u{2009}' => ' ',
                _ => c.to_ascii_lowercase(),
            })
            .collect();
        let (knr, nums) = if normalised.contains("gnr") { Self::words(&normalised)? } else { Self::numbers(&normalised)? };
        let kommunenummer = match knr {
            Some(k) => k,
            None => home.ok_or(IdentError::Matrikkel)?,
        };
        if kommunenummer == 0 || kommunenummer > 9999 || nums[0] == 0 {
            return Err(IdentError::Matrikkel);
        }
        let kommunenummer = current_kommunenummer(kommunenummer);
        Ok(Self { kommunenummer, gnr: nums[0], bnr: nums[1], fnr: nums[2], snr: nums[3] })
    }

    /// `knr 3403 gnr 12 bnr 345 fnr 0 snr 2`, with optional dots, commas and colons.
    fn words(s: &str) -> Result<(Option<u16>, [u32; 4]), IdentError> {
        let tokens: Vec<&str> = s.split([' ', ',', '.', ':']).filter(|t| !t.is_empty()).collect();
        if !tokens.len().is_multiple_of(2) {
            return Err(IdentError::Matrikkel);
        }
        let mut knr = None;
        let mut nums: [Option<u32>; 4] = [None; 4];
        for pair in tokens.chunks(2) {
            let slot = match pair[0] {
                "knr" | "kommunenr" | "kommunenummer" => None,
                "gnr" => Some(0),
                "bnr" => Some(1),
                "fnr" => Some(2),
                "snr" => Some(3),
                _ => return Err(IdentError::Matrikkel),
            };
            match slot {
                None if knr.is_none() => knr = Some(kommune_part(pair[1])?),
                Some(i) if nums[i].is_none() => nums[i] = Some(number_part(pair[1])?),
                _ => return Err(IdentError::Matrikkel),
            }
        }
        let (Some(gnr), Some(bnr)) = (nums[0], nums[1]) else { return Err(IdentError::Matrikkel) };
        Ok((knr, [gnr, bnr, nums[2].unwrap_or(0), nums[3].unwrap_or(0)]))
    }

    /// `knr-gnr/bnr…`, `knr gnr/bnr…`, `knr/gnr/bnr…` (a four-digit first part) or `gnr/bnr…`.
    fn numbers(s: &str) -> Result<(Option<u16>, [u32; 4]), IdentError> {
        let (knr, rest) = match s.split_once(['-', ' ']) {
            Some((k, rest)) => (Some(kommune_part(k.trim())?), rest.trim().trim_start_matches('-').trim_start()),
            None => match s.split_once('/') {
                Some((k, rest)) if k.len() == 4 && rest.contains('/') => (Some(kommune_part(k)?), rest),
                _ => (None, s),
            },
        };
        let parts: Vec<&str> = rest.split('/').map(str::trim).collect();
        if !(2..=4).contains(&parts.len()) {
            return Err(IdentError::Matrikkel);
        }
        let mut nums = [0u32; 4];
        for (n, p) in nums.iter_mut().zip(&parts) {
            *n = number_part(p)?;
        }
        Ok((knr, nums))
    }
}

/// A kommunenummer: four digits, or three when a spreadsheet dropped the leading zero.
fn kommune_part(p: &str) -> Result<u16, IdentError> {
    if !(3..=4).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentError::Matrikkel);
    }
    p.parse().map_err(|_| IdentError::Matrikkel)
}

/// A gårds-, bruks-, feste- or seksjonsnummer: one to six digits.
fn number_part(p: &str) -> Result<u32, IdentError> {
    if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentError::Matrikkel);
    }
    p.parse().map_err(|_| IdentError::Matrikkel)
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
    fn date_offsets_at_their_boundaries() {
        // D-numbers add 40 to the day: 41 and 71 are the first and the last valid day.
        assert!(any("410190").kind() == PersonNumberKind::DNumber);
        assert!(any("710190").kind() == PersonNumberKind::DNumber);
        assert!(any("610290").kind() == PersonNumberKind::DNumber); // 21 February
        for bad in ["400190", "720190", "700290"] {
            assert!((0..1000u16).all(|i| Fodselsnummer::from_parts(bad, i).is_none()), "{bad}");
        }
        // H-numbers add 40 to the month (41–52), synthetic numbers 80 (81–92).
        assert_eq!(any("014190").kind(), PersonNumberKind::HNumber);
        assert_eq!(any("015290").kind(), PersonNumberKind::HNumber);
        assert_eq!(any("018190").kind(), PersonNumberKind::Synthetic);
        assert_eq!(any("019290").kind(), PersonNumberKind::Synthetic);
        for bad in ["014090", "015390", "018090", "019390", "016090", "011390"] {
            assert!((0..1000u16).all(|i| Fodselsnummer::from_parts(bad, i).is_none()), "{bad}");
        }
    }

    #[test]
    fn century_rules_of_the_individual_number() {
        assert_eq!(birth_year(99, 0), 1999);
        assert_eq!(birth_year(0, 499), 1900);
        assert_eq!(birth_year(54, 500), 1854);
        assert_eq!(birth_year(99, 749), 1899);
        assert_eq!(birth_year(0, 500), 2000);
        assert_eq!(birth_year(39, 999), 2039);
        assert_eq!(birth_year(40, 900), 1940);
        assert_eq!(birth_year(99, 999), 1999);
        // 29 February 1900 does not exist, 29 February 2000 does.
        assert!((0..500u16).all(|i| Fodselsnummer::from_parts("290200", i).is_none()));
        assert!((500..1000u16).any(|i| Fodselsnummer::from_parts("290200", i).is_some()));
        // 29 February 1856 (individual 500–749, year 54–99) exists; 1855 does not.
        assert!((500..750u16).any(|i| Fodselsnummer::from_parts("290256", i).is_some()));
        assert!((500..750u16).all(|i| Fodselsnummer::from_parts("290255", i).is_none()));
    }

    #[test]
    fn orgnr_check_digit_ten_is_invalid() {
        // Weights 3,2,7,6,5,4,3,2: a remainder of 1 would need check digit 10, so no ninth
        // digit makes the number valid.
        let first8 = (10_000_000u32..10_100_000)
            .map(|n| n.to_string())
            .find(|s| {
                let d: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
                weighted_sum(&d, &[3, 2, 7, 6, 5, 4, 3, 2]) % 11 == 1
            })
            .unwrap();
        for last in 0..10 {
            assert_eq!(Orgnr::parse(&format!("{first8}{last}")), Err(IdentError::CheckDigits));
        }
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
        for same in [
            "3403-12/345/0/0",
            " 3403 12/345 ",
            "3403/12/345",
            "3403 - 12 / 345",
            "knr 3403 gnr 12 bnr 345",
            "Gnr. 12, bnr. 345, knr. 3403",
            "３４０３－１２／３４５",
            "3403\u{2013}12/345",
        ] {
            assert_eq!(Matrikkel::parse(same).unwrap(), m, "{same}");
        }
        assert_eq!(Matrikkel::parse("0301-1/2/3").unwrap().to_string(), "0301-1/2/3");
        assert_eq!(Matrikkel::parse("301-1/2/3").unwrap().to_string(), "0301-1/2/3");
        assert_eq!(Matrikkel::parse("3403-1/2/0/4").unwrap().to_string(), "3403-1/2/0/4");
        assert_eq!(Matrikkel::parse("gnr 1 bnr 2 snr 4 knr 3403").unwrap().to_string(), "3403-1/2/0/4");
        for bad in [
            "3403",
            "3403-12",
            "3-12/345",
            "34030-12/345",
            "3403-12/abc",
            "3403-0/1",
            "0000-1/1",
            "3403-1/2/3/4/5",
            "",
            "3403-1234567/1",
            "gnr 12",
            "gnr 12 bnr",
            "gnr 12 bnr 3 gnr 4",
            "gnr 12 bnr 3 hus 4",
            "3403-12//345",
        ] {
            assert_eq!(Matrikkel::parse(bad), Err(IdentError::Matrikkel), "{bad}");
        }
    }

    #[test]
    fn short_matrikkel_forms_need_a_home_kommune() {
        for short in ["12/345", "gnr 12 bnr 345", "12/345/0/0"] {
            assert_eq!(Matrikkel::parse(short), Err(IdentError::Matrikkel), "{short}");
            assert_eq!(Matrikkel::parse_in(short, Some(3403)).unwrap().to_string(), "3403-12/345", "{short}");
        }
        // A home kommune given by its old number is mapped too; a full form ignores the home.
        assert_eq!(Matrikkel::parse_in("12/345", Some(403)).unwrap().kommunenummer, 3403);
        assert_eq!(Matrikkel::parse_in("0301-1/2", Some(3403)).unwrap().kommunenummer, 301);
    }

    #[test]
    fn historical_kommunenummer_map_to_todays() {
        assert_eq!(Matrikkel::parse("0403-12/345").unwrap().to_string(), "3403-12/345");
        assert_eq!(Matrikkel::parse("403-12/345").unwrap().to_string(), "3403-12/345");
        // Chains: Lunner 0533 → 3054 (2020) → 3234 (2024); Tromsø 1902 → 5401 → 5501.
        assert_eq!(current_kommunenummer(533), 3234);
        assert_eq!(current_kommunenummer(3054), 3234);
        assert_eq!(current_kommunenummer(1902), 5501);
        assert_eq!(current_kommunenummer(3403), 3403);
        assert_eq!(current_kommunenummer(301), 301);
        // Every chain ends, no number maps to itself, and nothing maps to a number that was
        // itself replaced in the same year.
        for (old, new) in RENUMBERED.iter() {
            assert_ne!(old, new);
            let end = current_kommunenummer(*old);
            assert!(!RENUMBERED.contains_key(&end), "{old} does not end");
        }
        assert!(RENUMBERED.len() >= 70);
    }

    #[test]
    fn the_birth_date_and_age_come_from_the_number() {
        // A synthetic number (month + 80) for 14 October 2022, individual number 935 (2000s).
        let f = Fodselsnummer::from_parts("149022", 935).or_else(|| Fodselsnummer::from_parts("149022", 936)).unwrap();
        assert_eq!(f.birth_date(), chrono::NaiveDate::from_ymd_opt(2022, 10, 14).unwrap());
        assert_eq!(f.age_on(chrono::NaiveDate::from_ymd_opt(2026, 10, 13).unwrap()), 3);
        assert_eq!(f.age_on(chrono::NaiveDate::from_ymd_opt(2026, 10, 14).unwrap()), 4);
        // A D-number (day + 40) for 1 January 1980.
        let d = Fodselsnummer::from_parts("410180", 123).or_else(|| Fodselsnummer::from_parts("410180", 124)).unwrap();
        assert_eq!(d.birth_date(), chrono::NaiveDate::from_ymd_opt(1980, 1, 1).unwrap());
    }
}
