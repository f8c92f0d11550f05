//! Egress to the outside through NAT, for operators who enable it. Each
//! network namespace gets an uplink: a veth pair whose outer end is in the
//! host's namespace. Both ends are addressed from 100.64.0.0/10 (RFC 6598's
//! shared address space, made for carrier NAT and never a tenant's range), a
//! /31 per namespace. The namespace masquerades its instances to its uplink
//! address and routes everything it does not know to the host, which
//! masquerades again to its own address on the way out.
//!
//! The host lets its uplinks reach only what lies beyond it: nothing on the
//! host itself (its services, nubod's API), and no other network's uplink.
//! Security groups' egress rules apply before, in the namespace.

use std::net::Ipv4Addr;

use std::fmt::Write;

use super::links::{self, Link};
use super::{enable, ip, ip_batch};
use crate::HostError;

/// The network namespace side of every uplink.
const INSIDE: &str = "up0";
/// The shared address space uplinks are numbered from.
const SPACE: (u32, u32) = (0x6440_0000, 10);

/// How the host's ends of uplinks are named.
const OUTSIDE_PREFIX: &str = "nbx";

/// The host's end of the uplink of the network with VXLAN id `vni`.
fn outside(vni: u32) -> String {
    format!("{OUTSIDE_PREFIX}{vni}")
}

/// The rules of the host's own namespace, shared by every uplink.
const HOST_RULES: &str = "
table inet nubo_egress {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname \"nbx*\" ct state established,related accept
        iifname \"nbx*\" drop
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname \"nbx*\" oifname \"nbx*\" drop
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        ip saddr 100.64.0.0/10 oifname != \"nbx*\" masquerade
    }
}
";

/// The /31 of an uplink: (host end, namespace end). Derived from the VXLAN id
/// (unique in the region), so that two networks on one host never share one.
fn addresses(vni: u32) -> (Ipv4Addr, Ipv4Addr) {
    let pairs = 1u32 << (32 - SPACE.1 - 1);
    let base = SPACE.0 + 2 * (vni % pairs);
    (Ipv4Addr::from(base), Ipv4Addr::from(base + 1))
}

/// The namespace's NAT table: masquerading to its uplink address when egress
/// is on; absent when it is off.
pub fn nat_script(on: bool) -> String {
    let mut s = String::from("table ip nubo_nat\ndelete table ip nubo_nat\n");
    if on {
        let _ = write!(
            s,
            "table ip nubo_nat {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority 100; policy accept;\n\
             \t\toifname \"{INSIDE}\" masquerade\n\
             \t}}\n\
             }}\n"
        );
    }
    s
}

/// Gives namespace `ns` (of the network with VXLAN id `vni`) its uplink and
/// the host its forwarding and rules, whatever part of them `links` (the
/// namespace's) shows is there already.
pub fn connect(ns: &str, vni: u32, links: &[Link]) -> Result<(), HostError> {
    let (host, inside) = addresses(vni);
    let out = outside(vni);
    let complete = links::find(links, INSIDE).is_some_and(|l| l.up() && l.has_address(inside, 31));
    if !complete {
        // What is done on the host comes first: a complete inner end means
        // all of it was.
        enable(None, "net/ipv4/ip_forward")?;
        host_rules()?;
        if links::find(links, INSIDE).is_none() {
            // An outer end whose inner end went with a namespace.
            let _ = ip(&["link", "del", &out]);
            ip(&[
                "link", "add", &out, "type", "veth", "peer", "name", INSIDE, "netns", ns,
            ])?;
        }
        ip_batch(
            None,
            &[
                format!("addr replace {host}/31 dev {out}"),
                format!("link set {out} up"),
            ],
        )?;
    }
    let mut inner = vec![format!("route replace default via {host}")];
    if !complete {
        inner.splice(
            0..0,
            [
                format!("addr replace {inside}/31 dev {INSIDE}"),
                format!("link set {INSIDE} up"),
            ],
        );
    }
    ip_batch(Some(ns), &inner)?;
    enable(Some(ns), "net/ipv4/ip_forward")
}

/// Takes the uplink of namespace `ns` away (both ends go together).
pub fn disconnect(ns: &str, links: &[Link]) -> Result<(), HostError> {
    match links::find(links, INSIDE) {
        Some(_) => ip(&["-n", ns, "link", "del", INSIDE]),
        None => Ok(()),
    }
}

/// Installs the host's egress rules, replacing any earlier ones.
fn host_rules() -> Result<(), HostError> {
    let script = format!("table inet nubo_egress\ndelete table inet nubo_egress\n{HOST_RULES}");
    super::run("nft", &["-f", "-"], Some(&script))
}

/// Removes the host's egress rules once no uplink of any network is left on
/// this machine (other hosts on it share them).
pub fn remove_host_rules() -> Result<(), HostError> {
    let out = super::output("ip", &["-json", "link", "show", "type", "veth"], None)?;
    let uplinks = links::parse(&out)?
        .iter()
        .any(|l| l.ifname.starts_with(OUTSIDE_PREFIX));
    if uplinks {
        return Ok(());
    }
    super::run(
        "nft",
        &["-f", "-"],
        Some("table inet nubo_egress\ndelete table inet nubo_egress\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplinks_are_31s_of_the_shared_address_space() {
        let (host, inside) = addresses(1);
        assert_eq!(
            (host.to_string(), inside.to_string()),
            ("100.64.0.2".into(), "100.64.0.3".into())
        );
        let (last, _) = addresses((1 << 21) - 1);
        assert_eq!(last.to_string(), "100.127.255.254");
        assert_eq!(addresses(1 << 21), addresses(0), "wraps within the space");
        assert!(outside(16_777_215).len() <= 15);
    }
}
