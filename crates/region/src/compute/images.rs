//! Images: the public ones this region offers, and their API.

use axum::extract::State;
use nubo_api::compute::{Image, ImageVisibility};
use nubo_api::error::ErrorBody;
use nubo_api::page::{Page, PageParams};
use nubo_store::images::{self, ImageRow};
use nubo_store::{Store, ids};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Path, Query};
use crate::api::page;
use crate::clock::{Clock, rfc3339};
use crate::config::{Config, Hypervisor};
use crate::state::AppState;

/// Registers the public images the configured hosts can boot.
pub async fn register_public(
    config: &Config,
    store: &Store,
    clock: &Clock,
) -> nubo_store::Result<()> {
    let images: &[(&str, &str, &str)] = match config.hypervisor {
        Hypervisor::Sim => &[(
            "nubo-micro",
            "Minimal Linux (busybox) that runs its user-data as a script; simulated hosts",
            r#"{"driver":"sim"}"#,
        )],
    };
    let at = clock.now_micros();
    let mut tx = store.begin().await?;
    for (name, description, spec) in images {
        images::upsert_public(&mut tx, &ids::new("img"), name, description, spec, at).await?;
    }
    tx.commit().await
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
