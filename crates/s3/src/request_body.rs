//! Whether a request's body was read to its end before the answer went out.
//!
//! An answer given without reading the body (an error found from the headers
//! alone) must close the connection, and say so. Otherwise a client that sent
//! `Expect: 100-continue` and, seeing the early answer, rightly never sends
//! the body, reuses the connection, and hyper (which drains what it takes for
//! the unread body from whatever arrives next) eats the first bytes of its next
//! request: `DELETE` became `ELETE`, and its signature did not match.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A request body that notes when it has been read to its end.
pub struct Watched {
    inner: Incoming,
    ended: Arc<AtomicBool>,
}

/// Tells whether a watched body was read to its end.
#[derive(Clone)]
pub struct Ended(Arc<AtomicBool>);

impl Ended {
    pub fn ended(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub fn watch(body: Incoming) -> (Watched, Ended) {
    let ended = Arc::new(AtomicBool::new(body.is_end_stream()));
    (
        Watched {
            inner: body,
            ended: ended.clone(),
        },
        Ended(ended),
    )
}

impl Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Makes `response` close its connection if the request's body, which it
/// declared, was not read to its end.
pub fn close_if_unread<B>(response: &mut http::Response<B>, declared: bool, ended: &Ended) {
    if declared && !ended.ended() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// Whether a request says it has a body.
pub fn declared<B>(req: &http::Request<B>) -> bool {
    let headers = req.headers();
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}
