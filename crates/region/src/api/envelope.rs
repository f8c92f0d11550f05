//! What wraps every request: its id, the JSON error body, the access log and the
//! request metrics.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nubo_api::REQUEST_ID_HEADER;
use nubo_api::error::{ErrorBody, ErrorCode};

use crate::api::error::{ApiError, ErrorDetails};
use crate::state::AppState;

/// The id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn envelope(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = format!("req-{:016x}", nubo_store::ids::random_u64());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();

    let mut response = next.run(req).await;
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());

    if let Some(details) = response.extensions_mut().remove::<ErrorDetails>() {
        let body = ErrorBody {
            code: details.code,
            message: details.message,
            request_id: id.clone(),
        };
        let (mut parts, _) = response.into_parts();
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        let json = serde_json::to_vec(&body).expect("an error body serializes");
        response = Response::from_parts(parts, Body::from(json));
    }
    response.headers_mut().insert(
        REQUEST_ID_HEADER,
        HeaderValue::from_str(&id).expect("request ids are ASCII"),
    );

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(method.as_str(), &route, status, elapsed);
    tracing::info!(
        target: "nubo::access",
        request_id = %id,
        method = %method,
        route = %route,
        status,
        micros = elapsed.as_micros() as u64,
    );
    response
}

/// Answer for paths that name nothing.
pub async fn no_route() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such path")
}

/// Answer for a method the path does not have.
pub async fn wrong_method() -> Response {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    )
    .into_response()
}
