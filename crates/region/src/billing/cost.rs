//! `GET /v1/billing/cost`: what the caller's usage costs so far, priced as
//! it accrues, grouped as asked, with a forecast to the month's end.

use std::collections::BTreeMap;

use axum::extract::State;
use nubo_api::billing::{CostLine, CostReport, Forecast, UsageParams, money};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::grouping::By;
use super::ledger::Ledger;
use super::period;
use super::rating::{self, Line};
use super::usage::tags_for;
use crate::api::auth::Caller;
use crate::api::error::ApiResult;
use crate::api::extract::Query;
use crate::clock::rfc3339;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(billing_cost))
}

/// `lines` summed per group and meter.
fn grouped(
    lines: &[Line],
    by: &By,
    tags: &std::collections::HashMap<String, nubo_store::tags::Tags>,
) -> Vec<CostLine> {
    let mut sums: BTreeMap<(String, &str), (f64, &str, i64)> = BTreeMap::new();
    for l in lines {
        let group = by.group(l.service, &l.resource_id, tags);
        let entry = sums
            .entry((group, l.meter.as_str()))
            .or_insert((0.0, l.unit, 0));
        entry.0 += l.quantity;
        entry.2 += l.amount_nanos;
    }
    sums.into_iter()
        .map(
            |((group, meter), (quantity, unit, amount_nanos))| CostLine {
                group,
                meter: meter.to_string(),
                quantity,
                unit: unit.to_string(),
                amount: money(amount_nanos),
                amount_nanos,
            },
        )
        .collect()
}

/// The cost of the account's usage between `since` and `until` at the prices
/// in effect at each moment, commitments applied, per resource (or service,
/// or tag) and meter. Running to now, it also forecasts the month: what it
/// will cost if what runs keeps running and what is stored stays.
#[utoipa::path(get, path = "/v1/billing/cost", tag = "billing", operation_id = "billing_cost",
    params(UsageParams),
    responses((status = 200, body = CostReport)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn billing_cost(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<UsageParams>,
) -> ApiResult<axum::Json<CostReport>> {
    let by = By::parse(p.by.as_deref())?;
    let now = state.clock.now_micros();
    let (since, until) = period::window(p.since.as_deref(), p.until.as_deref(), now)?;
    let tags = tags_for(&state, &by, &caller.account_id).await?;
    let starts = [since, period::month_start(now)];
    let ledger = Ledger::load(&state.store, &caller.account_id, &starts, until).await?;
    let prices = &state.config.prices;
    let lines = ledger.lines(prices, since, until);
    let total_nanos = rating::total(&lines);
    let forecast = (until == now).then(|| {
        let month_end = period::next_month(now);
        let total = rating::total(&ledger.lines(prices, period::month_start(now), month_end));
        Forecast {
            until: rfc3339(month_end),
            total: money(total),
            total_nanos: total,
        }
    });
    Ok(axum::Json(CostReport {
        since: rfc3339(since),
        until: rfc3339(until),
        by: by.name(),
        currency: prices.at(now).currency.clone(),
        lines: grouped(&lines, &by, &tags),
        total: money(total_nanos),
        total_nanos,
        forecast,
    }))
}
