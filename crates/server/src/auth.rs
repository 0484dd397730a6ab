//! Who is calling, and for what: the principal comes only from the `Authorization` header's
//! bearer credential (a Tverr API token, or an OIDC token from a configured issuer); the purpose from `Tverr-Purpose` or `?purpose=`. No
//! other header is ever read for identity or attributes.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use tverr_policy::{Action, Policy, Principal, TOKEN_PREFIX, User};

use crate::{AppState, Problem, ProblemKind};
use tverr_access::{Channel, RecordKind};

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// The declared purpose, if any.
    pub purpose: Option<String>,
    /// The client's address, when the server knows it (counts anonymous callers' queries).
    pub client: Option<std::net::SocketAddr>,
}

/// Header that declares the purpose of a request.
pub const PURPOSE_HEADER: &str = "tverr-purpose";

fn unauthorized(detail: &str) -> Problem {
    Problem::new(ProblemKind::Unauthenticated, detail)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let purpose = purpose(parts)?;
        let client = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(Caller { principal: Principal::Anonymous, purpose, client });
        };
        if values.next().is_some() {
            return Err(unauthorized("send one Authorization header"));
        }
        let value = value.to_str().map_err(|_| unauthorized("the Authorization header is not text"))?;
        let (scheme, credential) = value.split_once(' ').ok_or_else(|| unauthorized("expected `Authorization: Bearer <token>`"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized("only Bearer credentials are accepted"));
        }
        let credential = credential.trim();
        if !credential.starts_with(TOKEN_PREFIX) {
            let Some(verifier) = &state.oidc else {
                return Err(unauthorized("not a Tverr API token (no OIDC issuers are configured)"));
            };
            let principal = verifier.verify(credential, state.engine.catalog()).await.map_err(|why| unauthorized(&why))?;
            log_use(state, &principal, "oidc");
            return Ok(Caller { principal, purpose, client });
        }
        let principal = state.engine.policy().authenticate_token(credential).await.map_err(|e| match e {
            tverr_policy::PolicyError::Unauthenticated(why) => unauthorized(&why),
            other => Problem::from_policy(other),
        })?;
        log_use(state, &principal, "api-token");
        Ok(Caller { principal, purpose, client })
    }
}

/// A caller the policy has answered for: each role below is a `Caller` that passed one
/// policy question, so a handler that takes it cannot forget to ask. The web pages turn their
/// visitor into the same types (`TryFrom<Caller>`), so both ask alike.
macro_rules! role_extractor {
    ($role:ident) => {
        impl FromRequestParts<AppState> for $role {
            type Rejection = Problem;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                Self::try_from(Caller::from_request_parts(parts, state).await?)
            }
        }
    };
}

/// A signed-in user account (agreements).
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The request's caller.
    pub caller: Caller,
    user: User,
}

impl SignedIn {
    /// The user.
    pub fn user(&self) -> &User {
        &self.user
    }
}

impl TryFrom<Caller> for SignedIn {
    type Error = Problem;

    fn try_from(caller: Caller) -> Result<Self, Problem> {
        match &caller.principal {
            Principal::User(u) => Ok(Self { user: u.user().clone(), caller }),
            Principal::Anonymous => Err(unauthorized("agreements are for signed-in users: send Authorization: Bearer <token>")),
            _ => Err(Problem::new(ProblemKind::Forbidden, "agreements are for an organisation's employees")),
        }
    }
}
role_extractor!(SignedIn);

/// Anyone but the anonymous visitor (look-ups: what they find is the policy's answer).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The request's caller.
    pub caller: Caller,
}

impl TryFrom<Caller> for Authenticated {
    type Error = Problem;

    fn try_from(caller: Caller) -> Result<Self, Problem> {
        match caller.principal {
            Principal::Anonymous => Err(unauthorized("a look-up needs a signed-in user: send a bearer token")),
            _ => Ok(Self { caller }),
        }
    }
}
role_extractor!(Authenticated);

/// An auditor, who reads the access log of their own organisation
/// (`Policy::may(…, Action::ReadAuditLog)`).
#[derive(Debug, Clone)]
pub struct Auditor {
    /// The request's caller.
    pub caller: Caller,
    org: String,
}

impl Auditor {
    /// The organisation whose log the auditor reads.
    pub fn org(&self) -> &str {
        &self.org
    }
}

impl TryFrom<Caller> for Auditor {
    type Error = Problem;

    fn try_from(caller: Caller) -> Result<Self, Problem> {
        match &caller.principal {
            Principal::User(u) if Policy::may(&caller.principal, Action::ReadAuditLog { org: &u.org }).is_ok() => {
                Ok(Self { org: u.org.clone(), caller })
            }
            Principal::Anonymous => Err(unauthorized("the access log is for auditors: send Authorization: Bearer <token>")),
            _ => Err(Problem::new(ProblemKind::Forbidden, "the access log is for auditors")),
        }
    }
}
role_extractor!(Auditor);

/// A citizen signed in with ID-porten (or the demo's log-in), who sees their own data.
#[derive(Debug, Clone)]
pub struct CitizenCaller {
    /// The request's caller.
    pub caller: Caller,
    pid: String,
}

impl CitizenCaller {
    /// The citizen's fødselsnummer (or D-number).
    pub fn pid(&self) -> &str {
        &self.pid
    }
}

impl TryFrom<Caller> for CitizenCaller {
    type Error = Problem;

    fn try_from(caller: Caller) -> Result<Self, Problem> {
        match &caller.principal {
            Principal::Citizen(c) => Ok(Self { pid: c.pid().to_string(), caller }),
            Principal::Anonymous => Err(unauthorized("sign in as a citizen (ID-porten) to see your own data")),
            _ => Err(Problem::new(ProblemKind::Forbidden, "these pages show a citizen their own data; employees use the audit routes")),
        }
    }
}
role_extractor!(CitizenCaller);

/// Records the use of a credential. It gates nothing, so it goes with the next group commit:
/// a read that follows writes its intent record in the same commit, after this one.
fn log_use(state: &AppState, principal: &Principal, method: &str) {
    state.engine.note_event(RecordKind::Authentication, principal, Channel::Http, serde_json::json!({"method": method}));
}

fn purpose(parts: &Parts) -> Result<Option<String>, Problem> {
    let bad = |detail: &str| Problem::new(ProblemKind::InvalidPurpose, detail);
    let mut from_header = None;
    for v in parts.headers.get_all(PURPOSE_HEADER) {
        let v = v.to_str().map_err(|_| bad("the Tverr-Purpose header is not text"))?.trim().to_string();
        if from_header.replace(v).is_some() {
            return Err(bad("send one Tverr-Purpose header"));
        }
    }
    let from_query = parts
        .uri
        .query()
        .into_iter()
        .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .filter(|(k, _)| k == "purpose")
        .map(|(_, v)| v.into_owned())
        .collect::<Vec<_>>();
    if from_query.len() > 1 {
        return Err(bad("give purpose= once"));
    }
    let from_query = from_query.into_iter().next();
    match (from_header, from_query) {
        (Some(h), Some(q)) if h != q => Err(bad("the Tverr-Purpose header and purpose= differ")),
        (h, q) => Ok(h.or(q).filter(|p| !p.is_empty())),
    }
}

/// The purpose a request is made for (`Tverr-Purpose` header; `?purpose=` also works).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct PurposeHeader {
    /// A purpose registered by the data's organisation, e.g. `byggesaksbehandling`. Needed for
    /// every dataset that is not open.
    #[param(rename = "Tverr-Purpose")]
    tverr_purpose: Option<String>,
}
