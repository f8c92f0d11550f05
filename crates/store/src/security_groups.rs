//! Security groups: the stateful firewalls of a network's instances. Each
//! group belongs to one network; an instance is a member of one or more groups
//! of its network, and what the rules of its groups let through is all that
//! reaches it (ingress) or leaves it (egress).

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::networks::NetworkRow;
use crate::{Conn, PageQuery, Paged, Result, StoreError, ids};

/// The group each network has, which instances join unless told otherwise.
pub const DEFAULT_NAME: &str = "default";

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub id: String,
    pub account_id: String,
    pub network_id: String,
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    pub id: String,
    pub group_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// The port range, for TCP and UDP only.
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    /// The peer: a CIDR, or else the members of a group of the same network.
    pub cidr: Option<String>,
    pub peer_group_id: Option<String>,
    pub created_at: i64,
}

const GROUP_COLUMNS: &str = "id, account_id, network_id, name, description, created_at";
const RULE_COLUMNS: &str =
    "id, group_id, direction, protocol, from_port, to_port, cidr, peer_group_id, created_at";

fn group_from_row(r: &AnyRow) -> Result<GroupRow> {
    Ok(GroupRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        network_id: r.try_get("network_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
    })
}

fn rule_from_row(r: &AnyRow) -> Result<RuleRow> {
    Ok(RuleRow {
        id: r.try_get("id")?,
        group_id: r.try_get("group_id")?,
        direction: r.try_get("direction")?,
        protocol: r.try_get("protocol")?,
        from_port: r.try_get("from_port")?,
        to_port: r.try_get("to_port")?,
        cidr: r.try_get("cidr")?,
        peer_group_id: r.try_get("peer_group_id")?,
        created_at: r.try_get("created_at")?,
    })
}

async fn append(
    c: &mut Conn,
    g: &GroupRow,
    at: i64,
    action: &str,
    data: serde_json::Value,
) -> Result<()> {
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(&g.account_id),
            resource_type: "security_group",
            resource_id: &g.id,
            action,
            data,
        },
    )
    .await?;
    Ok(())
}

/// Creates a group with the rules every new group starts with: everything in
/// from its own members, everything out. `StoreError::Conflict` when the
/// network has a group of that name.
pub async fn insert(c: &mut Conn, g: &GroupRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO security_groups ({GROUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    )))
    .bind(&g.id)
    .bind(&g.account_id)
    .bind(&g.network_id)
    .bind(&g.name)
    .bind(&g.description)
    .bind(g.created_at)
    .execute(&mut *c)
    .await?;
    append(
        c,
        g,
        g.created_at,
        "created",
        json!({ "name": g.name, "network_id": g.network_id }),
    )
    .await?;
    let rule = |direction: &str, cidr: Option<&str>, peer: Option<&str>| RuleRow {
        id: ids::new("sgr"),
        group_id: g.id.clone(),
        direction: direction.into(),
        protocol: "all".into(),
        from_port: None,
        to_port: None,
        cidr: cidr.map(str::to_string),
        peer_group_id: peer.map(str::to_string),
        created_at: g.created_at,
    };
    add_rule(c, g, &rule("ingress", None, Some(&g.id))).await?;
    add_rule(c, g, &rule("egress", Some("0.0.0.0/0"), None)).await?;
    Ok(())
}

/// The account's group with this id, or else this name. A name that groups of
/// several networks share is `StoreError::Conflict`: the caller must say which.
pub async fn get(c: &mut Conn, account_id: &str, id_or_name: &str) -> Result<Option<GroupRow>> {
    let rows = crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM security_groups \
             WHERE account_id = $1 AND (id = $2 OR name = $2) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END, id LIMIT 2"
        )))
        .bind(account_id)
        .bind(id_or_name),
        group_from_row,
    )
    .await?;
    match rows.as_slice() {
        [first, ..] if first.id == id_or_name => Ok(Some(first.clone())),
        [only] => Ok(Some(only.clone())),
        [] => Ok(None),
        _ => Err(StoreError::Conflict(format!(
            "groups of several networks are named {id_or_name:?}; give the group's id"
        ))),
    }
}

/// The group named `name` in a network.
pub async fn by_name(c: &mut Conn, network_id: &str, name: &str) -> Result<Option<GroupRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM security_groups WHERE network_id = $1 AND name = $2"
        )))
        .bind(network_id)
        .bind(name),
        group_from_row,
    )
    .await
}

/// The network's `default` group, made now if it has none yet.
pub async fn default_for(c: &mut Conn, n: &NetworkRow, at: i64) -> Result<GroupRow> {
    if let Some(g) = by_name(&mut *c, &n.id, DEFAULT_NAME).await? {
        return Ok(g);
    }
    let g = GroupRow {
        id: ids::new("sg"),
        account_id: n.account_id.clone(),
        network_id: n.id.clone(),
        name: DEFAULT_NAME.into(),
        description: format!("the default group of network {}", n.name),
        created_at: at,
    };
    insert(c, &g).await?;
    Ok(g)
}

/// The account's groups by id.
pub async fn list(c: &mut Conn, account_id: &str, page: &PageQuery) -> Result<Paged<GroupRow>> {
    let rows = crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM security_groups WHERE account_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        )))
        .bind(account_id)
        .bind(page.after())
        .bind(page.fetch_limit()),
        group_from_row,
    )
    .await?;
    Ok(Paged::from_rows(rows, page, |g| &g.id))
}

/// The rules of these groups, by group and then age.
pub async fn rules_of(c: &mut Conn, group_ids: &[String]) -> Result<Vec<RuleRow>> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=group_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM security_group_rules WHERE group_id IN ({}) \
         ORDER BY group_id, created_at, id",
        marks.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in group_ids {
        q = q.bind(id);
    }
    crate::fetch_all(c, q, rule_from_row).await
}

/// Adds a rule to group `g`. A rule equal to one the group has (but for its
/// id) is not added again: the existing one is returned.
pub async fn add_rule(c: &mut Conn, g: &GroupRow, r: &RuleRow) -> Result<RuleRow> {
    let same = |o: &RuleRow| {
        (
            &o.direction,
            &o.protocol,
            o.from_port,
            o.to_port,
            &o.cidr,
            &o.peer_group_id,
        ) == (
            &r.direction,
            &r.protocol,
            r.from_port,
            r.to_port,
            &r.cidr,
            &r.peer_group_id,
        )
    };
    if let Some(existing) = rules_of(&mut *c, std::slice::from_ref(&g.id))
        .await?
        .into_iter()
        .find(same)
    {
        return Ok(existing);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO security_group_rules ({RULE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(&r.id)
    .bind(&r.group_id)
    .bind(&r.direction)
    .bind(&r.protocol)
    .bind(r.from_port)
    .bind(r.to_port)
    .bind(&r.cidr)
    .bind(&r.peer_group_id)
    .bind(r.created_at)
    .execute(&mut *c)
    .await?;
    let data = json!({
        "rule_id": r.id, "direction": r.direction, "protocol": r.protocol,
        "from_port": r.from_port, "to_port": r.to_port, "cidr": r.cidr,
        "peer_group_id": r.peer_group_id,
    });
    append(c, g, r.created_at, "rule.added", data).await?;
    Ok(r.clone())
}

/// Removes rule `rule_id` of group `g`; false when the group has no such rule.
pub async fn remove_rule(c: &mut Conn, g: &GroupRow, rule_id: &str, at: i64) -> Result<bool> {
    let removed = sqlx::query("DELETE FROM security_group_rules WHERE id = $1 AND group_id = $2")
        .bind(rule_id)
        .bind(&g.id)
        .execute(&mut *c)
        .await?
        .rows_affected();
    if removed > 0 {
        append(c, g, at, "rule.removed", json!({ "rule_id": rule_id })).await?;
    }
    Ok(removed > 0)
}

/// Deletes a group with its rules. `StoreError::Conflict` while instances are
/// members or rules of other groups name it.
pub async fn delete(c: &mut Conn, g: &GroupRow, at: i64) -> Result<()> {
    let members: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM instance_security_groups WHERE group_id = $1")
            .bind(&g.id)
            .fetch_one(&mut *c)
            .await?;
    if members > 0 {
        return Err(StoreError::Conflict(format!(
            "{members} instance(s) are members"
        )));
    }
    let referrers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT group_id FROM security_group_rules \
         WHERE peer_group_id = $1 AND group_id <> $1 ORDER BY group_id",
    )
    .bind(&g.id)
    .fetch_all(&mut *c)
    .await?;
    if !referrers.is_empty() {
        return Err(StoreError::Conflict(format!(
            "rules of {} name it",
            referrers.join(", ")
        )));
    }
    sqlx::query("DELETE FROM security_group_rules WHERE group_id = $1")
        .bind(&g.id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM security_groups WHERE id = $1")
        .bind(&g.id)
        .execute(&mut *c)
        .await?;
    append(c, g, at, "deleted", json!({ "name": g.name })).await
}

/// Makes `groups` (already checked to be of the instance's network) the
/// instance's groups, replacing any it had.
pub async fn set_membership(
    c: &mut Conn,
    account_id: &str,
    instance_id: &str,
    groups: &[GroupRow],
    at: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM instance_security_groups WHERE instance_id = $1")
        .bind(instance_id)
        .execute(&mut *c)
        .await?;
    for g in groups {
        sqlx::query("INSERT INTO instance_security_groups (instance_id, group_id) VALUES ($1, $2)")
            .bind(instance_id)
            .bind(&g.id)
            .execute(&mut *c)
            .await?;
    }
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    events::append(
        c,
        NewEvent {
            at,
            account_id: Some(account_id),
            resource_type: "instance",
            resource_id: instance_id,
            action: "security_groups.set",
            data: json!({ "security_groups": ids }),
        },
    )
    .await?;
    Ok(())
}

/// The ids of the instance's groups.
pub async fn of_instance(c: &mut Conn, instance_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT group_id FROM instance_security_groups WHERE instance_id = $1 ORDER BY group_id",
    )
    .bind(instance_id)
    .fetch_all(c)
    .await?)
}

/// An instance of a network with its address and groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub instance_id: String,
    /// The address as its 32-bit number.
    pub address: u32,
    pub groups: Vec<String>,
}

/// What a network's firewall is made of: its instances (those holding an
/// address) with their groups, the rules of its groups, and where it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkFirewall {
    /// Bumped on every read, so that the newest firewall wins at each host.
    pub version: i64,
    /// The network's VXLAN id.
    pub vni: i64,
    pub members: Vec<Member>,
    pub rules: Vec<RuleRow>,
    /// The hosts that run (or are to run) its instances.
    pub hosts: Vec<String>,
}

/// Reads the firewall of network `network_id`. The version bump writes the
/// network's row, so that concurrent readers take turns (PostgreSQL locks the
/// row until commit): a later version never reflects less than an earlier one.
pub async fn firewall(c: &mut Conn, network_id: &str) -> Result<NetworkFirewall> {
    let bumped = sqlx::query(
        "UPDATE networks SET firewall_version = firewall_version + 1 WHERE id = $1 \
         RETURNING firewall_version, vni",
    )
    .bind(network_id)
    .fetch_one(&mut *c)
    .await?;
    let version: i64 = bumped.try_get("firewall_version")?;
    let vni: i64 = bumped.try_get::<Option<i64>, _>("vni")?.unwrap_or_default();
    let rows = sqlx::query(
        "SELECT a.instance_id, a.address, m.group_id FROM network_addresses a \
         LEFT JOIN instance_security_groups m ON m.instance_id = a.instance_id \
         WHERE a.network_id = $1 ORDER BY a.address, m.group_id",
    )
    .bind(network_id)
    .fetch_all(&mut *c)
    .await?;
    let mut members: Vec<Member> = Vec::new();
    for r in rows {
        let instance_id: String = r.try_get("instance_id")?;
        let address: i64 = r.try_get("address")?;
        let group: Option<String> = r.try_get("group_id")?;
        if members.last().is_none_or(|m| m.instance_id != instance_id) {
            members.push(Member {
                instance_id,
                address: address as u32,
                groups: Vec::new(),
            });
        }
        if let (Some(m), Some(g)) = (members.last_mut(), group) {
            m.groups.push(g);
        }
    }
    let rules = crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM security_group_rules r \
             JOIN security_groups g ON g.id = r.group_id \
             WHERE g.network_id = $1 ORDER BY r.group_id, r.created_at, r.id",
            RULE_COLUMNS
                .split(", ")
                .map(|col| format!("r.{col}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(network_id),
        rule_from_row,
    )
    .await?;
    let hosts = sqlx::query_scalar(
        "SELECT DISTINCT i.host_id FROM instances i \
         JOIN network_addresses a ON a.instance_id = i.id \
         WHERE a.network_id = $1 AND i.host_id IS NOT NULL ORDER BY i.host_id",
    )
    .bind(network_id)
    .fetch_all(c)
    .await?;
    Ok(NetworkFirewall {
        version,
        vni,
        members,
        rules,
        hosts,
    })
}
