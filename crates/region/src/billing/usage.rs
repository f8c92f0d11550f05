//! `GET /v1/billing/usage`: what the caller's resources used in a window,
//! metered from the event log, as it accrues.

use axum::extract::State;
use nubo_api::billing::{UsageLine, UsageParams, UsageReport};
use nubo_api::error::ErrorBody;
use nubo_store::events;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::metering::{self, Meter};
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Query;
use crate::clock::rfc3339;
use crate::state::AppState;

/// The resources metered.
const METERED: &[&str] = &["instance", "volume", "snapshot"];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(billing_usage))
}

/// A time given as RFC 3339 or as a UTC date; microseconds.
fn parse_time(name: &str, text: &str) -> ApiResult<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(text, &format).map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
    });
    at.map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
        .map_err(|_| {
            ApiError::invalid(format!(
                "{name} {text:?} is neither RFC 3339 nor YYYY-MM-DD"
            ))
        })
}

/// The first microsecond of the month of `micros` (UTC).
fn month_start(micros: i64) -> i64 {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let first = t.date().replace_day(1).unwrap_or(t.date());
    (first
        .with_time(Time::MIDNIGHT)
        .assume_utc()
        .unix_timestamp_nanos()
        / 1000) as i64
}

fn line(u: metering::Usage) -> UsageLine {
    let per_second = 1_000_000.0;
    let (meter, quantity, unit) = match u.meter {
        Meter::Instance(t) => (
            format!("instance:{t}"),
            u.quantity as f64 / per_second,
            "second",
        ),
        Meter::VolumeStorage => (
            "volume-storage".into(),
            u.quantity as f64 / per_second / (1u64 << 30) as f64,
            "GiB-second",
        ),
        Meter::SnapshotStorage => (
            "snapshot-storage".into(),
            u.quantity as f64 / per_second / (1u64 << 30) as f64,
            "GiB-second",
        ),
    };
    UsageLine {
        resource_type: u.resource_type,
        resource_id: u.resource_id,
        meter,
        quantity,
        unit: unit.into(),
    }
}

/// What the account's instances, volumes and snapshots used between `since`
/// and `until`, per resource and meter: instances by the second while
/// running (at least 60 s per start), storage by the GiB-second.
#[utoipa::path(get, path = "/v1/billing/usage", tag = "billing", operation_id = "billing_usage",
    params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn billing_usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<UsageParams>,
) -> ApiResult<axum::Json<UsageReport>> {
    let now = state.clock.now_micros();
    let until = match &p.until {
        Some(t) => parse_time("until", t)?.min(now),
        None => now,
    };
    let since = match &p.since {
        Some(t) => parse_time("since", t)?,
        None => month_start(now),
    };
    if since >= until {
        return Err(ApiError::invalid(
            "since must be before until (and before now)",
        ));
    }
    let mut c = state.store.conn().await?;
    let events = events::of_account(&mut c, &caller.account_id, METERED, until).await?;
    let lines = metering::meter(&events, since, until)
        .into_iter()
        .map(line)
        .collect();
    Ok(axum::Json(UsageReport {
        since: rfc3339(since),
        until: rfc3339(until),
        lines,
    }))
}
