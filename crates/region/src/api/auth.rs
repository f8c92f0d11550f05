//! Authentication: who signed the request, checked before any handler runs.
//!
//! Two forms are accepted: AWS Signature Version 4 (what SDKs and the CLI send;
//! the secret never travels) and, for curl and scripts, `Authorization: Bearer
//! KEY_ID:SECRET`. The operator authenticates with `Bearer <operator token>`.
//! Handlers state what they need by taking a [`Caller`] or an [`Operator`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nubo_api::SIGV4_SERVICE;
use nubo_api::error::ErrorCode;
use nubo_api::keys::KeyScope;
use nubo_auth::credentials::is_access_key_id;
use nubo_auth::sigv4::{self, Authorization, Expectation, SigV4Error};

use crate::api::error::ApiError;
use crate::api::extract::{MAX_BODY, too_large};
use crate::keys::lookup::ActiveKey;
use crate::state::AppState;

/// How far a signed request's time may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Operator tokens start with this, so that they are never mistaken for keys.
pub const OPERATOR_TOKEN_PREFIX: &str = "nubo-op-";

#[derive(Clone)]
enum Authenticated {
    Key(Arc<ActiveKey>),
    Operator,
}

/// What the presented credentials proved. Only handlers that need credentials
/// act on it (through [`Caller`] and [`Operator`]): a public endpoint answers
/// whatever credentials came along.
#[derive(Clone)]
struct Credentials(Result<Authenticated, ApiError>);

pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return next.run(req).await;
    };
    let (outcome, mut req) = match value.to_str().map(str::to_string) {
        Err(_) => (
            Err(unauthenticated("the Authorization header is not ASCII")),
            req,
        ),
        Ok(value) => {
            if let Some(token) = value.strip_prefix("Bearer ") {
                (bearer(&state, token.trim()).await, req)
            } else if value.starts_with(sigv4::ALGORITHM) {
                match signed(&state, &value, req).await {
                    Ok(checked) => checked,
                    Err(too_large) => return too_large.into_response(),
                }
            } else {
                (
                    Err(unauthenticated(
                        "unsupported Authorization scheme; use AWS4-HMAC-SHA256 or Bearer",
                    )),
                    req,
                )
            }
        }
    };
    req.extensions_mut().insert(Credentials(outcome));
    next.run(req).await
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

fn invalid_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidAccessKeyId,
        "the access key id is not valid, is disabled, or its account is closed",
    )
}

async fn active_key(state: &AppState, key_id: &str) -> Result<Arc<ActiveKey>, ApiError> {
    if !is_access_key_id(key_id) {
        return Err(invalid_key());
    }
    state.keys.find(key_id).await?.ok_or_else(invalid_key)
}

async fn bearer(state: &AppState, token: &str) -> Result<Authenticated, ApiError> {
    if token.starts_with(OPERATOR_TOKEN_PREFIX) {
        return if constant_time_eq(token.as_bytes(), state.operator_token.as_bytes()) {
            Ok(Authenticated::Operator)
        } else {
            Err(ApiError::new(
                ErrorCode::AccessDenied,
                "the operator token is not valid",
            ))
        };
    }
    let (key_id, secret) = token
        .split_once(':')
        .ok_or_else(|| unauthenticated("a bearer token is KEY_ID:SECRET"))?;
    let key = active_key(state, key_id).await?;
    if constant_time_eq(secret.as_bytes(), key.secret.as_bytes()) {
        Ok(Authenticated::Key(key))
    } else {
        Err(ApiError::new(
            ErrorCode::SignatureDoesNotMatch,
            "the secret does not match the access key id",
        ))
    }
}

/// Checks a SigV4 signature; the request goes on with its body either way.
/// Only a body too large to hash ends the request here.
async fn signed(
    state: &AppState,
    value: &str,
    req: Request,
) -> Result<(Result<Authenticated, ApiError>, Request), ApiError> {
    let auth = match Authorization::parse(value) {
        Ok(auth) => auth,
        Err(e) => return Ok((Err(unauthenticated(&e.to_string())), req)),
    };
    let (parts, body) = req.into_parts();
    // An unsigned payload (uploads) is not part of the signature, so it streams
    // on to the handler; any other body is read here to check its hash.
    let unsigned = parts
        .headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes() == sigv4::UNSIGNED_PAYLOAD.as_bytes());
    let (signed_body, body) = if unsigned {
        (axum::body::Bytes::new(), body)
    } else {
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| too_large())?;
        (bytes.clone(), Body::from(bytes))
    };
    let outcome = verify(state, &auth, &parts, &signed_body).await;
    Ok((outcome, Request::from_parts(parts, body)))
}

async fn verify(
    state: &AppState,
    auth: &Authorization,
    parts: &Parts,
    body: &[u8],
) -> Result<Authenticated, ApiError> {
    let key = active_key(state, &auth.access_key_id).await?;
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let expect = Expectation {
        region: &state.config.region,
        service: SIGV4_SERVICE,
        // Freshness is judged by the real time the signer shares, even where
        // the region's clock is set apart for a test.
        now: std::time::SystemTime::now(),
        max_skew: MAX_SKEW,
    };
    sigv4::verify(
        auth,
        parts.method.as_str(),
        uri,
        &parts.headers,
        body,
        &key.secret,
        &expect,
    )
    .map_err(|e| match e {
        SigV4Error::Malformed(_) => unauthenticated(&e.to_string()),
        SigV4Error::Expired(..) => ApiError::new(ErrorCode::RequestExpired, e.to_string()),
        SigV4Error::Sign(detail) => ApiError::internal(detail),
        SigV4Error::Scope(_) | SigV4Error::ContentHash | SigV4Error::Mismatch => {
            ApiError::new(ErrorCode::SignatureDoesNotMatch, e.to_string())
        }
    })?;
    // A replayed read returns what the captured request already showed; a
    // replayed change (a launch, a key) would repeat it, so changes are signed once.
    let reads = parts.method == Method::GET || parts.method == Method::HEAD;
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(sigv4::parse_amz_date)
        .unwrap_or(UNIX_EPOCH);
    if !reads && !state.replay.first_use(&auth.signature, amz_date) {
        return Err(ApiError::new(
            ErrorCode::RequestReplayed,
            "this signed request was already received; sign each request anew",
        ));
    }
    Ok(Authenticated::Key(key))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The account behind an authenticated request. Taking it is what makes a
/// handler require credentials; a read-only key may only `GET`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub key_id: String,
    pub scope: KeyScope,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Credentials>().map(|c| &c.0) {
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(Authenticated::Key(key))) => {
                let reads = parts.method == Method::GET || parts.method == Method::HEAD;
                if key.scope == KeyScope::ReadOnly && !reads {
                    return Err(ApiError::new(
                        ErrorCode::AccessDenied,
                        "this access key is read-only",
                    ));
                }
                Ok(Caller {
                    account_id: key.account_id.clone(),
                    key_id: key.key_id.clone(),
                    scope: key.scope,
                })
            }
            Some(Ok(Authenticated::Operator)) => Err(ApiError::new(
                ErrorCode::AccessDenied,
                "the operator token does not act for an account; use an access key",
            )),
            None => Err(unauthenticated(
                "this endpoint needs credentials: sign the request (SigV4) or send \
                 Authorization: Bearer KEY_ID:SECRET",
            )),
        }
    }
}

/// Proof that the request carries the operator token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Credentials>().map(|c| &c.0) {
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(Authenticated::Operator)) => Ok(Operator),
            Some(Ok(Authenticated::Key(_))) => Err(ApiError::new(
                ErrorCode::AccessDenied,
                "operator endpoints need the operator token",
            )),
            None => Err(unauthenticated(
                "operator endpoints need Authorization: Bearer <operator token>",
            )),
        }
    }
}

/// Remembers the signatures of recent signed requests so that a captured request
/// cannot be sent again while its timestamp is still acceptable. Signatures are
/// kept per minute of their timestamp and dropped once that minute is outside the
/// accepted window, which bounds the memory to the request rate times the window.
#[derive(Default)]
pub struct ReplayGuard {
    minutes: Mutex<HashMap<u64, HashSet<[u8; 16]>>>,
}

impl ReplayGuard {
    /// True the first time a signature is seen within the window.
    pub fn first_use(&self, signature: &str, signed_at: SystemTime) -> bool {
        let minute =
            |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60;
        let now = minute(SystemTime::now());
        let window = MAX_SKEW.as_secs() / 60 + 1;
        let mut fingerprint = [0u8; 16];
        for (i, b) in signature.as_bytes().iter().take(32).enumerate() {
            fingerprint[i / 2] = (fingerprint[i / 2] << 4) | hex_value(*b);
        }
        let mut minutes = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        minutes.retain(|m, _| m + window >= now && *m <= now + window);
        minutes
            .entry(minute(signed_at))
            .or_default()
            .insert(fingerprint)
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once() {
        let g = ReplayGuard::default();
        let now = SystemTime::now();
        let sig = "ab".repeat(32);
        assert!(g.first_use(&sig, now));
        assert!(!g.first_use(&sig, now));
        assert!(g.first_use(&"cd".repeat(32), now));
    }
}
