//! What a namespace holds now: its links and their addresses, read in one
//! `ip -json addr show`, so that converging changes only what differs.

use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::HostError;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Link {
    pub ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    /// The MAC.
    #[serde(default)]
    pub address: Option<String>,
    /// The bridge it is a port of.
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    addr_info: Vec<Address>,
}

#[derive(Debug, Clone, Deserialize)]
struct Address {
    family: String,
    local: String,
    prefixlen: u8,
}

impl Link {
    /// Administratively up.
    pub fn up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// Carries `address/prefix_len`.
    pub fn has_address(&self, address: Ipv4Addr, prefix_len: u8) -> bool {
        self.addr_info.iter().any(|a| {
            a.family == "inet" && a.prefixlen == prefix_len && a.local == address.to_string()
        })
    }
}

/// The links of namespace `ns`.
pub fn read(ns: &str) -> Result<Vec<Link>, HostError> {
    let out = super::output("ip", &["-n", ns, "-json", "addr", "show"], None)?;
    parse(&out)
}

pub fn parse(json: &[u8]) -> Result<Vec<Link>, HostError> {
    // iproute2 prints nothing at all for a namespace without links.
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(json).map_err(|e| HostError::Agent(format!("ip -json addr show: {e}")))
}

/// The link named `name`, if any.
pub fn find<'a>(links: &'a [Link], name: &str) -> Option<&'a Link> {
    links.iter().find(|l| l.ifname == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_read_back_from_iproute2_json() {
        let json = br#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],
            "mtu":65536,"operstate":"UNKNOWN","link_type":"loopback","address":"00:00:00:00:00:00",
            "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"br0","flags":["BROADCAST","MULTICAST","UP"],"address":"02:6e:01:02:03:04",
            "addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24},
                         {"family":"inet","local":"169.254.169.254","prefixlen":32}]},
            {"ifindex":3,"ifname":"tap0123","flags":["NO-CARRIER","BROADCAST"],"master":"br0",
            "address":"6a:1b:00:00:00:01","addr_info":[]}]"#;
        let links = parse(json).unwrap();
        let br = find(&links, "br0").unwrap();
        assert!(br.up());
        assert!(br.has_address(Ipv4Addr::new(10, 0, 0, 1), 24));
        assert!(!br.has_address(Ipv4Addr::new(10, 0, 0, 1), 16));
        let tap = find(&links, "tap0123").unwrap();
        assert!(!tap.up());
        assert_eq!(tap.master.as_deref(), Some("br0"));
        assert!(parse(b"\n").unwrap().is_empty());
        assert!(parse(b"not json").is_err());
    }
}
