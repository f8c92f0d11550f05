//! GetObjectAttributes: what a HEAD tells of an object, and its parts (their
//! sizes and checksums) when it was completed from a multipart upload, without
//! reading its data.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::buckets::timestamp_of;
use crate::caller::Need;
use crate::meta::{ObjectMeta, segments};
use crate::part_checksums::Algorithm;

const MAX_PARTS: i32 = 1000;

/// The parts of a multipart object after `marker`, at most `max`.
fn parts(meta: &ObjectMeta, sizes: &[u64], marker: i32, max: i32) -> GetObjectAttributesParts {
    let algorithm = Algorithm::found_in(&meta.checksums);
    let listed: Vec<ObjectPart> = sizes
        .iter()
        .enumerate()
        .skip(usize::try_from(marker).unwrap_or(0))
        .take(usize::try_from(max).unwrap_or(0))
        .map(|(i, size)| {
            let sums = match (algorithm, meta.part_checksums.get(i)) {
                (Some(a), Some(sum)) => a.only(sum.clone()),
                _ => Default::default(),
            };
            ObjectPart {
                part_number: Some(i as i32 + 1),
                size: Some(*size as i64),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
            }
        })
        .collect();
    let last = listed.last().and_then(|p| p.part_number);
    let truncated = last.is_some_and(|n| (n as usize) < sizes.len());
    GetObjectAttributesParts {
        is_truncated: Some(truncated),
        max_parts: Some(max),
        next_part_number_marker: last,
        part_number_marker: Some(marker),
        parts: Some(listed),
        total_parts_count: Some(sizes.len() as i32),
    }
}

impl ObjectStorage {
    pub(crate) async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.bucket(&caller, &input.bucket, Need::Read).await?;
        let row = self
            .readable(&bucket, &input.key, input.version_id.as_deref())
            .await?;
        let max = input.max_parts.unwrap_or(MAX_PARTS);
        let marker = input.part_number_marker.unwrap_or(0);
        if !(0..=MAX_PARTS).contains(&max) || marker < 0 {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "max-parts must be from 0 to 1000 and part-number-marker not negative",
            ));
        }
        // One header lists them, comma-separated.
        let asked = |name: &str| {
            input
                .object_attributes
                .iter()
                .flat_map(|a| a.as_str().split(','))
                .any(|a| a.trim() == name)
        };
        let meta = ObjectMeta::parse(&row.meta);
        let sizes: Vec<u64> = segments(&row.segments).iter().map(|s| s.size).collect();
        let checksum = {
            let sums = &meta.checksums;
            let kind = meta
                .checksum_type
                .clone()
                .unwrap_or_else(|| ChecksumType::FULL_OBJECT.to_string());
            (Algorithm::found_in(sums).is_some()).then(|| Checksum {
                checksum_crc32: sums.crc32.clone(),
                checksum_crc32c: sums.crc32c.clone(),
                checksum_crc64nvme: sums.crc64nvme.clone(),
                checksum_sha1: sums.sha1.clone(),
                checksum_sha256: sums.sha256.clone(),
                checksum_type: Some(ChecksumType::from(kind)),
            })
        };
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        Ok(S3Response::new(GetObjectAttributesOutput {
            checksum: checksum.filter(|_| asked(ObjectAttributes::CHECKSUM)),
            e_tag: asked(ObjectAttributes::ETAG).then(|| ETag::Strong(row.etag.clone())),
            last_modified: Some(timestamp_of(row.created_at)),
            object_parts: meta
                .parts
                .filter(|_| asked(ObjectAttributes::OBJECT_PARTS))
                .map(|_| parts(&meta, &sizes, marker, max)),
            object_size: asked(ObjectAttributes::OBJECT_SIZE).then_some(row.size),
            storage_class: asked(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            version_id: Self::shown_version(&bucket, &row.version_id),
            ..Default::default()
        }))
    }
}

/// Whether a request is a GetObjectAttributes.
pub fn is_get_attributes<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::GET
        && req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.split('=').next() == Some("attributes"))
        })
}

/// AWS answers GetObjectAttributes with its ETag unquoted, unlike every other
/// ETag in XML, which `s3s` quotes.
pub fn unquote_etag(response: &mut http::Response<s3s::Body>) {
    let Some(bytes) = response.body().bytes() else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    let (Some(start), Some(end)) = (text.find("<ETag>\""), text.find("\"</ETag>")) else {
        return;
    };
    let unquoted = format!(
        "{}<ETag>{}</ETag>{}",
        &text[..start],
        &text[start + "<ETag>\"".len()..end],
        &text[end + "\"</ETag>".len()..]
    );
    if let Ok(length) = http::HeaderValue::from_str(&unquoted.len().to_string()) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, length);
    }
    *response.body_mut() = s3s::Body::from(unquoted);
}
