//! How far a snapshot's copy, or a volume's restore, has come. The host tells
//! the chunk store it copies through as it goes; while the copy runs, its
//! percentage is written on the snapshot's or volume's row once a second, for
//! the API (and the CLI's `--wait`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use nubo_host::BoxFuture;
use nubo_host::volumes::ChunkStore;
use nubo_store::{snapshots, volumes};

use crate::state::AppState;

const RECORD_EVERY: Duration = Duration::from_secs(1);

/// The row a copy's progress is written on.
#[derive(Debug, Clone, Copy)]
pub enum Copy {
    /// A snapshot being taken.
    Snapshot,
    /// A volume being restored from a snapshot.
    Restore,
}

/// A chunk store that keeps the percentage its copy has reached.
struct Tracked {
    inner: Arc<dyn ChunkStore>,
    percent: Arc<AtomicU8>,
}

impl ChunkStore for Tracked {
    fn contains<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        self.inner.contains(hash)
    }

    fn put<'a>(&'a self, hash: &'a str, data: Bytes) -> BoxFuture<'a, Result<(), String>> {
        self.inner.put(hash, data)
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Bytes, String>> {
        self.inner.get(hash)
    }

    fn advanced(&self, done: u64, total: u64) {
        self.percent.store(percent(done, total), Ordering::Relaxed);
    }
}

fn percent(done: u64, total: u64) -> u8 {
    match total {
        0 => 100,
        _ => (done.min(total) * 100 / total) as u8,
    }
}

/// Runs `copy` through a chunk store that tracks it, writing its percentage
/// on row `id` while it runs.
pub async fn track<T, F>(
    state: &AppState,
    row: Copy,
    id: &str,
    chunks: Arc<dyn ChunkStore>,
    copy: impl FnOnce(Arc<dyn ChunkStore>) -> F,
) -> T
where
    F: Future<Output = T>,
{
    let percent = Arc::new(AtomicU8::new(0));
    let copy = copy(Arc::new(Tracked {
        inner: chunks,
        percent: percent.clone(),
    }));
    tokio::pin!(copy);
    let mut tick = tokio::time::interval(RECORD_EVERY);
    let mut recorded = None;
    loop {
        tokio::select! {
            out = &mut copy => return out,
            _ = tick.tick() => {
                let now = percent.load(Ordering::Relaxed);
                if recorded != Some(now) {
                    record(state, row, id, now).await;
                    recorded = Some(now);
                }
            }
        }
    }
}

async fn record(state: &AppState, row: Copy, id: &str, percent: u8) {
    let written = match state.store.conn().await {
        Ok(mut c) => match row {
            Copy::Snapshot => snapshots::set_progress(&mut c, id, percent.into()).await,
            Copy::Restore => volumes::set_progress(&mut c, id, percent.into()).await,
        },
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::debug!(id, error = %e, "copy progress not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_never_pass_100() {
        assert_eq!(percent(0, 8), 0);
        assert_eq!(percent(3, 8), 37);
        assert_eq!(percent(8, 8), 100);
        assert_eq!(percent(9, 8), 100);
        assert_eq!(percent(0, 0), 100, "nothing to copy is done");
    }
}
