//! Requests and bytes out, per bucket. Each request appends a line to a
//! journal file: one write, no fsync, so a count survives the process being
//! killed (not the machine losing power) and a request costs no store write.
//! Every few seconds, and at start and shutdown, the journal is sealed as a
//! batch and recorded as events; the batch's name is claimed in the same
//! transaction, so a crash between recording a batch and removing its file
//! records it once. Stored bytes are recorded exactly, with each object.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nubo_store::Store;
use nubo_store::events::{self, NewEvent};
use serde_json::json;

pub struct Usage {
    dir: PathBuf,
    journal: Mutex<File>,
}

const JOURNAL: &str = "journal";
const BATCH: &str = "batch-";

fn open_journal(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(JOURNAL))
}

impl Usage {
    pub fn open(dir: PathBuf) -> std::io::Result<Usage> {
        std::fs::create_dir_all(&dir)?;
        let journal = Mutex::new(open_journal(&dir)?);
        Ok(Usage { dir, journal })
    }

    pub fn record(&self, account_id: &str, bucket_id: &str, bytes_out: u64) {
        let line = format!("{account_id} {bucket_id} {bytes_out}\n");
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = journal.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "object storage usage not journaled");
        }
    }

    /// Seals the journal and records every batch not yet recorded.
    pub async fn flush(&self, store: &Store, at: i64) -> nubo_store::Result<()> {
        self.seal(at)
            .map_err(|e| nubo_store::StoreError::Corrupt(e.to_string()))?;
        let mut batches: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| nubo_store::StoreError::Corrupt(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(BATCH))
            })
            .collect();
        batches.sort();
        for batch in batches {
            record(store, &batch, at).await?;
            let _ = std::fs::remove_file(&batch);
        }
        Ok(())
    }

    /// Renames a journal that holds anything to a batch, and starts a new one.
    fn seal(&self, at: i64) -> std::io::Result<()> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if journal.metadata()?.len() == 0 {
            return Ok(());
        }
        let name = format!("{BATCH}{at:016x}-{:016x}", nubo_store::ids::random_u64());
        std::fs::rename(self.dir.join(JOURNAL), self.dir.join(name))?;
        *journal = open_journal(&self.dir)?;
        Ok(())
    }
}

/// Records one batch as events, once.
async fn record(store: &Store, batch: &Path, at: i64) -> nubo_store::Result<()> {
    let name = batch
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let text = std::fs::read_to_string(batch).unwrap_or_default();
    // (bucket owner, bucket id) → (requests, bytes out); a torn last line is skipped.
    let mut counts: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        if let (Some(account), Some(bucket), Some(Ok(bytes_out)), None) = (
            parts.next(),
            parts.next(),
            parts.next().map(str::parse::<u64>),
            parts.next(),
        ) {
            let entry = counts.entry((account, bucket)).or_default();
            entry.0 += 1;
            entry.1 += bytes_out;
        }
    }
    let mut tx = store.begin().await?;
    if !events::claim_batch(&mut tx, &name, at).await? {
        return Ok(());
    }
    for ((account, bucket), (requests, bytes_out)) in &counts {
        events::append(
            &mut tx,
            NewEvent {
                at,
                account_id: Some(account),
                resource_type: "bucket",
                resource_id: bucket,
                action: "usage",
                data: json!({ "requests": requests, "bytes_out": bytes_out }),
            },
        )
        .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn usage_events(store: &Store) -> Vec<(u64, u64)> {
        let mut c = store.conn().await.unwrap();
        events::of_account(&mut c, "acc-1", &["bucket"], i64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.data["requests"].as_u64().unwrap(),
                    e.data["bytes_out"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_batch_is_recorded_once_whatever_stops_the_region() {
        let dir =
            std::env::temp_dir().join(format!("nubo-usage-{:016x}", nubo_store::ids::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.join("db").display()))
            .await
            .unwrap();
        let usage = Usage::open(dir.join("usage")).unwrap();
        usage.record("acc-1", "bkt-1", 10);
        usage.record("acc-1", "bkt-1", 5);
        usage.flush(&store, 1_000).await.unwrap();
        assert_eq!(usage_events(&store).await, [(2, 15)]);
        usage.flush(&store, 2_000).await.unwrap();
        assert_eq!(
            usage_events(&store).await,
            [(2, 15)],
            "nothing new, nothing twice"
        );

        // Killed after recording a batch but before removing it: the batch is
        // found again and recorded once; a journal left behind is recorded.
        usage.record("acc-1", "bkt-1", 7);
        usage.seal(3_000).unwrap();
        let batch = std::fs::read_dir(dir.join("usage"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(BATCH))
            .unwrap()
            .path();
        record(&store, &batch, 3_000).await.unwrap();
        drop(usage);
        let again = Usage::open(dir.join("usage")).unwrap();
        // The journal of the killed region, its last line torn.
        std::fs::write(
            dir.join("usage").join(JOURNAL),
            "acc-1 bkt-1 1\nacc-1 bkt-1 2\nacc-1 bk",
        )
        .unwrap();
        again.flush(&store, 4_000).await.unwrap();
        assert_eq!(usage_events(&store).await, [(2, 15), (1, 7), (2, 3)]);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
