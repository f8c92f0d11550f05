//! The Python that tests drive real AWS clients (botocore, boto3) with: a
//! virtualenv in the cache dir, keyed by the requirements it was built from.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;

use crate::cmd::{self, Error, Result};

const REQUIREMENTS: &str = "crates/nubo/tests/python/requirements.txt";

/// Returns the venv's interpreter, building the venv if its inputs changed.
pub fn ensure() -> Result<PathBuf> {
    let requirements =
        fs::read_to_string(REQUIREMENTS).map_err(|e| Error::new(format!("{REQUIREMENTS}: {e}")))?;
    let mut hasher = DefaultHasher::new();
    requirements.hash(&mut hasher);
    let venv = crate::cache::dir()?.join(format!("python-{:016x}", hasher.finish()));
    let python = venv.join("bin/python");
    if venv.join(".complete").exists() {
        return Ok(python);
    }
    let _ = fs::remove_dir_all(&venv);
    cmd::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    cmd::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(REQUIREMENTS),
    )?;
    fs::write(venv.join(".complete"), requirements).map_err(cmd::io(&venv))?;
    Ok(python)
}
