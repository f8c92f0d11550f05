//! Publishing an instance's TCP ports on its host's address, so that its owner
//! reaches it (SSH, a web server) before load balancers exist.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::compute::{PublishRequest, PublishedPort};
use nubo_api::error::ErrorBody;
use nubo_host::HostError;
use nubo_store::instances;
use nubo_store::networks::{self, PublishedPort as PortRow};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path};
use crate::clock::rfc3339;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(instance_ports, instance_publish))
}

fn view(p: PortRow) -> PublishedPort {
    PublishedPort {
        created_at: rfc3339(p.created_at),
        instance_id: p.instance_id,
        port: p.port as u16,
        address: p.address,
    }
}

/// Lists the instance's published ports.
#[utoipa::path(get, path = "/v1/instances/{instance_id}/ports", tag = "compute",
    operation_id = "instance_ports",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses((status = 200, body = Vec<PublishedPort>), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_ports(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
) -> ApiResult<axum::Json<Vec<PublishedPort>>> {
    let mut c = state.store.conn().await?;
    instances::get(&mut c, &caller.account_id, &instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &instance_id))?;
    let ports = networks::published(&mut c, &instance_id).await?;
    Ok(axum::Json(ports.into_iter().map(view).collect()))
}

/// Publishes a TCP port of a running instance on its host's address; the
/// answer says where to connect. Publishing a port again answers the same.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/ports", tag = "compute",
    operation_id = "instance_publish",
    params(("instance_id" = String, Path, description = "Instance id")),
    request_body = PublishRequest,
    responses((status = 201, body = PublishedPort),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<String>,
    Json(req): Json<PublishRequest>,
) -> ApiResult<(StatusCode, axum::Json<PublishedPort>)> {
    if req.port == 0 {
        return Err(ApiError::invalid("port must be between 1 and 65535"));
    }
    let mut c = state.store.conn().await?;
    let row = instances::get(&mut c, &caller.account_id, &instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &instance_id))?;
    drop(c);
    let agent = match (&row.host_id, row.state.as_str()) {
        (Some(host), "running") => state.fleet.agent(host).cloned(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::invalid_state(format!(
            "instance {instance_id} is {}; only running instances publish ports",
            row.state
        ))
    })?;
    let address = agent
        .publish(&row.id, req.port)
        .await
        .map_err(|e| match e {
            HostError::Unsupported(why) => ApiError::invalid_state(why),
            other => ApiError::internal(format!("publishing {instance_id}: {other}")),
        })?;
    let mut tx = state.store.begin().await?;
    let port = PortRow {
        instance_id: row.id.clone(),
        port: i64::from(req.port),
        address: address.to_string(),
        created_at: state.clock.now_micros(),
    };
    let port = networks::publish(&mut tx, &row.account_id, &port).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(view(port))))
}
