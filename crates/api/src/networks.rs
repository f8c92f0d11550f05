//! Private tenant networks. Every account has a `default` network in each
//! region; instances launched without naming one join it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// The private IPv4 range, `a.b.c.d/n`.
    pub cidr: String,
    /// The address instances route through (the range's first host address).
    pub gateway: String,
    /// The network the account's instances join unless told otherwise.
    pub is_default: bool,
    pub region: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetworkRequest {
    /// 1 to 64 letters, digits, '.', '_' or '-'; unique in the account.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "backend")]
    pub name: String,
    /// A private range (inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16),
    /// from /16 to /28. Networks of different accounts may overlap.
    #[schema(example = "10.20.0.0/24")]
    pub cidr: String,
}
