//! Billing: usage metered from the event log, priced from the public price
//! list, per second.

pub mod metering;
pub mod prices;
pub mod usage;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    usage::routes().merge(prices::routes())
}
