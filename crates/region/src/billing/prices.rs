//! The public price list: built in, and changed by the operator with
//! `[[prices]]` tables in nubod's config file, each in effect from its
//! `effective_from` until the next. A table names only what it changes.
//!
//! ```toml
//! currency = "USD"
//! [[prices]]
//! effective_from = "2026-12-01T00:00:00Z"
//! volume_gib_month = 0.10
//! instance_second = { "n1.nano" = 0.0000012 }
//! ```

use std::collections::BTreeMap;

use axum::extract::State;
use nubo_api::billing::PriceList;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::rfc3339;
use crate::compute::catalog;
use crate::state::AppState;

/// One `[[prices]]` table of the config file, in currency units.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceChange {
    pub effective_from: String,
    #[serde(default)]
    pub instance_second: BTreeMap<String, f64>,
    pub volume_gib_month: Option<f64>,
    pub snapshot_gib_month: Option<f64>,
    pub object_gib_month: Option<f64>,
    pub requests_per_1000: Option<f64>,
    pub egress_gib: Option<f64>,
    pub load_balancer_hour: Option<f64>,
}

/// Every version of the price list, oldest first; the first is in effect
/// from the beginning of time.
#[derive(Debug, Clone)]
pub struct Prices {
    versions: Vec<(i64, PriceList)>,
}

/// The built-in prices (in the spirit of the large clouds' list prices).
fn built_in(currency: &str) -> PriceList {
    PriceList {
        effective_from: rfc3339(0),
        currency: currency.to_string(),
        instance_second_nanos: catalog::all()
            .into_iter()
            .map(|t| (t.name, t.price_per_second_nanos))
            .collect(),
        volume_gib_month_nanos: 80_000_000,
        snapshot_gib_month_nanos: 50_000_000,
        object_gib_month_nanos: 23_000_000,
        requests_per_1000_nanos: 5_000_000,
        egress_gib_nanos: 90_000_000,
        load_balancer_hour_nanos: 22_500_000,
    }
}

/// A price in currency units as billionths, refused when negative or absurd.
fn nanos(what: &str, units: f64) -> Result<u64, String> {
    if !(0.0..=1e6).contains(&units) || units.is_nan() {
        return Err(format!(
            "price {what} = {units}: must be between 0 and 1000000"
        ));
    }
    Ok((units * 1e9).round() as u64)
}

impl Prices {
    pub fn new(currency: &str, changes: &[PriceChange]) -> Result<Prices, String> {
        let mut changes: Vec<(i64, &PriceChange)> = changes
            .iter()
            .map(|c| {
                OffsetDateTime::parse(&c.effective_from, &Rfc3339)
                    .map(|t| ((t.unix_timestamp_nanos() / 1000) as i64, c))
                    .map_err(|_| {
                        format!(
                            "prices: effective_from {:?} is not RFC 3339",
                            c.effective_from
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        changes.sort_by_key(|(at, _)| *at);
        let mut versions = vec![(0, built_in(currency))];
        for (at, change) in changes {
            let mut list = versions
                .last()
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| built_in(currency));
            list.effective_from = rfc3339(at);
            for (name, price) in &change.instance_second {
                if catalog::find(name).is_none() {
                    return Err(format!("prices: unknown instance type {name:?}"));
                }
                list.instance_second_nanos.insert(
                    name.clone(),
                    nanos(&format!("instance_second.{name}"), *price)?,
                );
            }
            for (field, value, name) in [
                (
                    &mut list.volume_gib_month_nanos,
                    change.volume_gib_month,
                    "volume_gib_month",
                ),
                (
                    &mut list.snapshot_gib_month_nanos,
                    change.snapshot_gib_month,
                    "snapshot_gib_month",
                ),
                (
                    &mut list.object_gib_month_nanos,
                    change.object_gib_month,
                    "object_gib_month",
                ),
                (
                    &mut list.requests_per_1000_nanos,
                    change.requests_per_1000,
                    "requests_per_1000",
                ),
                (&mut list.egress_gib_nanos, change.egress_gib, "egress_gib"),
                (
                    &mut list.load_balancer_hour_nanos,
                    change.load_balancer_hour,
                    "load_balancer_hour",
                ),
            ] {
                if let Some(v) = value {
                    *field = nanos(name, v)?;
                }
            }
            versions.push((at, list));
        }
        Ok(Prices { versions })
    }

    /// The list in effect at `micros`.
    pub fn at(&self, micros: i64) -> &PriceList {
        let i = self.versions.partition_point(|(from, _)| *from <= micros);
        &self.versions[i.saturating_sub(1)].1
    }

    /// When the list next changes after `micros`, if it does.
    pub fn next_change(&self, micros: i64) -> Option<i64> {
        let i = self.versions.partition_point(|(from, _)| *from <= micros);
        self.versions.get(i).map(|(from, _)| *from)
    }

    pub fn all(&self) -> Vec<PriceList> {
        self.versions.iter().map(|(_, l)| l.clone()).collect()
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(pricing_list))
}

/// The public price list: every version, oldest first, each in effect from
/// its `effective_from` until the next. Public, like a shop's window.
#[utoipa::path(get, path = "/v1/pricing", tag = "billing", operation_id = "pricing_list",
    responses((status = 200, body = Vec<PriceList>)))]
async fn pricing_list(State(state): State<AppState>) -> axum::Json<Vec<PriceList>> {
    axum::Json(state.config.prices.all())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(at: &str) -> PriceChange {
        PriceChange {
            effective_from: at.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_change_applies_from_its_time_and_keeps_what_it_does_not_name() {
        let december = PriceChange {
            volume_gib_month: Some(0.1),
            instance_second: [("n1.nano".to_string(), 0.000002)].into(),
            ..change("2026-12-01T00:00:00Z")
        };
        let prices = Prices::new("USD", &[december]).unwrap();
        let before = prices.at(1_796_000_000_000_000);
        let after = prices.at(1_797_000_000_000_000);
        assert_eq!(before.volume_gib_month_nanos, 80_000_000);
        assert_eq!(after.volume_gib_month_nanos, 100_000_000);
        assert_eq!(after.instance_second_nanos["n1.nano"], 2_000);
        assert_eq!(
            after.instance_second_nanos["n1.small"],
            before.instance_second_nanos["n1.small"]
        );
        assert_eq!(
            after.snapshot_gib_month_nanos,
            before.snapshot_gib_month_nanos
        );
        assert_eq!(prices.all().len(), 2);
    }

    #[test]
    fn bad_changes_are_refused() {
        let unknown = PriceChange {
            instance_second: [("n9.huge".to_string(), 1.0)].into(),
            ..change("2026-12-01T00:00:00Z")
        };
        assert!(
            Prices::new("USD", &[unknown])
                .unwrap_err()
                .contains("n9.huge")
        );
        let negative = PriceChange {
            egress_gib: Some(-1.0),
            ..change("2026-12-01T00:00:00Z")
        };
        assert!(Prices::new("USD", &[negative]).is_err());
        assert!(Prices::new("USD", &[change("december")]).is_err());
    }
}
