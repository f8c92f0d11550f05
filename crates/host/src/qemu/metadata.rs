//! The instance metadata service, in the EC2 format that cloud-init and other
//! tools read, at 169.254.169.254 inside each network's namespace. It answers a
//! VM only about itself: the namespace is the network, and within it the caller
//! is the VM that holds the request's source address (anti-spoofing on each
//! tap keeps a guest from borrowing a neighbour's).
//!
//! IMDSv2 is supported: `PUT /latest/api/token` hands out a session token for
//! the calling VM, and a request that carries a token must carry a valid one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use super::command::VmFiles;

pub const ADDRESS: &str = "169.254.169.254";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const MAX_TTL: u64 = 6 * 3600;

/// What a VM may learn of itself. Kept in the host's [`Directory`], and
/// written beside the VM at launch, so that an agent that restarts serves the
/// VMs it re-adopts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub instance_id: String,
    pub instance_type: String,
    pub hostname: String,
    pub local_ipv4: String,
    pub mac: String,
    pub region: String,
    pub public_keys: Vec<String>,
    pub user_data: Option<String>,
    /// Requests without a session token are refused.
    #[serde(default)]
    pub tokens_required: bool,
}

/// The documents of the VMs of this host, by namespace and address: what
/// the service answers from, without reading a file per request.
#[derive(Clone, Default)]
pub struct Directory(Arc<RwLock<HashMap<(String, IpAddr), Document>>>);

impl Directory {
    /// Records the document of a VM of namespace `ns`.
    pub fn insert(&self, ns: &str, doc: Document) {
        let Ok(ip) = doc.local_ipv4.parse::<IpAddr>() else {
            tracing::warn!(
                instance_id = doc.instance_id,
                "a document without an address"
            );
            return;
        };
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert((ns.to_string(), ip), doc);
    }

    /// Records the document a VM's folder holds (for an agent that restarts),
    /// the VM being on namespace `ns`.
    pub fn load(&self, ns: &str, files: &VmFiles) {
        let doc = std::fs::read(files.metadata())
            .ok()
            .and_then(|b| serde_json::from_slice::<Document>(&b).ok());
        if let Some(doc) = doc {
            self.insert(ns, doc);
        }
    }

    pub fn remove(&self, instance_id: &str) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, doc| doc.instance_id != instance_id);
    }

    fn get(&self, ns: &str, ip: IpAddr) -> Option<Document> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(ns.to_string(), ip)).cloned()
    }
}

/// Binds the service's socket inside namespace `ns`.
pub fn bind(ns: &str) -> std::io::Result<std::net::TcpListener> {
    super::network::in_namespace(ns, || {
        let listener = std::net::TcpListener::bind((ADDRESS, 80))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
}

/// Session tokens handed out, with the VM address they belong to.
type Tokens = Arc<Mutex<HashMap<String, (IpAddr, Instant)>>>;

/// Serves the network of namespace `ns` until aborted.
pub async fn serve(listener: std::net::TcpListener, ns: String, directory: Directory) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(ns, error = %e, "no metadata service");
            return;
        }
    };
    let tokens: Tokens = Arc::default();
    loop {
        let Ok((socket, peer)) = listener.accept().await else {
            continue;
        };
        let (ns, directory, tokens) = (ns.clone(), directory.clone(), tokens.clone());
        let service = service_fn(move |req: Request<Incoming>| {
            let answer = answer(&req, peer, &ns, &directory, &tokens);
            async move { Ok::<_, Infallible>(answer) }
        });
        tokio::spawn(async move {
            // Clients such as busybox's nc shut their side once the request
            // is sent; without half-close support, hyper may see that end
            // of input first and hang up instead of answering.
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

fn answer(
    req: &Request<Incoming>,
    peer: SocketAddr,
    ns: &str,
    directory: &Directory,
    tokens: &Tokens,
) -> Response<String> {
    let Some(doc) = directory.get(ns, peer.ip()) else {
        return text(StatusCode::FORBIDDEN, "unknown caller\n");
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let path = &undated(req.uri().path());
    if req.method() == Method::PUT && path == "/latest/api/token" {
        let ttl = header(TTL_HEADER).and_then(|t| t.parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=MAX_TTL).contains(t)) else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{TTL_HEADER}: 1 to {MAX_TTL}\n"),
            );
        };
        let token = format!("{:016x}{:016x}", rand_u64(), rand_u64());
        let mut tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, until)| *until > Instant::now());
        let until = Instant::now() + Duration::from_secs(ttl);
        tokens.insert(token.clone(), (peer.ip(), until));
        return text(StatusCode::OK, token);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET, HEAD or PUT /latest/api/token\n",
        );
    }
    if doc.tokens_required && header(TOKEN_HEADER).is_none() {
        return text(
            StatusCode::UNAUTHORIZED,
            "this instance requires IMDSv2 session tokens\n",
        );
    }
    if let Some(token) = header(TOKEN_HEADER) {
        let tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
        let valid = tokens
            .get(token)
            .is_some_and(|(ip, until)| *ip == peer.ip() && *until > Instant::now());
        if !valid {
            return text(StatusCode::UNAUTHORIZED, "invalid or expired token\n");
        }
    }
    match lookup(&doc, path) {
        Some(body) => text(StatusCode::OK, body),
        None => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    u64::from_le_bytes(bytes)
}

/// The dated API versions EC2 offers beside `latest`; clients such as
/// cloud-init ask for one of them by name. All serve the same tree here.
const VERSIONS: &[&str] = &["2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23"];

/// `path` with a dated version in place of `latest`.
fn undated(path: &str) -> String {
    let mut parts = path.splitn(3, '/');
    let (_, version, rest) = (parts.next(), parts.next(), parts.next());
    match (version, rest) {
        (Some(v), rest) if VERSIONS.contains(&v) => match rest {
            Some(rest) => format!("/latest/{rest}"),
            None => "/latest".into(),
        },
        _ => path.to_string(),
    }
}

/// The EC2 metadata tree of one VM.
fn lookup(doc: &Document, path: &str) -> Option<String> {
    let keys = if doc.public_keys.is_empty() {
        ""
    } else {
        "public-keys/\n"
    };
    let value = match path.trim_end_matches('/') {
        "" => VERSIONS
            .iter()
            .chain(&["latest"])
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        "/latest" => "dynamic\nmeta-data\nuser-data".to_string(),
        "/latest/dynamic" => "instance-identity/".into(),
        "/latest/dynamic/instance-identity" => "document".into(),
        "/latest/dynamic/instance-identity/document" => serde_json::json!({
            "instanceId": doc.instance_id,
            "instanceType": doc.instance_type,
            "privateIp": doc.local_ipv4,
            "region": doc.region,
            "availabilityZone": format!("{}a", doc.region),
            "architecture": "x86_64",
            "version": "2017-09-30",
        })
        .to_string(),
        "/latest/user-data" => doc.user_data.clone()?,
        "/latest/meta-data" => format!(
            "hostname\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\n\
             placement/\n{keys}"
        )
        .trim_end()
        .to_string(),
        "/latest/meta-data/instance-id" => doc.instance_id.clone(),
        "/latest/meta-data/instance-type" => doc.instance_type.clone(),
        "/latest/meta-data/hostname" | "/latest/meta-data/local-hostname" => doc.hostname.clone(),
        "/latest/meta-data/local-ipv4" => doc.local_ipv4.clone(),
        "/latest/meta-data/mac" => doc.mac.clone(),
        "/latest/meta-data/placement" => "availability-zone\nregion".into(),
        "/latest/meta-data/placement/region" => doc.region.clone(),
        "/latest/meta-data/placement/availability-zone" => format!("{}a", doc.region),
        "/latest/meta-data/public-keys" if !doc.public_keys.is_empty() => "0=nubo".into(),
        "/latest/meta-data/public-keys/0" if !doc.public_keys.is_empty() => "openssh-key".into(),
        "/latest/meta-data/public-keys/0/openssh-key" if !doc.public_keys.is_empty() => {
            doc.public_keys.join("\n")
        }
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, ip: &str) -> Document {
        Document {
            instance_id: id.into(),
            instance_type: "n1.nano".into(),
            hostname: id.into(),
            local_ipv4: ip.into(),
            mac: "02:00:00:00:00:01".into(),
            region: "local-1".into(),
            public_keys: vec![],
            user_data: None,
            tokens_required: false,
        }
    }

    #[test]
    fn the_directory_tells_vms_apart_by_namespace_and_address() {
        let d = Directory::default();
        let ip: IpAddr = "10.0.0.4".parse().unwrap();
        d.insert("nubo-net-a", doc("i-a", "10.0.0.4"));
        d.insert("nubo-net-b", doc("i-b", "10.0.0.4"));
        assert_eq!(d.get("nubo-net-a", ip).unwrap().instance_id, "i-a");
        assert_eq!(d.get("nubo-net-b", ip).unwrap().instance_id, "i-b");
        assert!(d.get("nubo-net-a", "10.0.0.5".parse().unwrap()).is_none());
        d.remove("i-a");
        assert!(d.get("nubo-net-a", ip).is_none());
        assert!(d.get("nubo-net-b", ip).is_some());
    }

    #[test]
    fn the_tree_answers_in_the_ec2_format() {
        let doc = Document {
            public_keys: vec!["ssh-ed25519 AAAA k".into()],
            ..doc("i-1", "10.0.0.4")
        };
        assert_eq!(
            lookup(&doc, "/latest/meta-data/instance-id").unwrap(),
            "i-1"
        );
        assert_eq!(
            lookup(&doc, "/latest/meta-data/public-keys/0/openssh-key").unwrap(),
            "ssh-ed25519 AAAA k"
        );
        assert!(
            lookup(&doc, "/latest/meta-data/")
                .unwrap()
                .contains("local-ipv4\n")
        );
        assert_eq!(lookup(&doc, "/latest/user-data"), None, "none given: 404");
        assert_eq!(lookup(&doc, "/latest/meta-data/iam"), None);
        assert_eq!(
            lookup(&doc, &undated("/2021-03-23/meta-data/local-ipv4")).unwrap(),
            "10.0.0.4",
            "dated versions serve the same tree"
        );
        assert_eq!(undated("/1999-01-01/meta-data"), "/1999-01-01/meta-data");
        assert!(lookup(&doc, "/").unwrap().contains("2009-04-04\n"));
        let identity = lookup(&doc, "/latest/dynamic/instance-identity/document").unwrap();
        assert!(
            identity.contains("\"privateIp\":\"10.0.0.4\""),
            "{identity}"
        );
    }
}
