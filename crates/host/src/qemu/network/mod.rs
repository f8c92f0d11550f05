//! Tenant networks on this host. Each network is a network namespace of its
//! own, `nubo-<network id>`, holding a bridge that carries the network's gateway
//! address; each VM interface is a tap on that bridge, opened by QEMU running
//! inside the namespace. Networks of different accounts therefore share no
//! bridge and no namespace, and nothing of a guest network is addressed or
//! routed in the host's own namespace.
//!
//! A VM may send only from its own MAC and address: nftables in the namespace
//! drops any other source on its tap, so that no guest can pass for another
//! (to its neighbours, to security groups, or to the metadata service, which
//! tell callers apart by address). Networks are IPv4 only: a tap's IPv6 is
//! dropped, lest link-local addresses bypass the groups.
//!
//! What a namespace holds is declared, never edited: a [`Declared`] is
//! computed from the ports of the VMs this host runs on the network and the
//! network's state from the region, and [`converge`] makes the namespace hold
//! exactly that (bridge, taps, rules, tunnel, uplink, DHCP), whatever an
//! earlier failure or crash left. A step that fails leaves the namespace to
//! the next converge, which repairs it; nothing is ever "added" or "removed"
//! on its own.
//!
//! The namespaces, links and rules are made with iproute2 and nft, the
//! operators' own tools, so that what nubo does reads back with
//! `ip -n nubo-… link` and `ip netns exec nubo-… nft list ruleset`.

mod converge;
mod dhcp;
mod egress;
mod firewall;
mod links;
mod spoofing;
pub mod tunnel;

use std::net::Ipv4Addr;
use std::process::Command;

use serde::{Deserialize, Serialize};

pub use self::converge::{STATE_FILE, converge, remove};
pub use self::egress::remove_host_rules as remove_shared_rules;
use self::tunnel::Underlay;
use crate::network_state::NetworkState;
use crate::{HostError, Nic};

pub(super) const BRIDGE: &str = "br0";

/// How a host builds its networks' namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fabric {
    /// The beginning of the namespaces' names, which differs between hosts
    /// that share a machine.
    pub prefix: String,
    /// Where tunnels to other hosts start; a host that runs alone has none.
    pub underlay: Option<Underlay>,
    /// Instances reach the outside through NAT (see `egress`).
    pub egress: bool,
}

impl Default for Fabric {
    fn default() -> Self {
        Fabric {
            prefix: "nubo-".into(),
            underlay: None,
            egress: false,
        }
    }
}

/// The namespace of a network, on a host whose namespaces begin with `prefix`.
pub fn namespace(prefix: &str, network_id: &str) -> String {
    format!("{prefix}{network_id}")
}

/// The tap of an instance: interface names are at most 15 bytes.
pub fn tap(instance_id: &str) -> String {
    let tail: String = instance_id
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("tap{}", tail.chars().rev().collect::<String>())
}

/// A VM's port on a tenant network: its tap, and the only MAC and address it
/// may send from. Kept beside the VM, so that an agent that restarts knows
/// what each namespace must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub instance_id: String,
    pub network_id: String,
    pub address: Ipv4Addr,
    /// The network's prefix length.
    pub prefix_len: u8,
    /// The network's gateway, which the host keeps on the network's bridge.
    pub gateway: Ipv4Addr,
    pub mac: String,
}

impl Port {
    /// The port of `instance_id`'s interface `nic`.
    pub fn of(instance_id: &str, nic: &Nic) -> Result<Port, HostError> {
        let bad = || HostError::Agent(format!("bad interface address {:?}", nic.address));
        let (address, prefix_len) = nic.address.split_once('/').ok_or_else(bad)?;
        let prefix_len: u8 = prefix_len.parse().map_err(|_| bad())?;
        if prefix_len > 30 {
            return Err(bad());
        }
        Ok(Port {
            instance_id: instance_id.to_string(),
            network_id: nic.network_id.clone(),
            address: address.parse().map_err(|_| bad())?,
            prefix_len,
            gateway: nic.gateway.parse().map_err(|_| bad())?,
            mac: nic.mac.clone(),
        })
    }

    pub fn tap(&self) -> String {
        tap(&self.instance_id)
    }
}

/// Everything one network's namespace on this host holds: a function of the
/// ports of the VMs here and of the network's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub namespace: String,
    pub network_id: String,
    /// Tunnel peers and security groups, as the region last said.
    pub state: NetworkState,
    /// Sorted by instance id; none means the namespace must not exist.
    pub ports: Vec<Port>,
}

impl Declared {
    /// The gateway and prefix length every port of the network shares.
    fn gateway(&self) -> Option<(Ipv4Addr, u8)> {
        self.ports.first().map(|p| (p.gateway, p.prefix_len))
    }
}

pub(super) fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<(), HostError> {
    output(program, args, input).map(drop)
}

/// Runs `program` and returns its standard output; its standard error is the
/// error when it fails.
fn output(program: &str, args: &[&str], input: Option<&str>) -> Result<Vec<u8>, HostError> {
    use std::io::Write;
    let failed =
        |e: &dyn std::fmt::Display| HostError::Agent(format!("{program} {}: {e}", args.join(" ")));
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(&e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.unwrap_or_default().as_bytes())
            .map_err(|e| failed(&e))?;
    }
    let out = child.wait_with_output().map_err(|e| failed(&e))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(failed(&String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub(super) fn ip(args: &[&str]) -> Result<(), HostError> {
    run("ip", args, None)
}

/// `ip -batch`: several commands in one process, stopping at the first that
/// fails. `ns` runs them inside a namespace.
fn ip_batch(ns: Option<&str>, commands: &[String]) -> Result<(), HostError> {
    if commands.is_empty() {
        return Ok(());
    }
    let script = commands.join("\n") + "\n";
    match ns {
        Some(ns) => run("ip", &["-n", ns, "-batch", "-"], Some(&script)),
        None => run("ip", &["-batch", "-"], Some(&script)),
    }
}

/// `nft` inside namespace `ns`, reading `script`.
pub(super) fn nft(ns: &str, script: &str) -> Result<(), HostError> {
    run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script))
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets it makes
/// live there, and `/proc/sys/net` is the namespace's. (Entering a namespace
/// changes only the calling thread's.)
pub fn in_namespace<T: Send>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    use std::os::fd::AsFd;
    let path = std::path::Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let netns = std::fs::File::open(&path)?;
            rustix::thread::move_into_link_name_space(
                netns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("a namespace thread panicked")))
    })
}

pub(super) fn exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

/// Sets a `/proc/sys` knob to 1: inside namespace `ns` for its `net/` knobs,
/// or in the host's own.
fn enable(ns: Option<&str>, knob: &str) -> Result<(), HostError> {
    let path = format!("/proc/sys/{knob}");
    let write = || std::fs::write(&path, "1");
    match ns {
        Some(ns) => in_namespace(ns, write),
        None => write(),
    }
    .map_err(|e| HostError::Agent(format!("{knob}: {e}")))
}

/// QEMU's arguments for the interface, and the configuration the guest reads.
/// With `vhost`, the host kernel moves the packets (vhost-net), not QEMU's
/// own thread: what lets a KVM guest come near a veth pair's throughput.
pub fn qemu_args(instance_id: &str, nic: &Nic, vhost: bool) -> Vec<String> {
    let vhost = if vhost { ",vhost=on" } else { "" };
    vec![
        "-netdev".into(),
        format!(
            "tap,id=nic0,ifname={},script=no,downscript=no{vhost}",
            tap(instance_id)
        ),
        "-device".into(),
        format!("virtio-net-device,netdev=nic0,mac={}", nic.mac),
        "-fw_cfg".into(),
        format!(
            "name=opt/nubo/network,string={} {}",
            nic.address, nic.gateway
        ),
    ]
}

/// A port of network `net-1` (10.0.0.0/24) whose address ends in `last`.
#[cfg(test)]
fn test_port(instance_id: &str, last: u8) -> Port {
    Port {
        instance_id: instance_id.into(),
        network_id: "net-1".into(),
        address: Ipv4Addr::new(10, 0, 0, last),
        prefix_len: 24,
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        mac: format!("02:00:00:00:00:{last:02x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(address: &str) -> Nic {
        Nic {
            network_id: "net-1".into(),
            address: address.into(),
            gateway: "10.0.0.1".into(),
            mac: "02:00:00:00:00:04".into(),
            network: Default::default(),
        }
    }

    #[test]
    fn vhost_net_only_when_asked() {
        let nic = nic("10.0.0.4/24");
        assert!(qemu_args("i-1", &nic, true)[1].ends_with(",vhost=on"));
        assert!(!qemu_args("i-1", &nic, false)[1].contains("vhost"));
    }

    #[test]
    fn taps_fit_an_interface_name() {
        let t = tap("i-0123456789abcdef");
        assert_eq!(t, "tap456789abcdef");
        assert!(t.len() <= 15);
    }

    #[test]
    fn a_port_is_read_from_its_interface_or_refused() {
        let port = Port::of("i-1", &nic("10.0.0.4/24")).unwrap();
        assert_eq!(
            (port.address, port.prefix_len, port.gateway),
            (Ipv4Addr::new(10, 0, 0, 4), 24, Ipv4Addr::new(10, 0, 0, 1))
        );
        for bad in ["10.0.0.4", "10.0.0.4/33", "10.0.0/24", "10.0.0.4/x"] {
            assert!(Port::of("i-1", &nic(bad)).is_err(), "{bad}");
        }
    }
}
