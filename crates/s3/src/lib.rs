//! Object storage: the S3 protocol as AWS defines it, so that aws-cli, boto3 and
//! every other S3 client work unmodified.
//!
//! The protocol (routing, XML, SigV4 including presigned URLs and chunked
//! payloads) is the `s3s` crate's; this crate implements the operations over the
//! region's store (buckets, object versions, multipart uploads: metadata, in
//! transactions) and files (object data, written to a temporary file, fsynced and
//! renamed before the row that makes it visible commits). Small objects live in
//! their row, so that they cost one commit and no file.

mod access;
mod attributes;
mod blobs;
mod bucket_cache;
mod buckets;
mod caller;
pub mod chunks;
mod commit;
mod complete;
mod conditions;
mod cors;
mod front;
mod host;
mod listing;
mod meta;
mod multipart;
mod objects;
mod operations;
mod part_checksums;
mod request_body;
mod server;
mod unsized_body;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nubo_store::Store;

pub use server::serve;

/// What object storage needs to know of the region's accounts.
#[async_trait::async_trait]
pub trait Tenancy: Send + Sync + 'static {
    /// The active access key with this id.
    async fn key(&self, key_id: &str) -> Result<Option<Key>, String>;
    /// How many buckets the account may hold.
    async fn bucket_limit(&self, account_id: &str) -> Result<u64, String>;
}

/// An active access key, as object storage sees it.
#[derive(Debug, Clone)]
pub struct Key {
    pub account_id: String,
    pub secret: String,
    /// False for read-only keys.
    pub may_write: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub region: String,
    /// Where object data lives.
    pub root: PathBuf,
    /// Virtual-hosted-style requests name a bucket as `<bucket>.<base_domain>`.
    pub base_domain: String,
    /// Objects up to this size are kept in their row instead of a file.
    pub inline_max: usize,
    /// Multipart uploads untouched for this long are aborted.
    pub abandoned_after: Duration,
}

impl Config {
    pub fn new(region: String, root: PathBuf) -> Config {
        Config {
            region,
            root,
            base_domain: "s3.localhost".into(),
            inline_max: 64 * 1024,
            abandoned_after: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The object storage service of a region.
pub struct ObjectStorage {
    config: Config,
    store: Store,
    blobs: blobs::Blobs,
    chunks: chunks::Chunks,
    bucket_cache: bucket_cache::BucketCache,
    tenancy: Arc<dyn Tenancy>,
    usage: usage::Usage,
    committer: commit::Committer,
}

/// See [`ObjectStorage::hold_files`].
pub struct FileHold(Arc<ObjectStorage>);

impl Drop for FileHold {
    fn drop(&mut self) {
        self.0.blobs.release();
    }
}

impl ObjectStorage {
    /// Opens the data folder and removes what a crash may have left half-written.
    pub async fn open(
        config: Config,
        store: Store,
        tenancy: Arc<dyn Tenancy>,
    ) -> std::io::Result<Arc<ObjectStorage>> {
        let blobs = blobs::Blobs::open(&config.root).await?;
        let chunks = chunks::Chunks::open(&config.root).await?;
        let storage = Arc::new(ObjectStorage {
            blobs,
            chunks,
            bucket_cache: Default::default(),
            usage: usage::Usage::open(config.root.join("usage"))?,
            committer: commit::Committer::start(store.clone()),
            config,
            store,
            tenancy,
        });
        storage.sweep().await.map_err(std::io::Error::other)?;
        Ok(storage)
    }

    /// Where volume snapshots keep their chunks.
    pub fn chunks(&self) -> &chunks::Chunks {
        &self.chunks
    }

    /// Keeps object files from being removed while a backup copies them: a
    /// copy of the store taken meanwhile lists only files that exist until
    /// the hold ends (written before their row commits, removed after their
    /// row is gone). Removals wait and happen when the last hold ends.
    pub fn hold_files(self: &Arc<Self>) -> FileHold {
        self.blobs.hold();
        FileHold(self.clone())
    }

    /// The folders of object data a backup copies: every file in them is
    /// whole and never changes (temporary files live elsewhere).
    pub fn durable_dirs(&self) -> [&std::path::Path; 2] {
        [self.blobs.data_dir(), self.chunks.dir()]
    }

    /// Records the request counts journaled so far as events in the store.
    pub async fn record_usage(&self) -> nubo_store::Result<()> {
        self.usage.flush(&self.store, Self::now_micros()).await
    }

    fn now_micros() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }

    /// Deletes files no committed row refers to (writes a crash interrupted,
    /// data of versions deleted just before it).
    async fn sweep(&self) -> Result<(), String> {
        let mut c = self.store.conn().await.map_err(|e| e.to_string())?;
        let mut referenced = std::collections::HashSet::new();
        for segments in nubo_store::objects::all_segments(&mut c)
            .await
            .map_err(|e| e.to_string())?
        {
            for s in meta::segments(&segments) {
                referenced.insert(s.blob);
            }
        }
        for blob in nubo_store::multipart::all_blobs(&mut c)
            .await
            .map_err(|e| e.to_string())?
        {
            referenced.insert(blob);
        }
        drop(c);
        let removed = self
            .blobs
            .sweep(&referenced)
            .await
            .map_err(|e| e.to_string())?;
        if removed > 0 {
            tracing::info!(files = removed, "removed object files nothing refers to");
        }
        Ok(())
    }
}
