//! An ingest described in words, as the CLI's flags and the HTTP API's parameters give it: one
//! place turns those into an [`IngestRequest`], so both channels accept and refuse the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use tverr_core::{Classification, ColumnCategory, DatasetRef, SubjectKind};
use tverr_ingest::{ColumnType, Format, IngestOptions};

use crate::{IngestRequest, NewDataset, StoreError, WriteMode};

/// The longest column description, in characters.
pub const MAX_DESCRIPTION: usize = 200;

/// Settings of one ingest; every field is text as the user typed it. Errors name the setting.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// `append` (default), `replace` or `upsert`.
    pub mode: Option<String>,
    /// Key column of an upsert.
    pub key: Option<String>,
    /// `csv`, `json`, `ndjson`, `geojson`, `xlsx` or `parquet`; detected when `None`.
    pub format: Option<String>,
    /// XLSX sheet.
    pub sheet: Option<String>,
    /// `COL=KIND` subject keys.
    pub subjects: Vec<String>,
    /// `COL=CATEGORY` privacy categories.
    pub categories: Vec<String>,
    /// `COL=TEXT` column descriptions (the title people read).
    pub descriptions: Vec<String>,
    /// `COL=TYPE` type overrides.
    pub types: Vec<String>,
    /// CRS of GeoJSON without a `crs` member.
    pub crs: Option<String>,
    /// Add columns the dataset does not have yet.
    pub evolve: bool,
    /// Create the dataset with this metadata.
    pub create: Option<CreateSettings>,
}

/// Metadata of a dataset to create, as text.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CreateSettings {
    /// Owning department's slug.
    pub department: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: String,
    /// `open`, `internal`, `confidential` or `strictly-confidential`.
    pub classification: Option<String>,
    /// EU data-theme code.
    pub theme: Option<String>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Licence.
    pub licence: Option<String>,
    /// Update frequency.
    pub frequency: Option<String>,
}

fn pairs<T>(values: &[String], what: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<BTreeMap<String, T>, StoreError> {
    let mut out = BTreeMap::new();
    for v in values {
        let (col, val) = v.split_once('=').ok_or_else(|| StoreError::invalid(what, format!("{v:?}: expected COLUMN=VALUE")))?;
        let parsed = parse(val.trim()).map_err(|e| StoreError::invalid(what, format!("{v:?}: {e}")))?;
        out.insert(col.trim().to_string(), parsed);
    }
    Ok(out)
}

impl WriteMode {
    /// `append`, `replace`, or `upsert` with its key column.
    pub fn parse(mode: &str, key: Option<String>) -> Result<Self, StoreError> {
        match (mode, key) {
            ("append", None) => Ok(WriteMode::Append),
            ("replace", None) => Ok(WriteMode::Replace),
            ("upsert", Some(key)) => Ok(WriteMode::Upsert { key }),
            ("upsert", None) => Err(StoreError::invalid("mode", "upsert needs a key column (key)")),
            ("append" | "replace", Some(_)) => Err(StoreError::invalid("key", "a key is only for mode upsert")),
            (other, _) => Err(StoreError::invalid("mode", format!("{other:?}: expected append, replace or upsert"))),
        }
    }
}

impl IngestSettings {
    /// The ingest request for `path` into `dataset`, or the first setting that is wrong.
    pub fn request(self, dataset: DatasetRef, path: PathBuf, actor: String) -> Result<IngestRequest, StoreError> {
        let format = self
            .format
            .as_deref()
            .map(|f| {
                Format::parse(f)
                    .ok_or_else(|| StoreError::invalid("format", format!("{f:?}: expected csv, json, ndjson, geojson, xlsx or parquet")))
            })
            .transpose()?;
        let subjects = pairs(&self.subjects, "subject", |v| SubjectKind::from_str(v).map_err(|e| e.to_string()))?;
        let categories = pairs(&self.categories, "category", |v| ColumnCategory::from_str(v).map_err(|e| e.to_string()))?;
        let descriptions = pairs(&self.descriptions, "describe", |v| {
            let text = v.trim();
            match text.chars().count() {
                0 => Err("the description is empty".to_string()),
                n if n > MAX_DESCRIPTION => Err(format!("the description has {n} characters; at most {MAX_DESCRIPTION} are allowed")),
                _ if text.chars().any(char::is_control) => Err("the description holds a control character".to_string()),
                _ => Ok(text.to_string()),
            }
        })?;
        let types = pairs(&self.types, "type", |v| {
            ColumnType::parse(v).ok_or_else(|| format!("unknown type {v:?}; expected one of: {}", ColumnType::NAMES))
        })?;
        let mode = WriteMode::parse(self.mode.as_deref().unwrap_or("append"), self.key)?;
        let create = match self.create {
            None => None,
            Some(c) => {
                let needs = |what: &str| StoreError::invalid(what, format!("creating a dataset needs its {what}"));
                let classification = c.classification.ok_or_else(|| needs("classification"))?;
                Some(NewDataset {
                    department: c.department.ok_or_else(|| needs("department"))?,
                    title: c.title.filter(|t| !t.trim().is_empty()).ok_or_else(|| needs("title"))?,
                    description: c.description,
                    classification: Classification::from_str(&classification)
                        .map_err(|e| StoreError::invalid("classification", e.to_string()))?,
                    theme: c.theme,
                    keywords: c.keywords,
                    licence: c.licence,
                    update_frequency: c.frequency,
                })
            }
        };
        let crs = self
            .crs
            .as_deref()
            .map(|c| {
                tverr_ingest::normalise_crs(c)
                    .ok_or_else(|| StoreError::invalid("crs", format!("{c:?}: expected EPSG:4326, EPSG:25832 or EPSG:25833")))
            })
            .transpose()?;
        let options = IngestOptions { format, sheet: self.sheet, types, subjects, crs, evolve: self.evolve, ..IngestOptions::default() };
        Ok(IngestRequest { dataset, path, options, mode, create, categories, descriptions, actor })
    }
}
