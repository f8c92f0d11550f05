//! Creating, listing, changing and deleting volumes.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::page::{Page, PageParams};
use nubo_api::quotas::QuotaResource;
use nubo_api::volumes::{CreateVolumeRequest, UpdateVolumeRequest, Volume};
use nubo_store::volumes::{self as store, VolumeRow};
use nubo_store::{hosts, ids, quotas, snapshots};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{tags_json, validate_labels, validate_size, view};
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path, Query};
use crate::api::page;
use crate::compute::scheduler;
use crate::quotas as quota;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(volume_list, volume_create))
        .routes(routes!(volume_show, volume_update, volume_delete))
}

/// A volume of the caller, or 404.
pub async fn find(c: &mut nubo_store::Conn, caller: &Caller, id: &str) -> ApiResult<VolumeRow> {
    if !ids::is_valid("vol", id) {
        return Err(ApiError::not_found("volume", id));
    }
    store::get(c, &caller.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("volume", id))
}

/// Writes a volume's change in `tx`, commits, and wakes the reconciler; the
/// volume as its owner now sees it.
pub async fn commit(
    state: &AppState,
    mut tx: nubo_store::Tx,
    prev: &VolumeRow,
    next: VolumeRow,
) -> ApiResult<Volume> {
    let next = store::update(&mut tx, prev, next)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the volume changed; retry"))?;
    tx.commit().await?;
    state.volumes.notify_one();
    Ok(view(next, &state.config.region))
}

/// Refuses to let a VM open a volume whose snapshot is being taken while no
/// VM has it: the host copies its file as it stands.
pub async fn not_being_copied(c: &mut nubo_store::Conn, v: &VolumeRow) -> ApiResult<()> {
    match snapshots::pending_of_volume(c, &v.id).await?.first() {
        Some(s) => Err(ApiError::invalid_state(format!(
            "snapshot {} of volume {} is being taken; try again when it completes",
            s.id, v.id
        ))),
        None => Ok(()),
    }
}

/// Lists the account's volumes.
#[utoipa::path(get, path = "/v1/volumes", tag = "volumes", operation_id = "volume_list",
    params(PageParams),
    responses((status = 200, body = Page<Volume>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn volume_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Page<Volume>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut c = state.store.conn().await?;
    let rows = store::list(&mut c, &caller.account_id, &q).await?;
    let region = &state.config.region;
    Ok(axum::Json(page::page(rows, |v| view(v, region))))
}

/// Creates a volume, blank or restored from a snapshot. Answers at once
/// (`creating`); it becomes `available` when its host has made it.
#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", operation_id = "volume_create",
    request_body = CreateVolumeRequest,
    responses((status = 202, body = Volume),
              (status = 403, body = ErrorBody, description = "A quota refuses it (`QuotaExceeded`)"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 507, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn volume_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateVolumeRequest>,
) -> ApiResult<(StatusCode, axum::Json<Volume>)> {
    validate_labels(req.name.as_ref(), req.tags.as_ref())?;
    let tags = req.tags.clone().unwrap_or_default();
    let mut tx = state.store.begin().await?;
    let snapshot = match &req.snapshot_id {
        Some(id) => Some(super::snapshots::find(&mut tx, &caller, id).await?),
        None => None,
    };
    let size = match (&snapshot, req.size_gib) {
        (Some(s), None) => s.volume_size_gib as u64,
        (Some(s), Some(size)) if size < s.volume_size_gib as u64 => {
            return Err(ApiError::invalid(format!(
                "size_gib {size} is smaller than snapshot {}'s {} GiB",
                s.id, s.volume_size_gib
            )));
        }
        (_, Some(size)) => size,
        (None, None) => return Err(ApiError::invalid("size_gib is required")),
    };
    validate_size(size)?;
    if let Some(s) = &snapshot
        && s.state != snapshots::COMPLETED
    {
        return Err(ApiError::invalid_state(format!(
            "snapshot {} is {}; only completed snapshots restore",
            s.id, s.state
        )));
    }
    let what = format!("a volume of {size} GiB");
    let cfg = &state.config;
    quota::reserve(
        &mut tx,
        cfg,
        &caller.account_id,
        QuotaResource::VolumeGib,
        size,
        &what,
    )
    .await?;
    let host_id = scheduler::place_volume(&mut tx, cfg, size as i64, &what).await?;
    let at = state.clock.now_micros();
    let row = VolumeRow {
        id: ids::new("vol"),
        account_id: caller.account_id.clone(),
        name: req.name.clone(),
        size_gib: size as i64,
        host_id: Some(host_id),
        state: store::CREATING.into(),
        state_reason: None,
        image_id: None,
        snapshot_id: snapshot.as_ref().map(|s| s.id.clone()),
        instance_id: None,
        attach_state: None,
        slot: None,
        is_root: false,
        delete_on_termination: false,
        force_detach: false,
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
        axum::Json(view(row, &state.config.region)),
    ))
}

/// Shows one volume.
#[utoipa::path(get, path = "/v1/volumes/{volume_id}", tag = "volumes",
    operation_id = "volume_show",
    params(("volume_id" = String, Path, description = "Volume id")),
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn volume_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(volume_id): Path<String>,
) -> ApiResult<axum::Json<Volume>> {
    let mut c = state.store.conn().await?;
    let v = find(&mut c, &caller, &volume_id).await?;
    Ok(axum::Json(view(v, &state.config.region)))
}

/// Renames, retags or grows a volume. Growing is offline: the volume must be
/// `available`; it is `resizing` until its host has grown the file (the
/// guest grows its file system).
#[utoipa::path(patch, path = "/v1/volumes/{volume_id}", tag = "volumes",
    operation_id = "volume_update",
    params(("volume_id" = String, Path, description = "Volume id")),
    request_body = UpdateVolumeRequest,
    responses((status = 200, body = Volume),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 507, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn volume_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(volume_id): Path<String>,
    Json(req): Json<UpdateVolumeRequest>,
) -> ApiResult<axum::Json<Volume>> {
    validate_labels(req.name.as_ref(), req.tags.as_ref())?;
    let mut tx = state.store.begin().await?;
    let v = find(&mut tx, &caller, &volume_id).await?;
    let mut next = v.clone();
    if let Some(name) = &req.name {
        next.name = Some(name.clone());
    }
    if let Some(tags) = &req.tags {
        next.tags = tags_json(tags);
    }
    if let Some(delete) = req.delete_on_termination {
        next.delete_on_termination = delete;
    }
    if let Some(size) = req.size_gib.filter(|s| *s != v.size_gib as u64) {
        validate_size(size)?;
        if size < v.size_gib as u64 {
            return Err(ApiError::invalid(format!(
                "volume {} has {} GiB; volumes grow and never shrink",
                v.id, v.size_gib
            )));
        }
        if v.state != store::AVAILABLE {
            return Err(ApiError::invalid_state(format!(
                "volume {} is {}; detach it first: volumes grow while available",
                v.id, v.state
            )));
        }
        let more = size as i64 - v.size_gib;
        let what = format!("growing {} by {more} GiB", v.id);
        let cfg = &state.config;
        quota::reserve(
            &mut tx,
            cfg,
            &caller.account_id,
            QuotaResource::VolumeGib,
            more as u64,
            &what,
        )
        .await?;
        let host = v.host_id.as_deref().unwrap_or_default();
        if !hosts::allocate_disk(&mut tx, host, more).await? {
            return Err(ApiError::new(
                ErrorCode::InsufficientCapacity,
                format!("the host of {} has no room for {what}", v.id),
            ));
        }
        next.size_gib = size as i64;
        next.state = store::RESIZING.into();
        next.state_changed_at = state.clock.now_micros();
    }
    Ok(axum::Json(commit(&state, tx, &v, next).await?))
}

/// Deletes a volume; refused while it is attached or a snapshot of it is
/// being taken. Its snapshots stay.
#[utoipa::path(delete, path = "/v1/volumes/{volume_id}", tag = "volumes",
    operation_id = "volume_delete",
    params(("volume_id" = String, Path, description = "Volume id")),
    responses((status = 202, body = Volume), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn volume_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(volume_id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<Volume>)> {
    let mut tx = state.store.begin().await?;
    let v = find(&mut tx, &caller, &volume_id).await?;
    if v.state == store::DELETING {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(view(v, &state.config.region)),
        ));
    }
    if let Some(instance) = &v.instance_id {
        return Err(ApiError::invalid_state(format!(
            "volume {} is attached to {instance}; detach it first",
            v.id
        )));
    }
    if v.state != store::AVAILABLE && v.state != store::ERROR {
        return Err(ApiError::invalid_state(format!(
            "volume {} is {}; wait until it is available",
            v.id, v.state
        )));
    }
    if let Some(s) = snapshots::pending_of_volume(&mut tx, &v.id).await?.first() {
        return Err(ApiError::invalid_state(format!(
            "snapshot {} of volume {} is being taken; delete the volume when it completes",
            s.id, v.id
        )));
    }
    let next = VolumeRow {
        state: store::DELETING.into(),
        state_reason: None,
        state_changed_at: state.clock.now_micros(),
        ..v.clone()
    };
    let volume = commit(&state, tx, &v, next).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(volume)))
}

/// Deletes every volume and snapshot of a closing account: volumes attached
/// to its instances (which are terminating) go with them.
pub async fn delete_all(
    c: &mut nubo_store::Conn,
    account_id: &str,
    at: i64,
) -> nubo_store::Result<()> {
    for v in store::live_of_account(&mut *c, account_id).await? {
        let mut next = v.clone();
        if v.instance_id.is_some() {
            next.delete_on_termination = true;
        } else if v.state != store::DELETING {
            next.state = store::DELETING.into();
            next.state_changed_at = at;
        }
        store::update(&mut *c, &v, next).await?;
    }
    for s in snapshots::live_of_account(&mut *c, account_id).await? {
        if s.state != snapshots::DELETING {
            let next = snapshots::SnapshotRow {
                state: snapshots::DELETING.into(),
                state_changed_at: at,
                ..s.clone()
            };
            snapshots::update(&mut *c, &s, next).await?;
        }
    }
    Ok(())
}

/// Gives back what a deleted volume held: the account's quota and its host's disk.
pub async fn release(c: &mut nubo_store::Conn, v: &VolumeRow) -> nubo_store::Result<()> {
    quotas::release(
        &mut *c,
        &v.account_id,
        QuotaResource::VolumeGib.as_str(),
        v.size_gib,
    )
    .await?;
    if let Some(host) = &v.host_id {
        hosts::release_disk(c, host, v.size_gib).await?;
    }
    Ok(())
}
