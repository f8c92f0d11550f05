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
//! The namespaces, links and rules are made with iproute2 and nft, the
//! operators' own tools, so that what nubo does reads back with
//! `ip -n nubo-… link` and `ip netns exec nubo-… nft list ruleset`.

use std::path::Path;
use std::process::Command;

use super::tunnel::{self, Underlay};
use crate::{HostError, Nic};

pub(super) const BRIDGE: &str = "br0";

/// Each tap's MAC and address are elements of these sets. A DHCP request is
/// the one packet sent before the VM has its address. The namespace's own
/// services answer only the VMs of their host: nothing of theirs, and no DHCP
/// request, crosses a tunnel.
const ANTI_SPOOFING: &str = "
table bridge nubo {
    set macs { type ifname . ether_addr; }
    set ips { type ifname . ipv4_addr; }
    chain spoofing {
        type filter hook prerouting priority 0; policy accept;
        iifname \"tap*\" iifname . ether saddr != @macs drop
        iifname \"tap*\" ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept
        iifname \"tap*\" ether type ip iifname . ip saddr != @ips drop
        iifname \"tap*\" ether type arp iifname . arp saddr ip != @ips drop
        iifname \"tap*\" ether type ip6 drop
    }
    chain tunnel_in {
        type filter hook input priority 0; policy accept;
        iifname \"vx*\" drop
    }
    chain tunnel_out {
        type filter hook output priority 0; policy accept;
        oifname \"vx*\" drop
    }
    chain tunnel_forward {
        type filter hook forward priority 0; policy accept;
        oifname \"vx*\" ether type ip udp dport 67 drop
    }
}
";

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

pub(super) fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<(), HostError> {
    use std::io::Write;
    let failed =
        |e: &dyn std::fmt::Display| HostError::Agent(format!("{program} {}: {e}", args.join(" ")));
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
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
        Ok(())
    } else {
        Err(failed(&String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub(super) fn ip(args: &[&str]) -> Result<(), HostError> {
    run("ip", args, None)
}

/// `nft` inside namespace `ns`, reading `script`.
pub(super) fn nft(ns: &str, script: &str) -> Result<(), HostError> {
    run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script))
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets it makes
/// live there. (Entering a namespace changes only the calling thread's.)
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

/// Has the namespace's bridge hand IPv4 to the IP hooks, where security
/// groups track connections (see `firewall`).
fn bridged_ip_filtered(ns: &str) -> Result<(), HostError> {
    let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if !Path::new(knob).exists() {
        // Built as a module on most distributions' kernels.
        run("modprobe", &["br_netfilter"], None)?;
    }
    run(
        "ip",
        &["netns", "exec", ns, "sh", "-c", &format!("echo 1 > {knob}")],
        None,
    )
}

/// Makes the network's namespace, bridge and DHCP server (its files in
/// `networks/<namespace>`), if this host has not yet, and a tap for
/// `instance_id` on it. Returns the namespace, where QEMU must run. Callers
/// serialize calls (two launches must not both make the namespace).
pub fn attach(
    instance_id: &str,
    nic: &Nic,
    networks: &Path,
    fabric: &Fabric,
) -> Result<String, HostError> {
    let ns = namespace(&fabric.prefix, &nic.network_id);
    let dir = networks.join(&ns);
    if !exists(&ns) {
        let prefix = nic.address.split_once('/').map_or("32", |(_, p)| p);
        let gateway = format!("{}/{prefix}", nic.gateway);
        let made = ip(&["netns", "add", &ns])
            .and_then(|()| ip(&["-n", &ns, "link", "set", "lo", "up"]))
            .and_then(|()| ip(&["-n", &ns, "link", "add", BRIDGE, "type", "bridge"]))
            .and_then(|()| {
                let mac = tunnel::gateway_mac(&nic.network_id);
                ip(&["-n", &ns, "link", "set", BRIDGE, "address", &mac])
            })
            .and_then(|()| ip(&["-n", &ns, "addr", "add", &gateway, "dev", BRIDGE]))
            .and_then(|()| {
                let metadata = format!("{}/32", super::metadata::ADDRESS);
                ip(&["-n", &ns, "addr", "add", &metadata, "dev", BRIDGE])
            })
            .and_then(|()| ip(&["-n", &ns, "link", "set", BRIDGE, "up"]))
            .and_then(|()| bridged_ip_filtered(&ns))
            .and_then(|()| nft(&ns, ANTI_SPOOFING))
            .and_then(|()| match &fabric.underlay {
                Some(u) => tunnel::create(&ns, nic.network.vni, u),
                None => Ok(()),
            })
            .and_then(|()| match fabric.egress {
                true => super::egress::connect(&ns, nic.network.vni),
                false => Ok(()),
            })
            .and_then(|()| super::dhcp::start(&dir, nic));
        if let Err(e) = made {
            // Half a namespace would be taken for a whole one next time.
            super::dhcp::stop(&dir);
            let _ = ip(&["netns", "delete", &ns]);
            return Err(e);
        }
    }
    let tap = tap(instance_id);
    // A tap left by a crash before the VM started is made anew.
    let _ = ip(&["-n", &ns, "link", "del", &tap]);
    ip(&["-n", &ns, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
    let address = nic.address.split('/').next().unwrap_or_default();
    nft(
        &ns,
        &format!(
            "add element bridge nubo macs {{ \"{tap}\" . {} }}\n\
             add element bridge nubo ips {{ \"{tap}\" . {address} }}\n",
            nic.mac
        ),
    )?;
    ip(&["-n", &ns, "link", "set", &tap, "master", BRIDGE, "up"])?;
    super::dhcp::add(&dir, &ns, instance_id, nic)?;
    Ok(ns)
}

/// Removes the tap of `instance_id` from namespace `ns`, and the namespace
/// once no VM of the network is left on this host (then true). Callers
/// serialize calls with [`attach`].
pub fn detach(instance_id: &str, ns: &str, networks: &Path) -> bool {
    let dir = networks.join(ns);
    if let Err(e) = ip(&["-n", ns, "link", "del", &tap(instance_id)]) {
        tracing::warn!(instance_id, error = %e, "tap not removed");
    }
    super::dhcp::remove(&dir, ns, instance_id);
    let taps = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "type", "tun"])
        .output();
    let last = taps.is_ok_and(|out| out.status.success() && out.stdout.is_empty());
    if !last {
        return false;
    }
    super::dhcp::stop(&dir);
    match ip(&["netns", "delete", ns]) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(ns, error = %e, "network namespace not removed");
            false
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_net_only_when_asked() {
        let nic = Nic {
            network_id: "net-1".into(),
            address: "10.0.0.4/24".into(),
            gateway: "10.0.0.1".into(),
            mac: "02:00:00:00:00:04".into(),
            network: Default::default(),
        };
        assert!(qemu_args("i-1", &nic, true)[1].ends_with(",vhost=on"));
        assert!(!qemu_args("i-1", &nic, false)[1].contains("vhost"));
    }

    #[test]
    fn taps_fit_an_interface_name() {
        let t = tap("i-0123456789abcdef");
        assert_eq!(t, "tap456789abcdef");
        assert!(t.len() <= 15);
    }
}
