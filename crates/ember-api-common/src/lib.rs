//! What every API dialect shares: authentication, request ids, body
//! handling, and a Python-compatible `repr` for error messages that quote
//! request values the way OpenStack services do.

pub mod auth;
pub mod body;
pub mod openapi;
pub mod pyrepr;
pub mod schema;

pub use auth::{AuthError, Authenticator, NoAuth};

/// Words that may appear as labels of request metrics: the literal
/// segments of documented paths. Built once per dialect from its OpenAPI
/// operations.
pub struct RouteWords(std::collections::HashSet<String>);

impl RouteWords {
    pub fn from_operations(ops: &[openapi::Operation]) -> RouteWords {
        RouteWords(
            ops.iter()
                .flat_map(|op| op.path.split('/'))
                .filter(|s| !s.is_empty() && !s.starts_with('{'))
                .map(str::to_string)
                .collect(),
        )
    }

    /// A label for `path` with bounded values: known words stay, any
    /// other segment (ids, names, an attacker's junk) becomes `{}`.
    pub fn label(&self, path: &str) -> String {
        let segments: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| if self.0.contains(s) { s } else { "{}" })
            .collect();
        format!("/{}", segments.join("/"))
    }
}

/// Records an answered request in the metrics: its route is `label` when
/// the status says it matched a route, else `unmatched` (404s and 405s of
/// unknown paths would otherwise add a label per path).
pub fn record_request(
    api: &str,
    method: &axum::http::Method,
    label: impl FnOnce() -> String,
    status: u16,
    took: std::time::Duration,
) {
    use axum::http::Method;
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
    ];
    let route = if status == 404 || status == 405 || !known.contains(method) {
        "unmatched".to_string()
    } else {
        format!("{method} {}", label())
    };
    ember_metrics::http_request(api, &route, status, took);
}

static PUBLIC_ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the URL links and catalogs name (Cinder's `public_endpoint`), e.g.
/// `https://volume.example.com`; without it they echo the request's Host
/// header, as Cinder does. Set once, at start-up.
pub fn set_public_endpoint(url: &str) {
    let _ = PUBLIC_ENDPOINT.set(url.trim_end_matches('/').to_string());
}

/// The base URL of links in responses: the public endpoint when one is
/// configured, else `http://<Host header>` (a Host header that is not a
/// plain host[:port] is not echoed).
pub fn base_url(headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = PUBLIC_ENDPOINT.get() {
        return url.clone();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or("127.0.0.1:8776");
    format!("http://{host}")
}

/// `req-<uuid>`, as OpenStack services name requests.
pub fn new_request_id() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}

/// `a=1&b=x%20y` as decoded pairs, in order (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex {
                out.push(decoded);
                i += 3;
                continue;
            }
            out.push(b);
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP status a service error has in every dialect (a dialect may
/// still word or remap one, as Nova does with quotas).
pub fn service_status(e: &ember_service::ServiceError) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    use ember_service::ServiceError::*;
    match e {
        VolumeNotFound(_)
        | SnapshotNotFound(_)
        | SnapshotMetadataNotFound { .. }
        | VolumeMetadataNotFound { .. }
        | NotFound(_) => StatusCode::NOT_FOUND,
        Conflict(_) => StatusCode::CONFLICT,
        InvalidVolume(_) | InvalidSnapshot(_) | InvalidInput(_) => StatusCode::BAD_REQUEST,
        QuotaExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Forbidden(_) | Protected(_) => StatusCode::FORBIDDEN,
        StorageFull | Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The envelope key OpenStack's wsgi faults use for a status code (Cinder
/// and Nova share it).
pub fn fault_name(status: u16) -> &'static str {
    match status {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

#[cfg(test)]
mod query_tests {
    use super::query_pairs;

    #[test]
    fn decodes_pairs() {
        assert_eq!(
            query_pairs(Some("name=a%20b&x&sort=name%3Aasc&q=1+2")),
            vec![
                ("name".into(), "a b".into()),
                ("x".into(), String::new()),
                ("sort".into(), "name:asc".into()),
                ("q".into(), "1 2".into())
            ]
        );
        assert!(query_pairs(None).is_empty());
    }
}
