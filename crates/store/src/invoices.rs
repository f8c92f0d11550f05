//! The invoices of closed months. An invoice is written once and never
//! changed: closing a month again must produce the same body, and the store
//! keeps the first.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Conn, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceRow {
    pub account_id: String,
    /// `YYYY-MM`.
    pub month: String,
    pub total_nanos: i64,
    /// The invoice as JSON.
    pub body: String,
    pub closed_at: i64,
}

fn from_row(r: &AnyRow) -> Result<InvoiceRow> {
    Ok(InvoiceRow {
        account_id: r.try_get("account_id")?,
        month: r.try_get("month")?,
        total_nanos: r.try_get("total_nanos")?,
        body: r.try_get("body")?,
        closed_at: r.try_get("closed_at")?,
    })
}

const COLUMNS: &str = "account_id, month, total_nanos, body, closed_at";

/// Writes the invoice unless the month is already closed for the account:
/// whether it was written, and the invoice the store keeps.
pub async fn close(c: &mut Conn, row: &InvoiceRow) -> Result<(bool, InvoiceRow)> {
    let written = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO invoices ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (account_id, month) DO NOTHING"
    )))
    .bind(&row.account_id)
    .bind(&row.month)
    .bind(row.total_nanos)
    .bind(&row.body)
    .bind(row.closed_at)
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    let kept = get(c, &row.account_id, &row.month)
        .await?
        .unwrap_or_else(|| row.clone());
    Ok((written, kept))
}

pub async fn get(c: &mut Conn, account_id: &str, month: &str) -> Result<Option<InvoiceRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invoices WHERE account_id = $1 AND month = $2"
        )))
        .bind(account_id)
        .bind(month),
        from_row,
    )
    .await
}

/// The account's closed months, newest first, without their bodies.
pub async fn of_account(c: &mut Conn, account_id: &str) -> Result<Vec<InvoiceRow>> {
    crate::fetch_all(
        c,
        sqlx::query(
            "SELECT account_id, month, total_nanos, '' AS body, closed_at FROM invoices \
             WHERE account_id = $1 ORDER BY month DESC",
        )
        .bind(account_id),
        from_row,
    )
    .await
}
