//! Resource ids: a type prefix and 64 random bits, so that ids minted in different
//! regions never collide and say what they name (`i-…`, `acc-…`).

/// A new id such as `i-3f9c0a7d5e1b2c48`.
pub fn new(prefix: &str) -> String {
    format!("{prefix}-{:016x}", random_u64())
}

/// An event id that sorts by time: microsecond timestamp, then random bits.
pub fn event(at_micros: i64) -> String {
    format!("ev-{at_micros:016x}{:08x}", random_u64() as u32)
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
    fn event_ids_sort_by_time() {
        assert!(super::event(1_000) < super::event(2_000));
    }
}
