//! Who is calling, and for what: the principal comes only from the `Authorization` header's
//! bearer credential (a Tverr API token, or an OIDC token from a configured issuer); the purpose from `Tverr-Purpose` or `?purpose=`. No
//! other header is ever read for identity or attributes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use tverr_policy::{Principal, TOKEN_PREFIX};

use crate::{AppState, Problem};

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
    Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Ikke autentisert / Not authenticated", detail)
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

/// Records the use of a credential. It gates nothing, so it goes with the next group commit:
/// a read that follows writes its intent record in the same commit, after this one.
fn log_use(state: &AppState, principal: &Principal, method: &str) {
    state.engine.note_event("authentication", principal, "http", serde_json::json!({"method": method}));
}

fn purpose(parts: &Parts) -> Result<Option<String>, Problem> {
    let bad = |detail: &str| Problem::new(StatusCode::BAD_REQUEST, "invalid-purpose", "Ugyldig formål / Invalid purpose", detail);
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
