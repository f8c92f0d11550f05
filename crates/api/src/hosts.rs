//! Hosts of the region, as the operator sees them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Accepts new instances.
    Active,
    /// Keeps its instances, takes no new ones.
    Draining,
    /// The agent does not answer.
    Unreachable,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub id: String,
    pub name: String,
    /// `sim` or `qemu`.
    pub driver: String,
    pub state: HostState,
    pub capacity: Capacity,
    pub allocated: Capacity,
    pub instances: u64,
    /// RFC 3339.
    pub created_at: String,
}
