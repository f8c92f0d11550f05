//! The billing cycle, a background task: it rolls usage up by the day,
//! closes each month's invoices a while after the month ends, raises budget
//! alerts as costs cross their thresholds, and delivers alerts to webhooks.
//! Each step is idempotent and keyed in the store, so a crash or a restart
//! repeats nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use nubo_api::billing::money;
use nubo_store::accounts;
use nubo_store::budgets::{self, AlertRow};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::budgets::{WEBHOOK_ATTEMPTS, month_to_date};
use super::rating::floor;
use super::rollups::DAY_MICROS;
use super::{invoices, period, rollups};
use crate::clock::rfc3339;
use crate::state::AppState;

/// How many ended months back a cycle looks for months still to close
/// (after the region was down across a month's end).
const CATCH_UP_MONTHS: usize = 3;

pub fn spawn(state: AppState, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let webhooks = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let every = Duration::from_secs(state.config.billing.check_seconds.max(1));
        let mut done = Done::default();
        loop {
            if let Err(e) = cycle(&state, &webhooks, &mut done).await {
                tracing::warn!(error = %e.message, "billing cycle");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    })
}

/// How far roll-ups and closes went, so that a cycle redoes neither until
/// a day or a month more has settled.
#[derive(Default)]
struct Done {
    rolled_to: i64,
    closed_to: i64,
}

async fn cycle(
    state: &AppState,
    webhooks: &reqwest::Client,
    done: &mut Done,
) -> crate::api::error::ApiResult<()> {
    let now = state.clock.now_micros();
    // What happened before this is in the store for good.
    let settled = now - state.config.billing.close_after_seconds as i64 * 1_000_000;
    let day = floor(settled, DAY_MICROS);
    if day > done.rolled_to {
        roll_up(state, now, day).await?;
        done.rolled_to = day;
    }
    let month = period::month_start(settled);
    if month > done.closed_to {
        close_ended_months(state, month).await?;
        done.closed_to = month;
    }
    check_budgets(state, now).await?;
    deliver(state, webhooks).await
}

/// Rolls each open account's usage up to `day`, so that bills read days
/// instead of events. (An account opened later is rolled up from its start
/// the next day.)
async fn roll_up(state: &AppState, now: i64, day: i64) -> crate::api::error::ApiResult<()> {
    let open = {
        let mut c = state.store.conn().await?;
        accounts::open_between(&mut c, now, now + 1).await?
    };
    for account_id in open {
        rollups::advance(state, &account_id, day).await?;
    }
    Ok(())
}

/// Closes the months that ended before `end`, a few back.
async fn close_ended_months(state: &AppState, end: i64) -> crate::api::error::ApiResult<()> {
    let mut end = end;
    for _ in 0..CATCH_UP_MONTHS {
        let start = period::month_start(end - 1);
        let report = invoices::close_month(state, start, false).await?;
        if report.closed > 0 {
            tracing::info!(
                month = report.month,
                invoices = report.closed,
                "month closed"
            );
        }
        end = start;
    }
    Ok(())
}

async fn check_budgets(state: &AppState, now: i64) -> crate::api::error::ApiResult<()> {
    let all = {
        let mut c = state.store.conn().await?;
        budgets::all(&mut c).await?
    };
    let mut by_account: BTreeMap<String, Vec<budgets::BudgetRow>> = BTreeMap::new();
    for b in all {
        by_account.entry(b.account_id.clone()).or_default().push(b);
    }
    let month = period::month_name(now);
    for (account_id, budgets) in by_account {
        let spent = month_to_date(state, &account_id, now).await?;
        for b in budgets {
            for &threshold in &b.alert_at {
                if i128::from(spent) * 100 < i128::from(b.monthly_nanos) * i128::from(threshold) {
                    continue;
                }
                let alert = AlertRow {
                    budget_id: b.id.clone(),
                    month: month.clone(),
                    threshold: i64::from(threshold),
                    account_id: account_id.clone(),
                    budget_name: b.name.clone(),
                    at: now,
                    amount_nanos: spent,
                    budget_nanos: b.monthly_nanos,
                    webhook_url: b.webhook_url.clone(),
                    delivered_at: None,
                    attempts: 0,
                    last_error: None,
                };
                let mut tx = state.store.begin().await?;
                if budgets::raise(&mut tx, &alert).await? {
                    tracing::info!(budget = b.id, threshold, month, "budget alert");
                }
                tx.commit().await?;
            }
        }
    }
    Ok(())
}

/// POSTs undelivered alerts to their webhooks, one try per cycle each.
async fn deliver(state: &AppState, webhooks: &reqwest::Client) -> crate::api::error::ApiResult<()> {
    let pending = {
        let mut c = state.store.conn().await?;
        budgets::undelivered(&mut c, WEBHOOK_ATTEMPTS).await?
    };
    for a in pending {
        let Some(url) = a.webhook_url.clone() else {
            continue;
        };
        let body = json!({
            "type": "budget.alert",
            "account_id": a.account_id,
            "budget_id": a.budget_id,
            "budget_name": a.budget_name,
            "month": a.month,
            "threshold_percent": a.threshold,
            "amount": money(a.amount_nanos),
            "budget": money(a.budget_nanos),
            "at": rfc3339(a.at),
        });
        let outcome = match webhooks.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the webhook answered {}", r.status())),
            Err(e) => Err(format!("the webhook did not answer: {e}")),
        };
        let mut c = state.store.conn().await?;
        match outcome {
            Ok(()) => budgets::delivery(&mut c, &a, Some(state.clock.now_micros()), None).await?,
            Err(e) => {
                tracing::warn!(budget = a.budget_id, error = e, "budget alert webhook");
                budgets::delivery(&mut c, &a, None, Some(&e)).await?
            }
        }
    }
    Ok(())
}
