//! Images: the public ones this region offers, and their API.

use axum::extract::State;
use nubo_api::compute::{Image, ImageVisibility};
use nubo_api::error::ErrorBody;
use nubo_api::page::{Page, PageParams};
use nubo_store::images::{self, ImageRow};
use nubo_store::{Store, ids};
use serde::Deserialize;
use serde_json::json;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Path, Query};
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
        let spec = json!({
            "driver": "qemu",
            "kernel": folder.join(&m.kernel),
            "initrd": m.initrd.map(|i| folder.join(i)),
            "cmdline": m.cmdline,
            "ready_marker": m.ready_marker,
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
        created_at: rfc3339(i.created_at),
        id: i.id,
        name: i.name,
        description: i.description,
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(image_list))
        .routes(routes!(image_show))
}

/// Lists the images the account may launch: public ones and its own.
#[utoipa::path(get, path = "/v1/images", tag = "compute", operation_id = "image_list",
    params(PageParams),
    responses((status = 200, body = Page<Image>), (status = 401, body = ErrorBody)),
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
