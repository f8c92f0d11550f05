//! Debian packages the tasks need, installed on demand so that a fresh
//! machine (or CI) needs no setup by hand.

use std::io;
use std::process::Command;

use crate::cmd::{self, Result};

/// What a single-node region needs: QEMU for its guests, and the tools that make
/// their networks (namespaces, anti-spoofing rules, DHCP).
pub const REGION: &[&str] = &[
    "ca-certificates",
    "qemu-system-x86",
    "qemu-utils",
    "iproute2",
    "nftables",
    "dnsmasq-base",
];

/// Installs whichever of `packages` are not installed yet.
pub fn ensure(packages: &[&str]) -> Result {
    let mut missing = Vec::new();
    for &package in packages {
        if !installed(package)? {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let root = cmd::is_root()?;
    cmd::run(apt_get(root).arg("update"))?;
    cmd::run(
        apt_get(root)
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
}

fn installed(package: &str) -> Result<bool> {
    let out = cmd::capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))?;
    // dpkg-query fails for a package it has never heard of: missing too.
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

/// `apt-get`, through sudo unless we are root. `env` carries DEBIAN_FRONTEND
/// past sudo's environment reset, so that no debconf prompt can stall CI.
fn apt_get(root: bool) -> Command {
    let mut cmd = if root {
        Command::new("env")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("env");
        sudo
    };
    cmd.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
    // Progress goes to stderr: stdout is for results (`pg-url` prints one).
    cmd.stdout(io::stderr());
    cmd
}
