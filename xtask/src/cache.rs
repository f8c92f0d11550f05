//! The folder that survives between runs on one machine, for what is slow to build.

use std::env;
use std::path::PathBuf;

use crate::cmd::{Error, Result};

/// `$NUBO_CACHE_DIR`, else `$XDG_CACHE_HOME/nubo`, else `$HOME/.cache/nubo`:
/// the formula `.ci/run` uses for the target dir, an empty variable counting
/// as unset as in sh's `${VAR:-...}`.
pub fn dir() -> Result<PathBuf> {
    let var = |name| {
        env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("NUBO_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|dir| dir.join("nubo")))
        .or_else(|| var("HOME").map(|home| home.join(".cache/nubo")))
        .ok_or_else(|| Error::new("set HOME or NUBO_CACHE_DIR"))?;
    std::path::absolute(&dir).map_err(crate::cmd::io(&dir))
}
