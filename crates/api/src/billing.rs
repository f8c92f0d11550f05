//! Billing: what an account's resources used, metered per second from the
//! region's event log.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// RFC 3339 or `YYYY-MM-DD` (UTC); default: the start of this month.
    pub since: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD` (UTC); default: now.
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageLine {
    /// `instance`, `volume` or `snapshot`.
    pub resource_type: String,
    pub resource_id: String,
    /// `instance:<type>` (running time), `volume-storage` (provisioned size)
    /// or `snapshot-storage` (stored bytes).
    pub meter: String,
    pub quantity: f64,
    /// `second` for instances, `GiB-second` for storage.
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// RFC 3339.
    pub since: String,
    /// RFC 3339.
    pub until: String,
    pub lines: Vec<UsageLine>,
}

/// The prices in effect from a moment on. Amounts are in billionths of the
/// region's currency unit; a later list replaces an earlier one from its
/// `effective_from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PriceList {
    /// RFC 3339.
    pub effective_from: String,
    /// e.g. `USD`.
    pub currency: String,
    /// Per running second, by instance type.
    pub instance_second_nanos: std::collections::BTreeMap<String, u64>,
    /// Per GiB of volume provisioned for a month (30 days), by the second.
    pub volume_gib_month_nanos: u64,
    /// Per GiB stored in snapshots for a month, by the second.
    pub snapshot_gib_month_nanos: u64,
    /// Per GiB stored in object storage for a month, by the second.
    pub object_gib_month_nanos: u64,
    /// Per 1,000 object storage requests.
    pub requests_per_1000_nanos: u64,
    /// Per GiB sent out of the region.
    pub egress_gib_nanos: u64,
    /// Per hour of a load balancer, by the second.
    pub load_balancer_hour_nanos: u64,
}
