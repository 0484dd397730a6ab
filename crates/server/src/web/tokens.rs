//! `/mine-nokler`: an employee's own API tokens, made and revoked on a page as `tverr token`
//! does on the command line. A new token's secret is shown once, on the answer to the form that
//! made it; only its hash is kept. Each change is in the access log (`token-change`, channel
//! `web`), and a user can revoke only their own tokens.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tverr_access::{Channel, RecordKind};
use tverr_policy::User;

use super::pages::role_or_page;
use super::{Chrome, Lang, Visitor, format, query_value};
use crate::AppState;
use crate::auth::SignedIn;

/// How long a new token may live, in days, as the form offers it.
const LIFETIMES: [u32; 4] = [1, 30, 90, 365];

struct TokenRow {
    id: String,
    made: String,
    expires: String,
    /// The state in words, and whether it still works.
    state: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    page: Chrome,
    tokens: Vec<TokenRow>,
    /// The secret of a token just made, shown this once.
    secret: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    lifetimes: Vec<(u32, String)>,
}

fn user(v: &Visitor) -> Result<User, Response> {
    let who: SignedIn = role_or_page(v, "tokens_title", "employees_only")?;
    Ok(who.user().clone())
}

async fn page(
    state: &AppState,
    v: &Visitor,
    u: &User,
    status: StatusCode,
    secret: Option<String>,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let now = chrono::Utc::now();
    let tokens = state
        .engine
        .policy()
        .tokens(&u.username)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let expired = t.expires_at.as_deref().and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok()).is_some_and(|e| e < now);
            let (state, active) = match (&t.revoked_at, expired) {
                (Some(at), _) => (v.lang.t("token_revoked").replace("{at}", &format::moment_text(v.lang, at)), false),
                (None, true) => (v.lang.t("token_expired").to_string(), false),
                (None, false) => (v.lang.t("token_active").to_string(), true),
            };
            TokenRow {
                made: format::moment_text(v.lang, &t.created_at),
                expires: t
                    .expires_at
                    .as_deref()
                    .map(|e| format::moment_text(v.lang, e))
                    .unwrap_or_else(|| v.lang.t("token_never").to_string()),
                id: t.id,
                state,
                active,
            }
        })
        .collect();
    let lifetimes = LIFETIMES.iter().map(|d| (*d, days(v.lang, *d))).collect();
    v.page(status, &TokensPage { page: v.chrome(v.lang.t("tokens_title")), tokens, secret, notice, error, lifetimes })
}

fn days(lang: Lang, d: u32) -> String {
    if d == 1 { lang.t("token_one_day").to_string() } else { lang.t("token_days").replace("{n}", &d.to_string()) }
}

/// `GET /mine-nokler`.
pub async fn list(State(state): State<AppState>, v: Visitor) -> Response {
    let u = match user(&v) {
        Ok(u) => u,
        Err(r) => return r,
    };
    // Said only of the visitor's own token, and only when it is revoked.
    let own = state.engine.policy().tokens(&u.username).await.unwrap_or_default();
    let notice = query_value(v.query.as_deref(), "trukket")
        .filter(|id| own.iter().any(|t| &t.id == id && t.revoked_at.is_some()))
        .map(|id| v.lang.t("token_revoked_notice").replace("{id}", &id));
    page(&state, &v, &u, StatusCode::OK, None, notice, None).await
}

/// `POST /mine-nokler`: a new token for the visitor, valid the days chosen.
pub async fn create(State(state): State<AppState>, v: Visitor, body: Bytes) -> Response {
    let u = match user(&v) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let fields = match v.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(days) = fields.get("dager").and_then(|d| d.parse::<u32>().ok()).filter(|d| LIFETIMES.contains(d)) else {
        let error = v.lang.t("token_bad_lifetime").to_string();
        return page(&state, &v, &u, StatusCode::BAD_REQUEST, None, None, Some(error)).await;
    };
    // The intent is logged before the token exists; a token the log did not record is not made.
    let details = serde_json::json!({"action": "create", "for": {"user": u.username}, "expires_days": days});
    if let Err(e) = state.engine.log_event(RecordKind::TokenChange, &v.principal, Channel::Web, details).await {
        return super::pages::problem_page(&v, crate::Problem::from_query(e));
    }
    match state.engine.policy().create_token(&u.username, Some(days)).await {
        Ok(t) => page(&state, &v, &u, StatusCode::OK, Some(t.secret), None, None).await,
        // A user signed in through an identity provider has no local account to hold tokens.
        Err(_) => page(&state, &v, &u, StatusCode::CONFLICT, None, None, Some(v.lang.t("token_not_local").to_string())).await,
    }
}

/// `POST /mine-nokler/{id}/trekk-tilbake`: revokes one of the visitor's own tokens.
pub async fn revoke(State(state): State<AppState>, v: Visitor, Path(id): Path<String>, body: Bytes) -> Response {
    let u = match user(&v) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = v.form(&body) {
        return r;
    }
    if !(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())) {
        return super::pages::not_found(&v);
    }
    let details = serde_json::json!({"action": "revoke", "token": id});
    if let Err(e) = state.engine.log_event(RecordKind::TokenChange, &v.principal, Channel::Web, details).await {
        return super::pages::problem_page(&v, crate::Problem::from_query(e));
    }
    match state.engine.policy().revoke_own_token(&u.username, &id).await {
        Ok(()) => Redirect::to(&format!("/mine-nokler?trukket={id}")).into_response(),
        // Another user's token, or one already revoked: the same answer as none.
        Err(_) => {
            let error = v.lang.t("token_not_found").to_string();
            page(&state, &v, &u, StatusCode::NOT_FOUND, None, None, Some(error)).await
        }
    }
}
