//! Whether the connection may serve another request once a request is
//! answered, as far as its body is concerned.
//!
//! An answer given without reading the body (an error found from the headers
//! alone) must close the connection, and say so. Otherwise a client that sent
//! `Expect: 100-continue` and, seeing the early answer, rightly never sends
//! the body, reuses the connection, and hyper (which drains what it takes for
//! the unread body from whatever arrives next) eats the first bytes of its next
//! request: `DELETE` became `ELETE`, and its signature did not match.
//!
//! An answer to `Expect: 100-continue` with an empty body closes too: hyper
//! sends no `100 Continue` for it, so clients take the answer as an early one,
//! and the aws CLI's botocore then reads the next answer on that connection
//! with the status line of this one, finds no `Content-Length`, and waits for
//! the connection to close: a small PUT after an empty one hung until its read
//! timeout.

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

/// What a request said of its body.
pub struct Declared {
    /// It has one (a length above zero, or a transfer coding).
    body: bool,
    /// It expects `100 Continue` before sending it.
    expects_continue: bool,
}

pub fn declared<B>(req: &http::Request<B>) -> Declared {
    let headers = req.headers();
    Declared {
        body: headers.contains_key(http::header::TRANSFER_ENCODING)
            || headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0),
        expects_continue: headers
            .get(http::header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue")),
    }
}

/// Makes `response` close its connection when its request's body was not
/// read to its end, or when it expected `100 Continue` for no body at all.
pub fn close_if_unsafe<B>(response: &mut http::Response<B>, declared: &Declared, ended: &Ended) {
    let unread = declared.body && !ended.ended();
    let no_continue = declared.expects_continue && !declared.body;
    if unread || no_continue {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}
