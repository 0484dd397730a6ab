//! Full-text search over the catalogue's metadata that copes with Norwegian words: words are
//! lower-cased and reduced to their Snowball (Norwegian) stem, so `barnehage` finds
//! `Barnehager` and `ledige plasser` finds `ledig plass`; a term also matches the start of a
//! word (`barn` → `barnehager`) and, from four letters, a part of a compound
//! (`plass` → `barnehageplasser`).

use rust_stemmers::{Algorithm, Stemmer};

use crate::{ColumnMeta, DatasetMeta};

/// A parsed search: the stems of its words. Every word must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogQuery {
    terms: Vec<String>,
}

/// A word of a document: as written (lower case) and its stem.
struct Word {
    plain: String,
    stem: String,
}

fn words(text: &str, stemmer: &Stemmer) -> Vec<Word> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let plain = w.to_lowercase();
            let stem = stemmer.stem(&plain).into_owned();
            Word { plain, stem }
        })
        .collect()
}

impl CatalogQuery {
    /// Parses what a user typed; `None` when it has no words.
    pub fn parse(text: &str) -> Option<Self> {
        let stemmer = Stemmer::create(Algorithm::Norwegian);
        let mut terms: Vec<String> = words(text, &stemmer).into_iter().map(|w| w.stem).collect();
        terms.dedup();
        (!terms.is_empty()).then_some(Self { terms })
    }

    /// How well a dataset matches (higher is better), or `None` when some word is missing.
    /// Title words weigh 4, keywords 3, column names 2, descriptions 1.
    pub fn score(&self, meta: &DatasetMeta, columns: &[ColumnMeta]) -> Option<u32> {
        let stemmer = Stemmer::create(Algorithm::Norwegian);
        let mut fields: Vec<(u32, Vec<Word>)> = vec![
            (4, words(&meta.title, &stemmer)),
            (3, words(&meta.keywords.join(" "), &stemmer)),
            (1, words(&meta.description, &stemmer)),
        ];
        for c in columns {
            fields.push((2, words(&c.name, &stemmer)));
            fields.push((1, words(&c.description, &stemmer)));
        }
        let mut total = 0;
        for term in &self.terms {
            let best = fields.iter().filter(|(_, ws)| ws.iter().any(|w| matches(term, w))).map(|(weight, _)| *weight).max()?;
            total += best;
        }
        Some(total)
    }
}

fn matches(term: &str, w: &Word) -> bool {
    w.stem == term || w.stem.starts_with(term) || (term.chars().count() >= 4 && w.plain.contains(term))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tverr_core::Classification;

    fn dataset(title: &str, keywords: &[&str], description: &str) -> DatasetMeta {
        DatasetMeta {
            org: "hamar".into(),
            slug: "x".into(),
            department: "oppvekst".into(),
            title: title.into(),
            description: description.into(),
            classification: Classification::Open,
            theme: None,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            licence: None,
            update_frequency: None,
            created_at: chrono::DateTime::UNIX_EPOCH.into(),
            legal_basis: None,
        }
    }

    fn column(name: &str) -> ColumnMeta {
        ColumnMeta {
            name: name.into(),
            column_type: tverr_ingest::ColumnType::Text,
            description: String::new(),
            category: tverr_core::ColumnCategory::None,
            subject_key: None,
            crs: None,
        }
    }

    #[test]
    fn norwegian_word_forms_find_each_other() {
        let kindergartens = dataset("Barnehager i Hamar", &["oppvekst"], "Kapasitet og plassering.");
        let q = |s: &str| CatalogQuery::parse(s).unwrap().score(&kindergartens, &[column("ledige_plasser")]);
        assert!(q("barnehage").is_some());
        assert!(q("Barnehagene").is_some());
        assert!(q("barn").is_some(), "a prefix");
        assert!(q("ledige plasser").is_some(), "column words");
        assert!(q("ledig plass").is_some());
        assert!(q("barnehage vannkvalitet").is_none(), "every word must match");
        assert!(q("skole").is_none());
        let compound = dataset("Ledige barnehageplasser", &[], "");
        assert!(CatalogQuery::parse("plasser").unwrap().score(&compound, &[]).is_some(), "part of a compound");
    }

    #[test]
    fn title_matches_rank_above_description_matches() {
        let title = dataset("Vannkvalitet", &[], "");
        let described = dataset("Målinger", &[], "Vannkvalitet i Mjøsa");
        let q = CatalogQuery::parse("vannkvalitet").unwrap();
        assert!(q.score(&title, &[]).unwrap() > q.score(&described, &[]).unwrap());
        assert!(CatalogQuery::parse(" ,. ").is_none());
    }
}
