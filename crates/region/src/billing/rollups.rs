//! Roll-ups: an account's events folded, a day at a time, into what each
//! resource used on each meter at each price, and its compute per hour. A
//! bill then reads days instead of every event, and meters live only what
//! came after the account's mark, from the checkpoint the mark carries.
//!
//! A roll-up keeps the price it rated a day at: the price list may change
//! from a time to come, never back-dated.

use std::collections::BTreeMap;

use nubo_store::rollups::{self, Day, Mark};
use nubo_store::{StoreError, events};

use super::ledger::METERED;
use super::metering::{self, Meter};
use super::prices::Prices;
use super::rating::{HOUR_MICROS, by_span, floor, price_pieces};
use crate::state::AppState;

pub const DAY_MICROS: i64 = 24 * HOUR_MICROS;

/// The days and compute hours of `[from, to)` from these events (a
/// checkpoint at `from`, then what happened from `from` on).
pub fn fold(
    events: &[events::Event],
    prices: &Prices,
    from: i64,
    to: i64,
) -> (Vec<Day>, Vec<(i64, u128)>) {
    let mut days: BTreeMap<(i64, String, String, Meter, u64), u128> = BTreeMap::new();
    let mut hours: BTreeMap<i64, u128> = BTreeMap::new();
    let segments = metering::segments(events, from, to);
    price_pieces(&segments, prices, &mut hours, |s, piece, unit_price| {
        for (day, q) in by_span(piece, DAY_MICROS) {
            let key = (
                day,
                s.resource_type.clone(),
                s.resource_id.clone(),
                s.meter.clone(),
                unit_price,
            );
            *days.entry(key).or_default() += q;
        }
    });
    let days = days
        .into_iter()
        .map(
            |((day, resource_type, resource_id, meter, unit_price), quantity)| Day {
                day,
                resource_type,
                resource_id,
                meter: meter.name(),
                unit_price: unit_price as i64,
                quantity,
            },
        )
        .collect();
    (days, hours.into_iter().filter(|(_, a)| *a > 0).collect())
}

/// Rolls the account's usage up to `to` (a day's start), if it is not
/// already; true if it moved the mark.
pub async fn advance(state: &AppState, account_id: &str, to: i64) -> nubo_store::Result<bool> {
    let to = floor(to, DAY_MICROS);
    let (from, marked, events) = {
        let mut c = state.store.conn().await?;
        let (from, mut events, marked) = match rollups::mark(&mut c, account_id).await? {
            Some(m) => (m.through, m.checkpoint, true),
            None => (0, Vec::new(), false),
        };
        if to <= from {
            return Ok(false);
        }
        events.extend(events::of_account_between(&mut c, account_id, METERED, from, to).await?);
        (from, marked, events)
    };
    let (days, hours) = fold(&events, &state.config.prices, from, to);
    let mark = Mark {
        through: to,
        checkpoint: metering::checkpoint(&events, to),
    };
    let mut tx = state.store.begin().await?;
    match rollups::write(
        &mut tx,
        account_id,
        marked.then_some(from),
        &mark,
        &days,
        &hours,
    )
    .await
    {
        Err(StoreError::Conflict(_)) => return Ok(false),
        other => other?,
    }
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use nubo_store::events::Event;
    use serde_json::json;

    use super::super::ledger::Ledger;
    use super::super::prices::PriceChange;
    use super::super::rating::Commitment;
    use super::*;

    const S: i64 = 1_000_000;
    /// 2026-11-01T00:00:00Z.
    const NOV: i64 = 1_793_491_200 * S;

    /// A small deterministic generator, so that a failure can be replayed.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn event(
        n: usize,
        at: i64,
        kind: &str,
        id: &str,
        action: &str,
        data: serde_json::Value,
    ) -> Event {
        Event {
            id: format!("ev-{at:016x}{n:016x}"),
            at,
            account_id: Some("acc-1".into()),
            resource_type: kind.into(),
            resource_id: id.into(),
            action: action.into(),
            data,
        }
    }

    /// Instances that start and stop (some runs shorter than a minute, some
    /// ending right on a day or an hour), volumes that resize and go, and a
    /// bucket that fills and empties, over the first days of November.
    fn history(seed: u64) -> Vec<Event> {
        let mut r = Random(seed);
        let mut out = Vec::new();
        let mut push = |at: i64, kind: &str, id: &str, action: &str, data: serde_json::Value| {
            let n = out.len();
            out.push(event(n, at, kind, id, action, data));
        };
        let mut t = NOV - 3 * HOUR_MICROS;
        for _ in 0..400 {
            t += match r.below(6) {
                0 => 0,
                1 => S * r.below(59) as i64,
                2 => HOUR_MICROS - t.rem_euclid(HOUR_MICROS),
                3 => DAY_MICROS - t.rem_euclid(DAY_MICROS),
                _ => S * r.below(7200) as i64,
            };
            let i = r.below(3);
            match r.below(8) {
                0..=2 => {
                    let id = format!("i-{i}");
                    let state = [
                        "pending", "running", "running", "stopping", "stopped", "failed",
                    ][r.below(6) as usize];
                    let t_type = ["n1.nano", "n1.small"][r.below(2) as usize];
                    push(
                        t,
                        "instance",
                        &id,
                        &format!("state.{state}"),
                        json!({"instance_type": t_type}),
                    );
                }
                3..=4 => {
                    let id = format!("vol-{i}");
                    let state = ["creating", "available", "resizing", "in-use", "deleted"]
                        [r.below(5) as usize];
                    push(
                        t,
                        "volume",
                        &id,
                        &format!("state.{state}"),
                        json!({"size_gib": 1 + r.below(20)}),
                    );
                }
                5 => {
                    let state =
                        ["pending", "completed", "deleting", "deleted"][r.below(4) as usize];
                    push(
                        t,
                        "snapshot",
                        "snap-1",
                        &format!("state.{state}"),
                        json!({"stored_bytes": r.below(1 << 30)}),
                    );
                }
                6 => {
                    let kind = ["object", "part"][r.below(2) as usize];
                    let action = ["stored", "removed"][r.below(2) as usize];
                    push(t, kind, "bkt-1", action, json!({"size": r.below(1 << 20)}));
                }
                _ => push(
                    t,
                    "bucket",
                    "bkt-1",
                    "usage",
                    json!({"requests": r.below(100), "bytes_out": r.below(1 << 20)}),
                ),
            }
        }
        out
    }

    #[test]
    fn rolled_up_days_and_live_metering_give_the_bill_that_every_event_gives() {
        let prices = Prices::new(
            "USD",
            &[PriceChange {
                effective_from: "2026-11-02T07:13:21Z".into(),
                instance_second: [("n1.small".to_string(), 0.00003)].into(),
                volume_gib_month: Some(0.2),
                ..Default::default()
            }],
        )
        .unwrap();
        let commitments = vec![Commitment {
            id: "cm-1".into(),
            per_hour_nanos: 3_000_000,
            discount_bp: 2500,
            start: NOV + 5 * HOUR_MICROS + 17 * S,
            end: NOV + 365 * DAY_MICROS,
        }];
        let (mut covered, mut rolled_days) = (0, 0);
        for seed in 1..=40 {
            let all = history(seed * 7919);
            let end = all.last().unwrap().at + 3 * HOUR_MICROS;
            // Marks at day starts, rolled up one after the other.
            let marks: Vec<i64> = (1..=3)
                .map(|d| NOV + d * DAY_MICROS)
                .filter(|m| *m < end)
                .collect();
            let (mut days, mut hours, mut checkpoint, mut through) =
                (Vec::new(), Vec::new(), Vec::new(), 0);
            for &mark in &marks {
                let mut events = checkpoint.clone();
                events.extend(
                    all.iter()
                        .filter(|e| e.at >= through && e.at < mark)
                        .cloned(),
                );
                let (d, h) = fold(&events, &prices, through, mark);
                days.extend(d);
                hours.extend(h);
                checkpoint = metering::checkpoint(&events, mark);
                through = mark;
            }
            for (from, to) in [
                (NOV, end),
                (NOV, NOV + 30 * DAY_MICROS),
                (NOV + DAY_MICROS, end),
            ] {
                let direct =
                    Ledger::of_parts(all.clone(), commitments.clone(), 0, Vec::new(), Vec::new());
                let mut live = checkpoint.clone();
                live.extend(all.iter().filter(|e| e.at >= through).cloned());
                let rolled = Ledger::of_parts(
                    live,
                    commitments.clone(),
                    through,
                    days.iter().filter(|d| d.day >= from).cloned().collect(),
                    hours.iter().filter(|(h, _)| *h >= from).cloned().collect(),
                );
                assert_eq!(
                    rolled.lines(&prices, from, to),
                    direct.lines(&prices, from, to),
                    "seed {seed}, window {from}..{to}"
                );
                assert_eq!(
                    rolled.usage(from, to),
                    direct.usage(from, to),
                    "seed {seed}"
                );
                let lines = direct.lines(&prices, from, to);
                covered += lines
                    .iter()
                    .filter(|l| l.meter == "commitment-coverage")
                    .count();
            }
            rolled_days += days.len();
        }
        // The histories exercise what they are for.
        assert!(covered > 20 && rolled_days > 500, "{covered} {rolled_days}");
    }
}
