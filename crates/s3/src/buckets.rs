//! Bucket operations: create, head, list, delete, location, versioning, ACL,
//! policy, CORS.

use nubo_store::StoreError;
use nubo_store::buckets::{self, BucketRow};
use nubo_store::{ids, quotas};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::caller::{Caller, Need, db, denied};
use crate::cors::Rule;

fn owner(account_id: &str) -> Owner {
    Owner {
        display_name: None,
        id: Some(account_id.to_string()),
    }
}

fn timestamp(micros: i64) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

pub(crate) fn timestamp_of(micros: i64) -> Timestamp {
    timestamp(micros)
}

/// A canned ACL nubo keeps: `private` or `public-read`.
fn canned(acl: Option<&str>) -> S3Result<&'static str> {
    match acl {
        None | Some("private") => Ok(buckets::PRIVATE),
        Some("public-read") => Ok(buckets::PUBLIC_READ),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!("canned ACL {other:?} is not supported; use private or public-read"),
        )),
    }
}

impl ObjectStorage {
    pub(crate) async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let caller = self.caller(&req).await?;
        let account = Self::account(&caller)?;
        let mut c = self.store.conn().await.map_err(db)?;
        let rows = buckets::of_account(&mut c, account).await.map_err(db)?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                rows.into_iter()
                    .map(|b| Bucket {
                        bucket_region: Some(b.region),
                        creation_date: Some(timestamp(b.created_at)),
                        name: Some(b.name),
                    })
                    .collect(),
            ),
            owner: Some(owner(account)),
            ..Default::default()
        }))
    }

    pub(crate) async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let caller = self.caller(&req).await?;
        let account = Self::account(&caller)?.to_string();
        if !caller.may_write {
            return Err(denied());
        }
        let input = req.input;
        if let Some(location) = input
            .create_bucket_configuration
            .and_then(|c| c.location_constraint)
            && location.as_str() != self.config.region
        {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidLocationConstraint,
                format!("this endpoint serves region {}", self.config.region),
            ));
        }
        let acl = canned(input.acl.as_ref().map(|a| a.as_str()))?;
        let row = self.create(&account, &input.bucket, acl).await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", row.name)),
        }))
    }

    /// Creates a bucket for `account_id`, within its quota. For S3 and the REST API.
    pub async fn create(&self, account_id: &str, name: &str, acl: &str) -> S3Result<BucketRow> {
        if !s3s::path::check_bucket_name(name) {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidBucketName,
                "The specified bucket is not valid.",
            ));
        }
        let limit = self
            .tenancy
            .bucket_limit(account_id)
            .await
            .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e))?;
        let row = BucketRow {
            id: ids::new("bkt"),
            name: name.to_string(),
            account_id: account_id.to_string(),
            region: self.config.region.clone(),
            versioning: String::new(),
            acl: acl.to_string(),
            policy: None,
            cors: None,
            created_at: Self::now_micros(),
        };
        let taken = || {
            S3Error::with_message(
                S3ErrorCode::BucketAlreadyExists,
                "The requested bucket name is not available.",
            )
        };
        let mut tx = self.store.begin().await.map_err(db)?;
        if let Some(existing) = buckets::by_name(&mut tx, name).await.map_err(db)? {
            return Err(if existing.account_id == account_id {
                S3Error::with_message(
                    S3ErrorCode::BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it.",
                )
            } else {
                taken()
            });
        }
        if !quotas::reserve(&mut tx, account_id, "buckets", 1, limit as i64)
            .await
            .map_err(db)?
        {
            return Err(S3Error::with_message(
                S3ErrorCode::TooManyBuckets,
                format!(
                    "the account may hold {limit} buckets; raise the quota with `nubo quota raise --resource buckets --to N`"
                ),
            ));
        }
        match buckets::insert(&mut tx, &row).await {
            Err(StoreError::Conflict(_)) => return Err(taken()),
            other => other.map_err(db)?,
        }
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    /// The account's buckets. For the REST API.
    pub async fn list(&self, account_id: &str) -> S3Result<Vec<BucketRow>> {
        let mut c = self.store.conn().await.map_err(db)?;
        buckets::of_account(&mut c, account_id).await.map_err(db)
    }

    /// Deletes an empty bucket of `account_id`. For S3 and the REST API.
    pub async fn remove(&self, account_id: &str, name: &str) -> S3Result<()> {
        let caller = Caller {
            account_id: Some(account_id.to_string()),
            may_write: true,
        };
        let bucket = self.bucket(&caller, name, Need::Write).await?;
        let mut tx = self.store.begin().await.map_err(db)?;
        if !buckets::is_empty(&mut tx, &bucket.id).await.map_err(db)? {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketNotEmpty,
                "The bucket you tried to delete is not empty",
            ));
        }
        buckets::delete(&mut tx, &bucket, Self::now_micros())
            .await
            .map_err(db)?;
        quotas::release(&mut tx, &bucket.account_id, "buckets", 1)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.bucket_cache.forget(name);
        Ok(())
    }

    pub(crate) async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let caller = self.caller(&req).await?;
        let bucket = self.bucket(&caller, &req.input.bucket, Need::Read).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(bucket.region),
            ..Default::default()
        }))
    }

    pub(crate) async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let caller = self.caller(&req).await?;
        let bucket = self.bucket(&caller, &req.input.bucket, Need::Read).await?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: Some(BucketLocationConstraint::from(bucket.region)),
        }))
    }

    pub(crate) async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let caller = self.caller(&req).await?;
        // Another account's bucket answers AccessDenied before emptiness is told.
        let bucket = self.bucket(&caller, &req.input.bucket, Need::Write).await?;
        self.remove(&bucket.account_id, &bucket.name).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    /// Applies `change` to the bucket's settings, as its owner.
    async fn update_bucket<T>(
        &self,
        req: &S3Request<T>,
        name: &str,
        action: &str,
        change: impl FnOnce(&mut BucketRow) -> S3Result<()>,
    ) -> S3Result<()> {
        let caller = self.caller(req).await?;
        let mut bucket = self.bucket(&caller, name, Need::Write).await?;
        change(&mut bucket)?;
        let mut tx = self.store.begin().await.map_err(db)?;
        buckets::update(&mut tx, &bucket, Self::now_micros(), action)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.bucket_cache.forget(name);
        Ok(())
    }

    pub(crate) async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let status = req
            .input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        if status != BucketVersioningStatus::ENABLED && status != BucketVersioningStatus::SUSPENDED
        {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "Status must be Enabled or Suspended",
            ));
        }
        let name = req.input.bucket.clone();
        self.update_bucket(&req, &name, "versioning", |b| {
            // A bucket that never had versioning stays unversioned when suspended.
            if !(b.versioning.is_empty() && status == BucketVersioningStatus::SUSPENDED) {
                b.versioning = status;
            }
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(crate) async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let caller = self.caller(&req).await?;
        let bucket = self.bucket(&caller, &req.input.bucket, Need::Write).await?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            mfa_delete: None,
            status: (!bucket.versioning.is_empty())
                .then(|| BucketVersioningStatus::from(bucket.versioning)),
        }))
    }

    pub(crate) async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        if req.input.access_control_policy.is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "only canned ACLs (private, public-read) are supported",
            ));
        }
        let acl = canned(req.input.acl.as_ref().map(|a| a.as_str()))?;
        let name = req.input.bucket.clone();
        self.update_bucket(&req, &name, "acl", |b| {
            b.acl = acl.to_string();
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(crate) async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let caller = self.caller(&req).await?;
        let bucket = self.bucket(&caller, &req.input.bucket, Need::Write).await?;
        let mut grants = vec![Grant {
            grantee: Some(Grantee {
                display_name: None,
                email_address: None,
                id: Some(bucket.account_id.clone()),
                type_: Type::from_static(Type::CANONICAL_USER),
                uri: None,
            }),
            permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
        }];
        if bucket.acl == buckets::PUBLIC_READ {
            grants.push(Grant {
                grantee: Some(Grantee {
                    display_name: None,
                    email_address: None,
                    id: None,
                    type_: Type::from_static(Type::GROUP),
                    uri: Some("http://acs.amazonaws.com/groups/global/AllUsers".into()),
                }),
                permission: Some(Permission::from_static(Permission::READ)),
            });
        }
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants),
            owner: Some(owner(&bucket.account_id)),
        }))
    }

    /// A bucket policy: nubo understands the one that matters for sharing, an
    /// `Allow` of `s3:GetObject` to principal `*`, which makes the bucket
    /// public-read; any other policy is kept and shown but grants nothing.
    pub(crate) async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let doc: serde_json::Value = serde_json::from_str(&req.input.policy).map_err(|_| {
            S3Error::with_message(S3ErrorCode::MalformedPolicy, "the policy is not valid JSON")
        })?;
        let public = public_read_policy(&doc);
        let policy = req.input.policy.clone();
        let name = req.input.bucket.clone();
        self.update_bucket(&req, &name, "policy", |b| {
            b.policy = Some(policy);
            if public {
                b.acl = buckets::PUBLIC_READ.into();
            }
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutBucketPolicyOutput {}))
    }

    pub(crate) async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let caller = self.caller(&req).await?;
        let bucket = self.bucket(&caller, &req.input.bucket, Need::Write).await?;
        let policy = bucket.policy.ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::NoSuchBucketPolicy,
                "The bucket policy does not exist",
            )
        })?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    pub(crate) async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let name = req.input.bucket.clone();
        self.update_bucket(&req, &name, "policy", |b| {
            if b.policy.take().is_some() {
                b.acl = buckets::PRIVATE.into();
            }
            Ok(())
        })
        .await?;
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }

    pub(crate) async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let rules: Vec<Rule> = req
            .input
            .cors_configuration
            .cors_rules
            .iter()
            .map(Rule::from_dto)
            .collect();
        if rules.is_empty() {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "no CORS rules",
            ));
        }
        let json = serde_json::to_string(&rules).expect("CORS rules serialize");
        let name = req.input.bucket.clone();
        self.update_bucket(&req, &name, "cors", |b| {
            b.cors = Some(json);
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutBucketCorsOutput {}))
    }

    pub(crate) async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let caller = self.caller(&req).await?;
        let bucket = self.bucket(&caller, &req.input.bucket, Need::Write).await?;
        let rules = Rule::parse(bucket.cors.as_deref()).ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::NoSuchCORSConfiguration,
                "The CORS configuration does not exist",
            )
        })?;
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(rules.iter().map(Rule::to_dto).collect()),
        }))
    }

    pub(crate) async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let name = req.input.bucket.clone();
        self.update_bucket(&req, &name, "cors", |b| {
            b.cors = None;
            Ok(())
        })
        .await?;
        Ok(S3Response::new(DeleteBucketCorsOutput {}))
    }
}

/// Whether a policy lets anyone read the bucket's objects.
fn public_read_policy(doc: &serde_json::Value) -> bool {
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(list) => list.clone(),
        single @ serde_json::Value::Object(_) => vec![single.clone()],
        _ => return false,
    };
    statements.iter().any(|s| {
        let anyone = s["Principal"] == "*" || s["Principal"]["AWS"] == "*";
        let actions: Vec<String> = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(list) => list
                .iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        s["Effect"] == "Allow"
            && anyone
            && actions.iter().any(|a| a == "s3:GetObject" || a == "s3:*")
    })
}
