//! The dataset page's notices of new versions: a signed-in reader makes a subscription for a URL
//! of theirs (the secret shown once), sees how each of their subscriptions' last event went, and
//! stops one. The same engine calls as the API and the command line, on channel `web`.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tverr_access::{Channel, NewSubscription, SubscriptionInfo};
use tverr_policy::Principal;

use super::{Chrome, Lang, Visitor, messages};
use crate::AppState;

/// A subscription as a line of the dataset page.
pub(super) struct SubscriptionLine {
    pub id: String,
    pub url: String,
    /// How its last event went, in words.
    pub state: String,
    /// Why the last event failed or was withheld, in the page's language.
    pub error: Option<String>,
}

impl SubscriptionLine {
    pub(super) fn of(s: &SubscriptionInfo, lang: Lang) -> Self {
        let (state, error) = match &s.last_delivery {
            None => (lang.t("sub_state_none").to_string(), None),
            Some(d) => (
                lang.t(&format!("sub_state_{}", d.state)).to_string(),
                d.last_error.as_deref().filter(|_| d.state != "delivered").map(|e| messages::translate(lang, e)),
            ),
        };
        SubscriptionLine { id: s.id.clone(), url: s.url.clone(), state, error }
    }
}

#[derive(Template)]
#[template(path = "subscription_made.html")]
struct MadePage {
    page: Chrome,
    dataset: String,
    url: String,
    id: String,
    secret: String,
    back: String,
}

/// The dataset page's address, with the purpose it was read for.
fn dataset_href(reference: &str, purpose: &str) -> String {
    let mut href = format!("/datasett/{reference}");
    if !purpose.is_empty() {
        let p: String = url::form_urlencoded::byte_serialize(purpose.as_bytes()).collect();
        href.push_str(&format!("?purpose={p}"));
    }
    href
}

fn signed_in(v: &Visitor) -> Result<(), Response> {
    match &v.principal {
        Principal::User(_) => Ok(()),
        _ => {
            let next: String = url::form_urlencoded::byte_serialize(v.path.as_bytes()).collect();
            Err(Redirect::to(&format!("/logg-inn?next={next}")).into_response())
        }
    }
}

/// `POST /datasett/{org}/{dataset}/abonnement`: subscribes the visitor, and shows the secret once.
pub async fn create(State(state): State<AppState>, v: Visitor, Path((org, dataset)): Path<(String, String)>, body: Bytes) -> Response {
    if let Err(r) = signed_in(&v) {
        return r;
    }
    let fields = match v.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let get = |k: &str| fields.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
    let reference = format!("{org}/{dataset}");
    let purpose = get("purpose");
    let new = NewSubscription { dataset: reference.clone(), url: get("url"), purpose: Some(purpose.clone()).filter(|p| !p.is_empty()) };
    match state.engine.create_subscription(&v.principal, Channel::Web, new).await {
        Ok(made) => {
            let page = MadePage {
                page: v.chrome(v.lang.t("sub_made_title")),
                dataset: reference.clone(),
                url: made.subscription.url.clone(),
                id: made.subscription.id.clone(),
                secret: made.secret,
                back: format!("{}#abonnementer", dataset_href(&reference, &purpose)),
            };
            v.page(StatusCode::CREATED, &page)
        }
        Err(tverr_access::QueryError::NotFound(_)) => super::pages::not_found(&v),
        Err(e) => {
            let why = match e {
                tverr_access::QueryError::Store(s) => messages::Said::of(&s).iter().map(|s| s.text(v.lang)).collect::<Vec<_>>().join(" "),
                other => messages::translate(v.lang, &other.to_string()),
            };
            let text = format!("{} {why}", v.lang.t("sub_refused"));
            let page = super::Message::new(v.chrome(v.lang.t("sub_title")), v.lang.t("sub_title"), text)
                .with_link(format!("{}#abonnementer", dataset_href(&reference, &purpose)), v.lang.t("sub_back"));
            v.page(StatusCode::BAD_REQUEST, &page)
        }
    }
}

/// `POST /abonnement/{id}/slett`: stops one of the visitor's subscriptions and goes back to its
/// dataset's page.
pub async fn delete(State(state): State<AppState>, v: Visitor, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = signed_in(&v) {
        return r;
    }
    let fields = match v.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(s) = state.engine.subscription(&v.principal, &id).await else { return super::pages::not_found(&v) };
    let purpose = fields.get("purpose").cloned().unwrap_or_default();
    match state.engine.delete_subscription(&v.principal, Channel::Web, &id).await {
        Ok(()) => Redirect::to(&format!("{}#abonnementer", dataset_href(&s.dataset, &purpose))).into_response(),
        Err(_) => super::pages::not_found(&v),
    }
}
