//! Attaching volumes to instances and detaching them. A volume attaches to
//! instances on its own host; the instance's next start stays there.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::compute::InstanceState;
use nubo_api::error::ErrorBody;
use nubo_api::volumes::{AttachVolumeRequest, DetachVolumeRequest, Volume};
use nubo_host::qemu::command::VOLUME_SLOTS;
use nubo_store::instances;
use nubo_store::volumes::{self as store, VolumeRow};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::manage::{commit, find};
use super::view;
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(volume_attach))
        .routes(routes!(volume_detach))
}

/// Attaches a volume to an instance. A running instance gets it hot (the
/// guest sees a new disk whose serial is the volume id); a stopped one at its
/// next start. Answers at once (`attaching`).
#[utoipa::path(post, path = "/v1/volumes/{volume_id}/attach", tag = "volumes",
    operation_id = "volume_attach",
    params(("volume_id" = String, Path, description = "Volume id")),
    request_body = AttachVolumeRequest,
    responses((status = 202, body = Volume),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn volume_attach(
    State(state): State<AppState>,
    caller: Caller,
    Path(volume_id): Path<String>,
    Json(req): Json<AttachVolumeRequest>,
) -> ApiResult<(StatusCode, axum::Json<Volume>)> {
    let mut tx = state.store.begin().await?;
    let v = find(&mut tx, &caller, &volume_id).await?;
    let instance = instances::get(&mut tx, &caller.account_id, &req.instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &req.instance_id))?;
    if v.instance_id.as_deref() == Some(instance.id.as_str()) {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(view(v, &state.config.region)),
        ));
    }
    if let Some(other) = &v.instance_id {
        return Err(ApiError::invalid_state(format!(
            "volume {} is attached to {other}; detach it first",
            v.id
        )));
    }
    if v.state != store::AVAILABLE {
        return Err(ApiError::invalid_state(format!(
            "volume {} is {}; only available volumes attach",
            v.id, v.state
        )));
    }
    let live = matches!(
        InstanceState::parse(&instance.state),
        Some(
            InstanceState::Pending
                | InstanceState::Running
                | InstanceState::Stopped
                | InstanceState::Failed
        )
    );
    if !live {
        return Err(ApiError::invalid_state(format!(
            "instance {} is {}",
            instance.id, instance.state
        )));
    }
    super::manage::not_being_copied(&mut tx, &v).await?;
    let attached = store::of_instance(&mut tx, &instance.id).await?;
    // Volumes of one instance share a host: its own when it holds one, else
    // that of its other volumes.
    let home = instance
        .host_id
        .clone()
        .or_else(|| attached.iter().find_map(|a| a.host_id.clone()));
    if let Some(home) = home
        && v.host_id.as_deref() != Some(home.as_str())
    {
        return Err(ApiError::invalid_state(format!(
            "volume {} is on host {} and instance {} on host {home}; a volume attaches to \
             instances on its own host (snapshot it and restore the snapshot there)",
            v.id,
            v.host_id.as_deref().unwrap_or("-"),
            instance.id
        )));
    }
    let taken: Vec<i64> = attached.iter().filter_map(|a| a.slot).collect();
    let slot = (0..i64::from(VOLUME_SLOTS))
        .find(|s| !taken.contains(s))
        .ok_or_else(|| {
            ApiError::invalid_state(format!(
                "instance {} has {VOLUME_SLOTS} volumes attached, the most it can have",
                instance.id
            ))
        })?;
    let next = VolumeRow {
        state: store::IN_USE.into(),
        state_reason: None,
        instance_id: Some(instance.id.clone()),
        attach_state: Some(store::ATTACHING.into()),
        slot: Some(slot),
        delete_on_termination: false,
        force_detach: false,
        state_changed_at: state.clock.now_micros(),
        ..v.clone()
    };
    let volume = commit(&state, tx, &v, next).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(volume)))
}

/// Detaches a volume. The guest is asked to let go (Linux does within about
/// 6 s) and the volume stays `detaching` until it has; a guest that does not
/// within a minute keeps the volume. `force` pulls it from a guest that does
/// not let go, losing what the guest had not written.
#[utoipa::path(post, path = "/v1/volumes/{volume_id}/detach", tag = "volumes",
    operation_id = "volume_detach",
    params(("volume_id" = String, Path, description = "Volume id")),
    request_body = DetachVolumeRequest,
    responses((status = 202, body = Volume), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn volume_detach(
    State(state): State<AppState>,
    caller: Caller,
    Path(volume_id): Path<String>,
    Json(req): Json<DetachVolumeRequest>,
) -> ApiResult<(StatusCode, axum::Json<Volume>)> {
    let force = req.force;
    let mut tx = state.store.begin().await?;
    let v = find(&mut tx, &caller, &volume_id).await?;
    let Some(instance) = v.instance_id.clone() else {
        return Err(ApiError::invalid_state(format!(
            "volume {} is not attached",
            v.id
        )));
    };
    if v.is_root {
        return Err(ApiError::invalid_state(format!(
            "volume {} is the root volume of {instance}, which boots from it; it is \
             detached when the instance terminates",
            v.id
        )));
    }
    if v.attach_state.as_deref() == Some(store::DETACHING) && v.force_detach >= force {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(view(v, &state.config.region)),
        ));
    }
    let next = VolumeRow {
        attach_state: Some(store::DETACHING.into()),
        force_detach: force,
        state_reason: None,
        state_changed_at: state.clock.now_micros(),
        ..v.clone()
    };
    let volume = commit(&state, tx, &v, next).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(volume)))
}
