//! Block volumes and their attachments.
//!
//! Like instances, a row carries a `version` bumped by every update
//! (optimistic concurrency between the API and the reconciler), and every
//! change of `state` or `attach_state` appends a `volume` event in the same
//! transaction: metering reads those for GB-seconds.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, PageQuery, Paged, Result};

pub const CREATING: &str = "creating";
pub const AVAILABLE: &str = "available";
pub const IN_USE: &str = "in-use";
pub const RESIZING: &str = "resizing";
pub const DELETING: &str = "deleting";
pub const DELETED: &str = "deleted";
pub const ERROR: &str = "error";

pub const ATTACHING: &str = "attaching";
pub const ATTACHED: &str = "attached";
pub const DETACHING: &str = "detaching";

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    pub id: String,
    pub account_id: String,
    pub name: Option<String>,
    pub size_gib: i64,
    /// The host that holds its file.
    pub host_id: Option<String>,
    pub state: String,
    pub state_reason: Option<String>,
    /// The image a root volume is a copy-on-write copy of.
    pub image_id: Option<String>,
    /// The snapshot it was restored from.
    pub snapshot_id: Option<String>,
    pub instance_id: Option<String>,
    pub attach_state: Option<String>,
    /// The instance's hot-plug slot it occupies (none for a root volume).
    pub slot: Option<i64>,
    /// It is (or was) the disk its instance boots from.
    pub is_root: bool,
    pub delete_on_termination: bool,
    /// The pending detach may pull it from a guest that does not let go.
    pub force_detach: bool,
    /// A JSON object of string values.
    pub tags: String,
    pub created_at: i64,
    pub state_changed_at: i64,
    pub version: i64,
    /// How far its copy has come, in percent, while one runs (written apart
    /// from the rest of the row: see `set_progress`).
    pub progress: Option<i64>,
}

impl VolumeRow {
    /// The volume's state with its attachment, as events and metering see it.
    fn describes_same(&self, other: &VolumeRow) -> bool {
        self.state == other.state
            && self.attach_state == other.attach_state
            && self.instance_id == other.instance_id
            && self.size_gib == other.size_gib
    }
}

fn from_row(r: &AnyRow) -> Result<VolumeRow> {
    Ok(VolumeRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        size_gib: r.try_get("size_gib")?,
        host_id: r.try_get("host_id")?,
        state: r.try_get("state")?,
        state_reason: r.try_get("state_reason")?,
        image_id: r.try_get("image_id")?,
        snapshot_id: r.try_get("snapshot_id")?,
        instance_id: r.try_get("instance_id")?,
        attach_state: r.try_get("attach_state")?,
        slot: r.try_get("slot")?,
        is_root: r.try_get::<i64, _>("is_root")? != 0,
        delete_on_termination: r.try_get::<i64, _>("delete_on_termination")? != 0,
        force_detach: r.try_get::<i64, _>("force_detach")? != 0,
        tags: r.try_get("tags")?,
        created_at: r.try_get("created_at")?,
        state_changed_at: r.try_get("state_changed_at")?,
        version: r.try_get("version")?,
        progress: r.try_get("progress")?,
    })
}

const COLUMNS: &str = "id, account_id, name, size_gib, host_id, state, state_reason, image_id, \
                       snapshot_id, instance_id, attach_state, slot, is_root, \
                       delete_on_termination, force_detach, tags, created_at, state_changed_at, \
                       version";

async fn append_state(c: &mut Conn, v: &VolumeRow) -> Result<()> {
    let action = format!("state.{}", v.state);
    events::append(
        c,
        NewEvent {
            at: v.state_changed_at,
            account_id: Some(&v.account_id),
            resource_type: "volume",
            resource_id: &v.id,
            action: &action,
            data: json!({
                "size_gib": v.size_gib,
                "host_id": v.host_id,
                "instance_id": v.instance_id,
                "attach_state": v.attach_state,
                "reason": v.state_reason,
            }),
        },
    )
    .await?;
    Ok(())
}

pub async fn insert(c: &mut Conn, v: &VolumeRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO volumes ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19)"
    )))
    .bind(&v.id)
    .bind(&v.account_id)
    .bind(&v.name)
    .bind(v.size_gib)
    .bind(&v.host_id)
    .bind(&v.state)
    .bind(&v.state_reason)
    .bind(&v.image_id)
    .bind(&v.snapshot_id)
    .bind(&v.instance_id)
    .bind(&v.attach_state)
    .bind(v.slot)
    .bind(i64::from(v.is_root))
    .bind(i64::from(v.delete_on_termination))
    .bind(i64::from(v.force_detach))
    .bind(&v.tags)
    .bind(v.created_at)
    .bind(v.state_changed_at)
    .bind(v.version)
    .execute(&mut *c)
    .await?;
    append_state(c, v).await
}

/// A volume of `account_id` that is not deleted; another account's is `None`.
pub async fn get(c: &mut Conn, account_id: &str, id: &str) -> Result<Option<VolumeRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes WHERE id = $1 AND account_id = $2 AND state <> 'deleted'"
        )))
        .bind(id)
        .bind(account_id),
        from_row,
    )
    .await
}

/// Any volume by id, for the reconciler.
pub async fn get_any(c: &mut Conn, id: &str) -> Result<Option<VolumeRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes WHERE id = $1"
        )))
        .bind(id),
        from_row,
    )
    .await
}

pub async fn list(c: &mut Conn, account_id: &str, page: &PageQuery) -> Result<Paged<VolumeRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, progress FROM volumes \
         WHERE account_id = $1 AND id > $2 AND state <> 'deleted' ORDER BY id LIMIT $3"
    )))
    .bind(account_id)
    .bind(page.after())
    .bind(page.fetch_limit())
    .fetch_all(c)
    .await?;
    let volumes = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(Paged::from_rows(volumes, page, |v| &v.id))
}

/// The volumes attached (or attaching, or detaching) to an instance, root first.
pub async fn of_instance(c: &mut Conn, instance_id: &str) -> Result<Vec<VolumeRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes WHERE instance_id = $1 \
             ORDER BY is_root DESC, slot, id"
        )))
        .bind(instance_id),
        from_row,
    )
    .await
}

/// Volumes a reconciler must act on, oldest change first.
pub async fn unsettled(c: &mut Conn, limit: i64) -> Result<Vec<VolumeRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes \
             WHERE state IN ('creating', 'resizing', 'deleting') \
                OR attach_state IN ('attaching', 'detaching') \
             ORDER BY state_changed_at LIMIT $1"
        )))
        .bind(limit),
        from_row,
    )
    .await
}

/// Volumes made by `made_by` (microseconds) whose file its host holds (or
/// held when they began to be deleted), for a backup to copy.
pub async fn with_files(c: &mut Conn, made_by: i64) -> Result<Vec<VolumeRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes \
             WHERE state IN ('available', 'in-use', 'resizing', 'deleting') \
               AND host_id IS NOT NULL AND created_at <= $1 \
             ORDER BY id"
        )))
        .bind(made_by),
        from_row,
    )
    .await
}

/// Volumes attached to instances (not attaching or detaching).
pub async fn attached(c: &mut Conn) -> Result<Vec<VolumeRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes WHERE attach_state = 'attached' ORDER BY id"
        ))),
        from_row,
    )
    .await
}

/// The volumes whose files a host holds.
pub async fn on_host(c: &mut Conn, host_id: &str) -> Result<Vec<VolumeRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes WHERE host_id = $1 AND state <> 'deleted' ORDER BY id"
        )))
        .bind(host_id),
        from_row,
    )
    .await
}

/// Every volume of an account that is not deleted.
pub async fn live_of_account(c: &mut Conn, account_id: &str) -> Result<Vec<VolumeRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, progress FROM volumes WHERE account_id = $1 AND state <> 'deleted' ORDER BY id"
        )))
        .bind(account_id),
        from_row,
    )
    .await
}

/// Writes `next` over `prev` if nobody changed the row since `prev` was read;
/// appends an event when its state, attachment or size changed. `None` when
/// `prev` is stale.
pub async fn update(
    c: &mut Conn,
    prev: &VolumeRow,
    mut next: VolumeRow,
) -> Result<Option<VolumeRow>> {
    next.version = prev.version + 1;
    let n = sqlx::query(
        "UPDATE volumes SET name = $1, size_gib = $2, host_id = $3, state = $4, \
                state_reason = $5, instance_id = $6, attach_state = $7, slot = $8, \
                is_root = $9, delete_on_termination = $10, force_detach = $11, tags = $12, \
                state_changed_at = $13, version = $14 \
         WHERE id = $15 AND version = $16",
    )
    .bind(&next.name)
    .bind(next.size_gib)
    .bind(&next.host_id)
    .bind(&next.state)
    .bind(&next.state_reason)
    .bind(&next.instance_id)
    .bind(&next.attach_state)
    .bind(next.slot)
    .bind(i64::from(next.is_root))
    .bind(i64::from(next.delete_on_termination))
    .bind(i64::from(next.force_detach))
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
    if !next.describes_same(prev) {
        append_state(c, &next).await?;
    }
    Ok(Some(next))
}

/// Forgets deleted volumes whose deletion is older than `before`; their events stay.
pub async fn purge_deleted(c: &mut Conn, before: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM volumes WHERE state = 'deleted' AND state_changed_at < $1")
            .bind(before)
            .execute(c)
            .await?
            .rows_affected(),
    )
}

/// Records how far the copy of `id` has come, in percent, while it is still
/// being made: a write of its own, so that it never races the row's updates.
pub async fn set_progress(c: &mut Conn, id: &str, percent: i64) -> Result<()> {
    sqlx::query("UPDATE volumes SET progress = $1 WHERE id = $2 AND state = $3")
        .bind(percent)
        .bind(id)
        .bind(CREATING)
        .execute(&mut *c)
        .await?;
    Ok(())
}
