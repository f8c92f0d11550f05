//! Resource ids: a type prefix and 64 random bits, so that ids minted in different
//! regions never collide and say what they name (`i-…`, `acc-…`).

/// A new id such as `i-3f9c0a7d5e1b2c48`.
pub fn new(prefix: &str) -> String {
    format!("{prefix}-{:016x}", random_u64())
}

/// An event id that sorts by time: the microsecond timestamp, then a sequence,
/// so that events of one moment (a state change and the next, a test's
/// stopped clock) keep the order they were recorded in, then random bits, so
/// that two servers of one store never mint the same id.
pub fn event(at_micros: i64) -> String {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Starts at the real time in nanoseconds, so that it also grows across
    // restarts: far fewer events are recorded than nanoseconds pass.
    static SEQUENCE: LazyLock<AtomicU64> = LazyLock::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        AtomicU64::new(now)
    });
    let seq = SEQUENCE.fetch_add(1, Ordering::SeqCst);
    format!("ev-{at_micros:016x}{seq:016x}{:04x}", random_u64() as u16)
}

pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    u64::from_le_bytes(bytes)
}

/// Checks the shape of an id with `prefix`, so that malformed ids are refused
/// before they reach a query.
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_prefix_and_validate() {
        let id = super::new("i");
        assert!(super::is_valid("i", &id), "{id}");
        assert!(!super::is_valid("vol", &id));
        assert!(!super::is_valid("i", "i-xyz"));
        assert_ne!(super::new("i"), super::new("i"));
    }

    #[test]
    fn event_ids_sort_by_time_then_by_when_they_were_minted() {
        assert!(super::event(1_000) < super::event(2_000));
        let first = super::event(5_000);
        let ids: Vec<String> = (0..1000).map(|_| super::event(5_000)).collect();
        assert!(ids.iter().all(|id| *id > first));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
