//! Commitments: a spend per hour on compute, bought for a term at a discount.
//! They cannot be cancelled, so rows are only ever inserted.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct CommitmentRow {
    pub id: String,
    pub account_id: String,
    pub per_hour_nanos: i64,
    pub term: String,
    pub discount_bp: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<CommitmentRow> {
    Ok(CommitmentRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        per_hour_nanos: r.try_get("per_hour_nanos")?,
        term: r.try_get("term")?,
        discount_bp: r.try_get("discount_bp")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str =
    "id, account_id, per_hour_nanos, term, discount_bp, starts_at, ends_at, created_at";

pub async fn insert(c: &mut Conn, row: &CommitmentRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO commitments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )))
    .bind(&row.id)
    .bind(&row.account_id)
    .bind(row.per_hour_nanos)
    .bind(&row.term)
    .bind(row.discount_bp)
    .bind(row.starts_at)
    .bind(row.ends_at)
    .bind(row.created_at)
    .execute(&mut *c)
    .await?;
    events::append(
        c,
        NewEvent {
            at: row.created_at,
            account_id: Some(&row.account_id),
            resource_type: "commitment",
            resource_id: &row.id,
            action: "created",
            data: json!({
                "per_hour_nanos": row.per_hour_nanos,
                "term": row.term,
                "discount_bp": row.discount_bp,
                "starts_at": row.starts_at,
                "ends_at": row.ends_at,
            }),
        },
    )
    .await?;
    Ok(())
}

pub async fn get(c: &mut Conn, account_id: &str, id: &str) -> Result<Option<CommitmentRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM commitments WHERE account_id = $1 AND id = $2"
        )))
        .bind(account_id)
        .bind(id),
        from_row,
    )
    .await
}

/// The account's commitments, oldest first.
pub async fn of_account(c: &mut Conn, account_id: &str) -> Result<Vec<CommitmentRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM commitments WHERE account_id = $1 ORDER BY starts_at, id"
        )))
        .bind(account_id),
        from_row,
    )
    .await
}
