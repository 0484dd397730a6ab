//! The policy layer's data and decisions: local users and API tokens, purposes, legal bases,
//! sharing agreements and their lifecycle, and [`Policy::entitle`], which turns a principal, a
//! declared purpose and a dataset into the [`Grant`] the secure scan enforces.
//!
//! Its tables live in the catalogue database (migration `0002_policy.sql` in `tverr-store`).

mod actions;
mod agreements;
mod bases;
mod categories;
mod credentials;
mod grant;
mod logins;
mod model;
pub mod oidc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tverr_core::{DatasetRef, Slug};
use tverr_store::tverr_ingest::ColumnType;
use tverr_store::{Catalog, RawCatalog, Store, StoreError};

pub use actions::Action;
pub use agreements::AgreementRequest;
pub use categories::{CategoryChange, raises};
pub use credentials::{NewToken, SESSION_PREFIX, TOKEN_PREFIX, TokenInfo};
pub use grant::{Basis, ColumnGrant, Denial, Grant, PROTECTION_COLUMN, Protection};
pub use logins::PendingLogin;
pub use model::{
    Agreement, AgreementEvent, AgreementState, Citizen, CitizenDemoKey, DatasetTerms, LegalBasis, Mask, OperatorKey, OperatorSeal, Party,
    Principal, Purpose, Role, SignedIn, System, Terms, User,
};

/// What can go wrong in the policy layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A value is not allowed.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field or option.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The caller may not do this.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The credential is missing, wrong, expired or revoked.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// A catalogue error (not found, exists, database).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored policy data is unreadable.
    #[error("stored policy data is corrupt: {0}")]
    Corrupt(String),
}

impl PolicyError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<sqlx::Error> for PolicyError {
    fn from(e: sqlx::Error) -> Self {
        PolicyError::Store(StoreError::from(e))
    }
}

fn exists_or(e: sqlx::Error, what: &'static str, name: &str) -> PolicyError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => PolicyError::Store(StoreError::Exists { what, name: name.to_string() }),
        _ => e.into(),
    }
}

fn not_found(what: &'static str, name: impl Into<String>) -> PolicyError {
    PolicyError::Store(StoreError::NotFound { what, name: name.into() })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The policy layer over a catalogue.
#[derive(Debug, Clone)]
pub struct Policy {
    catalog: Catalog,
    raw: RawCatalog,
    /// What decisions read, as of the newest catalogue generation seen.
    snapshot: Arc<Mutex<Arc<PolicySnapshot>>>,
}

/// What access decisions read from the catalogue — datasets, columns, purposes, agreements,
/// legal bases — as of one catalogue generation ([`Catalog::generation`]). Filled as decisions
/// ask; a decision under a newer generation starts a new one, so a change (a revoked agreement,
/// a new mask) applies to the next decision in every process.
#[derive(Debug, Default)]
pub struct PolicySnapshot {
    generation: i64,
    datasets: Mutex<HashMap<String, Option<Arc<tverr_store::DatasetMeta>>>>,
    columns: Mutex<HashMap<String, Arc<Vec<tverr_store::ColumnMeta>>>>,
    purposes: Mutex<HashMap<String, Arc<Vec<Purpose>>>>,
    agreements: Mutex<HashMap<DepartmentDay, Arc<Vec<Agreement>>>>,
    legal_bases: Mutex<HashMap<(String, String), LegalBasis>>,
    /// The registers of address protection (one entry, key `()`).
    registers: Mutex<HashMap<(), Arc<Vec<tverr_store::ProtectionRegister>>>>,
    /// The protection links (one entry, key `()`).
    links: Mutex<HashMap<(), Arc<Vec<tverr_store::ProtectionLink>>>>,
    /// API tokens found, by hash (unknown ones are not kept: [`kept`] keeps no error).
    tokens: Mutex<HashMap<String, HeldToken>>,
}

/// Organisation, department and day: a department's agreements in force that day.
type DepartmentDay = (String, String, chrono::NaiveDate);

/// An API token's row: whom it acts for, until when, and whether it was revoked.
#[derive(Debug, Clone)]
struct HeldToken {
    principal: Principal,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    revoked: bool,
}

impl PolicySnapshot {
    /// The catalogue generation it describes.
    pub fn generation(&self) -> i64 {
        self.generation
    }
}

/// `map[key]`, loaded by `load` the first time.
async fn kept<K, V, F>(map: &Mutex<HashMap<K, V>>, key: K, load: F) -> Result<V, PolicyError>
where
    K: Eq + std::hash::Hash,
    V: Clone,
    F: std::future::Future<Output = Result<V, PolicyError>>,
{
    if let Some(v) = map.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(v.clone());
    }
    let v = load.await?;
    map.lock().unwrap_or_else(|p| p.into_inner()).insert(key, v.clone());
    Ok(v)
}

impl Policy {
    /// The policy layer over a store's catalogue (whose migrations created its tables).
    pub fn new(store: &Store) -> Self {
        let none = PolicySnapshot { generation: -1, ..Default::default() };
        Self { catalog: store.catalog.clone(), raw: store.raw_catalog(), snapshot: Arc::new(Mutex::new(Arc::new(none))) }
    }

    /// What decisions read, as of the catalogue's current generation (one query when it has
    /// not moved on). Decisions of one request share it through [`Policy::entitle_in`].
    pub async fn snapshot(&self) -> Result<Arc<PolicySnapshot>, PolicyError> {
        let generation = self.catalog.generation().await?;
        let mut current = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let kept = current.generation == generation;
        tverr_core::metrics::cache("policy", kept);
        if kept {
            return Ok(current.clone());
        }
        let fresh = Arc::new(PolicySnapshot { generation, ..Default::default() });
        // A slower request that read an older generation does not replace a newer one.
        if generation > current.generation {
            *current = fresh.clone();
        }
        Ok(fresh)
    }

    fn pool(&self) -> &AnyPool {
        self.raw.pool()
    }

    /// The catalogue underneath.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    // ---- users and credentials ----

    /// What `principal` may read of a dataset for `purpose`. A missing dataset and one the
    /// caller is not entitled to give the same [`Denial::NotFound`].
    pub async fn entitle(
        &self,
        principal: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
    ) -> Result<Result<Grant, Denial>, PolicyError> {
        let snapshot = self.snapshot().await?;
        self.entitle_in(&snapshot, principal, purpose, r).await
    }

    /// [`Policy::entitle`] on what `snapshot` holds (loading what it does not hold yet): for a
    /// request that decides on several datasets at once.
    pub async fn entitle_in(
        &self,
        snapshot: &PolicySnapshot,
        principal: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
    ) -> Result<Result<Grant, Denial>, PolicyError> {
        let name = r.to_string();
        let dataset = kept(&snapshot.datasets, name.clone(), async {
            match self.catalog.dataset(r).await {
                Ok(d) => Ok(Some(Arc::new(d))),
                Err(StoreError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        let Some(dataset) = dataset else { return Ok(Err(Denial::NotFound)) };
        let columns = kept(&snapshot.columns, name.clone(), async { Ok(Arc::new(self.catalog.columns(r).await?)) }).await?;
        let today = chrono::Utc::now().date_naive();
        let (purposes, agreements) = match principal {
            Principal::User(u) => {
                let purposes = kept(&snapshot.purposes, u.org.clone(), async { Ok(Arc::new(self.purposes(&u.org).await?)) }).await?;
                let agreements = match &u.department {
                    Some(dept) => {
                        let load = async { Ok(Arc::new(self.agreements_of(&u.org, dept, today).await?)) };
                        kept(&snapshot.agreements, (u.org.clone(), dept.clone(), today), load).await?
                    }
                    None => Arc::default(),
                };
                (purposes, agreements.iter().filter(|a| a.terms.datasets.iter().any(|d| d.dataset == name)).cloned().collect())
            }
            _ => (Arc::default(), Vec::new()),
        };
        let registers = kept(&snapshot.registers, (), async { Ok(Arc::new(self.catalog.protection_registers().await?)) }).await?;
        let links = kept(&snapshot.links, (), async { Ok(Arc::new(self.catalog.protection_links().await?)) }).await?;
        let linked: Vec<String> = links.iter().filter(|l| l.dataset == name).map(|l| l.column.clone()).collect();
        let mut decision = grant::decide(&grant::Facts {
            principal,
            purpose,
            dataset: &dataset,
            columns: &columns,
            purposes: &purposes,
            agreements: &agreements,
            today,
            protection_registered: !registers.is_empty(),
            links: &linked,
        });
        if let Ok(g) = &mut decision
            && let Basis::OwnDepartment { purpose } = &g.basis
            && let Some(p) = purposes.iter().find(|p| &p.slug == purpose)
        {
            let key = (p.org.clone(), p.legal_basis.clone());
            g.legal_basis = Some(kept(&snapshot.legal_bases, key, self.legal_basis(&p.org, &p.legal_basis)).await?);
        }
        Ok(decision)
    }

    /// What a citizen may read about themselves: for every dataset with a person key, the rows
    /// whose key is their number (GDPR art. 15), with every column — but no row that also names
    /// another person with a protected address.
    pub async fn own_data(&self, pid: &str) -> Result<Vec<Grant>, PolicyError> {
        let pid = tverr_core::Fodselsnummer::parse(pid).map_err(|e| PolicyError::invalid("citizen", e.to_string()))?;
        let registered = !self.catalog.protection_registers().await?.is_empty();
        let mut grants = Vec::new();
        for dataset in self.catalog.datasets().await? {
            let Ok(r) = dataset.reference().parse::<DatasetRef>() else { continue };
            let columns = self.catalog.columns(&r).await?;
            grants.extend(grant::own_rows_protected(&dataset, &columns, pid.as_str(), registered));
        }
        Ok(grants)
    }
    /// What a parent may read about their child under 16 (whom the caller has checked a register
    /// of parental responsibility names): for every dataset with a person key, the rows that
    /// name the child, without any row that names a protected person (but the parent).
    pub async fn ward_data(&self, child: &str, parent: &str) -> Result<Vec<Grant>, PolicyError> {
        let child = tverr_core::Fodselsnummer::parse(child).map_err(|e| PolicyError::invalid("child", e.to_string()))?;
        let parent = tverr_core::Fodselsnummer::parse(parent).map_err(|e| PolicyError::invalid("parent", e.to_string()))?;
        let registered = !self.catalog.protection_registers().await?.is_empty();
        let links = self.catalog.protection_links().await?;
        let mut grants = Vec::new();
        for dataset in self.catalog.datasets().await? {
            let Ok(r) = dataset.reference().parse::<DatasetRef>() else { continue };
            let columns = self.catalog.columns(&r).await?;
            let linked: Vec<String> = links.iter().filter(|l| l.dataset == r.to_string()).map(|l| l.column.clone()).collect();
            grants.extend(grant::ward_rows(&dataset, &columns, child.as_str(), parent.as_str(), registered, &linked));
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests;
