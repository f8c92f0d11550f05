//! Bucket operations: create, head, list, delete, location, versioning, ACL,
//! policy, CORS.

use nubo_store::StoreError;
use nubo_store::buckets::{self, BucketRow};
use nubo_store::{ids, multipart, quotas};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::caller::{Caller, Need, db, denied};
use crate::cors::Rule;

/// An account as S3 shows an owner: accounts have no other name than their id.
pub(crate) fn owner(account_id: &str) -> Owner {
    Owner {
        display_name: Some(account_id.to_string()),
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
        let input = req.input;
        let max = match input.max_buckets {
            None => usize::MAX,
            Some(n @ 1..=10_000) => n as usize,
            Some(_) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    "max-buckets must be between 1 and 10000",
                ));
            }
        };
        // The token is the last name listed.
        let after = input.continuation_token.clone().unwrap_or_default();
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut c = self.store.conn().await.map_err(db)?;
        let mut rows: Vec<BucketRow> = buckets::of_account(&mut c, account)
            .await
            .map_err(db)?
            .into_iter()
            .filter(|b| b.name.starts_with(&prefix) && b.name > after)
            .filter(|b| input.bucket_region.as_ref().is_none_or(|r| *r == b.region))
            .collect();
        let more = rows.len() > max;
        rows.truncate(max);
        Ok(S3Response::new(ListBucketsOutput {
            continuation_token: rows.last().filter(|_| more).map(|b| b.name.clone()),
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
            prefix: input.prefix,
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
        // DNS labels neither start nor end with a dash.
        if !s3s::path::check_bucket_name(name) || name.contains("-.") || name.contains(".-") {
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

    /// Deletes a bucket of `account_id` that holds no object, aborting its
    /// incomplete multipart uploads as AWS does. For S3 and the REST API.
    pub async fn remove(&self, account_id: &str, name: &str) -> S3Result<()> {
        let files = self.forget_bucket(account_id, name).await?;
        self.blobs.remove(files).await;
        Ok(())
    }

    /// Removes the bucket's rows, its uploads' with them, in one transaction;
    /// returns the files they used. A crash before the caller deletes those
    /// leaves only files no row names, which the sweep at start removes.
    async fn forget_bucket(&self, account_id: &str, name: &str) -> S3Result<Vec<String>> {
        let caller = Caller {
            account_id: Some(account_id.to_string()),
            may_write: true,
        };
        let bucket = self.bucket(&caller, name, Need::Write).await?;
        let now = Self::now_micros();
        let mut tx = self.store.begin().await.map_err(db)?;
        if !buckets::is_empty(&mut tx, &bucket.id).await.map_err(db)? {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketNotEmpty,
                "The bucket you tried to delete is not empty",
            ));
        }
        let parts = multipart::abort_all(&mut tx, &bucket.account_id, &bucket.id, now)
            .await
            .map_err(db)?;
        buckets::delete(&mut tx, &bucket, now).await.map_err(db)?;
        quotas::release(&mut tx, &bucket.account_id, "buckets", 1)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.bucket_cache.forget(name);
        Ok(parts.into_iter().map(|p| p.blob_id).collect())
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
            b.versioning = status;
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
        let mut grants = Vec::new();
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
        let owner = owner(&bucket.account_id);
        grants.push(Grant {
            grantee: Some(Grantee {
                display_name: owner.display_name.clone(),
                email_address: None,
                id: owner.id.clone(),
                type_: Type::from_static(Type::CANONICAL_USER),
                uri: None,
            }),
            permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
        });
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants),
            owner: Some(owner),
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use bytes::Bytes;
    use nubo_store::multipart::{self, PartRow, UploadRow};
    use nubo_store::{Store, accounts, buckets, events, ids};

    use crate::{Config, Key, ObjectStorage, Tenancy};

    struct Anyone;

    #[async_trait::async_trait]
    impl Tenancy for Anyone {
        async fn key(&self, _: &str) -> Result<Option<Key>, String> {
            Ok(None)
        }
        async fn bucket_limit(&self, _: &str) -> Result<u64, String> {
            Ok(10)
        }
    }

    async fn open(dir: &Path, store: &Store) -> Arc<ObjectStorage> {
        let config = Config::new("r".into(), dir.join("objects"));
        ObjectStorage::open(config, store.clone(), Arc::new(Anyone))
            .await
            .unwrap()
    }

    /// A new bucket holding one incomplete upload of one part; the part's file.
    async fn bucket_with_upload(storage: &ObjectStorage, account: &str, name: &str) -> PathBuf {
        let bucket = storage
            .create(account, name, buckets::PRIVATE)
            .await
            .unwrap();
        let body = futures::stream::iter([Ok::<_, s3s::StdError>(Bytes::from(vec![7u8; 1000]))]);
        let written = storage
            .blobs
            .write(body, 0, 1 << 20, Default::default())
            .await
            .unwrap();
        let blob = written.blob.unwrap();
        let upload = UploadRow {
            id: ids::new("up"),
            bucket_id: bucket.id.clone(),
            key: "k".into(),
            meta: "{}".into(),
            created_at: 1,
        };
        let part = PartRow {
            upload_id: upload.id.clone(),
            part_number: 1,
            size: 1000,
            etag: "e".into(),
            blob_id: blob.clone(),
            checksums: "{}".into(),
            created_at: 1,
        };
        let mut tx = storage.store.begin().await.unwrap();
        multipart::create(&mut tx, account, &upload).await.unwrap();
        multipart::put_part(&mut tx, account, &bucket.id, &part)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let file = storage
            .config
            .root
            .join("data")
            .join(&blob[..2])
            .join(&blob);
        assert!(file.exists());
        file
    }

    #[tokio::test]
    async fn deleting_a_bucket_aborts_its_uploads_and_a_crash_leaves_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("nubo-s3-{:016x}", ids::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.join("db").display()))
            .await
            .unwrap();
        let account = ids::new("acc");
        let mut tx = store.begin().await.unwrap();
        accounts::insert(&mut tx, &account, "a@example.com", 1)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let storage = open(&dir, &store).await;

        let part = bucket_with_upload(&storage, &account, "whole").await;
        storage.remove(&account, "whole").await.unwrap();
        assert!(!part.exists(), "the part's file went with its upload");
        assert!(storage.bucket_by_name("whole").await.unwrap().is_none());

        // Killed once the rows were gone, before their files were: the next
        // start removes the files.
        let part = bucket_with_upload(&storage, &account, "crashed").await;
        let files = storage.forget_bucket(&account, "crashed").await.unwrap();
        assert_eq!(files.len(), 1);
        drop(storage);
        assert!(part.exists());
        let storage = open(&dir, &store).await;
        assert!(!part.exists(), "the sweep at start removed the orphan");

        // Each aborted upload ends its parts' metering.
        let mut c = store.conn().await.unwrap();
        let logged: Vec<(String, String)> =
            events::of_account(&mut c, &account, &["multipart_upload", "part"], i64::MAX)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.resource_type, e.action))
                .collect();
        let count = |t: &str, a: &str| logged.iter().filter(|(rt, ac)| rt == t && ac == a).count();
        assert_eq!(count("multipart_upload", "aborted"), 2, "{logged:?}");
        assert_eq!(
            (count("part", "stored"), count("part", "removed")),
            (2, 2),
            "{logged:?}"
        );
        drop((c, storage));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
