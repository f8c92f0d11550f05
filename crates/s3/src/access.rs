//! Which requests may come without a signature: reads, which the operations then
//! allow only on public-read buckets.

use s3s::S3Result;
use s3s::access::{S3Access, S3AccessContext};

use crate::caller::denied;

pub struct Access;

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() {
            return Ok(());
        }
        match cx.s3_op().name() {
            "GetObject" | "HeadObject" | "ListObjects" | "ListObjectsV2" => Ok(()),
            _ => Err(denied()),
        }
    }
}

/// Access keys are the region's: the same id and secret sign API and S3 requests.
pub struct Auth(pub std::sync::Arc<dyn crate::Tenancy>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        match self.0.key(access_key).await {
            Ok(Some(key)) => Ok(key.secret.into()),
            Ok(None) => Err(s3s::S3Error::new(s3s::S3ErrorCode::InvalidAccessKeyId)),
            Err(e) => Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::InternalError,
                e,
            )),
        }
    }
}
