//! A request body that stops at the container's size limit instead of buffering without bound.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

pin_project_lite::pin_project! {
    /// Passes `inner` through until more than `limit` bytes have come, then fails the stream with
    /// `HttpRequestBodySize` and raises `exceeded`, so that the server answers 413 whatever
    /// the guest made of the failed read.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
        exceeded: Arc<AtomicBool>,
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        LimitedBody {
            inner,
            remaining: limit,
            limit,
            exceeded,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(*this.limit)),
                        )));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
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
    use http_body_util::{BodyExt, Full};

    fn full(bytes: &'static [u8]) -> impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> {
        Full::new(Bytes::from_static(bytes)).map_err(|never| match never {})
    }

    #[tokio::test]
    async fn a_body_within_the_limit_passes_whole() {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(full(b"hello"), 5, exceeded.clone());
        let collected = body.collect().await.expect("within the limit").to_bytes();
        assert_eq!(collected, Bytes::from_static(b"hello"));
        assert!(!exceeded.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_and_says_so() {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(full(b"hello!"), 5, exceeded.clone());
        let err = body.collect().await.expect_err("over the limit");
        assert!(
            matches!(err, wasmtime_wasi_http::Error::HttpRequestBodySize(Some(5))),
            "{err:?}"
        );
        assert!(exceeded.load(Ordering::Relaxed));
    }
}
