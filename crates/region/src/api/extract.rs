//! Extractors that answer bad input with the API's errors instead of axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use nubo_api::error::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::error::ApiError;

/// The largest JSON body any endpoint of the control plane accepts.
pub const MAX_BODY: usize = 256 * 1024;

/// A JSON body: `application/json`, at most `MAX_BODY` bytes, no unknown fields
/// (every request type denies them).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON, sent with content-type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| too_large())?;
        parse_json(&bytes).map(Json)
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body is larger than {MAX_BODY} bytes, or could not be read"),
    )
}

/// Every request body of the API is a JSON object. (serde would also read a
/// struct from an array, which no client means.)
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid = |e: serde_json::Error| {
        ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}"))
    };
    let mut value: Value = serde_json::from_slice(bytes).map_err(invalid)?;
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "invalid JSON body: expected an object",
        ));
    }
    if holds_nul(&value) {
        return Err(nul());
    }
    integral_numbers(&mut value);
    T::deserialize(value).map_err(invalid)
}

/// No text of the API holds NUL (U+0000): PostgreSQL cannot store it, and no
/// name, id or description means it.
fn nul() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "text may not contain NUL (U+0000)",
    )
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Whether a percent-encoded part of a URI decodes to a NUL.
fn encodes_nul(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// JSON has one number type: `2.0` is the integer 2 to JSON Schema and to
/// many clients' serializers, though serde reads only `2` into an integer.
/// Exact integers written with a fraction become plain integers.
fn integral_numbers(value: &mut Value) {
    /// Doubles are exact integers up to 2^53.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *n = (f as i64).into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Query parameters; unknown and malformed ones are refused.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(encodes_nul) {
            return Err(nul());
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid(format!("invalid query string: {}", e.body_text())))
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if encodes_nul(parts.uri.path()) {
            return Err(nul());
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Port {
        port: u16,
        #[serde(default)]
        weight: Option<f64>,
    }

    #[test]
    fn a_nul_is_found_wherever_it_is_written() {
        assert!(encodes_nul("/v1/volumes/vol-%00"));
        assert!(!encodes_nul("/v1/volumes/vol-%2000"));
        let nested: Value = serde_json::from_str(r#"{"a": [{"\u0000": 1}]}"#).unwrap();
        assert!(holds_nul(&nested));
    }

    #[test]
    fn an_integer_written_with_a_fraction_is_an_integer() {
        let p: Port = parse_json(br#"{"port": 22.0, "weight": 2.0}"#).unwrap();
        assert_eq!((p.port, p.weight), (22, Some(2.0)));
        let p: Port = parse_json(br#"{"port": 80, "weight": 0.5}"#).unwrap();
        assert_eq!((p.port, p.weight), (80, Some(0.5)));
    }

    #[test]
    fn what_is_not_an_integer_or_not_an_object_is_refused() {
        for body in [
            &br#"{"port": 22.5}"#[..],
            br#"{"port": 1e300}"#,
            br#"{"port": 65536.0}"#,
            br#"{"port": 22, "colour": "blue"}"#,
            br#"[22]"#,
            br#"{"port": 22, "weight": "\u0000"}"#,
            b"",
        ] {
            let e = parse_json::<Port>(body).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{body:?}");
        }
    }
}
