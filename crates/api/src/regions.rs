//! The catalog of regions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Region {
    pub name: String,
    /// Base URL of the REST API.
    pub api_endpoint: String,
    /// Base URL of the S3-compatible object storage.
    pub s3_endpoint: String,
    /// True for the region that answered.
    pub current: bool,
}

/// How much room a region has for new instances, so that a full region can point
/// a caller to one with room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegionCapacity {
    pub region: String,
    /// Active hosts.
    pub hosts: u64,
    pub free_vcpus: u64,
    pub free_memory_mib: u64,
    /// The most any one host can take: an instance larger than this does not fit.
    pub largest_free_vcpus: u64,
    pub largest_free_memory_mib: u64,
}
