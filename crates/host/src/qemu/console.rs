//! Watching a VM's serial console file for the line its guest prints once it is up.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

pub struct ConsoleScan {
    path: PathBuf,
    offset: u64,
    marker: String,
    /// The end of what was read, in case the marker straddles two reads.
    tail: Vec<u8>,
}

impl ConsoleScan {
    /// Scans what the console receives from `offset` on.
    pub fn from(path: PathBuf, offset: u64, marker: &str) -> ConsoleScan {
        ConsoleScan {
            path,
            offset,
            marker: marker.to_string(),
            tail: Vec::new(),
        }
    }

    /// Scans from the console's current end: for a boot that starts now.
    pub fn from_end(path: PathBuf, marker: &str) -> ConsoleScan {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        ConsoleScan::from(path, offset, marker)
    }

    /// Reads what arrived since the last call; true once the marker has appeared.
    pub fn found(&mut self) -> bool {
        let Ok(mut file) = File::open(&self.path) else {
            return false;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return false;
        }
        let mut fresh = Vec::new();
        if file.read_to_end(&mut fresh).is_err() || fresh.is_empty() {
            return false;
        }
        self.offset += fresh.len() as u64;
        self.tail.extend_from_slice(&fresh);
        let marker = self.marker.as_bytes();
        if self.tail.windows(marker.len()).any(|w| w == marker) {
            return true;
        }
        let keep = marker.len().min(self.tail.len());
        self.tail.drain(..self.tail.len() - keep);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_a_marker_split_across_writes_only_after_the_offset() {
        let path = std::env::temp_dir().join(format!("nubo-console-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(b"old boot: nubo-ready i-1\n").unwrap();
        let mut scan = ConsoleScan::from_end(path.clone(), "nubo-ready");
        assert!(!scan.found(), "the previous boot's marker does not count");
        f.write_all(b"booting...\nnubo-re").unwrap();
        assert!(!scan.found());
        f.write_all(b"ady i-1\n").unwrap();
        assert!(scan.found());
        std::fs::remove_file(&path).unwrap();
    }
}
