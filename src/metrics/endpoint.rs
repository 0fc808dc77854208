//! The metrics endpoint: a small HTTP/1.1 server (hyper's, already in the tree under tonic)
//! that answers `GET /metrics` with the Prometheus text, one request per connection. It has
//! no authentication: bind it to a loopback address unless the network is trusted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::prometheus::CONTENT_TYPE;

/// Produces the text to serve, or why it could not (answered as 500). Called on a blocking
/// thread: it may read the store and /proc.
pub type Render = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// The path served.
pub const PATH: &str = "/metrics";
/// Largest request head read (request line and headers); larger heads get 431.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last in all (a reader that stalls is cut off).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// Serves `render`'s text on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, render: Render, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| respond(req, Arc::clone(&render)));
            let mut builder = http1::Builder::new();
            builder
                .keep_alive(false)
                .max_buf_size(MAX_HEAD_BYTES)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_DEADLINE, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection failed"),
                Err(_) => tracing::debug!("metrics connection took too long; closed"),
            }
        });
    }
}

fn plain(status: StatusCode, text: &str) -> Response<String> {
    let mut r = Response::new(text.to_string());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn respond(req: Request<Incoming>, render: Render) -> Result<Response<String>, Infallible> {
    if req.uri().path() != PATH {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are served at /metrics\n",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let outcome = tokio::task::spawn_blocking(move || render()).await;
    Ok(match outcome {
        Ok(Ok(text)) => {
            let mut r = Response::new(text);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(CONTENT_TYPE),
            );
            r
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot gather the metrics");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot gather the metrics: {e}\n"),
            )
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot gather the metrics: {e}\n"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(render: Render) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, render, shutdown.clone()));
        (addr, shutdown)
    }

    fn fixed(text: &'static str) -> Render {
        Arc::new(move || Ok(text.to_string()))
    }

    /// Sends raw bytes, then reads until the server closes the connection.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The server may answer (and close) before it has read everything sent.
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server did not close the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn status_line(response: &str) -> &str {
        response.lines().next().unwrap_or("")
    }

    #[tokio::test]
    async fn get_metrics_is_served_as_prometheus_text_then_closed() {
        let (addr, _stop) = start(fixed("x 1\n")).await;
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(status_line(&r), "HTTP/1.1 200 OK");
        let lower = r.to_ascii_lowercase();
        assert!(lower.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(lower.contains("connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nx 1\n"), "{r}");
        // HTTP/1.0 clients and HEAD work too.
        let r = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
        let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status_line(&r), "HTTP/1.1 200 OK");
        assert!(r.ends_with("\r\n\r\n"), "a HEAD answer has no body: {r}");
    }

    #[tokio::test]
    async fn other_paths_are_404_and_other_methods_405() {
        let (addr, _stop) = start(fixed("x 1\n")).await;
        for path in ["/", "/metrics/", "/metricsx", "/favicon.ico"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = exchange(addr, req.as_bytes()).await;
            assert_eq!(status_line(&r), "HTTP/1.1 404 Not Found", "{path}");
        }
        let r = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        assert_eq!(status_line(&r), "HTTP/1.1 405 Method Not Allowed");
        assert!(r.to_ascii_lowercase().contains("allow: get, head\r\n"));
        // A query string does not change the path.
        let r = exchange(addr, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status_line(&r), "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn oversized_heads_and_garbage_are_refused_and_the_server_goes_on() {
        let (addr, _stop) = start(fixed("x 1\n")).await;
        let mut big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 3 * MAX_HEAD_BYTES));
        big.extend_from_slice(b"\r\n\r\n");
        let r = exchange(addr, &big).await;
        assert_eq!(
            status_line(&r),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        for garbage in [
            &b"\x00\x01\x02\xff\xfe garbage\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /metrics HTTP/9.9\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let r = exchange(addr, garbage).await;
            assert!(
                r.is_empty() || r.starts_with("HTTP/1.1 4") || r.starts_with("HTTP/1.1 5"),
                "{garbage:?} got {r:?}"
            );
            assert!(!r.contains("x 1\n"), "{garbage:?} was served the metrics");
        }
        // A client that connects and sends nothing is not a problem for the next one.
        let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status_line(&r), "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn large_texts_are_sent_whole_and_render_errors_are_500() {
        let text: String = (0..20_000)
            .map(|i| format!("m{{i=\"{i}\"}} {i}\n"))
            .collect();
        let expected = text.clone();
        let (addr, _stop) = start(Arc::new(move || Ok(text.clone()))).await;
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status_line(&r), "HTTP/1.1 200 OK");
        assert!(r.ends_with(&expected));

        let (addr, _stop) = start(Arc::new(|| Err("the store is closed".to_string()))).await;
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status_line(&r), "HTTP/1.1 500 Internal Server Error");
        assert!(r.contains("the store is closed"));
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, fixed("x 1\n"), stop.clone()));
        stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(20), server).await;
        assert!(matches!(ended, Ok(Ok(()))), "the server did not stop");
    }
}
