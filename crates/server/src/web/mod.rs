//! The web pages: HTML rendered on the server from templates compiled into the binary
//! (`templates/`), one style sheet (`assets/tverr.css`) and no script, so the
//! Content-Security-Policy needs no `unsafe-inline`. Norwegian bokmål first, English second
//! (`?lang=` sets a cookie; a link on every page switches).
//!
//! A browser session (`Policy::create_session`: a random secret in an HttpOnly, Secure, SameSite
//! cookie, its hash in the catalogue's `web_sessions`) signs in a local user, an OIDC user or a
//! citizen; a page then reads data exactly as an API client of that principal would: through the
//! engine's secure scan, with the declared purpose, and into the access log (channel `web`). Every form carries
//! a CSRF token bound to the session (or, before log-in, to a random cookie of its own).

mod api_nb;
mod barnehage;
mod byggesak;
mod connectors;
mod format;
mod helse;
mod i18n;
mod ingest_nb;
mod kindergartens;
mod me;
mod messages;
pub(crate) mod ogc_page;
mod oidc;
mod pages;
mod session;
mod subscriptions;
mod svg;
mod tokens;
mod upload;
mod work;

pub use pages::Charts;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tverr_policy::Principal;

use crate::AppState;
pub use i18n::Lang;

/// The not-found page for `v`, with every page's security headers.
pub fn not_found_page(v: &Visitor) -> Response {
    let mut response = pages::not_found(v);
    page_headers(response.headers_mut());
    response
}

/// The cookie that holds the session's API token.
const SESSION_COOKIE: &str = "tverr_session";
/// The cookie that holds a visitor's CSRF secret before they log in.
const PRE_SESSION_COOKIE: &str = "tverr_csrf";
/// The cookie that remembers the language.
const LANG_COOKIE: &str = "tverr_lang";

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::front))
        .route("/datasett/{org}/{dataset}", get(pages::dataset))
        .route("/datasett/{org}/{dataset}/last-ned", get(pages::download))
        .route("/apne-data/ledige-barnehageplasser", get(kindergartens::kindergartens))
        .route("/min-side", get(me::me))
        .route("/min-side/data.json", get(me::me_download))
        .route("/min-side/data.csv", get(me::me_csv))
        .route("/min-side/helse", get(helse::my_health))
        .route("/min-side/barnehage", get(barnehage::my_kindergarten))
        .route("/helse", get(helse::health))
        .route("/barnehageopptak", get(barnehage::admission).post(barnehage::admission_post))
        .route("/api", get(pages::api))
        .route("/avtaler", get(work::agreements).post(work::request))
        .route("/avtaler/{id}/{action}", post(work::transition))
        .route("/oppslag", get(work::lookup).post(work::lookup_post))
        .route("/byggesak", get(byggesak::start).post(byggesak::show))
        .route("/byggesak/naboliste", post(byggesak::neighbour_list))
        .route("/revisjon", get(work::audit))
        .route("/mine-nokler", get(tokens::list).post(tokens::create))
        .route("/koblinger", get(connectors::list).post(connectors::create))
        .route("/koblinger/{name}/kjor", post(connectors::run))
        .route("/koblinger/{name}/slett", post(connectors::delete))
        .route("/datasett/{org}/{dataset}/abonnement", post(subscriptions::create))
        .route("/abonnement/{id}/slett", post(subscriptions::delete))
        .route("/mine-nokler/{id}/trekk-tilbake", post(tokens::revoke))
        .route("/logg-inn", get(session::login_page).post(session::login))
        .route("/logg-inn/innbygger", post(session::citizen_login))
        .route("/logg-ut", post(session::logout))
        .route("/logg-inn/oidc/tilbake", get(oidc::callback))
        .route("/logg-inn/oidc/{n}", get(oidc::start))
        .route("/last-opp", get(upload::start))
        .route("/last-opp/jobb/{id}", get(upload::job))
        .route("/last-opp/{id}", post(upload::confirm))
        .route("/static/tverr.css", get(style_sheet))
        .layer(axum::middleware::from_fn(secure_headers))
}

/// The upload form's route: files up to `upload_bytes`, and no request time limit (an upload
/// of a large file takes as long as the network needs).
pub fn upload_routes(upload_bytes: u64) -> Router<AppState> {
    Router::new()
        .route("/last-opp", post(upload::check))
        .layer(axum::extract::DefaultBodyLimit::max(usize::try_from(upload_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX)))
        .layer(axum::middleware::from_fn(secure_headers))
}

async fn style_sheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/tverr.css"),
    )
        .into_response()
}

/// The policy every page is served with: nothing from elsewhere, no inline script or style, no
/// framing; pages with personal data are not stored by caches.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

async fn secure_headers(request: Request, next: Next) -> Response {
    let lang = query_value(request.uri().query(), "lang").and_then(|v| Lang::parse(&v));
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    page_headers(h);
    if let Some(lang) = lang {
        let cookie = format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax", lang.code());
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The headers every page is sent with.
fn page_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// One value of a query string, the first if given more than once.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A cookie's value from the request.
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    cookie_of(&parts.headers, name)
}

/// A cookie's value from request headers.
fn cookie_of(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Who is looking at a page, in which language, with which CSRF token.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// The principal of the session, or anonymous.
    pub principal: Principal,
    /// The session's token, when logged in.
    pub session: Option<String>,
    /// The language of the page.
    pub lang: Lang,
    /// The token every form of this visitor carries.
    pub csrf: String,
    /// A new pre-session CSRF secret to set as a cookie.
    new_pre_session: Option<String>,
    /// The path and query of the request, for the language switch.
    pub path: String,
    query: Option<String>,
    /// The client's address.
    pub client: Option<std::net::SocketAddr>,
}

/// The CSRF token of a session: a digest of its secret, so it needs no storage and dies with it.
fn session_csrf(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(format!("tverr-csrf\0{secret}").as_bytes())[..16])
}

pub(crate) fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Whether the browser says this request was started by another site (Fetch Metadata's
/// `Sec-Fetch-Site`: a link, form, image or script there). `same-site` counts too: another
/// host under the same registrable domain is not this site.
fn from_another_site(parts: &Parts) -> bool {
    parts.headers.get("sec-fetch-site").is_some_and(|v| matches!(v.as_bytes(), b"cross-site" | b"same-site"))
}

/// Where an identity provider sends the browser back to; it starts a session, so it is the one
/// page another site may open in a visitor's name.
const OIDC_RETURN: &str = "/logg-inn/oidc/tilbake";

impl FromRequestParts<AppState> for Visitor {
    /// A page opened from another site with a session is not shown: the visitor gets a page
    /// that asks them to go on from this site (see [`from_another_site`]).
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().map(str::to_string);
        let lang = query_value(query.as_deref(), "lang")
            .and_then(|v| Lang::parse(&v))
            .or_else(|| cookie(parts, LANG_COOKIE).and_then(|v| Lang::parse(&v)))
            .unwrap_or_default();
        let client = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        let mut visitor = Visitor {
            principal: Principal::Anonymous,
            session: None,
            lang,
            csrf: String::new(),
            new_pre_session: None,
            path: parts.uri.path().to_string(),
            query,
            client,
        };
        let foreign = from_another_site(parts);
        if foreign && cookie(parts, SESSION_COOKIE).is_some() && visitor.path != OIDC_RETURN {
            // Every page that reads data or acts does so in the visitor's name and logs it;
            // another site must not make the browser do that (a cross-site GET carries a
            // `SameSite=Lax` cookie). The visitor goes on by a link on this site instead.
            let here = match &visitor.query {
                Some(q) => format!("{}?{q}", visitor.path),
                None => visitor.path.clone(),
            };
            let chrome = visitor.chrome(lang.t("foreign_title"));
            let message =
                Message::new(chrome, lang.t("foreign_title"), lang.t("foreign_text").to_string()).with_link(here, lang.t("foreign_go"));
            return Err(visitor.page(StatusCode::OK, &message));
        }
        if let Some(secret) = cookie(parts, SESSION_COOKIE).filter(|_| !foreign) {
            // An expired, revoked or forged session is no session: the visitor is anonymous.
            // The log-in that started the session is logged, not every page it then opens
            // (each read of data is, as an access).
            if let Ok(principal) = state.engine.policy().authenticate_session(&secret).await {
                visitor.principal = principal;
                visitor.csrf = session_csrf(&secret);
                visitor.session = Some(secret);
                return Ok(visitor);
            }
        }
        match cookie(parts, PRE_SESSION_COOKIE).filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(pre) => visitor.csrf = pre,
            None => {
                let pre = random_hex(16);
                visitor.csrf = pre.clone();
                visitor.new_pre_session = Some(pre);
            }
        }
        Ok(visitor)
    }
}

impl Visitor {
    /// The page frame's data for this visitor.
    pub fn chrome(&self, title: &str) -> Chrome {
        let who = match &self.principal {
            Principal::User(u) => Some(u.username.clone()),
            Principal::Citizen { .. } => Some(self.lang.t("citizen_you").to_string()),
            _ => None,
        };
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .filter(|(k, _)| k != "lang")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.push(("lang".into(), self.lang.other().code().into()));
        let switch_href = format!("{}?{}", self.path, url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish());
        Chrome {
            lang: self.lang,
            title: title.to_string(),
            who,
            citizen: matches!(self.principal, Principal::Citizen { .. }),
            employee: matches!(self.principal, Principal::User(_)),
            auditor: matches!(&self.principal, Principal::User(u) if u.role == tverr_policy::Role::Auditor),
            steward: tverr_policy::Policy::may(&self.principal, tverr_policy::Action::Upload).is_ok(),
            csrf: self.csrf.clone(),
            switch_href,
            path: self.path.clone(),
        }
    }

    /// A rendered page with this visitor's cookies.
    pub fn page(&self, status: StatusCode, template: &impl Template) -> Response {
        let body = match template.render() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "a template failed to render");
                return (StatusCode::INTERNAL_SERVER_ERROR, Html("<!doctype html><title>Feil</title><p>Feil / Error</p>".to_string()))
                    .into_response();
            }
        };
        let mut response = (status, Html(body)).into_response();
        if let Some(pre) = &self.new_pre_session {
            let cookie = format!("{PRE_SESSION_COOKIE}={pre}; Path=/; HttpOnly; Secure; SameSite=Strict");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        response
    }

    /// The fields of a posted form, or the refusal page when its CSRF token is not this
    /// visitor's.
    pub fn form(&self, body: &[u8]) -> Result<std::collections::HashMap<String, String>, Response> {
        let fields: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        if self.csrf_ok(fields.get("csrf").map_or("", String::as_str)) { Ok(fields) } else { Err(session::bad_form(self)) }
    }

    /// Whether a form's CSRF token is this visitor's.
    pub fn csrf_ok(&self, sent: &str) -> bool {
        use subtle_eq::eq;
        !self.csrf.is_empty() && eq(self.csrf.as_bytes(), sent.as_bytes())
    }

    /// The caller this visitor is to the engine and the API's handlers.
    pub fn caller(&self, purpose: Option<String>) -> crate::Caller {
        crate::Caller { principal: self.principal.clone(), purpose: purpose.filter(|p| !p.is_empty()), client: self.client }
    }
}

/// The purposes a user may declare: their organisation's, of their department or of none.
async fn own_purposes(state: &AppState, u: &tverr_policy::User) -> Vec<tverr_policy::Purpose> {
    let all = state.engine.policy().purposes(&u.org).await.unwrap_or_default();
    all.into_iter().filter(|p| p.department.is_none() || p.department == u.department).collect()
}

/// Comparison in time independent of where the bytes differ.
mod subtle_eq {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// What the frame of every page shows.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// Language.
    pub lang: Lang,
    /// The page's title.
    pub title: String,
    /// Who is logged in, as shown.
    pub who: Option<String>,
    /// Whether the visitor is a citizen.
    pub citizen: bool,
    /// Whether the visitor is an employee (any role).
    pub employee: bool,
    /// Whether the visitor is an auditor.
    pub auditor: bool,
    /// Whether the visitor may upload (a steward or an admin).
    pub steward: bool,
    /// The visitor's CSRF token.
    pub csrf: String,
    /// The same page in the other language.
    pub switch_href: String,
    /// The current path.
    pub path: String,
}

impl Chrome {
    /// A text in the page's language.
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }

    /// Whether `href` is the current page (for `aria-current`).
    pub fn current(&self, href: &str) -> bool {
        self.path == href
    }

    /// The log-in page, coming back here afterwards (to the front page from the log-in page).
    pub fn login_href(&self) -> String {
        if self.path.starts_with("/logg-inn") || self.path == "/" {
            return "/logg-inn".to_string();
        }
        let next: String = url::form_urlencoded::byte_serialize(self.path.as_bytes()).collect();
        format!("/logg-inn?next={next}")
    }
}

/// A page that says what went wrong, in the visitor's language.
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    page: Chrome,
    heading: String,
    text: String,
    /// A link to go on with: its target on this site and its words.
    link: Option<(String, String)>,
}

impl Message {
    /// A page with a heading and a text.
    pub fn new(page: Chrome, heading: &str, text: String) -> Self {
        Self { page, heading: heading.to_string(), text, link: None }
    }

    /// The same page with a link to go on with.
    pub fn with_link(mut self, href: String, label: &str) -> Self {
        self.link = Some((href, label.to_string()));
        self
    }
}
