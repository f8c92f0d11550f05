//! Group commit of new object versions. Concurrent writes queue here and are
//! committed together, one transaction (one fsync) per batch instead of per
//! object; each writer is answered once its version is durable. A batch whose
//! transaction fails is retried one version at a time, so that one bad write
//! cannot fail its neighbours. A conditional write is checked in its batch's
//! transaction, against the versions written before it.

use std::collections::HashMap;

use nubo_store::buckets::BucketRow;
use nubo_store::objects::{self, ObjectRow, Put};
use nubo_store::{Store, StoreError};
use s3s::S3Error;
use tokio::sync::{mpsc, oneshot};

use crate::conditions::WriteCondition;

/// Versions committed together at most.
const BATCH: usize = 256;

/// The committed version, and the versions it replaced (whose files can go).
pub type Committed = (ObjectRow, Vec<ObjectRow>);

/// Why a version was not committed.
pub enum Refused {
    Store(StoreError),
    /// Its condition did not hold.
    Condition(S3Error),
}

struct Job {
    put: Put,
    condition: Option<WriteCondition>,
    done: oneshot::Sender<Result<Committed, Refused>>,
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

    /// Makes `row` the latest version of its key, durably, if `condition`
    /// holds.
    pub async fn put(
        &self,
        bucket: &BucketRow,
        row: ObjectRow,
        replace_null: bool,
        condition: Option<WriteCondition>,
    ) -> Result<Committed, Refused> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            put: Put {
                account_id: bucket.account_id.clone(),
                row,
                replace_null,
            },
            condition,
            done,
        };
        let gone = || Refused::Store(StoreError::Unavailable("shutting down".into()));
        self.jobs.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Commits the jobs whose conditions hold; the outcome of each, in order.
async fn commit(
    store: &Store,
    jobs: &[Job],
) -> nubo_store::Result<Vec<Result<Committed, Refused>>> {
    let mut tx = store.begin().await?;
    // The latest version of each key as of the job being checked.
    let mut written: HashMap<(&str, &str), ObjectRow> = HashMap::new();
    let mut refusals: Vec<Option<S3Error>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let row = &job.put.row;
        let key = (row.bucket_id.as_str(), row.key.as_str());
        if let Some(condition) = &job.condition {
            let current = match written.get(&key) {
                Some(r) => Some(r.clone()),
                None => objects::latest(&mut tx, key.0, key.1).await?,
            };
            if let Err(e) = condition.check(current.as_ref()) {
                refusals.push(Some(e));
                continue;
            }
        }
        written.insert(key, row.clone());
        refusals.push(None);
    }
    let mut puts: Vec<Put> = jobs
        .iter()
        .zip(&refusals)
        .filter(|(_, refused)| refused.is_none())
        .map(|(j, _)| j.put.clone())
        .collect();
    let removed = objects::put_many(&mut tx, &mut puts).await?;
    tx.commit().await?;
    let mut committed = puts.into_iter().map(|p| p.row).zip(removed);
    Ok(refusals
        .into_iter()
        .map(|refused| match refused {
            Some(e) => Err(Refused::Condition(e)),
            None => Ok(committed.next().expect("one commit per accepted job")),
        })
        .collect())
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
                    let _ = job.done.send(result);
                }
            }
            Err(e) if batch.len() == 1 => {
                let job = batch.pop().expect("one job");
                let _ = job.done.send(Err(Refused::Store(e)));
            }
            Err(_) => {
                for job in batch {
                    let result = match commit(&store, std::slice::from_ref(&job)).await {
                        Ok(mut results) => results.remove(0),
                        Err(e) => Err(Refused::Store(e)),
                    };
                    let _ = job.done.send(result);
                }
            }
        }
    }
}
