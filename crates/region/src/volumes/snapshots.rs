//! Snapshots: point-in-time copies of volumes, taken while they are in use,
//! kept as chunks in the region's object storage so that they outlive the
//! volume and its host.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::page::Page;
use nubo_api::volumes::{CreateSnapshotRequest, Snapshot, SnapshotListParams};
use nubo_store::snapshots::{self as store, SnapshotRow};
use nubo_store::{Conn, ids, volumes};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{snapshot_view, tags_json, validate_tags};
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path, Query};
use crate::api::page;
use crate::state::AppState;

const MAX_DESCRIPTION: usize = 256;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(snapshot_list, snapshot_create))
        .routes(routes!(snapshot_show, snapshot_delete))
}

/// A snapshot of the caller, or 404.
pub async fn find(c: &mut Conn, caller: &Caller, id: &str) -> ApiResult<SnapshotRow> {
    if !ids::is_valid("snap", id) {
        return Err(ApiError::not_found("snapshot", id));
    }
    store::get(c, &caller.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("snapshot", id))
}

/// Lists the account's snapshots, of one volume if asked.
#[utoipa::path(get, path = "/v1/snapshots", tag = "volumes", operation_id = "snapshot_list",
    params(SnapshotListParams),
    responses((status = 200, body = Page<Snapshot>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn snapshot_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<SnapshotListParams>,
) -> ApiResult<axum::Json<Page<Snapshot>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut c = state.store.conn().await?;
    let rows = store::list(&mut c, &caller.account_id, p.volume_id.as_deref(), &q).await?;
    let region = &state.config.region;
    Ok(axum::Json(page::page(rows, |s| snapshot_view(s, region))))
}

/// Takes a snapshot of a volume, attached or not. It copies the volume as it
/// is when its host starts the copy, moments after this call (crash
/// consistent: what the guest had written by then, as after a power cut), and
/// is `completed` once the copy is in object storage.
#[utoipa::path(post, path = "/v1/snapshots", tag = "volumes", operation_id = "snapshot_create",
    request_body = CreateSnapshotRequest,
    responses((status = 202, body = Snapshot),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn snapshot_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateSnapshotRequest>,
) -> ApiResult<(StatusCode, axum::Json<Snapshot>)> {
    let description = req.description.clone().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "description must be at most {MAX_DESCRIPTION} characters without control characters"
        )));
    }
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let mut tx = state.store.begin().await?;
    let v = super::manage::find(&mut tx, &caller, &req.volume_id).await?;
    if v.state != volumes::AVAILABLE && v.state != volumes::IN_USE {
        return Err(ApiError::invalid_state(format!(
            "volume {} is {}; snapshots are taken of available or in-use volumes",
            v.id, v.state
        )));
    }
    let at = state.clock.now_micros();
    let row = SnapshotRow {
        id: ids::new("snap"),
        account_id: caller.account_id.clone(),
        volume_id: v.id.clone(),
        volume_size_gib: v.size_gib,
        description,
        state: store::PENDING.into(),
        state_reason: None,
        chunk_size: nubo_host::volumes::CHUNK_SIZE as i64,
        stored_bytes: 0,
        tags: tags_json(&tags),
        created_at: at,
        state_changed_at: at,
        version: 0,
        progress: None,
    };
    store::insert(&mut tx, &row).await?;
    tx.commit().await?;
    state.volumes.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(snapshot_view(row, &state.config.region)),
    ))
}

/// Shows one snapshot.
#[utoipa::path(get, path = "/v1/snapshots/{snapshot_id}", tag = "volumes",
    operation_id = "snapshot_show",
    params(("snapshot_id" = String, Path, description = "Snapshot id")),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn snapshot_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(snapshot_id): Path<String>,
) -> ApiResult<axum::Json<Snapshot>> {
    let mut c = state.store.conn().await?;
    let s = find(&mut c, &caller, &snapshot_id).await?;
    Ok(axum::Json(snapshot_view(s, &state.config.region)))
}

/// Deletes a snapshot. Its chunks that no other snapshot uses are freed;
/// volumes restored from it keep their data.
#[utoipa::path(delete, path = "/v1/snapshots/{snapshot_id}", tag = "volumes",
    operation_id = "snapshot_delete",
    params(("snapshot_id" = String, Path, description = "Snapshot id")),
    responses((status = 202, body = Snapshot), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn snapshot_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(snapshot_id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<Snapshot>)> {
    let mut tx = state.store.begin().await?;
    let s = find(&mut tx, &caller, &snapshot_id).await?;
    if s.state == store::PENDING {
        return Err(ApiError::invalid_state(format!(
            "snapshot {} is being taken; delete it when it completes",
            s.id
        )));
    }
    if s.state == store::DELETING {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(snapshot_view(s, &state.config.region)),
        ));
    }
    let next = SnapshotRow {
        state: store::DELETING.into(),
        state_changed_at: state.clock.now_micros(),
        ..s.clone()
    };
    let next = store::update(&mut tx, &s, next)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the snapshot changed; retry"))?;
    tx.commit().await?;
    state.volumes.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(snapshot_view(next, &state.config.region)),
    ))
}
