//! Security groups: stateful firewalls of a network's instances. An instance
//! is a member of one or more groups of its network (the network's `default`
//! group unless told otherwise); traffic reaches it only if a rule of one of
//! its groups lets it in, and it sends only what a rule lets out. Replies to
//! allowed traffic always pass. A new group lets everything in from its own
//! members and everything out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The network whose instances the group may hold.
    pub network_id: String,
    pub rules: Vec<SecurityGroupRule>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Connections to the group's members.
    #[default]
    Ingress,
    /// Connections from the group's members.
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    /// Every protocol and port.
    All,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroupRule {
    pub id: String,
    pub direction: Direction,
    pub protocol: Protocol,
    /// The port range, for TCP and UDP; absent means every port.
    pub from_port: Option<u16>,
    pub to_port: Option<u16>,
    /// Where the traffic comes from (ingress) or goes to (egress)...
    pub cidr: Option<String>,
    /// ...or the members of this group (an id) instead.
    pub peer_group: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecurityGroupRequest {
    /// 1 to 64 letters, digits, '.', '_' or '-'; unique in its network.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "web")]
    pub name: String,
    /// At most 255 characters.
    #[schema(max_length = 255, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub description: Option<String>,
    /// Id or name of the network; the account's default network if absent.
    pub network: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRuleRequest {
    /// `ingress` (default) or `egress`.
    pub direction: Option<Direction>,
    pub protocol: Protocol,
    /// For TCP and UDP: the first port (every port if absent)...
    #[schema(maximum = 65535, example = 22)]
    pub from_port: Option<u16>,
    /// ...and the last (`from_port` if absent).
    #[schema(maximum = 65535, example = 22)]
    pub to_port: Option<u16>,
    /// The peers as an IPv4 range `a.b.c.d/n` (`0.0.0.0/0` for anywhere)...
    #[schema(example = "0.0.0.0/0")]
    pub cidr: Option<String>,
    /// ...or the members of a group of the same network (id or name).
    pub peer_group: Option<String>,
}

/// The groups an instance is a member of.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSecurityGroups {
    /// Group ids (names are accepted in requests); at least one, at most 5.
    #[schema(min_items = 1, max_items = 5)]
    pub security_groups: Vec<String>,
}
