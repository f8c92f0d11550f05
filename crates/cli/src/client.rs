//! The API client: signs every request with SigV4 and turns error bodies into
//! one-line errors.

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use nubo_api::SIGV4_SERVICE;
use nubo_api::error::ErrorBody;
use nubo_api::regions::Region;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request.
    #[error("{}: {} (request {})", .0.code_str(), .0.body.message, .0.body.request_id)]
    Api(Box<ApiFailure>),
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("{0}")]
    Other(String),
    /// Whoever read stdout closed it (`nubo … | head`).
    #[error("the output was closed")]
    OutputClosed,
}

#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiFailure {
    fn code_str(&self) -> String {
        serde_json::to_value(self.body.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// What a request authenticates with.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Key { id: String, secret: String },
    Operator(String),
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Credentials,
    debug: bool,
}

/// The HTTP client every API client of this process shares.
static HTTP: OnceLock<reqwest::Client> = OnceLock::new();

/// Sets how this process checks the certificates of HTTPS endpoints: against
/// the CA certificates of `ca_bundle` (PEM) alone, as aws-cli's `--ca-bundle`
/// does, or else against the system's. Call it before making any client.
pub fn trust(ca_bundle: Option<&Path>) -> Result<(), ClientError> {
    nubo_tls::install_crypto_provider();
    let mut http = reqwest::Client::builder();
    if let Some(path) = ca_bundle {
        let bad = |e: &dyn std::fmt::Display| {
            ClientError::Usage(format!("CA bundle {}: {e}", path.display()))
        };
        let pem = std::fs::read(path).map_err(|e| bad(&e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(&e))?;
        if certs.is_empty() {
            return Err(bad(&"no PEM certificate in it"));
        }
        http = http.tls_certs_only(certs);
    }
    let http = http
        .build()
        .map_err(|e| ClientError::Other(format!("HTTP client: {}", error_chain(&e))))?;
    HTTP.set(http)
        .map_err(|_| ClientError::Other("the HTTP client is set up already".into()))
}

fn http() -> reqwest::Client {
    HTTP.get_or_init(|| {
        nubo_tls::install_crypto_provider();
        reqwest::Client::new()
    })
    .clone()
}

impl Client {
    pub fn new(endpoint: &str, region: &str, credentials: Credentials) -> Client {
        Client {
            http: http(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            credentials,
            debug: false,
        }
    }

    /// Tells on stderr each request and the API's whole answer (`--debug`).
    pub fn debugging(mut self, on: bool) -> Client {
        self.debug = on;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The regions the endpoint knows (a public call), to learn its name or find
    /// another region's endpoint.
    pub async fn regions(&self) -> Result<Vec<Region>, ClientError> {
        self.call(Method::GET, "/v1/regions", None::<&()>).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// A `GET` whose answer is text, such as a CSV export.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let bytes = self.send(Method::GET, path, None).await?;
        String::from_utf8(bytes)
            .map_err(|e| ClientError::Other(format!("unexpected answer from {path}: {e}")))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A `POST` without a body, for actions such as `/stop`.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::POST, path, None::<&()>).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// A `DELETE` whose answer has no body.
    pub async fn delete_empty(&self, path: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, path, None).await.map(|_| ())
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    /// Streams a file as the body of a `PUT`, signed without its payload.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &std::path::Path,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.endpoint);
        let opened = tokio::fs::File::open(file)
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", file.display())))?;
        let len = opened
            .metadata()
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", file.display())))?
            .len();
        let mut req = self
            .http
            .put(&url)
            .header("content-type", "application/octet-stream")
            .header("content-length", len);
        match &self.credentials {
            Credentials::Key { id, secret } => {
                let added = nubo_auth::sigv4::sign_unsigned_payload(
                    "PUT",
                    &url,
                    &[("content-type", "application/octet-stream")],
                    id,
                    secret,
                    &self.region,
                    SIGV4_SERVICE,
                    SystemTime::now(),
                )
                .map_err(|e| ClientError::Other(e.to_string()))?;
                for (name, value) in added {
                    req = req.header(name, value);
                }
                req = req.header("x-amz-content-sha256", nubo_auth::sigv4::UNSIGNED_PAYLOAD);
            }
            Credentials::Operator(token) => req = req.bearer_auth(token),
            Credentials::None => {}
        }
        let response = req
            .body(reqwest::Body::from(opened))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let bytes = self.answer(&Method::PUT, &url, response).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Other(format!("unexpected answer from {path}: {e}")))
    }

    /// Saves the answer of a `GET` to `file`, as it streams in: under a
    /// temporary name, renamed once whole, so that `file` is never a part.
    pub async fn download(&self, path: &str, file: &Path) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let url = format!("{}{path}", self.endpoint);
        let mut req = self.http.get(&url);
        if let Credentials::Operator(token) = &self.credentials {
            req = req.bearer_auth(token);
        }
        let mut response = req.send().await.map_err(|e| self.unreachable(&e))?;
        if !response.status().is_success() {
            return self.answer(&Method::GET, &url, response).await.map(|_| 0);
        }
        let partial = file.with_extension("partial");
        let local = |e: std::io::Error| ClientError::Other(format!("{}: {e}", partial.display()));
        let mut out = tokio::fs::File::create(&partial).await.map_err(local)?;
        let mut written = 0u64;
        let copied: Result<(), ClientError> = async {
            while let Some(piece) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
                out.write_all(&piece).await.map_err(local)?;
                written += piece.len() as u64;
            }
            out.sync_all().await.map_err(local)
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, file)
            .await
            .map_err(|e| ClientError::Other(format!("{}: {e}", file.display())))?;
        Ok(written)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Other(e.to_string()))?;
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Other(format!("unexpected answer from {path}: {e}")))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.endpoint);
        let mut req = self.http.request(method.clone(), &url);
        let body = body.unwrap_or_default();
        let has_body = !body.is_empty();
        if has_body {
            req = req.header("content-type", "application/json");
        }
        match &self.credentials {
            Credentials::None => {}
            Credentials::Operator(token) => req = req.bearer_auth(token),
            Credentials::Key { id, secret } => {
                // The server refuses a signed change it has seen before; the nonce
                // keeps two identical commands in one second distinct.
                let nonce = nonce();
                let mut signed_headers = vec![(NONCE_HEADER, nonce.as_str())];
                if has_body {
                    signed_headers.push(("content-type", "application/json"));
                }
                req = req.header(NONCE_HEADER, &nonce);
                let added = nubo_auth::sigv4::sign(
                    method.as_str(),
                    &url,
                    &signed_headers,
                    &body,
                    id,
                    secret,
                    &self.region,
                    SIGV4_SERVICE,
                    SystemTime::now(),
                )
                .map_err(|e| ClientError::Other(e.to_string()))?;
                for (name, value) in added {
                    req = req.header(name, value);
                }
            }
        }
        let response = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        self.answer(&method, &url, response).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Connect {
            endpoint: self.endpoint.clone(),
            detail: error_chain(e),
        }
    }

    /// The body of a successful answer, or the API's error.
    async fn answer(
        &self,
        method: &Method,
        url: &str,
        response: reqwest::Response,
    ) -> Result<Vec<u8>, ClientError> {
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if self.debug {
            crate::output::note(format!(
                "debug: {method} {url} answered {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&bytes)
            ));
        }
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api(Box::new(ApiFailure {
                status: status.as_u16(),
                body,
            }))),
            Err(_) => Err(ClientError::Other(format!(
                "{url} answered {status} without an API error body"
            ))),
        }
    }
}

const NONCE_HEADER: &str = "x-nubo-nonce";

fn nonce() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
