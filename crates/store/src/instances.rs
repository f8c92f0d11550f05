//! Instances and their state machine's persistence.
//!
//! A row holds what the user asked for (`desired_state`) and what is true
//! (`state`); reconcilers close the gap. Every state change bumps `version`
//! (optimistic concurrency between the API and the reconcilers) and appends a
//! `state.<new state>` event in the same transaction: metering reads those.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, PageQuery, Paged, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub id: String,
    pub account_id: String,
    pub name: Option<String>,
    pub image_id: String,
    pub instance_type: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub host_id: Option<String>,
    pub state: String,
    pub desired_state: String,
    pub state_reason: Option<String>,
    pub user_data: Option<String>,
    pub key_name: Option<String>,
    pub ssh_public_key: Option<String>,
    pub network_id: Option<String>,
    pub private_ip: Option<String>,
    /// The metadata service answers only requests with an IMDSv2 token.
    pub metadata_tokens_required: bool,
    pub launch_id: String,
    pub launched_at: i64,
    pub state_changed_at: i64,
    pub version: i64,
}

fn from_row(r: &AnyRow) -> Result<InstanceRow> {
    Ok(InstanceRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        image_id: r.try_get("image_id")?,
        instance_type: r.try_get("instance_type")?,
        vcpus: r.try_get("vcpus")?,
        memory_mib: r.try_get("memory_mib")?,
        host_id: r.try_get("host_id")?,
        state: r.try_get("state")?,
        desired_state: r.try_get("desired_state")?,
        state_reason: r.try_get("state_reason")?,
        user_data: r.try_get("user_data")?,
        key_name: r.try_get("key_name")?,
        ssh_public_key: r.try_get("ssh_public_key")?,
        network_id: r.try_get("network_id")?,
        private_ip: r.try_get("private_ip")?,
        metadata_tokens_required: r.try_get::<i64, _>("metadata_tokens_required")? != 0,
        launch_id: r.try_get("launch_id")?,
        launched_at: r.try_get("launched_at")?,
        state_changed_at: r.try_get("state_changed_at")?,
        version: r.try_get("version")?,
    })
}

const COLUMNS: &str = "id, account_id, name, image_id, instance_type, vcpus, memory_mib, host_id, \
                       state, desired_state, state_reason, user_data, key_name, ssh_public_key, \
                       network_id, private_ip, metadata_tokens_required, launch_id, launched_at, \
                       state_changed_at, version";

async fn append_state(c: &mut Conn, i: &InstanceRow) -> Result<()> {
    let action = format!("state.{}", i.state);
    events::append(
        c,
        NewEvent {
            at: i.state_changed_at,
            account_id: Some(&i.account_id),
            resource_type: "instance",
            resource_id: &i.id,
            action: &action,
            data: json!({
                "instance_type": i.instance_type,
                "vcpus": i.vcpus,
                "memory_mib": i.memory_mib,
                "host_id": i.host_id,
                "reason": i.state_reason,
            }),
        },
    )
    .await?;
    Ok(())
}

pub async fn insert(c: &mut Conn, i: &InstanceRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO instances ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20, $21)"
    )))
    .bind(&i.id)
    .bind(&i.account_id)
    .bind(&i.name)
    .bind(&i.image_id)
    .bind(&i.instance_type)
    .bind(i.vcpus)
    .bind(i.memory_mib)
    .bind(&i.host_id)
    .bind(&i.state)
    .bind(&i.desired_state)
    .bind(&i.state_reason)
    .bind(&i.user_data)
    .bind(&i.key_name)
    .bind(&i.ssh_public_key)
    .bind(&i.network_id)
    .bind(&i.private_ip)
    .bind(i64::from(i.metadata_tokens_required))
    .bind(&i.launch_id)
    .bind(i.launched_at)
    .bind(i.state_changed_at)
    .bind(i.version)
    .execute(&mut *c)
    .await?;
    append_state(c, i).await
}

/// An instance of `account_id`; another account's instance is `None`, like a missing one.
pub async fn get(c: &mut Conn, account_id: &str, id: &str) -> Result<Option<InstanceRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM instances WHERE id = $1 AND account_id = $2"
        )))
        .bind(id)
        .bind(account_id),
        from_row,
    )
    .await
}

/// Any instance by id, for reconcilers.
pub async fn get_any(c: &mut Conn, id: &str) -> Result<Option<InstanceRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM instances WHERE id = $1"
        )))
        .bind(id),
        from_row,
    )
    .await
}

pub async fn list(
    c: &mut Conn,
    account_id: &str,
    state: Option<&str>,
    page: &PageQuery,
) -> Result<Paged<InstanceRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances \
         WHERE account_id = $1 AND id > $2 AND ($3 = '' OR state = $3) ORDER BY id LIMIT $4"
    )))
    .bind(account_id)
    .bind(page.after())
    .bind(state.unwrap_or(""))
    .bind(page.fetch_limit())
    .fetch_all(c)
    .await?;
    let instances = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(Paged::from_rows(instances, page, |i| &i.id))
}

/// The instances one launch created, in launch order.
pub async fn by_launch(
    c: &mut Conn,
    account_id: &str,
    launch_id: &str,
) -> Result<Vec<InstanceRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM instances WHERE account_id = $1 AND launch_id = $2 ORDER BY id"
        )))
        .bind(account_id)
        .bind(launch_id),
        from_row,
    )
    .await
}

/// Instances mid-transition, which a reconciler must drive on, oldest change first.
pub async fn unsettled(c: &mut Conn, limit: i64) -> Result<Vec<InstanceRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM instances \
         WHERE state IN ('pending', 'stopping', 'shutting-down') \
         ORDER BY state_changed_at LIMIT $1"
        )))
        .bind(limit),
        from_row,
    )
    .await
}

/// Instances placed on `host_id` that are not terminated.
pub async fn on_host(c: &mut Conn, host_id: &str) -> Result<Vec<InstanceRow>> {
    crate::fetch_all(c, sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances WHERE host_id = $1 AND state <> 'terminated' ORDER BY id"
    )))
    .bind(host_id), from_row).await
}

/// Every instance of an account that is not terminated.
pub async fn live_of_account(c: &mut Conn, account_id: &str) -> Result<Vec<InstanceRow>> {
    crate::fetch_all(c, sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances WHERE account_id = $1 AND state <> 'terminated' ORDER BY id"
    )))
    .bind(account_id), from_row).await
}

/// Writes `next` over `prev` if nobody changed the row since `prev` was read.
/// Appends a state event when the state changed. Returns the stored row, or
/// `None` when `prev` is stale (the caller re-reads and decides again).
pub async fn update(
    c: &mut Conn,
    prev: &InstanceRow,
    mut next: InstanceRow,
) -> Result<Option<InstanceRow>> {
    next.version = prev.version + 1;
    let n = sqlx::query(
        "UPDATE instances SET host_id = $1, state = $2, desired_state = $3, state_reason = $4, \
                state_changed_at = $5, version = $6 \
         WHERE id = $7 AND version = $8",
    )
    .bind(&next.host_id)
    .bind(&next.state)
    .bind(&next.desired_state)
    .bind(&next.state_reason)
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

/// Forgets terminated instances whose last change is older than `before`; their
/// events stay. Returns how many went.
pub async fn purge_terminated(c: &mut Conn, before: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM instances WHERE state = 'terminated' AND state_changed_at < $1")
            .bind(before)
            .execute(c)
            .await?
            .rows_affected(),
    )
}

/// The launch an idempotency token names, with the hash of its request.
pub async fn launch_token(
    c: &mut Conn,
    account_id: &str,
    client_token: &str,
) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT launch_id, request_hash FROM launch_tokens WHERE account_id = $1 AND client_token = $2",
    )
    .bind(account_id)
    .bind(client_token)
    .fetch_optional(c)
    .await?;
    row.map(|r| Ok((r.try_get("launch_id")?, r.try_get("request_hash")?)))
        .transpose()
}

pub async fn insert_launch_token(
    c: &mut Conn,
    account_id: &str,
    client_token: &str,
    request_hash: &str,
    launch_id: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO launch_tokens (account_id, client_token, request_hash, launch_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account_id)
    .bind(client_token)
    .bind(request_hash)
    .bind(launch_id)
    .bind(at)
    .execute(c)
    .await?;
    Ok(())
}

/// How many instances the region holds in each state.
pub async fn count_by_state(c: &mut Conn) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM instances GROUP BY state")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
        .collect()
}
