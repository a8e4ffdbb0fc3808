//! Nova's volume-snapshot proxy, `os-snapshots` (seed 001), as a view over
//! Ember's service: the same snapshots the Cinder API shows, in Nova's
//! camelCase shape, with Nova's microversions (2.1–2.104; the proxy APIs
//! are gone from 2.36), status codes and fault bodies.
//!
//! Served on the main listener at `/v2.1/…` and, as the catalog's `compute`
//! endpoint, at `/compute/v2.1/…` and `/compute/v2/…` (plain `/v2/` belongs
//! to Cinder v2).

mod assisted;
mod error;
mod openapi;
mod snapshots;
mod version;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use ember_api_common::Authenticator;
use ember_service::{Caller, Service};
pub use error::NovaError;
use serde_json::Value;
use std::sync::Arc;
use version::Microversion;

pub struct NovaState {
    pub service: Service,
    pub auth: Arc<dyn Authenticator>,
}

pub use openapi::operations as openapi_operations;

pub fn router(state: Arc<NovaState>) -> Router {
    Router::new()
        .route("/v2.1", axum::routing::any(handle))
        .route("/v2.1/", axum::routing::any(handle))
        .route("/v2.1/{*rest}", axum::routing::any(handle))
        .route("/compute", axum::routing::any(handle))
        .route("/compute/", axum::routing::any(handle))
        .route("/compute/{*rest}", axum::routing::any(handle))
        .with_state(state)
}

/// One request, parsed.
pub(crate) struct Req {
    pub caller: Caller,
    pub mv: Microversion,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub query: Vec<(String, String)>,
}

impl Req {
    pub fn json_body(&self) -> Result<Value, NovaError> {
        use ember_api_common::body::{BodyError, parse_json};
        parse_json(&self.headers, &self.body).map_err(|e| match e {
            BodyError::TooLarge => {
                NovaError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request is too large.")
            }
            BodyError::UnsupportedMediaType => NovaError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Content-Type",
            ),
            BodyError::Missing | BodyError::Malformed => {
                NovaError::bad_request("Malformed request body")
            }
        })
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn json(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).expect("json")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn base_url(headers: &HeaderMap) -> String {
    ember_api_common::base_url(headers)
}

fn parse_query(uri: &Uri) -> Vec<(String, String)> {
    ember_api_common::query_pairs(uri.query())
}

/// The words of Nova's documented paths, for metric labels.
fn route_words() -> &'static ember_api_common::RouteWords {
    static WORDS: std::sync::OnceLock<ember_api_common::RouteWords> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| ember_api_common::RouteWords::from_operations(&openapi_operations()))
}

async fn handle(
    State(state): State<Arc<NovaState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let request_id = ember_api_common::new_request_id();
    let started = std::time::Instant::now();
    let mut response =
        match ember_api_common::body::read(&headers, body, ember_api_common::body::MAX_BODY_BYTES)
            .await
        {
            Ok((body, _budget)) => dispatch(&state, &method, &uri, headers, body).await,
            Err(e) => NovaError::new(e.status(), e.message()).into_response(None),
        };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert("x-openstack-request-id", v.clone());
        response.headers_mut().insert("x-compute-request-id", v);
    }
    tracing::info!(request_id = %request_id, method = %method, path = %uri.path(), status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64, "nova request");
    ember_api_common::record_request(
        "nova",
        &method,
        || route_words().label(uri.path()),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn dispatch(
    state: &NovaState,
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let under_compute = segs.first() == Some(&"compute");
    if under_compute {
        segs.remove(0);
    }
    let base = format!(
        "{}{}",
        base_url(&headers),
        if under_compute { "/compute" } else { "" }
    );
    // Version discovery: unversioned.
    let Some(api) = segs.first().copied() else {
        return json(StatusCode::OK, &version::versions(&base));
    };
    if api != "v2.1" && !(api == "v2" && under_compute) {
        return json(StatusCode::MULTIPLE_CHOICES, &version::choices(&base, path));
    }
    if segs.len() == 1 {
        if !path.ends_with('/') {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::from_str(&format!("{base}/{api}/")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        return json(StatusCode::OK, &version::version_doc(&base, api));
    }
    let mv = match Microversion::from_headers(&headers) {
        Ok(mv) => mv,
        Err(e) => return e.into_response(None),
    };
    let mut response = versioned(state, method, uri, headers, body, &segs[1..], mv).await;
    version::stamp(response.headers_mut(), mv);
    response
}

enum Routed {
    Snapshots(snapshots::Endpoint),
    Assisted(assisted::Endpoint),
}

async fn versioned(
    state: &NovaState,
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    rest: &[&str],
    mv: Microversion,
) -> Response {
    let is_project =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let (project, rest) = match rest.first() {
        Some(first)
            if *first != "os-snapshots"
                && *first != "os-assisted-volume-snapshots"
                && is_project(first) =>
        {
            (Some(*first), &rest[1..])
        }
        _ => (None, rest),
    };
    let endpoint = match (
        snapshots::route(method, rest),
        assisted::route(method, rest),
    ) {
        (Some(e), _) => Routed::Snapshots(e),
        (None, Some(e)) => Routed::Assisted(e),
        (None, None) => {
            return NovaError::not_found("The resource could not be found.")
                .into_response(Some(mv));
        }
    };
    let caller = match state.auth.authenticate(&headers, project).await {
        Ok(c) => c,
        Err(ember_api_common::AuthError::IdentityUnavailable) => {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": {"code": 503, "title": "Service Unavailable", "message": "The Keystone service is temporarily unavailable."}}),
            );
        }
        Err(_) => {
            return json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}),
            );
        }
    };
    if let Some(p) = project
        && p != caller.project_id.0
        && !caller.is_admin()
    {
        return NovaError::bad_request(format!(
            "Malformed request URL: URL's project_id '{p}' doesn't match Context's project_id '{}'",
            caller.project_id
        ))
        .into_response(Some(mv));
    }
    let req = Req {
        caller,
        mv,
        headers,
        body,
        query: parse_query(uri),
    };
    let result = match endpoint {
        Routed::Snapshots(e) => snapshots::run(&state.service, &req, e).await,
        Routed::Assisted(e) => assisted::run(&state.service, &req, e).await,
    };
    match result {
        Ok((status, Some(body))) => json(status, &body),
        Ok((status, None)) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            r
        }
        Err(e) => e.into_response(Some(mv)),
    }
}
