//! The HTTP listeners' connection handling, with the limits an API that
//! anyone on the network can reach needs (axum's `serve` has none):
//!
//! - a cap on open connections; past it a new connection gets a JSON 503
//!   and is closed at once, so one client's flood never exhausts the
//!   process's file descriptors (which the store and images need too);
//! - a deadline for each request's header, which also closes idle
//!   keep-alive connections (hyper starts it whenever it waits for a
//!   request): half-sent headers (slowloris) and idle sockets go away;
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
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
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(listener = name, open = graceful.count(), "no longer accepting; finishing requests in progress");
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
