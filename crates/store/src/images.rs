//! Images: public ones the region offers, private ones an account registered.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, PageQuery, Paged, Result};

pub const PUBLIC: &str = "public";
pub const PRIVATE: &str = "private";
/// Registered, files not yet all uploaded.
pub const PENDING: &str = "pending";
pub const AVAILABLE: &str = "available";
pub const DELETED: &str = "deleted";

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub id: String,
    /// `None` for public images.
    pub account_id: Option<String>,
    pub name: String,
    pub visibility: String,
    pub description: String,
    /// How a host boots it (driver-specific JSON).
    pub spec: String,
    pub state: String,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<ImageRow> {
    Ok(ImageRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        visibility: r.try_get("visibility")?,
        description: r.try_get("description")?,
        spec: r.try_get("spec")?,
        state: r.try_get("state")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, account_id, name, visibility, description, spec, state, created_at";

/// Registers a public image by name, or updates its description and spec. Returns its id.
pub async fn upsert_public(
    c: &mut Conn,
    new_id: &str,
    name: &str,
    description: &str,
    spec: &str,
    at: i64,
) -> Result<ImageRow> {
    let existing = crate::fetch_optional(
        &mut *c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM images WHERE name = $1 AND visibility = $2"
        )))
        .bind(name)
        .bind(PUBLIC),
        from_row,
    )
    .await?;
    if let Some(mut image) = existing {
        if image.description != description || image.spec != spec {
            sqlx::query("UPDATE images SET description = $1, spec = $2 WHERE id = $3")
                .bind(description)
                .bind(spec)
                .bind(&image.id)
                .execute(&mut *c)
                .await?;
            image.description = description.to_string();
            image.spec = spec.to_string();
            append(c, &image, at, "updated").await?;
        }
        return Ok(image);
    }
    let image = ImageRow {
        id: new_id.to_string(),
        account_id: None,
        name: name.to_string(),
        visibility: PUBLIC.to_string(),
        description: description.to_string(),
        spec: spec.to_string(),
        state: AVAILABLE.to_string(),
        created_at: at,
    };
    insert(c, &image).await?;
    Ok(image)
}

/// Records a new image (public or private). `StoreError::Conflict` when the
/// account already has a private image of that name.
pub async fn insert(c: &mut Conn, image: &ImageRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO images ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )))
    .bind(&image.id)
    .bind(&image.account_id)
    .bind(&image.name)
    .bind(&image.visibility)
    .bind(&image.description)
    .bind(&image.spec)
    .bind(&image.state)
    .bind(image.created_at)
    .execute(&mut *c)
    .await?;
    append(c, image, image.created_at, "registered").await
}

/// Moves an image to `state` with its final boot spec.
pub async fn set_state(
    c: &mut Conn,
    image: &ImageRow,
    state: &str,
    spec: &str,
    at: i64,
) -> Result<ImageRow> {
    sqlx::query("UPDATE images SET state = $1, spec = $2 WHERE id = $3")
        .bind(state)
        .bind(spec)
        .bind(&image.id)
        .execute(&mut *c)
        .await?;
    let next = ImageRow {
        state: state.to_string(),
        spec: spec.to_string(),
        ..image.clone()
    };
    let action = format!("state.{state}");
    append(c, &next, at, &action).await?;
    Ok(next)
}

/// Points the files of private images at `to` instead of `from` (their
/// folder, when a restored region lives in another data dir); how many.
pub async fn relocate_private(c: &mut Conn, from: &str, to: &str) -> Result<u64> {
    let moved = sqlx::query(
        "UPDATE images SET spec = REPLACE(spec, $1, $2) \
         WHERE visibility = 'private' AND spec LIKE $3",
    )
    .bind(from)
    .bind(to)
    .bind(format!("%{from}%"))
    .execute(&mut *c)
    .await?;
    Ok(moved.rows_affected())
}

/// Whether instances that are not terminated boot from the image, or
/// volumes that are not deleted are copies of its disk (which they read).
pub async fn in_use(c: &mut Conn, image_id: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM instances WHERE image_id = $1 AND state <> 'terminated') \
              + (SELECT COUNT(*) FROM volumes WHERE image_id = $1 AND state <> 'deleted')",
    )
    .bind(image_id)
    .fetch_one(c)
    .await?;
    Ok(n > 0)
}

async fn append(c: &mut Conn, image: &ImageRow, at: i64, action: &str) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: image.account_id.as_deref(),
            resource_type: "image",
            resource_id: &image.id,
            action,
            data: json!({ "name": image.name, "visibility": image.visibility }),
        },
    )
    .await?;
    Ok(())
}

/// An image the account may use, by id or (for public images) by name.
pub async fn visible(c: &mut Conn, account_id: &str, id_or_name: &str) -> Result<Option<ImageRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM images \
         WHERE state <> 'deleted' AND ((id = $1 AND (account_id IS NULL OR account_id = $2)) \
            OR (name = $1 AND visibility = $3)) \
         ORDER BY visibility LIMIT 1"
        )))
        .bind(id_or_name)
        .bind(account_id)
        .bind(PUBLIC),
        from_row,
    )
    .await
}

/// Images the account may use: public ones and its own.
pub async fn list_visible(
    c: &mut Conn,
    account_id: &str,
    page: &PageQuery,
) -> Result<Paged<ImageRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM images WHERE (account_id IS NULL OR account_id = $1) AND id > $2 \
         AND state <> 'deleted' \
         ORDER BY id LIMIT $3"
    )))
    .bind(account_id)
    .bind(page.after())
    .bind(page.fetch_limit())
    .fetch_all(c)
    .await?;
    let images = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(Paged::from_rows(images, page, |i| &i.id))
}

/// Any image by id, for hosts that boot it.
pub async fn get(c: &mut Conn, id: &str) -> Result<Option<ImageRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM images WHERE id = $1"
        )))
        .bind(id),
        from_row,
    )
    .await
}
