//! Errors as the API answers them: a stable code, its HTTP status, a message.

use std::fmt::Display;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nubo_api::error::ErrorCode;
use nubo_store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for `RateLimited`.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        Self::new(ErrorCode::InvalidParameter, message)
    }

    /// The answer for a resource that does not exist *or* belongs to someone else:
    /// the two must be indistinguishable.
    pub fn not_found(kind: &str, id: &str) -> ApiError {
        Self::new(ErrorCode::NotFound, format!("{kind} {id} not found"))
    }

    pub fn invalid_state(message: impl Into<String>) -> ApiError {
        Self::new(ErrorCode::InvalidState, message)
    }

    /// A failure the caller cannot fix; the detail goes to the log, not the caller.
    pub fn internal(detail: impl Display) -> ApiError {
        tracing::error!(%detail, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; the request id identifies it in the server's log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "store unavailable");
            ApiError::new(
                ErrorCode::Unavailable,
                "the store is unavailable; retry later",
            )
        } else {
            ApiError::internal(e)
        }
    }
}

/// Carried in the response's extensions so that the request envelope can render
/// the body with the request id.
#[derive(Debug, Clone)]
pub struct ErrorDetails {
    pub code: ErrorCode,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.status())
            .expect("every error code maps to a valid status");
        let mut response = status.into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorDetails {
            code: self.code,
            message: self.message,
        });
        response
    }
}
