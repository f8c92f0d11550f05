//! Object versions. A key's versions are ordered by `seq`; exactly one is the
//! latest (which may be a delete marker). Storage changes are events, in the same
//! transaction, for metering (GB-seconds).

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

/// The version id of objects written while versioning is off or suspended.
pub const NULL_VERSION: &str = "null";

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    pub bucket_id: String,
    pub key: String,
    pub version_id: String,
    pub seq: i64,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: i64,
    pub etag: String,
    /// Where the data is, as JSON (files and their sizes, in order); `[]` for
    /// inline data and delete markers.
    pub segments: String,
    /// The data itself, for small objects; not loaded by listings.
    pub inline_data: Option<Vec<u8>>,
    pub content_type: Option<String>,
    /// Metadata as JSON: user metadata, content headers, checksums, part count.
    pub meta: String,
    pub created_at: i64,
}

const LISTED: &str = "bucket_id, object_key, version_id, seq, is_latest, delete_marker, size, \
                      etag, segments, content_type, meta, created_at";

fn from_row(r: &AnyRow) -> Result<ObjectRow> {
    Ok(ObjectRow {
        bucket_id: r.try_get("bucket_id")?,
        key: r.try_get("object_key")?,
        version_id: r.try_get("version_id")?,
        seq: r.try_get("seq")?,
        is_latest: r.try_get::<i64, _>("is_latest")? != 0,
        delete_marker: r.try_get::<i64, _>("delete_marker")? != 0,
        size: r.try_get("size")?,
        etag: r.try_get("etag")?,
        segments: r.try_get("segments")?,
        inline_data: None,
        content_type: r.try_get("content_type")?,
        meta: r.try_get("meta")?,
        created_at: r.try_get("created_at")?,
    })
}

fn with_data(r: &AnyRow) -> Result<ObjectRow> {
    Ok(ObjectRow {
        inline_data: r.try_get("inline_data")?,
        ..from_row(r)?
    })
}

async fn append(
    c: &mut Conn,
    account_id: &str,
    o: &ObjectRow,
    at: i64,
    action: &str,
) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(account_id),
            resource_type: "object",
            resource_id: &o.bucket_id,
            action,
            data: json!({ "key": o.key, "version_id": o.version_id, "size": o.size }),
        },
    )
    .await?;
    Ok(())
}

/// The latest version of a key (possibly a delete marker), with its data.
pub async fn latest(c: &mut Conn, bucket_id: &str, key: &str) -> Result<Option<ObjectRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED}, inline_data FROM objects \
             WHERE bucket_id = $1 AND object_key = $2 AND is_latest = 1"
        )))
        .bind(bucket_id)
        .bind(key),
        with_data,
    )
    .await
}

/// One version of a key, with its data.
pub async fn version(
    c: &mut Conn,
    bucket_id: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<ObjectRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED}, inline_data FROM objects \
             WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3"
        )))
        .bind(bucket_id)
        .bind(key)
        .bind(version_id),
        with_data,
    )
    .await
}

/// Makes `row` the latest version of its key, its `seq` raised past the versions
/// before it if the clock went back. With `replace_null`, the key's `null`
/// version (if any) is removed first. Returns the removed rows, whose files the
/// caller deletes once the transaction has committed.
///
/// Every PUT runs this: the lookups ride on `RETURNING` so that it costs three
/// statements and its event.
pub async fn put(
    c: &mut Conn,
    account_id: &str,
    row: &mut ObjectRow,
    replace_null: bool,
) -> Result<Vec<ObjectRow>> {
    let mut removed = Vec::new();
    if replace_null {
        removed = crate::fetch_all(
            &mut *c,
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM objects WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3 \
                 RETURNING {LISTED}"
            )))
            .bind(&row.bucket_id)
            .bind(&row.key)
            .bind(NULL_VERSION),
            from_row,
        )
        .await?;
        for old in removed.iter().filter(|old| !old.delete_marker) {
            append(c, account_id, old, row.created_at, "removed").await?;
        }
    }
    let previous: Vec<i64> = sqlx::query_scalar(
        "UPDATE objects SET is_latest = 0 \
         WHERE bucket_id = $1 AND object_key = $2 AND is_latest = 1 RETURNING seq",
    )
    .bind(&row.bucket_id)
    .bind(&row.key)
    .fetch_all(&mut *c)
    .await?;
    let last = previous
        .into_iter()
        .chain(removed.iter().map(|old| old.seq))
        .max();
    if let Some(last) = last {
        row.seq = row.seq.max(last + 1);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO objects ({LISTED}, inline_data) \
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $11, $12)"
    )))
    .bind(&row.bucket_id)
    .bind(&row.key)
    .bind(&row.version_id)
    .bind(row.seq)
    .bind(i64::from(row.delete_marker))
    .bind(row.size)
    .bind(&row.etag)
    .bind(&row.segments)
    .bind(&row.content_type)
    .bind(&row.meta)
    .bind(row.created_at)
    .bind(&row.inline_data)
    .execute(&mut *c)
    .await?;
    if !row.delete_marker {
        append(c, account_id, row, row.created_at, "stored").await?;
    }
    Ok(removed)
}

/// Deletes one version; if it was the latest, the next newest becomes latest.
/// Returns the deleted row.
pub async fn remove_version(
    c: &mut Conn,
    account_id: &str,
    bucket_id: &str,
    key: &str,
    version_id: &str,
    at: i64,
) -> Result<Option<ObjectRow>> {
    let Some(old) = version(&mut *c, bucket_id, key, version_id).await? else {
        return Ok(None);
    };
    sqlx::query("DELETE FROM objects WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3")
        .bind(bucket_id)
        .bind(key)
        .bind(version_id)
        .execute(&mut *c)
        .await?;
    if old.is_latest {
        sqlx::query(
            "UPDATE objects SET is_latest = 1 WHERE bucket_id = $1 AND object_key = $2 AND seq = \
             (SELECT MAX(seq) FROM objects WHERE bucket_id = $1 AND object_key = $2)",
        )
        .bind(bucket_id)
        .bind(key)
        .execute(&mut *c)
        .await?;
    }
    if !old.delete_marker {
        append(c, account_id, &old, at, "removed").await?;
    }
    Ok(Some(old))
}

/// Latest versions that are not delete markers, with keys after `after` and from
/// `from` on, in key order.
pub async fn list_latest(
    c: &mut Conn,
    bucket_id: &str,
    after: &str,
    from: &str,
    limit: i64,
) -> Result<Vec<ObjectRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED} FROM objects \
             WHERE bucket_id = $1 AND is_latest = 1 AND delete_marker = 0 \
               AND object_key > $2 AND object_key >= $3 \
             ORDER BY object_key LIMIT $4"
        )))
        .bind(bucket_id)
        .bind(after)
        .bind(from)
        .bind(limit),
        from_row,
    )
    .await
}

/// Every version, keys from `from_key` on (newest version of a key first).
pub async fn list_versions(
    c: &mut Conn,
    bucket_id: &str,
    from_key: &str,
    limit: i64,
) -> Result<Vec<ObjectRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED} FROM objects WHERE bucket_id = $1 AND object_key >= $2 \
             ORDER BY object_key, seq DESC LIMIT $3"
        )))
        .bind(bucket_id)
        .bind(from_key)
        .bind(limit),
        from_row,
    )
    .await
}

/// Every file any object version uses, as stored (JSON segment lists).
pub async fn all_segments(c: &mut Conn) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT segments FROM objects WHERE segments <> '[]'")
            .fetch_all(c)
            .await?,
    )
}
