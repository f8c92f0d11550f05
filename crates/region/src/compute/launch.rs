//! Launching instances: validate, honour the idempotency token, take quota and
//! host capacity, record the instances as `pending`, all in one transaction;
//! the reconciler boots them.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::compute::{InstanceState, LaunchRequest, LaunchResponse, MetadataTokens};
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::quotas::QuotaResource;
use nubo_store::instances::{self, InstanceRow};
use nubo_store::{StoreError, ids, images, key_pairs, networks};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Json;
use crate::compute::catalog;
use crate::compute::instances::view;
use crate::compute::scheduler::{self, Shape};
use crate::networks::security_groups;
use crate::quotas;
use crate::state::AppState;
use crate::volumes::roots;

pub const MAX_COUNT: u32 = 100;
pub const MAX_USER_DATA: usize = 16 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(instance_launch))
}

fn validate(req: &LaunchRequest) -> ApiResult<u32> {
    let count = req.count.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::invalid(format!(
            "count must be between 1 and {MAX_COUNT}"
        )));
    }
    if let Some(name) = &req.name
        && (name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "name must be 1 to 128 characters without control characters",
        ));
    }
    if req
        .user_data
        .as_ref()
        .is_some_and(|u| u.len() > MAX_USER_DATA)
    {
        return Err(ApiError::invalid(format!(
            "user_data is larger than {MAX_USER_DATA} bytes"
        )));
    }
    if req.root_volume.is_some() && count != 1 {
        return Err(ApiError::invalid(
            "an instance that boots from an existing root_volume is launched alone (count 1)",
        ));
    }
    if req.root_volume.is_some() && req.root_volume_size_gib.is_some() {
        return Err(ApiError::invalid(
            "root_volume_size_gib is for new root volumes; grow an existing one with \
             `nubo volume resize`",
        ));
    }
    if let Some(token) = &req.client_token
        && (token.is_empty() || token.len() > 64 || !token.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ApiError::invalid(
            "client_token must be 1 to 64 printable ASCII characters",
        ));
    }
    Ok(count)
}

/// The available volume of the caller that a launch boots from, which must
/// have started as `image`.
async fn boot_volume(
    c: &mut nubo_store::Conn,
    caller: &Caller,
    id: &str,
    image: &images::ImageRow,
) -> ApiResult<nubo_store::volumes::VolumeRow> {
    let v = crate::volumes::manage::find(c, caller, id).await?;
    if v.state != nubo_store::volumes::AVAILABLE {
        return Err(ApiError::invalid_state(format!(
            "volume {} is {}; an instance boots from an available volume",
            v.id, v.state
        )));
    }
    crate::volumes::manage::not_being_copied(c, &v).await?;
    match &v.image_id {
        Some(started_as) if *started_as == image.id => Ok(v),
        Some(started_as) => Err(ApiError::invalid(format!(
            "volume {} started as image {started_as}, not {}; launch it with that image",
            v.id, image.id
        ))),
        None => Err(ApiError::invalid(format!(
            "volume {} holds no image to boot (it was not a root volume)",
            v.id
        ))),
    }
}

/// Identifies a request's parameters, to tell a retry from a different launch.
fn request_hash(req: &LaunchRequest) -> String {
    let canonical = LaunchRequest {
        client_token: None,
        count: Some(req.count.unwrap_or(1)),
        ..req.clone()
    };
    let json = serde_json::to_vec(&canonical).expect("a launch request serializes");
    hex::encode(Sha256::digest(json))
}

/// The instances an earlier launch with the same token created.
async fn replay(
    state: &AppState,
    caller: &Caller,
    token: &str,
    hash: &str,
) -> ApiResult<Option<Vec<InstanceRow>>> {
    let mut c = state.store.conn().await?;
    let Some((launch_id, earlier)) =
        instances::launch_token(&mut c, &caller.account_id, token).await?
    else {
        return Ok(None);
    };
    if earlier != hash {
        return Err(ApiError::new(
            ErrorCode::IdempotencyMismatch,
            format!("client_token {token:?} was used for a different launch request"),
        ));
    }
    Ok(Some(
        instances::by_launch(&mut c, &caller.account_id, &launch_id).await?,
    ))
}

/// Launches instances. Answers once they are accepted (`pending`), after quota and
/// capacity are secured; with a `client_token`, a retry returns the same instances.
#[utoipa::path(post, path = "/v1/instances", tag = "compute", operation_id = "instance_launch",
    request_body = LaunchRequest,
    responses((status = 202, body = LaunchResponse, description = "Accepted; instances are pending"),
              (status = 200, body = LaunchResponse, description = "A retry of an earlier launch"),
              (status = 403, body = ErrorBody, description = "A quota refuses it (`QuotaExceeded`)"),
              (status = 409, body = ErrorBody), (status = 507, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn instance_launch(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<LaunchRequest>,
) -> ApiResult<(StatusCode, axum::Json<LaunchResponse>)> {
    let count = validate(&req)?;
    let itype = catalog::find(&req.instance_type).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown instance type {:?}; see `nubo instance-types list`",
            req.instance_type
        ))
    })?;
    let hash = request_hash(&req);
    let respond = |status, rows: Vec<InstanceRow>| {
        let region = &state.config.region;
        (
            status,
            axum::Json(LaunchResponse {
                instances: rows.into_iter().map(|r| view(r, region)).collect(),
            }),
        )
    };
    if let Some(token) = &req.client_token
        && let Some(rows) = replay(&state, &caller, token, &hash).await?
    {
        return Ok(respond(StatusCode::OK, rows));
    }

    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    let image = images::visible(&mut tx, &caller.account_id, &req.image)
        .await?
        .ok_or_else(|| ApiError::invalid(format!("image {:?} not found", req.image)))?;
    if image.state != images::AVAILABLE {
        return Err(ApiError::invalid(format!(
            "image {} is {}: upload its files and complete it first",
            image.id, image.state
        )));
    }
    let key = match &req.key_name {
        Some(name) => Some(
            key_pairs::get(&mut tx, &caller.account_id, name)
                .await?
                .ok_or_else(|| ApiError::invalid(format!("key pair {name:?} not found")))?,
        ),
        None => None,
    };
    let network = match &req.network {
        Some(name) => networks::get(&mut tx, &caller.account_id, name)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("network {name:?} not found")))?,
        None => networks::default_for(&mut tx, &caller.account_id, at).await?,
    };
    let chosen_groups = security_groups::for_instance(
        &mut tx,
        &caller,
        &network,
        req.security_groups.as_deref(),
        at,
    )
    .await?;
    // An existing root volume decides the host; new ones are made where the
    // instances land.
    let existing_root = match &req.root_volume {
        Some(id) => Some(boot_volume(&mut tx, &caller, id, &image).await?),
        None => None,
    };
    let root_size = match &existing_root {
        Some(_) => None,
        None => {
            let wanted = roots::RootRequest {
                size_gib: req.root_volume_size_gib,
                keep: req.keep_root_volume.unwrap_or(false),
            };
            roots::reserve(
                &mut tx,
                &state,
                &caller.account_id,
                &image,
                &wanted,
                u64::from(count),
            )
            .await?
        }
    };
    let what = format!("launching {count} × {}", itype.name);
    let (vcpus, memory) = (u64::from(itype.vcpus), u64::from(itype.memory_mib));
    let n = u64::from(count);
    let cfg = &state.config;
    for (resource, amount) in [
        (QuotaResource::Instances, n),
        (QuotaResource::Vcpus, n * vcpus),
        (QuotaResource::MemoryMib, n * memory),
    ] {
        quotas::reserve(&mut tx, cfg, &caller.account_id, resource, amount, &what).await?;
    }
    let shape = Shape {
        vcpus: i64::from(itype.vcpus),
        memory_mib: i64::from(itype.memory_mib),
    };
    let only = existing_root.as_ref().and_then(|v| v.host_id.clone());
    let hosts = match scheduler::place(&mut tx, cfg, count, shape, only.as_deref(), &what).await {
        Ok(hosts) => hosts,
        Err(e) => {
            drop(tx);
            return Err(crate::regions::room_elsewhere(cfg, e, shape).await);
        }
    };

    let launch_id = ids::new("launch");
    let mut rows = Vec::with_capacity(hosts.len());
    for host_id in hosts {
        let id = ids::new("i");
        let private_ip = networks::allocate(&mut tx, &network, &id)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Conflict,
                    format!("network {} has no free address left", network.name),
                )
            })?;
        let row = InstanceRow {
            id,
            account_id: caller.account_id.clone(),
            name: req.name.clone(),
            image_id: image.id.clone(),
            instance_type: itype.name.clone(),
            vcpus: shape.vcpus,
            memory_mib: shape.memory_mib,
            host_id: Some(host_id),
            state: InstanceState::Pending.as_str().into(),
            desired_state: InstanceState::Running.as_str().into(),
            state_reason: None,
            user_data: req.user_data.clone(),
            key_name: key.as_ref().map(|k| k.name.clone()),
            ssh_public_key: key.as_ref().map(|k| k.public_key.clone()),
            network_id: Some(network.id.clone()),
            private_ip: Some(private_ip.to_string()),
            metadata_tokens_required: req.metadata_tokens == Some(MetadataTokens::Required),
            launch_id: launch_id.clone(),
            launched_at: at,
            state_changed_at: at,
            version: 0,
        };
        instances::insert(&mut tx, &row).await?;
        if let Some(volume) = &existing_root {
            roots::adopt(&mut tx, volume, &row).await?;
        } else if let Some(size) = root_size {
            let keep = req.keep_root_volume.unwrap_or(false);
            roots::insert(&mut tx, &row, &image, size, keep).await?;
        }
        nubo_store::security_groups::set_membership(
            &mut tx,
            &caller.account_id,
            &row.id,
            &chosen_groups,
            at,
        )
        .await?;
        rows.push(row);
    }
    if let Some(token) = &req.client_token {
        match instances::insert_launch_token(
            &mut tx,
            &caller.account_id,
            token,
            &hash,
            &launch_id,
            at,
        )
        .await
        {
            Err(StoreError::Conflict(_)) => {
                // A concurrent request with the same token won; answer as it did.
                drop(tx);
                if let Some(rows) = replay(&state, &caller, token, &hash).await? {
                    return Ok(respond(StatusCode::OK, rows));
                }
                return Err(ApiError::new(ErrorCode::Unavailable, "retry the launch"));
            }
            other => other?,
        }
    }
    tx.commit().await?;
    state.reconcile.notify_one();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(respond(StatusCode::ACCEPTED, rows))
}
