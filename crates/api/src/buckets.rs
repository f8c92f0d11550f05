//! Buckets of object storage, for the REST API and the CLI (S3 clients use the
//! S3 endpoint).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    /// Anyone may read its objects (canned ACL `public-read`).
    pub public_read: bool,
    /// `Enabled`, `Suspended`, or absent if versioning was never enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBucketRequest {
    /// 3 to 63 lower-case letters, digits, dots and hyphens, in labels
    /// separated by single dots that begin and end with a letter or digit (as
    /// DNS names do); not an IP address; unique in the region.
    #[schema(
        min_length = 3,
        max_length = 63,
        pattern = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$",
        example = "my-bucket"
    )]
    pub name: String,
    #[serde(default)]
    pub public_read: bool,
}
