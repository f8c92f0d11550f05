//! Object data in files. A file is written under `tmp/`, fsynced, renamed into
//! `data/<2 hex>/` and its folder fsynced before any row may refer to it, so an
//! acknowledged write survives a crash and a torn one is never visible. Files are
//! never changed after that; copies are hard links.

use std::collections::HashSet;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::checksum::ChecksumHasher;
use s3s::dto::Checksum;
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3ErrorCode, StdError};
use tokio::io::AsyncWriteExt;

use crate::meta::Segment;

/// Objects are mapped this much at a time: big enough that a system call and a
/// trip to the blocking pool are cheap per byte, small enough to bound the
/// memory a download pins.
const READ_CHUNK: usize = 2 * 1024 * 1024;

pub struct Blobs {
    data: PathBuf,
    tmp: PathBuf,
    holds: std::sync::Mutex<Holds>,
}

/// While a backup copies files, no file goes: removals wait until it is done.
#[derive(Default)]
struct Holds {
    count: usize,
    deferred: Vec<String>,
}

/// What a write stored.
pub struct Written {
    /// The file, unless the data was small enough to keep inline.
    pub blob: Option<String>,
    pub inline: Option<Vec<u8>>,
    pub size: u64,
    pub md5: [u8; 16],
    pub checksum: Checksum,
}

impl Written {
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }
}

pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&nubo_store::ids::random_u64().to_le_bytes());
    }
    hex::encode(bytes)
}

/// The error of a body that could not be read: the client's, unless the
/// protocol layer found the body forged (a chunk signature or the declared
/// payload hash that does not match). `s3s` does not export those error types,
/// so they are told apart by what they say of themselves.
fn body_error(e: StdError) -> S3Error {
    let e = match e.downcast::<S3Error>() {
        Ok(e) => return *e,
        Err(e) => e,
    };
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        S3Error::with_message(
            S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided.",
        )
    } else if text.contains("Sha256Mismatch") {
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        e
    } else {
        S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            format!("the request body could not be read: {text}"),
        )
    }
}

fn internal(e: io::Error) -> S3Error {
    tracing::error!(error = %e, "object storage I/O");
    S3Error::with_message(S3ErrorCode::InternalError, "object storage I/O failed")
}

impl Blobs {
    pub async fn open(root: &Path) -> io::Result<Blobs> {
        let blobs = Blobs {
            data: root.join("data"),
            tmp: root.join("tmp"),
            holds: Default::default(),
        };
        tokio::fs::create_dir_all(&blobs.data).await?;
        tokio::fs::create_dir_all(&blobs.tmp).await?;
        Ok(blobs)
    }

    /// Where files are written before they are complete.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    fn path(&self, blob: &str) -> PathBuf {
        self.data.join(&blob[..2]).join(blob)
    }

    /// The folder of every committed file (by two hex digits of its name).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps every file from being removed until [`Blobs::release`].
    pub fn hold(&self) {
        self.holds().count += 1;
    }

    /// Ends a [`Blobs::hold`]; the last one removes what waited for it.
    pub fn release(&self) {
        let deferred = {
            let mut holds = self.holds();
            holds.count -= 1;
            if holds.count > 0 {
                return;
            }
            std::mem::take(&mut holds.deferred)
        };
        for blob in deferred {
            if let Err(e) = std::fs::remove_file(self.path(&blob))
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(blob, error = %e, "object file not removed; the next sweep will");
            }
        }
    }

    /// Stores a body. Bodies up to `inline_max` bytes stay in memory for the
    /// caller's row; larger ones become a durable file. `limit` bounds the size.
    pub async fn write<S>(
        &self,
        mut body: S,
        inline_max: usize,
        limit: u64,
        mut hasher: ChecksumHasher,
    ) -> Result<Written, S3Error>
    where
        S: Stream<Item = Result<Bytes, StdError>> + Unpin,
    {
        let mut md5 = Md5::new();
        let mut buffer: Vec<u8> = Vec::new();
        let mut file: Option<(String, PathBuf, tokio::fs::File)> = None;
        let mut size = 0u64;
        let result: Result<(), S3Error> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(body_error)?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(S3Error::with_message(
                        S3ErrorCode::EntityTooLarge,
                        format!("the body is larger than {limit} bytes"),
                    ));
                }
                md5.update(&chunk);
                hasher.update(&chunk);
                match &mut file {
                    Some((_, _, f)) => f.write_all(&chunk).await.map_err(internal)?,
                    None if buffer.len() + chunk.len() <= inline_max => {
                        buffer.extend_from_slice(&chunk)
                    }
                    None => {
                        let id = new_id();
                        let path = self.tmp.join(&id);
                        let mut f = tokio::fs::File::create(&path).await.map_err(internal)?;
                        f.write_all(&buffer).await.map_err(internal)?;
                        f.write_all(&chunk).await.map_err(internal)?;
                        buffer = Vec::new();
                        file = Some((id, path, f));
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some((_, path, _)) = file {
                let _ = tokio::fs::remove_file(path).await;
            }
            return Err(e);
        }
        let md5: [u8; 16] = md5.finalize().into();
        let checksum = hasher.finalize();
        let Some((id, tmp, f)) = file else {
            return Ok(Written {
                blob: None,
                inline: Some(buffer),
                size,
                md5,
                checksum,
            });
        };
        self.commit(&id, &tmp, f).await.map_err(internal)?;
        Ok(Written {
            blob: Some(id),
            inline: None,
            size,
            md5,
            checksum,
        })
    }

    /// Makes a fully written temporary file durable under its final name.
    async fn commit(&self, id: &str, tmp: &Path, f: tokio::fs::File) -> io::Result<()> {
        persist(f, tmp, &self.path(id)).await
    }

    /// A new name for an existing file: a copy that costs no I/O.
    pub async fn link(&self, blob: &str) -> Result<String, S3Error> {
        let id = new_id();
        let target = self.path(&id);
        let dir = target
            .parent()
            .expect("blob paths have a folder")
            .to_path_buf();
        tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
        tokio::fs::hard_link(self.path(blob), &target)
            .await
            .map_err(internal)?;
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(internal)?;
        Ok(id)
    }

    /// Deletes files no row refers to any more (once no backup holds them).
    pub async fn remove(&self, blobs: Vec<String>) {
        {
            let mut holds = self.holds();
            if holds.count > 0 {
                holds.deferred.extend(blobs);
                return;
            }
        }
        for blob in blobs {
            if let Err(e) = tokio::fs::remove_file(self.path(&blob)).await
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(blob, error = %e, "object file not removed; the next sweep will");
            }
        }
    }

    /// The bytes `range` of an object made of `segments`, as a stream. Files are
    /// opened before this returns, so that a concurrent overwrite (which unlinks
    /// them) cannot cut the stream short.
    pub async fn read(
        &self,
        segments: Vec<Segment>,
        range: Range<u64>,
    ) -> Result<StreamingBlob, S3Error> {
        let mut chunks = Vec::new();
        let mut offset = 0u64;
        for s in segments {
            let (start, end) = (offset, offset + s.size);
            offset = end;
            if end <= range.start || start >= range.end {
                continue;
            }
            let path = self.path(&s.blob);
            let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
                .await
                .map_err(io::Error::other)
                .and_then(|opened| opened)
                .map_err(internal)?;
            let file = Arc::new(file);
            let (from, to) = (range.start.max(start) - start, range.end.min(end) - start);
            chunks.extend(
                (from..to)
                    .step_by(READ_CHUNK)
                    .map(|at| (file.clone(), at, (to - at).min(READ_CHUNK as u64) as usize)),
            );
        }
        // The next chunks are mapped (read from the disk) while one is sent;
        // mappings cost no heap, so looking 8 MiB ahead is cheap.
        let stream = futures::stream::iter(chunks)
            .map(|(file, at, len)| async move {
                tokio::task::spawn_blocking(move || map_at(&file, at, len))
                    .await
                    .map_err(io::Error::other)?
            })
            .buffered(4);
        Ok(StreamingBlob::wrap(stream))
    }

    /// Removes every file not in `referenced`, and every temporary file.
    pub async fn sweep(&self, referenced: &HashSet<String>) -> io::Result<usize> {
        remove_unreferenced(self.data.clone(), self.tmp.clone(), referenced.clone()).await
    }
}

/// Removes every file of `tmp`, and every file in the folders of `data` whose
/// name is not in `referenced`; how many went.
pub(crate) async fn remove_unreferenced(
    data: PathBuf,
    tmp: PathBuf,
    referenced: HashSet<String>,
) -> io::Result<usize> {
    tokio::task::spawn_blocking(move || {
        let mut removed = 0;
        for entry in std::fs::read_dir(&tmp)? {
            std::fs::remove_file(entry?.path())?;
            removed += 1;
        }
        for dir in std::fs::read_dir(&data)? {
            for entry in std::fs::read_dir(dir?.path())? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !referenced.contains(&name) {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    })
    .await
    .map_err(io::Error::other)?
}

/// Makes the fully written temporary file `f` at `tmp` durable as `target`:
/// its data, then its name (the folder), so that a crash leaves either
/// nothing or the whole file under that name.
pub(crate) async fn persist(mut f: tokio::fs::File, tmp: &Path, target: &Path) -> io::Result<()> {
    f.flush().await?;
    f.sync_all().await?;
    drop(f);
    let dir = target
        .parent()
        .expect("data files have a folder")
        .to_path_buf();
    tokio::fs::create_dir_all(&dir).await?;
    tokio::fs::rename(tmp, target).await?;
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// `len` bytes at `at`, mapped rather than copied: the page cache's pages go
/// straight to the socket, one copy fewer per byte than a read (measured: a
/// third more throughput, cold or cached, on two cores). Populated here, on a
/// blocking thread, so that sending seldom waits for the disk.
///
/// Mapping is sound because object files never shrink or change once renamed
/// into place (overwrites and deletes unlink them, which leaves an open
/// mapping's pages valid), and the length is checked before mapping. The price:
/// a disk that fails a read of mapped pages kills the server (SIGBUS) rather
/// than one download; a failing disk is the operator's to replace either way.
#[allow(unsafe_code)]
fn map_at(file: &std::fs::File, at: u64, len: usize) -> io::Result<Bytes> {
    if file.metadata()?.len() < at + len as u64 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "object file is short",
        ));
    }
    // SAFETY: the file holds these bytes and never shrinks or changes (above).
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(at)
            .len(len)
            .populate()
            .map(file)?
    };
    Ok(Bytes::from_owner(map))
}
