//! The append-only event log: every state change of every resource.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Conn, Result, StoreError, ids};

/// An event about to be recorded.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub at: i64,
    pub account_id: Option<&'a str>,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    /// What happened: `created`, `deleted`, `state.running`, …
    pub action: &'a str,
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub at: i64,
    pub account_id: Option<String>,
    pub resource_type: String,
    pub resource_id: String,
    pub action: String,
    pub data: Value,
}

pub async fn append(c: &mut Conn, e: NewEvent<'_>) -> Result<String> {
    let id = ids::event(e.at);
    sqlx::query(
        "INSERT INTO events (id, at, account_id, resource_type, resource_id, action, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(e.at)
    .bind(e.account_id)
    .bind(e.resource_type)
    .bind(e.resource_id)
    .bind(e.action)
    .bind(e.data.to_string())
    .execute(c)
    .await?;
    Ok(id)
}

/// Records `events` in one statement; a no-op for none.
pub async fn append_many(c: &mut Conn, events: &[NewEvent<'_>]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let values: Vec<String> = (0..events.len())
        .map(|n| {
            let p: Vec<String> = (1..=7).map(|k| format!("${}", n * 7 + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO events (id, at, account_id, resource_type, resource_id, action, data) \
         VALUES {}",
        values.join(", ")
    )));
    for e in events {
        q = q
            .bind(ids::event(e.at))
            .bind(e.at)
            .bind(e.account_id)
            .bind(e.resource_type)
            .bind(e.resource_id)
            .bind(e.action)
            .bind(e.data.to_string());
    }
    q.execute(c).await?;
    Ok(())
}

fn from_row(r: AnyRow) -> Result<Event> {
    let data: String = r.try_get("data")?;
    Ok(Event {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        account_id: r.try_get("account_id")?,
        resource_type: r.try_get("resource_type")?,
        resource_id: r.try_get("resource_id")?,
        action: r.try_get("action")?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

const COLUMNS: &str = "id, at, account_id, resource_type, resource_id, action, data";

/// The events of an account's resources of `types` before `before`, in the
/// order they happened. Rows are decoded as they stream in, beside the
/// database's own work.
pub async fn of_account(
    c: &mut Conn,
    account_id: &str,
    types: &[&str],
    before: i64,
) -> Result<Vec<Event>> {
    of_account_between(c, account_id, types, 0, before).await
}

/// The same, from `from` on.
pub async fn of_account_between(
    c: &mut Conn,
    account_id: &str,
    types: &[&str],
    from: i64,
    before: i64,
) -> Result<Vec<Event>> {
    use futures::TryStreamExt;
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE account_id = $1 AND id >= $2 AND id < $3 \
         AND resource_type IN ({}) ORDER BY id",
        placeholders.join(", ")
    );
    // Ids begin with `ev-` and the time in 16 hex digits: these bounds are
    // `from <= at < before`.
    let bound = |at: i64| format!("ev-{:016x}", at.max(0));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account_id)
        .bind(bound(from))
        .bind(bound(before));
    for kind in types {
        q = q.bind(*kind);
    }
    let mut rows = q.fetch(c);
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await? {
        out.push(from_row(r)?);
    }
    Ok(out)
}

/// A resource's events in the order they happened.
pub async fn for_resource(c: &mut Conn, resource_id: &str) -> Result<Vec<Event>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE resource_id = $1 ORDER BY id"
    )))
    .bind(resource_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(from_row)
    .collect()
}

/// Claims a batch of counts to record as events in this transaction; false
/// if it was recorded before.
pub async fn claim_batch(c: &mut Conn, name: &str, at: i64) -> Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO usage_batches (name, recorded_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(at)
    .execute(c)
    .await?;
    Ok(claimed.rows_affected() == 1)
}
