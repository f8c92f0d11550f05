//! What the hosts of a network must know of it: its tunnel (VXLAN id and the
//! other hosts to reach) and its security groups, resolved member by member to
//! address ranges. Computed from the store and sent to every host that runs an
//! instance of the network, within the request that changed it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use nubo_host::network_state::{Member, NetworkState, Protocol, Rule};
use nubo_store::security_groups::{self, NetworkFirewall, RuleRow};
use nubo_store::{StoreError, networks};

use crate::state::AppState;

/// Resolves groups to their members' addresses.
fn resolve(fw: &NetworkFirewall) -> NetworkState {
    let mut addresses: HashMap<&str, Vec<Ipv4Addr>> = HashMap::new();
    for m in &fw.members {
        for g in &m.groups {
            addresses
                .entry(g.as_str())
                .or_default()
                .push(Ipv4Addr::from(m.address));
        }
    }
    let rule = |r: &RuleRow| -> Option<Rule> {
        let peers = match (&r.cidr, &r.peer_group_id) {
            (Some(cidr), _) => networks::parse_cidr(cidr)
                .map(|(base, len)| vec![(Ipv4Addr::from(base), len as u8)])
                .unwrap_or_default(),
            (None, Some(group)) => addresses
                .get(group.as_str())
                .map(|a| a.iter().map(|a| (*a, 32)).collect())
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        let ports = match (r.from_port, r.to_port) {
            (Some(a), Some(b)) => Some((a as u16, b as u16)),
            _ => None,
        };
        let protocol = Protocol::parse(&r.protocol)?;
        (!peers.is_empty()).then_some(Rule {
            protocol,
            ports,
            peers,
        })
    };
    let members = fw
        .members
        .iter()
        .map(|m| {
            let of = |direction: &str| -> Vec<Rule> {
                fw.rules
                    .iter()
                    .filter(|r| r.direction == direction && m.groups.contains(&r.group_id))
                    .filter_map(rule)
                    .collect()
            };
            Member {
                address: Ipv4Addr::from(m.address),
                ingress: of("ingress"),
                egress: of("egress"),
            }
        })
        .collect();
    NetworkState {
        version: fw.version as u64,
        vni: fw.vni as u32,
        peers: Vec::new(),
        members,
    }
}

/// The network as it stands, and the hosts of its instances.
pub async fn current(
    state: &AppState,
    network_id: &str,
) -> Result<(NetworkState, Vec<String>), StoreError> {
    let mut tx = state.store.begin().await?;
    let fw = security_groups::firewall(&mut tx, network_id).await?;
    tx.commit().await?;
    Ok((resolve(&fw), fw.hosts))
}

/// `network` as host `host_id` must see it: its tunnel floods to the others.
pub fn for_host(
    state: &AppState,
    network: &NetworkState,
    hosts: &[String],
    host_id: &str,
) -> NetworkState {
    let peers = hosts
        .iter()
        .filter(|h| h.as_str() != host_id)
        .filter_map(|h| state.fleet.agent(h)?.underlay())
        .collect();
    NetworkState {
        peers,
        ..network.clone()
    }
}

/// Sends the network's state to its hosts. A host that cannot take it is
/// logged: the next change, or its next launch into the network, brings it up
/// to date.
pub async fn push(state: &AppState, network_id: &str) -> Result<(), StoreError> {
    let (network, hosts) = current(state, network_id).await?;
    for host in &hosts {
        let Some(agent) = state.fleet.agent(host) else {
            continue;
        };
        let seen = for_host(state, &network, &hosts, host);
        if let Err(e) = agent.network(network_id, seen).await {
            tracing::warn!(host, network_id, error = %e, "network state not applied");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubo_store::security_groups::Member as Row;

    fn rule(group: &str, direction: &str, protocol: &str, peer: (&str, &str)) -> RuleRow {
        let (cidr, group_peer) = match peer {
            ("cidr", c) => (Some(c.to_string()), None),
            (_, g) => (None, Some(g.to_string())),
        };
        RuleRow {
            id: format!("sgr-{group}-{direction}-{protocol}"),
            group_id: group.into(),
            direction: direction.into(),
            protocol: protocol.into(),
            from_port: (protocol == "tcp").then_some(80),
            to_port: (protocol == "tcp").then_some(81),
            cidr,
            peer_group_id: group_peer,
            created_at: 0,
        }
    }

    #[test]
    fn groups_resolve_to_their_members_addresses() {
        let at = |last: u8| u32::from(Ipv4Addr::new(10, 0, 0, last));
        let fw = NetworkFirewall {
            version: 7,
            vni: 42,
            members: vec![
                Row {
                    instance_id: "i-web".into(),
                    address: at(4),
                    groups: vec!["sg-web".into()],
                },
                Row {
                    instance_id: "i-db".into(),
                    address: at(5),
                    groups: vec!["sg-db".into()],
                },
            ],
            rules: vec![
                rule("sg-web", "ingress", "tcp", ("cidr", "0.0.0.0/0")),
                rule("sg-db", "ingress", "all", ("group", "sg-web")),
                rule("sg-db", "egress", "all", ("group", "sg-nobody")),
            ],
            hosts: vec![],
        };
        let resolved = resolve(&fw);
        assert_eq!((resolved.version, resolved.vni), (7, 42));
        let [web, db] = &resolved.members[..] else {
            panic!("{resolved:?}")
        };
        assert_eq!(web.address, Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(
            web.ingress,
            vec![Rule {
                protocol: Protocol::Tcp,
                ports: Some((80, 81)),
                peers: vec![(Ipv4Addr::UNSPECIFIED, 0)],
            }]
        );
        assert!(web.egress.is_empty());
        assert_eq!(db.ingress[0].peers, vec![(Ipv4Addr::new(10, 0, 0, 4), 32)]);
        assert!(
            db.egress.is_empty(),
            "a group without members lets nothing through"
        );
    }
}
