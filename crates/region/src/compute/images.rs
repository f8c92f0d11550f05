//! Images: the public ones this region offers, and their API.

use axum::extract::State;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt;
use nubo_api::compute::{
    DiskFormat, Image, ImageFile, ImagePart, ImageState, ImageVisibility, RegisterImageRequest,
};
use nubo_api::error::ErrorBody;
use nubo_api::error::ErrorCode;
use nubo_api::page::{Page, PageParams};
use nubo_store::images::{self, ImageRow};
use nubo_store::{Store, ids};
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path, Query};
use crate::api::page;
use crate::clock::{Clock, rfc3339};
use crate::config::{Config, Hypervisor};
use crate::state::AppState;

/// An image folder's `image.json`: what the image is and how it boots.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    description: String,
    kernel: String,
    initrd: Option<String>,
    #[serde(default)]
    cmdline: String,
    ready_marker: String,
    /// A root disk, which each instance boots a copy-on-write overlay of.
    disk: Option<String>,
    /// `raw` or `qcow2`.
    disk_format: Option<String>,
}

/// Registers the public images the configured hosts can boot: for QEMU, every
/// folder of the images dir with an `image.json`; for simulated hosts, a stand-in.
pub async fn register_public(
    config: &Config,
    store: &Store,
    clock: &Clock,
) -> nubo_store::Result<()> {
    let images = match config.hypervisor {
        Hypervisor::Sim => vec![(
            "nubo-micro".to_string(),
            "Minimal Linux (busybox) that runs its user-data as a script; simulated hosts"
                .to_string(),
            json!({ "driver": "sim" }).to_string(),
        )],
        Hypervisor::Qemu => image_folders(&config.images_dir),
    };
    if images.is_empty() {
        tracing::warn!(
            dir = %config.images_dir.display(),
            "no images to offer; build them with `cargo xtask image`"
        );
    }
    let at = clock.now_micros();
    let mut tx = store.begin().await?;
    for (name, description, spec) in &images {
        images::upsert_public(&mut tx, &ids::new("img"), name, description, spec, at).await?;
        tracing::info!(image = name, "public image registered");
    }
    tx.commit().await
}

/// (name, description, boot spec) of each image folder under `dir`.
fn image_folders(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let folder = entry.path();
        let manifest_path = folder.join("image.json");
        let Ok(text) = std::fs::read_to_string(&manifest_path) else {
            continue;
        };
        let m: Manifest = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(path = %manifest_path.display(), error = %e, "image skipped");
                continue;
            }
        };
        let folder = std::path::absolute(&folder).unwrap_or(folder);
        let disk = match (&m.disk, m.disk_format.as_deref()) {
            (None, None) => None,
            (Some(disk), Some(format @ ("raw" | "qcow2"))) => {
                Some(json!({ "path": folder.join(disk), "format": format }))
            }
            _ => {
                tracing::warn!(
                    path = %manifest_path.display(),
                    "image skipped: a disk needs a disk_format of raw or qcow2"
                );
                continue;
            }
        };
        let spec = json!({
            "driver": "qemu",
            "kernel": folder.join(&m.kernel),
            "initrd": m.initrd.map(|i| folder.join(i)),
            "cmdline": m.cmdline,
            "ready_marker": m.ready_marker,
            "disk": disk,
        });
        found.push((m.name, m.description, spec.to_string()));
    }
    found.sort();
    found
}

pub fn view(i: ImageRow) -> Image {
    Image {
        visibility: if i.visibility == images::PUBLIC {
            ImageVisibility::Public
        } else {
            ImageVisibility::Private
        },
        state: if i.state == images::PENDING {
            ImageState::Pending
        } else {
            ImageState::Available
        },
        created_at: rfc3339(i.created_at),
        id: i.id,
        name: i.name,
        description: i.description,
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(image_list, image_register))
        .routes(routes!(image_show, image_delete))
        .routes(routes!(image_upload))
        .routes(routes!(image_complete))
}

/// Lists the images the account may launch: public ones and its own.
#[utoipa::path(get, path = "/v1/images", tag = "compute", operation_id = "image_list",
    params(PageParams),
    responses((status = 200, body = Page<Image>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn image_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Page<Image>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut c = state.store.conn().await?;
    let rows = images::list_visible(&mut c, &caller.account_id, &q).await?;
    Ok(axum::Json(page::page(rows, view)))
}

/// Shows an image by id (or a public image by name).
#[utoipa::path(get, path = "/v1/images/{image_id}", tag = "compute", operation_id = "image_show",
    params(("image_id" = String, Path, description = "Image id, or a public image's name")),
    responses((status = 200, body = Image), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn image_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> ApiResult<axum::Json<Image>> {
    let mut c = state.store.conn().await?;
    images::visible(&mut c, &caller.account_id, &image_id)
        .await?
        .map(|i| axum::Json(view(i)))
        .ok_or_else(|| ApiError::not_found("image", &image_id))
}

/// Largest upload of each part.
fn part_limit(part: ImagePart) -> u64 {
    const MIB: u64 = 1024 * 1024;
    match part {
        ImagePart::Kernel => 128 * MIB,
        ImagePart::Initrd => 1024 * MIB,
        ImagePart::Disk => 64 * 1024 * MIB,
    }
}

/// Where a private image's files live.
fn files_dir(config: &Config, image_id: &str) -> PathBuf {
    config.data_dir.join("private-images").join(image_id)
}

/// What the owner asked for at registration, kept in the spec until completion.
#[derive(Debug, Serialize, Deserialize)]
struct Requested {
    cmdline: Option<String>,
    ready_marker: Option<String>,
    disk_format: Option<DiskFormat>,
}

fn valid_image_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An image of the caller's own, by id; anything else (another account's, a
/// public one) answers like a missing image.
async fn own_image(state: &AppState, caller: &Caller, image_id: &str) -> ApiResult<ImageRow> {
    let mut c = state.store.conn().await?;
    images::visible(&mut c, &caller.account_id, image_id)
        .await?
        .filter(|i| i.account_id.as_deref() == Some(caller.account_id.as_str()) && i.id == image_id)
        .ok_or_else(|| ApiError::not_found("image", image_id))
}

/// Registers a private image: upload its files next (`PUT …/files/{part}`), then
/// complete it.
#[utoipa::path(post, path = "/v1/images", tag = "compute", operation_id = "image_register",
    request_body = RegisterImageRequest,
    responses((status = 201, body = Image),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn image_register(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<RegisterImageRequest>,
) -> ApiResult<(StatusCode, axum::Json<Image>)> {
    if !valid_image_name(&req.name) {
        return Err(ApiError::invalid(
            "an image name is 1 to 128 letters, digits, '.', '_' or '-'",
        ));
    }
    for (what, text, max) in [
        ("description", &req.description, 1024),
        ("cmdline", &req.cmdline, 1024),
        ("ready_marker", &req.ready_marker, 128),
    ] {
        if text
            .as_ref()
            .is_some_and(|t| t.chars().count() > max || t.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(format!(
                "{what} is longer than {max} characters or has control characters"
            )));
        }
    }
    let requested = Requested {
        cmdline: req.cmdline,
        ready_marker: req.ready_marker.filter(|m| !m.is_empty()),
        disk_format: req.disk_format,
    };
    let row = ImageRow {
        id: ids::new("img"),
        account_id: Some(caller.account_id.clone()),
        name: req.name.clone(),
        visibility: images::PRIVATE.into(),
        description: req.description.unwrap_or_default(),
        spec: serde_json::to_string(&requested).map_err(ApiError::internal)?,
        state: images::PENDING.into(),
        created_at: state.clock.now_micros(),
    };
    let mut tx = state.store.begin().await?;
    match images::insert(&mut tx, &row).await {
        Err(nubo_store::StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("the account already has an image named {:?}", req.name),
            ));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(view(row))))
}

/// The bytes of an image part, as they are: the schema of an upload's body.
struct PartBytes;

impl utoipa::PartialSchema for PartBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .min_length(Some(1))
            .into()
    }
}

impl utoipa::ToSchema for PartBytes {}

/// Uploads one part of a pending image (`application/octet-stream`; sign with
/// `x-amz-content-sha256: UNSIGNED-PAYLOAD`, which streams). Uploading a part
/// again replaces it.
#[utoipa::path(put, path = "/v1/images/{image_id}/files/{part}", tag = "compute",
    operation_id = "image_upload",
    params(("image_id" = String, Path, description = "Image id"),
           ("part" = ImagePart, Path, description = "kernel, initrd or disk")),
    request_body(content = PartBytes, content_type = "application/octet-stream"),
    responses((status = 200, body = ImageFile), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody,
               description = "The part is larger than its limit (`PayloadTooLarge`)")),
    security(("sigv4" = []), ("bearer" = [])))]
async fn image_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path((image_id, part)): Path<(String, String)>,
    body: Body,
) -> ApiResult<axum::Json<ImageFile>> {
    let image = own_image(&state, &caller, &image_id).await?;
    let part = ImagePart::parse(&part)
        .ok_or_else(|| ApiError::invalid("part must be kernel, initrd or disk"))?;
    if image.state != images::PENDING {
        return Err(ApiError::invalid_state(format!(
            "image {image_id} is {}; only pending images take uploads",
            image.state
        )));
    }
    let dir = files_dir(&state.config, &image.id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    let target = dir.join(part.as_str());
    let partial = dir.join(format!("{}.partial", part.as_str()));
    let limit = part_limit(part);
    let written = receive(body, &partial, limit).await;
    let (bytes, sha256) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&partial, &target)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(ImageFile {
        part,
        bytes,
        sha256,
    }))
}

/// Streams a body into `path` (fsynced), at most `limit` bytes.
async fn receive(body: Body, path: &std::path::Path, limit: u64) -> ApiResult<(u64, String)> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the upload broke off: {e}"),
            )
        })?;
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("this part may be at most {limit} bytes"),
            ));
        }
        hash.update(&chunk);
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    if bytes == 0 {
        return Err(ApiError::invalid("the part is empty"));
    }
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok((bytes, hex::encode(hash.finalize())))
}

/// Checks a pending image's files and makes it available to launch.
#[utoipa::path(post, path = "/v1/images/{image_id}/complete", tag = "compute",
    operation_id = "image_complete",
    params(("image_id" = String, Path, description = "Image id")),
    responses((status = 200, body = Image),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn image_complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> ApiResult<axum::Json<Image>> {
    let image = own_image(&state, &caller, &image_id).await?;
    if image.state != images::PENDING {
        return Ok(axum::Json(view(image)));
    }
    let requested: Requested = serde_json::from_str(&image.spec).map_err(ApiError::internal)?;
    let dir = files_dir(&state.config, &image.id);
    let kernel = dir.join("kernel");
    if !kernel.is_file() {
        return Err(ApiError::invalid_state(
            "upload the kernel (part `kernel`) first",
        ));
    }
    let initrd = dir.join("initrd");
    let disk = match requested.disk_format {
        Some(format) => {
            let path = dir.join("disk");
            if !path.is_file() {
                return Err(ApiError::invalid_state(
                    "this image has a root disk: upload it (part `disk`) first",
                ));
            }
            check_disk(&path, format).await?;
            Some(json!({ "path": path, "format": format.as_str() }))
        }
        None => None,
    };
    let spec = json!({
        "driver": "qemu",
        "kernel": kernel,
        "initrd": initrd.is_file().then_some(initrd),
        "cmdline": requested.cmdline.unwrap_or_else(|| "console=ttyS0".into()),
        "ready_marker": requested.ready_marker,
        "disk": disk,
    });
    let mut tx = state.store.begin().await?;
    let done = images::set_state(
        &mut tx,
        &image,
        images::AVAILABLE,
        &spec.to_string(),
        state.clock.now_micros(),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(view(done)))
}

/// Refuses a disk that is not in the declared format, or that points at a
/// backing file (which would let an image read files of the host).
async fn check_disk(path: &std::path::Path, format: DiskFormat) -> ApiResult<()> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-f", format.as_str()])
        .arg(path)
        .output()
        .await
        .map_err(ApiError::internal)?;
    if !out.status.success() {
        return Err(ApiError::invalid(format!(
            "the disk is not a valid {} image",
            format.as_str()
        )));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(ApiError::internal)?;
    if info.get("backing-filename").is_some() || info.get("full-backing-filename").is_some() {
        return Err(ApiError::invalid(
            "a disk image may not have a backing file",
        ));
    }
    Ok(())
}

/// Deletes a private image and its files; refused while instances use it.
#[utoipa::path(delete, path = "/v1/images/{image_id}", tag = "compute",
    operation_id = "image_delete",
    params(("image_id" = String, Path, description = "Image id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn image_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> ApiResult<StatusCode> {
    let image = own_image(&state, &caller, &image_id).await?;
    let mut tx = state.store.begin().await?;
    if images::in_use(&mut tx, &image.id).await? {
        return Err(ApiError::invalid_state(format!(
            "instances or volumes still use image {image_id}; terminate and delete them first"
        )));
    }
    let spec = image.spec.clone();
    images::set_state(
        &mut tx,
        &image,
        images::DELETED,
        &spec,
        state.clock.now_micros(),
    )
    .await?;
    tx.commit().await?;
    let _ = tokio::fs::remove_dir_all(files_dir(&state.config, &image.id)).await;
    Ok(StatusCode::NO_CONTENT)
}
