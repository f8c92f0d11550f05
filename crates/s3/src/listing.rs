//! Listings: ListObjectsV2, ListObjects (V1), ListObjectVersions, with prefix,
//! delimiter (common prefixes), markers and continuation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nubo_store::objects::{self, ObjectRow};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::buckets::{owner, timestamp_of};
use crate::caller::{Need, db};
use crate::objects::quoted;

const BATCH: i64 = 1000;
const MAX_KEYS: i32 = 1000;
/// Sorts after every key that starts with what it follows (keys compare bytewise).
const PAST: char = '\u{10FFFF}';

/// Where a listing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mark {
    Key(String),
    Prefix(String),
}

impl Mark {
    /// The cursor that resumes after this mark.
    fn cursor(&self) -> String {
        match self {
            Mark::Key(k) => k.clone(),
            Mark::Prefix(p) => format!("{p}{PAST}"),
        }
    }

    fn text(&self) -> &str {
        match self {
            Mark::Key(k) | Mark::Prefix(k) => k,
        }
    }

    fn token(&self) -> String {
        let raw = match self {
            Mark::Key(k) => format!("k{k}"),
            Mark::Prefix(p) => format!("p{p}"),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn from_token(token: &str) -> S3Result<Mark> {
        let invalid = || {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        };
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        match raw.split_at_checked(1) {
            Some(("k", k)) => Ok(Mark::Key(k.to_string())),
            Some(("p", p)) => Ok(Mark::Prefix(p.to_string())),
            _ => Err(invalid()),
        }
    }
}

struct Listed {
    objects: Vec<ObjectRow>,
    prefixes: Vec<String>,
    truncated: bool,
    last: Option<Mark>,
}

/// Whether a listing asked for `encoding-type=url`.
fn url_encoded(encoding: &Option<EncodingType>) -> bool {
    encoding
        .as_ref()
        .is_some_and(|e| e.as_str() == EncodingType::URL)
}

/// A key as a listing with `encoding-type=url` shows it: every byte but
/// unreserved characters and `/` percent-encoded (so that `+` survives clients
/// that decode `+` as a space).
fn encode(text: &str, url: bool) -> String {
    if !url {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn object(row: ObjectRow, url: bool, owner: Option<&Owner>) -> Object {
    Object {
        e_tag: Some(quoted(&row.etag)),
        last_modified: Some(timestamp_of(row.created_at)),
        size: Some(row.size),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        key: Some(encode(&row.key, url)),
        owner: owner.cloned(),
        ..Default::default()
    }
}

fn common_prefixes(prefixes: Vec<String>, url: bool) -> Option<Vec<CommonPrefix>> {
    Some(
        prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode(&p, url)),
            })
            .collect(),
    )
}

/// A delimiter that is given and not empty (an empty one is no delimiter).
fn delimiter(asked: &Option<String>) -> Option<&str> {
    asked.as_deref().filter(|d| !d.is_empty())
}

/// `allow-unordered=true` (an extension of Ceph's) lets a listing come in any
/// order; nubo's is ordered anyway, but the extension refuses a delimiter.
fn check_unordered(uri: &http::Uri, delimiter: Option<&str>) -> S3Result<()> {
    let unordered = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.eq_ignore_ascii_case("allow-unordered=true"))
    });
    if unordered && delimiter.is_some() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "allow-unordered cannot be combined with a delimiter",
        ));
    }
    Ok(())
}

fn max_keys(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        Some(n) if n < 0 => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "max-keys must not be negative",
        )),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
        None => Ok(MAX_KEYS as usize),
    }
}

impl ObjectStorage {
    /// Lists latest objects under `prefix` after `cursor`, folding keys that
    /// contain `delimiter` after the prefix into common prefixes.
    async fn walk(
        &self,
        bucket_id: &str,
        prefix: &str,
        delimiter: Option<&str>,
        mut cursor: String,
        max: usize,
    ) -> S3Result<Listed> {
        let mut c = self.store.conn().await.map_err(db)?;
        let mut out = Listed {
            objects: Vec::new(),
            prefixes: Vec::new(),
            truncated: false,
            last: None,
        };
        if max == 0 {
            return Ok(out);
        }
        'batches: loop {
            let batch = objects::list_latest(&mut c, bucket_id, &cursor, prefix, BATCH)
                .await
                .map_err(db)?;
            let full = batch.len() as i64 == BATCH;
            for row in batch {
                if !row.key.starts_with(prefix) {
                    break 'batches;
                }
                if out.objects.len() + out.prefixes.len() == max {
                    out.truncated = true;
                    break 'batches;
                }
                let folded = delimiter.and_then(|d| {
                    row.key[prefix.len()..]
                        .find(d)
                        .map(|i| row.key[..prefix.len() + i + d.len()].to_string())
                });
                match folded {
                    Some(common) => {
                        let mark = Mark::Prefix(common.clone());
                        cursor = mark.cursor();
                        out.prefixes.push(common);
                        out.last = Some(mark);
                        continue 'batches;
                    }
                    None => {
                        cursor = row.key.clone();
                        out.last = Some(Mark::Key(row.key.clone()));
                        out.objects.push(row);
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.bucket(&caller, &input.bucket, Need::Read).await?;
        let delimiter = delimiter(&input.delimiter);
        check_unordered(&req.uri, delimiter)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut cursor = input.start_after.clone().unwrap_or_default();
        // An empty token is no token (some clients send one on the first page).
        if let Some(token) = input
            .continuation_token
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            cursor = cursor.max(Mark::from_token(token)?.cursor());
        }
        let max = max_keys(input.max_keys)?;
        let listed = self
            .walk(&bucket.id, &prefix, delimiter, cursor, max)
            .await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        let key_count = (listed.objects.len() + listed.prefixes.len()) as i32;
        let url = url_encoded(&input.encoding_type);
        let owner = (input.fetch_owner == Some(true)).then(|| owner(&bucket.account_id));
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket.name),
            prefix: Some(encode(&prefix, url)),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            is_truncated: Some(listed.truncated),
            next_continuation_token: listed.last.filter(|_| listed.truncated).map(|m| m.token()),
            contents: Some(
                listed
                    .objects
                    .into_iter()
                    .map(|o| object(o, url, owner.as_ref()))
                    .collect(),
            ),
            common_prefixes: common_prefixes(listed.prefixes, url),
            delimiter: delimiter.map(|d| encode(d, url)),
            encoding_type: input.encoding_type,
            start_after: input.start_after.map(|a| encode(&a, url)),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.bucket(&caller, &input.bucket, Need::Read).await?;
        let delimiter = delimiter(&input.delimiter);
        check_unordered(&req.uri, delimiter)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let marker = input.marker.clone().unwrap_or_default();
        // A marker that is a common prefix (as NextMarker is when a page ended on
        // one) resumes after every key under it.
        let cursor = match delimiter {
            Some(d) if marker.starts_with(&prefix) && marker[prefix.len()..].ends_with(d) => {
                Mark::Prefix(marker.clone()).cursor()
            }
            _ => marker.clone(),
        };
        let listed = self
            .walk(&bucket.id, &prefix, delimiter, cursor, max)
            .await?;
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        let url = url_encoded(&input.encoding_type);
        let owner = owner(&bucket.account_id);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(bucket.name),
            // Version 1 lists its prefix as given, even when it encodes keys
            // (clients decode every other field, not this one).
            prefix: Some(prefix),
            marker: Some(encode(&marker, url)),
            max_keys: Some(max as i32),
            is_truncated: Some(listed.truncated),
            next_marker: listed
                .last
                .as_ref()
                .filter(|_| listed.truncated)
                .map(|m| encode(m.text(), url)),
            contents: Some(
                listed
                    .objects
                    .into_iter()
                    .map(|o| object(o, url, Some(&owner)))
                    .collect(),
            ),
            common_prefixes: common_prefixes(listed.prefixes, url),
            delimiter: delimiter.map(|d| encode(d, url)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(crate) async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let caller = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.bucket(&caller, &input.bucket, Need::Read).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = delimiter(&input.delimiter).map(String::from);
        let max = max_keys(input.max_keys)?;
        let owner = owner(&bucket.account_id);
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let version_marker = input.version_id_marker.clone().filter(|v| !v.is_empty());
        let mut c = self.store.conn().await.map_err(db)?;
        let from = key_marker.clone().max(prefix.clone());
        let url = url_encoded(&input.encoding_type);
        let (mut versions, mut markers, mut prefixes) =
            (Vec::new(), Vec::new(), Vec::<String>::new());
        let mut truncated = false;
        let mut next: Option<(String, String)> = None;
        // Past the version marker: every version of the marker key up to and
        // including it has been listed.
        let mut skipping = !key_marker.is_empty();
        let rows = if max == 0 {
            Vec::new()
        } else {
            objects::list_versions(&mut c, &bucket.id, &from, i64::MAX)
                .await
                .map_err(db)?
        };
        for row in rows {
            if !row.key.starts_with(&prefix) {
                break;
            }
            if skipping && row.key == key_marker {
                if let Some(v) = &version_marker
                    && row.version_id == *v
                {
                    skipping = false;
                }
                continue;
            }
            skipping = false;
            if let Some(d) = &delimiter
                && let Some(i) = row.key[prefix.len()..].find(d.as_str())
            {
                let common = row.key[..prefix.len() + i + d.len()].to_string();
                if prefixes.last() != Some(&common) {
                    if versions.len() + markers.len() + prefixes.len() == max {
                        truncated = true;
                        break;
                    }
                    prefixes.push(common);
                }
                continue;
            }
            if versions.len() + markers.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            next = Some((row.key.clone(), row.version_id.clone()));
            let shown = Self::shown_version(&bucket, &row.version_id).or(Some("null".into()));
            if row.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(row.is_latest),
                    key: Some(encode(&row.key, url)),
                    last_modified: Some(timestamp_of(row.created_at)),
                    owner: Some(owner.clone()),
                    version_id: shown,
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(quoted(&row.etag)),
                    is_latest: Some(row.is_latest),
                    last_modified: Some(timestamp_of(row.created_at)),
                    size: Some(row.size),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: shown,
                    key: Some(encode(&row.key, url)),
                    owner: Some(owner.clone()),
                    ..Default::default()
                });
            }
        }
        self.usage.record(&bucket.account_id, &bucket.id, 0);
        let (next_key, next_version) = match next.filter(|_| truncated) {
            Some((k, v)) => (Some(k), Some(v)),
            None => (None, None),
        };
        Ok(S3Response::new(ListObjectVersionsOutput {
            common_prefixes: common_prefixes(prefixes, url),
            delete_markers: Some(markers),
            delimiter: delimiter.map(|d| encode(&d, url)),
            encoding_type: input.encoding_type,
            is_truncated: Some(truncated),
            key_marker: Some(encode(&key_marker, url)),
            max_keys: Some(max as i32),
            name: Some(bucket.name),
            next_key_marker: next_key.map(|k| encode(&k, url)),
            next_version_id_marker: next_version,
            prefix: Some(encode(&prefix, url)),
            version_id_marker: input.version_id_marker,
            versions: Some(versions),
            ..Default::default()
        }))
    }
}
