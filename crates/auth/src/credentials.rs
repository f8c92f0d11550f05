//! The shape of access key ids and secrets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An access key id: `AK` followed by 18 characters of RFC 4648 base32, 20 in all
/// (the length and alphabet of AWS key ids, which tools expect).
pub type AccessKeyId = String;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub fn new_access_key_id() -> AccessKeyId {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    let mut id = String::with_capacity(20);
    id.push_str("AK");
    id.extend(bytes.iter().map(|b| BASE32[usize::from(b % 32)] as char));
    id
}

/// Whether `s` has the shape of an access key id (checked before any lookup).
pub fn is_access_key_id(s: &str) -> bool {
    s.len() == 20 && s.starts_with("AK") && s.bytes().skip(2).all(|b| BASE32.contains(&b))
}

/// A new secret: 240 random bits as 40 URL-safe base64 characters.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 30];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_their_shape() {
        let id = new_access_key_id();
        assert!(is_access_key_id(&id), "{id}");
        assert!(!is_access_key_id("AKIA"));
        assert!(!is_access_key_id("XX345678901234567890"));
        assert_eq!(new_secret().len(), 40);
        assert_ne!(new_secret(), new_secret());
    }
}
