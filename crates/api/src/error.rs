//! The error body of every failed request, and the stable codes it carries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every non-2xx answer of the API has this body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code; see [`ErrorCode`].
    pub code: ErrorCode,
    /// Human-readable explanation; may change between releases.
    pub message: String,
    /// The id of the request, also in the `x-request-id` header.
    pub request_id: String,
}

/// Stable error codes. Clients may match on these; they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ErrorCode {
    /// The body is not valid JSON, has a field of the wrong type or an unknown field.
    InvalidRequest,
    /// A parameter is well-formed but not acceptable; the message names it.
    InvalidParameter,
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// No credentials were presented.
    Unauthenticated,
    /// The access key id is unknown, disabled or belongs to a closed account.
    InvalidAccessKeyId,
    /// The signature or secret does not match.
    SignatureDoesNotMatch,
    /// The signed request's date is too far from the server's clock.
    RequestExpired,
    /// A signed request was presented a second time.
    RequestReplayed,
    /// The credentials are valid but may not do this (read-only key, operator endpoint).
    AccessDenied,
    /// No such resource, or it belongs to someone else.
    NotFound,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// An active account already uses this email address.
    EmailTaken,
    /// The account's last access key cannot be deleted.
    LastAccessKey,
    /// The resource is not in a state that allows the operation.
    InvalidState,
    /// A request reused an idempotency token with different parameters.
    IdempotencyMismatch,
    /// A resource of that name already exists.
    Conflict,
    /// A bucket that still holds objects cannot be deleted.
    BucketNotEmpty,
    /// The request would exceed one of the account's quotas.
    QuotaExceeded,
    /// The quota asked for is above the operator's ceiling.
    QuotaCeilingExceeded,
    /// No host in the region has room for the request.
    InsufficientCapacity,
    /// Too many requests from this client; retry after the `retry-after` header.
    RateLimited,
    /// The server failed; the request id helps the operator find out why.
    Internal,
    /// A dependency (the store) is unavailable; retry later.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status that always accompanies this code.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest | InvalidParameter => 400,
            Unauthenticated => 401,
            InvalidAccessKeyId
            | SignatureDoesNotMatch
            | RequestExpired
            | RequestReplayed
            | AccessDenied
            | QuotaExceeded
            | QuotaCeilingExceeded => 403,
            NotFound => 404,
            MethodNotAllowed => 405,
            EmailTaken | LastAccessKey | InvalidState | IdempotencyMismatch | Conflict
            | BucketNotEmpty => 409,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            RateLimited => 429,
            Internal => 500,
            Unavailable => 503,
            InsufficientCapacity => 507,
        }
    }
}
