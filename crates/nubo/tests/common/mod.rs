//! A real region for end-to-end tests: the `nubod` binary on a free loopback port,
//! with its own data dir and store, driven through the `nubo` binary and HTTP.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

pub struct Region {
    child: Option<Child>,
    pub endpoint: String,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub s3_endpoint: String,
    pub dir: PathBuf,
    pub store: StoreKind,
    database_url: Option<String>,
    extra: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Creds {
    pub account_id: String,
    pub key_id: String,
    pub secret: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh PostgreSQL database on the test cluster.
fn postgres_database() -> String {
    let admin = std::env::var("NUBO_TEST_POSTGRES_URL").expect(
        "NUBO_TEST_POSTGRES_URL is not set: end-to-end tests run on PostgreSQL too. \
         Run `cargo xtask test`, or `export NUBO_TEST_POSTGRES_URL=$(cargo xtask pg-url)`",
    );
    let name = format!("nubo_e2e_{:016x}", nubo_store::ids::random_u64());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = nubo_store::Store::open(&admin).await.unwrap();
        let mut c = store.conn().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut *c)
            .await
            .unwrap();
    });
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    format!("{base}/{name}")
}

impl Region {
    /// A region of simulated hosts.
    pub fn start(store: StoreKind) -> Region {
        Region::start_with(store, &[])
    }

    /// A region of simulated hosts, with extra nubod flags.
    pub fn start_with(store: StoreKind, extra: &[&str]) -> Region {
        let mut args = vec!["--hypervisor", "sim"];
        args.extend_from_slice(extra);
        Region::boot_new(store, &args)
    }

    /// A region whose instances are real QEMU VMs of the images `cargo xtask test`
    /// built (`NUBO_TEST_IMAGES`).
    pub fn start_qemu(store: StoreKind, extra: &[&str]) -> Region {
        let images = std::env::var("NUBO_TEST_IMAGES").expect(
            "NUBO_TEST_IMAGES is not set: guest tests boot real VMs of the built images. \
             Run `cargo xtask test`, or `cargo xtask image --into DIR` and set it to DIR",
        );
        let mut args = vec!["--hypervisor", "qemu", "--images-dir", images.as_str()];
        args.extend_from_slice(extra);
        Region::boot_new(store, &args)
    }

    fn boot_new(store: StoreKind, extra: &[&str]) -> Region {
        let mut region = Region::unstarted(store, extra);
        region.boot();
        region
    }

    /// A region of a fresh data dir and store, not started yet.
    fn unstarted(store: StoreKind, extra: &[&str]) -> Region {
        let dir =
            std::env::temp_dir().join(format!("nubo-e2e-{:016x}", nubo_store::ids::random_u64()));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        let database_url = (store == StoreKind::Postgres).then(postgres_database);
        Region {
            child: None,
            endpoint: String::new(),
            s3_endpoint: String::new(),
            dir,
            store,
            database_url,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A region restored from `backup` (`nubo admin backup`) with `nubod
    /// restore` into a fresh data dir and store, then started with `extra`.
    pub fn restored(store: StoreKind, backup: &std::path::Path, extra: &[&str]) -> Region {
        let mut region = Region::unstarted(store, extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nubod"));
        cmd.arg("--data-dir")
            .arg(region.dir.join("data"))
            .args(extra)
            .env_remove("NUBO_DATABASE_URL")
            .env("NUBO_LOG", "warn");
        if let Some(url) = &region.database_url {
            cmd.arg("--database-url").arg(url);
        }
        let out = cmd
            .arg("restore")
            .arg("--from")
            .arg(backup)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nubod restore: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        region.boot();
        region
    }

    fn boot(&mut self) {
        let port = free_port();
        self.endpoint = format!("http://127.0.0.1:{port}");
        if self.s3_endpoint.is_empty() {
            self.s3_endpoint = format!("http://127.0.0.1:{}", free_port());
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nubod"));
        cmd.arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--s3-listen")
            .arg(self.s3_endpoint.trim_start_matches("http://"))
            .args(&self.extra)
            .env_remove("NUBO_DATABASE_URL")
            .env("NUBO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("nubod.log")).unwrap());
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        self.child = Some(cmd.spawn().expect("nubod starts"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(out) = self.curl("GET", "/healthz", None, &[])
                && out.0 == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nubod exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nubod did not become healthy: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nubod.log")).unwrap_or_default()
    }

    pub fn operator_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/operator.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Kills nubod without warning, as a crash would.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for nubod to exit by itself (a crash), and returns how.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                panic!("nubod did not exit within {timeout:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "nubod did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts nubod again on the same data dir and store.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            assert!(self.stop().success());
        }
        self.boot();
    }

    /// The URL of this region's store, for tests that check what it recorded.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.dir.join("data/region.db").display()),
        }
    }

    /// Runs the `nubo` CLI against this region with its own config home.
    pub fn nubo(&self, args: &[&str]) -> Output {
        self.nubo_env(args, &[])
    }

    pub fn nubo_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        nubo_command(&self.dir.join("config"), &self.endpoint, args, env)
            .output()
            .expect("nubo runs")
    }

    /// Runs the CLI, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.nubo(args);
        assert!(
            out.status.success(),
            "nubo {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI with `-o json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("nubo -o json prints JSON")
    }

    /// Signs up through the API (not saved in any profile).
    pub fn signup(&self, email: &str) -> Creds {
        let body = serde_json::json!({ "email": email }).to_string();
        let (status, v) = self.curl("POST", "/v1/signup", Some(&body), &[]).unwrap();
        assert_eq!(status, 201, "{v}");
        Creds {
            account_id: v["account_id"].as_str().unwrap().into(),
            key_id: v["access_key_id"].as_str().unwrap().into(),
            secret: v["secret_access_key"].as_str().unwrap().into(),
        }
    }

    /// A plain HTTP request; returns the status and the JSON body (or Null).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        self.http(method, path, body, headers)
            .map(|(status, _, text)| (status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A plain HTTP request; returns the status, the headers and the body text.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
        http(&self.endpoint, method, path, body, headers)
    }

    /// A SigV4-signed request as of `when`, with the `content-type` and
    /// `x-nubo-nonce` headers signed.
    pub fn signed_at(
        &self,
        creds: &Creds,
        method: &str,
        path: &str,
        body: Option<&str>,
        when: SystemTime,
    ) -> (u16, Value) {
        signed_request_at(&self.endpoint, creds, method, path, body, when)
    }

    pub fn signed(
        &self,
        creds: &Creds,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        self.signed_at(creds, method, path, body, SystemTime::now())
    }

    /// Polls an instance until it reaches `state`.
    pub fn wait_state(&self, creds: &Creds, id: &str, state: &str) -> Value {
        self.wait_state_within(creds, id, state, Duration::from_secs(30))
    }

    pub fn wait_state_within(
        &self,
        creds: &Creds,
        id: &str,
        state: &str,
        timeout: Duration,
    ) -> Value {
        self.wait_for_within(creds, &format!("/v1/instances/{id}"), state, timeout)
    }

    /// Polls a resource until its `state` is `state`.
    pub fn wait_for(&self, creds: &Creds, path: &str, state: &str) -> Value {
        self.wait_for_within(creds, path, state, Duration::from_secs(30))
    }

    pub fn wait_for_within(
        &self,
        creds: &Creds,
        path: &str,
        state: &str,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, v) = self.signed(creds, "GET", path, None);
            assert_eq!(status, 200, "{v}");
            if v["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never became {state}: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Region {
    /// Takes away what this region's QEMU hosts left running (VMs, DHCP
    /// servers, namespaces): they outlive nubod by design, but not the test
    /// that made them. Done by `nubod teardown`, the operators' own way.
    pub fn teardown(&self) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nubod"));
        cmd.arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(&self.extra)
            .arg("teardown")
            .env("NUBO_LOG", "warn");
        cmd.output().expect("nubod teardown runs")
    }

    /// The VM folders of every host of this region (`vms`, `vms-1`, …).
    pub fn vm_folders(&self) -> Vec<std::fs::DirEntry> {
        let Ok(data) = std::fs::read_dir(self.dir.join("data")) else {
            return Vec::new();
        };
        data.flatten()
            .filter(|d| d.file_name().to_string_lossy().starts_with("vms"))
            .filter_map(|d| std::fs::read_dir(d.path()).ok())
            .flat_map(|vms| vms.flatten())
            .collect()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.extra.iter().any(|a| a == "qemu") {
            let out = self.teardown();
            if !out.status.success() {
                eprintln!(
                    "nubod teardown failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Declares a test that runs once per store engine.
#[macro_export]
macro_rules! on_both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                ($body)(common::StoreKind::Sqlite)
            }
            #[test]
            fn postgres() {
                ($body)(common::StoreKind::Postgres)
            }
        }
    };
}

/// A plain HTTP request to `endpoint`, with a JSON body if any.
pub fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
    let mut all = headers.to_vec();
    if body.is_some() {
        all.push(("content-type", "application/json"));
    }
    http_bytes(endpoint, method, path, body.unwrap_or("").as_bytes(), &all)
}

/// A signed request, from any thread.
pub fn signed_request(
    endpoint: &str,
    creds: &Creds,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    signed_request_at(endpoint, creds, method, path, body, SystemTime::now())
}

fn signed_request_at(
    endpoint: &str,
    creds: &Creds,
    method: &str,
    path: &str,
    body: Option<&str>,
    when: SystemTime,
) -> (u16, Value) {
    let url = format!("{endpoint}{path}");
    let nonce = format!("{:016x}", nubo_store::ids::random_u64());
    let mut signed = vec![("x-nubo-nonce", nonce.as_str())];
    if body.is_some() {
        signed.push(("content-type", "application/json"));
    }
    let added = nubo_auth::sigv4::sign(
        method,
        &url,
        &signed,
        body.unwrap_or("").as_bytes(),
        &creds.key_id,
        &creds.secret,
        "local-1",
        "nubo",
        when,
    )
    .unwrap();
    let mut headers: Vec<(&str, &str)> = vec![("x-nubo-nonce", nonce.as_str())];
    headers.extend(added.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (status, _, text) = http(endpoint, method, path, body, &headers).unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A request with a raw body.
pub fn http_bytes(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    nubo_tls::install_crypto_provider();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{endpoint}{path}"))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, headers, text))
    })
}

/// Launches instances through the API; their ids.
pub fn launch(r: &Region, c: &Creds, body: Value) -> Vec<String> {
    let (status, v) = r.signed(c, "POST", "/v1/instances", Some(&body.to_string()));
    assert_eq!(status, 202, "{v}");
    v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}
/// Waits for `done`, failing the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
/// The console text of an instance, as its owner reads it.
pub fn console(r: &Region, c: &Creds, id: &str) -> String {
    let (status, v) = r.signed(c, "GET", &format!("/v1/instances/{id}/console"), None);
    assert_eq!(status, 200, "{v}");
    v["output"].as_str().unwrap_or_default().to_string()
}
/// Files of volumes the host agent holds.
pub fn volume_files(r: &Region) -> Vec<String> {
    std::fs::read_dir(r.dir.join("data/volumes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The arguments of `nubo instance launch` of the test image in the smallest
/// type, then `more`.
pub fn launch_micro<'a>(more: &[&'a str]) -> Vec<&'a str> {
    let launch = [
        "instance",
        "launch",
        "--image",
        "nubo-micro",
        "--type",
        "n1.nano",
    ];
    [&launch[..], more].concat()
}

/// For the first disk that appears: says the checksum of its first 16 MiB,
/// then writes numbered blocks after them, one by one, each acknowledged
/// once it is on the disk, until the disk goes.
pub const APPENDER: &str = r#"#!/bin/sh
while true; do
  for b in /sys/block/vd*; do
    [ -e "$b/serial" ] || continue
    s=$(cat "$b/serial"); d=/dev/${b##*/}
    echo "sum $s $(head -c 16777216 "$d" | sha256sum | cut -d' ' -f1)"
    i=0
    while [ -e "$b" ] && printf 'block-%08d' $i | dd of="$d" bs=4096 seek=$((4096 + i)) conv=fsync,notrunc 2>/dev/null; do
      echo "acked $s $i"
      i=$((i + 1))
      usleep 100000
    done
    exit 0
  done
  usleep 200000
done
"#;

/// The `nubo` CLI with `args` against `endpoint`, its config under
/// `config_home`, and nothing of the caller's own NUBO_* settings but `env`.
pub fn nubo_command(
    config_home: &std::path::Path,
    endpoint: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nubo"));
    cmd.args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env("NUBO_ENDPOINT", endpoint);
    for var in [
        "NUBO_CA_BUNDLE",
        "NUBO_ACCESS_KEY_ID",
        "NUBO_SECRET_ACCESS_KEY",
        "NUBO_REGION",
        "NUBO_PROFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}
