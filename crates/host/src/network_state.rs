//! What a host needs to know of a network beyond its own VMs: its tunnel id,
//! the other hosts that run its instances, and its security groups, resolved
//! by the region to each instance's rules with peer addresses (so that a host
//! needs nothing but this).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkState {
    /// Grows with each state the region computes for the network; a host
    /// ignores one older than the one it applied.
    pub version: u64,
    /// The network's VXLAN id, unique in the region.
    pub vni: u32,
    /// Underlay addresses of the other hosts that run instances of the
    /// network, which this host's tunnel floods to.
    pub peers: Vec<Ipv4Addr>,
    /// Every instance of the network (on any host) with its rules.
    pub members: Vec<Member>,
}

/// An instance of the network and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub address: Ipv4Addr,
    /// What may open connections to it.
    pub ingress: Vec<Rule>,
    /// What it may open connections to.
    pub egress: Vec<Rule>,
}

/// Lets a protocol (and port range) through from or to the peers. Replies to
/// what a rule let through always pass: the firewall tracks connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub protocol: Protocol,
    /// The first and last port, for TCP and UDP; `None` for all ports.
    pub ports: Option<(u16, u16)>,
    /// Address ranges as base address and prefix length.
    pub peers: Vec<(Ipv4Addr, u8)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "all" => Protocol::All,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => return None,
        })
    }
}
