//! A request body held to the function's size limit while the guest streams it.
//!
//! Owns [`Limited`]: it passes the body's frames through, counting data bytes; a frame that takes
//! the total past the limit becomes an error for the guest (`HttpRequestBodySize`) and raises a
//! flag that the server reads to answer 413. Must not: buffer (the guest reads as it goes).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error as HttpError;

/// `inner`, failing past `limit` bytes (0: no limit).
pub(crate) struct Limited<B> {
    inner: B,
    limit: u64,
    seen: u64,
    over: Arc<AtomicBool>,
}

impl<B> Limited<B> {
    /// The body and the flag raised when it goes past the limit.
    pub(crate) fn new(inner: B, limit: u64) -> (Self, Arc<AtomicBool>) {
        let over = Arc::new(AtomicBool::new(false));
        let body = Limited {
            inner,
            limit,
            seen: 0,
            over: over.clone(),
        };
        (body, over)
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.limit > 0 && this.seen > this.limit {
                        this.over.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(
                            this.seen,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn past_the_limit_is_an_error_and_a_flag() {
        let chunks: Vec<Result<Frame<Bytes>, HttpError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"12345"))),
            Ok(Frame::data(Bytes::from_static(b"678"))),
        ];
        let inner = http_body_util::StreamBody::new(futures::stream::iter(chunks));
        let (body, over) = Limited::new(inner, 6);
        let got = body.collect().await;
        assert!(matches!(got, Err(HttpError::HttpRequestBodySize(Some(8)))));
        assert!(over.load(Ordering::Relaxed));

        let inner = http_body_util::Full::new(Bytes::from_static(b"123456"));
        let (body, over) = Limited::new(inner, 6);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 6);
        assert!(!over.load(Ordering::Relaxed));
    }
}
