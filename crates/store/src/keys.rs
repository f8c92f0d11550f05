//! Access keys. The secret is stored sealed (encrypted with a key held outside the
//! store); this module never sees it in clear.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::accounts::AccountRow;
use crate::events::{self, NewEvent};
use crate::{Conn, PageQuery, Paged, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub id: String,
    pub account_id: String,
    pub scope: String,
    pub status: String,
    pub sealed_secret: String,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<KeyRow> {
    Ok(KeyRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        scope: r.try_get("scope")?,
        status: r.try_get("status")?,
        sealed_secret: r.try_get("sealed_secret")?,
        created_at: r.try_get("created_at")?,
    })
}

fn event<'a>(k: &'a KeyRow, at: i64, action: &'a str) -> NewEvent<'a> {
    NewEvent {
        at,
        account_id: Some(&k.account_id),
        resource_type: "access_key",
        resource_id: &k.id,
        action,
        data: json!({ "scope": k.scope, "status": k.status }),
    }
}

pub async fn insert(c: &mut Conn, k: &KeyRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_keys (id, account_id, scope, status, sealed_secret, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&k.id)
    .bind(&k.account_id)
    .bind(&k.scope)
    .bind(&k.status)
    .bind(&k.sealed_secret)
    .bind(k.created_at)
    .execute(&mut *c)
    .await?;
    events::append(c, event(k, k.created_at, "created")).await?;
    Ok(())
}

const COLUMNS: &str = "id, account_id, scope, status, sealed_secret, created_at";

/// A key of `account_id`; another account's key is `None`, like a missing one.
pub async fn get(c: &mut Conn, account_id: &str, id: &str) -> Result<Option<KeyRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM access_keys WHERE id = $1 AND account_id = $2"
        )))
        .bind(id)
        .bind(account_id),
        from_row,
    )
    .await
}

/// A key and its account, for authenticating a request.
pub async fn with_account(c: &mut Conn, id: &str) -> Result<Option<(KeyRow, AccountRow)>> {
    let row = sqlx::query(
        "SELECT k.id, k.account_id, k.scope, k.status AS key_status, k.sealed_secret, \
                k.created_at AS key_created_at, a.email, a.status, a.created_at, a.closed_at \
         FROM access_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let key = KeyRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        scope: r.try_get("scope")?,
        status: r.try_get("key_status")?,
        sealed_secret: r.try_get("sealed_secret")?,
        created_at: r.try_get("key_created_at")?,
    };
    let account = AccountRow {
        id: key.account_id.clone(),
        email: r.try_get("email")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        closed_at: r.try_get("closed_at")?,
    };
    Ok(Some((key, account)))
}

pub async fn list(c: &mut Conn, account_id: &str, page: &PageQuery) -> Result<Paged<KeyRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM access_keys WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    )))
    .bind(account_id)
    .bind(page.after())
    .bind(page.fetch_limit())
    .fetch_all(c)
    .await?;
    let keys = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(Paged::from_rows(keys, page, |k| &k.id))
}

/// Sets a key's status; returns the updated key, `None` if the account has no such key.
pub async fn set_status(
    c: &mut Conn,
    account_id: &str,
    id: &str,
    status: &str,
    at: i64,
) -> Result<Option<KeyRow>> {
    let Some(mut key) = get(&mut *c, account_id, id).await? else {
        return Ok(None);
    };
    if key.status != status {
        sqlx::query("UPDATE access_keys SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(id)
            .execute(&mut *c)
            .await?;
        key.status = status.to_string();
        let action = format!("status.{status}");
        events::append(c, event(&key, at, &action)).await?;
    }
    Ok(Some(key))
}

/// Deletes a key; false if the account has no such key.
pub async fn delete(c: &mut Conn, account_id: &str, id: &str, at: i64) -> Result<bool> {
    let Some(key) = get(&mut *c, account_id, id).await? else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM access_keys WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    events::append(c, event(&key, at, "deleted")).await?;
    Ok(true)
}

/// Disables every key of an account (when it closes); returns their ids.
pub async fn disable_all(c: &mut Conn, account_id: &str, at: i64) -> Result<Vec<String>> {
    let page = PageQuery {
        after: None,
        limit: u32::MAX - 1,
    };
    let keys = list(&mut *c, account_id, &page).await?.items;
    let mut ids = Vec::new();
    for key in keys.iter().filter(|k| k.status != "disabled") {
        set_status(&mut *c, account_id, &key.id, "disabled", at).await?;
        ids.push(key.id.clone());
    }
    Ok(ids)
}
