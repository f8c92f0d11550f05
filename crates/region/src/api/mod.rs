//! The REST API: routes of every service, the middleware around them, and the
//! OpenAPI document derived from them.

pub mod auth;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod page;
pub mod statuses;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use nubo_api::error::ErrorBody;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::error::ApiResult;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nubo",
        description = "The nubo cloud's region API. Authenticate with AWS Signature \
                       Version 4 (service `nubo`, the region's name as region) or \
                       `Authorization: Bearer KEY_ID:SECRET`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags(
        (name = "accounts", description = "Signup and the caller's account"),
        (name = "keys", description = "Access keys"),
        (name = "regions", description = "The regions of this cloud"),
        (name = "quotas", description = "Per-account quotas"),
        (name = "compute", description = "Instance types, images and instances"),
        (name = "networks", description = "Private networks of instances"),
        (name = "volumes", description = "Block volumes and their snapshots"),
        (name = "billing", description = "Usage, metered per second"),
        (name = "storage", description = "Buckets of object storage (S3 clients use the S3 endpoint)"),
        (name = "admin", description = "Operator endpoints"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "sigv4",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "AWS4-HMAC-SHA256 signature with an access key; service `nubo`",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("KEY_ID:SECRET of an access key"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The region's operator token"))
                    .build(),
            ),
        );
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::accounts::routes())
        .merge(crate::keys::routes())
        .merge(crate::regions::routes())
        .merge(crate::quotas::routes())
        .merge(crate::compute::routes())
        .merge(crate::networks::routes())
        .merge(crate::volumes::routes())
        .merge(crate::billing::routes())
        .merge(crate::hosts::routes())
        .merge(crate::backup::routes())
        .merge(crate::storage::routes())
        .routes(routes!(healthz))
        .routes(routes!(metrics::metrics))
}

/// The OpenAPI document of this build's API.
pub fn openapi() -> Document {
    let (_, doc) = documented_router();
    doc
}

/// The routes and their document, complete with the statuses that follow from
/// each operation's shape (which only the merged document shows).
fn documented_router() -> (Router<AppState>, Document) {
    let (router, mut doc) = api_router().split_for_parts();
    statuses::ShapeStatuses.modify(&mut doc);
    (router, doc)
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (router, doc) = documented_router();
    let doc = std::sync::Arc::new(doc);
    router
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route_layer(middleware::from_fn(remember_route))
        .fallback(envelope::no_route)
        .method_not_allowed_fallback(envelope::wrong_method)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            envelope::envelope,
        ))
        .with_state(state)
}

/// Hands the matched route to the envelope, which runs before routing.
async fn remember_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    region: String,
}

/// Answers 200 while the region serves and reaches its store.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, body = Health)))]
async fn healthz(State(state): State<AppState>) -> ApiResult<axum::Json<Health>> {
    let mut c = state.store.conn().await?;
    nubo_store::accounts::count_active(&mut c).await?;
    Ok(axum::Json(Health {
        status: "ok",
        region: state.config.region.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    /// The checked-in document is what this build serves. Regenerate it with
    /// `cargo xtask openapi` after changing the API.
    #[test]
    fn openapi_document() {
        let text = serde_json::to_string_pretty(&super::openapi()).unwrap() + "\n";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/nubo.json");
        if std::env::var_os("NUBO_UPDATE_OPENAPI").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "openapi/nubo.json differs from the API this code serves; run `cargo xtask openapi`"
        );
    }

    #[test]
    fn every_operation_has_a_unique_verb_like_id_and_a_tag() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let mut ids = HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(
                    !id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{method} {path}: operation id {id:?}"
                );
                assert!(ids.insert(id.to_string()), "duplicate operation id {id}");
                assert!(
                    op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                    "{id} has no tag"
                );
            }
        }
    }
}
