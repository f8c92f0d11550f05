//! `cargo xtask bench <name>`: builds release binaries and runs one benchmark.

use std::process::Command;

use crate::cmd::{self, Error, Result};
use crate::{packages, postgres, up};

pub fn run(name: &str) -> Result {
    match name {
        "api" => api(),
        other => Err(Error::new(format!("no benchmark {other:?}; one of: api"))),
    }
}

/// The control plane on both stores: needs PostgreSQL, and `psql` to make its database.
fn api() -> Result {
    packages::ensure(&["postgresql"])?;
    let url = postgres::ensure()?;
    cmd::run(Command::new("cargo").args(["build", "--release", "-p", "nubo", "-p", "nubo-bench"]))?;
    let bin = up::target_dir()?.join("release");
    cmd::run(
        Command::new(bin.join("nubo-bench"))
            .arg("api")
            .arg("--nubod")
            .arg(bin.join("nubod"))
            .args(["--postgres-url", &url]),
    )
}
