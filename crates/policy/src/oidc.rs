//! OIDC bearer tokens from configured issuers: employees (Entra ID, Ansattporten), citizens
//! (ID-porten) and systems (Maskinporten). Signatures are checked against the issuer's JWKS
//! (RS256 or ES256 only); issuer, audience, expiry and not-before are required and checked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;
use tverr_store::Catalog;

use crate::{Citizen, Principal, Role, SignedIn, System, User};

/// What kind of subject an issuer's tokens name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// Employees of one organisation; department and role come from claims.
    Employee,
    /// Citizens (ID-porten): `pid` and `acr`.
    Citizen,
    /// Systems (Maskinporten): `consumer.ID` = `0192:<orgnr>` and `scope`.
    System,
}

/// Claim names of an employee issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// The user name (e.g. `preferred_username`).
    #[serde(default = "default_username")]
    pub username: String,
    /// The department slug.
    #[serde(default = "default_department")]
    pub department: String,
    /// The role (a string or a list; the first that is a Tverr role counts).
    #[serde(default = "default_role")]
    pub role: String,
    /// A claim naming the organisation (its slug or orgnr), for issuers that sign in the
    /// employees of several organisations; without it the issuer's `org` is used.
    #[serde(default)]
    pub org: Option<String>,
}

fn default_username() -> String {
    "preferred_username".into()
}
fn default_department() -> String {
    "department".into()
}
fn default_role() -> String {
    "roles".into()
}

/// One trusted issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// Kind of subjects.
    pub kind: IssuerKind,
    /// The `iss` value tokens must carry.
    pub issuer: String,
    /// Where its signing keys are published.
    pub jwks_uri: String,
    /// The `aud` value tokens must carry.
    pub audience: String,
    /// For employee issuers: the organisation (slug) whose employees it signs in.
    #[serde(default)]
    pub org: Option<String>,
    /// For employee issuers: which claims name the user, department and role.
    #[serde(default)]
    pub claims: Option<ClaimMapping>,
    /// The web pages' log-in with this issuer (authorization code flow with PKCE), if offered.
    #[serde(default)]
    pub login: Option<BrowserLogin>,
}

/// How the web pages sign people in with an issuer: the authorization code flow with PKCE
/// (S256), `state` bound to the browser by a cookie, and `nonce` checked in the ID token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserLogin {
    /// The button's text ("ID-porten", "Hamar kommune (Entra ID)").
    pub name: String,
    /// The issuer's authorization endpoint.
    pub authorization_endpoint: String,
    /// The issuer's token endpoint.
    pub token_endpoint: String,
    /// Tverr's client id at the issuer; the ID token's audience must be the issuer's `audience`.
    pub client_id: String,
    /// The client secret, for issuers that require one (sent in the token request's body).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Tverr's registered redirect URI: `https://…/logg-inn/oidc/tilbake`.
    pub redirect_uri: String,
    /// Scopes to ask for.
    #[serde(default = "default_scope")]
    pub scope: String,
}

fn default_scope() -> String {
    "openid".into()
}

/// The OIDC configuration file (`tverr serve --oidc FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Trusted issuers.
    pub issuers: Vec<Issuer>,
}

impl OidcConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: OidcConfig =
            serde_json::from_str(&text).map_err(|e| format!("{}: line {}, column {}: {e}", path.display(), e.line(), e.column()))?;
        for (i, iss) in config.issuers.iter().enumerate() {
            let org_claim = iss.claims.as_ref().is_some_and(|c| c.org.is_some());
            if iss.kind == IssuerKind::Employee && iss.org.is_none() && !org_claim {
                return Err(format!(
                    "{}: issuers[{i}] ({}): an employee issuer needs \"org\" or an \"org\" claim mapping",
                    path.display(),
                    iss.issuer
                ));
            }
        }
        Ok(config)
    }
}

/// Lowest ID-porten levels accepted for citizens.
const CITIZEN_ACR: &[&str] = &["idporten-loa-substantial", "idporten-loa-high"];

/// How long fetched keys are trusted before a token with an unknown `kid` may refetch them.
const REFETCH_AFTER: Duration = Duration::from_secs(60);

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// Verifies OIDC tokens; holds each issuer's keys, fetched on first use.
pub struct Verifier {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, Keys>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("issuers", &self.config.issuers.len()).finish()
    }
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

impl Verifier {
    /// A verifier for the configured issuers.
    pub fn new(config: OidcConfig) -> Arc<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Arc::new(Self { config, http, keys: RwLock::new(HashMap::new()) })
    }

    async fn fetch(&self, issuer: &Issuer) -> Result<(), String> {
        let body = self
            .http
            .get(&issuer.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot fetch the keys of {}: {e}", issuer.issuer))?
            .bytes()
            .await
            .map_err(|e| format!("cannot fetch the keys of {}: {e}", issuer.issuer))?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("the keys of {} are not a JWKS: {e}", issuer.issuer))?;
        self.keys.write().await.insert(issuer.issuer.clone(), Keys { set, fetched: Instant::now() });
        Ok(())
    }

    async fn key(&self, issuer: &Issuer, kid: &str) -> Result<DecodingKey, String> {
        for attempt in 0..2 {
            {
                let keys = self.keys.read().await;
                if let Some(k) = keys.get(&issuer.issuer) {
                    if let Some(jwk) = k.set.find(kid) {
                        return DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key {kid}: {e}"));
                    }
                    if attempt == 1 || k.fetched.elapsed() < REFETCH_AFTER {
                        return Err(format!("unknown signing key {kid}"));
                    }
                }
            }
            self.fetch(issuer).await?;
        }
        Err(format!("unknown signing key {kid}"))
    }

    /// The issuers the web pages offer a log-in with: (index, button text).
    pub fn browser_logins(&self) -> Vec<(usize, String)> {
        self.config.issuers.iter().enumerate().filter_map(|(i, iss)| iss.login.as_ref().map(|l| (i, l.name.clone()))).collect()
    }

    /// The issuer at `index` in the configuration.
    pub fn issuer(&self, index: usize) -> Option<&Issuer> {
        self.config.issuers.get(index)
    }

    /// The HTTP client the verifier fetches keys with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Verifies a token and maps it to a principal. The reason for a refusal is meant for the
    /// caller (it never contains the token).
    pub async fn verify(&self, token: &str, catalog: &Catalog) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "not a valid JWT".to_string())?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(format!("algorithm {:?} is not accepted; use RS256 or ES256", header.alg));
        }
        let kid = header.kid.ok_or("the token names no signing key (kid)")?;
        // The issuer decides which keys to check with; it is verified again with the signature.
        let claimed = unverified_claims(token)?;
        let issuer =
            self.config.issuers.iter().find(|i| Some(&i.issuer) == claimed.iss.as_ref()).ok_or("the token's issuer is not trusted")?;
        let key = self.key(issuer, &kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&[&issuer.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => "the token has expired".to_string(),
                K::ImmatureSignature => "the token is not valid yet".to_string(),
                K::InvalidIssuer => "the token's issuer is not trusted".to_string(),
                K::InvalidAudience => "the token is not meant for Tverr (audience)".to_string(),
                K::InvalidSignature => "the token's signature is wrong".to_string(),
                K::MissingRequiredClaim(c) => format!("the token lacks the claim {c}"),
                _ => "the token is not valid".to_string(),
            }
        })?;
        let claims = data.claims;
        match issuer.kind {
            IssuerKind::Employee => employee(issuer, &claims, catalog).await,
            IssuerKind::Citizen => citizen(&claims),
            IssuerKind::System => system(&claims, catalog).await,
        }
    }
}

fn unverified_claims(token: &str) -> Result<Unverified, String> {
    use base64::Engine;
    let payload = token.split('.').nth(1).ok_or("not a valid JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| "not a valid JWT")?;
    serde_json::from_slice(&bytes).map_err(|_| "not a valid JWT".to_string())
}

fn text<'a>(claims: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty())
}

async fn employee(issuer: &Issuer, claims: &serde_json::Value, catalog: &Catalog) -> Result<Principal, String> {
    let mapping = issuer.claims.clone().unwrap_or(ClaimMapping {
        username: default_username(),
        department: default_department(),
        role: default_role(),
        org: None,
    });
    let org = match &mapping.org {
        Some(claim) => {
            let named = text(claims, claim).ok_or_else(|| format!("the token lacks the claim {claim}"))?;
            catalog
                .orgs()
                .await
                .map_err(|_| "the catalogue is unavailable".to_string())?
                .into_iter()
                .find(|o| o.slug == named || o.orgnr == named)
                .map(|o| o.slug)
                .ok_or_else(|| format!("the organisation {named} is not known to Tverr"))?
        }
        None => issuer.org.clone().ok_or("the issuer has no organisation")?,
    };
    let username = text(claims, &mapping.username).ok_or_else(|| format!("the token lacks the claim {}", mapping.username))?;
    let roles: Vec<&str> = match claims.get(&mapping.role) {
        Some(serde_json::Value::String(s)) => vec![s.as_str()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(serde_json::Value::as_str).collect(),
        _ => Vec::new(),
    };
    let role = roles.iter().find_map(|r| r.parse::<Role>().ok()).ok_or("the token names no Tverr role")?;
    let department = text(claims, &mapping.department).map(str::to_string);
    if role.is_departmental() {
        let d = department.as_deref().ok_or("the token names no department")?;
        catalog.department(&org, d).await.map_err(|_| format!("the department {d} does not exist in {org}"))?;
    }
    Ok(Principal::User(SignedIn::new(User {
        username: username.to_string(),
        org,
        department: if role.is_departmental() { department } else { None },
        role,
    })))
}

fn citizen(claims: &serde_json::Value) -> Result<Principal, String> {
    let acr = text(claims, "acr").unwrap_or("");
    if !CITIZEN_ACR.contains(&acr) {
        return Err("the sign-in level is too low: idporten-loa-substantial or higher is required".into());
    }
    let pid = text(claims, "pid").ok_or("the token lacks the claim pid")?;
    let pid = tverr_core::Fodselsnummer::parse(pid).map_err(|_| "the pid claim is not a valid person number")?;
    Ok(Principal::Citizen(Citizen::new(pid.as_str().to_string())))
}

async fn system(claims: &serde_json::Value, catalog: &Catalog) -> Result<Principal, String> {
    let id = claims.get("consumer").and_then(|c| c.get("ID")).and_then(serde_json::Value::as_str).ok_or("the token lacks consumer.ID")?;
    let orgnr = id.strip_prefix("0192:").ok_or("consumer.ID is not 0192:<orgnr>")?;
    let org = catalog
        .orgs()
        .await
        .map_err(|_| "the catalogue is unavailable".to_string())?
        .into_iter()
        .find(|o| o.orgnr == orgnr)
        .ok_or("the consumer organisation is not known to Tverr")?;
    let scopes = text(claims, "scope").unwrap_or("").split_whitespace().map(str::to_string).collect();
    Ok(Principal::System(System::new(org.slug, scopes)))
}
