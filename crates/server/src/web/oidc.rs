//! Log-in with an OIDC issuer in the browser: the authorization code flow with PKCE.
//!
//! `GET /logg-inn/oidc/{n}` makes a `state`, a `nonce` and a code verifier, keeps them for ten
//! minutes in the catalogue (so the issuer may send the browser back to any node), binds `state`
//! to the browser with a cookie, and sends the browser to the issuer with
//! the S256 code challenge. `GET /logg-inn/oidc/tilbake` takes the code back (once: the pending
//! log-in is removed whatever happens), redeems it at the token endpoint with the verifier,
//! checks the ID token as the API checks bearer tokens (signature, issuer, audience, expiry) and
//! its `nonce`, and starts a session for the principal it maps to.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use tverr_policy::Principal;

use super::session::{SESSION_HOURS, failure, logged_in, safe_next};
use super::{Message, Visitor, cookie_of, query_value};
use crate::AppState;
use tverr_access::{Channel, RecordKind};

/// The cookie that ties a pending log-in to the browser that started it.
const STATE_COOKIE: &str = "tverr_oidc";
/// How long a started log-in may take.
const PENDING_FOR: Duration = Duration::from_secs(600);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn refused(v: &Visitor, status: StatusCode, why: &str) -> Response {
    tracing::info!(why, "an OIDC log-in was refused");
    let page = v.chrome(v.lang.t("login_title"));
    v.page(status, &Message::new(page, v.lang.t("oidc_failed"), why.to_string()))
}

/// `GET /logg-inn/oidc/{n}?next=`.
pub async fn start(State(state): State<AppState>, v: Visitor, Path(index): Path<usize>) -> Response {
    let Some(login) = state.oidc.as_ref().and_then(|o| o.issuer(index)).and_then(|i| i.login.clone()) else {
        return refused(&v, StatusCode::NOT_FOUND, "no such log-in");
    };
    let (state_value, nonce, verifier) = (super::random_hex(16), super::random_hex(16), b64(super::random_hex(32).as_bytes()));
    let challenge = {
        use sha2::Digest;
        b64(&sha2::Sha256::digest(verifier.as_bytes()))
    };
    let next = safe_next(query_value(v.query.as_deref(), "next").as_deref());
    let pending = tverr_policy::PendingLogin { issuer: index, verifier, nonce: nonce.clone(), next };
    if let Err(e) = state.engine.policy().start_pending_login(&state_value, &pending, PENDING_FOR).await {
        return super::pages::problem_page(&v, crate::Problem::from_policy(e));
    }
    let mut url = match url::Url::parse(&login.authorization_endpoint) {
        Ok(u) => u,
        Err(e) => return failure(&v, &format!("the issuer's authorization endpoint is not a URL: {e}")),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &login.client_id)
        .append_pair("redirect_uri", &login.redirect_uri)
        .append_pair("scope", &login.scope)
        .append_pair("state", &state_value)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("ui_locales", v.lang.code());
    let mut r = Redirect::to(url.as_str()).into_response();
    // Lax: the issuer sends the browser back with a top-level GET, which carries it.
    let cookie = format!("{STATE_COOKIE}={state_value}; Path=/logg-inn/oidc; Max-Age=600; HttpOnly; Secure; SameSite=Lax");
    if let Ok(c) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// `GET /logg-inn/oidc/tilbake?code=&state=` (or `?error=`).
pub async fn callback(State(state): State<AppState>, v: Visitor, headers: axum::http::HeaderMap) -> Response {
    let q = v.query.clone();
    let get = |k: &str| query_value(q.as_deref(), k);
    let Some(state_value) = get("state") else { return refused(&v, StatusCode::BAD_REQUEST, "the issuer sent no state") };
    // Taken out at once: a code and a state are good for one try.
    let started = match state.engine.policy().take_pending_login(&state_value, PENDING_FOR).await {
        Ok(started) => started,
        Err(e) => return super::pages::problem_page(&v, crate::Problem::from_policy(e)),
    };
    let Some(started) = started else {
        return refused(&v, StatusCode::BAD_REQUEST, "this log-in was not started here, has been used, or is too old; start again");
    };
    if cookie_of(&headers, STATE_COOKIE).as_deref() != Some(state_value.as_str()) {
        return refused(&v, StatusCode::BAD_REQUEST, "this log-in was started in another browser");
    }
    if let Some(error) = get("error") {
        return refused(&v, StatusCode::UNAUTHORIZED, &format!("the issuer answered {error}"));
    }
    let Some(code) = get("code") else { return refused(&v, StatusCode::BAD_REQUEST, "the issuer sent no code") };
    let Some(verifier) = state.oidc.clone() else { return refused(&v, StatusCode::NOT_FOUND, "no issuers are configured") };
    let Some(issuer) = verifier.issuer(started.issuer).cloned() else { return refused(&v, StatusCode::NOT_FOUND, "no such log-in") };
    let Some(login) = issuer.login.clone() else { return refused(&v, StatusCode::NOT_FOUND, "no such log-in") };
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", &login.redirect_uri)
            .append_pair("client_id", &login.client_id)
            .append_pair("code_verifier", &started.verifier);
        if let Some(secret) = &login.client_secret {
            form.append_pair("client_secret", secret);
        }
        form.finish()
    };
    let answer = verifier
        .http()
        .post(&login.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let tokens: serde_json::Value = match answer {
        Ok(r) if r.status().is_success() => match r.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            Some(t) => t,
            None => return refused(&v, StatusCode::BAD_GATEWAY, "the token endpoint's answer is not JSON"),
        },
        Ok(r) => return refused(&v, StatusCode::UNAUTHORIZED, &format!("the token endpoint refused the code ({})", r.status())),
        Err(e) => return refused(&v, StatusCode::BAD_GATEWAY, &format!("the token endpoint did not answer: {e}")),
    };
    let Some(id_token) = tokens["id_token"].as_str() else {
        return refused(&v, StatusCode::BAD_GATEWAY, "the token endpoint sent no ID token");
    };
    let principal = match verifier.verify(id_token, state.engine.catalog()).await {
        Ok(p) => p,
        Err(why) => return refused(&v, StatusCode::UNAUTHORIZED, &why),
    };
    // The signature is verified, so the payload can be read for the nonce.
    let nonce = id_token
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| c["nonce"].as_str().map(str::to_string));
    if nonce.as_deref() != Some(started.nonce.as_str()) {
        return refused(&v, StatusCode::UNAUTHORIZED, "the ID token's nonce is not this log-in's");
    }
    if !matches!(principal, Principal::User(_) | Principal::Citizen { .. }) {
        return refused(&v, StatusCode::FORBIDDEN, "only employees and citizens sign in to the web pages");
    }
    let policy = state.engine.policy();
    let method = format!("oidc:{}", issuer.issuer);
    let session = match policy.create_session(&principal, &method, SESSION_HOURS).await {
        Ok(s) => s,
        Err(e) => return failure(&v, &e.to_string()),
    };
    let details = serde_json::json!({"outcome": "ok", "session": session.id, "method": method});
    if let Err(e) = state.engine.log_event(RecordKind::Login, &principal, Channel::Web, details).await {
        let _ = policy.end_session(&session.secret).await;
        return failure(&v, &e.to_string());
    }
    let next = if matches!(principal, Principal::Citizen { .. }) && started.next == "/" { "/min-side".to_string() } else { started.next };
    let mut r = logged_in(&session.secret, &next);
    if let Ok(c) = HeaderValue::from_str(&format!("{STATE_COOKIE}=; Path=/logg-inn/oidc; Max-Age=0; HttpOnly; Secure; SameSite=Lax")) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}
