//! The catalog of regions: this one, and the peers the operator configured.

use axum::extract::State;
use nubo_api::error::ErrorCode;
use nubo_api::regions::{Region, RegionCapacity};

use crate::api::error::{ApiError, ApiResult};
use crate::compute::scheduler::{self, Shape};
use crate::config::Config;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(region_list))
        .routes(routes!(region_capacity))
}

/// The region's room for new instances. Public, so that regions (and their
/// users) can find one with room when another is full.
#[utoipa::path(get, path = "/v1/capacity", tag = "regions", operation_id = "region_capacity",
    responses((status = 200, body = RegionCapacity)))]
async fn region_capacity(State(state): State<AppState>) -> ApiResult<axum::Json<RegionCapacity>> {
    let mut c = state.store.conn().await?;
    let hosts = nubo_store::hosts::list(&mut c).await?;
    Ok(axum::Json(scheduler::capacity(
        &state.config.region,
        &hosts,
    )))
}

/// Appends to a capacity refusal which other regions have room for `shape`, asking
/// each peer briefly; a peer that does not answer in time is left out.
pub async fn room_elsewhere(config: &Config, mut error: ApiError, shape: Shape) -> ApiError {
    if error.code != ErrorCode::InsufficientCapacity {
        return error;
    }
    let client = reqwest::Client::builder()
        .timeout(PEER_TIMEOUT)
        .build()
        .unwrap_or_default();
    let asks = config
        .peers
        .iter()
        .filter(|p| p.name != config.region)
        .map(|peer| {
            let client = client.clone();
            async move {
                let room: RegionCapacity = client
                    .get(format!("{}/v1/capacity", peer.api_endpoint))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let fits = room.largest_free_vcpus >= shape.vcpus as u64
                    && room.largest_free_memory_mib >= shape.memory_mib as u64;
                fits.then(|| format!("{} ({})", peer.name, peer.api_endpoint))
            }
        });
    let with_room: Vec<String> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    error.message = if with_room.is_empty() {
        format!("{}; no other region reports room", error.message)
    } else {
        format!(
            "{}; regions with room: {}",
            error.message,
            with_room.join(", ")
        )
    };
    error
}

const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Lists the regions of this cloud and their endpoints. Public: clients use it to
/// find a region before they have credentials.
#[utoipa::path(get, path = "/v1/regions", tag = "regions", operation_id = "region_list",
    responses((status = 200, body = Vec<Region>)))]
async fn region_list(State(state): State<AppState>) -> axum::Json<Vec<Region>> {
    let c = &state.config;
    let mut regions = vec![Region {
        name: c.region.clone(),
        api_endpoint: c.public_endpoint.clone(),
        s3_endpoint: c.public_s3_endpoint.clone(),
        current: true,
    }];
    regions.extend(
        c.peers
            .iter()
            .filter(|p| p.name != c.region)
            .map(|p| Region {
                name: p.name.clone(),
                api_endpoint: p.api_endpoint.clone(),
                s3_endpoint: p.s3_endpoint.clone(),
                current: false,
            }),
    );
    axum::Json(regions)
}
