//! The statuses each operation documents. Those that follow from an
//! operation's shape are added here, once, for every operation; those that
//! follow from what a handler does (404, 409, 507, a quota's 403) are declared
//! on the handler. Every error status carries the `ErrorBody` schema and the
//! meaning docs/api-conventions.md gives it.

use utoipa::Modify;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response};

/// Answered by every operation: the limiter, a bug, the store.
const ALWAYS: [u16; 3] = [429, 500, 503];
/// Answered by every operation that requires credentials.
const AUTHENTICATED: [u16; 2] = [401, 403];
/// Answered by every operation with parameters: one of them is malformed.
const PARAMETERS: [u16; 1] = [400];
/// Answered by every operation with a body.
const BODY: [u16; 1] = [413];
/// Answered by every operation with a JSON body.
const JSON_BODY: [u16; 2] = [400, 415];

/// What a status means, as the status-code policy says.
fn meaning(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted; the work completes asynchronously",
        204 => "Done; nothing to return",
        400 => {
            "The body or a parameter is wrong (`InvalidRequest`, `InvalidParameter`); the message names it"
        }
        401 => "No usable credentials were presented (`Unauthenticated`)",
        403 => {
            "The credentials are wrong (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, `RequestExpired`, `RequestReplayed`) or may not do this (`AccessDenied`)"
        }
        404 => "No such resource, or it belongs to another account (`NotFound`)",
        409 => "The resource's state forbids it, or the name is taken",
        413 => "The body is too large (`PayloadTooLarge`)",
        415 => "The body is not `application/json` (`UnsupportedMediaType`)",
        429 => "Too many requests (`RateLimited`); `retry-after` says when to retry",
        500 => "A bug (`Internal`); the request id finds it in the server's log",
        503 => "The store is unavailable (`Unavailable`); retry later",
        507 => "No host has room (`InsufficientCapacity`); the message names the largest free slot",
        _ => return None,
    })
}

/// Adds the statuses that follow from each operation's shape, describes every
/// response, and gives every error response the error body.
pub struct ShapeStatuses;

impl Modify for ShapeStatuses {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                document(operation);
            }
        }
    }
}

fn document(op: &mut Operation) {
    let mut statuses = ALWAYS.to_vec();
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        statuses.extend(AUTHENTICATED);
    }
    let has_parameters = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Path),
        RefOr::Ref(_) => true,
    });
    if has_parameters {
        statuses.extend(PARAMETERS);
    }
    if let Some(RefOr::T(body)) = &op.request_body {
        statuses.extend(BODY);
        if body.content.contains_key("application/json") {
            statuses.extend(JSON_BODY);
        }
    }
    for status in &statuses {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::default()));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let status: u16 = status.parse().unwrap_or_default();
        let meaning = meaning(status).unwrap_or_default();
        // A handler's own reason for a status the shape implies too (a quota's
        // 403) comes first; the shape's reason still holds.
        response.description = match response.description.as_str() {
            "" => meaning.to_string(),
            own if statuses.contains(&status) => format!("{own}. {meaning}"),
            own => own.to_string(),
        };
        if status >= 400 && response.content.is_empty() {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            response
                .content
                .insert("application/json".to_string(), RefOr::T(body));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every operation of the served document, as `(method path, operation)`.
    fn operations() -> Vec<(String, Value)> {
        let doc = serde_json::to_value(crate::api::openapi()).unwrap();
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                all.push((format!("{method} {path}"), op.clone()));
            }
        }
        assert!(all.len() > 50, "the API has its operations");
        all
    }

    fn lists(op: &Value, status: u16) -> bool {
        op["responses"].get(status.to_string()).is_some()
    }

    #[test]
    fn every_operation_lists_the_statuses_its_shape_implies() {
        for (name, op) in operations() {
            for status in [429, 500, 503] {
                assert!(lists(&op, status), "{name} does not list {status}");
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                for status in [401, 403] {
                    assert!(lists(&op, status), "{name} needs credentials: {status}");
                }
            }
            if op["parameters"].as_array().is_some_and(|p| !p.is_empty()) {
                assert!(lists(&op, 400), "{name} has parameters: 400");
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                assert!(lists(&op, 413), "{name} has a body: 413");
                if content.contains_key("application/json") {
                    assert!(lists(&op, 400), "{name} has a JSON body: 400");
                    assert!(lists(&op, 415), "{name} has a JSON body: 415");
                }
            }
        }
    }

    #[test]
    fn every_error_response_is_the_error_body_and_every_response_is_described() {
        for (name, op) in operations() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let meaning = response["description"].as_str().unwrap_or_default();
                assert!(!meaning.is_empty(), "{name} {status} has no description");
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{name} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_public_operation_lists_no_authentication_failure() {
        let (_, signup) = operations()
            .into_iter()
            .find(|(name, _)| name == "post /v1/signup")
            .unwrap();
        assert!(!lists(&signup, 401) && !lists(&signup, 403));
        assert!(lists(&signup, 415));
    }
}
