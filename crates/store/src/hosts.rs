//! The host registry: what each host has, and what is allocated on it.
//!
//! Allocation is a conditional UPDATE on the host's row, so two schedulers (or two
//! `nubod` replicas) can never overcommit a host.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

pub const ACTIVE: &str = "active";

#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub state: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub used_vcpus: i64,
    pub used_memory_mib: i64,
    pub used_disk_gib: i64,
    pub instances: i64,
    pub created_at: i64,
}

impl HostRow {
    pub fn free_vcpus(&self) -> i64 {
        self.vcpus - self.used_vcpus
    }

    pub fn free_memory_mib(&self) -> i64 {
        self.memory_mib - self.used_memory_mib
    }
}

fn from_row(r: &AnyRow) -> Result<HostRow> {
    Ok(HostRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        driver: r.try_get("driver")?,
        state: r.try_get("state")?,
        vcpus: r.try_get("vcpus")?,
        memory_mib: r.try_get("memory_mib")?,
        disk_gib: r.try_get("disk_gib")?,
        used_vcpus: r.try_get("used_vcpus")?,
        used_memory_mib: r.try_get("used_memory_mib")?,
        used_disk_gib: r.try_get("used_disk_gib")?,
        instances: r.try_get("instances")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, name, driver, state, vcpus, memory_mib, disk_gib, used_vcpus, \
                       used_memory_mib, used_disk_gib, instances, created_at";

/// Registers a host by name, or updates the driver and capacity of a known one
/// (a host that restarts keeps its id and its allocations). Returns the row.
pub async fn register(
    c: &mut Conn,
    new_id: &str,
    name: &str,
    driver: &str,
    capacity: (i64, i64, i64),
    at: i64,
) -> Result<HostRow> {
    let (vcpus, memory_mib, disk_gib) = capacity;
    let existing = by_name(&mut *c, name).await?;
    let action = if existing.is_some() {
        "updated"
    } else {
        "registered"
    };
    sqlx::query(
        "INSERT INTO hosts (id, name, driver, state, vcpus, memory_mib, disk_gib, used_vcpus, \
                            used_memory_mib, used_disk_gib, instances, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 0, $8) \
         ON CONFLICT (name) DO UPDATE SET driver = excluded.driver, vcpus = excluded.vcpus, \
             memory_mib = excluded.memory_mib, disk_gib = excluded.disk_gib",
    )
    .bind(new_id)
    .bind(name)
    .bind(driver)
    .bind(ACTIVE)
    .bind(vcpus)
    .bind(memory_mib)
    .bind(disk_gib)
    .bind(at)
    .execute(&mut *c)
    .await?;
    let host = by_name(&mut *c, name)
        .await?
        .expect("the host row was just written");
    if existing.as_ref() != Some(&host) {
        events::append(
            c,
            NewEvent {
                at,
                account_id: None,
                resource_type: "host",
                resource_id: &host.id,
                action,
                data: json!({ "name": name, "driver": driver, "vcpus": vcpus,
                              "memory_mib": memory_mib, "disk_gib": disk_gib }),
            },
        )
        .await?;
    }
    Ok(host)
}

async fn by_name(c: &mut Conn, name: &str) -> Result<Option<HostRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM hosts WHERE name = $1"
        )))
        .bind(name),
        from_row,
    )
    .await
}

pub async fn get(c: &mut Conn, id: &str) -> Result<Option<HostRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM hosts WHERE id = $1"
        )))
        .bind(id),
        from_row,
    )
    .await
}

pub async fn list(c: &mut Conn) -> Result<Vec<HostRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM hosts ORDER BY name"
        ))),
        from_row,
    )
    .await
}

/// Takes `vcpus` and `memory_mib` on the host if it is active and has them free.
pub async fn allocate(c: &mut Conn, id: &str, vcpus: i64, memory_mib: i64) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE hosts SET used_vcpus = used_vcpus + $1, used_memory_mib = used_memory_mib + $2, \
                instances = instances + 1 \
         WHERE id = $3 AND state = $4 AND used_vcpus + $1 <= vcpus \
           AND used_memory_mib + $2 <= memory_mib",
    )
    .bind(vcpus)
    .bind(memory_mib)
    .bind(id)
    .bind(ACTIVE)
    .execute(c)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Gives back what `allocate` took.
pub async fn release(c: &mut Conn, id: &str, vcpus: i64, memory_mib: i64) -> Result<()> {
    sqlx::query(
        "UPDATE hosts SET \
             used_vcpus = CASE WHEN used_vcpus > $1 THEN used_vcpus - $1 ELSE 0 END, \
             used_memory_mib = CASE WHEN used_memory_mib > $2 THEN used_memory_mib - $2 ELSE 0 END, \
             instances = CASE WHEN instances > 0 THEN instances - 1 ELSE 0 END \
         WHERE id = $3",
    )
    .bind(vcpus)
    .bind(memory_mib)
    .bind(id)
    .execute(c)
    .await?;
    Ok(())
}

/// Takes `gib` of the host's volume disk if it is active and has it free
/// (`gib` may be negative, to give some back).
pub async fn allocate_disk(c: &mut Conn, id: &str, gib: i64) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE hosts SET used_disk_gib = used_disk_gib + $1 \
         WHERE id = $2 AND state = $3 AND used_disk_gib + $1 <= disk_gib",
    )
    .bind(gib)
    .bind(id)
    .bind(ACTIVE)
    .execute(c)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Gives back what `allocate_disk` took.
pub async fn release_disk(c: &mut Conn, id: &str, gib: i64) -> Result<()> {
    sqlx::query(
        "UPDATE hosts SET \
             used_disk_gib = CASE WHEN used_disk_gib > $1 THEN used_disk_gib - $1 ELSE 0 END \
         WHERE id = $2",
    )
    .bind(gib)
    .bind(id)
    .execute(c)
    .await?;
    Ok(())
}

/// Sets a host's state (`active`, `draining`, `unreachable`).
pub async fn set_state(c: &mut Conn, id: &str, state: &str, at: i64) -> Result<bool> {
    let n = sqlx::query("UPDATE hosts SET state = $1 WHERE id = $2 AND state <> $1")
        .bind(state)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected();
    if n == 1 {
        let action = format!("state.{state}");
        events::append(
            c,
            NewEvent {
                at,
                account_id: None,
                resource_type: "host",
                resource_id: id,
                action: &action,
                data: json!({}),
            },
        )
        .await?;
    }
    Ok(n == 1)
}
