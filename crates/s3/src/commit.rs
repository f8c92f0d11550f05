//! Group commit of new object versions. Concurrent writes queue here and are
//! committed together, one transaction (one fsync) per batch instead of per
//! object; each writer is answered once its version is durable. A batch whose
//! transaction fails is retried one version at a time, so that one bad write
//! cannot fail its neighbours.

use nubo_store::buckets::BucketRow;
use nubo_store::objects::{self, ObjectRow, Put};
use nubo_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Versions committed together at most.
const BATCH: usize = 256;

/// The committed version, and the versions it replaced (whose files can go).
pub type Committed = (ObjectRow, Vec<ObjectRow>);

struct Job {
    put: Put,
    done: oneshot::Sender<nubo_store::Result<Committed>>,
}

pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    pub fn start(store: Store) -> Committer {
        let (jobs, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(run(store, rx));
        Committer { jobs }
    }

    /// Makes `row` the latest version of its key, durably.
    pub async fn put(
        &self,
        bucket: &BucketRow,
        row: ObjectRow,
        replace_null: bool,
    ) -> nubo_store::Result<Committed> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            put: Put {
                account_id: bucket.account_id.clone(),
                row,
                replace_null,
            },
            done,
        };
        let gone = || StoreError::Unavailable("shutting down".into());
        self.jobs.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn commit(store: &Store, jobs: &[Job]) -> nubo_store::Result<Vec<Committed>> {
    let mut puts: Vec<Put> = jobs.iter().map(|j| j.put.clone()).collect();
    let mut tx = store.begin().await?;
    let removed = objects::put_many(&mut tx, &mut puts).await?;
    tx.commit().await?;
    Ok(puts.into_iter().map(|p| p.row).zip(removed).collect())
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit(&store, &batch).await {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.done.send(Ok(result));
                }
            }
            Err(e) if batch.len() == 1 => {
                let job = batch.pop().expect("one job");
                let _ = job.done.send(Err(e));
            }
            Err(_) => {
                for job in batch {
                    let result = commit(&store, std::slice::from_ref(&job)).await;
                    let _ = job.done.send(result.map(|mut r| r.remove(0)));
                }
            }
        }
    }
}
