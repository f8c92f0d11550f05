//! Accounts.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

pub const ACTIVE: &str = "active";
pub const CLOSED: &str = "closed";

#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub id: String,
    pub email: String,
    pub status: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
}

pub(crate) fn from_row(r: &AnyRow) -> Result<AccountRow> {
    Ok(AccountRow {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        closed_at: r.try_get("closed_at")?,
    })
}

/// Creates an active account. `StoreError::Conflict` when an active account has the email.
pub async fn insert(c: &mut Conn, id: &str, email: &str, at: i64) -> Result<AccountRow> {
    sqlx::query(
        "INSERT INTO accounts (id, email, status, created_at, closed_at) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(id)
    .bind(email)
    .bind(ACTIVE)
    .bind(at)
    .execute(&mut *c)
    .await?;
    append(c, id, at, "created", json!({ "email": email })).await?;
    Ok(AccountRow {
        id: id.to_string(),
        email: email.to_string(),
        status: ACTIVE.to_string(),
        created_at: at,
        closed_at: None,
    })
}

pub async fn get(c: &mut Conn, id: &str) -> Result<Option<AccountRow>> {
    crate::fetch_optional(
        c,
        sqlx::query("SELECT id, email, status, created_at, closed_at FROM accounts WHERE id = $1")
            .bind(id),
        from_row,
    )
    .await
}

/// Marks an active account closed; false if it was not active.
pub async fn close(c: &mut Conn, id: &str, at: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE accounts SET status = $1, closed_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(CLOSED)
    .bind(at)
    .bind(id)
    .bind(ACTIVE)
    .execute(&mut *c)
    .await?
    .rows_affected()
        == 1;
    if done {
        append(c, id, at, "closed", json!({})).await?;
    }
    Ok(done)
}

async fn append(
    c: &mut Conn,
    id: &str,
    at: i64,
    action: &str,
    data: serde_json::Value,
) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(id),
            resource_type: "account",
            resource_id: id,
            action,
            data,
        },
    )
    .await?;
    Ok(())
}

pub async fn count_active(c: &mut Conn) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE status = $1")
            .bind(ACTIVE)
            .fetch_one(c)
            .await?,
    )
}

/// The accounts open at some moment of `[from, to)`: the ones a month's
/// invoices are for.
pub async fn open_between(c: &mut Conn, from: i64, to: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM accounts WHERE created_at < $1 \
         AND (closed_at IS NULL OR closed_at >= $2) ORDER BY id",
    )
    .bind(to)
    .bind(from)
    .fetch_all(c)
    .await?)
}
