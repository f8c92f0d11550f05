//! Snapshot chunks: content-addressed files in object storage, named by the
//! SHA-256 of their bytes (`chunks/<2 hex>/<hash>`). Written like objects
//! (temporary file, fsync, rename), so a chunk that exists is whole; what
//! refers to them is the store's business (`nubo_store::snapshots`).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

pub struct Chunks {
    dir: PathBuf,
    tmp: PathBuf,
}

/// A chunk name: 64 lower-case hex digits.
fn valid(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn bad_name(hash: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{hash:?} is not a chunk name"),
    )
}

impl Chunks {
    pub(crate) async fn open(root: &Path) -> io::Result<Chunks> {
        let chunks = Chunks {
            dir: root.join("chunks"),
            tmp: root.join("chunks-tmp"),
        };
        tokio::fs::create_dir_all(&chunks.dir).await?;
        tokio::fs::create_dir_all(&chunks.tmp).await?;
        Ok(chunks)
    }

    /// The folder of every chunk (by two hex digits of its name).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(hash)
    }

    pub async fn contains(&self, hash: &str) -> io::Result<bool> {
        if !valid(hash) {
            return Err(bad_name(hash));
        }
        tokio::fs::try_exists(self.path(hash)).await
    }

    /// Stores a chunk under `hash`, which the caller computed from `data`.
    pub async fn put(&self, hash: &str, data: &[u8]) -> io::Result<()> {
        if !valid(hash) {
            return Err(bad_name(hash));
        }
        let tmp = self.tmp.join(format!("{hash}.{}", crate::blobs::new_id()));
        let mut f = tokio::fs::File::create(&tmp).await?;
        let written = async {
            f.write_all(data).await?;
            crate::blobs::persist(f, &tmp, &self.path(hash)).await
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        written
    }

    /// A chunk's bytes as stored; the reader checks them against the hash.
    pub async fn get(&self, hash: &str) -> io::Result<Bytes> {
        if !valid(hash) {
            return Err(bad_name(hash));
        }
        tokio::fs::read(self.path(hash)).await.map(Bytes::from)
    }

    /// Deletes chunks nothing refers to any more.
    pub async fn remove(&self, hashes: &[String]) {
        for hash in hashes.iter().filter(|h| valid(h)) {
            if let Err(e) = tokio::fs::remove_file(self.path(hash)).await
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(hash, error = %e, "chunk not removed; the next sweep will");
            }
        }
    }

    /// Removes every chunk not in `referenced`, and every temporary file.
    /// Only while no snapshot is being taken: its chunks are not referenced
    /// until it completes.
    pub async fn sweep(&self, referenced: HashSet<String>) -> io::Result<usize> {
        crate::blobs::remove_unreferenced(self.dir.clone(), self.tmp.clone(), referenced).await
    }
}
