//! A network's security groups as its hosts enforce them: the groups' rules
//! resolved, member by member, to address ranges, and sent to every host that
//! runs an instance of the network, within the request that changed them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use nubo_host::firewall::{Firewall, Member, Protocol, Rule};
use nubo_store::security_groups::{self, NetworkFirewall, RuleRow};
use nubo_store::{StoreError, networks};

use crate::state::AppState;

/// Resolves groups to their members' addresses.
fn resolve(fw: &NetworkFirewall) -> Firewall {
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
    Firewall {
        version: fw.version as u64,
        members,
    }
}

/// The network's firewall as it stands, and the hosts it applies on.
pub async fn current(
    state: &AppState,
    network_id: &str,
) -> Result<(Firewall, Vec<String>), StoreError> {
    let mut tx = state.store.begin().await?;
    let fw = security_groups::firewall(&mut tx, network_id).await?;
    tx.commit().await?;
    Ok((resolve(&fw), fw.hosts))
}

/// Sends the network's firewall to its hosts. A host that cannot take it is
/// logged: the next change, or its next launch into the network, brings it up to date.
pub async fn push(state: &AppState, network_id: &str) -> Result<(), StoreError> {
    let (fw, hosts) = current(state, network_id).await?;
    for host in hosts {
        let Some(agent) = state.fleet.agent(&host) else {
            continue;
        };
        if let Err(e) = agent.firewall(network_id, fw.clone()).await {
            tracing::warn!(host, network_id, error = %e, "firewall not applied");
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
        assert_eq!(resolved.version, 7);
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
