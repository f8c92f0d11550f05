//! Budgets: a monthly amount with alert thresholds. The billing cycle
//! raises an alert, once per threshold and month, when the month's cost
//! crosses one; the alert is an event the user lists, and is POSTed to the
//! budget's webhook if it has one.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::billing::{Budget, BudgetAlert, BudgetCreate, money};
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_store::budgets::{self as store, AlertRow, BudgetRow};
use nubo_store::{StoreError, ids};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ledger::Ledger;
use super::{period, rating};
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path};
use crate::clock::rfc3339;
use crate::state::AppState;

const MAX_PER_ACCOUNT: usize = 20;
/// Tries at delivering an alert to its webhook, one per billing cycle.
pub const WEBHOOK_ATTEMPTS: i64 = 5;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(budget_list, budget_create))
        .routes(routes!(budget_show, budget_delete))
        .routes(routes!(budget_alerts))
}

/// The account's cost this month so far.
pub async fn month_to_date(
    state: &AppState,
    account_id: &str,
    now: i64,
) -> nubo_store::Result<i64> {
    let ledger = Ledger::load(&state.store, account_id, &[period::month_start(now)], now).await?;
    let lines = ledger.lines(&state.config.prices, period::month_start(now), now);
    Ok(rating::total(&lines))
}

fn view(b: BudgetRow, month_to_date_nanos: i64) -> Budget {
    Budget {
        id: b.id,
        name: b.name,
        monthly: money(b.monthly_nanos),
        monthly_nanos: b.monthly_nanos,
        alert_at: b.alert_at,
        webhook_url: b.webhook_url,
        created_at: rfc3339(b.created_at),
        month_to_date: money(month_to_date_nanos),
        month_to_date_nanos,
    }
}

fn validate(req: &BudgetCreate) -> ApiResult<Vec<u32>> {
    let name_ok = (1..=64).contains(&req.name.len())
        && req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(ApiError::invalid(
            "name: 1 to 64 letters, digits, '-', '_' and '.'",
        ));
    }
    // A billionth is the smallest amount: anything less would round to none.
    if !(req.monthly >= 1e-9 && req.monthly <= 1e9) {
        return Err(ApiError::invalid(format!(
            "monthly {}: must be from 0.000000001 to 1000000000",
            req.monthly
        )));
    }
    let mut alert_at = if req.alert_at.is_empty() {
        vec![80, 100]
    } else {
        req.alert_at.clone()
    };
    alert_at.sort_unstable();
    alert_at.dedup();
    if alert_at.len() > 10 || alert_at.iter().any(|p| !(1..=1000).contains(p)) {
        return Err(ApiError::invalid(
            "alert_at: up to 10 percentages, each from 1 to 1000",
        ));
    }
    if let Some(url) = &req.webhook_url {
        let ok = url.len() <= 2048
            && reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "http" && u.host().is_some());
        if !ok {
            return Err(ApiError::invalid(format!(
                "webhook_url {url:?}: an http:// URL (nubod has no TLS client; \
                 put a TLS proxy in front of an https endpoint)"
            )));
        }
    }
    Ok(alert_at)
}

/// Creates a budget: a monthly amount and the percentages of it at which to
/// alert (default 80 and 100). A threshold already crossed this month
/// alerts at the next billing cycle.
#[utoipa::path(post, path = "/v1/billing/budgets", tag = "billing", operation_id = "budget_create",
    request_body = BudgetCreate,
    responses((status = 201, body = Budget),
        (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn budget_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<BudgetCreate>,
) -> ApiResult<(StatusCode, axum::Json<Budget>)> {
    let alert_at = validate(&req)?;
    let now = state.clock.now_micros();
    let row = BudgetRow {
        id: ids::new("bud"),
        account_id: caller.account_id.clone(),
        name: req.name.clone(),
        monthly_nanos: (req.monthly * 1e9).round() as i64,
        alert_at,
        webhook_url: req.webhook_url.clone(),
        created_at: now,
    };
    let mut tx = state.store.begin().await?;
    if store::of_account(&mut tx, &caller.account_id).await?.len() >= MAX_PER_ACCOUNT {
        return Err(ApiError::invalid(format!(
            "an account may have at most {MAX_PER_ACCOUNT} budgets"
        )));
    }
    match store::insert(&mut tx, &row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("the account already has a budget named {:?}", req.name),
            ));
        }
        other => other?,
    }
    tx.commit().await?;
    let spent = month_to_date(&state, &caller.account_id, now).await?;
    Ok((StatusCode::CREATED, axum::Json(view(row, spent))))
}

/// The account's budgets, by name, with this month's cost so far.
#[utoipa::path(get, path = "/v1/billing/budgets", tag = "billing", operation_id = "budget_list",
    responses((status = 200, body = Vec<Budget>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn budget_list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Budget>>> {
    let rows = {
        let mut c = state.store.conn().await?;
        store::of_account(&mut c, &caller.account_id).await?
    };
    let spent = if rows.is_empty() {
        0
    } else {
        month_to_date(&state, &caller.account_id, state.clock.now_micros()).await?
    };
    Ok(axum::Json(
        rows.into_iter().map(|b| view(b, spent)).collect(),
    ))
}

#[utoipa::path(get, path = "/v1/billing/budgets/{budget_id}", tag = "billing",
    operation_id = "budget_show",
    params(("budget_id" = String, Path)),
    responses((status = 200, body = Budget), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn budget_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Budget>> {
    let row = {
        let mut c = state.store.conn().await?;
        store::get(&mut c, &caller.account_id, &id).await?
    };
    let row = row.ok_or_else(|| ApiError::not_found("budget", &id))?;
    let spent = month_to_date(&state, &caller.account_id, state.clock.now_micros()).await?;
    Ok(axum::Json(view(row, spent)))
}

/// Deletes a budget. The alerts it raised stay listed.
#[utoipa::path(delete, path = "/v1/billing/budgets/{budget_id}", tag = "billing",
    operation_id = "budget_delete",
    params(("budget_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn budget_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin().await?;
    if !store::delete(&mut tx, &caller.account_id, &id, state.clock.now_micros()).await? {
        return Err(ApiError::not_found("budget", &id));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn alert_view(a: AlertRow) -> BudgetAlert {
    let webhook = match (&a.webhook_url, a.delivered_at) {
        (None, _) => "none",
        (Some(_), Some(_)) => "delivered",
        (Some(_), None) if a.attempts >= WEBHOOK_ATTEMPTS => "failed",
        (Some(_), None) => "pending",
    };
    BudgetAlert {
        budget_id: a.budget_id,
        budget_name: a.budget_name,
        month: a.month,
        threshold_percent: a.threshold.max(0) as u32,
        at: rfc3339(a.at),
        amount: money(a.amount_nanos),
        budget: money(a.budget_nanos),
        webhook: webhook.into(),
    }
}

/// The alerts the account's budgets raised, newest first.
#[utoipa::path(get, path = "/v1/billing/alerts", tag = "billing", operation_id = "budget_alerts",
    responses((status = 200, body = Vec<BudgetAlert>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn budget_alerts(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<BudgetAlert>>> {
    let mut c = state.store.conn().await?;
    let rows = store::alerts_of_account(&mut c, &caller.account_id).await?;
    Ok(axum::Json(rows.into_iter().map(alert_view).collect()))
}
