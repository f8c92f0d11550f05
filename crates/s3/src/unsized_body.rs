//! Uploads sent with `Transfer-Encoding: chunked` and no `Content-Length`.
//! Checking a signed payload's SHA-256 needs the body's length first, so such
//! a body is written to a temporary file (unlinked at once: nothing is left
//! behind, whatever happens) and handed on with the length it turned out to
//! have. Streaming uploads (`aws-chunked`) carry their decoded length and are
//! not spooled.

use std::io::SeekFrom;
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Request};
use s3s::Body;
use s3s::dto::StreamingBlob;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Read back this much at a time.
const CHUNK: usize = 256 * 1024;

/// Whether `req` carries a body of unknown length that is not an `aws-chunked`
/// stream.
pub fn is_unsized<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let streaming = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    chunked && !streaming && !headers.contains_key(http::header::CONTENT_LENGTH)
}

/// Why a body could not be spooled.
pub enum Refused {
    /// It is longer than the limit.
    TooLarge,
    /// It could not be read: the client's fault.
    Read(s3s::StdError),
    /// It could not be written: ours.
    Write(std::io::Error),
}

/// `req` with its body spooled under `tmp` and its `Content-Length` set.
pub async fn spool(req: Request<Body>, tmp: &Path, limit: u64) -> Result<Request<Body>, Refused> {
    let (mut parts, mut body) = req.into_parts();
    let path = tmp.join(format!("spool-{}", crate::blobs::new_id()));
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(Refused::Write)?;
    let _ = tokio::fs::remove_file(&path).await;
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(Refused::Read)?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Refused::TooLarge);
        }
        file.write_all(&chunk).await.map_err(Refused::Write)?;
    }
    file.flush().await.map_err(Refused::Write)?;
    file.seek(SeekFrom::Start(0))
        .await
        .map_err(Refused::Write)?;
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(size));
    let stream = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Request::from_parts(
        parts,
        Body::from(StreamingBlob::wrap(stream)),
    ))
}
