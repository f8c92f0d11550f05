//! An account's ledger: what its bill is made from, read once and then
//! metered and priced for any window. Where the account's usage is rolled
//! up, days come from the roll-ups and only what followed the mark is
//! metered live, from the mark's checkpoint; both ways give the same bill.

use std::collections::BTreeMap;

use nubo_store::events::{self, Event};
use nubo_store::rollups::{self, Day};
use nubo_store::{Store, commitments};

use super::metering::{self, Meter, Usage};
use super::prices::Prices;
use super::rating::{self, Commitment, Line, Rater, floor};
use super::rollups::DAY_MICROS;

/// The resources metered.
pub const METERED: &[&str] = &["instance", "volume", "snapshot", "bucket", "object", "part"];

pub struct Ledger {
    /// Every event, or the mark's checkpoint and what followed it.
    events: Vec<Event>,
    commitments: Vec<Commitment>,
    /// The mark whose roll-ups are used; 0 for none.
    through: i64,
    days: Vec<Day>,
    hours: Vec<(i64, u128)>,
}

impl Ledger {
    /// What the account's bill is made from, as it stood before `before`,
    /// for windows that start at one of `starts` and end at `before` or later.
    pub async fn load(
        store: &Store,
        account_id: &str,
        starts: &[i64],
        before: i64,
    ) -> nubo_store::Result<Ledger> {
        let mut conn = store.conn().await?;
        let c = &mut *conn;
        let from = starts.iter().copied().min().unwrap_or(before);
        let commitments = commitments::of_account(c, account_id)
            .await?
            .into_iter()
            .filter(|r| r.starts_at < before)
            .map(|r| Commitment {
                id: r.id,
                per_hour_nanos: r.per_hour_nanos.max(0) as u64,
                discount_bp: r.discount_bp.clamp(0, 9_999) as u32,
                start: r.starts_at,
                end: r.ends_at,
            })
            .collect();
        // Roll-ups serve windows that start on a day (or after the mark).
        let mark = rollups::mark(c, account_id).await?.filter(|m| {
            before >= m.through
                && starts
                    .iter()
                    .all(|s| *s >= m.through || *s == floor(*s, DAY_MICROS))
        });
        let Some(mark) = mark else {
            let events = events::of_account(c, account_id, METERED, before).await?;
            return Ok(Ledger::of_parts(
                events,
                commitments,
                0,
                Vec::new(),
                Vec::new(),
            ));
        };
        let mut events = mark.checkpoint;
        events.extend(
            events::of_account_between(c, account_id, METERED, mark.through, before).await?,
        );
        let days = rollups::days(c, account_id, from, mark.through).await?;
        let hours = rollups::hours(c, account_id, from, mark.through).await?;
        Ok(Ledger::of_parts(
            events,
            commitments,
            mark.through,
            days,
            hours,
        ))
    }

    /// A ledger of these parts: `through` 0 for every event, else the mark's
    /// checkpoint and what followed, with the roll-ups before it.
    pub fn of_parts(
        events: Vec<Event>,
        commitments: Vec<Commitment>,
        through: i64,
        days: Vec<Day>,
        hours: Vec<(i64, u128)>,
    ) -> Ledger {
        Ledger {
            events,
            commitments,
            through,
            days,
            hours,
        }
    }

    /// The rolled-up days inside `[from, to)`, with their meters.
    fn days_in(&self, from: i64, to: i64) -> impl Iterator<Item = (&Day, Meter)> {
        self.days
            .iter()
            .filter(move |d| d.day >= from && d.day + DAY_MICROS <= to)
            .filter_map(|d| Meter::parse(&d.meter).map(|m| (d, m)))
    }

    /// Usage per resource and meter in `[from, to)`.
    pub fn usage(&self, from: i64, to: i64) -> Vec<Usage> {
        if self.through == 0 {
            return metering::meter(&self.events, from, to);
        }
        let mut sums: BTreeMap<(String, String, Meter), u128> = BTreeMap::new();
        for (d, meter) in self.days_in(from, to) {
            *sums
                .entry((d.resource_type.clone(), d.resource_id.clone(), meter))
                .or_default() += d.quantity;
        }
        for u in metering::meter(&self.events, from.max(self.through), to) {
            *sums
                .entry((u.resource_type, u.resource_id, u.meter))
                .or_default() += u.quantity;
        }
        sums.into_iter()
            .filter(|(_, q)| *q > 0)
            .map(|((resource_type, resource_id, meter), quantity)| Usage {
                resource_type,
                resource_id,
                meter,
                quantity,
            })
            .collect()
    }

    /// The priced lines of `[from, to)`. Past the ledger's events, what was
    /// held is taken to be held on: a window into the future is a forecast.
    pub fn lines(&self, prices: &Prices, from: i64, to: i64) -> Vec<Line> {
        if self.through == 0 {
            let segments = metering::segments(&self.events, from, to);
            return rating::rate(&segments, prices, &self.commitments, from, to);
        }
        let mut rater = Rater::default();
        for (d, meter) in self.days_in(from, to) {
            rater.add_quantity(
                &d.resource_type,
                &d.resource_id,
                &meter,
                d.unit_price.max(0) as u64,
                d.quantity,
            );
        }
        for &(hour, amount) in self.hours.iter().filter(|(h, _)| *h >= from) {
            rater.add_compute(hour, amount);
        }
        let live = metering::segments(&self.events, from.max(self.through), to);
        rater.add(&live, prices);
        rater.lines(&self.commitments, from, to)
    }
}
