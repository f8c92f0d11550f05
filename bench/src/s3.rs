//! `bench/s3`: object storage throughput, side by side in one run with its
//! limits and a peer: PUT and GET of 64 MiB objects against the raw disk (a plain
//! file write + fsync, and a read, of the same bytes), and 4 KiB objects at 16
//! concurrent clients against s3s-fs, a peer S3 server built on this machine.
//! Every client signs with SigV4 (unsigned payloads, as aws-cli does for large
//! uploads over TLS-less endpoints); all run on the same two cores.
//!
//! The targets measure large objects against the raw disk as a plain write +
//! fsync of the same bytes, for PUT and GET alike; a plain read of the same
//! bytes is shown beside the GETs as the stricter limit it is.
//!
//! Large GETs are measured twice: from the disk (the page cache emptied of the
//! objects' files first, as for the raw read it is compared with) and again from
//! the page cache, where the limit is memory copies rather than the disk.
//!
//! The machine is shared and its disk and CPU vary by the minute, so nubo, the
//! peer and the raw disk take turns, phase by phase, for `ROUNDS` rounds, and
//! each figure is the median of its rounds.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use nubo_api::account::{SignupRequest, SignupResponse};
use nubo_cli::{Client, Credentials};

use crate::region::Region;

const LARGE: usize = 64 * 1024 * 1024;
const LARGE_COUNT: usize = 6;
const SMALL: usize = 4 * 1024;
const CLIENTS: usize = 16;
const PHASE: Duration = Duration::from_secs(4);
const ROUNDS: usize = 3;

const LARGE_TARGET: f64 = 0.8;
const SMALL_TARGET: f64 = 2.0;

/// A minimal S3 client: path-style PUT and GET, SigV4 with unsigned payloads.
#[derive(Clone)]
struct S3 {
    http: reqwest::Client,
    endpoint: String,
    key: String,
    secret: String,
    region: String,
}

impl S3 {
    fn signed(&self, method: &str, path: &str) -> Result<reqwest::RequestBuilder, String> {
        let url = format!("{}{path}", self.endpoint);
        let headers = nubo_auth::sigv4::sign_unsigned_payload(
            method,
            &url,
            &[],
            &self.key,
            &self.secret,
            &self.region,
            "s3",
            SystemTime::now(),
        )
        .map_err(|e| e.to_string())?;
        let mut req = self
            .http
            .request(method.parse().map_err(|_| "method")?, &url)
            .header("x-amz-content-sha256", nubo_auth::sigv4::UNSIGNED_PAYLOAD);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        Ok(req)
    }

    /// Sends a request; a response other than 2xx is an error.
    async fn request(&self, method: &str, path: &str) -> Result<reqwest::Response, String> {
        self.respond(method, path, self.signed(method, path)?).await
    }

    async fn respond(
        &self,
        method: &str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("{method} {path}: {status} {body}"));
        }
        Ok(resp)
    }

    async fn send(&self, method: &str, path: &str, body: Option<Bytes>) -> Result<Bytes, String> {
        let mut req = self.signed(method, path)?;
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = self.respond(method, path, req).await?;
        resp.bytes().await.map_err(|e| e.to_string())
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<(), String> {
        self.send("PUT", path, Some(data)).await.map(|_| ())
    }

    /// GETs `path` as a downloader would, a chunk at a time; returns its length.
    async fn download(&self, path: &str) -> Result<usize, String> {
        let mut resp = self.request("GET", path).await?;
        let mut len = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            len += chunk.len();
        }
        Ok(len)
    }
}

fn random_bytes(n: usize) -> Bytes {
    let mut out = Vec::with_capacity(n);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    Bytes::from(out)
}

/// Drops the files under `dir` from the page cache, so that the next reads of
/// them go to the disk. Each is fsynced first: dirty pages cannot be dropped,
/// and s3s-fs does not fsync what it writes.
fn evict(dir: &Path) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            evict(&path)?;
        } else if let Ok(file) = std::fs::File::open(&path) {
            file.sync_all()
                .and_then(|()| {
                    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
                        .map_err(io::Error::from)
                })
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// What the raw disk does with the same bytes, in MiB/s.
struct RawDisk {
    write: f64,
    read_cold: f64,
    read_cached: f64,
}

/// Writes (and fsyncs) `count` files of `data` in `dir`, then reads them from the
/// disk and again from the page cache.
fn raw_disk(dir: &Path, data: &[u8], count: usize) -> Result<RawDisk, String> {
    use std::io::{Read, Write};
    let dir = dir.join("raw");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..count {
        let mut f =
            std::fs::File::create(dir.join(format!("raw-{i}"))).map_err(|e| e.to_string())?;
        f.write_all(data).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
    }
    let write = mbps(data.len() * count, started.elapsed());
    let read_all = || -> Result<f64, String> {
        let started = Instant::now();
        let mut buf = Vec::with_capacity(data.len());
        for i in 0..count {
            buf.clear();
            std::fs::File::open(dir.join(format!("raw-{i}")))
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(|e| e.to_string())?;
        }
        Ok(mbps(data.len() * count, started.elapsed()))
    };
    evict(&dir)?;
    let read_cold = read_all()?;
    let read_cached = read_all()?;
    std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(RawDisk {
        write,
        read_cold,
        read_cached,
    })
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9)
}

/// MiB/s of PUTs, then of GETs from the disk (`data_dir` evicted from the page
/// cache first) and from the page cache.
async fn large(
    s3: &S3,
    bucket: &str,
    data: &Bytes,
    data_dir: &Path,
) -> Result<(f64, f64, f64), String> {
    let started = Instant::now();
    for i in 0..LARGE_COUNT {
        s3.put(&format!("/{bucket}/large-{i}"), data.clone())
            .await?;
    }
    let put = mbps(data.len() * LARGE_COUNT, started.elapsed());
    let get_all = || async {
        let started = Instant::now();
        for i in 0..LARGE_COUNT {
            let len = s3.download(&format!("/{bucket}/large-{i}")).await?;
            if len != data.len() {
                return Err(format!("GET large-{i}: {len} bytes"));
            }
        }
        Ok::<f64, String>(mbps(data.len() * LARGE_COUNT, started.elapsed()))
    };
    evict(data_dir)?;
    let get_cold = get_all().await?;
    let get_cached = get_all().await?;
    Ok((put, get_cold, get_cached))
}

/// Operations per second of `CLIENTS` tasks doing `op` for `PHASE`.
async fn small(s3: &S3, bucket: &str, put: bool) -> Result<f64, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let data = random_bytes(SMALL);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (s3, stop, bucket, data) =
                (s3.clone(), stop.clone(), bucket.to_string(), data.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 1_000_000 {
                    let path = format!("/{bucket}/small-{c}-{}", n % 200);
                    if put {
                        s3.put(&path, data.clone()).await?;
                    } else {
                        s3.send("GET", &path, None).await?;
                    }
                    n += 1;
                }
                Ok::<u64, String>(n)
            })
        })
        .collect();
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

struct Figures {
    large_put: f64,
    large_get_cold: f64,
    large_get_cached: f64,
    small_put: f64,
    small_get: f64,
}

/// One round: large objects on each server, then small PUTs and small GETs,
/// the servers taking turns phase by phase.
async fn round(servers: [(&S3, &Path); 2]) -> Result<[Figures; 2], String> {
    let data = random_bytes(LARGE);
    let mut large_figures = Vec::new();
    for (s3, data_dir) in servers {
        large_figures.push(large(s3, "bench", &data, data_dir).await?);
    }
    let mut small_put = Vec::new();
    let mut small_get = Vec::new();
    for put in [true, false] {
        for (s3, _) in servers {
            let ops = small(s3, "bench", put).await?;
            if put { &mut small_put } else { &mut small_get }.push(ops);
        }
    }
    let figures = |i: usize| {
        let (large_put, large_get_cold, large_get_cached) = large_figures[i];
        Figures {
            large_put,
            large_get_cold,
            large_get_cached,
            small_put: small_put[i],
            small_get: small_get[i],
        }
    };
    Ok([figures(0), figures(1)])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// s3s-fs, the peer, on a free port, with one key.
struct Peer {
    child: Child,
    endpoint: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer(binary: &str, root: &Path) -> Result<Peer, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
    let child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--access-key",
            "AKPEERPEERPEERPEER00",
            "--secret-key",
            "peer-secret",
        ])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{binary}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("s3s-fs did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Peer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    })
}

pub fn run(args: &[String]) -> Result<(), String> {
    let nubod = crate::flag(args, "--nubod").ok_or("--nubod PATH is required")?;
    let peer_bin = crate::flag(args, "--peer").ok_or("--peer PATH (s3s-fs) is required")?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let work = std::env::temp_dir().join(format!("nubo-bench-s3-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;

    let region = Region::start(nubod, "", None, &["--hypervisor", "sim"])?;
    let peer_root = work.join("peer");
    let peer = start_peer(peer_bin, &peer_root)?;
    let nubo_data = region.dir.join("data");
    let mut raws = Vec::new();
    let mut nubos = Vec::new();
    let mut peers = Vec::new();
    runtime.block_on(async {
        let public = Client::new(&region.endpoint, "local-1", Credentials::None);
        let created: SignupResponse = public
            .post(
                "/v1/signup",
                &SignupRequest {
                    email: "s3-bench@example.com".into(),
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let nubo_s3 = S3 {
            http: reqwest::Client::new(),
            endpoint: region.s3_endpoint.clone(),
            key: created.access_key_id,
            secret: created.secret_access_key,
            region: "local-1".into(),
        };
        let peer_s3 = S3 {
            http: reqwest::Client::new(),
            endpoint: peer.endpoint.clone(),
            key: "AKPEERPEERPEERPEER00".into(),
            secret: "peer-secret".into(),
            region: "us-east-1".into(),
        };
        for s3 in [&nubo_s3, &peer_s3] {
            s3.send("PUT", "/bench", None).await?;
        }
        for n in 1..=ROUNDS {
            // The raw disk, where nubo keeps its data.
            raws.push(raw_disk(&work, &random_bytes(LARGE), LARGE_COUNT)?);
            let [nubo, peer] =
                round([(&nubo_s3, nubo_data.as_path()), (&peer_s3, &peer_root)]).await?;
            nubos.push(nubo);
            peers.push(peer);
            eprintln!("round {n} of {ROUNDS} measured");
        }
        Ok::<(), String>(())
    })?;
    drop(peer);
    let _ = std::fs::remove_dir_all(&work);
    let raw = RawDisk {
        write: median(raws.iter().map(|r| r.write).collect()),
        read_cold: median(raws.iter().map(|r| r.read_cold).collect()),
        read_cached: median(raws.iter().map(|r| r.read_cached).collect()),
    };
    let medians = |all: &[Figures]| Figures {
        large_put: median(all.iter().map(|f| f.large_put).collect()),
        large_get_cold: median(all.iter().map(|f| f.large_get_cold).collect()),
        large_get_cached: median(all.iter().map(|f| f.large_get_cached).collect()),
        small_put: median(all.iter().map(|f| f.small_put).collect()),
        small_get: median(all.iter().map(|f| f.small_get).collect()),
    };
    let nubo = medians(&nubos);
    let peer_figures = medians(&peers);

    println!();
    println!(
        "bench/s3: 64 MiB objects ({LARGE_COUNT} in sequence) and 4 KiB objects ({CLIENTS} clients, {} s each); medians of {ROUNDS} rounds",
        PHASE.as_secs()
    );
    println!();
    let row = |name: &str, nubo: f64, peer: f64, raw: f64| {
        println!("{name:<28} {nubo:>10.1} {peer:>10.1} {raw:>10.1}");
    };
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "", "nubo", "s3s-fs", "raw disk"
    );
    row(
        "64 MiB PUT (MiB/s)",
        nubo.large_put,
        peer_figures.large_put,
        raw.write,
    );
    row(
        "64 MiB GET, disk (MiB/s)",
        nubo.large_get_cold,
        peer_figures.large_get_cold,
        raw.read_cold,
    );
    row(
        "64 MiB GET, cached (MiB/s)",
        nubo.large_get_cached,
        peer_figures.large_get_cached,
        raw.read_cached,
    );
    println!(
        "{:<28} {:>10.0} {:>10.0} {:>10}",
        "4 KiB PUT (ops/s)", nubo.small_put, peer_figures.small_put, "-"
    );
    println!(
        "{:<28} {:>10.0} {:>10.0} {:>10}",
        "4 KiB GET (ops/s)", nubo.small_get, peer_figures.small_get, "-"
    );
    println!();
    println!("against the targets (ratio > 1 meets it):");
    let show = |what: &str, ratio: f64, of_what: &str, target: f64| {
        println!(
            "  {what} {ratio:.2}{of_what} vs >= {target}: {:.2}x",
            ratio / target
        );
    };
    let vs_raw = |what: &str, ratio: f64| show(what, ratio, " of the raw disk", LARGE_TARGET);
    let vs_peer = |what: &str, ratio: f64| show(what, ratio, "x s3s-fs", SMALL_TARGET);
    let (n, p, r) = (&nubo, &peer_figures, &raw);
    vs_raw("large PUT", n.large_put / r.write);
    vs_raw("large GET", n.large_get_cold / r.write);
    vs_peer("small PUT", n.small_put / p.small_put);
    vs_peer("small GET", n.small_get / p.small_get);
    println!(
        "  (large GET from the disk: {:.2} of a plain read of the same cold bytes, a stricter limit than the target's)",
        nubo.large_get_cold / raw.read_cold
    );
    println!(
        "  (cached large GET: {:.2} of a plain read of cached bytes; no target, it measures memory copies)",
        nubo.large_get_cached / raw.read_cached
    );
    Ok(())
}
