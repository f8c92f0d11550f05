//! Instance types: fixed shapes of vCPU and memory with a price per second.
//! There is no resize; another shape means another instance.

use axum::extract::State;
use nubo_api::compute::InstanceType;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// (name, vCPUs, memory MiB, built-in price per running second in billionths
/// of a unit; the operator's price list may change it).
const TYPES: &[(&str, u32, u32, u64)] = &[
    ("n1.nano", 1, 64, 1_111),
    ("n1.micro", 1, 256, 2_222),
    ("n1.small", 1, 1024, 4_722),
    ("n1.medium", 2, 2048, 9_444),
    ("n1.large", 2, 4096, 18_611),
    ("n1.xlarge", 4, 8192, 37_222),
    ("n1.2xlarge", 8, 16384, 74_722),
];

pub fn all() -> Vec<InstanceType> {
    TYPES.iter().map(|t| to_type(*t)).collect()
}

pub fn find(name: &str) -> Option<InstanceType> {
    TYPES.iter().find(|t| t.0 == name).map(|t| to_type(*t))
}

fn to_type((name, vcpus, memory_mib, price): (&str, u32, u32, u64)) -> InstanceType {
    InstanceType {
        name: name.to_string(),
        vcpus,
        memory_mib,
        price_per_second_nanos: price,
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(instance_type_list))
}

/// Lists the instance types and their prices now (see `/v1/pricing` for
/// every version of the price list). Public, like a price list.
#[utoipa::path(get, path = "/v1/instance-types", tag = "compute",
    operation_id = "instance_type_list",
    responses((status = 200, body = Vec<InstanceType>)))]
async fn instance_type_list(State(state): State<AppState>) -> axum::Json<Vec<InstanceType>> {
    let prices = state.config.prices.at(state.clock.now_micros());
    let priced = all()
        .into_iter()
        .map(|t| InstanceType {
            price_per_second_nanos: prices
                .instance_second_nanos
                .get(&t.name)
                .copied()
                .unwrap_or(t.price_per_second_nanos),
            ..t
        })
        .collect();
    axum::Json(priced)
}
