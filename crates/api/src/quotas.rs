//! Per-account quotas: a safety valve the account raises itself, up to the operator's ceiling.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum QuotaResource {
    /// Virtual CPUs of instances that are not terminated.
    Vcpus,
    /// Memory (MiB) of instances that are not terminated.
    MemoryMib,
    /// Instances that are not terminated.
    Instances,
    /// Total size (GiB) of block volumes.
    VolumeGib,
    /// Object-storage buckets.
    Buckets,
}

impl QuotaResource {
    pub const ALL: [QuotaResource; 5] = [
        QuotaResource::Vcpus,
        QuotaResource::MemoryMib,
        QuotaResource::Instances,
        QuotaResource::VolumeGib,
        QuotaResource::Buckets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaResource::Vcpus => "vcpus",
            QuotaResource::MemoryMib => "memory_mib",
            QuotaResource::Instances => "instances",
            QuotaResource::VolumeGib => "volume_gib",
            QuotaResource::Buckets => "buckets",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Quota {
    pub resource: QuotaResource,
    /// What the account may hold.
    pub limit: u64,
    /// What it holds now.
    pub used: u64,
    /// The most `limit` can be raised to without the operator.
    pub ceiling: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuotaRequest {
    pub limit: u64,
}
