//! Requests and bytes out, per bucket, counted in memory and recorded as events
//! every few seconds (and at shutdown), so that a request costs no write of its
//! own. A crash loses at most one interval of these counts; stored bytes are
//! recorded exactly, with each object.

use std::collections::HashMap;
use std::sync::Mutex;

use nubo_store::Store;
use nubo_store::events::{self, NewEvent};
use serde_json::json;

#[derive(Default)]
pub struct Usage {
    /// (bucket owner, bucket id) → (requests, bytes out).
    counts: Mutex<HashMap<(String, String), (u64, u64)>>,
}

impl Usage {
    pub fn record(&self, account_id: &str, bucket_id: &str, bytes_out: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counts
            .entry((account_id.to_string(), bucket_id.to_string()))
            .or_default();
        entry.0 += 1;
        entry.1 += bytes_out;
    }

    /// Writes what was counted since the last flush.
    pub async fn flush(&self, store: &Store, at: i64) -> nubo_store::Result<()> {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()));
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = store.begin().await?;
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
}
