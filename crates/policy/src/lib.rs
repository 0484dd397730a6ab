//! The policy layer's data and decisions: local users and API tokens, purposes, legal bases,
//! sharing agreements and their lifecycle, and [`Policy::entitle`], which turns a principal, a
//! declared purpose and a dataset into the [`Grant`] the secure scan enforces.
//!
//! Its tables live in the catalogue database (migration `0002_policy.sql` in `tverr-store`).

mod categories;
mod grant;
mod model;

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

pub use categories::{CategoryChange, raises};
pub use grant::{Basis, ColumnGrant, Denial, Grant, PROTECTION_COLUMN, Protection};
pub use model::{
    Agreement, AgreementEvent, AgreementState, DatasetTerms, LegalBasis, Mask, OperatorKey, OperatorSeal, Party, Principal, Purpose, Role,
    Terms, User,
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

/// Prefix of every API token, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "tverr_";

/// Prefix of every browser session secret; a session is never an API token and the other way
/// round.
pub const SESSION_PREFIX: &str = "tverrs_";

/// A new API token: shown once; only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Token id, for revoking.
    pub id: String,
    /// The secret to send as `Authorization: Bearer …`.
    pub secret: String,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<String>,
}

/// A request for an agreement.
#[derive(Debug, Clone)]
pub struct AgreementRequest {
    /// Who shares.
    pub provider: Party,
    /// Who receives.
    pub consumer: Party,
    /// Datasets and, per dataset, columns, masks and row filter.
    pub datasets: Vec<DatasetTerms>,
    /// Purposes (slugs of the consumer organisation).
    pub purposes: Vec<String>,
    /// Legal basis slug in the consumer organisation; default: the first purpose's.
    pub legal_basis: Option<String>,
    /// First day in force; default today.
    pub valid_from: Option<chrono::NaiveDate>,
    /// Last day in force.
    pub valid_to: Option<chrono::NaiveDate>,
    /// Whether `fortrolig` addresses may be released.
    pub release_fortrolig: bool,
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
        if current.generation == generation {
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

    /// Creates a local user. Departmental roles (steward, employee) need a department; admin and
    /// auditor belong to the organisation. The password, if given, is stored as an argon2id hash.
    pub async fn create_user(
        &self,
        org: &str,
        department: Option<&str>,
        username: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<User, PolicyError> {
        let name = Slug::parse(username, "user").map_err(|e| PolicyError::invalid("username", e.to_string()))?;
        self.catalog.org(org).await?;
        match (role.is_departmental(), department) {
            (true, None) => {
                return Err(PolicyError::invalid("role", format!("a {role} belongs to a department: use ORG/DEPARTMENT/USERNAME")));
            }
            (_, Some(d)) => {
                self.catalog.department(org, d).await?;
            }
            (false, None) => {}
        }
        let hash = match password {
            Some(p) if p.chars().count() < 12 => {
                return Err(PolicyError::invalid("password", "must have at least 12 characters"));
            }
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        sqlx::query("INSERT INTO users (username, org, department, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(name.as_str())
            .bind(org)
            .bind(department.map(str::to_string))
            .bind(role.as_str())
            .bind(hash)
            .bind(now())
            .execute(self.pool())
            .await
            .map_err(|e| exists_or(e, "user", name.as_str()))?;
        Ok(User { username: name.to_string(), org: org.into(), department: department.map(Into::into), role })
    }

    /// One user.
    pub async fn user(&self, username: &str) -> Result<User, PolicyError> {
        let row = sqlx::query("SELECT username, org, department, role FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found("user", username))?;
        user_from_row(&row)
    }

    /// All users, optionally of one organisation.
    pub async fn users(&self, org: Option<&str>) -> Result<Vec<User>, PolicyError> {
        let rows = sqlx::query("SELECT username, org, department, role FROM users ORDER BY org, username").fetch_all(self.pool()).await?;
        let users = rows.iter().map(user_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(users.into_iter().filter(|u| org.is_none_or(|o| u.org == o)).collect())
    }

    /// Checks a user's password. Unknown users and wrong passwords give the same error.
    pub async fn login(&self, username: &str, password: &str) -> Result<User, PolicyError> {
        let refused = || PolicyError::Unauthenticated("wrong user name or password".into());
        let row = sqlx::query("SELECT username, org, department, role, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            // Spend the same time as a real check, so timing does not tell which users exist.
            let _ = verify_password(password, &DUMMY_HASH);
            return Err(refused());
        };
        let hash: Option<String> = row.try_get("password_hash")?;
        match hash {
            Some(h) if verify_password(password, &h) => user_from_row(&row),
            _ => Err(refused()),
        }
    }

    /// Creates an API token for a user; the secret is returned once and only its hash is kept.
    pub async fn create_token(&self, username: &str, expires_days: Option<u32>) -> Result<NewToken, PolicyError> {
        self.user(username).await?;
        self.insert_token("api_tokens", "username", username, expires_days).await
    }

    /// Creates an API token that acts as a citizen (as an ID-porten login would), for the demo
    /// and tests. The number must be a valid fødselsnummer or D-number.
    pub async fn create_citizen_token(&self, pid: &str, expires_days: Option<u32>) -> Result<NewToken, PolicyError> {
        let pid = tverr_core::Fodselsnummer::parse(pid).map_err(|e| PolicyError::invalid("citizen", e.to_string()))?;
        self.insert_token("citizen_tokens", "pid", pid.as_str(), expires_days).await
    }

    async fn insert_token(&self, table: &str, owner_column: &str, owner: &str, expires_days: Option<u32>) -> Result<NewToken, PolicyError> {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = format!("{TOKEN_PREFIX}{id}_{}", hex::encode(secret));
        let expires_at = expires_days
            .map(|d| (chrono::Utc::now() + chrono::Duration::days(i64::from(d))).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        sqlx::query(&format!("INSERT INTO {table} (id, {owner_column}, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)"))
            .bind(&id)
            .bind(owner)
            .bind(token_hash(&secret))
            .bind(now())
            .bind(expires_at.clone())
            .execute(self.pool())
            .await?;
        Ok(NewToken { id, secret, expires_at })
    }

    /// Revokes a token by its id (or by the token itself); it stops working at once.
    pub async fn revoke_token(&self, id_or_secret: &str) -> Result<(), PolicyError> {
        let id = match id_or_secret.strip_prefix(TOKEN_PREFIX) {
            Some(rest) => rest.split('_').next().unwrap_or_default().to_string(),
            None => id_or_secret.to_string(),
        };
        let mut revoked = 0;
        for table in ["api_tokens", "citizen_tokens"] {
            revoked += sqlx::query(&format!("UPDATE {table} SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"))
                .bind(now())
                .bind(&id)
                .execute(self.pool())
                .await?
                .rows_affected();
        }
        if revoked == 0 {
            return Err(not_found("active token", id));
        }
        Ok(())
    }

    /// Starts a browser session for a signed-in principal (a user or a citizen) for `hours`;
    /// `method` says how they signed in (`password`, `oidc:<issuer>`, `demo-citizen`). The
    /// secret (prefix [`SESSION_PREFIX`], never accepted as an API token) is returned once; only
    /// its hash is stored.
    pub async fn create_session(&self, who: &Principal, method: &str, hours: u32) -> Result<NewToken, PolicyError> {
        let (kind, user, pid) = match who {
            Principal::User(u) => ("user", Some(u), None),
            Principal::Citizen { pid } => ("citizen", None, Some(pid.as_str())),
            _ => return Err(PolicyError::invalid("session", "only users and citizens sign in to the web pages")),
        };
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = format!("{SESSION_PREFIX}{id}_{}", hex::encode(secret));
        let expires_at =
            (chrono::Utc::now() + chrono::Duration::hours(i64::from(hours.max(1)))).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        sqlx::query(
            "INSERT INTO web_sessions (id, hash, method, kind, username, org, department, role, pid, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(token_hash(&secret))
        .bind(method)
        .bind(kind)
        .bind(user.map(|u| u.username.clone()))
        .bind(user.map(|u| u.org.clone()))
        .bind(user.and_then(|u| u.department.clone()))
        .bind(user.map(|u| u.role.to_string()))
        .bind(pid)
        .bind(now())
        .bind(&expires_at)
        .execute(self.pool())
        .await?;
        Ok(NewToken { id, secret, expires_at: Some(expires_at) })
    }

    /// Who a browser session signs in, if it is valid, unexpired and not revoked. A password
    /// session reads the user again, so a changed role or a removed user takes effect at once.
    pub async fn authenticate_session(&self, secret: &str) -> Result<Principal, PolicyError> {
        let refused = |why: &str| PolicyError::Unauthenticated(why.to_string());
        if !secret.starts_with(SESSION_PREFIX) {
            return Err(refused("not a Tverr session"));
        }
        let row = sqlx::query(
            "SELECT method, kind, username, org, department, role, pid, expires_at, revoked_at FROM web_sessions WHERE hash = $1",
        )
        .bind(token_hash(secret))
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| refused("unknown session"))?;
        if row.try_get::<Option<String>, _>("revoked_at")?.is_some() {
            return Err(refused("the session has ended"));
        }
        let expires: String = row.try_get("expires_at")?;
        let at = chrono::DateTime::parse_from_rfc3339(&expires).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        if at <= chrono::Utc::now() {
            return Err(refused("the session has expired"));
        }
        let method: String = row.try_get("method")?;
        match row.try_get::<String, _>("kind")?.as_str() {
            "citizen" => Ok(Principal::Citizen { pid: row.try_get("pid")? }),
            "user" if method == "password" => {
                let username: String = row.try_get("username")?;
                self.user(&username).await.map(Principal::User).map_err(|_| refused("the user no longer exists"))
            }
            "user" => Ok(Principal::User(User {
                username: row.try_get("username")?,
                org: row.try_get("org")?,
                department: row.try_get("department")?,
                role: row.try_get::<String, _>("role")?.parse()?,
            })),
            other => Err(PolicyError::Corrupt(format!("a session of unknown kind {other:?}"))),
        }
    }

    /// Ends a browser session at once.
    pub async fn end_session(&self, secret: &str) -> Result<(), PolicyError> {
        sqlx::query("UPDATE web_sessions SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL")
            .bind(now())
            .bind(token_hash(secret))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Who an API token acts for (a user, or a citizen), if it is valid, unexpired and not
    /// revoked.
    pub async fn authenticate_token(&self, secret: &str) -> Result<Principal, PolicyError> {
        let refused = |why: &str| PolicyError::Unauthenticated(why.to_string());
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(refused("not a Tverr API token"));
        }
        let hash = token_hash(secret);
        // Tokens and users are generation tables: a token revoked or created anywhere moves the
        // generation on, so a token read under this generation is what the catalogue holds.
        // An unknown token is an error, which `kept` does not keep.
        let snapshot = self.snapshot().await?;
        let token =
            kept(&snapshot.tokens, hash.clone(), async { self.load_token(&hash).await?.ok_or_else(|| refused("unknown token")) }).await?;
        if token.revoked {
            return Err(refused("the token has been revoked"));
        }
        if token.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
            return Err(refused("the token has expired"));
        }
        Ok(token.principal)
    }

    /// The row of the API token with this hash, if there is one.
    async fn load_token(&self, hash: &str) -> Result<Option<HeldToken>, PolicyError> {
        let user = sqlx::query(
            "SELECT u.username, u.org, u.department, u.role, t.expires_at, t.revoked_at \
             FROM api_tokens t JOIN users u ON u.username = t.username WHERE t.hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let (row, principal) = match user {
            Some(row) => {
                let user = user_from_row(&row)?;
                (row, Principal::User(user))
            }
            None => {
                let row = sqlx::query("SELECT pid, expires_at, revoked_at FROM citizen_tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(self.pool())
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let pid: String = row.try_get("pid")?;
                (row, Principal::Citizen { pid })
            }
        };
        let revoked: Option<String> = row.try_get("revoked_at")?;
        let expires: Option<String> = row.try_get("expires_at")?;
        let expires_at = match expires {
            Some(e) => {
                Some(chrono::DateTime::parse_from_rfc3339(&e).map_err(|e| PolicyError::Corrupt(e.to_string()))?.with_timezone(&chrono::Utc))
            }
            None => None,
        };
        Ok(Some(HeldToken { principal, expires_at, revoked: revoked.is_some() }))
    }

    // ---- legal bases and purposes ----

    /// Registers a legal basis for an organisation.
    pub async fn create_legal_basis(&self, basis: &LegalBasis) -> Result<(), PolicyError> {
        Slug::parse(&basis.slug, "legal basis").map_err(|e| PolicyError::invalid("slug", e.to_string()))?;
        self.catalog.org(&basis.org).await?;
        if !is_gdpr_article(&basis.gdpr_article) {
            return Err(PolicyError::invalid(
                "gdpr-article",
                format!("{:?}: expected an article of GDPR art. 6 or 9, e.g. 6(1)(e) or 9(2)(h)", basis.gdpr_article),
            ));
        }
        if basis.hjemmel.trim().is_empty() {
            return Err(PolicyError::invalid("hjemmel", "must name the Norwegian law, e.g. \"barnehageloven § 18\""));
        }
        if let Some(u) = &basis.lovdata_url
            && !u.starts_with("https://lovdata.no/")
        {
            return Err(PolicyError::invalid("lovdata-url", "must start with https://lovdata.no/"));
        }
        sqlx::query("INSERT INTO legal_bases (org, slug, gdpr_article, hjemmel, lovdata_url, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&basis.org)
            .bind(&basis.slug)
            .bind(basis.gdpr_article.trim())
            .bind(basis.hjemmel.trim())
            .bind(basis.lovdata_url.clone())
            .bind(now())
            .execute(self.pool())
            .await
            .map_err(|e| exists_or(e, "legal basis", &basis.slug))?;
        Ok(())
    }

    /// One legal basis.
    pub async fn legal_basis(&self, org: &str, slug: &str) -> Result<LegalBasis, PolicyError> {
        sqlx::query_as("SELECT org, slug, gdpr_article, hjemmel, lovdata_url FROM legal_bases WHERE org = $1 AND slug = $2")
            .bind(org)
            .bind(slug)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found("legal basis", format!("{org}/{slug}")))
    }

    /// An organisation's legal bases.
    pub async fn legal_bases(&self, org: &str) -> Result<Vec<LegalBasis>, PolicyError> {
        Ok(sqlx::query_as("SELECT org, slug, gdpr_article, hjemmel, lovdata_url FROM legal_bases WHERE org = $1 ORDER BY slug")
            .bind(org)
            .fetch_all(self.pool())
            .await?)
    }

    /// Registers a purpose; its legal basis must be registered in the same organisation.
    pub async fn create_purpose(&self, p: &Purpose) -> Result<(), PolicyError> {
        Slug::parse(&p.slug, "purpose").map_err(|e| PolicyError::invalid("slug", e.to_string()))?;
        if let Some(d) = &p.department {
            self.catalog.department(&p.org, d).await?;
        }
        self.legal_basis(&p.org, &p.legal_basis).await?;
        if p.name.trim().is_empty() {
            return Err(PolicyError::invalid("name", "must not be empty"));
        }
        sqlx::query(
            "INSERT INTO purposes (org, slug, department, name, description, legal_basis, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.org)
        .bind(&p.slug)
        .bind(p.department.clone())
        .bind(p.name.trim())
        .bind(p.description.trim())
        .bind(&p.legal_basis)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(|e| exists_or(e, "purpose", &p.slug))?;
        Ok(())
    }

    /// An organisation's purposes.
    pub async fn purposes(&self, org: &str) -> Result<Vec<Purpose>, PolicyError> {
        Ok(sqlx::query_as("SELECT org, slug, department, name, description, legal_basis FROM purposes WHERE org = $1 ORDER BY slug")
            .bind(org)
            .fetch_all(self.pool())
            .await?)
    }

    // ---- agreements ----

    /// Requests an agreement. Only the consumer department's steward (or its organisation's
    /// admin) may ask; every dataset must belong to the provider department, every named column
    /// and mask must exist, and every purpose must be the consumer's.
    pub async fn request_agreement(&self, actor: &Principal, req: AgreementRequest) -> Result<Agreement, PolicyError> {
        Self::may(actor, Action::RequestAgreement(&req.consumer))?;
        self.catalog.department(&req.provider.org, &req.provider.department).await?;
        self.catalog.department(&req.consumer.org, &req.consumer.department).await?;
        if req.provider.role.is_some() {
            return Err(PolicyError::invalid("provider", "a provider is a department, without a role"));
        }
        if req.provider.org == req.consumer.org && req.provider.department == req.consumer.department {
            return Err(PolicyError::invalid("consumer", "a department reads its own datasets without an agreement"));
        }
        if req.datasets.is_empty() {
            return Err(PolicyError::invalid("dataset", "name at least one dataset"));
        }
        for d in &req.datasets {
            self.check_dataset_terms(&req.provider, d).await?;
        }
        if req.purposes.is_empty() {
            return Err(PolicyError::invalid("purpose", "name at least one purpose"));
        }
        let purposes = self.purposes(&req.consumer.org).await?;
        for p in &req.purposes {
            if !purposes.iter().any(|x| &x.slug == p) {
                return Err(PolicyError::invalid("purpose", format!("{p:?} is not a purpose of {}", req.consumer.org)));
            }
        }
        let basis_slug = match &req.legal_basis {
            Some(b) => b.clone(),
            None => purposes.iter().find(|x| x.slug == req.purposes[0]).map(|x| x.legal_basis.clone()).unwrap_or_default(),
        };
        let legal_basis = self.legal_basis(&req.consumer.org, &basis_slug).await?;
        let today = chrono::Utc::now().date_naive();
        let valid_from = req.valid_from.unwrap_or(today);
        if let Some(to) = req.valid_to
            && to < valid_from
        {
            return Err(PolicyError::invalid("valid-to", "is before valid-from"));
        }
        let terms = Terms {
            datasets: req.datasets,
            purposes: req.purposes,
            legal_basis,
            valid_from,
            valid_to: req.valid_to,
            release_fortrolig: req.release_fortrolig,
        };
        let terms_json = serde_json::to_string(&terms).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut tx = self.raw.begin_write().await?;
        let next: i64 =
            sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM agreements").fetch_one(&mut *tx).await?.try_get("next")?;
        let at = now();
        sqlx::query(
            "INSERT INTO agreements (id, provider_org, provider_department, consumer_org, consumer_department, consumer_role, \
             state, terms, hmac_key, revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8, 1, $9, $9)",
        )
        .bind(next)
        .bind(&req.provider.org)
        .bind(&req.provider.department)
        .bind(&req.consumer.org)
        .bind(&req.consumer.department)
        .bind(req.consumer.role.map(|r| r.as_str().to_string()))
        .bind(&terms_json)
        .bind(hex::encode(key))
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(|e| exists_or(e, "agreement", &next.to_string()))?;
        sqlx::query("INSERT INTO agreement_events (agreement, revision, state, terms, actor, note, at) VALUES ($1, 1, 'requested', $2, $3, NULL, $4)")
            .bind(next)
            .bind(&terms_json)
            .bind(actor.name())
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.agreement(next).await
    }

    /// Whether `who` may do `action`: the one answer that handlers, the command line and what
    /// the web pages offer all ask. `Err(Forbidden)` says who may.
    pub fn may(who: &Principal, action: Action<'_>) -> Result<(), PolicyError> {
        let user = match who {
            Principal::User(u) => Some(u),
            _ => None,
        };
        let admin_of = |org: &str| user.is_some_and(|u| u.role == Role::Admin && u.org == org);
        let (may, who_may) = match action {
            Action::RequestAgreement(consumer) => (
                grant::is_steward_of(who, &consumer.org, &consumer.department) || admin_of(&consumer.org),
                format!("a steward of {consumer} or an admin of {}", consumer.org),
            ),
            Action::Decide(a) => {
                (grant::is_steward_of(who, &a.provider.org, &a.provider.department), format!("a steward of the provider {}", a.provider))
            }
            Action::Revoke(a) => (
                grant::is_steward_of(who, &a.provider.org, &a.provider.department)
                    || grant::is_steward_of(who, &a.consumer.org, &a.consumer.department),
                format!("a steward of {} or {}", a.provider, a.consumer),
            ),
            Action::Write { org, department } => (grant::is_steward_of(who, org, department), format!("a steward of {org}/{department}")),
            Action::Upload => (user.is_some_and(|u| u.role == Role::Steward && u.department.is_some()), "a steward".to_string()),
            Action::ReadAuditLog { org } => (user.is_some_and(|u| u.role == Role::Auditor && u.org == org), format!("an auditor of {org}")),
        };
        if may { Ok(()) } else { Err(PolicyError::Forbidden(format!("only {who_may} may {action}"))) }
    }

    async fn check_dataset_terms(&self, provider: &Party, d: &DatasetTerms) -> Result<(), PolicyError> {
        let r: DatasetRef = d.dataset.parse().map_err(|e: tverr_core::ModelError| PolicyError::invalid("dataset", e.to_string()))?;
        let meta = self.catalog.dataset(&r).await?;
        if meta.org != provider.org || meta.department != provider.department {
            return Err(PolicyError::invalid(
                "dataset",
                format!("{} belongs to {}/{}, not to the provider {provider}", d.dataset, meta.org, meta.department),
            ));
        }
        let columns = self.catalog.columns(&r).await?;
        let find = |name: &str, field: &str| {
            columns
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| PolicyError::invalid(field, format!("{} has no column {name:?}", d.dataset)))
        };
        for c in &d.columns {
            find(c, "column")?;
        }
        for (c, mask) in &d.masks {
            let col = find(c, "mask")?;
            if !d.columns.is_empty() && !d.columns.contains(c) {
                return Err(PolicyError::invalid("mask", format!("{c:?} is masked but not among the permitted columns")));
            }
            let ok = match mask {
                Mask::Redact | Mask::Hmac => true,
                Mask::Partial => col.column_type == ColumnType::Text,
                Mask::YearOnly => matches!(col.column_type, ColumnType::Date | ColumnType::Timestamp),
                Mask::Round(_) => matches!(col.column_type, ColumnType::Integer | ColumnType::Float),
            };
            if !ok {
                return Err(PolicyError::invalid("mask", format!("{mask} does not apply to {c:?}, a {} column", col.column_type)));
            }
        }
        if d.min_group_size.is_some_and(|k| k < 3) {
            return Err(PolicyError::invalid("min-group-size", "must be at least 3"));
        }
        if let Some(f) = &d.row_filter
            && (f.trim().is_empty() || f.contains(';'))
        {
            return Err(PolicyError::invalid("row-filter", "must be one SQL boolean expression"));
        }
        Ok(())
    }

    /// One agreement.
    pub async fn agreement(&self, id: i64) -> Result<Agreement, PolicyError> {
        let row = sqlx::query(&format!("{AGREEMENT_SELECT} WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found("agreement", id.to_string()))?;
        agreement_from_row(&row, chrono::Utc::now().date_naive())
    }

    /// Every agreement, newest last.
    pub async fn agreements(&self) -> Result<Vec<Agreement>, PolicyError> {
        let today = chrono::Utc::now().date_naive();
        let rows = sqlx::query(&format!("{AGREEMENT_SELECT} ORDER BY id")).fetch_all(self.pool()).await?;
        rows.iter().map(|r| agreement_from_row(r, today)).collect()
    }

    /// An agreement's history, oldest first.
    pub async fn agreement_events(&self, id: i64) -> Result<Vec<AgreementEvent>, PolicyError> {
        Ok(sqlx::query_as("SELECT revision, state, actor, note, at FROM agreement_events WHERE agreement = $1 ORDER BY revision")
            .bind(id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Approves a requested agreement: only a steward of the provider department may.
    pub async fn approve(&self, actor: &Principal, id: i64, note: Option<&str>) -> Result<Agreement, PolicyError> {
        self.transition(actor, id, note, AgreementState::Approved).await
    }

    /// Denies a requested agreement: only a steward of the provider department may.
    pub async fn deny(&self, actor: &Principal, id: i64, note: Option<&str>) -> Result<Agreement, PolicyError> {
        self.transition(actor, id, note, AgreementState::Denied).await
    }

    /// Revokes an agreement: a steward of either side may. It stops applying at once.
    pub async fn revoke(&self, actor: &Principal, id: i64, note: Option<&str>) -> Result<Agreement, PolicyError> {
        self.transition(actor, id, note, AgreementState::Revoked).await
    }

    async fn transition(&self, actor: &Principal, id: i64, note: Option<&str>, to: AgreementState) -> Result<Agreement, PolicyError> {
        let a = self.agreement(id).await?;
        let allowed_from: &[AgreementState] = match to {
            AgreementState::Approved | AgreementState::Denied => {
                Self::may(actor, Action::Decide(&a))?;
                &[AgreementState::Requested]
            }
            AgreementState::Revoked => {
                Self::may(actor, Action::Revoke(&a))?;
                &[AgreementState::Requested, AgreementState::Approved, AgreementState::Expired]
            }
            AgreementState::Requested | AgreementState::Expired => {
                return Err(PolicyError::invalid("state", format!("agreement {id} cannot be set to {to}")));
            }
        };
        if !allowed_from.contains(&a.state) {
            return Err(PolicyError::invalid("state", format!("agreement {id} is {}; it cannot become {to}", a.state)));
        }
        let terms_json = serde_json::to_string(&a.terms).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        let at = now();
        let mut tx = self.raw.begin_write().await?;
        // Guarded by the revision, so two concurrent changes cannot both apply.
        let done =
            sqlx::query("UPDATE agreements SET state = $1, revision = revision + 1, updated_at = $2 WHERE id = $3 AND revision = $4")
                .bind(to.as_str())
                .bind(&at)
                .bind(id)
                .bind(a.revision)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() != 1 {
            return Err(PolicyError::invalid("state", format!("agreement {id} changed meanwhile; try again")));
        }
        sqlx::query(
            "INSERT INTO agreement_events (agreement, revision, state, terms, actor, note, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(a.revision + 1)
        .bind(to.as_str())
        .bind(&terms_json)
        .bind(actor.name())
        .bind(note.map(str::to_string))
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.agreement(id).await
    }

    // ---- the decision ----

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
    /// whose key is their number (GDPR art. 15), with every column.
    pub async fn own_data(&self, pid: &str) -> Result<Vec<Grant>, PolicyError> {
        let pid = tverr_core::Fodselsnummer::parse(pid).map_err(|e| PolicyError::invalid("citizen", e.to_string()))?;
        let mut grants = Vec::new();
        for dataset in self.catalog.datasets().await? {
            let Ok(r) = dataset.reference().parse::<DatasetRef>() else { continue };
            let columns = self.catalog.columns(&r).await?;
            grants.extend(grant::own_rows(&dataset, &columns, pid.as_str()));
        }
        Ok(grants)
    }

    /// The approved agreements a department consumes, with their state as of `today`.
    async fn agreements_of(&self, org: &str, dept: &str, today: chrono::NaiveDate) -> Result<Vec<Agreement>, PolicyError> {
        let rows = sqlx::query(&format!(
            "{AGREEMENT_SELECT} WHERE consumer_org = $1 AND consumer_department = $2 AND state = 'approved' ORDER BY id"
        ))
        .bind(org)
        .bind(dept)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| agreement_from_row(r, today)).collect()
    }
}

const AGREEMENT_SELECT: &str = "SELECT id, provider_org, provider_department, consumer_org, consumer_department, consumer_role, \
     state, terms, hmac_key, revision, created_at, updated_at FROM agreements";

fn agreement_from_row(r: &AnyRow, today: chrono::NaiveDate) -> Result<Agreement, PolicyError> {
    let terms: String = r.try_get("terms")?;
    let terms: Terms = serde_json::from_str(&terms).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
    let role: Option<String> = r.try_get("consumer_role")?;
    let mut state = AgreementState::parse_stored(&r.try_get::<String, _>("state")?)?;
    if state == AgreementState::Approved && terms.valid_to.is_some_and(|to| today > to) {
        state = AgreementState::Expired;
    }
    let key: String = r.try_get("hmac_key")?;
    Ok(Agreement {
        id: r.try_get("id")?,
        provider: Party { org: r.try_get("provider_org")?, department: r.try_get("provider_department")?, role: None },
        consumer: Party {
            org: r.try_get("consumer_org")?,
            department: r.try_get("consumer_department")?,
            role: role.map(|x| x.parse()).transpose()?,
        },
        state,
        terms,
        revision: r.try_get("revision")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        hmac_key: hex::decode(key).map_err(|e| PolicyError::Corrupt(e.to_string()))?,
    })
}

fn user_from_row(r: &AnyRow) -> Result<User, PolicyError> {
    Ok(User {
        username: r.try_get("username")?,
        org: r.try_get("org")?,
        department: r.try_get("department")?,
        role: r.try_get::<String, _>("role")?.parse()?,
    })
}

/// `6(1)(a)`–`6(1)(f)` or `9(2)(a)`–`9(2)(j)`.
fn is_gdpr_article(s: &str) -> bool {
    let s = s.trim();
    let letter = |l: &str, last: char| l.len() == 1 && l.chars().all(|c| ('a'..=last).contains(&c));
    if let Some(l) = s.strip_prefix("6(1)(").and_then(|x| x.strip_suffix(')')) {
        return letter(l, 'f');
    }
    if let Some(l) = s.strip_prefix("9(2)(").and_then(|x| x.strip_suffix(')')) {
        return letter(l, 'j');
    }
    false
}

fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A hash of a random password, checked when the user does not exist.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut p = [0u8; 24];
    rand::rng().fill_bytes(&mut p);
    hash_password(&hex::encode(p)).unwrap_or_default()
});

fn hash_password(p: &str) -> Result<String, PolicyError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
    argon2::Argon2::default().hash_password(p.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| PolicyError::Corrupt(e.to_string()))
}

fn verify_password(p: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(p.as_bytes(), &h).is_ok())
}

/// Something a principal asks to do rather than read, answered by [`Policy::may`].
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Request an agreement for a consumer department.
    RequestAgreement(&'a Party),
    /// Approve or deny a requested agreement.
    Decide(&'a Agreement),
    /// Revoke an agreement.
    Revoke(&'a Agreement),
    /// Create datasets in, or write versions of the datasets of, a department.
    Write {
        /// The organisation.
        org: &'a str,
        /// The department.
        department: &'a str,
    },
    /// Upload files at all (whether the upload page is offered).
    Upload,
    /// Read an organisation's access log.
    ReadAuditLog {
        /// The organisation.
        org: &'a str,
    },
}

impl std::fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::RequestAgreement(c) => write!(f, "request an agreement for {c}"),
            Action::Decide(a) => write!(f, "approve or deny agreement {}", a.id),
            Action::Revoke(a) => write!(f, "revoke agreement {}", a.id),
            Action::Write { org, department } => write!(f, "create or change the datasets of {org}/{department}"),
            Action::Upload => write!(f, "upload"),
            Action::ReadAuditLog { org } => write!(f, "read the access log of {org}"),
        }
    }
}

#[cfg(test)]
mod tests;
