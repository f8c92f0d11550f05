//! `cargo xtask test`: the whole suite, exactly as CI runs it (`.ci/run`).

use std::process::Command;

use crate::cmd::{self, Error, Result};
use crate::{image, packages, postgres, python};

/// Where tests find the PostgreSQL they run against.
const POSTGRES_URL_VAR: &str = "NUBO_TEST_POSTGRES_URL";

/// Where tests find a Python with the AWS SDK, to check nubo against real clients.
const PYTHON_VAR: &str = "NUBO_TEST_PYTHON";

/// Where guest tests find the images they boot.
const IMAGES_VAR: &str = "NUBO_TEST_IMAGES";

/// Runs the checks in order and stops at the first failure. `test_args` go
/// on to the test runner (a filter, say).
pub fn run(test_args: &[String]) -> Result {
    // openssl makes the TLS test's private CA; systemd checks the unit file.
    packages::ensure(
        &[
            packages::REGION,
            &["postgresql", "openssh-client", "openssl", "systemd"],
        ]
        .concat(),
    )?;
    let url = postgres::ensure()?;
    let python = python::ensure()?;
    let images = image::ensure_installed()?;
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.args(args)
            .env(POSTGRES_URL_VAR, &url)
            .env(PYTHON_VAR, &python)
            .env(IMAGES_VAR, &images);
        cmd
    };

    step("rustfmt", &mut cargo(&["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy",
        &mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let mut tests = if nextest_installed()? {
        cargo(&["nextest", "run", "--workspace", "--no-fail-fast"])
    } else {
        eprintln!("cargo-nextest is not installed; falling back to cargo test");
        cargo(&["test", "--workspace", "--no-fail-fast"])
    };
    step("tests", tests.args(test_args))?;

    eprintln!("all checks passed");
    Ok(())
}

fn step(name: &str, cmd: &mut Command) -> Result {
    cmd::run(cmd).map_err(|e| Error {
        message: format!("{name} failed: {}", e.message),
        ..e
    })
}

fn nextest_installed() -> Result<bool> {
    let out = cmd::capture(Command::new("cargo").args(["nextest", "--version"]))?;
    Ok(out.status.success())
}
