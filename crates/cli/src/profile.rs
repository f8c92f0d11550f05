//! Profiles: endpoints and credentials in `~/.config/nubo/config.toml`
//! (`$XDG_CONFIG_HOME/nubo/config.toml`), written with mode 0600 because they hold
//! secrets, as `~/.aws/credentials` does.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::client::ClientError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("nubo").join("config.toml"))
}

fn read_file() -> Result<ConfigFile, ClientError> {
    let Some(path) = path() else {
        return Ok(ConfigFile::default());
    };
    match fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(ClientError::Usage(format!("{}: {e}", path.display()))),
    }
}

pub fn load(name: &str) -> Result<Profile, ClientError> {
    Ok(read_file()?.profiles.remove(name).unwrap_or_default())
}

/// Writes `profile` under `name`, keeping the other profiles.
pub fn save(name: &str, profile: Profile) -> Result<PathBuf, ClientError> {
    let path = path().ok_or_else(|| {
        ClientError::Usage("neither XDG_CONFIG_HOME nor HOME is set; cannot save".into())
    })?;
    let mut file = read_file()?;
    file.profiles.insert(name.to_string(), profile);
    let text = toml::to_string(&file).map_err(|e| ClientError::Usage(e.to_string()))?;
    let io = |e: std::io::Error| ClientError::Usage(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    out.write_all(text.as_bytes()).map_err(io)?;
    out.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}
