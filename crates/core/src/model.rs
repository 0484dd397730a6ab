//! Catalogue vocabulary: slugs, classifications, column categories and subject keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value that does not belong to one of the closed vocabularies below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The text is not one of the allowed words.
    #[error("unknown {what} {value:?}; expected one of: {expected}")]
    Unknown {
        /// The vocabulary, e.g. "classification".
        what: &'static str,
        /// What was given.
        value: String,
        /// The allowed words, comma-separated.
        expected: &'static str,
    },
    /// A slug with characters other than a-z, 0-9, `-` and `_`.
    #[error("invalid {what} {value:?}: use 1-63 lowercase letters a-z, digits, '-' or '_', starting with a letter")]
    Slug {
        /// What the slug names.
        what: &'static str,
        /// What was given.
        value: String,
    },
    /// A dataset reference that is not `ORG/DATASET`.
    #[error("invalid dataset reference {0:?}: expected ORG/DATASET, e.g. hamar/barnehager")]
    DatasetRef(String),
}

/// A lowercase identifier used in URLs, SQL names and storage paths
/// (`hamar`, `oppvekst`, `barnehager`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// Validates a slug; `what` names it in the error ("organisation", "dataset", ...).
    pub fn parse(value: &str, what: &'static str) -> Result<Self, ModelError> {
        let ok = (1..=63).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok { Ok(Self(value.to_string())) } else { Err(ModelError::Slug { what, value: value.to_string() }) }
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `ORG/DATASET`, the name of a dataset everywhere outside SQL (where it is `org.dataset`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetRef {
    /// Owning organisation.
    pub org: Slug,
    /// Dataset slug within the organisation.
    pub dataset: Slug,
}

impl FromStr for DatasetRef {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (org, dataset) = s.split_once('/').ok_or_else(|| ModelError::DatasetRef(s.into()))?;
        Ok(Self {
            org: Slug::parse(org, "organisation").map_err(|_| ModelError::DatasetRef(s.into()))?,
            dataset: Slug::parse(dataset, "dataset").map_err(|_| ModelError::DatasetRef(s.into()))?,
        })
    }
}

impl fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.dataset)
    }
}

impl Serialize for DatasetRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text used in the CLI, the API and the catalogue.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let lower = s.trim().to_ascii_lowercase().replace('_', "-");
                match lower.as_str() {
                    $($text $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(ModelError::Unknown {
                        what: $what,
                        value: s.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// How sensitive a dataset is (Åpen, Intern, Fortrolig, Strengt fortrolig).
    Classification, "classification", {
        /// Åpen: anyone may read it, also without logging in.
        Open => "open" | "apen" | "åpen",
        /// Intern: for the organisation's employees and agreements.
        Internal => "internal" | "intern",
        /// Fortrolig: personal data; agreements and purposes required.
        Confidential => "confidential" | "fortrolig",
        /// Strengt fortrolig: special-category or protected data.
        StrictlyConfidential => "strictly-confidential" | "strengt-fortrolig",
    }
);

vocabulary!(
    /// What a column holds, as far as privacy law is concerned.
    ColumnCategory, "column category", {
        /// Nothing personal.
        None => "none",
        /// A person identifier (fødselsnummer, D-number).
        PersonId => "person-id",
        /// Other personal data (names, addresses, dates of birth).
        Personal => "personal",
        /// Special-category data, GDPR art. 9 (e.g. health).
        SpecialCategory => "special-category",
        /// An address that may be protected (kode 6/7).
        ProtectedAddress => "protected-address",
    }
);

vocabulary!(
    /// Which kind of subject a key column identifies.
    SubjectKind, "subject key", {
        /// A person (fødselsnummer, D-, H- or synthetic number).
        Person => "person",
        /// A property (matrikkel unit).
        Property => "property",
        /// An organisation (organisasjonsnummer).
        Organization => "organization" | "organisation",
    }
);

impl SubjectKind {
    /// Validates and canonicalises one key of this kind, or says why it is invalid.
    pub fn canonicalise(self, value: &str) -> Result<String, crate::IdentError> {
        match self {
            SubjectKind::Person => crate::Fodselsnummer::parse(value).map(String::from),
            SubjectKind::Property => crate::Matrikkel::parse(value).map(|m| m.to_string()),
            SubjectKind::Organization => crate::Orgnr::parse(value).map(String::from),
        }
    }

    /// Like [`SubjectKind::canonicalise`], and accepts the short matrikkel forms (`12/345`) in
    /// the kommune `home` (a look-up by an employee of that kommune).
    pub fn canonicalise_in(self, value: &str, home: Option<u16>) -> Result<String, crate::IdentError> {
        match self {
            SubjectKind::Property => crate::Matrikkel::parse_in(value, home).map(|m| m.to_string()),
            other => other.canonicalise(value),
        }
    }

    /// How a value of this kind is named in messages.
    pub fn label(self) -> &'static str {
        match self {
            SubjectKind::Person => "fødselsnummer",
            SubjectKind::Property => "matrikkel unit",
            SubjectKind::Organization => "organisasjonsnummer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip_and_accept_norwegian() {
        for c in Classification::ALL {
            assert_eq!(c.as_str().parse::<Classification>().unwrap(), *c);
        }
        assert_eq!("Strengt_fortrolig".parse::<Classification>().unwrap(), Classification::StrictlyConfidential);
        let err = "secret".parse::<Classification>().unwrap_err().to_string();
        assert!(err.contains("open internal confidential strictly-confidential"), "{err}");
    }

    #[test]
    fn slugs() {
        assert!(Slug::parse("hamar", "organisation").is_ok());
        assert!(Slug::parse("vannmaler_avlesninger", "dataset").is_ok());
        for bad in ["", "Hamar", "1abc", "a b", "a/b", "a.b", "æøå"] {
            assert!(Slug::parse(bad, "dataset").is_err(), "{bad}");
        }
        assert!("hamar/barnehager".parse::<DatasetRef>().is_ok());
        assert!("hamar".parse::<DatasetRef>().is_err());
    }
}
