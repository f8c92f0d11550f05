//! SSH key pairs. Only the public half is ever stored.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, PageQuery, Paged, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct KeyPairRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub key_type: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<KeyPairRow> {
    Ok(KeyPairRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        key_type: r.try_get("key_type")?,
        public_key: r.try_get("public_key")?,
        fingerprint: r.try_get("fingerprint")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, account_id, name, key_type, public_key, fingerprint, created_at";

async fn append(c: &mut Conn, k: &KeyPairRow, at: i64, action: &str) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(&k.account_id),
            resource_type: "key_pair",
            resource_id: &k.id,
            action,
            data: json!({ "name": k.name, "fingerprint": k.fingerprint }),
        },
    )
    .await?;
    Ok(())
}

/// `StoreError::Conflict` when the account has a key pair of that name.
pub async fn insert(c: &mut Conn, k: &KeyPairRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO key_pairs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(&k.id)
    .bind(&k.account_id)
    .bind(&k.name)
    .bind(&k.key_type)
    .bind(&k.public_key)
    .bind(&k.fingerprint)
    .bind(k.created_at)
    .execute(&mut *c)
    .await?;
    append(c, k, k.created_at, "created").await
}

pub async fn get(c: &mut Conn, account_id: &str, name: &str) -> Result<Option<KeyPairRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM key_pairs WHERE account_id = $1 AND name = $2"
        )))
        .bind(account_id)
        .bind(name),
        from_row,
    )
    .await
}

/// The account's key pairs by name.
pub async fn list(c: &mut Conn, account_id: &str, page: &PageQuery) -> Result<Paged<KeyPairRow>> {
    let rows = crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM key_pairs WHERE account_id = $1 AND name > $2 \
             ORDER BY name LIMIT $3"
        )))
        .bind(account_id)
        .bind(page.after())
        .bind(page.fetch_limit()),
        from_row,
    )
    .await?;
    Ok(Paged::from_rows(rows, page, |k| &k.name))
}

/// Deletes a key pair; false if the account has none of that name.
pub async fn delete(c: &mut Conn, account_id: &str, name: &str, at: i64) -> Result<bool> {
    let Some(k) = get(&mut *c, account_id, name).await? else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM key_pairs WHERE id = $1")
        .bind(&k.id)
        .execute(&mut *c)
        .await?;
    append(c, &k, at, "deleted").await?;
    Ok(true)
}
