//! Who may call what: every operation checks its caller itself (owner,
//! public-read bucket, key scope), so that a request for a bucket that does not
//! exist answers NoSuchBucket whoever sends it, as S3 does.

use s3s::S3Result;
use s3s::access::{S3Access, S3AccessContext};

pub struct Access;

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, _cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
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
