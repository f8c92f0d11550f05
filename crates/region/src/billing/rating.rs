//! Rating: metered usage priced by the list in effect at each moment, with
//! commitments applied. Amounts are whole billionths of the currency unit
//! (nanos); each line is rounded once, and a total is the sum of its lines,
//! so the lines of a bill always add up.
//!
//! A commitment is a spend per hour on compute, bought for a term at a
//! discount. Each hour, the hour's running instances are priced at the
//! discounted rate up to the commitment; what is left is pay as you go. The
//! commitment's fee is owed for every hour of its term, used or not. On a bill
//! that is three kinds of line, as the large clouds show it: usage at the
//! pay-as-you-go price, a negative coverage line for the usage the
//! commitment paid for, and the commitment's fee.

use std::collections::BTreeMap;

use super::metering::{Meter, Segment};
use super::prices::Prices;

/// A month for storage prices: 30 days.
pub const MONTH_MICROS: i64 = 30 * 86_400 * 1_000_000;
pub const HOUR_MICROS: i64 = 3_600_000_000;
const GIB: u128 = 1 << 30;
/// Discounts are in basis points.
const WHOLE: u128 = 10_000;

/// A commitment as rating needs it.
#[derive(Debug, Clone)]
pub struct Commitment {
    pub id: String,
    pub per_hour_nanos: u64,
    pub discount_bp: u32,
    pub start: i64,
    pub end: i64,
}

/// One priced line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// `compute`, `block-storage`, `object-storage` or `commitments`.
    pub service: &'static str,
    pub resource_type: String,
    pub resource_id: String,
    /// `instance:<type>`, `volume-storage`, `snapshot-storage`,
    /// `object-storage`, `requests`, `data-out`, `commitment-fee` or
    /// `commitment-coverage`.
    pub meter: String,
    /// In `unit`s.
    pub quantity: f64,
    pub unit: &'static str,
    /// Per `unit`; 0 for coverage, which is a share of other lines.
    pub unit_price_nanos: u64,
    pub amount_nanos: i64,
}

/// The meter's price in a list, per unit.
fn unit_price(meter: &Meter, list: &nubo_api::billing::PriceList) -> u64 {
    match meter {
        Meter::Instance(t) => list.instance_second_nanos.get(t).copied().unwrap_or(0),
        Meter::VolumeStorage => list.volume_gib_month_nanos,
        Meter::SnapshotStorage => list.snapshot_gib_month_nanos,
        Meter::ObjectStorage => list.object_gib_month_nanos,
        Meter::Requests => list.requests_per_1000_nanos,
        Meter::DataOut => list.egress_gib_nanos,
    }
}

/// How many of the meter's own quantities (microseconds, byte-microseconds,
/// requests, bytes) make the unit it is priced per.
fn per_unit(meter: &Meter) -> u128 {
    match meter {
        Meter::Instance(_) => 1_000_000,
        Meter::VolumeStorage | Meter::SnapshotStorage | Meter::ObjectStorage => {
            GIB * MONTH_MICROS as u128
        }
        Meter::Requests => 1000,
        Meter::DataOut => GIB,
    }
}

/// The service a meter's usage belongs to, and the unit it is priced in.
pub fn describe(meter: &Meter) -> (&'static str, &'static str) {
    match meter {
        Meter::Instance(_) => ("compute", "second"),
        Meter::VolumeStorage | Meter::SnapshotStorage => ("block-storage", "GiB-month"),
        Meter::ObjectStorage => ("object-storage", "GiB-month"),
        Meter::Requests => ("object-storage", "1,000 requests"),
        Meter::DataOut => ("object-storage", "GiB"),
    }
}

fn rounded(numerator: u128, denominator: u128) -> u128 {
    (numerator + denominator / 2) / denominator
}

/// `segments` (from metering, inside `[from, to)`) priced, with
/// `commitments` applied to the hours of `[from, to)`.
pub fn rate(
    segments: &[Segment],
    prices: &Prices,
    commitments: &[Commitment],
    from: i64,
    to: i64,
) -> Vec<Line> {
    let mut rater = Rater::default();
    rater.add(segments, prices);
    rater.lines(commitments, from, to)
}

/// The start of the span of `length` (an hour, a day) that holds `at`.
pub fn floor(at: i64, length: i64) -> i64 {
    at - at.rem_euclid(length)
}

/// A piece of a segment (between price changes) split at every `length`
/// boundary: the span each part falls in and its quantity. What is owed at
/// the end falls in the span of the end, as a window would count it.
pub fn by_span(piece: Segment, length: i64) -> Vec<(i64, u128)> {
    let mut out = Vec::new();
    let extra = piece.extra;
    let end = piece.end;
    for part in cut(Segment { extra: 0, ..piece }, |at| {
        Some(floor(at, length) + length)
    }) {
        let q = part.quantity();
        if q > 0 {
            out.push((floor(part.start, length), q));
        }
    }
    if extra > 0 {
        out.push((floor(end, length), extra));
    }
    out
}

/// Every piece of `segments` between price changes, with its unit price, to
/// `each`; and the pay-as-you-go compute of each hour, in nanos × 10⁶, added
/// to `compute`.
pub fn price_pieces(
    segments: &[Segment],
    prices: &Prices,
    compute: &mut BTreeMap<i64, u128>,
    mut each: impl FnMut(&Segment, Segment, u64),
) {
    for s in segments {
        for piece in cut(s.clone(), |at| prices.next_change(at)) {
            let unit_price = unit_price(&s.meter, prices.at(piece.start));
            if matches!(s.meter, Meter::Instance(_)) {
                for (hour, q) in by_span(piece.clone(), HOUR_MICROS) {
                    *compute.entry(hour).or_default() += q * unit_price as u128;
                }
            }
            each(s, piece, unit_price);
        }
    }
}

/// (resource type, resource, meter, unit price) → quantity.
type Priced = BTreeMap<(String, String, Meter, u64), u128>;

fn tally(priced: &mut Priced, kind: &str, id: &str, meter: &Meter, unit_price: u64, q: u128) {
    *priced
        .entry((kind.to_string(), id.to_string(), meter.clone(), unit_price))
        .or_default() += q;
}

/// Usage priced line by line as it is added, from segments or from what a
/// roll-up kept of them; the sums are the same either way.
#[derive(Default)]
pub struct Rater {
    priced: Priced,
    /// Hour → pay-as-you-go compute, in nanos × 10⁶.
    compute: BTreeMap<i64, u128>,
}

impl Rater {
    pub fn add(&mut self, segments: &[Segment], prices: &Prices) {
        let priced = &mut self.priced;
        price_pieces(
            segments,
            prices,
            &mut self.compute,
            |s, piece, unit_price| {
                tally(
                    priced,
                    &s.resource_type,
                    &s.resource_id,
                    &s.meter,
                    unit_price,
                    piece.quantity(),
                )
            },
        );
    }

    pub fn add_quantity(&mut self, kind: &str, id: &str, meter: &Meter, unit_price: u64, q: u128) {
        tally(&mut self.priced, kind, id, meter, unit_price, q);
    }

    /// Pay-as-you-go compute of an hour, in nanos × 10⁶.
    pub fn add_compute(&mut self, hour: i64, numerator: u128) {
        *self.compute.entry(hour).or_default() += numerator;
    }

    /// The lines of `[from, to)`, commitments applied.
    pub fn lines(self, commitments: &[Commitment], from: i64, to: i64) -> Vec<Line> {
        let mut lines: Vec<Line> = self
            .priced
            .into_iter()
            .filter(|(_, q)| *q > 0)
            .map(|((kind, id, meter, unit_price), q)| {
                let (service, unit) = describe(&meter);
                let name = meter.name();
                let denominator = per_unit(&meter);
                Line {
                    service,
                    resource_type: kind,
                    resource_id: id,
                    meter: name,
                    quantity: q as f64 / denominator as f64,
                    unit,
                    unit_price_nanos: unit_price,
                    amount_nanos: rounded(q * unit_price as u128, denominator) as i64,
                }
            })
            .collect();
        lines.extend(commit(&self.compute, commitments, from, to));
        lines
    }
}

/// `s` cut wherever `next(at)` (the first boundary after `at`) falls inside it.
fn cut(s: Segment, next: impl Fn(i64) -> Option<i64>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = next(rest.start).filter(|at| *at < rest.end) {
        let (before, after) = rest.split(at);
        out.push(before);
        rest = after;
    }
    out.push(rest);
    out
}

/// The fee and coverage lines of `commitments` over `[from, to)`, given
/// each hour's pay-as-you-go compute.
fn commit(
    compute: &BTreeMap<i64, u128>,
    commitments: &[Commitment],
    from: i64,
    to: i64,
) -> Vec<Line> {
    let mut order: Vec<&Commitment> = commitments.iter().collect();
    // The deepest discount is used first, as it saves the most.
    order.sort_by(|a, b| b.discount_bp.cmp(&a.discount_bp).then(a.id.cmp(&b.id)));
    let mut covered: BTreeMap<&str, u128> = BTreeMap::new();
    for (&hour, &numerator) in compute.range(floor(from, HOUR_MICROS)..to) {
        let mut left = rounded(numerator, 1_000_000);
        for c in &order {
            let active = overlap(c.start, c.end, hour.max(from), (hour + HOUR_MICROS).min(to));
            if active == 0 || left == 0 {
                continue;
            }
            let keep = WHOLE - u128::from(c.discount_bp);
            let available = u128::from(c.per_hour_nanos) * active / HOUR_MICROS as u128;
            let discounted = left * keep / WHOLE;
            let paid = if discounted <= available {
                left
            } else {
                (available * WHOLE / keep).min(left)
            };
            left -= paid;
            *covered.entry(&c.id).or_default() += paid;
        }
    }
    let mut lines = Vec::new();
    for c in commitments {
        let active = overlap(c.start, c.end, from, to);
        if active == 0 {
            continue;
        }
        let line = |meter: &str, quantity, unit, unit_price_nanos, amount_nanos| Line {
            service: "commitments",
            resource_type: "commitment".into(),
            resource_id: c.id.clone(),
            meter: meter.into(),
            quantity,
            unit,
            unit_price_nanos,
            amount_nanos,
        };
        lines.push(line(
            "commitment-fee",
            active as f64 / HOUR_MICROS as f64,
            "hour",
            c.per_hour_nanos,
            rounded(u128::from(c.per_hour_nanos) * active, HOUR_MICROS as u128) as i64,
        ));
        if let Some(paid) = covered.get(c.id.as_str()).filter(|p| **p > 0) {
            lines.push(line(
                "commitment-coverage",
                *paid as f64 / 1e9,
                "pay-as-you-go amount",
                0,
                -(*paid as i64),
            ));
        }
    }
    lines
}

fn overlap(start: i64, end: i64, from: i64, to: i64) -> u128 {
    (end.min(to) - start.max(from)).max(0) as u128
}

/// The sum of `lines`.
pub fn total(lines: &[Line]) -> i64 {
    lines.iter().map(|l| l.amount_nanos).sum()
}

#[cfg(test)]
mod tests {
    use nubo_store::events::Event;
    use serde_json::json;

    use super::super::metering::segments;
    use super::super::prices::PriceChange;
    use super::*;

    const S: i64 = 1_000_000;
    /// 2026-11-01T00:00:00Z.
    const NOV: i64 = 1_793_491_200 * S;

    fn vm(id: &str, at: i64, state: &str) -> Event {
        Event {
            id: format!("ev-{at:016x}-{id}"),
            at,
            account_id: Some("acc-1".into()),
            resource_type: "instance".into(),
            resource_id: id.into(),
            action: format!("state.{state}"),
            data: json!({"instance_type": "n1.small"}),
        }
    }

    fn small(prices: &Prices, at: i64) -> u64 {
        prices.at(at).instance_second_nanos["n1.small"]
    }

    #[test]
    fn a_price_change_applies_from_its_moment() {
        let change = PriceChange {
            effective_from: "2026-11-15T00:00:00Z".into(),
            instance_second: [("n1.small".to_string(), 0.00002)].into(),
            ..Default::default()
        };
        let prices = Prices::new("USD", &[change]).unwrap();
        let mid = NOV + 14 * 86_400 * S;
        let events = [
            vm("i-1", mid - 60 * S, "running"),
            vm("i-1", mid + 120 * S, "stopped"),
        ];
        let lines = rate(
            &segments(&events, NOV, NOV + 30 * 86_400 * S),
            &prices,
            &[],
            NOV,
            NOV + 30 * 86_400 * S,
        );
        assert_eq!(lines.len(), 2, "{lines:?}");
        let old = small(&prices, NOV);
        assert_eq!(
            lines[0].amount_nanos + lines[1].amount_nanos,
            (60 * old + 120 * 20_000) as i64
        );
        assert_eq!((lines[0].quantity + lines[1].quantity), 180.0);
    }

    #[test]
    fn storage_is_priced_by_the_gib_month() {
        let prices = Prices::new("USD", &[]).unwrap();
        let vol = |at, state: &str| Event {
            id: format!("ev-{at:016x}"),
            at,
            account_id: Some("acc-1".into()),
            resource_type: "volume".into(),
            resource_id: "vol-1".into(),
            action: format!("state.{state}"),
            data: json!({"size_gib": 10}),
        };
        let events = [
            vol(NOV, "available"),
            vol(NOV + MONTH_MICROS / 2, "deleted"),
        ];
        let lines = rate(
            &segments(&events, NOV, NOV + MONTH_MICROS),
            &prices,
            &[],
            NOV,
            NOV + MONTH_MICROS,
        );
        assert_eq!(lines[0].quantity, 5.0, "10 GiB for half a month");
        assert_eq!(
            lines[0].amount_nanos,
            5 * prices.at(NOV).volume_gib_month_nanos as i64
        );
    }

    #[test]
    fn a_commitment_covers_part_of_the_usage_and_its_fee_is_owed_every_hour() {
        let prices = Prices::new("USD", &[]).unwrap();
        let p = small(&prices, NOV) as i64;
        let hour = HOUR_MICROS;
        // Two instances for the first hour, one for the second, none for the third.
        let events = [
            vm("i-1", NOV, "running"),
            vm("i-2", NOV, "running"),
            vm("i-2", NOV + hour, "stopped"),
            vm("i-1", NOV + 2 * hour, "stopped"),
        ];
        // Enough for one instance an hour at a 25% discount.
        let per_hour = (3600 * p * 3 / 4) as u64;
        let c = Commitment {
            id: "cm-1".into(),
            per_hour_nanos: per_hour,
            discount_bp: 2500,
            start: NOV,
            end: NOV + 365 * 86_400 * S,
        };
        let to = NOV + 3 * hour;
        let lines = rate(&segments(&events, NOV, to), &prices, &[c], NOV, to);
        let meter = |m: &str| {
            lines
                .iter()
                .filter(|l| l.meter == m)
                .map(|l| l.amount_nanos)
                .sum::<i64>()
        };
        let on_demand = 3 * 3600 * p;
        assert_eq!(meter("instance:n1.small"), on_demand);
        assert_eq!(
            meter("commitment-fee"),
            3 * per_hour as i64,
            "the idle third hour too"
        );
        // Hour 1 covers one of two instances, hour 2 the one, hour 3 nothing.
        assert_eq!(meter("commitment-coverage"), -2 * 3600 * p);
        let expected = 3600 * p + 3 * per_hour as i64;
        assert_eq!(total(&lines), expected);
        assert!(total(&lines) < on_demand + 3 * per_hour as i64);
    }

    #[test]
    fn nothing_used_owes_nothing() {
        let prices = Prices::new("USD", &[]).unwrap();
        assert!(rate(&[], &prices, &[], NOV, NOV + MONTH_MICROS).is_empty());
    }
}
