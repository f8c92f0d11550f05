//! Volumes as hosts hold them, and the chunks their snapshots are made of.
//!
//! A snapshot is a list of content-addressed chunks (SHA-256 of the bytes, in
//! hex) at fixed positions; all-zero chunks are left out. Hosts read a
//! point-in-time copy of a volume and hand its chunks to the region's chunk
//! store, which keeps each distinct chunk once: a snapshot after the first
//! stores only what changed. A restore checks every chunk against its hash
//! before writing it, so a corrupt chunk fails the restore instead of handing
//! back wrong data.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{BoxFuture, HostError};

/// Bytes per chunk: large enough that per-chunk costs (a hash lookup, a file)
/// vanish, small enough that a small change uploads little.
pub const CHUNK_SIZE: u64 = 4 * 1024 * 1024;

/// What a volume's file starts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Zeros.
    Blank,
    /// A copy-on-write copy of an image's disk (the image's boot description,
    /// as for `VmSpec::image`).
    Image(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub id: String,
    pub size_bytes: u64,
    pub source: Source,
}

/// A volume attached to a VM: its hot-plug slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub volume_id: String,
    pub slot: u32,
}

/// The chunks of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub size_bytes: u64,
    pub chunk_size: u64,
    /// `(position, hash)` of every chunk that is not all zeros, by position.
    pub chunks: Vec<(u64, String)>,
}

/// Where a volume detach stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// The volume is out of the VM; its file is free.
    Done,
    /// The guest has been asked and has not let go yet.
    Pending,
}

/// The region's store of snapshot chunks, keyed by their hash.
pub trait ChunkStore: Send + Sync {
    fn contains<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, String>>;
    fn put<'a>(&'a self, hash: &'a str, data: Bytes) -> BoxFuture<'a, Result<(), String>>;
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Bytes, String>>;
}

pub fn hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn agent(what: &str) -> impl Fn(std::io::Error) -> HostError + '_ {
    move |e| HostError::Agent(format!("{what}: {e}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, HostError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HostError::Agent(format!("volume I/O task: {e}")))?
}

/// Cuts the raw image at `path` into chunks and stores those the store lacks.
pub async fn upload(path: &Path, store: &Arc<dyn ChunkStore>) -> Result<Manifest, HostError> {
    let size_bytes = std::fs::metadata(path)
        .map_err(agent("snapshot copy"))?
        .len();
    let mut file = std::fs::File::open(path).map_err(agent("snapshot copy"))?;
    let mut chunks = Vec::new();
    let mut position = 0;
    while position * CHUNK_SIZE < size_bytes {
        let len = CHUNK_SIZE.min(size_bytes - position * CHUNK_SIZE) as usize;
        let (back, read) = blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact(&mut buf).map_err(agent("snapshot copy"))?;
            let zero = buf.iter().all(|b| *b == 0);
            let digest = (!zero).then(|| hash(&buf));
            Ok((file, digest.map(|d| (d, Bytes::from(buf)))))
        })
        .await?;
        file = back;
        if let Some((digest, data)) = read {
            let known = store.contains(&digest).await.map_err(HostError::Agent)?;
            if !known {
                store.put(&digest, data).await.map_err(HostError::Agent)?;
            }
            chunks.push((position, digest));
        }
        position += 1;
    }
    Ok(Manifest {
        size_bytes,
        chunk_size: CHUNK_SIZE,
        chunks,
    })
}

/// Writes a snapshot's chunks into a new raw image at `path` of the
/// snapshot's size (holes where it had zeros), checking each chunk's hash.
pub async fn download(
    manifest: &Manifest,
    path: &Path,
    store: &Arc<dyn ChunkStore>,
) -> Result<(), HostError> {
    let mut file = std::fs::File::create(path).map_err(agent("restore copy"))?;
    file.set_len(manifest.size_bytes)
        .map_err(agent("restore copy"))?;
    for (position, expected) in &manifest.chunks {
        let data = store.get(expected).await.map_err(|e| {
            HostError::Agent(format!("chunk {expected} of the snapshot is missing: {e}"))
        })?;
        let offset = position * manifest.chunk_size;
        let fits = offset + data.len() as u64 <= manifest.size_bytes;
        let expected = expected.clone();
        file = blocking(move || {
            if hash(&data) != expected || !fits {
                return Err(HostError::Corrupt(format!(
                    "chunk {expected} of the snapshot does not match its checksum"
                )));
            }
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(&data))
                .map_err(agent("restore copy"))?;
            Ok(file)
        })
        .await?;
    }
    blocking(move || file.sync_all().map_err(agent("restore copy"))).await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, Bytes>>);

    impl ChunkStore for Memory {
        fn contains<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, String>> {
            Box::pin(async move { Ok(self.0.lock().unwrap().contains_key(hash)) })
        }
        fn put<'a>(&'a self, hash: &'a str, data: Bytes) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.0.lock().unwrap().insert(hash.to_string(), data);
                Ok(())
            })
        }
        fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Bytes, String>> {
            Box::pin(async move {
                self.0
                    .lock()
                    .unwrap()
                    .get(hash)
                    .cloned()
                    .ok_or_else(|| "no such chunk".to_string())
            })
        }
    }

    fn image(dir: &Path, name: &str, blocks: &[(u64, u8)], size: u64) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        for (at, byte) in blocks {
            f.seek(SeekFrom::Start(*at)).unwrap();
            f.write_all(&vec![*byte; 4096]).unwrap();
        }
        path
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nubo-chunks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn round_trip_skips_zeros_and_shares_chunks() {
        let dir = temp_dir("round-trip");
        let size = 3 * CHUNK_SIZE + 8192;
        let a = image(&dir, "a", &[(10, 1), (3 * CHUNK_SIZE + 100, 2)], size);
        let memory = Arc::new(Memory::default());
        let store: Arc<dyn ChunkStore> = memory.clone();
        let first = upload(&a, &store).await.unwrap();
        assert_eq!(first.size_bytes, size);
        let positions: Vec<u64> = first.chunks.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, vec![0, 3], "all-zero chunks are left out");
        // A second copy that changed one chunk adds one chunk to the store.
        let b = image(
            &dir,
            "b",
            &[(10, 1), (CHUNK_SIZE, 7), (3 * CHUNK_SIZE + 100, 2)],
            size,
        );
        let second = upload(&b, &store).await.unwrap();
        assert_eq!(second.chunks.len(), 3);
        assert_eq!(memory.0.lock().unwrap().len(), 3);
        let restored = dir.join("restored");
        download(&second, &restored, &store).await.unwrap();
        assert_eq!(
            std::fs::read(&restored).unwrap(),
            std::fs::read(&b).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_corrupt_chunk_fails_the_restore() {
        let dir = temp_dir("corrupt");
        let a = image(&dir, "a", &[(0, 9)], CHUNK_SIZE);
        let memory = Arc::new(Memory::default());
        let store: Arc<dyn ChunkStore> = memory.clone();
        let manifest = upload(&a, &store).await.unwrap();
        let digest = manifest.chunks[0].1.clone();
        let mut bad = memory.0.lock().unwrap()[&digest].to_vec();
        bad[100] ^= 1;
        memory.0.lock().unwrap().insert(digest, Bytes::from(bad));
        let err = download(&manifest, &dir.join("restored"), &store)
            .await
            .unwrap_err();
        assert!(matches!(err, HostError::Corrupt(_)), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
