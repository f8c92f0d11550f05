//! `GET /v1/billing/usage`: what the caller's resources used in a window,
//! metered from the event log, as it accrues.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use nubo_api::billing::{UsageLine, UsageParams, UsageReport};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::grouping::By;
use super::ledger::Ledger;
use super::metering::Meter;
use super::{period, rating};
use crate::api::auth::Caller;
use crate::api::error::ApiResult;
use crate::api::extract::Query;
use crate::clock::rfc3339;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(billing_usage))
}

/// The tags `by` needs of the account's resources.
pub(super) async fn tags_for(
    state: &AppState,
    by: &By,
    account_id: &str,
) -> ApiResult<HashMap<String, nubo_store::tags::Tags>> {
    if !by.needs_tags() {
        return Ok(HashMap::new());
    }
    let mut c = state.store.conn().await?;
    Ok(nubo_store::tags::of_account(&mut c, account_id).await?)
}

/// The unit a meter's usage is reported in, and how many of the meter's
/// own units (microseconds, byte-microseconds, bytes) make one.
fn unit(meter: &Meter) -> (&'static str, f64) {
    let per_second = 1_000_000.0;
    let gib = (1u64 << 30) as f64;
    match meter {
        Meter::Instance(_) => ("second", per_second),
        Meter::VolumeStorage | Meter::SnapshotStorage | Meter::ObjectStorage => {
            ("GiB-second", per_second * gib)
        }
        Meter::Requests => ("request", 1.0),
        Meter::DataOut => ("GiB", gib),
    }
}

/// What the account's instances, volumes, snapshots and buckets used between
/// `since` and `until`, per resource (or service, or tag) and meter:
/// instances by the second while running (at least 60 s per start), storage
/// by the GiB-second, object storage requests by the request and data out by
/// the GiB.
#[utoipa::path(get, path = "/v1/billing/usage", tag = "billing", operation_id = "billing_usage",
    params(UsageParams),
    responses((status = 200, body = UsageReport)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn billing_usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<UsageParams>,
) -> ApiResult<axum::Json<UsageReport>> {
    let by = By::parse(p.by.as_deref())?;
    let (since, until) = period::window(
        p.since.as_deref(),
        p.until.as_deref(),
        state.clock.now_micros(),
    )?;
    let tags = tags_for(&state, &by, &caller.account_id).await?;
    let ledger = Ledger::load(&state.store, &caller.account_id, &[since], until).await?;
    let mut grouped: BTreeMap<(String, String), (u128, &'static str, f64)> = BTreeMap::new();
    for u in ledger.usage(since, until) {
        let (unit, per_unit) = unit(&u.meter);
        let meter = u.meter.name();
        let (service, _) = rating::describe(&u.meter);
        let group = by.group(service, &u.resource_id, &tags);
        grouped
            .entry((group, meter))
            .or_insert((0, unit, per_unit))
            .0 += u.quantity;
    }
    let lines = grouped
        .into_iter()
        .map(|((group, meter), (q, unit, per_unit))| UsageLine {
            group,
            meter,
            quantity: q as f64 / per_unit,
            unit: unit.into(),
        })
        .collect();
    Ok(axum::Json(UsageReport {
        since: rfc3339(since),
        until: rfc3339(until),
        by: by.name(),
        lines,
    }))
}
