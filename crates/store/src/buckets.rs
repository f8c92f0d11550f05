//! Buckets: names unique in the region, owned by one account.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

pub const PRIVATE: &str = "private";
pub const PUBLIC_READ: &str = "public-read";

#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    pub id: String,
    pub name: String,
    pub account_id: String,
    pub region: String,
    /// `""` (never enabled), `Enabled` or `Suspended`.
    pub versioning: String,
    pub acl: String,
    /// The bucket policy document, if set.
    pub policy: Option<String>,
    /// CORS rules as JSON, if set.
    pub cors: Option<String>,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<BucketRow> {
    Ok(BucketRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        account_id: r.try_get("account_id")?,
        region: r.try_get("region")?,
        versioning: r.try_get("versioning")?,
        acl: r.try_get("acl")?,
        policy: r.try_get("policy")?,
        cors: r.try_get("cors")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, name, account_id, region, versioning, acl, policy, cors, created_at";

async fn append(c: &mut Conn, b: &BucketRow, at: i64, action: &str) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(&b.account_id),
            resource_type: "bucket",
            resource_id: &b.id,
            action,
            data: json!({ "name": b.name, "versioning": b.versioning, "acl": b.acl }),
        },
    )
    .await?;
    Ok(())
}

/// `StoreError::Conflict` when the name is taken in this region.
pub async fn insert(c: &mut Conn, b: &BucketRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO buckets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(&b.id)
    .bind(&b.name)
    .bind(&b.account_id)
    .bind(&b.region)
    .bind(&b.versioning)
    .bind(&b.acl)
    .bind(&b.policy)
    .bind(&b.cors)
    .bind(b.created_at)
    .execute(&mut *c)
    .await?;
    append(c, b, b.created_at, "created").await
}

pub async fn by_name(c: &mut Conn, name: &str) -> Result<Option<BucketRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM buckets WHERE name = $1"
        )))
        .bind(name),
        from_row,
    )
    .await
}

pub async fn of_account(c: &mut Conn, account_id: &str) -> Result<Vec<BucketRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM buckets WHERE account_id = $1 ORDER BY name"
        )))
        .bind(account_id),
        from_row,
    )
    .await
}

/// Whether the bucket holds any object version or delete marker (incomplete
/// multipart uploads do not count: deleting a bucket aborts them).
pub async fn is_empty(c: &mut Conn, id: &str) -> Result<bool> {
    let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM objects WHERE bucket_id = $1 LIMIT 1")
        .bind(id)
        .fetch_optional(c)
        .await?;
    Ok(any.is_none())
}

pub async fn delete(c: &mut Conn, b: &BucketRow, at: i64) -> Result<()> {
    sqlx::query("DELETE FROM buckets WHERE id = $1")
        .bind(&b.id)
        .execute(&mut *c)
        .await?;
    append(c, b, at, "deleted").await
}

/// Writes a bucket's settings (versioning, ACL, policy, CORS).
pub async fn update(c: &mut Conn, b: &BucketRow, at: i64, action: &str) -> Result<()> {
    sqlx::query(
        "UPDATE buckets SET versioning = $1, acl = $2, policy = $3, cors = $4 WHERE id = $5",
    )
    .bind(&b.versioning)
    .bind(&b.acl)
    .bind(&b.policy)
    .bind(&b.cors)
    .bind(&b.id)
    .execute(&mut *c)
    .await?;
    append(c, b, at, action).await
}
