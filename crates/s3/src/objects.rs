//! Object operations: put, get, head, delete (one or many), copy.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use nubo_store::StoreError;
use nubo_store::buckets::BucketRow;
use nubo_store::objects::{self, NULL_VERSION, ObjectRow};
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::blobs::{Written, new_id};
use crate::buckets::timestamp_of;
use crate::caller::{Caller, Need, db, no_such_bucket};
use crate::commit::Refused;
use crate::conditions::{DeleteCondition, WriteCondition, preconditions};
use crate::meta::{Checksums, ObjectMeta, Segment, segments, segments_json};
use crate::part_checksums::Algorithm;

/// The longest key S3 accepts, in bytes.
const MAX_KEY: usize = 1024;
/// The largest single PUT S3 accepts.
pub(crate) const MAX_PUT: u64 = 5 * 1024 * 1024 * 1024;

pub(crate) fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_KEY {
        return Err(S3Error::with_message(
            S3ErrorCode::KeyTooLongError,
            "Your key is too long",
        ));
    }
    if key.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "the key is empty",
        ));
    }
    Ok(())
}

/// The bucket and object a GET or HEAD names (S3 gives both requests the same
/// fields), once the caller may read them and the request's conditions hold.
macro_rules! read_checked {
    ($self:ident, $caller:expr, $input:expr) => {{
        let bucket = $self.bucket(&$caller, &$input.bucket, Need::Read).await?;
        let row = $self
            .readable(&bucket, &$input.key, $input.version_id.as_deref())
            .await?;
        preconditions(
            &row,
            $input.if_match.as_ref(),
            $input.if_unmodified_since.as_ref(),
            $input.if_none_match.as_ref(),
            $input.if_modified_since.as_ref(),
        )?;
        (bucket, row)
    }};
}

/// A GET or HEAD answer: what both say of an object (S3 defines them as two
/// types with the same fields), the response-* overrides of the request
/// applied, plus the fields given.
macro_rules! described {
    ($output:ident { $($field:ident $(: $value:expr)?),* $(,)? },
     $bucket:ident, $row:ident, $meta:ident, $input:ident, $sums:ident) => {
        $output {
            $($field $(: $value)?,)*
            accept_ranges: Some("bytes".into()),
            e_tag: Some(quoted(&$row.etag)),
            last_modified: Some(timestamp_of($row.created_at)),
            metadata: (!$meta.user.is_empty()).then(|| $meta.user.clone().into_iter().collect()),
            content_type: $input.response_content_type.or($row.content_type.clone()),
            content_disposition: $input
                .response_content_disposition
                .or($meta.content_disposition),
            content_encoding: $input.response_content_encoding.or($meta.content_encoding),
            content_language: $input.response_content_language.or($meta.content_language),
            cache_control: $input.response_cache_control.or($meta.cache_control),
            expires: $input.response_expires.or($meta.expires.map(timestamp_of)),
            version_id: ObjectStorage::shown_version(&$bucket, &$row.version_id),
            parts_count: $meta.parts.map(|p| p as i32),
            checksum_crc32: $sums.checksum_crc32,
            checksum_crc32c: $sums.checksum_crc32c,
            checksum_sha1: $sums.checksum_sha1,
            checksum_sha256: $sums.checksum_sha256,
            checksum_crc64nvme: $sums.checksum_crc64nvme,
            checksum_type: $sums.checksum_type,
            ..Default::default()
        }
    };
}

pub(crate) fn quoted(etag: &str) -> ETag {
    ETag::Strong(etag.to_string())
}

/// What of an object a read returns: its bytes `range`, and the checksums
/// that describe them.
struct Selection {
    range: std::ops::Range<u64>,
    content_range: Option<String>,
    sums: Checksum,
}

/// The part `n` of an object, or the bytes `range` (not both), or all of it.
/// Checksums describe a whole object or a whole part, and are shown when
/// asked for.
fn select(
    row: &ObjectRow,
    meta: &ObjectMeta,
    range: Option<&Range>,
    part: Option<i32>,
    checksum_mode: Option<&ChecksumMode>,
) -> S3Result<Selection> {
    let size = row.size as u64;
    let content_range =
        |r: &std::ops::Range<u64>| format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1));
    let with_checksums = checksum_mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    let shown = |sums: &Checksums| {
        let mut shown = checksum_fields(sums);
        if *sums != Checksums::default() {
            let kind = meta
                .checksum_type
                .as_deref()
                .unwrap_or(ChecksumType::FULL_OBJECT);
            shown.checksum_type = Some(ChecksumType::from(kind.to_string()));
        }
        if with_checksums {
            shown
        } else {
            Checksum::default()
        }
    };
    match (range, part) {
        (Some(_), Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter",
        )),
        (Some(r), None) => {
            let range = r.check(size).map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::InvalidRange,
                    "The requested range is not satisfiable",
                )
            })?;
            Ok(Selection {
                content_range: Some(content_range(&range)),
                range,
                sums: Checksum::default(),
            })
        }
        (None, Some(n)) if meta.parts.is_some() => {
            let sizes: Vec<u64> = segments(&row.segments).iter().map(|s| s.size).collect();
            let index = usize::try_from(n - 1)
                .ok()
                .filter(|&i| i < sizes.len())
                .ok_or_else(part_not_satisfiable)?;
            let start: u64 = sizes[..index].iter().sum();
            let range = start..start + sizes[index];
            // The part's checksum, of the algorithm of the object's.
            let part_sums = meta
                .part_checksums
                .get(index)
                .and_then(|sum| Algorithm::found_in(&meta.checksums).map(|a| a.only(sum.clone())))
                .unwrap_or_default();
            Ok(Selection {
                content_range: Some(content_range(&range)),
                range,
                sums: shown(&part_sums),
            })
        }
        (None, Some(n)) if n != 1 => Err(part_not_satisfiable()),
        (None, _) => Ok(Selection {
            range: 0..size,
            content_range: None,
            sums: shown(&meta.checksums),
        }),
    }
}

fn part_not_satisfiable() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidPart,
        "The requested partnumber is not satisfiable",
    )
}

fn no_such_key() -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
}

/// The hashers for the checksums a request declares.
pub(crate) fn hasher_for(
    algorithm: Option<&ChecksumAlgorithm>,
    declared: &Checksums,
) -> S3Result<ChecksumHasher> {
    let mut h = ChecksumHasher::default();
    if declared.crc32.is_some() {
        h.crc32 = Some(Default::default());
    }
    if declared.crc32c.is_some() {
        h.crc32c = Some(Default::default());
    }
    if declared.sha1.is_some() {
        h.sha1 = Some(Default::default());
    }
    if declared.sha256.is_some() {
        h.sha256 = Some(Default::default());
    }
    if declared.crc64nvme.is_some() {
        h.crc64nvme = Some(Default::default());
    }
    if let Some(alg) = algorithm {
        match alg.as_str() {
            ChecksumAlgorithm::CRC32 => h.crc32 = Some(Default::default()),
            ChecksumAlgorithm::CRC32C => h.crc32c = Some(Default::default()),
            ChecksumAlgorithm::SHA1 => h.sha1 = Some(Default::default()),
            ChecksumAlgorithm::SHA256 => h.sha256 = Some(Default::default()),
            ChecksumAlgorithm::CRC64NVME => h.crc64nvme = Some(Default::default()),
            other => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!("unknown checksum algorithm {other}"),
                ));
            }
        }
    }
    Ok(h)
}

/// Checks what was received against what the client declared (headers, or
/// trailers of a streaming upload); returns the checksums to keep.
pub(crate) fn verify(
    written: &Written,
    content_md5: Option<&str>,
    mut declared: Checksums,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<Checksums> {
    if let Some(md5) = content_md5 {
        let digest = STANDARD
            .decode(md5)
            .ok()
            .filter(|d| d.len() == 16)
            .ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InvalidDigest,
                    "The Content-MD5 you specified was invalid.",
                )
            })?;
        if digest != written.md5 {
            return Err(S3Error::with_message(
                S3ErrorCode::BadDigest,
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
    }
    if let Some(trailers) = trailers.and_then(|t| t.take()) {
        let get = |name: &str| {
            trailers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        declared.crc32 = declared.crc32.or(get("x-amz-checksum-crc32"));
        declared.crc32c = declared.crc32c.or(get("x-amz-checksum-crc32c"));
        declared.sha1 = declared.sha1.or(get("x-amz-checksum-sha1"));
        declared.sha256 = declared.sha256.or(get("x-amz-checksum-sha256"));
        declared.crc64nvme = declared.crc64nvme.or(get("x-amz-checksum-crc64nvme"));
    }
    let computed = Checksums::from(written.checksum.clone());
    for (name, want, got) in [
        ("CRC32", &declared.crc32, &computed.crc32),
        ("CRC32C", &declared.crc32c, &computed.crc32c),
        ("SHA1", &declared.sha1, &computed.sha1),
        ("SHA256", &declared.sha256, &computed.sha256),
        ("CRC64NVME", &declared.crc64nvme, &computed.crc64nvme),
    ] {
        if let Some(want) = want
            && Some(want) != got.as_ref()
        {
            return Err(S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!("The {name} you specified did not match the calculated checksum."),
            ));
        }
    }
    Ok(computed)
}

fn checksum_fields(c: &Checksums) -> Checksum {
    Checksum {
        checksum_crc32: c.crc32.clone(),
        checksum_crc32c: c.crc32c.clone(),
        checksum_sha1: c.sha1.clone(),
        checksum_sha256: c.sha256.clone(),
        checksum_crc64nvme: c.crc64nvme.clone(),
        ..Default::default()
    }
}

impl ObjectStorage {
    /// The version id a new object gets in `bucket`, and whether it replaces the
    /// key's `null` version.
    pub(crate) fn next_version_of(bucket: &BucketRow) -> (String, bool) {
        if bucket.versioning == BucketVersioningStatus::ENABLED {
            (new_id(), false)
        } else {
            (NULL_VERSION.to_string(), true)
        }
    }

    /// The version id to show: none for buckets that never had versioning.
    pub(crate) fn shown_version(bucket: &BucketRow, version_id: &str) -> Option<String> {
        (!bucket.versioning.is_empty()).then(|| version_id.to_string())
    }

    /// The version id a write answers with: none for a `null` version, which
    /// a bucket without versioning enabled writes.
    pub(crate) fn written_version(version_id: &str) -> Option<String> {
        (version_id != NULL_VERSION).then(|| version_id.to_string())
    }

    /// Commits a new latest version of a key, then deletes the files of what
    /// it replaced.
    pub(crate) async fn commit_object(
        &self,
        bucket: &BucketRow,
        row: ObjectRow,
        replace_null: bool,
        condition: Option<WriteCondition>,
    ) -> S3Result<ObjectRow> {
        let new_blobs: Vec<String> = segments(&row.segments)
            .into_iter()
            .map(|s| s.blob)
            .collect();
        let (row, removed) = match self
            .committer
            .put(bucket, row, replace_null, condition)
            .await
        {
            Ok(committed) => committed,
            // The version was certainly not stored, so its files can go.
            // (Other failures may hide a commit that happened; the sweep at
            // start removes what no row names.)
            Err(Refused::Condition(e)) => {
                self.blobs.remove(new_blobs).await;
                return Err(e);
            }
            // The bucket was deleted meanwhile.
            Err(Refused::Store(StoreError::Missing(_))) => {
                self.blobs.remove(new_blobs).await;
                self.bucket_cache.forget(&bucket.name);
                return Err(no_such_bucket());
            }
            Err(Refused::Store(e)) => return Err(db(e)),
        };
        let garbage: Vec<String> = removed
            .iter()
            .flat_map(|r| segments(&r.segments))
            .map(|s| s.blob)
            .collect();
        self.blobs.remove(garbage).await;
        Ok(row)
    }

    pub(crate) async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.bucket(&caller, &input.bucket, Need::Write).await?;
        let declared = Checksums {
            crc32: input.checksum_crc32.clone(),
            crc32c: input.checksum_crc32c.clone(),
            sha1: input.checksum_sha1.clone(),
            sha256: input.checksum_sha256.clone(),
            crc64nvme: input.checksum_crc64nvme.clone(),
        };
        let hasher = hasher_for(input.checksum_algorithm.as_ref(), &declared)?;
        let condition = WriteCondition::new(input.if_match.clone(), input.if_none_match.clone());
        let body = input.body.ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::IncompleteBody, "the request has no body")
        })?;
        let written = self
            .blobs
            .write(body, self.config.inline_max, MAX_PUT, hasher)
            .await?;
        let checksums = match verify(
            &written,
            input.content_md5.as_deref(),
            declared,
            req.trailing_headers,
        ) {
            Ok(c) => c,
            Err(e) => {
                self.blobs
                    .remove(written.blob.iter().cloned().collect())
                    .await;
                return Err(e);
            }
        };
        let meta = ObjectMeta {
            user: input.metadata.unwrap_or_default().into_iter().collect(),
            content_disposition: input.content_disposition,
            content_encoding: stored_encoding(input.content_encoding),
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: input.expires.map(|t| micros_of(&t)),
            content_type: input.content_type.clone(),
            checksums: checksums.clone(),
            ..Default::default()
        };
        let (version_id, replace_null) = Self::next_version_of(&bucket);
        let now = Self::now_micros();
        let row = ObjectRow {
            bucket_id: bucket.id.clone(),
            key: input.key,
            version_id,
            seq: now,
            is_latest: true,
            delete_marker: false,
            size: written.size as i64,
            etag: written.md5_hex(),
            segments: segments_json(
                &written
                    .blob
                    .iter()
                    .map(|b| Segment {
                        blob: b.clone(),
                        size: written.size,
                    })
                    .collect::<Vec<_>>(),
            ),
            inline_data: written.inline.clone(),
            content_type: input.content_type,
            meta: meta.to_json(),
            created_at: now,
        };
        let row = self
            .commit_object(&bucket, row, replace_null, condition)
            .await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        let sums = checksum_fields(&checksums);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(quoted(&row.etag)),
            version_id: Self::written_version(&row.version_id),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            size: Some(row.size),
            ..Default::default()
        }))
    }

    /// The version a read asks for: a given version, or the latest (which must
    /// not be a delete marker).
    pub(crate) async fn readable(
        &self,
        bucket: &BucketRow,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<ObjectRow> {
        let mut c = self.store.conn().await.map_err(db)?;
        let row = match version_id {
            Some(v) => objects::version(&mut c, &bucket.id, key, v)
                .await
                .map_err(db)?
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::NoSuchVersion,
                        "The specified version does not exist.",
                    )
                })?,
            None => objects::latest(&mut c, &bucket.id, key)
                .await
                .map_err(db)?
                .ok_or_else(no_such_key)?,
        };
        if row.delete_marker {
            let mut e = if version_id.is_some() {
                S3Error::with_message(
                    S3ErrorCode::MethodNotAllowed,
                    "The specified method is not allowed against this resource.",
                )
            } else {
                no_such_key()
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-amz-delete-marker",
                http::HeaderValue::from_static("true"),
            );
            if let Ok(v) = http::HeaderValue::from_str(&row.version_id) {
                headers.insert("x-amz-version-id", v);
            }
            e.set_headers(headers);
            return Err(e);
        }
        Ok(row)
    }

    /// The data of `row` in `range`.
    pub(crate) async fn body(
        &self,
        row: &ObjectRow,
        range: std::ops::Range<u64>,
    ) -> S3Result<StreamingBlob> {
        match &row.inline_data {
            Some(data) => {
                let bytes = Bytes::copy_from_slice(&data[range.start as usize..range.end as usize]);
                Ok(StreamingBlob::wrap(futures::stream::once(async move {
                    Ok::<_, std::io::Error>(bytes)
                })))
            }
            None => self.blobs.read(segments(&row.segments), range).await,
        }
    }

    pub(crate) async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let (bucket, row) = read_checked!(self, caller, input);
        let meta = ObjectMeta::parse(&row.meta);
        let Selection {
            range,
            content_range,
            sums,
        } = select(
            &row,
            &meta,
            input.range.as_ref(),
            input.part_number,
            input.checksum_mode.as_ref(),
        )?;
        let length = range.end - range.start;
        let body = self.body(&row, range).await?;
        self.usage.record(&bucket.account_id, &bucket.id, length);
        Ok(S3Response::new(described!(
            GetObjectOutput {
                body: Some(body),
                content_length: Some(length as i64),
                content_range,
            },
            bucket,
            row,
            meta,
            input,
            sums
        )))
    }

    pub(crate) async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let (bucket, row) = read_checked!(self, caller, input);
        let meta = ObjectMeta::parse(&row.meta);
        let Selection {
            range,
            content_range,
            sums,
        } = select(
            &row,
            &meta,
            input.range.as_ref(),
            input.part_number,
            input.checksum_mode.as_ref(),
        )?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(described!(
            HeadObjectOutput {
                content_length: Some((range.end - range.start) as i64),
                content_range,
            },
            bucket,
            row,
            meta,
            input,
            sums
        )))
    }

    /// Deletes a key (or one of its versions) as S3 does for the bucket's
    /// versioning state, if `condition` holds for what it deletes; returns
    /// (delete marker?, version id shown).
    pub(crate) async fn delete_key(
        &self,
        bucket: &BucketRow,
        key: &str,
        version_id: Option<&str>,
        condition: &DeleteCondition,
    ) -> S3Result<(bool, Option<String>)> {
        check_key(key)?;
        let now = Self::now_micros();
        let mut tx = self.store.begin().await.map_err(db)?;
        if !condition.is_empty() {
            let target = match version_id {
                Some(v) => objects::version(&mut tx, &bucket.id, key, v).await,
                None => objects::latest(&mut tx, &bucket.id, key).await,
            }
            .map_err(db)?;
            match target {
                Some(target) => condition.check(&target)?,
                // Nothing to delete: nothing to do, not even a delete marker.
                None => return Ok((false, None)),
            }
        }
        // A delete marker, where versioning is or was enabled and no version
        // is named; otherwise the version goes.
        let marker = version_id.is_none() && !bucket.versioning.is_empty();
        let (removed, shown) = if marker {
            let (version_id, replace_null) = Self::next_version_of(bucket);
            let mut marker = ObjectRow {
                bucket_id: bucket.id.clone(),
                key: key.to_string(),
                version_id,
                seq: now,
                is_latest: true,
                delete_marker: true,
                size: 0,
                etag: String::new(),
                segments: "[]".into(),
                inline_data: None,
                content_type: None,
                meta: "{}".into(),
                created_at: now,
            };
            let removed = objects::put(&mut tx, &bucket.account_id, &mut marker, replace_null)
                .await
                .map_err(db)?;
            (removed, Some(marker.version_id))
        } else {
            let version = version_id.unwrap_or(NULL_VERSION);
            let removed =
                objects::remove_version(&mut tx, &bucket.account_id, &bucket.id, key, version, now)
                    .await
                    .map_err(db)?;
            (removed.into_iter().collect(), version_id.map(String::from))
        };
        tx.commit().await.map_err(db)?;
        let garbage: Vec<String> = removed
            .iter()
            .flat_map(|r| segments(&r.segments))
            .map(|s| s.blob)
            .collect();
        self.blobs.remove(garbage).await;
        // Removing a named version that is a delete marker says so too.
        let was_marker = marker || removed.first().is_some_and(|r| r.delete_marker);
        Ok((was_marker, shown))
    }

    pub(crate) async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.bucket(&caller, &input.bucket, Need::Write).await?;
        let condition = DeleteCondition {
            etag: input.if_match,
            last_modified: input.if_match_last_modified_time,
            size: input.if_match_size,
        };
        let (marker, version) = self
            .delete_key(&bucket, &input.key, input.version_id.as_deref(), &condition)
            .await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: marker.then_some(true),
            version_id: version,
            ..Default::default()
        }))
    }

    pub(crate) async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.bucket(&caller, &input.bucket, Need::Write).await?;
        if input.delete.objects.len() > 1000 {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "at most 1000 keys per request",
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for id in input.delete.objects {
            let condition = DeleteCondition {
                etag: id.e_tag.map(ETagCondition::ETag),
                last_modified: id.last_modified_time,
                size: id.size,
            };
            match self
                .delete_key(&bucket, &id.key, id.version_id.as_deref(), &condition)
                .await
            {
                Ok((marker, version)) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            delete_marker: marker.then_some(true),
                            delete_marker_version_id: if marker { version.clone() } else { None },
                            key: Some(id.key),
                            version_id: if marker { None } else { version },
                        });
                    }
                }
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(id.key),
                    message: e.message().map(String::from),
                    version_id: id.version_id,
                }),
            }
        }
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    /// The object a copy reads, if the caller may read it and the copy's
    /// conditions hold (a copy answers 412 where a GET would answer 304).
    pub(crate) async fn copy_source(
        &self,
        caller: &Caller,
        from: &CopySource,
        if_match: Option<&ETagCondition>,
        if_unmodified_since: Option<&Timestamp>,
        if_none_match: Option<&ETagCondition>,
        if_modified_since: Option<&Timestamp>,
    ) -> S3Result<(BucketRow, ObjectRow)> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = from
        else {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "copy from access points is not supported",
            ));
        };
        let bucket = self.bucket(caller, bucket, Need::Read).await?;
        let source = self.readable(&bucket, key, version_id.as_deref()).await?;
        preconditions(
            &source,
            if_match,
            if_unmodified_since,
            if_none_match,
            if_modified_since,
        )
        .map_err(|e| {
            if *e.code() == S3ErrorCode::NotModified {
                S3Error::with_message(
                    S3ErrorCode::PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold",
                )
            } else {
                e
            }
        })?;
        Ok((bucket, source))
    }

    pub(crate) async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        check_key(&input.key)?;
        let (source_bucket, source) = self
            .copy_source(
                &caller,
                &input.copy_source,
                input.copy_source_if_match.as_ref(),
                input.copy_source_if_unmodified_since.as_ref(),
                input.copy_source_if_none_match.as_ref(),
                input.copy_source_if_modified_since.as_ref(),
            )
            .await?;
        let bucket = self.bucket(&caller, &input.bucket, Need::Write).await?;
        let src_version = match &input.copy_source {
            CopySource::Bucket { version_id, .. } => version_id.as_deref(),
            _ => None,
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace
            && source_bucket.id == bucket.id
            && source.key == input.key
            && src_version.is_none()
        {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
            ));
        }
        let mut meta = ObjectMeta::parse(&source.meta);
        let mut content_type = source.content_type.clone();
        if replace {
            meta = ObjectMeta {
                user: input.metadata.unwrap_or_default().into_iter().collect(),
                content_disposition: input.content_disposition,
                content_encoding: input.content_encoding,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires: input.expires.map(|t| micros_of(&t)),
                content_type: input.content_type.clone(),
                ..meta
            };
            content_type = input.content_type;
        }
        // A copy was completed from no upload of its own.
        meta.upload = None;
        let mut linked = Vec::new();
        for s in segments(&source.segments) {
            linked.push(Segment {
                blob: self.blobs.link(&s.blob).await?,
                size: s.size,
            });
        }
        let (version_id, replace_null) = Self::next_version_of(&bucket);
        let now = Self::now_micros();
        let row = ObjectRow {
            bucket_id: bucket.id.clone(),
            key: input.key,
            version_id,
            seq: now,
            is_latest: true,
            delete_marker: false,
            size: source.size,
            etag: source.etag.clone(),
            segments: segments_json(&linked),
            inline_data: source.inline_data.clone(),
            content_type,
            meta: meta.to_json(),
            created_at: now,
        };
        let row = self.commit_object(&bucket, row, replace_null, None).await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(quoted(&row.etag)),
                last_modified: Some(timestamp_of(row.created_at)),
                ..Default::default()
            }),
            copy_source_version_id: Self::shown_version(&source_bucket, &source.version_id),
            version_id: Self::written_version(&row.version_id),
            ..Default::default()
        }))
    }
}

/// The Content-Encoding to keep: `aws-chunked` describes the upload, not the object.
pub(crate) fn stored_encoding(encoding: Option<String>) -> Option<String> {
    encoding.and_then(|e| {
        let kept: Vec<&str> = e
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
            .collect();
        (!kept.is_empty()).then(|| kept.join(", "))
    })
}

pub(crate) fn micros_of(t: &Timestamp) -> i64 {
    (time::OffsetDateTime::from(t.clone()).unix_timestamp_nanos() / 1000) as i64
}
