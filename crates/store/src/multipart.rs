//! Multipart uploads and their parts, until completed or aborted. Parts take
//! storage until then, so they are metered as objects are: `stored` and
//! `removed` events of type `part` on the bucket, with their sizes.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    pub id: String,
    pub bucket_id: String,
    pub key: String,
    /// What the object will carry (content type, user metadata …), as JSON.
    pub meta: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartRow {
    pub upload_id: String,
    pub part_number: i64,
    pub size: i64,
    pub etag: String,
    pub blob_id: String,
    pub checksums: String,
    pub created_at: i64,
}

fn upload(r: &AnyRow) -> Result<UploadRow> {
    Ok(UploadRow {
        id: r.try_get("id")?,
        bucket_id: r.try_get("bucket_id")?,
        key: r.try_get("object_key")?,
        meta: r.try_get("meta")?,
        created_at: r.try_get("created_at")?,
    })
}

fn part(r: &AnyRow) -> Result<PartRow> {
    Ok(PartRow {
        upload_id: r.try_get("upload_id")?,
        part_number: r.try_get("part_number")?,
        size: r.try_get("size")?,
        etag: r.try_get("etag")?,
        blob_id: r.try_get("blob_id")?,
        checksums: r.try_get("checksums")?,
        created_at: r.try_get("created_at")?,
    })
}

const UPLOAD: &str = "id, bucket_id, object_key, meta, created_at";
const PART: &str = "upload_id, part_number, size, etag, blob_id, checksums, created_at";

pub async fn create(c: &mut Conn, account_id: &str, u: &UploadRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO multipart_uploads ({UPLOAD}) VALUES ($1, $2, $3, $4, $5)"
    )))
    .bind(&u.id)
    .bind(&u.bucket_id)
    .bind(&u.key)
    .bind(&u.meta)
    .bind(u.created_at)
    .execute(&mut *c)
    .await?;
    events::append(
        c,
        NewEvent {
            at: u.created_at,
            account_id: Some(account_id),
            resource_type: "multipart_upload",
            resource_id: &u.id,
            action: "created",
            data: json!({ "bucket_id": u.bucket_id, "key": u.key }),
        },
    )
    .await?;
    Ok(())
}

/// A change of the storage parts take, in bucket `bucket_id`.
fn part_event<'a>(
    account_id: &'a str,
    bucket_id: &'a str,
    at: i64,
    action: &'a str,
    data: serde_json::Value,
) -> NewEvent<'a> {
    NewEvent {
        at,
        account_id: Some(account_id),
        resource_type: "part",
        resource_id: bucket_id,
        action,
        data,
    }
}

pub async fn get(c: &mut Conn, bucket_id: &str, id: &str) -> Result<Option<UploadRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD} FROM multipart_uploads WHERE id = $1 AND bucket_id = $2"
        )))
        .bind(id)
        .bind(bucket_id),
        upload,
    )
    .await
}

/// Uploads of a bucket after (`key`, `id`), in key then id order.
pub async fn list(
    c: &mut Conn,
    bucket_id: &str,
    after_key: &str,
    after_id: &str,
    limit: i64,
) -> Result<Vec<UploadRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD} FROM multipart_uploads WHERE bucket_id = $1 \
             AND (object_key > $2 OR (object_key = $2 AND id > $3)) \
             ORDER BY object_key, id LIMIT $4"
        )))
        .bind(bucket_id)
        .bind(after_key)
        .bind(after_id)
        .bind(limit),
        upload,
    )
    .await
}

/// Uploads started before `before`, for the sweep of abandoned ones.
pub async fn older_than(c: &mut Conn, before: i64) -> Result<Vec<UploadRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD} FROM multipart_uploads WHERE created_at < $1 ORDER BY created_at"
        )))
        .bind(before),
        upload,
    )
    .await
}

/// Records a part of an upload in bucket `bucket_id`; returns the part it
/// replaced, if any (its file is garbage).
pub async fn put_part(
    c: &mut Conn,
    account_id: &str,
    bucket_id: &str,
    p: &PartRow,
) -> Result<Option<PartRow>> {
    let old = crate::fetch_optional(
        &mut *c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PART} FROM multipart_parts WHERE upload_id = $1 AND part_number = $2"
        )))
        .bind(&p.upload_id)
        .bind(p.part_number),
        part,
    )
    .await?;
    if old.is_some() {
        sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1 AND part_number = $2")
            .bind(&p.upload_id)
            .bind(p.part_number)
            .execute(&mut *c)
            .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO multipart_parts ({PART}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(&p.upload_id)
    .bind(p.part_number)
    .bind(p.size)
    .bind(&p.etag)
    .bind(&p.blob_id)
    .bind(&p.checksums)
    .bind(p.created_at)
    .execute(&mut *c)
    .await?;
    let sized = |q: &PartRow| json!({ "upload_id": q.upload_id, "part_number": q.part_number, "size": q.size });
    let mut log = Vec::new();
    if let Some(old) = &old {
        log.push(part_event(
            account_id,
            bucket_id,
            p.created_at,
            "removed",
            sized(old),
        ));
    }
    log.push(part_event(
        account_id,
        bucket_id,
        p.created_at,
        "stored",
        sized(p),
    ));
    events::append_many(c, &log).await?;
    Ok(old)
}

/// Parts of an upload from `after` on, in part-number order.
pub async fn parts(c: &mut Conn, upload_id: &str, after: i64, limit: i64) -> Result<Vec<PartRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PART} FROM multipart_parts WHERE upload_id = $1 AND part_number > $2 \
             ORDER BY part_number LIMIT $3"
        )))
        .bind(upload_id)
        .bind(after)
        .bind(limit),
        part,
    )
    .await
}

/// Removes an upload and its parts, as `action` (`completed` or `aborted`);
/// returns the parts (their files are the caller's to keep, when completed, or
/// to delete, when aborted).
pub async fn remove(c: &mut Conn, u: &UploadRow, at: i64, action: &str) -> Result<Vec<PartRow>> {
    let account_id: String = sqlx::query_scalar("SELECT account_id FROM buckets WHERE id = $1")
        .bind(&u.bucket_id)
        .fetch_one(&mut *c)
        .await?;
    let removed = parts(&mut *c, &u.id, 0, i64::MAX).await?;
    sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1")
        .bind(&u.id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM multipart_uploads WHERE id = $1")
        .bind(&u.id)
        .execute(&mut *c)
        .await?;
    let mut log = vec![NewEvent {
        at,
        account_id: Some(&account_id),
        resource_type: "multipart_upload",
        resource_id: &u.id,
        action,
        data: json!({ "bucket_id": u.bucket_id, "key": u.key, "parts": removed.len() }),
    }];
    if !removed.is_empty() {
        // One event for all the parts: an upload may have ten thousand.
        let size: i64 = removed.iter().map(|p| p.size).sum();
        let data = json!({ "upload_id": u.id, "parts": removed.len(), "size": size });
        log.push(part_event(&account_id, &u.bucket_id, at, "removed", data));
    }
    events::append_many(c, &log).await?;
    Ok(removed)
}

/// Aborts every upload of bucket `bucket_id` (as `remove` does one): their
/// rows and parts go, with the events that end their metering; returns the
/// parts, whose files the caller deletes once the transaction has committed.
pub async fn abort_all(
    c: &mut Conn,
    account_id: &str,
    bucket_id: &str,
    at: i64,
) -> Result<Vec<PartRow>> {
    let uploads = crate::fetch_all(
        &mut *c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD} FROM multipart_uploads WHERE bucket_id = $1 ORDER BY object_key, id"
        )))
        .bind(bucket_id),
        upload,
    )
    .await?;
    if uploads.is_empty() {
        return Ok(Vec::new());
    }
    let removed = crate::fetch_all(
        &mut *c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM multipart_parts WHERE upload_id IN \
             (SELECT id FROM multipart_uploads WHERE bucket_id = $1) RETURNING {PART}"
        )))
        .bind(bucket_id),
        part,
    )
    .await?;
    sqlx::query("DELETE FROM multipart_uploads WHERE bucket_id = $1")
        .bind(bucket_id)
        .execute(&mut *c)
        .await?;
    let mut of_upload: std::collections::HashMap<&str, (usize, i64)> = Default::default();
    for p in &removed {
        let entry = of_upload.entry(p.upload_id.as_str()).or_default();
        entry.0 += 1;
        entry.1 += p.size;
    }
    let mut log = Vec::new();
    for u in &uploads {
        let (parts, size) = of_upload.get(u.id.as_str()).copied().unwrap_or_default();
        log.push(NewEvent {
            at,
            account_id: Some(account_id),
            resource_type: "multipart_upload",
            resource_id: &u.id,
            action: "aborted",
            data: json!({ "bucket_id": u.bucket_id, "key": u.key, "parts": parts }),
        });
        if parts > 0 {
            let data = json!({ "upload_id": u.id, "parts": parts, "size": size });
            log.push(part_event(account_id, bucket_id, at, "removed", data));
        }
    }
    // Within both engines' limit of bound parameters per statement.
    for events in log.chunks(1000) {
        events::append_many(&mut *c, events).await?;
    }
    Ok(removed)
}

/// Every file a part uses.
pub async fn all_blobs(c: &mut Conn) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT blob_id FROM multipart_parts")
        .fetch_all(c)
        .await?)
}
