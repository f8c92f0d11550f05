//! Quotas: limits an account set for itself, and what it holds.
//!
//! Usage counters change in the same transaction as the resources they count; a
//! reservation is one conditional UPDATE, so concurrent launches cannot overshoot
//! a limit on either engine.

use std::collections::HashMap;

use serde_json::json;
use sqlx::Row;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

/// Limits the account set itself (resource → limit); others are the region default.
pub async fn limits(c: &mut Conn, account_id: &str) -> Result<HashMap<String, i64>> {
    let rows = sqlx::query("SELECT resource, max_value FROM quotas WHERE account_id = $1")
        .bind(account_id)
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("resource")?, r.try_get("max_value")?)))
        .collect()
}

pub async fn set_limit(
    c: &mut Conn,
    account_id: &str,
    resource: &str,
    limit: i64,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO quotas (account_id, resource, max_value) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id, resource) DO UPDATE SET max_value = excluded.max_value",
    )
    .bind(account_id)
    .bind(resource)
    .bind(limit)
    .execute(&mut *c)
    .await?;
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(account_id),
            resource_type: "quota",
            resource_id: resource,
            action: "limit.set",
            data: json!({ "limit": limit }),
        },
    )
    .await?;
    Ok(())
}

/// What the account holds (resource → amount); missing resources hold zero.
pub async fn usage(c: &mut Conn, account_id: &str) -> Result<HashMap<String, i64>> {
    let rows = sqlx::query("SELECT resource, used FROM account_usage WHERE account_id = $1")
        .bind(account_id)
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("resource")?, r.try_get("used")?)))
        .collect()
}

/// Adds `amount` to what the account holds of `resource` if the total stays within
/// `limit`; returns false (and changes nothing) otherwise.
pub async fn reserve(
    c: &mut Conn,
    account_id: &str,
    resource: &str,
    amount: i64,
    limit: i64,
) -> Result<bool> {
    sqlx::query(
        "INSERT INTO account_usage (account_id, resource, used) VALUES ($1, $2, 0) \
         ON CONFLICT (account_id, resource) DO NOTHING",
    )
    .bind(account_id)
    .bind(resource)
    .execute(&mut *c)
    .await?;
    let updated = sqlx::query(
        "UPDATE account_usage SET used = used + $1 \
         WHERE account_id = $2 AND resource = $3 AND used + $1 <= $4",
    )
    .bind(amount)
    .bind(account_id)
    .bind(resource)
    .bind(limit)
    .execute(c)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Gives back `amount` of `resource` (never below zero).
pub async fn release(c: &mut Conn, account_id: &str, resource: &str, amount: i64) -> Result<()> {
    sqlx::query(
        "UPDATE account_usage SET used = CASE WHEN used > $1 THEN used - $1 ELSE 0 END \
         WHERE account_id = $2 AND resource = $3",
    )
    .bind(amount)
    .bind(account_id)
    .bind(resource)
    .execute(c)
    .await?;
    Ok(())
}
