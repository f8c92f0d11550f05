//! The catalog of regions: this one, and the peers the operator configured.

use axum::extract::State;
use nubo_api::regions::Region;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(region_list))
}

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
