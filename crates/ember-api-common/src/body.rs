//! Request bodies: size limit, content type, JSON parsing.

use axum::http::HeaderMap;
use serde_json::Value;

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
