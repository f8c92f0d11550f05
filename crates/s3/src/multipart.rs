//! Multipart uploads: parts are durable files; completing stitches them into an
//! object without copying (the object's segments are the parts' files).

use nubo_store::StoreError;
use nubo_store::buckets::BucketRow;
use nubo_store::multipart::{self, PartRow, UploadRow};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::blobs::new_id;
use crate::buckets::timestamp_of;
use crate::caller::{Caller, Need, db};
use crate::meta::{Checksums, ObjectMeta};
use crate::objects::{check_key, hasher_for, micros_of, quoted, verify};
use crate::part_checksums::{Algorithm, Kind};

/// Parts before the last must be at least this big.
pub(crate) const MIN_PART: i64 = 5 * 1024 * 1024;
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const MAX_LISTED: i32 = 1000;

pub(crate) fn no_such_upload() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"),
        ))
    }
}

/// The checksum algorithm an upload's parts are checked with, if any.
fn upload_algorithm(upload: &UploadRow) -> Option<ChecksumAlgorithm> {
    ObjectMeta::parse(&upload.meta)
        .checksum_algorithm
        .map(ChecksumAlgorithm::from)
}

impl ObjectStorage {
    /// Upload `upload_id` of `key` in bucket `bucket`, which the caller must be
    /// allowed to write.
    pub(crate) async fn upload(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> S3Result<(BucketRow, UploadRow)> {
        let bucket = self.bucket(caller, bucket, Need::Write).await?;
        let mut c = self.store.conn().await.map_err(db)?;
        let upload = multipart::get(&mut c, &bucket.id, upload_id)
            .await
            .map_err(db)?
            .filter(|u| u.key == key)
            .ok_or_else(no_such_upload)?;
        Ok((bucket, upload))
    }

    /// Records a part, then deletes the file of the part it replaced.
    async fn record_part(&self, bucket: &BucketRow, part: &PartRow) -> S3Result<()> {
        let mut tx = self.store.begin().await.map_err(db)?;
        let replaced =
            match multipart::put_part(&mut tx, &bucket.account_id, &bucket.id, part).await {
                Ok(replaced) => replaced,
                // The upload was completed or aborted meanwhile.
                Err(StoreError::Missing(_)) => {
                    drop(tx);
                    self.blobs.remove(vec![part.blob_id.clone()]).await;
                    return Err(no_such_upload());
                }
                Err(e) => return Err(db(e)),
            };
        tx.commit().await.map_err(db)?;
        self.blobs
            .remove(replaced.map(|p| p.blob_id).into_iter().collect())
            .await;
        Ok(())
    }

    pub(crate) async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.bucket(&caller, &input.bucket, Need::Write).await?;
        let kind = match &input.checksum_algorithm {
            Some(name) => {
                let algorithm = Algorithm::parse(name.as_str()).ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        format!("unknown checksum algorithm {}", name.as_str()),
                    )
                })?;
                let asked = input.checksum_type.as_ref().map(|t| t.as_str());
                Some(Kind::for_upload(algorithm, asked)?)
            }
            None => None,
        };
        let meta = ObjectMeta {
            user: input.metadata.unwrap_or_default().into_iter().collect(),
            content_disposition: input.content_disposition,
            content_encoding: crate::objects::stored_encoding(input.content_encoding),
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: input.expires.map(|t| micros_of(&t)),
            content_type: input.content_type,
            checksum_algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_string()),
            checksum_type: kind.map(|k| k.name().to_string()),
            ..Default::default()
        };
        let upload = UploadRow {
            id: new_id(),
            bucket_id: bucket.id.clone(),
            key: input.key.clone(),
            meta: meta.to_json(),
            created_at: Self::now_micros(),
        };
        let mut tx = self.store.begin().await.map_err(db)?;
        multipart::create(&mut tx, &bucket.account_id, &upload)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(bucket.name),
            key: Some(input.key),
            upload_id: Some(upload.id),
            checksum_algorithm: input.checksum_algorithm,
            checksum_type: kind.map(|k| ChecksumType::from_static(k.name())),
            ..Default::default()
        }))
    }

    pub(crate) async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        check_part_number(input.part_number)?;
        let (bucket, upload) = self
            .upload(&caller, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let declared = Checksums {
            crc32: input.checksum_crc32.clone(),
            crc32c: input.checksum_crc32c.clone(),
            sha1: input.checksum_sha1.clone(),
            sha256: input.checksum_sha256.clone(),
            crc64nvme: input.checksum_crc64nvme.clone(),
        };
        let algorithm = input
            .checksum_algorithm
            .clone()
            .or(upload_algorithm(&upload));
        let hasher = hasher_for(algorithm.as_ref(), &declared)?;
        let body = input.body.ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::IncompleteBody, "the request has no body")
        })?;
        let written = self.blobs.write(body, 0, MAX_PART, hasher).await?;
        let blob = written.blob.clone().expect("parts are always files");
        let checksums = match verify(
            &written,
            input.content_md5.as_deref(),
            declared,
            req.trailing_headers,
        ) {
            Ok(c) => c,
            Err(e) => {
                self.blobs.remove(vec![blob]).await;
                return Err(e);
            }
        };
        let part = PartRow {
            upload_id: upload.id,
            part_number: i64::from(input.part_number),
            size: written.size as i64,
            etag: written.md5_hex(),
            blob_id: blob,
            checksums: serde_json::to_string(&checksums).expect("checksums serialize"),
            created_at: Self::now_micros(),
        };
        self.record_part(&bucket, &part).await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(quoted(&part.etag)),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            checksum_crc64nvme: checksums.crc64nvme,
            ..Default::default()
        }))
    }

    pub(crate) async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        check_part_number(input.part_number)?;
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
        let (bucket, upload) = self
            .upload(&caller, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let size = source.size as u64;
        let range = match &input.copy_source_range {
            Some(r) => parse_copy_range(r, size)?,
            None => 0..size,
        };
        let body = self.body(&source, range).await?;
        let hasher = hasher_for(upload_algorithm(&upload).as_ref(), &Checksums::default())?;
        let written = self.blobs.write(body, 0, MAX_PART, hasher).await?;
        let checksums = Checksums::from(written.checksum.clone());
        let part = PartRow {
            upload_id: upload.id,
            part_number: i64::from(input.part_number),
            size: written.size as i64,
            etag: written.md5_hex(),
            blob_id: written.blob.clone().expect("parts are always files"),
            checksums: serde_json::to_string(&checksums).expect("checksums serialize"),
            created_at: Self::now_micros(),
        };
        self.record_part(&bucket, &part).await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(quoted(&part.etag)),
                last_modified: Some(timestamp_of(part.created_at)),
                checksum_crc32: checksums.crc32,
                checksum_crc32c: checksums.crc32c,
                checksum_crc64nvme: checksums.crc64nvme,
                checksum_sha1: checksums.sha1,
                checksum_sha256: checksums.sha256,
            }),
            copy_source_version_id: Self::shown_version(&source_bucket, &source.version_id),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let (bucket, upload) = self
            .upload(&caller, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = input.max_parts.unwrap_or(MAX_LISTED).clamp(0, MAX_LISTED);
        let after = i64::from(input.part_number_marker.unwrap_or(0));
        let mut c = self.store.conn().await.map_err(db)?;
        let mut parts = multipart::parts(&mut c, &upload.id, after, i64::from(max) + 1)
            .await
            .map_err(db)?;
        let truncated = parts.len() > max as usize;
        parts.truncate(max as usize);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(bucket.name),
            key: Some(upload.key),
            upload_id: Some(upload.id),
            max_parts: Some(max),
            is_truncated: Some(truncated),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: parts
                .last()
                .filter(|_| truncated)
                .map(|p| p.part_number as i32),
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| Part {
                        e_tag: Some(quoted(&p.etag)),
                        last_modified: Some(timestamp_of(p.created_at)),
                        part_number: Some(p.part_number as i32),
                        size: Some(p.size),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.bucket(&caller, &input.bucket, Need::Write).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_uploads.unwrap_or(MAX_LISTED).clamp(0, MAX_LISTED) as usize;
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = if input.upload_id_marker.is_some() {
            input.upload_id_marker.clone().unwrap_or_default()
        } else {
            // Without an upload id marker, every upload of the marker key is past.
            "\u{10FFFF}".to_string()
        };
        let mut c = self.store.conn().await.map_err(db)?;
        let rows = multipart::list(&mut c, &bucket.id, &key_marker, &id_marker, i64::MAX)
            .await
            .map_err(db)?;
        let mut uploads: Vec<UploadRow> = rows
            .into_iter()
            .filter(|u| u.key.starts_with(&prefix))
            .collect();
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        let next = uploads
            .last()
            .filter(|_| truncated)
            .map(|u| (u.key.clone(), u.id.clone()));
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(bucket.name),
            is_truncated: Some(truncated),
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            next_key_marker: next.as_ref().map(|n| n.0.clone()),
            next_upload_id_marker: next.map(|n| n.1),
            prefix: Some(prefix),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        initiated: Some(timestamp_of(u.created_at)),
                        key: Some(u.key),
                        upload_id: Some(u.id),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(crate) async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let (bucket, upload) = self
            .upload(&caller, &input.bucket, &input.key, &input.upload_id)
            .await?;
        self.abort(&upload).await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    /// Removes an upload and its parts' files.
    async fn abort(&self, upload: &UploadRow) -> S3Result<()> {
        let mut tx = self.store.begin().await.map_err(db)?;
        let parts = multipart::remove(&mut tx, upload, Self::now_micros(), "aborted")
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.blobs
            .remove(parts.into_iter().map(|p| p.blob_id).collect())
            .await;
        Ok(())
    }

    /// Aborts uploads left alone longer than the configured time.
    pub(crate) async fn abort_abandoned(&self) -> S3Result<usize> {
        let before = Self::now_micros() - self.config.abandoned_after.as_micros() as i64;
        let mut c = self.store.conn().await.map_err(db)?;
        let stale = multipart::older_than(&mut c, before).await.map_err(db)?;
        drop(c);
        for upload in &stale {
            self.abort(upload).await?;
        }
        Ok(stale.len())
    }
}

/// `bytes=first-last` of a part copy, inclusive, within the source.
fn parse_copy_range(range: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let invalid = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let (first, last) = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(invalid)?;
    let (first, last): (u64, u64) = (
        first.parse().map_err(|_| invalid())?,
        last.parse().map_err(|_| invalid())?,
    );
    if first > last || last >= size {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        ));
    }
    Ok(first..last + 1)
}
