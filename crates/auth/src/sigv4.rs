//! AWS Signature Version 4, for the API and the clients.
//!
//! Signing and verifying both go through the `aws-sigv4` crate: to verify, the
//! server rebuilds the request from exactly the headers the client says it signed,
//! signs it with the stored secret at the client's timestamp, and compares the
//! signatures in constant time. The only hand-written part is reading the
//! `Authorization` header.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign as aws_sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const AMZ_DATE: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Scope(String),
    #[error("the request time {0} is more than {1} s from the server's clock")]
    Expired(String, u64),
    #[error("x-amz-content-sha256 does not match the body")]
    ContentHash,
    #[error("the signature does not match")]
    Mismatch,
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case header names, as listed.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    /// Reads `AWS4-HMAC-SHA256 Credential=AK…/20261127/local-1/nubo/aws4_request,
    /// SignedHeaders=host;x-amz-date, Signature=…`.
    pub fn parse(value: &str) -> Result<Authorization, SigV4Error> {
        let rest = value
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or(SigV4Error::Malformed("algorithm must be AWS4-HMAC-SHA256"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or(SigV4Error::Malformed("expected key=value pairs"))?;
            let slot = match k {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(SigV4Error::Malformed("unknown component")),
            };
            if slot.replace(v).is_some() {
                return Err(SigV4Error::Malformed("repeated component"));
            }
        }
        let credential = credential.ok_or(SigV4Error::Malformed("missing Credential"))?;
        let signed = signed.ok_or(SigV4Error::Malformed("missing SignedHeaders"))?;
        let signature = signature.ok_or(SigV4Error::Malformed("missing Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [key, date, region, service, terminator] = scope[..] else {
            return Err(SigV4Error::Malformed(
                "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
            ));
        };
        if terminator != "aws4_request"
            || date.len() != 8
            || !date.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(SigV4Error::Malformed("bad credential scope"));
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SigV4Error::Malformed("Signature must be 64 hex digits"));
        }
        let signed_headers: Vec<String> = signed.split(';').map(str::to_string).collect();
        if signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(SigV4Error::Malformed(
                "SignedHeaders must be lower-case names",
            ));
        }
        Ok(Authorization {
            access_key_id: key.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }
}

/// Reads an `x-amz-date` value (`20261127T031500Z`).
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let t = time::PrimitiveDateTime::parse(s, AMZ_DATE).ok()?;
    Some(t.assume_utc().into())
}

pub fn format_amz_date(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(AMZ_DATE)
        .expect("every time has an x-amz-date form")
}

/// What the server expects of a signed request.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub now: SystemTime,
    /// How far the request's time may be from `now`, either way.
    pub max_skew: Duration,
}

/// Checks `auth` against the request and `secret`.
///
/// `uri` is the request target as received (path and query, still percent-encoded).
pub fn verify(
    auth: &Authorization,
    method: &str,
    uri: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    secret: &str,
    expect: &Expectation<'_>,
) -> Result<(), SigV4Error> {
    if auth.region != expect.region || auth.service != expect.service {
        return Err(SigV4Error::Scope(format!(
            "credential scope {}/{} does not match this endpoint ({}/{})",
            auth.region, auth.service, expect.region, expect.service
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(SigV4Error::Malformed(
                "SignedHeaders must include host and x-amz-date",
            ));
        }
    }
    let amz_date = header_str(headers, "x-amz-date")?
        .ok_or(SigV4Error::Malformed("missing x-amz-date header"))?;
    let time = parse_amz_date(amz_date).ok_or(SigV4Error::Malformed("bad x-amz-date"))?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Scope(
            "the credential scope's date is not the request's date".into(),
        ));
    }
    let skew = match expect.now.duration_since(time) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > expect.max_skew {
        return Err(SigV4Error::Expired(
            amz_date.to_string(),
            expect.max_skew.as_secs(),
        ));
    }

    let mut signed = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        for value in headers.get_all(name.as_str()) {
            let value = value
                .to_str()
                .map_err(|_| SigV4Error::Malformed("signed header is not visible ASCII"))?;
            signed.push((name.as_str(), value));
        }
    }
    let content_sha = header_str(headers, "x-amz-content-sha256")?;
    let body = match content_sha {
        Some(UNSIGNED_PAYLOAD) => SignableBody::UnsignedPayload,
        Some(claimed) => {
            if !claimed.eq_ignore_ascii_case(&hex::encode(Sha256::digest(body))) {
                return Err(SigV4Error::ContentHash);
            }
            SignableBody::Precomputed(claimed.to_string())
        }
        None => SignableBody::Bytes(body),
    };
    let request = SignableRequest::new(method, uri, signed.into_iter(), body)
        .map_err(|e| SigV4Error::Sign(e.to_string()))?;
    let signer = Signer {
        access_key_id: &auth.access_key_id,
        secret,
        region: expect.region,
        service: expect.service,
        time,
    };
    let (_, expected) = signer.sign(request)?;
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

fn header_str<'h>(headers: &'h http::HeaderMap, name: &str) -> Result<Option<&'h str>, SigV4Error> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| SigV4Error::Malformed("header is not visible ASCII"))
        })
        .transpose()
}

/// The signer's view of a request: its key, scope and time.
struct Signer<'a> {
    access_key_id: &'a str,
    secret: &'a str,
    region: &'a str,
    service: &'a str,
    time: SystemTime,
}

impl Signer<'_> {
    fn sign(
        &self,
        request: SignableRequest<'_>,
    ) -> Result<(aws_sigv4::http_request::SigningInstructions, String), SigV4Error> {
        let identity: Identity =
            Credentials::new(self.access_key_id, self.secret, None, None, "nubo").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(self.time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SigV4Error::Sign(e.to_string()))?
            .into();
        Ok(aws_sign(request, &params)
            .map_err(|e| SigV4Error::Sign(e.to_string()))?
            .into_parts())
    }
}

/// The headers a client adds to sign a request (`authorization`, `x-amz-date`).
///
/// `url` is the full URL; `headers` must include every header the request will
/// carry that should be signed (`host` is taken from the URL when absent).
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigV4Error> {
    sign_body(
        method,
        url,
        headers,
        SignableBody::Bytes(body),
        access_key_id,
        secret,
        region,
        service,
        time,
    )
}

/// Like [`sign`], for a body too large to hold: the body is not part of the
/// signature (`x-amz-content-sha256: UNSIGNED-PAYLOAD`, which the caller must also
/// send); its integrity is the transport's and the receiver's checksum's job.
#[allow(clippy::too_many_arguments)]
pub fn sign_unsigned_payload(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigV4Error> {
    let mut all = headers.to_vec();
    all.push(("x-amz-content-sha256", UNSIGNED_PAYLOAD));
    sign_body(
        method,
        url,
        &all,
        SignableBody::UnsignedPayload,
        access_key_id,
        secret,
        region,
        service,
        time,
    )
}

#[allow(clippy::too_many_arguments)]
fn sign_body(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: SignableBody<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigV4Error> {
    let request = SignableRequest::new(method, url, headers.iter().copied(), body)
        .map_err(|e| SigV4Error::Sign(e.to_string()))?;
    let signer = Signer {
        access_key_id,
        secret,
        region,
        service,
        time,
    };
    let (instructions, _) = signer.sign(request)?;
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// The `get-vanilla` case of AWS's published SigV4 test suite.
    #[test]
    fn matches_the_aws_test_suite() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        let headers = sign(
            "GET",
            "https://example.amazonaws.com/",
            &[],
            b"",
            KEY,
            SECRET,
            "us-east-1",
            "service",
            t,
        )
        .unwrap();
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    fn signed_request(body: &[u8], when: SystemTime) -> (Authorization, http::HeaderMap) {
        let added = sign(
            "POST",
            "http://127.0.0.1:8080/v1/keys?x=1",
            &[("content-type", "application/json")],
            body,
            KEY,
            SECRET,
            "local-1",
            "nubo",
            when,
        )
        .unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        for (k, v) in &added {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let auth = Authorization::parse(headers["authorization"].to_str().unwrap()).unwrap();
        (auth, headers)
    }

    fn expect(now: SystemTime) -> Expectation<'static> {
        Expectation {
            region: "local-1",
            service: "nubo",
            now,
            max_skew: Duration::from_secs(300),
        }
    }

    #[test]
    fn verifies_what_it_signs_and_nothing_else() {
        let now = SystemTime::now();
        let (auth, headers) = signed_request(b"{\"a\":1}", now);
        let ok = |m: &str, uri: &str, body: &[u8], secret: &str, at: SystemTime| {
            verify(&auth, m, uri, &headers, body, secret, &expect(at))
        };
        assert_eq!(
            ok("POST", "/v1/keys?x=1", b"{\"a\":1}", SECRET, now),
            Ok(())
        );
        assert_eq!(
            ok("POST", "/v1/keys?x=1", b"{\"a\":2}", SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            ok("POST", "/v1/keys?x=2", b"{\"a\":1}", SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            ok("DELETE", "/v1/keys?x=1", b"{\"a\":1}", SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            ok("POST", "/v1/keys?x=1", b"{\"a\":1}", "wrong", now),
            Err(SigV4Error::Mismatch)
        );
        assert!(matches!(
            ok(
                "POST",
                "/v1/keys?x=1",
                b"{\"a\":1}",
                SECRET,
                now + Duration::from_secs(600)
            ),
            Err(SigV4Error::Expired(..))
        ));
    }

    #[test]
    fn refuses_foreign_scopes_and_tampered_headers() {
        let now = SystemTime::now();
        let (auth, mut headers) = signed_request(b"", now);
        let mut other = expect(now);
        other.region = "other-1";
        assert!(matches!(
            verify(&auth, "POST", "/v1/keys?x=1", &headers, b"", SECRET, &other),
            Err(SigV4Error::Scope(_))
        ));
        headers.insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(
            verify(
                &auth,
                "POST",
                "/v1/keys?x=1",
                &headers,
                b"",
                SECRET,
                &expect(now)
            ),
            Err(SigV4Error::Mismatch)
        );
    }

    #[test]
    fn parses_and_rejects_authorization_headers() {
        let a = Authorization::parse(
            "AWS4-HMAC-SHA256 Credential=AK1/20261127/local-1/nubo/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=",
        );
        assert!(a.is_err(), "empty signature");
        for bad in [
            "",
            "Bearer x",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=a/b/c",
            "AWS4-HMAC-SHA256 Credential=AK/2026112/r/s/aws4_request, SignedHeaders=host, Signature=00",
        ] {
            assert!(Authorization::parse(bad).is_err(), "{bad}");
        }
        let sig = "a".repeat(64);
        let a = Authorization::parse(&format!(
            "AWS4-HMAC-SHA256 Credential=AK1/20261127/local-1/nubo/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={sig}"
        ))
        .unwrap();
        assert_eq!(a.access_key_id, "AK1");
        assert_eq!(a.region, "local-1");
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
    }
}
