//! `nubo-bench io --path P --size-mib N --seconds S`: the block I/O test that
//! bench/volumes runs inside a guest (on a volume) and on the host (on a file
//! beside the volumes), so that both sides run exactly the same code:
//! sequential 1 MiB and random 4 KiB writes and reads with O_DIRECT (past
//! every cache of the side that runs it), several in flight at once.
//! Prints one JSON object.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEQ_BLOCK: usize = 1 << 20;
const RANDOM_BLOCK: usize = 4096;
/// Requests in flight: threads, each with one.
const SEQ_THREADS: u64 = 4;
const RANDOM_THREADS: u64 = 8;

#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub seq_write_mib_s: f64,
    pub seq_read_mib_s: f64,
    pub rand_write_iops: f64,
    pub rand_read_iops: f64,
}

impl Figures {
    pub fn to_json(self) -> String {
        serde_json::json!({
            "seq_write_mib_s": self.seq_write_mib_s,
            "seq_read_mib_s": self.seq_read_mib_s,
            "rand_write_iops": self.rand_write_iops,
            "rand_read_iops": self.rand_read_iops,
        })
        .to_string()
    }

    pub fn from_json(text: &str) -> Result<Figures, String> {
        let v: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("{e}: {text:?}"))?;
        let f = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {text}"));
        Ok(Figures {
            seq_write_mib_s: f("seq_write_mib_s")?,
            seq_read_mib_s: f("seq_read_mib_s")?,
            rand_write_iops: f("rand_write_iops")?,
            rand_read_iops: f("rand_read_iops")?,
        })
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let path = crate::flag(args, "--path").ok_or("--path P is required")?;
    let number = |name: &str| -> Result<u64, String> {
        crate::flag(args, name)
            .ok_or(format!("{name} N is required"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))
    };
    let figures = measure(
        Path::new(path),
        number("--size-mib")? << 20,
        Duration::from_secs(number("--seconds")?),
    )?;
    println!("{}", figures.to_json());
    Ok(())
}

/// A buffer of `len` bytes at a 4 KiB boundary, as O_DIRECT wants, filled
/// with bytes that differ from block to block (so that no layer below can
/// compress or share them).
struct Aligned {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize, seed: u64) -> Aligned {
        let mut bytes = vec![0u8; len + 4096];
        let start = bytes.as_ptr().align_offset(4096);
        let mut rng = Rng(seed | 1);
        for chunk in bytes[start..start + len].chunks_mut(8) {
            let word = rng.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Aligned { bytes, start, len }
    }

    fn get(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }

    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }

    /// Makes this block's bytes its own: its offset in its first word.
    fn stamp(&mut self, offset: u64) {
        self.get_mut()[..8].copy_from_slice(&offset.to_le_bytes());
    }
}

/// xorshift64: enough randomness for offsets and data, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn open(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(!path.starts_with("/dev"))
        .truncate(false)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `threads` workers on the file until each is done; bytes per second.
fn parallel(
    file: &Arc<std::fs::File>,
    threads: u64,
    work: impl Fn(&std::fs::File, u64) -> Result<u64, String> + Send + Sync + 'static,
) -> Result<f64, String> {
    let work = Arc::new(work);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (file, work) = (file.clone(), work.clone());
            std::thread::spawn(move || work(&file, t))
        })
        .collect();
    let mut bytes = 0;
    for w in workers {
        bytes += w.join().map_err(|_| "an I/O thread panicked")??;
    }
    Ok(bytes as f64 / started.elapsed().as_secs_f64())
}

pub fn measure(path: &Path, size: u64, seconds: Duration) -> Result<Figures, String> {
    let file = Arc::new(open(path)?);
    let size = size - size % (SEQ_BLOCK as u64 * SEQ_THREADS);
    let share = size / SEQ_THREADS;
    let io_error = |e: std::io::Error| e.to_string();
    let seq_write = parallel(&file, SEQ_THREADS, move |f, t| {
        let mut buf = Aligned::new(SEQ_BLOCK, t + 1);
        let mut at = t * share;
        while at < (t + 1) * share {
            buf.stamp(at);
            f.write_all_at(buf.get(), at).map_err(io_error)?;
            at += SEQ_BLOCK as u64;
        }
        f.sync_data().map_err(io_error)?;
        Ok(share)
    })?;
    let seq_read = parallel(&file, SEQ_THREADS, move |f, t| {
        let mut buf = Aligned::new(SEQ_BLOCK, 1);
        let mut at = t * share;
        while at < (t + 1) * share {
            f.read_exact_at(buf.get_mut(), at).map_err(io_error)?;
            at += SEQ_BLOCK as u64;
        }
        Ok(share)
    })?;
    let blocks = size / RANDOM_BLOCK as u64;
    let random = move |write: bool| {
        move |f: &std::fs::File, t: u64| {
            let mut buf = Aligned::new(RANDOM_BLOCK, t + 7);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
            let deadline = Instant::now() + seconds;
            let mut done = 0u64;
            while Instant::now() < deadline {
                let at = rng.next() % blocks * RANDOM_BLOCK as u64;
                if write {
                    buf.stamp(at);
                    f.write_all_at(buf.get(), at).map_err(io_error)?;
                } else {
                    f.read_exact_at(buf.get_mut(), at).map_err(io_error)?;
                }
                done += RANDOM_BLOCK as u64;
            }
            Ok(done)
        }
    };
    let rand_write = parallel(&file, RANDOM_THREADS, random(true))?;
    file.sync_data().map_err(io_error)?;
    let rand_read = parallel(&file, RANDOM_THREADS, random(false))?;
    Ok(Figures {
        seq_write_mib_s: seq_write / (1 << 20) as f64,
        seq_read_mib_s: seq_read / (1 << 20) as f64,
        rand_write_iops: rand_write / RANDOM_BLOCK as f64,
        rand_read_iops: rand_read / RANDOM_BLOCK as f64,
    })
}
