//! Billing: usage metered from the event log, priced from the public price
//! list per second, with commitments, budgets and monthly invoices.

pub mod budgets;
pub mod commitments;
pub mod cost;
pub mod cycle;
pub mod grouping;
pub mod invoices;
pub mod ledger;
pub mod metering;
pub mod period;
pub mod prices;
pub mod rating;
pub mod rollups;
pub mod usage;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    usage::routes()
        .merge(cost::routes())
        .merge(prices::routes())
        .merge(invoices::routes())
        .merge(commitments::routes())
        .merge(budgets::routes())
}
