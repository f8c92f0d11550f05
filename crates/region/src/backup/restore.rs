//! `nubod restore --from FILE`: a backup into a new data dir (and, for
//! PostgreSQL, an empty database), ready for nubod to start on. Volumes are
//! made again from their chunks (each checked against its hash) on the
//! hosts of this nubod's configuration that have their names.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use nubo_host::BoxFuture;
use nubo_host::volumes::{ChunkStore, Manifest as Chunks};
use nubo_store::Store;

use super::{FORMAT, MANIFEST, Manifest, PRIVATE_IMAGES, VOLUME_CHUNKS, VOLUMES, VolumeCopy};
use crate::config::Config;

/// What a restore put back.
#[derive(Debug, Default)]
pub struct Restored {
    pub files: usize,
    pub volumes: usize,
}

/// Restores the backup at `from` into `config`'s data dir, which must be
/// empty or absent, and its store.
pub async fn restore(config: &Config, from: &Path) -> Result<Restored, String> {
    let data_dir = &config.data_dir;
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "{} is not empty: restore into a new data dir",
            data_dir.display()
        ));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    }
    let _lock = crate::server::lock_data_dir(data_dir)?;
    let staging = data_dir.join("restore-staging");
    let (manifest, mut restored) = {
        let (config, from, staging) = (config.clone(), from.to_path_buf(), staging.clone());
        tokio::task::spawn_blocking(move || unpack(&config, &from, &staging))
            .await
            .map_err(|e| e.to_string())??
    };
    if manifest.engine == nubo_store::Engine::Postgres.name() {
        super::store_copy::restore_postgres(
            &staging.join(super::store_copy::archive_name(
                nubo_store::Engine::Postgres,
            )),
            &config.database_url,
        )
        .await?;
    }
    // Migrations run forward here, for a backup of an older nubod.
    let store = Store::open(&config.database_url)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let moved = {
        let mut c = store.conn().await.map_err(|e| e.to_string())?;
        nubo_store::images::relocate_private(
            &mut c,
            &format!("{}/", manifest.data_dir.join(PRIVATE_IMAGES).display()),
            &format!("{}/", data_dir.join(PRIVATE_IMAGES).display()),
        )
        .await
        .map_err(|e| e.to_string())?
    };
    if moved > 0 {
        tracing::info!(images = moved, "private images point at the new data dir");
    }
    store.close().await;
    restored.volumes = volumes(config, &staging).await?;
    std::fs::remove_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    Ok(restored)
}

/// Writes the archive's files where they go: the store's copy and the
/// volumes' parts into `staging` (or the SQLite file where the store is),
/// the rest into the data dir.
fn unpack(config: &Config, from: &Path, staging: &Path) -> Result<(Manifest, Restored), String> {
    let file = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut manifest: Option<Manifest> = None;
    let mut restored = Restored::default();
    let bad = |e: std::io::Error| format!("{}: {e}", from.display());
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.into_owned();
        // A backup holds plain files, each under the data dir.
        if !entry.header().entry_type().is_file()
            || !name.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(format!(
                "{}: {} is not a file of a data dir",
                from.display(),
                name.display()
            ));
        }
        let Some(m) = &manifest else {
            if name != Path::new(MANIFEST) {
                return Err(format!("{} is not a nubo backup", from.display()));
            }
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(bad)?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| format!("{}: {MANIFEST}: {e}", from.display()))?;
            check(&m, config)?;
            manifest = Some(m);
            continue;
        };
        let target = if name
            == Path::new(super::store_copy::archive_name(nubo_store::Engine::Sqlite))
            && m.engine == nubo_store::Engine::Sqlite.name()
        {
            sqlite_path(&config.database_url)?
        } else if name.starts_with(VOLUMES)
            || name.starts_with(VOLUME_CHUNKS)
            || name
                == Path::new(super::store_copy::archive_name(
                    nubo_store::Engine::Postgres,
                ))
        {
            staging.join(&name)
        } else {
            config.data_dir.join(&name)
        };
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        entry
            .unpack(&target)
            .map_err(|e| format!("{}: {e}", target.display()))?;
        restored.files += 1;
    }
    let manifest = manifest.ok_or_else(|| format!("{} is empty", from.display()))?;
    Ok((manifest, restored))
}

/// Refuses a backup this nubod cannot restore as configured.
fn check(m: &Manifest, config: &Config) -> Result<(), String> {
    if m.format != FORMAT {
        return Err(format!(
            "backup format {} (this nubod reads format {FORMAT})",
            m.format
        ));
    }
    if m.migrations > nubo_store::migrations::COUNT {
        return Err(format!(
            "the backup's store has {} migrations, this nubod knows {}: restore it with the \
             nubod that took it (nubod {}) or a newer one",
            m.migrations,
            nubo_store::migrations::COUNT,
            m.nubod
        ));
    }
    let engine = if config.database_url.starts_with("sqlite:") {
        nubo_store::Engine::Sqlite
    } else {
        nubo_store::Engine::Postgres
    };
    if m.engine != engine.name() {
        return Err(format!(
            "the backup holds a {} store and this nubod is set up for {}: give it a \
             --database-url of the backup's kind",
            m.engine,
            engine.name()
        ));
    }
    if m.region != config.region {
        return Err(format!(
            "the backup is of region {}, this nubod's is {}: give it --region {}",
            m.region, config.region, m.region
        ));
    }
    Ok(())
}

/// The file of an `sqlite://PATH[?options]` URL.
fn sqlite_path(url: &str) -> Result<PathBuf, String> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| format!("{url} is not an SQLite URL"))?;
    Ok(PathBuf::from(path.split('?').next().unwrap_or(path)))
}

/// Makes every volume of the backup again, as a raw file on its host.
async fn volumes(config: &Config, staging: &Path) -> Result<usize, String> {
    let hosts = crate::hosts::qemu_hosts(config);
    let chunks: Arc<dyn ChunkStore> = Arc::new(StagedChunks(staging.to_path_buf()));
    let mut made = 0;
    for entry in std::fs::read_dir(staging.join(VOLUMES))
        .into_iter()
        .flatten()
    {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let copy: VolumeCopy =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        // A simulated host's volumes hold no data.
        if copy.driver != "qemu" {
            continue;
        }
        let host = hosts.iter().find(|h| h.name == copy.host).ok_or_else(|| {
            format!(
                "volume {} lives on host {}, which this nubod's configuration does not have \
                 (its hosts: {}); hosts are named after the region and the machine",
                copy.volume_id,
                copy.host,
                hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let dir = nubo_host::qemu::volumes_dir(&host.state_dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let manifest = Chunks {
            size_bytes: copy.size_bytes,
            chunk_size: copy.chunk_size,
            chunks: copy.chunks,
        };
        let file = dir.join(format!("{}.raw", copy.volume_id));
        nubo_host::volumes::download(&manifest, &file, &chunks)
            .await
            .map_err(|e| format!("volume {}: {e}", copy.volume_id))?;
        made += 1;
    }
    Ok(made)
}

/// The chunks a restore unpacked, read from where it put them.
struct StagedChunks(PathBuf);

impl ChunkStore for StagedChunks {
    fn contains<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { Ok(self.0.join(super::chunk_name(hash)).exists()) })
    }

    fn put<'a>(&'a self, hash: &'a str, _: Bytes) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("chunk {hash}: a restore only reads chunks")) })
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Bytes, String>> {
        Box::pin(async move {
            if hash.len() < 2 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{hash:?} is not a chunk name"));
            }
            tokio::fs::read(self.0.join(super::chunk_name(hash)))
                .await
                .map(Bytes::from)
                .map_err(|e| format!("chunk {hash}: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            region: "local-1".into(),
            taken_at: "2026-12-06T00:00:00Z".into(),
            engine: "sqlite".into(),
            data_dir: "/var/lib/nubo".into(),
            migrations: nubo_store::migrations::COUNT,
            nubod: "0.1.0".into(),
        }
    }

    #[test]
    fn a_backup_this_nubod_cannot_restore_as_set_up_is_refused() {
        let config = Config::load(crate::Args::default()).unwrap();
        assert!(check(&manifest(), &config).is_ok());
        let newer = Manifest {
            migrations: nubo_store::migrations::COUNT + 1,
            ..manifest()
        };
        assert!(check(&newer, &config).unwrap_err().contains("migrations"));
        let other = Manifest {
            region: "eu-2".into(),
            ..manifest()
        };
        assert!(
            check(&other, &config)
                .unwrap_err()
                .contains("--region eu-2")
        );
        let postgres = Manifest {
            engine: "postgres".into(),
            ..manifest()
        };
        assert!(
            check(&postgres, &config)
                .unwrap_err()
                .contains("--database-url")
        );
        let future = Manifest {
            format: FORMAT + 1,
            ..manifest()
        };
        assert!(check(&future, &config).unwrap_err().contains("format"));
    }

    #[test]
    fn the_sqlite_file_is_the_urls_path_without_options() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/nubo/region.db?mode=rwc").unwrap(),
            PathBuf::from("/var/lib/nubo/region.db")
        );
        assert!(sqlite_path("postgres://db/nubo").is_err());
    }
}
