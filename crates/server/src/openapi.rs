//! The OpenAPI 3.1 document, generated from the handlers' annotations and the types they
//! return: `GET /api/v1/openapi.json`. Every operation also documents its errors as RFC 9457
//! problems (the `default` response).

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};

use crate::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tverr",
        description = "Tverr — data sharing for Norwegian municipalities. Every read goes through the policy layer (purpose, \
                       agreement, masks) and the access log. Errors are RFC 9457 problems (application/problem+json) with a \
                       stable `type`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::health, crate::ready, crate::ops::metrics, crate::api_index, crate::list_datasets, crate::show_dataset,
        crate::rows::rows, crate::changes::changes, crate::upload::create, crate::upload::add_version, crate::upload::list,
        crate::sql::query, crate::login::login,
        crate::audit::search, crate::audit::verify,
        crate::me::access_log, crate::me::data, crate::family::my_children, crate::family::my_health, crate::family::my_kindergarten, crate::family::kindergarten_admission,
        crate::subjects::person, crate::subjects::property, crate::subjects::organization,
        crate::properties::property_view, crate::properties::properties_by_address,
        crate::agreements::list, crate::agreements::show, crate::agreements::request, crate::agreements::transition,
        crate::connectors::list, crate::connectors::create, crate::connectors::show, crate::connectors::delete,
        crate::connectors::run, crate::connectors::runs,
        crate::subscriptions::list, crate::subscriptions::create, crate::subscriptions::show, crate::subscriptions::delete,
        crate::subscriptions::deliveries,
        document,
    ),
    components(schemas(Problem, crate::rows::Column)),
    tags(
        (name = "catalogue", description = "Finding datasets"),
        (name = "data", description = "Reading data through the secure scan"),
        (name = "uploads", description = "Writing new versions"),
        (name = "agreements", description = "Sharing agreements (delingsavtaler)"),
        (name = "connectors", description = "Datasets pulled from municipal systems on a schedule"),
        (name = "subscriptions", description = "Webhooks told of every new version of a dataset"),
        (name = "access", description = "Logging in"),
        (name = "look-ups", description = "Everything about one person, property or organisation, for a purpose"),
        (name = "services", description = "Services across departments: a property in a building case, its zoning plans and neighbours"),
        (name = "citizens", description = "Min side: my data and who accessed it"),
        (name = "audit", description = "The access log, for auditors"),
        (name = "service", description = "Liveness, readiness and this document"),
    ),
)]
struct ApiDoc;

/// The document, with a bearer scheme and the problem response on every operation.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A Tverr API token or an OIDC token")).build(),
        ),
    );
    let problem = ResponseBuilder::new()
        .description(
            "An RFC 9457 problem: 400 invalid input, 401 not authenticated, 403 not allowed or purpose missing, \
                      404 not found (or not yours to see), 405, 409, 413 too large, 415, 422 a file that cannot be read, \
                      429 too many queries or failed log-ins, 503 access log unavailable, 504 query timed out",
        )
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem")))).build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten() {
            op.responses.responses.insert("default".into(), RefOr::T(problem.clone()));
        }
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
