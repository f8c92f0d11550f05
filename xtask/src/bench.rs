//! `cargo xtask bench <name>`: builds release binaries and runs one benchmark.

use std::process::Command;

use crate::cmd::{self, Error, Result};
use crate::{image, packages, postgres, up};

pub fn run(name: &str) -> Result {
    match name {
        "api" => api(),
        "launch" => launch(),
        "s3" => s3(),
        "network" => network(),
        "volumes" => volumes(),
        "billing" => billing(),
        other => Err(Error::new(format!(
            "no benchmark {other:?}; one of: api, launch, s3, network, volumes, billing"
        ))),
    }
}

/// Closing an invoice of 1,000,000 events on SQLite: needs nothing else.
fn billing() -> Result {
    let bin = release_binaries()?;
    cmd::run(
        Command::new(bin.join("nubo-bench"))
            .arg("billing")
            .arg("--nubod")
            .arg(bin.join("nubod")),
    )
}

/// The control plane on both stores: needs PostgreSQL, and `psql` to make its database.
fn api() -> Result {
    packages::ensure(&["postgresql"])?;
    let url = postgres::ensure()?;
    let bin = release_binaries()?;
    cmd::run(
        Command::new(bin.join("nubo-bench"))
            .arg("api")
            .arg("--nubod")
            .arg(bin.join("nubod"))
            .args(["--postgres-url", &url]),
    )
}

/// Real guests beside bare QEMU: needs QEMU and the built images.
fn launch() -> Result {
    packages::ensure(&["qemu-system-x86", "qemu-utils"])?;
    let images = image::ensure_installed()?;
    let bin = release_binaries()?;
    cmd::run(
        Command::new(bin.join("nubo-bench"))
            .arg("launch")
            .arg("--nubod")
            .arg(bin.join("nubod"))
            .arg("--images")
            .arg(&images),
    )
}

/// Guests talking beside a veth pair: needs what a region's host needs, the
/// built images, and busybox (whose ping the guests use too).
fn network() -> Result {
    packages::ensure(packages::REGION)?;
    packages::ensure(&["busybox-static"])?;
    let images = image::ensure_installed()?;
    let bin = release_binaries()?;
    cmd::run(
        Command::new(bin.join("nubo-bench"))
            .arg("network")
            .arg("--nubod")
            .arg(bin.join("nubod"))
            .arg("--images")
            .arg(&images),
    )
}

/// Volumes in a debian-12 guest beside the host: needs what a region's host
/// needs, the built images, and SSH to reach the guest.
fn volumes() -> Result {
    packages::ensure(packages::REGION)?;
    packages::ensure(&["openssh-client"])?;
    let images = image::ensure_installed()?;
    let bin = release_binaries()?;
    cmd::run(
        Command::new(bin.join("nubo-bench"))
            .arg("volumes")
            .arg("--nubod")
            .arg(bin.join("nubod"))
            .arg("--images")
            .arg(&images),
    )
}

fn release_binaries() -> Result<std::path::PathBuf> {
    cmd::run(Command::new("cargo").args(["build", "--release", "-p", "nubo", "-p", "nubo-bench"]))?;
    Ok(up::target_dir()?.join("release"))
}

/// The version of s3s-fs, the peer of the object storage benchmark, as published.
const S3S_FS: &str = "0.14.1";

/// Object storage beside the raw disk and s3s-fs, installed into the cache.
fn s3() -> Result {
    let root = crate::cache::dir()?.join(format!("tools/s3s-fs-{S3S_FS}"));
    let peer = root.join("bin/s3s-fs");
    if !peer.exists() {
        cmd::run(
            Command::new("cargo")
                .args([
                    "install",
                    "--locked",
                    "--quiet",
                    "s3s-fs",
                    "--features",
                    "binary",
                    "--force",
                    "--version",
                    S3S_FS,
                    "--root",
                ])
                .arg(&root),
        )?;
    }
    let bin = release_binaries()?;
    cmd::run(
        Command::new(bin.join("nubo-bench"))
            .arg("s3")
            .arg("--nubod")
            .arg(bin.join("nubod"))
            .arg("--peer")
            .arg(&peer),
    )
}
