//! The property service over HTTP («byggesak»):
//!
//! - `GET /api/v1/properties/{matrikkel}`: the property's rows (register, building cases, water
//!   meters), its parcel and the zoning plans whose plan area meets it, with the share each
//!   covers;
//! - `GET /api/v1/properties/{matrikkel}/neighbours?within=M[&format=csv]`: the neighbours to
//!   notify (plan- og bygningsloven § 21-3);
//! - `GET /api/v1/properties?address=…`: properties by address.
//!
//! With a purpose (`Tverr-Purpose` or `?purpose=`) for employees; a citizen sees only properties
//! they own, without a purpose, and never the neighbours. Everything is read through
//! [`tverr_access::Engine::property`] and its neighbours, so grants, masks, address protection
//! and the access log apply as everywhere.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tverr_access::{Channel, Neighbours, PropertySources, PropertyView, QueryError};
use tverr_core::DatasetRef;

use crate::auth::Authenticated;
use crate::{AppState, Problem, ProblemKind};

/// The datasets the service reads for an organisation: `{org}/eiendommer` (the property
/// register: address column `adresse`, owners `eier_navn` and `eier_orgnr`) and
/// `{org}/reguleringsplaner` (the zoning plans).
pub fn sources(org: &str) -> Option<PropertySources> {
    Some(PropertySources {
        register: format!("{org}/eiendommer").parse::<DatasetRef>().ok()?,
        plans: format!("{org}/reguleringsplaner").parse::<DatasetRef>().ok()?,
        address: "adresse".to_string(),
        owners: vec!["eier_navn".to_string(), "eier_orgnr".to_string()],
    })
}

/// The organisation whose property service a caller uses: their own; a citizen's is the demo
/// municipality's (the deployment's first organisation with a kommunenummer).
pub async fn home_org(state: &AppState, who: &tverr_policy::Principal) -> Result<String, Problem> {
    use tverr_policy::Principal;
    match who {
        Principal::User(u) => Ok(u.org.clone()),
        Principal::System(s) => Ok(s.org().to_string()),
        _ => {
            let orgs = state.engine.catalog().orgs().await.map_err(Problem::from_store)?;
            orgs.into_iter()
                .find(|o| o.kommunenummer.is_some())
                .map(|o| o.slug)
                .ok_or_else(|| Problem::new(ProblemKind::NotFound, "no kommune serves properties here"))
        }
    }
}

/// Maps the service's errors: a property the caller sees nothing of is a plain 404.
pub fn problem(e: QueryError) -> Problem {
    match e {
        QueryError::NotFound(_) => Problem::new(ProblemKind::NotFound, "no property you may see has this number"),
        QueryError::Invalid(m) => Problem::invalid_parameter(m),
        QueryError::NotAllowed(m) => Problem::new(ProblemKind::Forbidden, m),
        other => Problem::from_query(other),
    }
}

/// The query parameters of one route, each at most once, none unknown.
pub(crate) fn parameters(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, Problem> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(Problem::invalid_parameter(format!("unknown parameter {name:?}; this route takes {}", allowed.join(", "))));
        }
        if out.iter().any(|(n, _)| n == name.as_ref()) {
            return Err(Problem::invalid_parameter(format!("{name}: given more than once")));
        }
        out.push((name.into_owned(), value.into_owned()));
    }
    Ok(out)
}

fn value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Reads `within=` (metres): a number from 0 to 500; 50 when not given.
pub fn within(text: Option<&str>) -> Result<f64, Problem> {
    let Some(text) = text else { return Ok(DEFAULT_WITHIN) };
    let metres: f64 = text
        .trim()
        .replace(',', ".")
        .parse()
        .map_err(|_| Problem::invalid_parameter(format!("within: expected a distance in metres, found {text:?}")))?;
    if !(0.0..=tverr_access::MAX_NEIGHBOUR_DISTANCE).contains(&metres) {
        return Err(Problem::invalid_parameter(format!(
            "within: a distance from 0 to {} metres, found {text:?}",
            tverr_access::MAX_NEIGHBOUR_DISTANCE
        )));
    }
    Ok(metres)
}

/// The distance neighbours are looked for when none is given: the parcels across the road
/// (gjenboere) as well as those sharing a border.
pub const DEFAULT_WITHIN: f64 = 50.0;

/// One property, or (with the path ending in `/neighbours`) its neighbours.
#[utoipa::path(get, path = "/api/v1/properties/{id}", tag = "services",
    params(("id" = String, Path, description = "Matrikkel unit: 3403-12/345 (or 12/345 in the caller's kommune); append /neighbours for the neighbour list"),
        ("purpose" = Option<String>, Query, description = "The purpose, e.g. byggesaksbehandling (or the Tverr-Purpose header); none for a citizen"),
        ("within" = Option<f64>, Query, description = "Neighbours only: the distance in metres, 0 to 500 (default 50; 0 = sharing a border)"),
        ("format" = Option<String>, Query, description = "Neighbours only: json (default) or csv")),
    responses((status = 200, description = "The property as the caller may see it, with its zoning plans; or its neighbours", body = PropertyView),
        (status = 404, description = "No property the caller may see has this number", body = Problem)),
    security(("bearer" = [])))]
pub async fn property_view(State(state): State<AppState>, who: Authenticated, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let caller = who.caller;
    let answer = async {
        let _permit = state.gate.admit(&caller, &state.limits)?;
        let sources = sources(&home_org(&state, &caller.principal).await?).ok_or_else(|| problem(QueryError::NotFound(String::new())))?;
        let purpose = caller.purpose.as_deref();
        if let Some(id) = id.strip_suffix("/neighbours") {
            let params = parameters(raw.as_deref(), &["within", "format", "purpose"])?;
            let csv = match value(&params, "format") {
                None | Some("json") => false,
                Some("csv") => true,
                Some(other) => return Err(Problem::invalid_parameter(format!("format: json or csv, found {other:?}"))),
            };
            let within = within(value(&params, "within"))?;
            let found: Neighbours =
                state.engine.neighbours(&caller.principal, purpose, id, within, &sources, Channel::HttpProperty).await.map_err(problem)?;
            if csv {
                let name = format!("naboliste-{}.csv", found.id.replace('/', "-"));
                // The CSV has no room to say it was cut short; its headers say it.
                return Ok((
                    [
                        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
                        (header::HeaderName::from_static("tverr-found"), found.found.to_string()),
                        (header::HeaderName::from_static("tverr-truncated"), found.truncated.to_string()),
                    ],
                    found.csv,
                )
                    .into_response());
            }
            return Ok(Json(found).into_response());
        }
        parameters(raw.as_deref(), &["purpose"])?;
        let view: PropertyView =
            state.engine.property(&caller.principal, purpose, &id, &sources, Channel::HttpProperty).await.map_err(problem)?;
        Ok::<_, Problem>(Json(view).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// A property found by address.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AddressMatch {
    /// The matrikkel unit.
    pub matrikkel: String,
    /// Its address.
    pub address: String,
}

/// Properties whose address starts with `address` (case aside), as the caller may see them; a
/// citizen finds only properties they own (all of them without `address`).
#[utoipa::path(get, path = "/api/v1/properties", tag = "services",
    params(("address" = Option<String>, Query, description = "The start of an address, e.g. Storgata 12; at least two letters (a citizen may leave it out)"),
        ("purpose" = Option<String>, Query, description = "The purpose (or the Tverr-Purpose header); none for a citizen")),
    responses((status = 200, description = "Matching properties, by address", body = Vec<AddressMatch>)),
    security(("bearer" = [])))]
pub async fn properties_by_address(
    State(state): State<AppState>,
    who: Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<AddressMatch>>, Problem> {
    let caller = who.caller;
    let params = parameters(raw.as_deref(), &["address", "purpose"])?;
    let _permit = state.gate.admit(&caller, &state.limits)?;
    let sources = sources(&home_org(&state, &caller.principal).await?).ok_or_else(|| problem(QueryError::NotFound(String::new())))?;
    let address = value(&params, "address").unwrap_or_default();
    let found = state
        .engine
        .properties_by_address(&caller.principal, caller.purpose.as_deref(), address, &sources, Channel::HttpProperty)
        .await
        .map_err(problem)?;
    Ok(Json(
        found
            .into_iter()
            .map(|mut m| AddressMatch {
                matrikkel: m.remove("matrikkel").unwrap_or_default(),
                address: m.remove("address").unwrap_or_default(),
            })
            .collect(),
    ))
}
