//! Instances the account holds: list, show, stop, start, reboot, terminate.

use axum::extract::State;
use nubo_api::compute::{
    Instance, InstanceConsole, InstanceListParams, InstanceState, MetadataTokens,
};
use nubo_api::error::ErrorBody;
use nubo_api::page::Page;
use nubo_store::events::{self, NewEvent};
use nubo_store::instances::{self, InstanceRow};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Path, Query};
use crate::api::page;
use crate::clock::rfc3339;
use crate::compute::lifecycle;
use crate::compute::scheduler::Shape;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(instance_list))
        .routes(routes!(instance_show, instance_terminate))
        .routes(routes!(instance_stop))
        .routes(routes!(instance_start))
        .routes(routes!(instance_reboot))
        .routes(routes!(instance_console))
}

pub fn view(r: InstanceRow, region: &str) -> Instance {
    Instance {
        state: InstanceState::parse(&r.state).unwrap_or(InstanceState::Failed),
        vcpus: r.vcpus as u32,
        memory_mib: r.memory_mib as u32,
        launched_at: rfc3339(r.launched_at),
        state_changed_at: rfc3339(r.state_changed_at),
        region: region.to_string(),
        key_name: r.key_name,
        network_id: r.network_id,
        private_ip: r.private_ip,
        metadata_tokens: if r.metadata_tokens_required {
            MetadataTokens::Required
        } else {
            MetadataTokens::Optional
        },
        id: r.id,
        name: r.name,
        image_id: r.image_id,
        instance_type: r.instance_type,
        state_reason: r.state_reason,
        host_id: r.host_id,
    }
}

/// Lists the account's instances (terminated ones stay listed for an hour).
#[utoipa::path(get, path = "/v1/instances", tag = "compute", operation_id = "instance_list",
    params(InstanceListParams),
    responses((status = 200, body = Page<Instance>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<InstanceListParams>,
) -> ApiResult<axum::Json<Page<Instance>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut c = state.store.conn().await?;
    let rows = instances::list(&mut c, &caller.account_id, p.state.map(|s| s.as_str()), &q).await?;
    let region = &state.config.region;
    Ok(axum::Json(page::page(rows, |r| view(r, region))))
}

/// Shows one instance.
#[utoipa::path(get, path = "/v1/instances/{instance_id}", tag = "compute",
    operation_id = "instance_show",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<Instance>> {
    let mut c = state.store.conn().await?;
    let row = instances::get(&mut c, &caller.account_id, &instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &instance_id))?;
    Ok(axum::Json(view(row, &state.config.region)))
}

#[derive(Clone, Copy)]
enum Request {
    Stop,
    Start,
    Terminate,
}

/// Applies a user's request to an instance, re-reading it if a reconciler changed
/// it in between.
async fn apply(
    state: &AppState,
    caller: &Caller,
    id: &str,
    request: Request,
) -> ApiResult<Instance> {
    for _ in 0..8 {
        let at = state.clock.now_micros();
        let mut tx = state.store.begin().await?;
        let row = instances::get(&mut tx, &caller.account_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("instance", id))?;
        let next = match request {
            Request::Stop => lifecycle::request_stop(&mut tx, &row, at).await?,
            Request::Start => {
                match lifecycle::request_start(&mut tx, &state.config, &row, at).await {
                    Ok(next) => next,
                    Err(e) => {
                        drop(tx);
                        let shape = Shape {
                            vcpus: row.vcpus,
                            memory_mib: row.memory_mib,
                        };
                        return Err(crate::regions::room_elsewhere(&state.config, e, shape).await);
                    }
                }
            }
            Request::Terminate => lifecycle::request_terminate(&mut tx, &row, at).await?,
        };
        if let Some(next) = next {
            tx.commit().await?;
            state.reconcile.notify_one();
            return Ok(view(next, &state.config.region));
        }
    }
    Err(ApiError::new(
        nubo_api::error::ErrorCode::Unavailable,
        "the instance is changing too fast; retry",
    ))
}

/// Stops an instance: the guest shuts down and its host capacity is freed.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/stop", tag = "compute",
    operation_id = "instance_stop",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<Instance>> {
    Ok(axum::Json(
        apply(&state, &caller, &instance_id, Request::Stop).await?,
    ))
}

/// Starts a stopped (or failed) instance on a host with room.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/start", tag = "compute",
    operation_id = "instance_start",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 507, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_start(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<Instance>> {
    Ok(axum::Json(
        apply(&state, &caller, &instance_id, Request::Start).await?,
    ))
}

/// Terminates an instance; it stays listed as `terminated` for an hour.
#[utoipa::path(delete, path = "/v1/instances/{instance_id}", tag = "compute",
    operation_id = "instance_terminate",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_terminate(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<Instance>> {
    Ok(axum::Json(
        apply(&state, &caller, &instance_id, Request::Terminate).await?,
    ))
}

/// Reboots a running instance's guest in place.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/reboot", tag = "compute",
    operation_id = "instance_reboot",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_reboot(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<Instance>> {
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    let row = instances::get(&mut tx, &caller.account_id, &instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &instance_id))?;
    let agent = match (&row.host_id, row.state.as_str()) {
        (Some(host), "running") => state.fleet.agent(host).cloned(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::invalid_state(format!(
            "instance {instance_id} is {}; only running instances reboot",
            row.state
        ))
    })?;
    events::append(
        &mut tx,
        NewEvent {
            at,
            account_id: Some(&row.account_id),
            resource_type: "instance",
            resource_id: &row.id,
            action: "rebooted",
            data: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    agent
        .reboot(&row.id)
        .await
        .map_err(|e| ApiError::internal(format!("reboot {instance_id}: {e}")))?;
    Ok(axum::Json(view(row, &state.config.region)))
}

/// The most console output an answer carries.
const CONSOLE_MAX: usize = 64 * 1024;

/// The end of the instance's serial console: boot messages and what its
/// user-data printed. Empty while the instance has no VM (stopped, terminated).
#[utoipa::path(get, path = "/v1/instances/{instance_id}/console", tag = "compute",
    operation_id = "instance_console",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = InstanceConsole), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_console(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<InstanceConsole>> {
    let mut c = state.store.conn().await?;
    let row = instances::get(&mut c, &caller.account_id, &instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &instance_id))?;
    drop(c);
    let agent = row.host_id.as_deref().and_then(|h| state.fleet.agent(h));
    let bytes = match agent {
        Some(agent) => agent
            .console(&row.id, CONSOLE_MAX + 1)
            .await
            .map_err(|e| ApiError::internal(format!("console of {instance_id}: {e}")))?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let truncated = bytes.len() > CONSOLE_MAX;
    let start = bytes.len().saturating_sub(CONSOLE_MAX);
    Ok(axum::Json(InstanceConsole {
        instance_id: row.id,
        output: String::from_utf8_lossy(&bytes[start..]).into_owned(),
        truncated,
    }))
}
