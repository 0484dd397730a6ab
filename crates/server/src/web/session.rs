//! Log-in and log-out in the browser. A local user's password (or, in the demo, a citizen's
//! fødselsnummer) becomes a one-day API token in the session cookie; log-out revokes the token.
//! Every attempt is in the access log and failures are throttled per user name and address.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tverr_policy::{PolicyError, Principal};

use super::{Chrome, Message, PRE_SESSION_COOKIE, SESSION_COOKIE, Visitor};
use crate::AppState;
use tverr_access::{Channel, RecordKind};

/// How long a browser session lasts.
pub(crate) const SESSION_HOURS: u32 = 12;

/// The page a form was refused on for a missing or wrong CSRF token.
pub(crate) fn bad_form(v: &Visitor) -> Response {
    let page = v.chrome(v.lang.t("error"));
    v.page(StatusCode::FORBIDDEN, &Message::new(page, v.lang.t("error"), v.lang.t("bad_form").to_string()))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Chrome,
    error: Option<&'static str>,
    citizen_error: Option<String>,
    username: String,
    next: String,
    citizen_demo: bool,
    /// Issuers with a browser log-in: (index, name).
    providers: Vec<(usize, String)>,
}

/// Only a local path may be the page to return to after log-in.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        // Visible ASCII only: no header injection into the redirect, no other host.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.contains("://")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn login_form(
    state: &AppState,
    v: &Visitor,
    status: StatusCode,
    error: Option<&'static str>,
    citizen_error: Option<String>,
    username: String,
    next: String,
) -> Response {
    let providers = state.oidc.as_ref().map(|o| o.browser_logins()).unwrap_or_default();
    let page = LoginPage {
        page: v.chrome(v.lang.t("login_title")),
        error,
        citizen_error,
        username,
        next,
        citizen_demo: state.citizen_demo.is_some(),
        providers,
    };
    v.page(status, &page)
}

/// `GET /logg-inn`.
pub async fn login_page(State(state): State<AppState>, v: Visitor) -> Response {
    let next = safe_next(super::query_value(v.query.as_deref(), "next").as_deref());
    login_form(&state, &v, StatusCode::OK, None, None, String::new(), next)
}

pub(crate) fn session_cookie(secret: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; Secure; SameSite=Lax"))
        .expect("a token is a valid cookie value")
}

pub(crate) fn expired(name: &str, same_site: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite={same_site}")).expect("a valid cookie")
}

pub(crate) fn logged_in(secret: &str, next: &str) -> Response {
    let mut r = Redirect::to(next).into_response();
    r.headers_mut().append(header::SET_COOKIE, session_cookie(secret));
    // The pre-session secret has done its work.
    r.headers_mut().append(header::SET_COOKIE, expired(PRE_SESSION_COOKIE, "Strict"));
    r
}

/// `POST /logg-inn`: user name and password.
pub async fn login(State(state): State<AppState>, v: Visitor, body: Bytes) -> Response {
    let f = match v.form(&body) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let username = f.get("username").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let next = safe_next(f.get("next").map(String::as_str));
    let policy = state.engine.policy();
    match state.logins.attempt(policy, &username, v.client).await {
        Ok(()) => {}
        Err(crate::limits::Refused::Throttled(_)) => {
            let details = serde_json::json!({"outcome": "throttled", "username": username});
            state.engine.note_event(RecordKind::Login, &Principal::Anonymous, Channel::Web, details);
            return login_form(&state, &v, StatusCode::TOO_MANY_REQUESTS, Some("login_limited"), None, username, next);
        }
        Err(crate::limits::Refused::Unavailable(problem)) => return super::pages::problem_page(&v, problem),
    }
    match policy.login(&username, &password).await {
        Ok(who) => {
            state.logins.succeeded(policy, &username, v.client).await;
            let token = match policy.create_session(&who, "password", SESSION_HOURS).await {
                Ok(t) => t,
                Err(e) => return failure(&v, &e.to_string()),
            };
            let details = serde_json::json!({"outcome": "ok", "token": token.id});
            if let Err(e) = state.engine.log_event(RecordKind::Login, &who, Channel::Web, details).await {
                let _ = policy.end_session(&token.secret).await;
                return failure(&v, &e.to_string());
            }
            logged_in(&token.secret, &next)
        }
        Err(PolicyError::Unauthenticated(_)) => {
            let details = serde_json::json!({"outcome": "refused", "username": username});
            if let Err(e) = state.engine.log_event(RecordKind::Login, &Principal::Anonymous, Channel::Web, details).await {
                return failure(&v, &e.to_string());
            }
            login_form(&state, &v, StatusCode::UNAUTHORIZED, Some("login_failed"), None, username, next)
        }
        Err(e) => failure(&v, &e.to_string()),
    }
}

pub(crate) fn failure(v: &Visitor, detail: &str) -> Response {
    tracing::warn!(detail, "a log-in could not be completed");
    let page = v.chrome(v.lang.t("error"));
    v.page(StatusCode::SERVICE_UNAVAILABLE, &Message::new(page, v.lang.t("error"), detail.to_string()))
}

/// `POST /logg-inn/innbygger`: the demo's citizen log-in (ID-porten in production). Only when
/// the server runs the demo.
pub async fn citizen_login(State(state): State<AppState>, v: Visitor, body: Bytes) -> Response {
    let Some(demo) = &state.citizen_demo else {
        let page = v.chrome(v.lang.t("not_found"));
        return v.page(StatusCode::NOT_FOUND, &Message::new(page, v.lang.t("not_found"), v.lang.t("not_found_text").to_string()));
    };
    let f = match v.form(&body) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let pid: String = f.get("fnr").map(|p| p.chars().filter(|c| !c.is_whitespace()).collect()).unwrap_or_default();
    let policy = state.engine.policy();
    match demo.citizen(&pid) {
        Ok(principal) => {
            let token = match policy.create_session(&principal, "demo-citizen", SESSION_HOURS).await {
                Ok(t) => t,
                Err(e) => return failure(&v, &e.to_string()),
            };
            let details = serde_json::json!({"outcome": "ok", "token": token.id, "method": "demo-citizen"});
            if let Err(e) = state.engine.log_event(RecordKind::Login, &principal, Channel::Web, details).await {
                let _ = policy.end_session(&token.secret).await;
                return failure(&v, &e.to_string());
            }
            // Back to the page that asked for the log-in; Min side otherwise.
            let next = safe_next(f.get("next").map(String::as_str));
            logged_in(&token.secret, if next == "/" { "/min-side" } else { &next })
        }
        Err(e) => {
            let error = format!("{}: {e}", v.lang.t("login_citizen_bad"));
            login_form(&state, &v, StatusCode::BAD_REQUEST, None, Some(error), String::new(), "/".into())
        }
    }
}

/// `POST /logg-ut`: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, v: Visitor, body: Bytes) -> Response {
    if let Err(refused) = v.form(&body) {
        return refused;
    }
    if let Some(secret) = &v.session {
        let _ = state.engine.policy().end_session(secret).await;
        state.engine.note_event(RecordKind::Logout, &v.principal, Channel::Web, serde_json::json!({}));
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(header::SET_COOKIE, expired(SESSION_COOKIE, "Lax"));
    r
}
