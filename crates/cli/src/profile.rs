//! Profiles: endpoints and credentials in `~/.config/nubo/config.toml`
//! (`$XDG_CONFIG_HOME/nubo/config.toml`), written with mode 0600 because they hold
//! secrets, as `~/.aws/credentials` does.
//!
//! A command uses the profile `--profile` names, else `NUBO_PROFILE`'s, else the
//! file's default (`default_profile`, or the profile named `default` in a file
//! that names none).

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
    /// The region's S3 endpoint, for `nubo profile export`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// The profile commands use when neither `--profile` nor `NUBO_PROFILE`
    /// names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// Where the profile in use was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    Default,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Flag => "named by --profile",
            Source::Env => "named by NUBO_PROFILE",
            Source::Default => "the default profile",
        }
    }
}

/// The config file's profiles.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    file: ConfigFile,
}

/// The profile named by `--profile` (`flag`) or `NUBO_PROFILE`, if either names one.
pub fn named(flag: Option<&str>) -> Option<(String, Source)> {
    if let Some(name) = flag {
        return Some((name.to_string(), Source::Flag));
    }
    std::env::var("NUBO_PROFILE")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|name| (name, Source::Env))
}

impl Profiles {
    pub fn read() -> Result<Profiles, ClientError> {
        let Some(path) = path() else {
            return Ok(Profiles::default());
        };
        let file = match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(ClientError::Usage(format!("{}: {e}", path.display()))),
        };
        Ok(Profiles { file })
    }

    /// The name of the profile a command uses, and who named it.
    pub fn select(&self, flag: Option<&str>) -> (String, Source) {
        named(flag).unwrap_or_else(|| (self.default_name().to_string(), Source::Default))
    }

    /// The default profile's name (it may not exist yet).
    pub fn default_name(&self) -> &str {
        self.file.default_profile.as_deref().unwrap_or("default")
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.file.profiles.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Profile)> {
        self.file.profiles.iter()
    }

    /// A list of the profile names, for messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.file.profiles.keys().map(String::as_str).collect();
        names.join(", ")
    }

    /// Saves `profile` as `name`; the first profile of a file without a default
    /// becomes its default. Returns whether `name` is the default.
    pub fn save(&mut self, name: &str, profile: Profile) -> Result<bool, ClientError> {
        if !self.file.profiles.contains_key(self.default_name()) {
            self.file.default_profile = Some(name.to_string());
        }
        self.file.profiles.insert(name.to_string(), profile);
        self.write()?;
        Ok(self.default_name() == name)
    }

    /// Makes an existing profile the default.
    pub fn make_default(&mut self, name: &str) -> Result<(), ClientError> {
        if self.get(name).is_none() {
            return Err(ClientError::Usage(format!(
                "no profile {name:?} in {}; it holds: {}",
                shown_path(),
                self.names()
            )));
        }
        self.file.default_profile = Some(name.to_string());
        self.write()
    }

    fn write(&self) -> Result<(), ClientError> {
        let path = path().ok_or_else(|| {
            ClientError::Usage("neither XDG_CONFIG_HOME nor HOME is set; cannot save".into())
        })?;
        let text = toml::to_string(&self.file).map_err(|e| ClientError::Usage(e.to_string()))?;
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
        fs::rename(&tmp, &path).map_err(io)
    }
}

pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("nubo").join("config.toml"))
}

/// The config file's path, for messages.
pub fn shown_path() -> String {
    path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.config/nubo/config.toml".into())
}
