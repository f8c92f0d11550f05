//! The region's object storage as the hosts' store of snapshot chunks.

use std::sync::Arc;

use bytes::Bytes;
use nubo_host::BoxFuture;
use nubo_host::volumes::ChunkStore;
use nubo_s3::ObjectStorage;

pub struct SnapshotChunks(pub Arc<ObjectStorage>);

impl ChunkStore for SnapshotChunks {
    fn contains<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            self.0
                .chunks()
                .contains(hash)
                .await
                .map_err(|e| format!("chunk store: {e}"))
        })
    }

    fn put<'a>(&'a self, hash: &'a str, data: Bytes) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .chunks()
                .put(hash, &data)
                .await
                .map_err(|e| format!("chunk store: {e}"))
        })
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Bytes, String>> {
        Box::pin(async move {
            self.0
                .chunks()
                .get(hash)
                .await
                .map_err(|e| format!("chunk store: {e}"))
        })
    }
}
