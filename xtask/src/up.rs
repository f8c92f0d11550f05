//! `cargo xtask up`: builds and runs a local region, and says how to use it.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use std::{env, thread};

use crate::cmd::{self, Error, Result};
use crate::{image, packages};

/// nubod's own default.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What `up` gives nubod before the user's own arguments: the data dir,
/// relative to the workspace root, as a user would type it.
pub const NUBOD_ARGS: &[&str] = &["--data-dir", ".nubo"];

pub fn run(nubod_args: &[String]) -> Result {
    // The binaries build while the packages install and the images build: on
    // a fresh machine each takes minutes, and apt's and debootstrap's
    // downloads, the kernel's compile and rustc overlap well even on two cores.
    let build = Background::start()?;
    let images = packages::ensure(&[packages::REGION, &image::packages()].concat())
        .and_then(|()| image::ensure_all());
    let built = build.finish();
    for image in images? {
        image::install(&image, Path::new(".nubo/images"))?;
    }
    built?;
    let bin = target_dir()?.join("release");
    let addr = reachable(listen_addr(nubod_args)?);

    let mut nubod_cmd = Command::new(bin.join("nubod"));
    nubod_cmd.args(NUBOD_ARGS).args(nubod_args);
    let mut nubod = cmd::spawn(&mut nubod_cmd)?;
    if let Some(health) = wait_healthy(&mut nubod, addr)? {
        let region = region(&health).unwrap_or("?");
        let endpoint = format!("http://{addr}");
        println!();
        println!("  nubo is up: region {region} at {endpoint}   (Ctrl-C stops it)");
        println!("  try this, in another shell:");
        println!("    export PATH=\"{}:$PATH\"", bin.display());
        println!("    nubo --endpoint {endpoint} signup --email you@example.com");
        println!("    nubo instance launch --image nubo-micro --type n1.nano --wait");
        println!("  and when you are done: cargo xtask down   (its VMs run on after Ctrl-C)");
        println!();
    }
    // Ctrl-C reaches nubod directly, being in our process group, and it shuts
    // down by itself. Any other end (a crash, or exiting early as for
    // `--help`) is passed on as our exit status.
    let status = nubod
        .wait()
        .map_err(|e| Error::new(format!("waiting for nubod: {e}")))?;
    cmd::check(&nubod_cmd, status)
}

/// The command that builds the release binaries, nubod and nubo.
fn build_command() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "-p", "nubo"]);
    cmd
}

/// Builds the release binaries, nubod and nubo.
pub fn build() -> Result {
    cmd::run(&mut build_command())
}

/// The release build, running beside other work with its output in a log.
struct Background {
    child: Child,
    command: Command,
    log: PathBuf,
}

impl Background {
    fn start() -> Result<Background> {
        let dir = target_dir()?;
        std::fs::create_dir_all(&dir).map_err(cmd::io(&dir))?;
        let log = dir.join("nubo-release-build.log");
        let file = std::fs::File::create(&log).map_err(cmd::io(&log))?;
        let err = file.try_clone().map_err(cmd::io(&log))?;
        let mut command = build_command();
        command.stdout(file).stderr(err);
        eprintln!(
            "building nubod and nubo in the background (log: {})",
            log.display()
        );
        let child = cmd::spawn(&mut command)?;
        Ok(Background {
            child,
            command,
            log,
        })
    }

    /// Waits for the build; on failure, says where it failed.
    fn finish(mut self) -> Result {
        let status = self
            .child
            .wait()
            .map_err(|e| Error::new(format!("waiting for cargo: {e}")))?;
        if !status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        cmd::check(&self.command, status)
    }
}

/// Where cargo builds: `$CARGO_TARGET_DIR`, else the workspace's `target`.
/// Absolute, for the PATH hint.
pub fn target_dir() -> Result<PathBuf> {
    let dir = env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    std::path::absolute(&dir).map_err(cmd::io(&dir))
}

/// The address nubod will listen on: the last `--listen ADDR` (or
/// `--listen=ADDR`) among its args, else `$NUBO_LISTEN`, which nubod reads
/// too, else its default.
fn listen_addr(args: &[String]) -> Result<SocketAddr> {
    let mut listen = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            listen = args.next().cloned();
        } else if let Some(value) = arg.strip_prefix("--listen=") {
            listen = Some(value.to_owned());
        }
    }
    match listen.or_else(|| env::var("NUBO_LISTEN").ok()) {
        None => Ok(DEFAULT_LISTEN),
        Some(addr) => addr
            .parse()
            .map_err(|e| Error::new(format!("--listen {addr}: {e}"))),
    }
}

/// A wildcard listen address is reached through loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// Polls `/healthz` until it answers 200 and returns that response, or
/// `None` if nubod exits first.
fn wait_healthy(nubod: &mut Child, addr: SocketAddr) -> Result<Option<String>> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let exited = nubod
            .try_wait()
            .map_err(|e| Error::new(format!("waiting for nubod: {e}")))?;
        if exited.is_some() {
            return Ok(None);
        }
        if let Some(response) = healthz(addr) {
            return Ok(Some(response));
        }
        if Instant::now() > deadline {
            // Best effort: we are failing anyway.
            let _ = nubod.kill();
            let _ = nubod.wait();
            return Err(Error::new(format!(
                "nubod did not answer http://{addr}/healthz within {} s",
                START_TIMEOUT.as_secs()
            )));
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// One plain HTTP/1.1 GET of `/healthz`: the whole response, if a 200.
fn healthz(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let ok = response.split_whitespace().nth(1) == Some("200");
    ok.then_some(response)
}

/// The `"region"` string of the health JSON; a scan saves a JSON dependency.
fn region(response: &str) -> Option<&str> {
    let key = "\"region\"";
    let rest = &response[response.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    rest.strip_prefix('"')?.split('"').next()
}
