//! Private tenant networks, and the addresses (IPAM) their instances hold: each
//! instance keeps one stable address for its life, released when it is gone.

use std::net::Ipv4Addr;

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, PageQuery, Paged, Result, StoreError, ids};

/// The network every account has in each region, made on first use.
pub const DEFAULT_NAME: &str = "default";
/// Its address range, the one AWS gives default VPCs.
pub const DEFAULT_CIDR: &str = "172.31.0.0/16";
/// Addresses at the start of every network that instances never get: the
/// network itself, the gateway, and the network's DHCP and metadata services.
pub const RESERVED_LOW: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub cidr: String,
    pub is_default: bool,
    pub created_at: i64,
    /// The VXLAN id that carries it between hosts (24 bits), chosen by
    /// [`insert`].
    pub vni: i64,
}

/// The VXLAN ids networks may have.
const VNIS: std::ops::RangeInclusive<u64> = 1..=0x00ff_ffff;

impl NetworkRow {
    /// The address instances route through: the range's first host address.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        parse_cidr(&self.cidr).map(|(base, _)| Ipv4Addr::from(base + 1))
    }

    pub fn prefix(&self) -> Option<u32> {
        parse_cidr(&self.cidr).map(|(_, prefix)| prefix)
    }

    /// The first and last addresses instances may hold (the last of the range
    /// is its broadcast address); `None` for a malformed CIDR.
    pub fn assignable(&self) -> Option<(u32, u32)> {
        let (base, prefix) = parse_cidr(&self.cidr)?;
        let size = 1u64 << (32 - prefix);
        let first = u64::from(base) + u64::from(RESERVED_LOW);
        let last = u64::from(base) + size - 2;
        (first <= last).then_some((first as u32, last as u32))
    }
}

/// `a.b.c.d/n` as its base address and prefix length, if well formed with no
/// host bits set.
pub fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let base = u32::from(addr);
    let host_mask = u32::MAX.checked_shr(prefix).unwrap_or(0);
    (base & host_mask == 0).then_some((base, prefix))
}

fn from_row(r: &AnyRow) -> Result<NetworkRow> {
    Ok(NetworkRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        cidr: r.try_get("cidr")?,
        is_default: r.try_get::<i64, _>("is_default")? != 0,
        created_at: r.try_get("created_at")?,
        vni: r.try_get::<Option<i64>, _>("vni")?.unwrap_or_default(),
    })
}

const COLUMNS: &str = "id, account_id, name, cidr, is_default, created_at, vni";

async fn append(c: &mut Conn, n: &NetworkRow, at: i64, action: &str) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(&n.account_id),
            resource_type: "network",
            resource_id: &n.id,
            action,
            data: json!({ "name": n.name, "cidr": n.cidr }),
        },
    )
    .await?;
    Ok(())
}

/// Records a network with its default security group. `StoreError::Conflict`
/// when the account has a network of that name.
pub async fn insert(c: &mut Conn, n: &mut NetworkRow) -> Result<()> {
    n.vni = free_vni(&mut *c).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO networks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(&n.id)
    .bind(&n.account_id)
    .bind(&n.name)
    .bind(&n.cidr)
    .bind(i64::from(n.is_default))
    .bind(n.created_at)
    .bind(n.vni)
    .execute(&mut *c)
    .await?;
    append(&mut *c, n, n.created_at, "created").await?;
    crate::security_groups::default_for(c, n, n.created_at).await?;
    Ok(())
}

/// A VXLAN id no network has: random, so that concurrent creations rarely
/// meet (the unique index refuses the rare pair that does).
async fn free_vni(c: &mut Conn) -> Result<i64> {
    for _ in 0..16 {
        let vni = (VNIS.start() + ids::random_u64() % (VNIS.end() - VNIS.start() + 1)) as i64;
        let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM networks WHERE vni = $1")
            .bind(vni)
            .fetch_one(&mut *c)
            .await?;
        if taken == 0 {
            return Ok(vni);
        }
    }
    Err(StoreError::Conflict("no free VXLAN id found".into()))
}

/// The account's network with this id, or else this name.
pub async fn get(c: &mut Conn, account_id: &str, id_or_name: &str) -> Result<Option<NetworkRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM networks WHERE account_id = $1 AND (id = $2 OR name = $2) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1"
        )))
        .bind(account_id)
        .bind(id_or_name),
        from_row,
    )
    .await
}

/// The account's default network, made now if it has none yet.
pub async fn default_for(c: &mut Conn, account_id: &str, at: i64) -> Result<NetworkRow> {
    if let Some(n) = get(&mut *c, account_id, DEFAULT_NAME).await? {
        return Ok(n);
    }
    let mut n = NetworkRow {
        id: ids::new("net"),
        account_id: account_id.to_string(),
        name: DEFAULT_NAME.into(),
        cidr: DEFAULT_CIDR.into(),
        is_default: true,
        created_at: at,
        vni: 0,
    };
    insert(c, &mut n).await?;
    Ok(n)
}

/// The account's networks by id.
pub async fn list(c: &mut Conn, account_id: &str, page: &PageQuery) -> Result<Paged<NetworkRow>> {
    let rows = crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM networks WHERE account_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        )))
        .bind(account_id)
        .bind(page.after())
        .bind(page.fetch_limit()),
        from_row,
    )
    .await?;
    Ok(Paged::from_rows(rows, page, |n| &n.id))
}

/// Deletes a network that holds no addresses, with its security groups.
/// `StoreError::Conflict` while instances use it.
pub async fn delete(c: &mut Conn, n: &NetworkRow, at: i64) -> Result<()> {
    let used: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM network_addresses WHERE network_id = $1")
            .bind(&n.id)
            .fetch_one(&mut *c)
            .await?;
    if used > 0 {
        return Err(StoreError::Conflict(format!(
            "{used} instance(s) still use the network"
        )));
    }
    sqlx::query(
        "DELETE FROM security_group_rules WHERE group_id IN \
         (SELECT id FROM security_groups WHERE network_id = $1)",
    )
    .bind(&n.id)
    .execute(&mut *c)
    .await?;
    sqlx::query("DELETE FROM security_groups WHERE network_id = $1")
        .bind(&n.id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM networks WHERE id = $1")
        .bind(&n.id)
        .execute(&mut *c)
        .await?;
    append(c, n, at, "deleted").await
}

/// Gives `instance_id` the lowest free address of `n`; `None` when the network
/// is full.
pub async fn allocate(c: &mut Conn, n: &NetworkRow, instance_id: &str) -> Result<Option<Ipv4Addr>> {
    let Some((first, last)) = n.assignable() else {
        return Err(StoreError::Corrupt(format!(
            "network {} has CIDR {:?}",
            n.id, n.cidr
        )));
    };
    // Writing the network's row holds it until commit (PostgreSQL locks the row,
    // SQLite the database), so that concurrent launches into one network take
    // turns rather than pick the same address.
    sqlx::query("UPDATE networks SET cidr = cidr WHERE id = $1")
        .bind(&n.id)
        .execute(&mut *c)
        .await?;
    let taken: Vec<i64> = sqlx::query_scalar(
        "SELECT address FROM network_addresses WHERE network_id = $1 ORDER BY address",
    )
    .bind(&n.id)
    .fetch_all(&mut *c)
    .await?;
    let mut candidate = i64::from(first);
    for t in taken {
        if t > candidate {
            break;
        }
        if t == candidate {
            candidate += 1;
        }
    }
    if candidate > i64::from(last) {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO network_addresses (network_id, address, instance_id) VALUES ($1, $2, $3)",
    )
    .bind(&n.id)
    .bind(candidate)
    .bind(instance_id)
    .execute(c)
    .await?;
    Ok(Some(Ipv4Addr::from(candidate as u32)))
}

/// A port of an instance published on its host's address.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedPort {
    pub instance_id: String,
    pub port: i64,
    /// `host:port`, where the host accepts connections for it.
    pub address: String,
    pub created_at: i64,
}

/// Records a published port; publishing one again keeps the first record.
pub async fn publish(c: &mut Conn, account_id: &str, p: &PublishedPort) -> Result<PublishedPort> {
    let earlier = published(&mut *c, &p.instance_id)
        .await?
        .into_iter()
        .find(|q| q.port == p.port);
    if let Some(earlier) = earlier {
        return Ok(earlier);
    }
    sqlx::query(
        "INSERT INTO published_ports (instance_id, port, address, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&p.instance_id)
    .bind(p.port)
    .bind(&p.address)
    .bind(p.created_at)
    .execute(&mut *c)
    .await?;
    events::append(
        c,
        NewEvent {
            at: p.created_at,
            account_id: Some(account_id),
            resource_type: "instance",
            resource_id: &p.instance_id,
            action: "port.published",
            data: json!({ "port": p.port, "address": p.address }),
        },
    )
    .await?;
    Ok(p.clone())
}

/// The published ports of an instance, by port.
pub async fn published(c: &mut Conn, instance_id: &str) -> Result<Vec<PublishedPort>> {
    crate::fetch_all(
        c,
        sqlx::query(
            "SELECT instance_id, port, address, created_at FROM published_ports \
             WHERE instance_id = $1 ORDER BY port",
        )
        .bind(instance_id),
        |r| {
            Ok(PublishedPort {
                instance_id: r.try_get("instance_id")?,
                port: r.try_get("port")?,
                address: r.try_get("address")?,
                created_at: r.try_get("created_at")?,
            })
        },
    )
    .await
}

/// Frees the address (and the published ports and group memberships) of an
/// instance that is gone; a no-op if it held none.
pub async fn release(c: &mut Conn, instance_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM instance_security_groups WHERE instance_id = $1")
        .bind(instance_id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM published_ports WHERE instance_id = $1")
        .bind(instance_id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM network_addresses WHERE instance_id = $1")
        .bind(instance_id)
        .execute(c)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_only_without_host_bits() {
        assert_eq!(parse_cidr("10.20.0.0/24"), Some((0x0a14_0000, 24)));
        assert_eq!(parse_cidr("0.0.0.0/0"), Some((0, 0)));
        assert_eq!(parse_cidr("10.20.0.1/24"), None);
        assert_eq!(parse_cidr("10.20.0.0/33"), None);
        assert_eq!(parse_cidr("10.20.0.0"), None);
        assert_eq!(parse_cidr("10.300.0.0/16"), None);
    }

    #[test]
    fn instances_never_get_the_reserved_or_broadcast_addresses() {
        let n = |cidr: &str| NetworkRow {
            id: "net-x".into(),
            account_id: "acc-x".into(),
            name: "n".into(),
            cidr: cidr.into(),
            is_default: false,
            created_at: 0,
            vni: 1,
        };
        let range = n("10.0.0.0/28").assignable().unwrap();
        assert_eq!(
            (Ipv4Addr::from(range.0), Ipv4Addr::from(range.1)),
            ("10.0.0.4".parse().unwrap(), "10.0.0.14".parse().unwrap())
        );
        assert_eq!(n("10.0.0.0/30").assignable(), None);
    }
}
