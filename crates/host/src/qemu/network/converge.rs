//! Making one network's namespace hold exactly what is declared. Each part is
//! read back and set only where it differs, so converging a namespace that
//! is already right costs a read of its links, one nft transaction and a
//! look at its DHCP server; and converging one that a failed step or a crash
//! left half made finishes it, or takes away what no port needs.

use std::path::Path;

use super::links::{self, Link};
use super::{BRIDGE, Declared, Fabric, Port, dhcp, egress, enable, exists, ip, ip_batch, nft};
use super::{firewall, spoofing, tunnel};
use crate::HostError;
use crate::qemu::faults::{Faults, Step};
use crate::qemu::metadata;

/// The network's last state, kept beside its namespace for an agent that
/// restarts before the region sends it again.
pub const STATE_FILE: &str = "state.json";

/// Makes namespace `d.namespace`, whose files are in `dir` (absolute), hold
/// what `d` declares: nothing at all when `d` has no port.
pub fn converge(
    d: &Declared,
    dir: &Path,
    fabric: &Fabric,
    faults: &Faults,
) -> Result<(), HostError> {
    let Some((gateway, prefix_len)) = d.gateway() else {
        return remove(&d.namespace, dir);
    };
    let ns = d.namespace.as_str();
    let io = |e: std::io::Error| HostError::Agent(format!("{}: {e}", dir.display()));
    // The folder marks the namespace as this host's before it exists, so
    // that what a crash leaves is found again.
    std::fs::create_dir_all(dir).map_err(io)?;
    let state = serde_json::to_vec(&d.state).map_err(|e| HostError::Agent(e.to_string()))?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, state)
        .and_then(|()| std::fs::rename(&tmp, dir.join(STATE_FILE)))
        .map_err(io)?;
    if !exists(ns) {
        ip(&["netns", "add", ns])?;
    }
    let held = links::read(ns)?;

    // The bridge carries the gateway, with the same MAC on every host of the
    // network (an anycast gateway), and the metadata service's address.
    let mut bridge = Vec::new();
    if !links::find(&held, "lo").is_some_and(Link::up) {
        bridge.push("link set lo up".to_string());
    }
    let br = links::find(&held, BRIDGE).cloned().unwrap_or_default();
    if br.ifname.is_empty() {
        bridge.push(format!("link add {BRIDGE} type bridge"));
    }
    let mac = tunnel::gateway_mac(&d.network_id);
    if br.address.as_deref() != Some(mac.as_str()) {
        bridge.push(format!("link set {BRIDGE} address {mac}"));
    }
    if !br.has_address(gateway, prefix_len) {
        bridge.push(format!("addr replace {gateway}/{prefix_len} dev {BRIDGE}"));
    }
    let imds: std::net::Ipv4Addr = metadata::ADDRESS.parse().expect("an IPv4 address");
    if !br.has_address(imds, 32) {
        bridge.push(format!("addr replace {imds}/32 dev {BRIDGE}"));
    }
    if !br.up() {
        bridge.push(format!("link set {BRIDGE} up"));
    }
    ip_batch(Some(ns), &bridge)?;
    bridged_ip_filtered(ns)?;

    // Rules before taps, so that a tap never carries a frame unfiltered.
    let rules = [
        spoofing::script(&d.ports),
        firewall::script(&d.state),
        egress::nat_script(fabric.egress),
    ]
    .concat();
    nft(ns, &rules)?;
    faults.at(Step::Nftables)?;

    ip_batch(Some(ns), &taps(&held, &d.ports))?;
    faults.at(Step::Tap)?;

    if let Some(underlay) = &fabric.underlay {
        let vni = d.state.vni;
        let dev = tunnel::device(vni);
        match links::find(&held, &dev) {
            None => tunnel::create(ns, vni, underlay)?,
            Some(l) if l.master.as_deref() != Some(BRIDGE) || !l.up() => {
                ip(&["-n", ns, "link", "set", &dev, "master", BRIDGE, "up"])?
            }
            Some(_) => {}
        }
        tunnel::flood_to(ns, vni, &d.state.peers)?;
    }
    if fabric.egress {
        egress::connect(ns, d.state.vni, &held)?;
    } else {
        egress::disconnect(ns, &held)?;
    }

    dhcp::converge(dir, d)?;
    faults.at(Step::Dhcp)
}

/// What makes the namespace's taps exactly the ports': a tap no port has goes
/// (a VM that failed to start, or died with the agent), a missing one is made,
/// and each is up on the bridge.
fn taps(held: &[Link], ports: &[Port]) -> Vec<String> {
    let wanted: std::collections::BTreeSet<String> = ports.iter().map(Port::tap).collect();
    let mut commands: Vec<String> = held
        .iter()
        .filter(|l| l.ifname.starts_with("tap") && !wanted.contains(&l.ifname))
        .map(|l| format!("link del {}", l.ifname))
        .collect();
    for tap in &wanted {
        let link = links::find(held, tap);
        if link.is_none() {
            commands.push(format!("tuntap add dev {tap} mode tap"));
        }
        if link.is_none_or(|l| l.master.as_deref() != Some(BRIDGE) || !l.up()) {
            commands.push(format!("link set {tap} master {BRIDGE} up"));
        }
    }
    commands
}

/// Has the namespace's bridge hand IPv4 to the IP hooks, where security
/// groups track connections (see `firewall`).
fn bridged_ip_filtered(ns: &str) -> Result<(), HostError> {
    let knob = "net/bridge/bridge-nf-call-iptables";
    if !Path::new("/proc/sys").join(knob).exists() {
        // Built as a module on most distributions' kernels.
        super::run("modprobe", &["br_netfilter"], None)?;
    }
    enable(Some(ns), knob)
}

/// Takes away namespace `ns` and everything in it (taps, bridge, tunnel,
/// uplink, rules), its DHCP server, and its folder `dir`.
pub fn remove(ns: &str, dir: &Path) -> Result<(), HostError> {
    dhcp::stop(dir);
    if exists(ns) {
        ip(&["netns", "delete", ns])?;
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(HostError::Agent(format!("{}: {e}", dir.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::network::test_port;

    fn link(name: &str, master: Option<&str>, up: bool) -> Link {
        let json = serde_json::json!({
            "ifname": name,
            "flags": if up { vec!["UP"] } else { vec![] },
            "master": master,
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn taps_become_exactly_the_ports() {
        let held = [
            link("br0", None, true),
            link("tapikept", Some("br0"), true),
            link("tapstale", Some("br0"), true),
            link("tapiloose", None, false),
        ];
        let commands = taps(
            &held,
            &[
                test_port("i-kept", 4),
                test_port("i-loose", 5),
                test_port("i-new", 6),
            ],
        );
        assert_eq!(
            commands,
            [
                "link del tapstale",
                "link set tapiloose master br0 up",
                "tuntap add dev tapinew mode tap",
                "link set tapinew master br0 up",
            ]
            .map(String::from)
        );
        assert_eq!(
            taps(&held[..2], &[test_port("i-kept", 4)]),
            Vec::<String>::new()
        );
    }
}
