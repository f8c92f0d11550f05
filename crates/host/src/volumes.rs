//! Volumes as hosts hold them, and the chunks their snapshots are made of.
//!
//! A snapshot is a list of content-addressed chunks (SHA-256 of the bytes, in
//! hex) at fixed positions; all-zero chunks are left out. Hosts read a
//! point-in-time copy of a volume and hand its chunks to the region's chunk
//! store, which keeps each distinct chunk once: a snapshot after the first
//! stores only what changed. A restore checks every chunk against its hash
//! before writing it, so a corrupt chunk fails the restore instead of handing
//! back wrong data.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
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

    /// How far the copy that uses the store has come: `done` of its `total`
    /// chunks, told as it goes (a snapshot counts every chunk of the volume,
    /// zeros too; a restore every chunk of the snapshot).
    fn advanced(&self, _done: u64, _total: u64) {}
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

/// Chunks read, hashed and sent at once: enough to keep the disk, a core
/// and the store busy together.
const IN_FLIGHT: usize = 4;

/// The chunk at `position` of `file` (`size` bytes), with its hash, or `None`
/// when it is all zeros. Ranges the file system holds no data for (holes of
/// a sparse file) are not read at all.
fn read_chunk(
    file: &std::fs::File,
    position: u64,
    size: u64,
) -> Result<Option<(String, Bytes)>, HostError> {
    let offset = position * CHUNK_SIZE;
    let len = CHUNK_SIZE.min(size - offset);
    match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(offset)) {
        Ok(data) if data >= offset + len => return Ok(None),
        Err(rustix::io::Errno::NXIO) => return Ok(None),
        _ => {}
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(agent("snapshot copy"))?;
    if buf.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    Ok(Some((hash(&buf), Bytes::from(buf))))
}

/// Cuts the raw image at `path` into chunks and stores those the store lacks.
pub async fn upload(path: &Path, store: &Arc<dyn ChunkStore>) -> Result<Manifest, HostError> {
    let file = Arc::new(std::fs::File::open(path).map_err(agent("snapshot copy"))?);
    let size_bytes = file.metadata().map_err(agent("snapshot copy"))?.len();
    let total = size_bytes.div_ceil(CHUNK_SIZE);
    let done = Arc::new(AtomicU64::new(0));
    let chunks: Vec<Option<(u64, String)>> = futures::stream::iter(0..total)
        .map(|position| {
            let (file, store, done) = (file.clone(), store.clone(), done.clone());
            async move {
                let read = blocking(move || read_chunk(&file, position, size_bytes)).await?;
                if let Some((digest, data)) = &read
                    && !store.contains(digest).await.map_err(HostError::Agent)?
                {
                    store
                        .put(digest, data.clone())
                        .await
                        .map_err(HostError::Agent)?;
                }
                store.advanced(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                Ok::<_, HostError>(read.map(|(digest, _)| (position, digest)))
            }
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(Manifest {
        size_bytes,
        chunk_size: CHUNK_SIZE,
        chunks: chunks.into_iter().flatten().collect(),
    })
}

/// Writes a snapshot's chunks into a new raw image at `path` of the
/// snapshot's size (holes where it had zeros), checking each chunk's hash.
pub async fn download(
    manifest: &Manifest,
    path: &Path,
    store: &Arc<dyn ChunkStore>,
) -> Result<(), HostError> {
    let file = std::fs::File::create(path).map_err(agent("restore copy"))?;
    file.set_len(manifest.size_bytes)
        .map_err(agent("restore copy"))?;
    let file = Arc::new(file);
    let (done, total) = (Arc::new(AtomicU64::new(0)), manifest.chunks.len() as u64);
    futures::stream::iter(manifest.chunks.iter().cloned())
        .map(|(position, expected)| {
            let (file, store, done) = (file.clone(), store.clone(), done.clone());
            let (size, chunk_size) = (manifest.size_bytes, manifest.chunk_size);
            async move {
                let data = store.get(&expected).await.map_err(|e| {
                    HostError::Agent(format!("chunk {expected} of the snapshot is missing: {e}"))
                })?;
                blocking(move || {
                    let offset = position * chunk_size;
                    if hash(&data) != expected || offset + data.len() as u64 > size {
                        return Err(HostError::Corrupt(format!(
                            "chunk {expected} of the snapshot does not match its checksum"
                        )));
                    }
                    file.write_all_at(&data, offset)
                        .map_err(agent("restore copy"))
                })
                .await?;
                store.advanced(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    blocking(move || file.sync_all().map_err(agent("restore copy"))).await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::Mutex;

    use super::*;

    /// Chunks, and every `advanced` told.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, Bytes>>, Mutex<Vec<(u64, u64)>>);

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
        fn advanced(&self, done: u64, total: u64) {
            self.1.lock().unwrap().push((done, total));
        }
    }

    /// What a copy told of its progress, since the last call.
    fn told(memory: &Memory) -> Vec<(u64, u64)> {
        std::mem::take(&mut *memory.1.lock().unwrap())
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
        // A snapshot counts every chunk of the volume, once each, to the end.
        let mut progress = told(&memory);
        progress.sort();
        assert_eq!(progress, [(1, 4), (2, 4), (3, 4), (4, 4)]);
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
        told(&memory);
        download(&second, &restored, &store).await.unwrap();
        let mut progress = told(&memory);
        progress.sort();
        assert_eq!(
            progress,
            [(1, 3), (2, 3), (3, 3)],
            "a restore counts its chunks"
        );
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
