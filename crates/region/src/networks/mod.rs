//! Private tenant networks: the API over the store's networks and their
//! address management, and their security groups. (The data plane that carries
//! their packets lives with the hosts.)

pub mod security_groups;
pub mod sync;

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::networks::{CreateNetworkRequest, Network};
use nubo_api::page::{Page, PageParams};
use nubo_host::Nic;
use nubo_store::instances::InstanceRow;
use nubo_store::networks::{self, NetworkRow};
use nubo_store::{Conn, StoreError, ids};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path, Query};
use crate::api::page;
use crate::clock::rfc3339;
use crate::state::AppState;

/// Prefix lengths a network may have: from 65,536 addresses down to 16.
const PREFIXES: std::ops::RangeInclusive<u32> = 16..=28;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(network_list, network_create))
        .routes(routes!(network_show, network_delete))
        .merge(security_groups::routes())
}

/// Names of networks and security groups: 1 to 64 letters, digits, '.', '_' or '-'.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn view(n: NetworkRow, region: &str) -> Network {
    let gateway = n.gateway().map(|g| g.to_string()).unwrap_or_default();
    Network {
        created_at: rfc3339(n.created_at),
        region: region.to_string(),
        gateway,
        is_default: n.is_default,
        id: n.id,
        name: n.name,
        cidr: n.cidr,
    }
}

/// The interface an instance's VM gets on its network, if it has one.
pub async fn nic_of(c: &mut Conn, row: &InstanceRow) -> Result<Option<Nic>, StoreError> {
    let (Some(network_id), Some(ip)) = (&row.network_id, &row.private_ip) else {
        return Ok(None);
    };
    let Some(n) = networks::get(c, &row.account_id, network_id).await? else {
        return Ok(None);
    };
    let (Some(gateway), Some(prefix)) = (n.gateway(), n.prefix()) else {
        return Err(StoreError::Corrupt(format!(
            "network {} has CIDR {:?}",
            n.id, n.cidr
        )));
    };
    Ok(Some(Nic {
        network_id: n.id,
        address: format!("{ip}/{prefix}"),
        gateway: gateway.to_string(),
        mac: mac_of(&row.id),
        // The reconciler reads it when it starts the VM.
        network: Default::default(),
    }))
}

/// A locally administered unicast MAC from the instance id's last hex digits.
fn mac_of(instance_id: &str) -> String {
    let hex: Vec<char> = instance_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    let tail: String = hex[hex.len().saturating_sub(10)..].iter().collect();
    let tail = format!("{tail:0>10}");
    let pairs: Vec<&str> = (0..5).map(|i| &tail[2 * i..2 * i + 2]).collect();
    format!("02:{}", pairs.join(":"))
}

fn validate(req: &CreateNetworkRequest) -> ApiResult<()> {
    if !valid_name(&req.name) {
        return Err(ApiError::invalid(
            "a network name is 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    let Some((base, prefix)) = networks::parse_cidr(&req.cidr) else {
        return Err(ApiError::invalid(format!(
            "cidr {:?} is not an IPv4 range a.b.c.d/n with its host bits zero",
            req.cidr
        )));
    };
    let private = [(0x0a00_0000, 8), (0xac10_0000, 12), (0xc0a8_0000, 16)]
        .iter()
        .any(|&(net, len): &(u32, u32)| prefix >= len && base >> (32 - len) == net >> (32 - len));
    if !private || !PREFIXES.contains(&prefix) {
        return Err(ApiError::invalid(format!(
            "cidr {:?} must be a private range (inside 10.0.0.0/8, 172.16.0.0/12 or \
             192.168.0.0/16) from /{} to /{}",
            req.cidr,
            PREFIXES.start(),
            PREFIXES.end()
        )));
    }
    Ok(())
}

/// Lists the account's networks (its default one included).
#[utoipa::path(get, path = "/v1/networks", tag = "networks", operation_id = "network_list",
    params(PageParams),
    responses((status = 200, body = Page<Network>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn network_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Page<Network>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut tx = state.store.begin().await?;
    // Accounts from before networks existed get theirs on first sight.
    networks::default_for(&mut tx, &caller.account_id, state.clock.now_micros()).await?;
    let rows = networks::list(&mut tx, &caller.account_id, &q).await?;
    tx.commit().await?;
    let region = &state.config.region;
    Ok(axum::Json(page::page(rows, |n| view(n, region))))
}

/// Creates a network with a private address range.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", operation_id = "network_create",
    request_body = CreateNetworkRequest,
    responses((status = 201, body = Network),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn network_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateNetworkRequest>,
) -> ApiResult<(StatusCode, axum::Json<Network>)> {
    validate(&req)?;
    let mut row = NetworkRow {
        id: ids::new("net"),
        account_id: caller.account_id.clone(),
        name: req.name.clone(),
        cidr: req.cidr.clone(),
        is_default: false,
        created_at: state.clock.now_micros(),
        vni: 0,
    };
    let mut tx = state.store.begin().await?;
    match networks::insert(&mut tx, &mut row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("the account already has a network named {:?}", req.name),
            ));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(view(row, &state.config.region)),
    ))
}

/// Shows one network, by id or name.
#[utoipa::path(get, path = "/v1/networks/{network}", tag = "networks",
    operation_id = "network_show",
    params(("network" = String, Path, description = "Network id or name")),
    responses((status = 200, body = Network), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn network_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(network): Path<String>,
) -> ApiResult<axum::Json<Network>> {
    let mut c = state.store.conn().await?;
    networks::get(&mut c, &caller.account_id, &network)
        .await?
        .map(|n| axum::Json(view(n, &state.config.region)))
        .ok_or_else(|| ApiError::not_found("network", &network))
}

/// Deletes a network; refused while instances are attached to it.
#[utoipa::path(delete, path = "/v1/networks/{network}", tag = "networks",
    operation_id = "network_delete",
    params(("network" = String, Path, description = "Network id or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn network_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(network): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin().await?;
    let n = networks::get(&mut tx, &caller.account_id, &network)
        .await?
        .ok_or_else(|| ApiError::not_found("network", &network))?;
    match networks::delete(&mut tx, &n, state.clock.now_micros()).await {
        Err(StoreError::Conflict(why)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("network {} is in use: {why}; terminate them first", n.name),
            ));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
