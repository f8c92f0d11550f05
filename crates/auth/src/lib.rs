//! Access keys: how they look, how their secrets are kept, how requests prove them.
//!
//! Shared by the control-plane API, the S3 endpoint and the clients, so that one
//! key works everywhere and is checked the same way everywhere.

pub mod credentials;
pub mod secret_box;
pub mod sigv4;

pub use credentials::{AccessKeyId, new_access_key_id, new_secret};
pub use secret_box::SecretBox;
