//! Wire types of the nubo REST API (`/v1`).
//!
//! The region server derives its OpenAPI document from these types and the CLI
//! deserializes responses into them, so a change here is a change of the API:
//! the checked-in document (`openapi/nubo.json`) must be regenerated with it.

pub mod account;
pub mod billing;
pub mod buckets;
pub mod compute;
pub mod error;
pub mod hosts;
pub mod keys;
pub mod networks;
pub mod page;
pub mod quotas;
pub mod regions;
pub mod security_groups;
pub mod volumes;

/// The header that carries the id of every request, in requests and responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The service name in SigV4 credential scopes for the control-plane API.
pub const SIGV4_SERVICE: &str = "nubo";
