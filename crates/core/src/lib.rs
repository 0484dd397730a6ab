//! Domain types shared by every Tverr crate: Norwegian identifiers, classifications, column
//! categories and the slugs that name organisations, departments and datasets.
//!
//! Everything here is pure: no I/O, no async. Constructors validate, so a value of one of these
//! types is known to be well formed wherever it travels.

pub mod ident;
pub mod metrics;
pub mod model;

pub use ident::{Fodselsnummer, IdentError, Matrikkel, Orgnr, canonical_digits};
pub use model::{Classification, ColumnCategory, DatasetRef, ModelError, Slug, SubjectKind};
