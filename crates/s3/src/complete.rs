//! Completing a multipart upload: the parts a client lists become an object
//! without copying (its segments are the parts' files), with S3's multipart
//! ETag and, when the upload was started with a checksum algorithm, the
//! object's checksum from its parts'. Completing an upload again answers as the
//! first time did, so that a client may retry.

use md5::{Digest, Md5};
use nubo_store::buckets::BucketRow;
use nubo_store::multipart::{self, PartRow};
use nubo_store::objects::{self, ObjectRow};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::caller::db;
use crate::conditions::WriteCondition;
use crate::meta::{Checksums, ObjectMeta, Segment, segments, segments_json};
use crate::multipart::{MIN_PART, no_such_upload};
use crate::objects::quoted;
use crate::part_checksums::{Algorithm, Kind, combine};

/// The S3 ETag of a multipart object: the MD5 of the parts' binary MD5s, and
/// the part count.
fn multipart_etag(parts: &[PartRow]) -> String {
    let mut md5 = Md5::new();
    for p in parts {
        md5.update(hex::decode(&p.etag).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(md5.finalize()), parts.len())
}

fn invalid_part(n: i32) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidPart,
        format!("Part {n} could not be found, or its entity tag or checksum did not match."),
    )
}

/// The stored parts a completion lists, in order. Part numbers must not go
/// down; a number listed twice (a client that uploaded a part again and kept
/// both answers) counts as listed last.
fn chosen_parts(asked: &[CompletedPart], stored: &[PartRow]) -> S3Result<Vec<PartRow>> {
    if asked.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            "You must specify at least one part",
        ));
    }
    let mut listed: Vec<&CompletedPart> = Vec::with_capacity(asked.len());
    for part in asked {
        let n = part.part_number.unwrap_or(0);
        match listed.last() {
            Some(last) if last.part_number.unwrap_or(0) > n => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidPartOrder,
                    "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
                ));
            }
            Some(last) if last.part_number.unwrap_or(0) == n => {
                listed.pop();
            }
            _ => {}
        }
        listed.push(part);
    }
    let mut chosen = Vec::with_capacity(listed.len());
    for part in listed {
        let n = part.part_number.unwrap_or(0);
        let found = stored
            .iter()
            .find(|p| p.part_number == i64::from(n))
            .ok_or_else(|| invalid_part(n))?;
        if part.e_tag.as_ref().is_some_and(|e| e.value() != found.etag) {
            return Err(invalid_part(n));
        }
        let sums: Checksums = serde_json::from_str(&found.checksums).unwrap_or_default();
        let listed_sums = Checksums {
            crc32: part.checksum_crc32.clone(),
            crc32c: part.checksum_crc32c.clone(),
            crc64nvme: part.checksum_crc64nvme.clone(),
            sha1: part.checksum_sha1.clone(),
            sha256: part.checksum_sha256.clone(),
        };
        for algorithm in Algorithm::ALL {
            if let Some(want) = algorithm.of(&listed_sums)
                && algorithm.of(&sums) != Some(want)
            {
                return Err(invalid_part(n));
            }
        }
        chosen.push(found.clone());
    }
    if let Some(small) = chosen[..chosen.len() - 1]
        .iter()
        .find(|p| p.size < MIN_PART)
    {
        return Err(S3Error::with_message(
            S3ErrorCode::EntityTooSmall,
            format!(
                "Part {} is smaller than the minimum allowed size of 5 MiB",
                small.part_number
            ),
        ));
    }
    Ok(chosen)
}

/// The checksums of an upload's object: each part's, and the whole object's,
/// which must be what the client says it is, if it says.
fn object_checksums(
    meta: &ObjectMeta,
    chosen: &[PartRow],
    claimed: &Checksums,
) -> S3Result<Option<(Kind, Vec<String>, Checksums)>> {
    let (Some(algorithm), Some(kind)) = (
        meta.checksum_algorithm
            .as_deref()
            .and_then(Algorithm::parse),
        meta.checksum_type.as_deref().and_then(Kind::parse),
    ) else {
        return Ok(None);
    };
    let mut parts = Vec::with_capacity(chosen.len());
    for p in chosen {
        let sums: Checksums = serde_json::from_str(&p.checksums).unwrap_or_default();
        let sum = algorithm
            .of(&sums)
            .cloned()
            .ok_or_else(|| invalid_part(p.part_number as i32))?;
        parts.push(sum);
    }
    let sized: Vec<(&str, u64)> = parts
        .iter()
        .zip(chosen)
        .map(|(sum, p)| (sum.as_str(), p.size as u64))
        .collect();
    let whole = combine(algorithm, kind, &sized).ok_or_else(|| {
        S3Error::with_message(S3ErrorCode::InvalidPart, "a part's checksum is not valid")
    })?;
    if let Some(said) = algorithm.of(claimed)
        && *said != whole
    {
        return Err(S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!("The {algorithm:?} you specified did not match the calculated checksum."),
        ));
    }
    Ok(Some((kind, parts, algorithm.only(whole))))
}

/// The answer to a completion, from the object it made.
fn completed(bucket: &BucketRow, row: &ObjectRow) -> CompleteMultipartUploadOutput {
    let meta = ObjectMeta::parse(&row.meta);
    let sums = meta.checksums;
    CompleteMultipartUploadOutput {
        bucket: Some(bucket.name.clone()),
        key: Some(row.key.clone()),
        e_tag: Some(quoted(&row.etag)),
        location: Some(format!("/{}/{}", bucket.name, row.key)),
        version_id: ObjectStorage::written_version(&row.version_id),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: meta.checksum_type.map(ChecksumType::from),
        ..Default::default()
    }
}

impl ObjectStorage {
    pub(crate) async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let (bucket, upload) = match self
            .upload(&caller, &input.bucket, &input.key, &input.upload_id)
            .await
        {
            Ok(found) => found,
            Err(e) if *e.code() == S3ErrorCode::NoSuchUpload => {
                return self
                    .completed_before(&caller, &input.bucket, &input.key, &input.upload_id)
                    .await
                    .map(S3Response::new);
            }
            Err(e) => return Err(e),
        };
        let asked = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let mut c = self.store.conn().await.map_err(db)?;
        let stored = multipart::parts(&mut c, &upload.id, 0, i64::MAX)
            .await
            .map_err(db)?;
        drop(c);
        let chosen = chosen_parts(&asked, &stored)?;
        let claimed = Checksums {
            crc32: input.checksum_crc32,
            crc32c: input.checksum_crc32c,
            crc64nvme: input.checksum_crc64nvme,
            sha1: input.checksum_sha1,
            sha256: input.checksum_sha256,
        };
        let mut meta = ObjectMeta::parse(&upload.meta);
        if let Some((_, parts, whole)) = object_checksums(&meta, &chosen, &claimed)? {
            meta.part_checksums = parts;
            meta.checksums = whole;
        }
        meta.checksum_algorithm = None;
        meta.parts = Some(chosen.len() as u32);
        meta.upload = Some(upload.id.clone());
        let (version_id, replace_null) = Self::next_version_of(&bucket);
        let now = Self::now_micros();
        let mut row = ObjectRow {
            bucket_id: bucket.id.clone(),
            key: upload.key.clone(),
            version_id,
            seq: now,
            is_latest: true,
            delete_marker: false,
            size: chosen.iter().map(|p| p.size).sum(),
            etag: multipart_etag(&chosen),
            segments: segments_json(
                &chosen
                    .iter()
                    .map(|p| Segment {
                        blob: p.blob_id.clone(),
                        size: p.size as u64,
                    })
                    .collect::<Vec<_>>(),
            ),
            inline_data: None,
            content_type: meta.content_type.clone(),
            meta: meta.to_json(),
            created_at: now,
        };
        // One transaction: the condition holds, the upload goes and the
        // object appears, together.
        let mut tx = self.store.begin().await.map_err(db)?;
        if let Some(condition) = WriteCondition::new(input.if_match, input.if_none_match) {
            let current = objects::latest(&mut tx, &bucket.id, &row.key)
                .await
                .map_err(db)?;
            condition.check(current.as_ref())?;
        }
        let parts = multipart::remove(&mut tx, &upload, now, "completed")
            .await
            .map_err(db)?;
        let removed = objects::put(&mut tx, &bucket.account_id, &mut row, replace_null)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let kept: std::collections::HashSet<&str> =
            chosen.iter().map(|p| p.blob_id.as_str()).collect();
        let unused: Vec<String> = parts
            .into_iter()
            .map(|p| p.blob_id)
            .filter(|b| !kept.contains(b.as_str()))
            .chain(
                removed
                    .iter()
                    .flat_map(|r| segments(&r.segments))
                    .map(|s| s.blob),
            )
            .collect();
        self.blobs.remove(unused).await;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(completed(&bucket, &row)))
    }

    /// The answer to completing an upload that is gone: what completing it
    /// made, if that is still the key's current object.
    async fn completed_before(
        &self,
        caller: &crate::caller::Caller,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> S3Result<CompleteMultipartUploadOutput> {
        let bucket = self
            .bucket(caller, bucket, crate::caller::Need::Write)
            .await?;
        let mut c = self.store.conn().await.map_err(db)?;
        let current = objects::latest(&mut c, &bucket.id, key)
            .await
            .map_err(db)?
            .filter(|r| {
                !r.delete_marker && ObjectMeta::parse(&r.meta).upload.as_deref() == Some(upload_id)
            })
            .ok_or_else(no_such_upload)?;
        Ok(completed(&bucket, &current))
    }
}
