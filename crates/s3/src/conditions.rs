//! Conditional requests: the preconditions of reads (RFC 7232: 412 or 304), of
//! writes (S3's conditional PUT and CompleteMultipartUpload: `If-Match`,
//! `If-None-Match`) and of deletes (`If-Match`, the last-modified time, the size).
//! Writes and deletes check theirs in the transaction that makes the change, so
//! that nothing can slip in between.

use nubo_store::objects::ObjectRow;
use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Result};

fn failed() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold",
    )
}

/// Whether an ETag condition holds for `etag`.
pub(crate) fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

/// An HTTP date (IMF-fixdate) of a store time.
fn http_date(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(micros / 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&format).unwrap_or_default()
}

/// HTTP dates have second precision: compare at that precision.
fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// RFC 7232 preconditions of a read: `Err` with 412 or 304.
pub(crate) fn preconditions(
    row: &ObjectRow,
    if_match: Option<&ETagCondition>,
    if_unmodified_since: Option<&Timestamp>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified = row.created_at / 1_000_000;
    if let Some(c) = if_match {
        if !etag_matches(c, &row.etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_unmodified_since
        && modified > seconds(t)
    {
        return Err(failed());
    }
    let not_modified = match if_none_match {
        Some(c) => etag_matches(c, &row.etag),
        None => if_modified_since.is_some_and(|t| modified <= seconds(t)),
    };
    if not_modified {
        // A 304 still names the representation (RFC 7232 section 4.1).
        let mut e = S3Error::new(S3ErrorCode::NotModified);
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", row.etag)) {
            headers.insert(http::header::ETAG, v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&http_date(row.created_at)) {
            headers.insert(http::header::LAST_MODIFIED, v);
        }
        e.set_headers(headers);
        return Err(e);
    }
    Ok(())
}

/// The conditions of a write on the key's current object (its latest version,
/// unless that is a delete marker).
#[derive(Debug, Clone, Default)]
pub struct WriteCondition {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
}

impl WriteCondition {
    /// `None` when the write sets no condition.
    pub fn new(
        if_match: Option<ETagCondition>,
        if_none_match: Option<ETagCondition>,
    ) -> Option<WriteCondition> {
        (if_match.is_some() || if_none_match.is_some()).then_some(WriteCondition {
            if_match,
            if_none_match,
        })
    }

    /// `If-Match` on a key without an object answers NoSuchKey, as S3 does.
    pub fn check(&self, current: Option<&ObjectRow>) -> S3Result<()> {
        let current = current.filter(|r| !r.delete_marker);
        if let Some(c) = &self.if_match {
            let Some(row) = current else {
                return Err(S3Error::with_message(
                    S3ErrorCode::NoSuchKey,
                    "The specified key does not exist.",
                ));
            };
            if !etag_matches(c, &row.etag) {
                return Err(failed());
            }
        }
        if let (Some(c), Some(row)) = (&self.if_none_match, current)
            && etag_matches(c, &row.etag)
        {
            return Err(failed());
        }
        Ok(())
    }
}

/// The conditions of a delete on the version it removes (or, without a
/// version, the key's latest, which may be a delete marker). A delete of what
/// does not exist succeeds whatever its conditions.
#[derive(Debug, Clone, Default)]
pub struct DeleteCondition {
    pub etag: Option<ETagCondition>,
    pub last_modified: Option<Timestamp>,
    pub size: Option<i64>,
}

impl DeleteCondition {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none() && self.size.is_none()
    }

    pub fn check(&self, target: &ObjectRow) -> S3Result<()> {
        let etag = self
            .etag
            .as_ref()
            .is_none_or(|c| etag_matches(c, &target.etag));
        let modified = self
            .last_modified
            .as_ref()
            .is_none_or(|t| seconds(t) == target.created_at / 1_000_000);
        let size = self.size.is_none_or(|s| s == target.size);
        if etag && modified && size {
            Ok(())
        } else {
            Err(failed())
        }
    }
}
