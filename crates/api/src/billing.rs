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
