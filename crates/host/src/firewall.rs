//! A network's security groups as a host enforces them: for each instance of
//! the network, what may reach it and what it may send. The region resolves
//! groups to their members' addresses, so a host needs nothing but this.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Firewall {
    /// Grows with each firewall the region computes for the network; a host
    /// ignores one older than the one it applied.
    pub version: u64,
    pub members: Vec<Member>,
}

/// An instance of the network and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub address: Ipv4Addr,
    /// What may open connections to it.
    pub ingress: Vec<Rule>,
    /// What it may open connections to.
    pub egress: Vec<Rule>,
}

/// Lets a protocol (and port range) through from or to the peers. Replies to
/// what a rule let through always pass: the firewall tracks connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub protocol: Protocol,
    /// The first and last port, for TCP and UDP; `None` for all ports.
    pub ports: Option<(u16, u16)>,
    /// Address ranges as base address and prefix length.
    pub peers: Vec<(Ipv4Addr, u8)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
