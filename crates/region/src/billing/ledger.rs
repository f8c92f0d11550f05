//! An account's ledger: the events its bill is made from and the
//! commitments it bought, read once and then metered and priced for any
//! window.

use nubo_store::events::{self, Event};
use nubo_store::{Conn, commitments};

use super::metering::{self, Usage};
use super::prices::Prices;
use super::rating::{self, Commitment, Line};

/// The resources metered.
pub const METERED: &[&str] = &["instance", "volume", "snapshot", "bucket", "object", "part"];

pub struct Ledger {
    events: Vec<Event>,
    commitments: Vec<Commitment>,
}

impl Ledger {
    /// What the account's bill is made from, as it stood before `before`.
    pub async fn load(c: &mut Conn, account_id: &str, before: i64) -> nubo_store::Result<Ledger> {
        let events = events::of_account(c, account_id, METERED, before).await?;
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
        Ok(Ledger {
            events,
            commitments,
        })
    }

    /// Usage per resource and meter in `[from, to)`.
    pub fn usage(&self, from: i64, to: i64) -> Vec<Usage> {
        metering::meter(&self.events, from, to)
    }

    /// The priced lines of `[from, to)`. Past the ledger's events, what was
    /// held is taken to be held on: a window into the future is a forecast.
    pub fn lines(&self, prices: &Prices, from: i64, to: i64) -> Vec<Line> {
        let segments = metering::segments(&self.events, from, to);
        rating::rate(&segments, prices, &self.commitments, from, to)
    }
}
