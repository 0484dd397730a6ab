//! Messages from the layers below (ingest problems, identity numbers, settings), which are
//! written in English for the API and the log, as a page in bokmål says them: matched against
//! the patterns of [`super::ingest_nb::INGEST_NB`], with the values put back in. A message no
//! pattern knows is not shown in English on a bokmål page: the page says that the file could not
//! be read and that the English page has the technical text.

use super::Lang;
use super::ingest_nb::{INGEST_NB, WORDS_NB};
use tverr_access::StoreError;
use tverr_access::ingest::{IngestError, Problem};

/// Something a page reports: a located problem in a file, or a message.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Said {
    /// A problem at a place in an uploaded file.
    Located(Problem),
    /// A message in English.
    Plain(String),
}

impl Said {
    /// The problems of a refused ingest or setting.
    pub(super) fn of(e: &StoreError) -> Vec<Said> {
        match e {
            StoreError::Ingest(IngestError::Invalid(ps)) => ps.iter().cloned().map(Said::Located).collect(),
            StoreError::Invalid { field, message } => {
                vec![Said::Plain(format!("{field}: {message}"))]
            }
            other => vec![Said::Plain(other.to_string())],
        }
    }

    /// The text in `lang`.
    pub(super) fn text(&self, lang: Lang) -> String {
        match (self, lang) {
            (Said::Located(p), Lang::En) => p.to_string(),
            (Said::Plain(m), Lang::En) => m.clone(),
            (Said::Plain(m), Lang::Nb) => translate(lang, m),
            (Said::Located(p), Lang::Nb) => {
                let mut out = p.file.clone();
                if let Some(line) = p.line {
                    out.push_str(&format!(", linje {line}"));
                }
                if let Some(row) = p.row {
                    out.push_str(&format!(", rad {row}"));
                }
                if let Some(column) = &p.column {
                    out.push_str(&format!(", kolonne «{column}»"));
                }
                format!("{out}: {}", translate(lang, &p.message))
            }
        }
    }
}

/// An English message of the layers below in `lang`.
pub(super) fn translate(lang: Lang, english: &str) -> String {
    match lang {
        Lang::En => english.to_string(),
        Lang::Nb => nb(english, 0).unwrap_or_else(|| lang.t("msg_unknown").to_string()),
    }
}

/// The bokmål of a message, or `None` when no pattern knows it.
fn nb(english: &str, depth: usize) -> Option<String> {
    if let Some((_, word)) = WORDS_NB.iter().find(|(en, _)| *en == english) {
        return Some((*word).to_string());
    }
    if depth > 4 {
        return None;
    }
    INGEST_NB.iter().find_map(|(pattern, nb)| {
        let values = captures(pattern, english)?;
        let mut out = String::new();
        let mut pieces = nb.split("{}");
        out.push_str(pieces.next().unwrap_or_default());
        for (value, piece) in values.iter().zip(pieces) {
            out.push_str(&value_nb(value, depth)?);
            out.push_str(piece);
        }
        Some(out)
    })
}

/// A value put back into a message: a word or a nested message in bokmål, a name or a number as
/// it is, and nothing for English prose no pattern knows.
fn value_nb(value: &str, depth: usize) -> Option<String> {
    if let Some(text) = nb(value, depth + 1) {
        return Some(text);
    }
    if prose(value) { None } else { Some(value.to_string()) }
}

/// Whether a value reads as English words rather than a name, a number or a code.
fn prose(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "the",
        "a",
        "an",
        "is",
        "not",
        "of",
        "to",
        "at",
        "in",
        "expected",
        "found",
        "invalid",
        "missing",
        "unexpected",
        "error",
        "cannot",
    ];
    value.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()).any(|w| WORDS.contains(&w.to_ascii_lowercase().as_str()))
        && value.contains(' ')
}

/// The values where `pattern` has `{}`, when `text` is the pattern with values put in.
fn captures<'a>(pattern: &str, text: &'a str) -> Option<Vec<&'a str>> {
    let literals: Vec<&str> = pattern.split("{}").collect();
    let rest = text.strip_prefix(literals[0])?;
    if literals.len() == 1 {
        return rest.is_empty().then(Vec::new);
    }
    let mut values = Vec::new();
    let mut rest = rest;
    for (i, literal) in literals.iter().enumerate().skip(1) {
        let last = i == literals.len() - 1;
        let at = if last {
            if literal.is_empty() { rest.len() } else { rest.strip_suffix(literal).map(str::len)? }
        } else if literal.is_empty() {
            return None;
        } else {
            rest.find(literal)?
        };
        let value = &rest[..at];
        if value.is_empty() {
            return None;
        }
        values.push(value);
        rest = &rest[at + literal.len()..];
    }
    rest.is_empty().then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_has_a_translation_with_as_many_values() {
        for (en, nb) in INGEST_NB {
            assert_eq!(en.matches("{}").count(), nb.matches("{}").count(), "{en:?} → {nb:?}");
            assert_ne!(en.trim(), "{}", "a pattern of only a value matches everything");
            assert!(!en.contains("{}{}"), "{en:?}: two values side by side cannot be told apart");
        }
    }

    #[test]
    fn messages_of_the_ingest_read_in_bokmal_with_their_values() {
        assert_eq!(translate(Lang::Nb, "expected 3 fields as in the header, found 4"), "ventet 3 felt som i overskriftsraden, fant 4");
        assert_eq!(translate(Lang::Nb, "the file is empty"), "filen er tom");
        assert_eq!(translate(Lang::En, "the file is empty"), "the file is empty");
        // A message no pattern knows is not passed on in English.
        let unknown = translate(Lang::Nb, "the flux capacitor is not charged");
        assert_eq!(unknown, Lang::Nb.t("msg_unknown"));
    }

    #[test]
    fn a_located_problem_says_where_in_bokmal() {
        let p = Problem::at_line("innbyggere.csv", 12, Some("alder"), "expected 3 fields as in the header, found 4");
        assert_eq!(
            Said::Located(p.clone()).text(Lang::Nb),
            "innbyggere.csv, linje 12, kolonne «alder»: ventet 3 felt som i overskriftsraden, fant 4"
        );
        assert_eq!(
            Said::Located(p).text(Lang::En),
            "innbyggere.csv: line 12, column \"alder\": expected 3 fields as in the header, found 4"
        );
    }

    #[test]
    fn values_are_captured_between_the_literals() {
        assert_eq!(captures("expected {} fields, found {}", "expected 3 fields, found 4"), Some(vec!["3", "4"]));
        assert_eq!(captures("invalid {}: {}", "invalid date: x: y"), Some(vec!["date", "x: y"]));
        assert_eq!(captures("the file is empty", "the file is empty!"), None);
        assert_eq!(captures("a {} b", "a  b"), None);
    }
}
