//! Snapshots of volumes: point-in-time copies made of content-addressed chunks
//! kept in the region's object storage. The store holds which chunk is at
//! which position of each snapshot; a chunk's file may go only when no
//! snapshot refers to it any more.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, PageQuery, Paged, Result};

pub const PENDING: &str = "pending";
pub const COMPLETED: &str = "completed";
pub const DELETING: &str = "deleting";
pub const DELETED: &str = "deleted";
pub const ERROR: &str = "error";

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub id: String,
    pub account_id: String,
    pub volume_id: String,
    pub volume_size_gib: i64,
    pub description: String,
    pub state: String,
    pub state_reason: Option<String>,
    /// Bytes per chunk; every chunk but the last has this size.
    pub chunk_size: i64,
    /// Bytes of the chunks it refers to that are not all zeros.
    pub stored_bytes: i64,
    /// A JSON object of string values.
    pub tags: String,
    pub created_at: i64,
    pub state_changed_at: i64,
    pub version: i64,
    /// How far its copy has come, in percent, while one runs (written apart
    /// from the rest of the row: see `set_progress`).
    pub progress: Option<i64>,
}

fn from_row(r: &AnyRow) -> Result<SnapshotRow> {
    Ok(SnapshotRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        volume_id: r.try_get("volume_id")?,
        volume_size_gib: r.try_get("volume_size_gib")?,
        description: r.try_get("description")?,
        state: r.try_get("state")?,
        state_reason: r.try_get("state_reason")?,
        chunk_size: r.try_get("chunk_size")?,
        stored_bytes: r.try_get("stored_bytes")?,
        tags: r.try_get("tags")?,
        created_at: r.try_get("created_at")?,
        state_changed_at: r.try_get("state_changed_at")?,
        version: r.try_get("version")?,
        progress: r.try_get("progress")?,
    })
}

const COLUMNS: &str = "id, account_id, volume_id, volume_size_gib, description, state, \
                       state_reason, chunk_size, stored_bytes, tags, created_at, \
                       state_changed_at, version";

async fn append_state(c: &mut Conn, s: &SnapshotRow) -> Result<()> {
    let action = format!("state.{}", s.state);
    events::append(
        c,
        NewEvent {
            at: s.state_changed_at,
            account_id: Some(&s.account_id),
            resource_type: "snapshot",
            resource_id: &s.id,
            action: &action,
            data: json!({
                "volume_id": s.volume_id,
                "volume_size_gib": s.volume_size_gib,
                "stored_bytes": s.stored_bytes,
                "reason": s.state_reason,
            }),
        },
    )
    .await?;
    Ok(())
}

pub async fn insert(c: &mut Conn, s: &SnapshotRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO snapshots ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )))
    .bind(&s.id)
    .bind(&s.account_id)
    .bind(&s.volume_id)
    .bind(s.volume_size_gib)
    .bind(&s.description)
    .bind(&s.state)
    .bind(&s.state_reason)
    .bind(s.chunk_size)
    .bind(s.stored_bytes)
    .bind(&s.tags)
    .bind(s.created_at)
    .bind(s.state_changed_at)
    .bind(s.version)
    .execute(&mut *c)
    .await?;
    append_state(c, s).await
}

/// A snapshot of `account_id` that is not deleted; another account's is `None`.
pub async fn get(c: &mut Conn, account_id: &str, id: &str) -> Result<Option<SnapshotRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM snapshots \
             WHERE id = $1 AND account_id = $2 AND state <> 'deleted'"
        )))
        .bind(id)
        .bind(account_id),
        from_row,
    )
    .await
}

pub async fn get_any(c: &mut Conn, id: &str) -> Result<Option<SnapshotRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM snapshots WHERE id = $1"
        )))
        .bind(id),
        from_row,
    )
    .await
}

pub async fn list(
    c: &mut Conn,
    account_id: &str,
    volume_id: Option<&str>,
    page: &PageQuery,
) -> Result<Paged<SnapshotRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, progress FROM snapshots \
         WHERE account_id = $1 AND id > $2 AND state <> 'deleted' \
           AND ($3 = '' OR volume_id = $3) ORDER BY id LIMIT $4"
    )))
    .bind(account_id)
    .bind(page.after())
    .bind(volume_id.unwrap_or(""))
    .bind(page.fetch_limit())
    .fetch_all(c)
    .await?;
    let snapshots = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(Paged::from_rows(snapshots, page, |s| &s.id))
}

/// Snapshots a reconciler must act on, oldest change first.
pub async fn unsettled(c: &mut Conn, limit: i64) -> Result<Vec<SnapshotRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM snapshots WHERE state IN ('pending', 'deleting') \
             ORDER BY state_changed_at LIMIT $1"
        )))
        .bind(limit),
        from_row,
    )
    .await
}

/// Every snapshot of an account that is not deleted.
pub async fn live_of_account(c: &mut Conn, account_id: &str) -> Result<Vec<SnapshotRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM snapshots WHERE account_id = $1 AND state <> 'deleted' ORDER BY id"
        )))
        .bind(account_id),
        from_row,
    )
    .await
}

/// Snapshots of a volume still being taken.
pub async fn pending_of_volume(c: &mut Conn, volume_id: &str) -> Result<Vec<SnapshotRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM snapshots WHERE volume_id = $1 AND state = 'pending'"
        )))
        .bind(volume_id),
        from_row,
    )
    .await
}

/// Writes `next` over `prev` if nobody changed the row since; appends an
/// event when the state changed. `None` when `prev` is stale.
pub async fn update(
    c: &mut Conn,
    prev: &SnapshotRow,
    mut next: SnapshotRow,
) -> Result<Option<SnapshotRow>> {
    next.version = prev.version + 1;
    let n = sqlx::query(
        "UPDATE snapshots SET description = $1, state = $2, state_reason = $3, \
                chunk_size = $4, stored_bytes = $5, tags = $6, state_changed_at = $7, \
                version = $8 \
         WHERE id = $9 AND version = $10",
    )
    .bind(&next.description)
    .bind(&next.state)
    .bind(&next.state_reason)
    .bind(next.chunk_size)
    .bind(next.stored_bytes)
    .bind(&next.tags)
    .bind(next.state_changed_at)
    .bind(next.version)
    .bind(&prev.id)
    .bind(prev.version)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    if next.state != prev.state {
        append_state(c, &next).await?;
    }
    Ok(Some(next))
}

/// Records the chunks of a snapshot being completed: `(position, hash)`.
pub async fn set_chunks(c: &mut Conn, snapshot_id: &str, chunks: &[(i64, String)]) -> Result<()> {
    sqlx::query("DELETE FROM snapshot_chunks WHERE snapshot_id = $1")
        .bind(snapshot_id)
        .execute(&mut *c)
        .await?;
    // Batches keep each statement under both engines' parameter limits.
    for batch in chunks.chunks(300) {
        let values: Vec<String> = (0..batch.len())
            .map(|n| format!("(${}, ${}, ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3))
            .collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO snapshot_chunks (snapshot_id, position, hash) VALUES {}",
            values.join(", ")
        )));
        for (position, hash) in batch {
            q = q.bind(snapshot_id).bind(*position).bind(hash);
        }
        q.execute(&mut *c).await?;
    }
    Ok(())
}

/// The chunks of a snapshot, by position.
pub async fn chunks(c: &mut Conn, snapshot_id: &str) -> Result<Vec<(i64, String)>> {
    let rows = sqlx::query(
        "SELECT position, hash FROM snapshot_chunks WHERE snapshot_id = $1 ORDER BY position",
    )
    .bind(snapshot_id)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("position")?, r.try_get("hash")?)))
        .collect()
}

/// Drops a snapshot's chunk rows and returns the hashes no other snapshot
/// refers to, whose files may now go.
pub async fn release_chunks(c: &mut Conn, snapshot_id: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT hash FROM snapshot_chunks WHERE snapshot_id = $1 \
           AND hash NOT IN (SELECT hash FROM snapshot_chunks WHERE snapshot_id <> $1)",
    )
    .bind(snapshot_id)
    .fetch_all(&mut *c)
    .await?;
    let orphans = rows
        .iter()
        .map(|r| r.try_get("hash").map_err(Into::into))
        .collect::<Result<Vec<String>>>()?;
    sqlx::query("DELETE FROM snapshot_chunks WHERE snapshot_id = $1")
        .bind(snapshot_id)
        .execute(c)
        .await?;
    Ok(orphans)
}

/// Every chunk some snapshot refers to.
pub async fn all_hashes(c: &mut Conn) -> Result<std::collections::HashSet<String>> {
    let rows = sqlx::query("SELECT DISTINCT hash FROM snapshot_chunks")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| r.try_get("hash").map_err(Into::into))
        .collect()
}

/// Forgets deleted snapshots whose deletion is older than `before`.
pub async fn purge_deleted(c: &mut Conn, before: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM snapshots WHERE state = 'deleted' AND state_changed_at < $1")
            .bind(before)
            .execute(c)
            .await?
            .rows_affected(),
    )
}

/// Records how far the copy of `id` has come, in percent, while it is still
/// being made: a write of its own, so that it never races the row's updates.
pub async fn set_progress(c: &mut Conn, id: &str, percent: i64) -> Result<()> {
    sqlx::query("UPDATE snapshots SET progress = $1 WHERE id = $2 AND state = $3")
        .bind(percent)
        .bind(id)
        .bind(PENDING)
        .execute(&mut *c)
        .await?;
    Ok(())
}
