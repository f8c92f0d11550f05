//! Who is asking, and what they may do with a bucket.

use nubo_store::StoreError;
use nubo_store::buckets::{self, BucketRow};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result};

use crate::ObjectStorage;

/// The account behind a request; `None` for anonymous requests.
pub struct Caller {
    pub account_id: Option<String>,
    pub may_write: bool,
}

/// What a request does to a bucket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read objects or list: the owner, or anyone when the bucket is public-read.
    Read,
    /// Write objects or change the bucket: the owner with a full-scope key.
    Write,
}

pub fn db(e: StoreError) -> S3Error {
    if let StoreError::Missing(_) = e {
        // What rows of object storage refer to is their bucket (or upload).
        no_such_bucket()
    } else if e.is_unavailable() {
        S3Error::with_message(S3ErrorCode::ServiceUnavailable, "the store is unavailable")
    } else {
        tracing::error!(error = %e, "object storage store");
        S3Error::with_message(S3ErrorCode::InternalError, "internal error")
    }
}

pub fn no_such_bucket() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchBucket,
        "The specified bucket does not exist",
    )
}

pub fn denied() -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, "Access Denied")
}

impl ObjectStorage {
    pub(crate) async fn caller<T>(&self, req: &S3Request<T>) -> S3Result<Caller> {
        let Some(credentials) = &req.credentials else {
            return Ok(Caller {
                account_id: None,
                may_write: false,
            });
        };
        let key = self
            .tenancy
            .key(&credentials.access_key)
            .await
            .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e))?
            .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?;
        Ok(Caller {
            account_id: Some(key.account_id),
            may_write: key.may_write,
        })
    }

    /// The bucket `name`, if `caller` may do `need` with it.
    pub(crate) async fn bucket(
        &self,
        caller: &Caller,
        name: &str,
        need: Need,
    ) -> S3Result<BucketRow> {
        let bucket = self
            .bucket_by_name(name)
            .await?
            .ok_or_else(no_such_bucket)?;
        let owner = caller.account_id.as_deref() == Some(bucket.account_id.as_str());
        let allowed = match need {
            Need::Read => owner || bucket.acl == buckets::PUBLIC_READ,
            Need::Write => owner && caller.may_write,
        };
        if allowed { Ok(bucket) } else { Err(denied()) }
    }

    /// The bucket called `name`, whoever asks.
    pub(crate) async fn bucket_by_name(&self, name: &str) -> S3Result<Option<BucketRow>> {
        let ticket = match self.bucket_cache.get(name) {
            Ok(bucket) => return Ok(Some(bucket)),
            Err(ticket) => ticket,
        };
        let mut c = self.store.conn().await.map_err(db)?;
        let bucket = buckets::by_name(&mut c, name).await.map_err(db)?;
        if let Some(bucket) = &bucket {
            self.bucket_cache.remember(ticket, bucket);
        }
        Ok(bucket)
    }

    /// The caller's account, for operations that need one.
    pub(crate) fn account(caller: &Caller) -> S3Result<&str> {
        caller.account_id.as_deref().ok_or_else(denied)
    }
}
