//! The HTTP listeners' connection handling, with the limits an API that
//! anyone on the network can reach needs (axum's `serve` has none):
//!
//! - a cap on open connections; past it a new connection gets a JSON 503
//!   and is closed at once, so one client's flood never exhausts the
//!   process's file descriptors (which the store and images need too);
//! - a deadline for each request's header, which also closes idle
//!   keep-alive connections (hyper starts it whenever it waits for a
//!   request): half-sent headers (slowloris) and idle sockets go away;
//! - a response the client does not take (its writes stall) for
//!   `write_stall` ends the connection, freeing what the response held;
//! - accept errors (EMFILE, ENFILE, ECONNABORTED…) are logged and waited
//!   out, never the end of the listener;
//! - shutdown: stop accepting, let requests in progress finish, and after
//!   a grace period close whatever is left, so SIGTERM always ends the
//!   process in bounded time whatever clients do.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at most; more are refused with a 503.
    pub max_connections: usize,
    /// Time a client has to send a request's header, counted from the
    /// connection's start or the end of its previous response (so also the
    /// idle keep-alive timeout).
    pub header_timeout: Duration,
    /// How long requests in progress may take to finish after shutdown
    /// begins.
    pub shutdown_grace: Duration,
    /// How long a write to the client may wait for the client to read.
    pub write_stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            write_stall: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true; returns once
/// every connection is closed (or the grace period is over).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // What hyper buffers per connection (headers included): bodies are
        // bounded by the dialects' body budget, not by hyper's ~400 KiB.
        .max_buf_size(128 << 10)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection that
                // died in the backlog: wait a little and go on accepting.
                tracing::warn!(listener = name, error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(listener = name, %peer, max = limits.max_connections, "connection limit reached; refusing");
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let io = TokioIo::new(StallGuard::new(stream, limits.write_stall));
        let conn = builder.serve_connection(io, service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        listener = name,
        open = graceful.count(),
        "no longer accepting; finishing requests in progress"
    );
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(listener = name, "grace period over; closing the remaining connections");
        }
    }
}

/// Answers a connection over the limit with a 503 it can read, without
/// reading its request, and closes it.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error": {"code": 503, "title": "Service Unavailable", "message": "Too many open connections; retry later."}}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A socket whose writes may wait for the peer at most `limit` in a row: a
/// client that stops reading its responses gets its connection closed
/// (hyper itself has no such timeout).
struct StallGuard<S> {
    inner: S,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    fn new(inner: S, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Turns a write that made no progress into an error once it has been
    /// stuck for `limit`.
    fn guard<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        use std::task::Poll;
        match poll {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading its response",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
