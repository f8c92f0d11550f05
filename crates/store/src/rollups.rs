//! Usage rolled up by the day, and each account's mark: how far its events
//! are rolled up, with the checkpoint metering goes on from. A roll-up and
//! its mark are written in one transaction, so a crash repeats nothing.

use futures::TryStreamExt;
use sqlx::Row;

use crate::events::Event;
use crate::{Conn, Result, StoreError};

/// Up to when an account's events are rolled up, and the events that carry
/// what its resources held then.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub through: i64,
    pub checkpoint: Vec<Event>,
}

/// One day's usage of one resource on one meter at one price.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub day: i64,
    pub resource_type: String,
    pub resource_id: String,
    pub meter: String,
    pub unit_price: i64,
    pub quantity: u128,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn checkpoint_json(events: &[Event]) -> String {
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::json!([e.id, e.at, e.resource_type, e.resource_id, e.action, e.data]))
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn checkpoint_events(text: &str, account_id: &str) -> Result<Vec<Event>> {
    type Row = (String, i64, String, String, String, serde_json::Value);
    let rows: Vec<Row> = serde_json::from_str(text).map_err(corrupt)?;
    Ok(rows
        .into_iter()
        .map(|(id, at, resource_type, resource_id, action, data)| Event {
            id,
            at,
            account_id: Some(account_id.to_string()),
            resource_type,
            resource_id,
            action,
            data,
        })
        .collect())
}

/// The account's mark; none before its first roll-up.
pub async fn mark(c: &mut Conn, account_id: &str) -> Result<Option<Mark>> {
    let row = sqlx::query("SELECT through, checkpoint FROM metering_marks WHERE account_id = $1")
        .bind(account_id)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let text: String = r.try_get("checkpoint")?;
            Ok(Some(Mark {
                through: r.try_get("through")?,
                checkpoint: checkpoint_events(&text, account_id)?,
            }))
        }
    }
}

/// The account's days in `[from, to)`, in order.
pub async fn days(c: &mut Conn, account_id: &str, from: i64, to: i64) -> Result<Vec<Day>> {
    let mut rows = sqlx::query(
        "SELECT day, resource_type, resource_id, meter, unit_price, quantity FROM usage_days \
         WHERE account_id = $1 AND day >= $2 AND day < $3 ORDER BY day, resource_id, meter",
    )
    .bind(account_id)
    .bind(from)
    .bind(to)
    .fetch(c);
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await? {
        let quantity: String = r.try_get("quantity")?;
        out.push(Day {
            day: r.try_get("day")?,
            resource_type: r.try_get("resource_type")?,
            resource_id: r.try_get("resource_id")?,
            meter: r.try_get("meter")?,
            unit_price: r.try_get("unit_price")?,
            quantity: quantity.parse().map_err(corrupt)?,
        });
    }
    Ok(out)
}

/// The account's compute hours in `[from, to)`.
pub async fn hours(c: &mut Conn, account_id: &str, from: i64, to: i64) -> Result<Vec<(i64, u128)>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT hour, amount FROM compute_hours \
         WHERE account_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
    )
    .bind(account_id)
    .bind(from)
    .bind(to)
    .fetch_all(c)
    .await?;
    rows.into_iter()
        .map(|(hour, amount)| Ok((hour, amount.parse().map_err(corrupt)?)))
        .collect()
}

/// Writes a roll-up and moves the mark from `from` (none: the first) to
/// `mark`. `StoreError::Conflict` if another roll-up moved it first.
pub async fn write(
    c: &mut Conn,
    account_id: &str,
    from: Option<i64>,
    mark: &Mark,
    days: &[Day],
    hours: &[(i64, u128)],
) -> Result<()> {
    let moved =
        match from {
            None => sqlx::query(
                "INSERT INTO metering_marks (account_id, through, checkpoint) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id) DO NOTHING",
            )
            .bind(account_id)
            .bind(mark.through)
            .bind(checkpoint_json(&mark.checkpoint))
            .execute(&mut *c)
            .await?,
            Some(from) => {
                sqlx::query(
                    "UPDATE metering_marks SET through = $1, checkpoint = $2 \
                 WHERE account_id = $3 AND through = $4",
                )
                .bind(mark.through)
                .bind(checkpoint_json(&mark.checkpoint))
                .bind(account_id)
                .bind(from)
                .execute(&mut *c)
                .await?
            }
        };
    if moved.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "the usage of {account_id} was rolled up meanwhile"
        )));
    }
    for chunk in days.chunks(400) {
        let values: Vec<String> = (0..chunk.len())
            .map(|n| {
                let p: Vec<String> = (1..=7).map(|k| format!("${}", n * 7 + k)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO usage_days \
             (account_id, day, resource_type, resource_id, meter, unit_price, quantity) VALUES {}",
            values.join(", ")
        )));
        for d in chunk {
            q = q
                .bind(account_id)
                .bind(d.day)
                .bind(&d.resource_type)
                .bind(&d.resource_id)
                .bind(&d.meter)
                .bind(d.unit_price)
                .bind(d.quantity.to_string());
        }
        q.execute(&mut *c).await?;
    }
    for (hour, amount) in hours {
        sqlx::query("INSERT INTO compute_hours (account_id, hour, amount) VALUES ($1, $2, $3)")
            .bind(account_id)
            .bind(hour)
            .bind(amount.to_string())
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}
