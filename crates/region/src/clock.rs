//! The region's one source of time. Every timestamp in the store comes from here.
//!
//! It is the system's clock, or, for tests of time itself (billing over days
//! and months), a clock read from a file: the file holds an RFC 3339 time that
//! the test moves forward, and a restarted region reads on from it. Such a clock
//! never goes back, whatever the file says.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, Default)]
pub struct Clock {
    file: Option<Arc<FileClock>>,
}

#[derive(Debug)]
struct FileClock {
    path: PathBuf,
    last: AtomicI64,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads the time from `path`, which must hold one now.
    pub fn from_file(path: PathBuf) -> Result<Clock, String> {
        let first = read_time(&path)?;
        Ok(Clock {
            file: Some(Arc::new(FileClock {
                path,
                last: AtomicI64::new(first),
            })),
        })
    }

    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.now_micros().max(0) as u64)
    }

    /// Microseconds since the Unix epoch, the store's unit of time.
    pub fn now_micros(&self) -> i64 {
        match &self.file {
            None => micros(SystemTime::now()),
            Some(f) => {
                // A file being rewritten may read short: keep the last good time.
                let read = read_time(&f.path).unwrap_or(i64::MIN);
                f.last.fetch_max(read, Ordering::SeqCst).max(read)
            }
        }
    }
}

fn read_time(path: &std::path::Path) -> Result<i64, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("clock file {}: {e}", path.display()))?;
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
        .map_err(|_| {
            format!(
                "clock file {}: {:?} is not an RFC 3339 time",
                path.display(),
                text.trim()
            )
        })
}

pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC) of a store timestamp, as the API shows times.
pub fn rfc3339(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_store_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500_000), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn a_file_clock_moves_only_forward() {
        let path = std::env::temp_dir().join(format!("nubo-clock-{}", std::process::id()));
        std::fs::write(&path, "2026-11-01T00:00:00Z\n").unwrap();
        let clock = Clock::from_file(path.clone()).unwrap();
        let start = clock.now_micros();
        assert_eq!(rfc3339(start), "2026-11-01T00:00:00Z");
        std::fs::write(&path, "2026-11-01T00:01:30Z").unwrap();
        assert_eq!(clock.now_micros() - start, 90_000_000);
        std::fs::write(&path, "2026-10-01T00:00:00Z").unwrap();
        assert_eq!(clock.now_micros() - start, 90_000_000, "never back");
        std::fs::write(&path, "").unwrap();
        assert_eq!(clock.now_micros() - start, 90_000_000, "a torn read");
        std::fs::remove_file(&path).unwrap();
        assert!(Clock::from_file(path).is_err());
    }
}
