//! What the S3 endpoint does before `s3s` sees a request and after it
//! answers: request ids, CORS (preflights answered here, grants added to
//! answers), presigned URLs' validity, signature version 2's bucket paths,
//! bodies of unknown length, and whether the connection may serve another
//! request.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use s3s::Body;
use s3s::service::S3Service;

use crate::ObjectStorage;
use crate::attributes;
use crate::blobs::new_id;
use crate::cors::{self, Rule};
use crate::objects::MAX_PUT;
use crate::request_body;
use crate::unsized_body;

/// The bucket a request names, from its Host header or its path.
fn bucket_of<B>(storage: &ObjectStorage, req: &Request<B>) -> Option<String> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host.split(':').next().unwrap_or("");
    if let Some(bucket) = name
        .strip_suffix(storage.config.base_domain.as_str())
        .and_then(|b| b.strip_suffix('.'))
        .filter(|b| !b.is_empty())
    {
        return Some(bucket.to_string());
    }
    req.uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|b| !b.is_empty())
        .map(String::from)
}

async fn cors_rules(storage: &ObjectStorage, bucket: Option<String>) -> Option<Vec<Rule>> {
    let bucket = bucket?;
    let row = storage.bucket_by_name(&bucket).await.ok()??;
    Rule::parse(row.cors.as_deref())
}

/// The id of one request, as `x-amz-request-id` and the `RequestId` of an error
/// tell it.
#[derive(Clone)]
pub(crate) struct RequestId(pub String);

/// The longest a presigned URL may be valid, as AWS allows: a week.
const MAX_PRESIGNED_EXPIRY: u32 = 7 * 24 * 3600;

pub(crate) async fn handle(
    s3: &S3Service,
    storage: &ObjectStorage,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let id = new_id()[..16].to_ascii_uppercase();
    req.extensions_mut().insert(RequestId(id.clone()));
    let declared = request_body::declared(&req);
    let (parts, body) = req.into_parts();
    let (body, ended) = request_body::watch(body);
    let req = Request::from_parts(parts, Body::http_body(body));
    let mut response = answer(s3, storage, req, &id).await;
    request_body::close_if_unsafe(&mut response, &declared, &ended);
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amz-request-id", v);
    }
    response
}

/// Signature version 2 signs a path-style request for a bucket as `/bucket/`
/// (as AWS and botocore do) while clients send `/bucket`: hand `s3s` the path
/// that was signed.
fn signed_v2_path<B>(req: &mut Request<B>) {
    let v2 = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS "))
        || req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("AWSAccessKeyId=")));
    let path = req.uri().path();
    if !v2 || path.len() < 2 || path[1..].contains('/') {
        return;
    }
    let target = match req.uri().query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(target) = target.parse() {
        parts.path_and_query = Some(target);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

async fn answer(
    s3: &S3Service,
    storage: &ObjectStorage,
    mut req: Request<Body>,
    id: &str,
) -> Response<Body> {
    signed_v2_path(&mut req);
    if let Some(expires) = presigned_expiry(req.uri())
        && !expires
            .parse::<u32>()
            .is_ok_and(|s| s <= MAX_PRESIGNED_EXPIRY)
    {
        return error_response(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "X-Amz-Expires must be a number of seconds from 0 to 604800",
            id,
        );
    }
    if req.method() == Method::OPTIONS {
        let rules = cors_rules(storage, bucket_of(storage, &req)).await;
        return match cors::preflight(rules, req.headers()) {
            Ok((status, headers)) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
            }
            Err(refusal) => error_response(StatusCode::BAD_REQUEST, "BadRequest", refusal, id),
        };
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    // A request that names the method it stands for (as a browser's
    // preflight does) is matched by that method, as Ceph does.
    let cors = header("origin").map(|origin| {
        let method =
            header("access-control-request-method").unwrap_or_else(|| req.method().to_string());
        (origin, method)
    });
    let rules = match &cors {
        Some(_) => cors_rules(storage, bucket_of(storage, &req)).await,
        None => None,
    };
    let get_attributes = attributes::is_get_attributes(&req);
    let req = match sized(storage, req).await {
        Ok(req) => req,
        Err((status, code, message)) => return error_response(status, code, &message, id),
    };
    let mut response = call(s3, req).await;
    if get_attributes && response.status() == StatusCode::OK {
        attributes::unquote_etag(&mut response);
    }
    if let (Some((origin, method)), Some(rules)) = (cors, rules)
        && let Some(rule) = cors::matching(&rules, &origin, &method, &[])
    {
        cors::grant(response.headers_mut(), rule, &origin);
    }
    response
}

/// `req` with a body of known length (see `unsized_body`), or why not.
async fn sized(
    storage: &ObjectStorage,
    req: Request<Body>,
) -> Result<Request<Body>, (StatusCode, &'static str, String)> {
    if !unsized_body::is_unsized(&req) {
        return Ok(req);
    }
    unsized_body::spool(req, storage.blobs.tmp(), MAX_PUT)
        .await
        .map_err(|refused| match refused {
            unsized_body::Refused::TooLarge => (
                StatusCode::BAD_REQUEST,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed object size.".to_string(),
            ),
            unsized_body::Refused::Read(e) => (
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                format!("the request body could not be read: {e}"),
            ),
            unsized_body::Refused::Write(e) => {
                tracing::error!(error = %e, "request body not spooled");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "object storage I/O failed".to_string(),
                )
            }
        })
}

/// The `X-Amz-Expires` of a presigned URL.
fn presigned_expiry(uri: &http::Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("X-Amz-Expires="))
}

/// An S3 error answered before a request reaches `s3s`.
fn error_response(status: StatusCode, code: &str, message: &str, id: &str) -> Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{id}</RequestId></Error>"
    );
    let mut response = Response::new(Body::from(xml));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

async fn call(s3: &S3Service, req: Request<Body>) -> Response<Body> {
    match s3.call(req).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = ?e, "S3 request failed outside the protocol");
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}
