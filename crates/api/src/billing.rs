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
    /// `resource` (default), `service`, `tag` (the whole tag set) or
    /// `tag:<key>` (that tag's value).
    #[param(pattern = "^(resource|service|tag|tag:.+)$")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageLine {
    /// The resource id, service, or tags the line is for, as `by` asked.
    pub group: String,
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
    pub by: String,
    pub lines: Vec<UsageLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CostLine {
    /// The resource id, service, or tags the line is for, as `by` asked.
    pub group: String,
    /// A usage meter, `commitment-fee` or `commitment-coverage` (negative:
    /// the usage a commitment paid for).
    pub meter: String,
    pub quantity: f64,
    pub unit: String,
    /// In the currency, to the billionth.
    pub amount: String,
    pub amount_nanos: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Forecast {
    /// RFC 3339: the end of this month.
    pub until: String,
    /// What the month will cost if what runs now keeps running and what is
    /// stored stays stored.
    pub total: String,
    pub total_nanos: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CostReport {
    /// RFC 3339.
    pub since: String,
    /// RFC 3339.
    pub until: String,
    pub by: String,
    pub currency: String,
    pub lines: Vec<CostLine>,
    /// The sum of the lines.
    pub total: String,
    pub total_nanos: i64,
    /// Given when the report runs to now.
    pub forecast: Option<Forecast>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvoiceLine {
    /// `compute`, `block-storage` or `commitments`.
    pub service: String,
    pub resource_type: String,
    pub resource_id: String,
    pub meter: String,
    pub quantity: f64,
    pub unit: String,
    /// Per unit, in the currency.
    pub unit_price: String,
    pub amount: String,
    pub amount_nanos: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    pub account_id: String,
    /// `YYYY-MM`.
    pub month: String,
    /// `open` (the month so far; it changes) or `closed` (final).
    pub status: String,
    pub currency: String,
    /// RFC 3339: the month's first moment.
    pub since: String,
    /// RFC 3339: the next month's first moment, or now for an open month.
    pub until: String,
    /// RFC 3339, once closed.
    pub closed_at: Option<String>,
    pub lines: Vec<InvoiceLine>,
    /// The sum of the lines, to the billionth.
    pub total: String,
    pub total_nanos: i64,
    /// The total to the cent, half up: what is charged.
    pub amount_due: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceSummary {
    pub month: String,
    pub status: String,
    pub total: String,
    pub total_nanos: i64,
    pub closed_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceParams {
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// `YYYY-MM`; it must have ended.
    #[schema(
        pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2025-01"
    )]
    pub month: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloseReport {
    pub month: String,
    /// Invoices written now.
    pub closed: u32,
    /// Invoices already closed that closing again reproduced exactly.
    pub identical: u32,
    /// Invoices already closed that closing again did not reproduce; the
    /// store keeps the first (and the log says which).
    pub different: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitmentCreate {
    /// The spend per hour committed to, in the currency.
    #[schema(minimum = 0.000000001, maximum = 10_000)]
    pub per_hour: f64,
    /// `1y` or `3y` (the operator may offer others).
    pub term: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Commitment {
    pub id: String,
    pub per_hour: String,
    pub per_hour_nanos: i64,
    pub term: String,
    /// Off the pay-as-you-go price of the compute it covers.
    pub discount_percent: f64,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339.
    pub ends_at: String,
    /// `active` or `expired`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetCreate {
    /// 1 to 64 letters, digits, `-`, `_` and `.`; unique in the account.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// The monthly amount, in the currency.
    #[schema(minimum = 0.000000001, maximum = 1_000_000_000)]
    pub monthly: f64,
    /// Percentages of the monthly amount (1 to 1000) at which to alert;
    /// default 80 and 100.
    #[serde(default)]
    pub alert_at: Vec<u32>,
    /// An `http(s)://` URL that each alert is POSTed to, as JSON.
    pub webhook_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    pub id: String,
    pub name: String,
    pub monthly: String,
    pub monthly_nanos: i64,
    pub alert_at: Vec<u32>,
    pub webhook_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// This month's cost so far.
    pub month_to_date: String,
    pub month_to_date_nanos: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetAlert {
    pub budget_id: String,
    pub budget_name: String,
    /// `YYYY-MM`.
    pub month: String,
    pub threshold_percent: u32,
    /// RFC 3339.
    pub at: String,
    /// The month's cost when the threshold was crossed.
    pub amount: String,
    pub budget: String,
    /// `none`, `pending`, `delivered` or `failed`.
    pub webhook: String,
}

/// An amount of nanos as a decimal of the currency, to the billionth.
pub fn money(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

/// An amount of nanos to the cent, half away from zero.
pub fn cents(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let c = (nanos.unsigned_abs() + 5_000_000) / 10_000_000;
    format!("{sign}{}.{:02}", c / 100, c % 100)
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

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_are_written_exactly() {
        assert_eq!(super::money(1_500_000_001), "1.500000001");
        assert_eq!(super::money(-5), "-0.000000005");
        assert_eq!(super::cents(1_005_000_000), "1.01");
        assert_eq!(super::cents(1_004_999_999), "1.00");
        assert_eq!(super::cents(0), "0.00");
    }
}
