//! Anti-spoofing: each tap may send only from its VM's MAC and address. The
//! table is written whole from the declared ports, so a tap that is gone
//! leaves no element behind. A DHCP request is the one packet sent before
//! the VM has its address. The namespace's own services answer only the VMs
//! of their host: nothing of theirs, and no DHCP request, crosses a tunnel.

use std::fmt::Write;

use super::Port;

const CHAINS: &str = "
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
";

/// The nft script that makes the namespace's anti-spoofing table exactly
/// this, in one transaction.
pub fn script(ports: &[Port]) -> String {
    let elements = |f: &dyn Fn(&Port) -> String| {
        let all: Vec<String> = ports.iter().map(f).collect();
        match all.is_empty() {
            true => String::new(),
            false => format!(" elements = {{ {} }};", all.join(", ")),
        }
    };
    let macs = elements(&|p| format!("\"{}\" . {}", p.tap(), p.mac));
    let ips = elements(&|p| format!("\"{}\" . {}", p.tap(), p.address));
    let mut s = String::from("table bridge nubo\ndelete table bridge nubo\ntable bridge nubo {\n");
    let _ = writeln!(s, "    set macs {{ type ifname . ether_addr;{macs} }}");
    let _ = writeln!(s, "    set ips {{ type ifname . ipv4_addr;{ips} }}");
    s.push_str(CHAINS);
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::network::test_port;

    #[test]
    fn the_sets_hold_exactly_the_declared_ports() {
        let s = script(&[test_port("i-a", 4), test_port("i-b", 5)]);
        assert!(
            s.starts_with("table bridge nubo\ndelete table bridge nubo\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "elements = { \"tapia\" . 02:00:00:00:00:04, \"tapib\" . 02:00:00:00:00:05 };"
            ),
            "{s}"
        );
        assert!(
            s.contains("elements = { \"tapia\" . 10.0.0.4, \"tapib\" . 10.0.0.5 };"),
            "{s}"
        );
        let empty = script(&[]);
        assert!(!empty.contains("elements"), "{empty}");
        assert!(
            empty.contains("set ips { type ifname . ipv4_addr; }"),
            "{empty}"
        );
    }
}
