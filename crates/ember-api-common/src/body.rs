//! Request bodies: size limit, content type, JSON parsing.

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use serde_json::Value;
use std::time::Duration;

/// Largest body of any request (raw data API writes; JSON bodies are
/// limited further by `MAX_BODY_BYTES` when parsed).
pub const MAX_RAW_BODY_BYTES: usize = 2 << 20;
/// Time a client has to send its whole body once its header arrived.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request body could not be read; every dialect answers each in
/// its own error format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Longer than the limit (by its Content-Length or as it arrived).
    TooLarge,
    /// Broken framing (e.g. malformed chunked encoding) or a connection
    /// that ended mid-body.
    Malformed,
    /// Not complete within `BODY_TIMEOUT`.
    TimedOut,
    /// The server's memory budget for request bodies is taken by other
    /// uploads (waited for `BUDGET_WAIT`).
    Busy,
}

/// Memory all request bodies being read or handled may hold together,
/// beyond the first `MAX_BODY_BYTES` of each.
pub const BODY_BUDGET_BYTES: usize = 256 << 20;
/// How long a body waits for budget before the request answers busy.
const BUDGET_WAIT: Duration = Duration::from_secs(10);

fn budget() -> &'static std::sync::Arc<tokio::sync::Semaphore> {
    static BUDGET: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    BUDGET.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET_BYTES >> 10)))
}

/// A body's share of the server's body budget, returned when dropped:
/// keep it for as long as the body is (the request's handling).
#[derive(Default)]
pub struct BodyBudget(Vec<tokio::sync::OwnedSemaphorePermit>);

impl BodyBudget {
    async fn take(&mut self, bytes: usize) -> Result<(), ReadError> {
        if bytes == 0 {
            return Ok(());
        }
        let units = bytes.div_ceil(1024) as u32;
        let wait = budget().clone().acquire_many_owned(units);
        match tokio::time::timeout(BUDGET_WAIT, wait).await {
            Ok(Ok(permit)) => {
                self.0.push(permit);
                Ok(())
            }
            _ => Err(ReadError::Busy),
        }
    }
}

/// Reads a whole request body of at most `limit` bytes, within
/// `BODY_TIMEOUT`, counted against the server's body budget (returned when
/// the `BodyBudget` drops). A declared length over the limit is refused
/// before a byte is read.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(Bytes, BodyBudget), ReadError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let collect = async move {
        let mut body = body;
        // Bytes are charged as they arrive (a declared length costs nothing
        // until sent), and only past the first MAX_BODY_BYTES: JSON bodies
        // never wait for the budget, large uploads share it.
        let mut held = BodyBudget::default();
        let mut covered = MAX_BODY_BYTES;
        // The declared length (checked against the limit above) is
        // reserved, not touched: memory grows with the bytes that arrive,
        // never by doubling past them.
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ReadError::Malformed)?;
            if let Ok(data) = frame.into_data() {
                let total = buf.len() + data.len();
                if total > covered && total <= limit {
                    held.take(total - covered).await?;
                    covered = total;
                }
                if buf.len() + data.len() > limit {
                    // Read (and drop) a little more, briefly: a client
                    // still sending when the connection closes on unread
                    // data gets a reset that can swallow the 413.
                    let drain = async {
                        let mut more = 0usize;
                        while more < limit {
                            match body.frame().await {
                                Some(Ok(f)) => more += f.data_ref().map_or(0, |d| d.len()),
                                _ => break,
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                    return Err(ReadError::TooLarge);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok((Bytes::from(buf), held))
    };
    tokio::time::timeout(BODY_TIMEOUT, collect)
        .await
        .unwrap_or(Err(ReadError::TimedOut))
}

impl ReadError {
    /// The status every dialect answers with.
    pub fn status(self) -> axum::http::StatusCode {
        match self {
            ReadError::TooLarge => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            ReadError::Malformed | ReadError::TimedOut => axum::http::StatusCode::BAD_REQUEST,
            ReadError::Busy => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ReadError::TooLarge => "Request is too large.",
            ReadError::Malformed => {
                "Malformed request body: its framing is broken or it ended early."
            }
            ReadError::TimedOut => "The request body did not arrive in time.",
            ReadError::Busy => "Too many uploads in progress; retry later.",
        }
    }
}

/// Cinder's `osapi_max_request_body_size` default.
pub const MAX_BODY_BYTES: usize = 114_688;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    UnsupportedMediaType,
    /// Empty body where one is required.
    Missing,
    Malformed,
}

/// Parses a JSON request body. A missing content type is taken as JSON
/// (as WebOb-based services do); any other non-JSON type is refused.
pub fn parse_json(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, BodyError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    if let Some(ct) = headers.get("content-type") {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence == "application/json" || essence.ends_with("+json") || essence.is_empty()) {
            return Err(BodyError::UnsupportedMediaType);
        }
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(BodyError::Missing);
    }
    serde_json::from_slice(bytes).map_err(|_| BodyError::Malformed)
}
