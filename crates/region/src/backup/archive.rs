//! A tar archive written as a stream of bytes, entry by entry, for a backup
//! to send while it reads the region. Headers are the `tar` crate's (ustar);
//! each entry goes out whole, so entries added from several tasks at once
//! never interleave.

use std::io;
use std::path::Path;

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, mpsc};

const BLOCK: usize = 512;
/// Bytes read from a file per piece of the stream.
const PIECE: usize = 1024 * 1024;
/// Pieces buffered for a slow reader before the writer waits.
const QUEUE: usize = 8;

pub struct Archive {
    out: Mutex<mpsc::Sender<io::Result<Bytes>>>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the backup's reader went away")
}

impl Archive {
    /// An empty archive and the stream of its bytes.
    pub fn new() -> (Archive, impl Stream<Item = io::Result<Bytes>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|piece| (piece, rx))
        });
        (
            Archive {
                out: Mutex::new(tx),
            },
            stream,
        )
    }

    /// Adds `data` as the file `name`.
    pub async fn bytes(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let out = self.out.lock().await;
        send(&out, header(name, data.len() as u64)?).await?;
        send(&out, Bytes::copy_from_slice(data)).await?;
        send(&out, padding(data.len() as u64)).await
    }

    /// Adds the file at `path` as `name`: as many bytes as it had when
    /// opened (a file that shrinks meanwhile fails the archive).
    pub async fn file(&self, name: &str, path: &Path) -> io::Result<()> {
        let mut file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let out = self.out.lock().await;
        send(&out, header(name, size)?).await?;
        let mut left = size;
        while left > 0 {
            let mut piece = vec![0u8; PIECE.min(left as usize)];
            file.read_exact(&mut piece)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            left -= piece.len() as u64;
            send(&out, Bytes::from(piece)).await?;
        }
        send(&out, padding(size)).await
    }

    /// Ends the archive (two zero blocks).
    pub async fn finish(&self) -> io::Result<()> {
        send(&*self.out.lock().await, Bytes::from(vec![0u8; 2 * BLOCK])).await
    }

    /// Cuts the stream with an error, so that its reader cannot take what it
    /// got for a whole archive.
    pub async fn fail(&self, e: io::Error) {
        let _ = self.out.lock().await.send(Err(e)).await;
    }
}

async fn send(out: &mpsc::Sender<io::Result<Bytes>>, piece: Bytes) -> io::Result<()> {
    out.send(Ok(piece)).await.map_err(|_| gone())
}

fn header(name: &str, size: u64) -> io::Result<Bytes> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    h.set_cksum();
    Ok(Bytes::copy_from_slice(h.as_bytes()))
}

fn padding(size: u64) -> Bytes {
    let rest = (size % BLOCK as u64) as usize;
    Bytes::from(vec![0u8; if rest == 0 { 0 } else { BLOCK - rest }])
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn entries_read_back_with_the_tar_crate() {
        let dir = std::env::temp_dir().join(format!("nubo-archive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big: Vec<u8> = (0..3 * PIECE + 7).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("big"), &big).unwrap();
        let (archive, stream) = Archive::new();
        let collect = tokio::spawn(async move {
            let pieces: Vec<io::Result<Bytes>> = stream.collect().await;
            pieces
                .into_iter()
                .map(|p| p.unwrap())
                .collect::<Vec<_>>()
                .concat()
        });
        archive.bytes("a/small.json", b"{}").await.unwrap();
        archive
            .file("objects/data/ab/big", &dir.join("big"))
            .await
            .unwrap();
        archive.bytes("empty", b"").await.unwrap();
        archive.finish().await.unwrap();
        // The stream ends when the archive goes.
        drop(archive);
        let tar_bytes = collect.await.unwrap();
        assert_eq!(tar_bytes.len() % BLOCK, 0);
        let mut read = tar::Archive::new(&tar_bytes[..]);
        let mut found = Vec::new();
        for entry in read.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            found.push((name, data));
        }
        assert_eq!(found.len(), 3);
        assert_eq!(found[0], ("a/small.json".to_string(), b"{}".to_vec()));
        assert_eq!(found[1].0, "objects/data/ab/big");
        assert!(
            found[1].1 == big,
            "a file larger than a piece comes back whole"
        );
        assert_eq!(found[2], ("empty".to_string(), Vec::new()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
