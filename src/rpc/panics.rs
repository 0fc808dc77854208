//! Panics are bugs, and contained: a tower layer turns a panic in a handler (or while its
//! answer streams) into INTERNAL with a request id, and the helpers here do the same for work
//! handlers hand to other tasks. The log gets the id, the method and a short reason, never
//! the request. The same layer cuts any status message over 1 KiB, so no answer echoes a
//! client's megabytes back even where a handler quotes an input whole.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use hyper::{Request, Response};
use pin_project_lite::pin_project;
use tonic::Status;
use tower::{Layer, Service};

/// Characters of a panic's message the log keeps.
const REASON_CHARS: usize = 160;

/// A new request id for a panic report: unique within the daemon's run.
pub fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static RUN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32))
    });
    format!("{run:08x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A short reason from a panic's payload (its message, cut).
pub fn reason(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "a panic without a message"
    };
    let mut cut = text.len().min(REASON_CHARS);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut < text.len() {
        format!("{}… ({} bytes)", &text[..cut], text.len())
    } else {
        text.to_string()
    }
}

/// Logs a contained panic and returns the status the client gets.
pub fn contained(method: &str, payload: &(dyn Any + Send)) -> Status {
    let id = request_id();
    tracing::error!(
        request_id = %id,
        method,
        reason = %reason(payload),
        "handler panicked; answered INTERNAL"
    );
    internal(&id)
}

/// Cuts a status message in `headers` (answer headers or trailers) to
/// [`super::limits::MAX_STATUS_MESSAGE`]: the net under every handler's own short quoting.
fn bound_message(headers: &mut hyper::HeaderMap) {
    let long = headers
        .get("grpc-message")
        .is_some_and(|v| v.len() > super::limits::MAX_STATUS_MESSAGE);
    if !long {
        return;
    }
    if let Some(status) = Status::from_header_map(headers) {
        let cut = Status::new(
            status.code(),
            super::limits::bounded_message(status.message().to_string()),
        );
        let fresh = cut.into_http::<()>().into_parts().0.headers;
        if let Some(m) = fresh.get("grpc-message") {
            headers.insert("grpc-message", m.clone());
        }
    }
}

fn internal(id: &str) -> Status {
    Status::internal(format!(
        "internal error (request {id}): a bug in the daemon; its log has the details"
    ))
}

/// Replaces the default panic message (which prints the whole payload, possibly a client's
/// input) with a log line holding a short reason and the location.
pub fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(
                reason = %reason(info.payload()),
                %location,
                "panicked"
            );
        }));
    });
}

/// The status of a blocking task that did not finish: a panic is contained and reported.
pub fn join_status(method: &str, e: tokio::task::JoinError) -> Status {
    match e.try_into_panic() {
        Ok(payload) => contained(method, payload.as_ref()),
        Err(_) => Status::unavailable("the task was cancelled (the daemon is shutting down)"),
    }
}

/// Runs `work` on the blocking pool to feed a stream's channel; a panic in it ends the stream
/// with INTERNAL (and a request id) instead of a silently short answer.
pub fn spawn_blocking_stream<T, F>(
    method: &'static str,
    tx: tokio::sync::mpsc::Sender<Result<T, Status>>,
    work: F,
) where
    T: Send + 'static,
    F: FnOnce(&tokio::sync::mpsc::Sender<Result<T, Status>>) + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| work(&tx))) {
            let _ = tx.blocking_send(Err(contained(method, payload.as_ref())));
        }
    });
}

/// Runs `work` as a task feeding a stream's channel; a panic in it ends the stream with
/// INTERNAL (and a request id).
pub fn spawn_stream<T, F>(
    method: &'static str,
    tx: tokio::sync::mpsc::Sender<Result<T, Status>>,
    work: F,
) where
    T: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let caught = CaughtFuture { inner: work }.await;
        if let Err(payload) = caught {
            let _ = tx.send(Err(contained(method, payload.as_ref()))).await;
        }
    });
}

pin_project! {
    /// A future whose panics become an `Err` with the payload.
    struct CaughtFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for CaughtFuture<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match catch_unwind(AssertUnwindSafe(|| this.inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The layer that contains handler panics.
#[derive(Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// A service whose panics become INTERNAL answers.
#[derive(Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(inner) => CatchPanicFuture {
                inner: Some(inner),
                method,
            },
            Err(payload) => {
                let status = contained(&method, payload.as_ref());
                CatchPanicFuture {
                    inner: None,
                    method: status.message().to_string(),
                }
            }
        }
    }
}

pin_project! {
    /// The answer of a call whose panics are contained.
    pub struct CatchPanicFuture<F> {
        #[pin]
        inner: Option<F>,
        method: String,
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response<tonic::body::Body>, E>>,
{
    type Output = Result<Response<tonic::body::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            // The call itself panicked; `method` holds the status message already logged.
            return Poll::Ready(Ok(Status::internal(this.method.clone()).into_http()));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(mut response))) => {
                bound_message(response.headers_mut());
                let method = std::mem::take(this.method);
                Poll::Ready(Ok(response.map(|body| {
                    tonic::body::Body::new(CatchPanicBody {
                        inner: body,
                        method,
                        done: false,
                    })
                })))
            }
            Ok(Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            Err(payload) => Poll::Ready(Ok(contained(this.method, payload.as_ref()).into_http())),
        }
    }
}

pin_project! {
    /// A response body whose panics end the call with INTERNAL trailers.
    struct CatchPanicBody {
        #[pin]
        inner: tonic::body::Body,
        method: String,
        done: bool,
    }
}

impl Body for CatchPanicBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match catch_unwind(AssertUnwindSafe(|| this.inner.poll_frame(cx))) {
            Ok(Poll::Ready(Some(Ok(mut frame)))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    bound_message(trailers);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Ok(frame) => frame,
            Err(payload) => {
                *this.done = true;
                let status = contained(this.method, payload.as_ref());
                let mut trailers = status.into_http::<()>().into_parts().0.headers;
                trailers.remove(hyper::header::CONTENT_TYPE);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short() {
        let long: Box<dyn Any + Send> = Box::new("é".repeat(10_000));
        let r = reason(long.as_ref());
        assert!(r.len() < REASON_CHARS + 40, "{}", r.len());
        assert!(r.contains("20000 bytes"));
        let plain: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(reason(plain.as_ref()), "boom");
    }

    #[tokio::test]
    async fn a_panicking_service_answers_internal_with_an_id() {
        let svc = tower::service_fn(|_req: Request<()>| async move {
            if true {
                panic!("{}", "secret input ".repeat(1000));
            }
            Ok::<_, std::convert::Infallible>(Response::new(tonic::body::Body::empty()))
        });
        let mut svc = CatchPanicLayer.layer(svc);
        let req = Request::builder()
            .uri("/workflowdb.v1.Catalog/GetFile")
            .body(())
            .unwrap();
        let response = Service::call(&mut svc, req).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status.message().contains("request "),
            "{}",
            status.message()
        );
        assert!(!status.message().contains("secret"));
    }

    #[tokio::test]
    async fn long_status_messages_are_cut() {
        let svc = tower::service_fn(|_req: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(
                Status::invalid_argument("x".repeat(20_000)).into_http::<tonic::body::Body>(),
            )
        });
        let mut svc = CatchPanicLayer.layer(svc);
        let req = Request::builder().uri("/a/B").body(()).unwrap();
        let response = Service::call(&mut svc, req).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < 1200, "{}", status.message().len());
    }

    #[tokio::test]
    async fn a_panicking_stream_task_ends_the_stream_with_internal() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        spawn_blocking_stream("/t/T", tx, |tx| {
            let _ = tx.blocking_send(Ok(1));
            panic!("boom");
        });
        assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
        let e = rx.recv().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        spawn_stream("/t/T", tx, async { panic!("boom") });
        assert_eq!(
            rx.recv().await.unwrap().unwrap_err().code(),
            tonic::Code::Internal
        );
    }
}
