//! Cross-origin requests: a bucket's CORS rules answer browsers' preflight
//! `OPTIONS` requests and add the `Access-Control-*` headers to actual ones.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub max_age: Option<i32>,
    #[serde(default)]
    pub id: Option<String>,
}

/// `*` matches any run of characters, once; matching ignores case.
fn wildcard(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.to_ascii_lowercase(), value.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => {
            v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail)
        }
    }
}

impl Rule {
    pub fn from_dto(r: &s3s::dto::CORSRule) -> Rule {
        Rule {
            origins: r.allowed_origins.clone(),
            methods: r
                .allowed_methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            headers: r.allowed_headers.clone().unwrap_or_default(),
            expose: r.expose_headers.clone().unwrap_or_default(),
            max_age: r.max_age_seconds,
            id: r.id.clone(),
        }
    }

    pub fn to_dto(&self) -> s3s::dto::CORSRule {
        s3s::dto::CORSRule {
            allowed_headers: (!self.headers.is_empty()).then(|| self.headers.clone()),
            allowed_methods: self.methods.clone(),
            allowed_origins: self.origins.clone(),
            expose_headers: (!self.expose.is_empty()).then(|| self.expose.clone()),
            id: self.id.clone(),
            max_age_seconds: self.max_age,
        }
    }

    pub fn parse(json: Option<&str>) -> Option<Vec<Rule>> {
        json.and_then(|j| serde_json::from_str(j).ok())
    }

    fn allows(&self, origin: &str, method: &str, headers: &[&str]) -> bool {
        self.origins.iter().any(|o| wildcard(o, origin))
            && self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && headers
                .iter()
                .all(|h| self.headers.iter().any(|allowed| wildcard(allowed, h)))
    }
}

/// The first rule that allows the request, if any.
pub fn matching<'a>(
    rules: &'a [Rule],
    origin: &str,
    method: &str,
    headers: &[&str],
) -> Option<&'a Rule> {
    rules.iter().find(|r| r.allows(origin, method, headers))
}

/// The headers granting a request from `origin`, per `rule`.
pub fn grant(headers: &mut HeaderMap, rule: &Rule, origin: &str) {
    let value = |s: &str| HeaderValue::from_str(s).ok();
    let origin_value = if rule.origins.iter().any(|o| o == "*") {
        "*"
    } else {
        origin
    };
    if let Some(v) = value(origin_value) {
        headers.insert("access-control-allow-origin", v);
    }
    if let Some(v) = value(&rule.methods.join(", ")) {
        headers.insert("access-control-allow-methods", v);
    }
    if !rule.expose.is_empty()
        && let Some(v) = value(&rule.expose.join(", "))
    {
        headers.insert("access-control-expose-headers", v);
    }
    if !rule.headers.is_empty()
        && let Some(v) = value(&rule.headers.join(", "))
    {
        headers.insert("access-control-allow-headers", v);
    }
    if let Some(age) = rule.max_age
        && let Some(v) = value(&age.to_string())
    {
        headers.insert("access-control-max-age", v);
    }
    headers.insert("vary", HeaderValue::from_static("Origin"));
}

/// The answer to a preflight `OPTIONS`: 200 with grants, or 403 when no rule
/// allows it; `Err` with why when it is no preflight (it lacks `Origin` or
/// `Access-Control-Request-Method`), which S3 answers 400.
pub fn preflight(
    rules: Option<Vec<Rule>>,
    request: &HeaderMap,
) -> Result<(StatusCode, HeaderMap), &'static str> {
    let header = |name: &str| request.get(name).and_then(|v| v.to_str().ok());
    let origin =
        header("origin").ok_or("Insufficient information. Origin request header needed.")?;
    let method = header("access-control-request-method")
        .filter(|m| m.parse::<Method>().is_ok())
        .ok_or("Invalid Access-Control-Request-Method header.")?;
    let asked: Vec<&str> = header("access-control-request-headers")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut out = HeaderMap::new();
    match rules
        .as_deref()
        .and_then(|rules| matching(rules, origin, method, &asked))
    {
        Some(rule) => {
            grant(&mut out, rule, origin);
            Ok((StatusCode::OK, out))
        }
        None => Ok((StatusCode::FORBIDDEN, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            origins: vec!["https://*.example.com".into()],
            methods: vec!["GET".into(), "PUT".into()],
            headers: vec!["x-amz-*".into(), "content-type".into()],
            expose: vec!["ETag".into()],
            max_age: Some(600),
            id: None,
        }
    }

    #[test]
    fn rules_match_origin_method_and_headers() {
        let r = vec![rule()];
        assert!(matching(&r, "https://app.example.com", "GET", &[]).is_some());
        assert!(
            matching(
                &r,
                "https://app.example.com",
                "PUT",
                &["X-Amz-Date", "Content-Type"]
            )
            .is_some()
        );
        assert!(matching(&r, "https://app.example.org", "GET", &[]).is_none());
        assert!(matching(&r, "https://app.example.com", "DELETE", &[]).is_none());
        assert!(matching(&r, "https://app.example.com", "PUT", &["authorization"]).is_none());
    }

    #[test]
    fn preflight_grants_or_refuses() {
        let mut h = HeaderMap::new();
        h.insert(
            "origin",
            HeaderValue::from_static("https://app.example.com"),
        );
        h.insert(
            "access-control-request-method",
            HeaderValue::from_static("PUT"),
        );
        let (status, out) = preflight(Some(vec![rule()]), &h).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            out["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(out["access-control-allow-methods"], "GET, PUT");
        assert_eq!(out["access-control-max-age"], "600");
        let (status, _) = preflight(None, &h).unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Without the method it stands for, or without an origin, it is no
        // preflight at all.
        h.remove("access-control-request-method");
        assert!(preflight(Some(vec![rule()]), &h).is_err());
        h.remove("origin");
        assert!(preflight(Some(vec![rule()]), &h).is_err());
    }
}
