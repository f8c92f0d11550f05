//! The catalog of regions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Region {
    pub name: String,
    /// Base URL of the REST API.
    pub api_endpoint: String,
    /// Base URL of the S3-compatible object storage.
    pub s3_endpoint: String,
    /// True for the region that answered.
    pub current: bool,
}
