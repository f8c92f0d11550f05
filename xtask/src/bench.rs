//! `cargo xtask bench <name>`: builds release binaries and runs one benchmark.

use std::process::Command;

use crate::cmd::{self, Error, Result};
use crate::{image, packages, postgres, up};

pub fn run(name: &str) -> Result {
    match name {
        "api" => api(),
        "launch" => launch(),
        other => Err(Error::new(format!(
            "no benchmark {other:?}; one of: api, launch"
        ))),
    }
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

fn release_binaries() -> Result<std::path::PathBuf> {
    cmd::run(Command::new("cargo").args(["build", "--release", "-p", "nubo", "-p", "nubo-bench"]))?;
    Ok(up::target_dir()?.join("release"))
}
