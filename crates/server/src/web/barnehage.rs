//! Kindergarten places beyond the open page: `/min-side/barnehage`, a parent's view of each
//! child's place, applications, offers and price ([`crate::family::kindergarten_of`]), and
//! `/barnehageopptak`, the admission case worker's applicants per kindergarten and age group
//! with the places free ([`crate::family::admission_of`], for the purpose `barnehageopptak`).
//!
//! The overview names children, so, as on `/oppslag`, only a form posted from this site with
//! the visitor's CSRF token reads it; `GET` shows the form.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tverr_core::Fodselsnummer;
use tverr_policy::Principal;

use super::helse::whose_text;
use super::pages::{CHANNEL, problem_page, role_or_page};
use super::{Chrome, Lang, Visitor, format};
use crate::AppState;
use crate::auth::CitizenCaller;
use crate::family::{Price, Whose};

/// The purpose the admission overview is read for.
pub const PURPOSE: &str = "barnehageopptak";

struct ChildView {
    heading: String,
    place: Option<(String, String, String)>,
    price: Option<(String, Vec<String>)>,
    offers: Vec<String>,
    applications: Vec<[String; 6]>,
}

#[derive(Template)]
#[template(path = "me_kindergarten.html")]
struct MyKindergartenPage {
    page: Chrome,
    children: Vec<ChildView>,
    rules: String,
}

/// The price and how it came about, as sentences.
fn price_view(lang: Lang, p: &Price) -> (String, Vec<String>) {
    let kr = |x: f64| format!("{} kr", format::number(lang, x, 0));
    let mut why = vec![
        lang.t("kgm_why_maximum")
            .replace("{max}", &kr(p.maximum))
            .replace("{share}", &format::number(lang, p.share_of_full_time * 100.0, 0)),
    ];
    if let (Some(income), Some(cap)) = (p.income, p.income_cap) {
        why.push(lang.t("kgm_why_income").replace("{income}", &kr(income)).replace("{cap}", &kr(cap.round())));
    } else {
        why.push(lang.t("kgm_why_no_income").to_string());
    }
    if p.sibling > 1 {
        why.push(
            lang.t("kgm_why_sibling")
                .replace("{n}", &p.sibling.to_string())
                .replace("{pct}", &format::number(lang, p.sibling_reduction, 0)),
        );
    }
    (lang.t("kgm_per_month").replace("{kr}", &kr(p.monthly)), why)
}

/// `GET /min-side/barnehage`: for each of my children of kindergarten age, the place or the
/// applications and their status, the places offered, and the price.
pub async fn my_kindergarten(State(state): State<AppState>, v: Visitor) -> Response {
    let citizen: CitizenCaller = match role_or_page(&v, "kgm_title", "me_only_citizens") {
        Ok(c) => c,
        Err(page) => return page,
    };
    let view = match crate::family::kindergarten_of(&state, &citizen, CHANNEL).await {
        Ok(view) => view,
        Err(p) => return problem_page(&v, p),
    };
    let children = view
        .children
        .iter()
        .map(|c| {
            let whose = Whose { kind: "child", child: Some(c.child.clone()) };
            ChildView {
                heading: whose_text(v.lang, &whose),
                place: c.places.first().map(|p| {
                    (
                        format::plain(p.get("barnehage")),
                        format::date(v.lang, &format::plain(p.get("startdato"))),
                        format::json(v.lang, p.get("timer_per_uke")),
                    )
                }),
                price: c.price.as_ref().map(|p| price_view(v.lang, p)),
                offers: c
                    .offers
                    .iter()
                    .map(|o| {
                        v.lang
                            .t("kgm_offer")
                            .replace("{kg}", &format::plain(o.get("tilbudt_barnehage")))
                            .replace("{start}", &format::date(v.lang, &format::plain(o.get("onsket_start"))))
                            .replace("{deadline}", &format::date(v.lang, &format::plain(o.get("svarfrist"))))
                    })
                    .collect(),
                applications: c
                    .applications
                    .iter()
                    .map(|a| {
                        [
                            format::plain(a.get("soknad_id")),
                            format::plain(a.get("onsket_barnehage")),
                            format::date(v.lang, &format::plain(a.get("onsket_start"))),
                            format::plain(a.get("status")),
                            format::plain(a.get("tilbudt_barnehage")),
                            format::date(v.lang, &format::plain(a.get("svarfrist"))),
                        ]
                    })
                    .collect(),
            }
        })
        .collect();
    let rules = view
        .rules
        .as_ref()
        .map(|r| {
            v.lang
                .t("kgm_rules")
                .replace("{max}", &format::json(v.lang, r.get("makspris_per_maaned")))
                .replace("{pct}", &format::json(v.lang, r.get("maks_andel_av_inntekt_prosent")))
                .replace("{months}", &format::json(v.lang, r.get("betalingsmaaneder")))
                .replace("{second}", &format::json(v.lang, r.get("soskenmoderasjon_barn_2_prosent")))
                .replace("{third}", &format::json(v.lang, r.get("soskenmoderasjon_barn_3_prosent")))
                .replace("{from}", &format::date(v.lang, &format::plain(r.get("gjelder_fra"))))
        })
        .unwrap_or_default();
    v.page(StatusCode::OK, &MyKindergartenPage { page: v.chrome(v.lang.t("kgm_title")), children, rules })
}

struct Applicant {
    id: String,
    born: String,
    start: String,
    status: String,
}

struct KindergartenRow {
    name: String,
    ages: String,
    free: i64,
    capacity: i64,
    groups: Vec<(String, Vec<Applicant>)>,
    total: usize,
}

#[derive(Template)]
#[template(path = "admission.html")]
struct AdmissionPage {
    page: Chrome,
    searched: bool,
    error: Option<String>,
    rows: Vec<KindergartenRow>,
}

fn admitted(v: &Visitor) -> Result<(), Response> {
    match &v.principal {
        Principal::User(_) => Ok(()),
        Principal::Anonymous => {
            Err(axum::response::IntoResponse::into_response(axum::response::Redirect::to("/logg-inn?next=%2Fbarnehageopptak")))
        }
        _ => {
            let page = v.chrome(v.lang.t("adm_title"));
            Err(v.page(StatusCode::FORBIDDEN, &super::Message::new(page, v.lang.t("adm_title"), v.lang.t("employees_only").to_string())))
        }
    }
}

/// `GET /barnehageopptak`: the form that shows the admission overview.
pub async fn admission(v: Visitor) -> Response {
    if let Err(r) = admitted(&v) {
        return r;
    }
    v.page(StatusCode::OK, &AdmissionPage { page: v.chrome(v.lang.t("adm_title")), searched: false, error: None, rows: Vec::new() })
}

/// `POST /barnehageopptak` (`csrf`): per kindergarten, the places free and the applicants who
/// want it first, by age group on the admission day, read for `barnehageopptak`.
pub async fn admission_post(State(state): State<AppState>, v: Visitor, body: axum::body::Bytes) -> Response {
    if let Err(r) = admitted(&v) {
        return r;
    }
    if let Err(refused) = v.form(&body) {
        return refused;
    }
    let mut page = AdmissionPage { page: v.chrome(v.lang.t("adm_title")), searched: false, error: None, rows: Vec::new() };
    let _permit = match state.gate.admit(&v.caller(Some(PURPOSE.to_string())), &state.limits) {
        Ok(p) => p,
        Err(p) => return problem_page(&v, p),
    };
    let view = match crate::family::admission_of(&state, &v.principal, Some(PURPOSE), CHANNEL).await {
        Ok(view) => view,
        Err(p) if p.status == 403 || p.status == 404 => {
            page.error = Some(v.lang.t("adm_no_purpose").to_string());
            return v.page(StatusCode::FORBIDDEN, &page);
        }
        Err(p) => return problem_page(&v, p),
    };
    page.searched = true;
    page.rows = view
        .kindergartens
        .into_iter()
        .map(|k| KindergartenRow {
            total: k.applicants.values().map(Vec::len).sum(),
            groups: k
                .applicants
                .into_iter()
                .map(|(group, rows)| {
                    let applicants = rows
                        .iter()
                        .map(|a| Applicant {
                            id: format::plain(a.get("soknad_id")),
                            born: Fodselsnummer::parse(&format::plain(a.get("barn_fnr")))
                                .map(|f| format::date(v.lang, &f.birth_date().to_string()))
                                .unwrap_or_default(),
                            start: format::date(v.lang, &format::plain(a.get("onsket_start"))),
                            status: format::plain(a.get("status")),
                        })
                        .collect();
                    (v.lang.t("adm_group").replace("{g}", &group), applicants)
                })
                .collect(),
            name: k.name,
            ages: k.ages,
            free: k.free,
            capacity: k.capacity,
        })
        .collect();
    v.page(StatusCode::OK, &page)
}
