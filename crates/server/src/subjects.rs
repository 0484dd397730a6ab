//! Look-ups: `GET /api/v1/subjects/person/{fødselsnummer}`, `/property/{matrikkel}` and
//! `/organization/{orgnr}`, with a purpose (`Tverr-Purpose` or `?purpose=`). Everything the caller
//! may see about the subject for that purpose, from every dataset and organisation, grouped by
//! organisation, department and dataset, with the grounds of each ([`Engine::lookup`]).
//!
//! A matrikkel unit contains slashes: `/property/3403-12/345` and `/property/3403-12%2F345` both
//! work, as do the short forms inside the caller's own kommune (`/property/12/345`).

use axum::Json;
use axum::extract::{Path, State};
use tverr_access::{Lookup, QueryError};
use tverr_core::SubjectKind;

use crate::auth::Authenticated;
use crate::{AppState, Problem, ProblemKind};
use tverr_access::Channel;

async fn lookup(state: AppState, who: Authenticated, kind: SubjectKind, id: &str) -> Result<Json<Lookup>, Problem> {
    let caller = who.caller;
    let _permit = state.gate.admit(&caller, &state.limits)?;
    let found = state.engine.lookup(&caller.principal, caller.purpose.as_deref(), kind, id, Channel::HttpLookup).await;
    match found {
        Ok(l) => Ok(Json(l)),
        Err(QueryError::Invalid(m)) => Err(Problem::invalid_parameter(format!("id: {m}"))),
        Err(QueryError::NotAllowed(m)) => Err(Problem::new(ProblemKind::Forbidden, m)),
        Err(e) => Err(Problem::from_query(e)),
    }
}

/// Everything about a person (fødselsnummer, D-, H- or synthetic number).
#[utoipa::path(get, path = "/api/v1/subjects/person/{id}", tag = "look-ups",
    params(("id" = String, Path, description = "Fødselsnummer; spaces and dashes are ignored"), ("purpose" = Option<String>, Query, description = "The purpose (or the Tverr-Purpose header)")),
    responses((status = 200, description = "The rows about the person the caller may see for the purpose", body = Lookup)), security(("bearer" = [])))]
pub async fn person(State(state): State<AppState>, who: Authenticated, Path(id): Path<String>) -> Result<Json<Lookup>, Problem> {
    lookup(state, who, SubjectKind::Person, &id).await
}

/// Everything about a property (matrikkel unit).
#[utoipa::path(get, path = "/api/v1/subjects/property/{id}", tag = "look-ups",
    params(("id" = String, Path, description = "Matrikkel unit: 3403-12/345, 3403-12/345/0/2, or 12/345 in the caller's kommune; historical kommunenummer (0403) are mapped"), ("purpose" = Option<String>, Query, description = "The purpose (or the Tverr-Purpose header)")),
    responses((status = 200, description = "The rows about the property the caller may see for the purpose", body = Lookup)), security(("bearer" = [])))]
pub async fn property(State(state): State<AppState>, who: Authenticated, Path(id): Path<String>) -> Result<Json<Lookup>, Problem> {
    lookup(state, who, SubjectKind::Property, &id).await
}

/// Everything about an organisation (organisasjonsnummer).
#[utoipa::path(get, path = "/api/v1/subjects/organization/{id}", tag = "look-ups",
    params(("id" = String, Path, description = "Organisasjonsnummer (9 digits; NO…MVA accepted)"), ("purpose" = Option<String>, Query, description = "The purpose (or the Tverr-Purpose header)")),
    responses((status = 200, description = "The rows about the organisation the caller may see for the purpose", body = Lookup)), security(("bearer" = [])))]
pub async fn organization(State(state): State<AppState>, who: Authenticated, Path(id): Path<String>) -> Result<Json<Lookup>, Problem> {
    lookup(state, who, SubjectKind::Organization, &id).await
}
