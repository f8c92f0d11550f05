//! Security groups in a network's namespace, as nftables rules.
//!
//! Guests' packets to each other cross the namespace's bridge, and
//! br_netfilter hands bridged IPv4 to the IP hooks, where connection tracking
//! works on every kernel (the bridge family tracks connections only with
//! CONFIG_NF_CONNTRACK_BRIDGE). Each instance has a chain for what it may
//! send and one for what may reach it; a packet between two instances passes
//! both. Traffic of the namespace's own services (DHCP, metadata, published
//! ports) does not cross the bridge's forward path and is not filtered here:
//! publishing a port is its owner's explicit allow.
//!
//! The whole table is replaced in one nft transaction, so a change never
//! leaves a moment with no rules or half of them; tracked connections survive
//! it, as they do a rule change in AWS.

use std::fmt::Write;

use crate::network_state::{NetworkState, Protocol, Rule};

/// The nft script that makes `fw` the namespace's firewall.
pub fn script(fw: &NetworkState) -> String {
    let mut s = String::from(
        "table inet nubo_firewall\n\
         delete table inet nubo_firewall\n\
         table inet nubo_firewall {\n\
         \tchain forward {\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tmeta nfproto ipv6 drop\n\
         \t\tct state established,related accept\n\
         \t\tct state invalid drop\n",
    );
    if fw.version == 0 {
        // No state from the region yet (every state it sends has a version):
        // nothing new passes until one comes.
        s.push_str("\t\tdrop\n");
    } else if !fw.members.is_empty() {
        for (field, prefix) in [("saddr", "egress"), ("daddr", "ingress")] {
            let arms: Vec<String> = fw
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| format!("{} : jump {prefix}_{i}", m.address))
                .collect();
            let _ = writeln!(s, "\t\tip {field} vmap {{ {} }}", arms.join(", "));
        }
    }
    s.push_str("\t}\n");
    for (i, m) in fw.members.iter().enumerate() {
        chain(&mut s, &format!("egress_{i}"), "daddr", &m.egress, "return");
        chain(
            &mut s,
            &format!("ingress_{i}"),
            "saddr",
            &m.ingress,
            "accept",
        );
    }
    s.push_str("}\n");
    s
}

/// A chain that lets through (with `verdict`) what `rules` match, judging the
/// peer by `field`, and drops the rest.
fn chain(s: &mut String, name: &str, field: &str, rules: &[Rule], verdict: &str) {
    let _ = writeln!(s, "\tchain {name} {{");
    for rule in rules {
        let what = match (rule.protocol, rule.ports) {
            (Protocol::All, _) => String::new(),
            (Protocol::Icmp, _) => " meta l4proto icmp".into(),
            (p, ports) => {
                let proto = if p == Protocol::Tcp { "tcp" } else { "udp" };
                match ports {
                    Some((a, b)) if a == b => format!(" {proto} dport {a}"),
                    Some((a, b)) => format!(" {proto} dport {a}-{b}"),
                    None => format!(" meta l4proto {proto}"),
                }
            }
        };
        for (addr, len) in &rule.peers {
            let _ = writeln!(s, "\t\tip {field} {addr}/{len}{what} {verdict}");
        }
    }
    s.push_str("\t\tdrop\n\t}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network_state::Member;

    #[test]
    fn each_member_gets_an_ingress_and_an_egress_chain() {
        let fw = NetworkState {
            version: 3,
            vni: 9,
            peers: vec![],
            members: vec![Member {
                address: "10.0.0.4".parse().unwrap(),
                ingress: vec![
                    Rule {
                        protocol: Protocol::Tcp,
                        ports: Some((80, 80)),
                        peers: vec![("0.0.0.0".parse().unwrap(), 0)],
                    },
                    Rule {
                        protocol: Protocol::Udp,
                        ports: Some((5000, 5010)),
                        peers: vec![
                            ("10.0.0.5".parse().unwrap(), 32),
                            ("10.0.0.6".parse().unwrap(), 32),
                        ],
                    },
                ],
                egress: vec![Rule {
                    protocol: Protocol::All,
                    ports: None,
                    peers: vec![("0.0.0.0".parse().unwrap(), 0)],
                }],
            }],
        };
        let s = script(&fw);
        for line in [
            "ip saddr vmap { 10.0.0.4 : jump egress_0 }",
            "ip daddr vmap { 10.0.0.4 : jump ingress_0 }",
            "ip saddr 0.0.0.0/0 tcp dport 80 accept",
            "ip saddr 10.0.0.5/32 udp dport 5000-5010 accept",
            "ip saddr 10.0.0.6/32 udp dport 5000-5010 accept",
            "ip daddr 0.0.0.0/0 return",
        ] {
            assert!(s.contains(line), "{line:?} not in:\n{s}");
        }
        assert_eq!(s.matches("\t\tdrop\n").count(), 2, "{s}");
    }

    #[test]
    fn a_network_without_instances_has_no_maps() {
        let s = script(&NetworkState {
            version: 1,
            ..NetworkState::default()
        });
        assert!(!s.contains("vmap"), "{s}");
        assert!(!s.contains("\t\tdrop\n"), "{s}");
    }

    #[test]
    fn a_network_whose_state_is_unknown_forwards_nothing_new() {
        let s = script(&NetworkState::default());
        assert!(!s.contains("vmap"), "{s}");
        assert!(
            s.contains("\t\tct state invalid drop\n\t\tdrop\n\t}\n"),
            "{s}"
        );
    }
}
