//! Tunnels that carry a network between hosts: a VXLAN device in each of the
//! network's namespaces, a port of its bridge, flooding to the other hosts
//! that run instances of the network (and learning where each MAC lives from
//! what comes back).
//!
//! The device is made in the underlay's namespace (the host's own, or the one
//! that stands for a machine when several hosts are modelled on one) and then
//! moved into the network's: its UDP socket stays on the underlay, its frames
//! on the tenant bridge. So nothing of the tenant network is addressed or
//! routed outside its namespace, and networks share no bridge: each is its
//! own VXLAN id.
//!
//! Every host keeps the network's gateway on its own bridge with the same MAC
//! (an anycast gateway), so that an instance's DHCP, metadata and published
//! ports are always served by its own host; the anti-spoofing table keeps the
//! namespace's own traffic and DHCP off the tunnel.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use super::{BRIDGE, ip};
use crate::HostError;

/// IANA's VXLAN port.
const PORT: &str = "4789";
/// The MAC that floods: unknown unicast, broadcast and multicast.
const ALL_ZEROS: &str = "00:00:00:00:00:00";

/// Where this host's tunnels start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// The host's address on the network between hosts.
    pub address: Ipv4Addr,
    /// The namespace that holds it; the host's own when `None`.
    pub namespace: Option<String>,
}

/// The tunnel's device (at most 15 bytes: "vx" and up to 8 digits).
pub fn device(vni: u32) -> String {
    format!("vx{vni}")
}

/// Makes the network's VXLAN device on the underlay and puts it on the bridge
/// of namespace `ns`.
pub fn create(ns: &str, vni: u32, underlay: &Underlay) -> Result<(), HostError> {
    let dev = device(vni);
    let on_underlay = |args: &[&str]| {
        let mut all: Vec<&str> = Vec::new();
        if let Some(u) = &underlay.namespace {
            all.extend(["-n", u.as_str()]);
        }
        all.extend_from_slice(args);
        ip(&all)
    };
    // One left by a crash between making and moving it.
    let _ = on_underlay(&["link", "del", &dev]);
    let (id, local) = (vni.to_string(), underlay.address.to_string());
    on_underlay(&[
        "link", "add", &dev, "type", "vxlan", "id", &id, "local", &local, "dstport", PORT,
    ])?;
    // The guests' MTU: an underlay with less room than 1550 bytes fragments
    // the outer packets rather than losing the inner ones.
    if let Err(e) = on_underlay(&["link", "set", &dev, "mtu", "1500"])
        .and_then(|()| on_underlay(&["link", "set", &dev, "netns", ns]))
    {
        let _ = on_underlay(&["link", "del", &dev]);
        return Err(e);
    }
    ip(&["-n", ns, "link", "set", &dev, "master", BRIDGE, "up"])
}

/// Makes `peers` exactly the hosts the tunnel of namespace `ns` floods to.
pub fn flood_to(ns: &str, vni: u32, peers: &[Ipv4Addr]) -> Result<(), HostError> {
    let dev = device(vni);
    let shown = Command::new("bridge")
        .args(["-n", ns, "fdb", "show", "dev", &dev])
        .output()
        .map_err(|e| HostError::Agent(format!("bridge fdb show: {e}")))?;
    let current: BTreeSet<String> = String::from_utf8_lossy(&shown.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == ALL_ZEROS && words.next()? == "dst")
                .then(|| words.next().map(str::to_string))?
        })
        .collect();
    let wanted: BTreeSet<String> = peers.iter().map(Ipv4Addr::to_string).collect();
    let fdb = |verb: &str, dst: &str| {
        let args = ["-n", ns, "fdb", verb, ALL_ZEROS, "dev", &dev, "dst", dst];
        let out = Command::new("bridge")
            .args(args)
            .output()
            .map_err(|e| HostError::Agent(format!("bridge fdb {verb}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(HostError::Agent(format!(
                "bridge {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    for dst in wanted.difference(&current) {
        fdb("append", dst)?;
    }
    for dst in current.difference(&wanted) {
        fdb("del", dst)?;
    }
    Ok(())
}

/// The gateway's MAC on every host of the network, derived from its id.
pub fn gateway_mac(network_id: &str) -> String {
    // FNV-1a: stable across hosts and builds, unlike the std hasher.
    let hash = network_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let b = hash.to_be_bytes();
    format!("02:6e:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_mac_is_the_same_everywhere_and_differs_by_network() {
        let a = gateway_mac("net-0123456789abcdef");
        assert_eq!(a, gateway_mac("net-0123456789abcdef"));
        assert_ne!(a, gateway_mac("net-0123456789abcdee"));
        assert!(a.starts_with("02:"), "locally administered: {a}");
        assert!(device(16_777_215).len() <= 15);
    }
}
