//! Budgets: a monthly amount with alert thresholds, and the alerts raised
//! when a month's cost crosses them (once per budget, month and threshold).

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub monthly_nanos: i64,
    /// Percentages of the monthly amount, ascending.
    pub alert_at: Vec<u32>,
    pub webhook_url: Option<String>,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<BudgetRow> {
    let alert_at: String = r.try_get("alert_at")?;
    Ok(BudgetRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        monthly_nanos: r.try_get("monthly_nanos")?,
        alert_at: serde_json::from_str(&alert_at)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        webhook_url: r.try_get("webhook_url")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, account_id, name, monthly_nanos, alert_at, webhook_url, created_at";

async fn append(c: &mut Conn, b: &BudgetRow, at: i64, action: &str) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(&b.account_id),
            resource_type: "budget",
            resource_id: &b.id,
            action,
            data: json!({ "name": b.name, "monthly_nanos": b.monthly_nanos, "alert_at": b.alert_at }),
        },
    )
    .await?;
    Ok(())
}

/// `StoreError::Conflict` when the account has a budget of that name.
pub async fn insert(c: &mut Conn, b: &BudgetRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO budgets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(&b.id)
    .bind(&b.account_id)
    .bind(&b.name)
    .bind(b.monthly_nanos)
    .bind(serde_json::to_string(&b.alert_at).unwrap_or_default())
    .bind(&b.webhook_url)
    .bind(b.created_at)
    .execute(&mut *c)
    .await?;
    append(c, b, b.created_at, "created").await
}

pub async fn get(c: &mut Conn, account_id: &str, id: &str) -> Result<Option<BudgetRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM budgets WHERE account_id = $1 AND id = $2"
        )))
        .bind(account_id)
        .bind(id),
        from_row,
    )
    .await
}

/// The account's budgets by name.
pub async fn of_account(c: &mut Conn, account_id: &str) -> Result<Vec<BudgetRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM budgets WHERE account_id = $1 ORDER BY name"
        )))
        .bind(account_id),
        from_row,
    )
    .await
}

/// Every budget of the region, by account.
pub async fn all(c: &mut Conn) -> Result<Vec<BudgetRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM budgets ORDER BY account_id, id"
        ))),
        from_row,
    )
    .await
}

/// Deletes a budget; false if there was none. Its alerts stay.
pub async fn delete(c: &mut Conn, account_id: &str, id: &str, at: i64) -> Result<bool> {
    let Some(b) = get(&mut *c, account_id, id).await? else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM budgets WHERE id = $1")
        .bind(&b.id)
        .execute(&mut *c)
        .await?;
    append(c, &b, at, "deleted").await?;
    Ok(true)
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub budget_id: String,
    pub month: String,
    pub threshold: i64,
    pub account_id: String,
    pub budget_name: String,
    pub at: i64,
    /// The month's cost when the alert was raised.
    pub amount_nanos: i64,
    pub budget_nanos: i64,
    pub webhook_url: Option<String>,
    pub delivered_at: Option<i64>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

fn alert_from_row(r: &AnyRow) -> Result<AlertRow> {
    Ok(AlertRow {
        budget_id: r.try_get("budget_id")?,
        month: r.try_get("month")?,
        threshold: r.try_get("threshold")?,
        account_id: r.try_get("account_id")?,
        budget_name: r.try_get("budget_name")?,
        at: r.try_get("at")?,
        amount_nanos: r.try_get("amount_nanos")?,
        budget_nanos: r.try_get("budget_nanos")?,
        webhook_url: r.try_get("webhook_url")?,
        delivered_at: r.try_get("delivered_at")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
    })
}

const ALERT_COLUMNS: &str = "budget_id, month, threshold, account_id, budget_name, at, \
     amount_nanos, budget_nanos, webhook_url, delivered_at, attempts, last_error";

/// Records the alert and its event unless this threshold already fired this
/// month; true if it is new.
pub async fn raise(c: &mut Conn, a: &AlertRow) -> Result<bool> {
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO budget_alerts ({ALERT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 0, NULL) \
         ON CONFLICT (budget_id, month, threshold) DO NOTHING"
    )))
    .bind(&a.budget_id)
    .bind(&a.month)
    .bind(a.threshold)
    .bind(&a.account_id)
    .bind(&a.budget_name)
    .bind(a.at)
    .bind(a.amount_nanos)
    .bind(a.budget_nanos)
    .bind(&a.webhook_url)
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    if inserted {
        events::append(
            c,
            NewEvent {
                at: a.at,
                account_id: Some(&a.account_id),
                resource_type: "budget",
                resource_id: &a.budget_id,
                action: "alert",
                data: json!({
                    "month": a.month,
                    "threshold_percent": a.threshold,
                    "amount_nanos": a.amount_nanos,
                    "budget_nanos": a.budget_nanos,
                }),
            },
        )
        .await?;
    }
    Ok(inserted)
}

/// The account's alerts, newest first.
pub async fn alerts_of_account(c: &mut Conn, account_id: &str) -> Result<Vec<AlertRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM budget_alerts WHERE account_id = $1 \
             ORDER BY at DESC, budget_id, threshold DESC LIMIT 1000"
        )))
        .bind(account_id),
        alert_from_row,
    )
    .await
}

/// Alerts whose webhook has not taken them yet, with fewer than `attempts` tries.
pub async fn undelivered(c: &mut Conn, attempts: i64) -> Result<Vec<AlertRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM budget_alerts WHERE webhook_url IS NOT NULL \
             AND delivered_at IS NULL AND attempts < $1 ORDER BY at LIMIT 100"
        )))
        .bind(attempts),
        alert_from_row,
    )
    .await
}

/// Notes a try at delivering the alert to its webhook.
pub async fn delivery(
    c: &mut Conn,
    a: &AlertRow,
    delivered_at: Option<i64>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE budget_alerts SET delivered_at = $1, attempts = attempts + 1, last_error = $2 \
         WHERE budget_id = $3 AND month = $4 AND threshold = $5",
    )
    .bind(delivered_at)
    .bind(error)
    .bind(&a.budget_id)
    .bind(&a.month)
    .bind(a.threshold)
    .execute(c)
    .await?;
    Ok(())
}
