//! Backups of a running region, and their restore into a new data dir (see
//! docs/operating.md).
//!
//! A backup is a tar archive, streamed by `GET /v1/admin/backup` while the
//! region serves:
//!
//! - `nubo-backup.json`: what it is (the format, region, store engine, the
//!   data dir it came from, the migrations its store has);
//! - `region.db` (SQLite) or `store.pgdump` (PostgreSQL): the store;
//! - `secrets.key`, `operator.token`;
//! - `objects/data/…`, `objects/chunks/…`: object data and snapshot chunks;
//! - `private-images/…`, and `images/…` when the images dir is in the data dir;
//! - `volumes/<id>.json` and `volume-chunks/…`: each volume, as snapshots
//!   keep them (content-addressed chunks; zeros left out).
//!
//! It is consistent: the store is copied at one moment, and nothing it lists
//! can be gone before the archive has it. Object files are written before
//! the row that names them commits, and removed only after that row is gone;
//! the backup holds their removal (and the freeing of snapshot chunks, and
//! the deletion of volume files) from before the copy until it ends, so every
//! file the copy lists is there to read. Files the copy does not list (written
//! after it) ride along and are swept at the restored region's first start.
//! Volumes are copied as snapshots copy them: through QEMU while a VM runs
//! on them (the volume as it was when the copy started, crash consistent),
//! from their file otherwise.

mod archive;
pub mod restore;
mod store_copy;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use nubo_api::error::ErrorBody;
use nubo_host::BoxFuture;
use nubo_host::volumes::ChunkStore;
use nubo_store::volumes;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::archive::Archive;
use crate::api::auth::Operator;
use crate::api::error::ApiResult;
use crate::clock::rfc3339;
use crate::state::AppState;

/// The archive's format; a restore refuses others.
const FORMAT: u32 = 1;
const MANIFEST: &str = "nubo-backup.json";
const VOLUMES: &str = "volumes";
const VOLUME_CHUNKS: &str = "volume-chunks";
const PRIVATE_IMAGES: &str = "private-images";

/// What `nubo-backup.json` says.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    region: String,
    taken_at: String,
    /// `sqlite` or `postgres`.
    engine: String,
    /// The data dir the backup was taken of (private images name files in it).
    data_dir: PathBuf,
    /// How many migrations its store has had.
    migrations: usize,
    nubod: String,
}

/// What `volumes/<id>.json` says of a volume.
#[derive(Debug, Serialize, Deserialize)]
struct VolumeCopy {
    volume_id: String,
    /// The name of the host that holds it, and its driver.
    host: String,
    driver: String,
    size_bytes: u64,
    chunk_size: u64,
    /// `(position, hash)` of each chunk that is not all zeros.
    chunks: Vec<(u64, String)>,
}

fn chunk_name(hash: &str) -> String {
    format!("{VOLUME_CHUNKS}/{}/{hash}", &hash[..2])
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_backup))
}

/// Streams a consistent backup of the region as a tar archive, while it
/// serves (operator only). Restore it with `nubod restore --from FILE` into a
/// new data dir; see docs/operating.md. A failure cuts the stream short, so
/// that no partial archive passes for a whole one.
#[utoipa::path(get, path = "/v1/admin/backup", tag = "admin", operation_id = "admin_backup",
    responses((status = 200, description = "The region as a tar archive",
               content_type = "application/x-tar", body = Vec<u8>),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("operator" = [])))]
async fn admin_backup(State(state): State<AppState>, _: Operator) -> ApiResult<Response> {
    let name = format!("{}-backup.tar", state.config.region);
    let (archive, stream) = Archive::new();
    let archive = Arc::new(archive);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match write(&state, &archive).await {
            Ok(()) => tracing::info!(seconds = started.elapsed().as_secs_f64(), "backup written"),
            Err(e) => {
                tracing::error!(error = %e, "backup failed");
                archive.fail(std::io::Error::other(e)).await;
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_stream(stream))
        .map_err(crate::api::error::ApiError::internal)
}

/// Writes the whole backup into `archive`.
async fn write(state: &AppState, archive: &Arc<Archive>) -> Result<(), String> {
    let data_dir = &state.config.data_dir;
    // From here until the archive is done, nothing the store's copy lists
    // goes away.
    let _volume_files_stay = state.volume_files.write().await;
    let _chunks_stay = state.chunk_gc.read().await;
    let _objects_stay = state.objects().hold_files();
    if let Err(e) = state.objects().record_usage().await {
        tracing::warn!(error = %e, "request counts of the last seconds are not in the backup");
    }
    let scratch = Scratch::new(data_dir)?;
    let taken_at = state.clock.now_micros();
    let store = store_copy::take(&state.store, &state.config.database_url, &scratch.0).await?;

    let manifest = Manifest {
        format: FORMAT,
        region: state.config.region.clone(),
        taken_at: rfc3339(taken_at),
        engine: state.store.engine().name().into(),
        data_dir: data_dir.clone(),
        migrations: nubo_store::migrations::COUNT,
        nubod: env!("CARGO_PKG_VERSION").into(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    let add = |name: String, path: PathBuf| async move {
        archive
            .file(&name, &path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    archive
        .bytes(MANIFEST, &json)
        .await
        .map_err(|e| e.to_string())?;
    add(
        store_copy::archive_name(state.store.engine()).into(),
        store.clone(),
    )
    .await?;
    for name in ["secrets.key", "operator.token"] {
        add(name.into(), data_dir.join(name)).await?;
    }
    copy_volumes(state, archive, taken_at).await?;
    let mut dirs: Vec<PathBuf> = state
        .objects()
        .durable_dirs()
        .iter()
        .map(|d| d.to_path_buf())
        .collect();
    dirs.push(data_dir.join(PRIVATE_IMAGES));
    if state.config.images_dir.starts_with(data_dir) {
        dirs.push(state.config.images_dir.clone());
    }
    for dir in dirs {
        for path in files_under(&dir)? {
            let name = path
                .strip_prefix(data_dir)
                .map_err(|_| format!("{} is outside the data dir", path.display()))?
                .to_string_lossy()
                .into_owned();
            add(name, path).await?;
        }
    }
    archive.finish().await.map_err(|e| e.to_string())
}

/// Adds every volume the store's copy (taken at `taken_at`) has a file of.
async fn copy_volumes(
    state: &AppState,
    archive: &Arc<Archive>,
    taken_at: i64,
) -> Result<(), String> {
    let rows = {
        let mut c = state.store.conn().await.map_err(|e| e.to_string())?;
        volumes::with_files(&mut c, taken_at)
            .await
            .map_err(|e| e.to_string())?
    };
    let chunks: Arc<dyn ChunkStore> = Arc::new(ArchiveChunks {
        archive: archive.clone(),
        added: Mutex::default(),
    });
    for v in rows {
        let host_id = v.host_id.as_deref().unwrap_or_default();
        let agent = state.fleet.agent(host_id).ok_or_else(|| {
            format!(
                "volume {}: its host {host_id} is not one this nubod drives",
                v.id
            )
        })?;
        let copied = agent
            .snapshot_volume(&v.id, v.instance_id.as_deref(), chunks.clone())
            .await;
        let manifest = match copied {
            Ok(m) => m,
            // Deleted after the store was copied, before this backup held
            // deletions: the restored region finishes deleting it.
            Err(_) if v.state == volumes::DELETING => continue,
            Err(e) => return Err(format!("volume {}: {e}", v.id)),
        };
        let copy = VolumeCopy {
            volume_id: v.id.clone(),
            host: agent.name().to_string(),
            driver: agent.driver().to_string(),
            size_bytes: manifest.size_bytes,
            chunk_size: manifest.chunk_size,
            chunks: manifest.chunks,
        };
        let json = serde_json::to_vec(&copy).map_err(|e| e.to_string())?;
        archive
            .bytes(&format!("{VOLUMES}/{}.json", v.id), &json)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Volume chunks go straight into the archive, each once.
struct ArchiveChunks {
    archive: Arc<Archive>,
    added: Mutex<std::collections::HashSet<String>>,
}

impl ChunkStore for ArchiveChunks {
    fn contains<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { Ok(self.added.lock().unwrap().contains(hash)) })
    }

    fn put<'a>(&'a self, hash: &'a str, data: Bytes) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if !self.added.lock().unwrap().insert(hash.to_string()) {
                return Ok(());
            }
            self.archive
                .bytes(&chunk_name(hash), &data)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Bytes, String>> {
        Box::pin(async move { Err(format!("chunk {hash}: a backup only writes chunks")) })
    }
}

/// Every file under `dir` (none if it does not exist), in a stable order;
/// files being written (`*.partial`) are left out.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            let path = entry.path();
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() && path.extension().is_none_or(|x| x != "partial") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A folder in the data dir for the store's copy, removed when done. One
/// that a nubod which stopped mid-backup left behind goes too.
struct Scratch(PathBuf);

const SCRATCH: &str = "backup-scratch-";

impl Scratch {
    fn new(data_dir: &Path) -> Result<Scratch, String> {
        let mine = format!("{SCRATCH}{}-", std::process::id());
        for entry in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(SCRATCH) && !name.starts_with(&mine) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = data_dir.join(format!("{mine}{:016x}", nubo_store::ids::random_u64()));
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
