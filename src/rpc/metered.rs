//! A tower layer on the gRPC servers that counts every call by method and status code and
//! times it to its response headers. The status comes from the response headers when the
//! server answers at once (errors, "trailers-only"), else from the trailers at the end of the
//! body; a body dropped before its trailers is a call the client cancelled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use hyper::body::{Body, Frame, SizeHint};
use hyper::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::metrics::{Metrics, CODE_CANCELLED, CODE_UNKNOWN};

/// Wraps a service so that its calls are measured into `metrics`.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    /// A layer recording into the daemon's instruments.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// A service whose calls are measured.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// A call whose status is not known yet; dropped unfinished, it counts as cancelled.
struct PendingCall {
    call: Option<(Arc<Metrics>, usize)>,
}

impl PendingCall {
    fn finish(&mut self, code: usize) {
        if let Some((metrics, method)) = self.call.take() {
            metrics.rpc.method_at(method).count(code);
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.finish(CODE_CANCELLED);
    }
}

/// The gRPC status code in `headers`, if there is one (a malformed one is UNKNOWN).
fn grpc_status(headers: &HeaderMap) -> Option<usize> {
    headers.get("grpc-status").map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(CODE_UNKNOWN)
    })
}

impl<S, B, R> Service<Request<B>> for Metered<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: Body,
{
    type Response = Response<MeteredBody<R>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = self.metrics.rpc.method_index(req.uri().path());
        MeteredFuture {
            pending: Some(PendingCall {
                call: Some((Arc::clone(&self.metrics), method)),
            }),
            started: Instant::now(),
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response of a measured call.
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        pending: Option<PendingCall>,
        started: Instant,
    }
}

impl<F, R, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<MeteredBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.inner.poll(cx));
        let mut pending = this.pending.take();
        if let Some(PendingCall {
            call: Some((metrics, method)),
        }) = &pending
        {
            metrics
                .rpc
                .method_at(*method)
                .observe_latency(this.started.elapsed());
        }
        Poll::Ready(match outcome {
            Ok(response) => {
                if let (Some(code), Some(p)) = (grpc_status(response.headers()), &mut pending) {
                    p.finish(code);
                }
                Ok(response.map(|inner| MeteredBody { inner, pending }))
            }
            Err(e) => {
                if let Some(p) = &mut pending {
                    p.finish(CODE_UNKNOWN);
                }
                Err(e)
            }
        })
    }
}

pin_project! {
    /// A response body that records the call's status when its trailers pass.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        pending: Option<PendingCall>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = ready!(this.inner.poll_frame(cx));
        let code = match &polled {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|t| grpc_status(t).unwrap_or(CODE_UNKNOWN)),
            // A body that fails, or ends without a status, did not finish as gRPC should.
            Some(Err(_)) | None => Some(CODE_UNKNOWN),
        };
        if let (Some(code), Some(p)) = (code, this.pending) {
            p.finish(code);
        }
        Poll::Ready(polled)
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
    use std::collections::VecDeque;
    use std::convert::Infallible;

    /// A body yielding one data frame, then the given trailers (if any).
    struct TestBody(VecDeque<Frame<hyper::body::Bytes>>);

    impl Body for TestBody {
        type Data = hyper::body::Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn trailers(code: &str) -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", code.parse().unwrap());
        t
    }

    /// Calls `path` on a service answering with `headers` and a body ending in `trailer`.
    async fn call(
        metrics: &Arc<Metrics>,
        path: &str,
        headers: Option<&str>,
        trailer: Option<&str>,
    ) -> Response<MeteredBody<TestBody>> {
        let headers = headers.map(str::to_string);
        let trailer = trailer.map(str::to_string);
        let inner = tower::service_fn(move |_req: Request<()>| {
            let mut frames = VecDeque::from([Frame::data(hyper::body::Bytes::from_static(b"m"))]);
            if let Some(t) = &trailer {
                frames.push_back(Frame::trailers(trailers(t)));
            }
            let mut response = Response::new(TestBody(frames));
            if let Some(h) = &headers {
                *response.headers_mut() = trailers(h);
            }
            async move { Ok::<_, Infallible>(response) }
        });
        let mut svc = RpcMetricsLayer::new(Arc::clone(metrics)).layer(inner);
        let req = Request::builder().uri(path).body(()).unwrap();
        svc.call(req).await.unwrap()
    }

    async fn drain(mut body: MeteredBody<TestBody>) {
        while std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .is_some()
        {}
    }

    fn codes(metrics: &Metrics, method: &str) -> Vec<(&'static str, u64)> {
        metrics
            .rpc
            .snapshot()
            .into_iter()
            .find(|m| m.method == method)
            .map(|m| m.codes)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn calls_are_counted_by_the_status_in_trailers_or_headers() {
        let m = Arc::new(Metrics::new(["/p.S/Get".to_string()]));
        // A unary success: the status comes with the trailers, counted once the body ends.
        let r = call(&m, "/p.S/Get", None, Some("0")).await;
        assert!(
            codes(&m, "/p.S/Get").is_empty(),
            "counted before the trailers"
        );
        drain(r.into_body()).await;
        assert_eq!(codes(&m, "/p.S/Get"), vec![("OK", 1)]);
        // An error answered at once ("trailers-only"): counted from the headers.
        let r = call(&m, "/p.S/Get", Some("5"), None).await;
        assert_eq!(codes(&m, "/p.S/Get"), vec![("OK", 1), ("NOT_FOUND", 1)]);
        drop(r);
        // A stream the client dropped before its end: cancelled.
        let r = call(&m, "/p.S/Get", None, Some("0")).await;
        drop(r);
        assert_eq!(
            codes(&m, "/p.S/Get"),
            vec![("OK", 1), ("CANCELLED", 1), ("NOT_FOUND", 1)]
        );
        // A body that ends without any status, and a malformed status.
        drain(call(&m, "/p.S/Get", None, None).await.into_body()).await;
        drain(call(&m, "/p.S/Get", None, Some("x")).await.into_body()).await;
        assert!(codes(&m, "/p.S/Get").contains(&("UNKNOWN", 2)));
        // Every call was timed once.
        let snap = m.rpc.snapshot();
        assert_eq!(snap[0].latency.count, 5);
        // Unknown paths are counted under one shared entry.
        drain(
            call(&m, "/no.Such/Method", Some("12"), None)
                .await
                .into_body(),
        )
        .await;
        assert_eq!(codes(&m, "other"), vec![("UNIMPLEMENTED", 1)]);
    }
}
