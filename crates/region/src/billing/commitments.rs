//! Commitments: a spend per hour on compute for a term, in exchange for the
//! term's discount on the compute it covers (see `rating`). A commitment is
//! binding for its term: there is no cancel.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::billing::{Commitment, CommitmentCreate, money};
use nubo_api::error::ErrorBody;
use nubo_store::commitments::{self as store, CommitmentRow};
use nubo_store::ids;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path};
use crate::clock::rfc3339;
use crate::state::AppState;

/// The most an account may hold, expired ones included.
const MAX_PER_ACCOUNT: usize = 100;
/// The most one commitment may be, per hour, in currency units.
const MAX_PER_HOUR: f64 = 10_000.0;
const YEAR_MICROS: i64 = 365 * 86_400 * 1_000_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(commitment_list, commitment_create))
        .routes(routes!(commitment_show))
}

/// Months of a term written `<n>y` (1 to 5 years).
pub fn term_months(term: &str) -> Option<u32> {
    let years: u32 = term.strip_suffix('y')?.parse().ok()?;
    (1..=5).contains(&years).then_some(years * 12)
}

fn view(r: CommitmentRow, now: i64) -> Commitment {
    Commitment {
        per_hour: money(r.per_hour_nanos),
        per_hour_nanos: r.per_hour_nanos,
        term: r.term,
        discount_percent: r.discount_bp as f64 / 100.0,
        starts_at: rfc3339(r.starts_at),
        ends_at: rfc3339(r.ends_at),
        state: if now < r.ends_at { "active" } else { "expired" }.into(),
        id: r.id,
    }
}

/// Commits to a spend per hour on compute for a term, from now. Each hour,
/// running instances are priced at the term's discount up to that spend, and
/// the rest at the pay-as-you-go price; the spend is owed every hour of the
/// term, used or not. It cannot be cancelled.
#[utoipa::path(post, path = "/v1/billing/commitments", tag = "billing",
    operation_id = "commitment_create",
    request_body = CommitmentCreate,
    responses((status = 201, body = Commitment)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn commitment_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CommitmentCreate>,
) -> ApiResult<(StatusCode, axum::Json<Commitment>)> {
    let discounts = &state.config.billing.commitment_discounts;
    let Some(discount) = discounts.get(&req.term) else {
        let offered: Vec<&str> = discounts.keys().map(String::as_str).collect();
        return Err(ApiError::invalid(format!(
            "term {:?}: offered terms are {}",
            req.term,
            offered.join(", ")
        )));
    };
    // A billionth is the smallest amount: anything less would round to none.
    if !(req.per_hour >= 1e-9 && req.per_hour <= MAX_PER_HOUR) {
        return Err(ApiError::invalid(format!(
            "per_hour {}: must be from 0.000000001 to {MAX_PER_HOUR}",
            req.per_hour
        )));
    }
    let per_hour_nanos = (req.per_hour * 1e9).round() as i64;
    let years = term_months(&req.term).unwrap_or(12) / 12;
    let now = state.clock.now_micros();
    let row = CommitmentRow {
        id: ids::new("cm"),
        account_id: caller.account_id.clone(),
        per_hour_nanos,
        term: req.term.clone(),
        discount_bp: (discount * 10_000.0).round() as i64,
        starts_at: now,
        ends_at: now + i64::from(years) * YEAR_MICROS,
        created_at: now,
    };
    let mut tx = state.store.begin().await?;
    if store::of_account(&mut tx, &caller.account_id).await?.len() >= MAX_PER_ACCOUNT {
        return Err(ApiError::invalid(format!(
            "an account may hold at most {MAX_PER_ACCOUNT} commitments"
        )));
    }
    store::insert(&mut tx, &row).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(view(row, now))))
}

/// The account's commitments, oldest first.
#[utoipa::path(get, path = "/v1/billing/commitments", tag = "billing",
    operation_id = "commitment_list",
    responses((status = 200, body = Vec<Commitment>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn commitment_list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Commitment>>> {
    let now = state.clock.now_micros();
    let mut c = state.store.conn().await?;
    let rows = store::of_account(&mut c, &caller.account_id).await?;
    Ok(axum::Json(rows.into_iter().map(|r| view(r, now)).collect()))
}

#[utoipa::path(get, path = "/v1/billing/commitments/{commitment_id}", tag = "billing",
    operation_id = "commitment_show",
    params(("commitment_id" = String, Path)),
    responses((status = 200, body = Commitment), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn commitment_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Commitment>> {
    let now = state.clock.now_micros();
    let mut c = state.store.conn().await?;
    match store::get(&mut c, &caller.account_id, &id).await? {
        Some(r) => Ok(axum::Json(view(r, now))),
        None => Err(ApiError::not_found("commitment", &id)),
    }
}
