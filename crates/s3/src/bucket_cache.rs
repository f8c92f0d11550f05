//! Buckets by name, remembered for a moment. Every object request names its
//! bucket, and asking the store each time costs more than the rest of a small
//! PUT. Changes made through this server are seen at once; changes made through
//! another server of the region within `TTL`, the way S3 itself applies bucket
//! settings lazily. A stale id cannot store anything: rows refer to their bucket,
//! so a write into a bucket deleted meanwhile fails and is answered NoSuchBucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nubo_store::buckets::BucketRow;

const TTL: Duration = Duration::from_secs(2);
/// Names remembered at most; beyond, the expired ones (or all) are dropped.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct BucketCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (Instant, BucketRow)>,
    /// Raised by every forget, so that a lookup that raced a change does not
    /// store what it read before the change.
    generation: u64,
}

/// Where a lookup started, to be handed back to `remember`.
pub struct Ticket(u64);

impl BucketCache {
    /// The remembered bucket, or a ticket to remember it once read.
    pub fn get(&self, name: &str) -> Result<BucketRow, Ticket> {
        let inner = self.lock();
        match inner.entries.get(name) {
            Some((at, row)) if at.elapsed() < TTL => Ok(row.clone()),
            _ => Err(Ticket(inner.generation)),
        }
    }

    pub fn remember(&self, ticket: Ticket, row: &BucketRow) {
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if inner.entries.len() >= CAPACITY {
                inner.entries.clear();
            }
        }
        inner
            .entries
            .insert(row.name.clone(), (Instant::now(), row.clone()));
    }

    /// Called once a change of the bucket made here has committed.
    pub fn forget(&self, name: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent at every await-free step, so a panic elsewhere
        // holding the lock leaves nothing half-done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, id: &str) -> BucketRow {
        BucketRow {
            id: id.into(),
            name: name.into(),
            account_id: "acc".into(),
            region: "r".into(),
            versioning: String::new(),
            acl: "private".into(),
            policy: None,
            cors: None,
            created_at: 0,
        }
    }

    #[test]
    fn remembers_until_forgotten() {
        let cache = BucketCache::default();
        let ticket = cache.get("b").unwrap_err();
        cache.remember(ticket, &row("b", "1"));
        assert_eq!(cache.get("b").ok().map(|r| r.id), Some("1".into()));
        cache.forget("b");
        assert!(cache.get("b").is_err());
    }

    #[test]
    fn a_lookup_that_raced_a_change_is_not_remembered() {
        let cache = BucketCache::default();
        let ticket = cache.get("b").unwrap_err();
        cache.forget("b");
        cache.remember(ticket, &row("b", "old"));
        assert!(cache.get("b").is_err());
    }
}
