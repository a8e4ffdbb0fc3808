//! The OpenStack Block Storage (Cinder) API dialect: v3 with
//! microversions, and v2 as seed 000 documents it.
//!
//! Every request goes through [`handle`]: version and microversion
//! negotiation, authentication, routing to an [`Endpoint`], one handler,
//! and the response headers Cinder sends. Handlers parse the wire format
//! into a service request and render the domain result with `views`.

mod error;
mod handlers;
mod listing;
mod openapi;
mod routes;
mod schemas;
pub mod version;
mod views;

pub use error::CinderError;
pub use openapi::operations as openapi_operations;
pub use routes::Endpoint;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use ember_api_common::auth::Authenticator;
use ember_service::{Caller, Service};
use serde_json::Value;
use std::sync::Arc;
use version::Microversion;

pub struct CinderState {
    pub service: Service,
    pub auth: Arc<dyn Authenticator>,
}

pub fn router(state: Arc<CinderState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Which API the request addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    V2,
    V3,
}

/// One parsed request, as handlers see it.
pub struct Req {
    pub method: Method,
    pub api: Api,
    pub mv: Microversion,
    pub caller: Caller,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    /// `http://host:port`, for links.
    pub base: String,
    /// The request path, for pagination links.
    pub path: String,
    /// This request's `x-openstack-request-id`.
    pub request_id: String,
}

impl Req {
    pub fn json_body(&self) -> Result<Value, CinderError> {
        use ember_api_common::body::{BodyError, parse_json};
        parse_json(&self.headers, &self.body).map_err(|e| match e {
            BodyError::TooLarge => CinderError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: "Request is too large.".into(),
            },
            BodyError::UnsupportedMediaType => CinderError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "Unsupported Content-Type".into(),
            },
            BodyError::Missing => CinderError::bad_request(
                "The request body is missing or empty: a JSON object is required.",
            ),
            BodyError::Malformed => CinderError::bad_request("Malformed request body"),
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

/// A handler's successful answer.
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    /// Raw bytes instead of JSON (Ember's data API).
    /// Raw bytes (the data API), holding their memory budget until sent.
    pub raw: Option<ember_service::DataBuffer>,
    /// Headers of a raw reply (a block's checksum).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body: Some(body),
            raw: None,
            headers: Vec::new(),
        }
    }
    pub fn accepted(body: Value) -> Self {
        Reply {
            status: StatusCode::ACCEPTED,
            body: Some(body),
            raw: None,
            headers: Vec::new(),
        }
    }
    pub fn empty(status: StatusCode) -> Self {
        Reply {
            status,
            body: None,
            raw: None,
            headers: Vec::new(),
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).expect("json")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Marks a response that Cinder sends from outside its versioned API (a
/// routing miss): no microversion headers, no compute request id.
#[derive(Clone, Copy)]
struct Unversioned;

/// The plain 404 that Cinder's router gives unknown paths and methods.
fn route_not_found() -> Response {
    let mut r = json_response(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"message": "The resource could not be found.<br /><br />\n\n\n", "code": "404 Not Found", "title": "Not Found"}),
    );
    r.extensions_mut().insert(Unversioned);
    r
}

/// keystonemiddleware's answers: 401 for a missing or invalid token, 503
/// when the identity service cannot be asked.
fn auth_failure(e: &ember_api_common::AuthError) -> Response {
    match e {
        ember_api_common::AuthError::IdentityUnavailable => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": {"code": 503, "title": "Service Unavailable", "message": "The Keystone service is temporarily unavailable."}}),
        ),
        ember_api_common::AuthError::Unauthenticated => json_response(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}),
        ),
    }
}

fn error_response(e: &CinderError) -> Response {
    json_response(e.status, &e.body())
}

fn base_url(headers: &HeaderMap) -> String {
    ember_api_common::base_url(headers)
}

fn parse_query(uri: &Uri) -> Vec<(String, String)> {
    ember_api_common::query_pairs(uri.query())
}

/// oslo.middleware's `/healthcheck`: 200 when the metadata store and the
/// storage answer, 503 with the failed checks otherwise. An admin's token
/// gets the detailed form (each check, what it saw, how long it took).
async fn healthcheck(state: &CinderState, headers: &HeaderMap) -> Response {
    let health = state.service.health().await;
    let status = if health.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let admin = headers.contains_key("x-auth-token")
        && state
            .auth
            .authenticate(headers, None)
            .await
            .is_ok_and(|c| c.is_admin());
    let body = if admin {
        serde_json::json!({
            "detailed": true,
            "reasons": health.checks.iter().map(|c| serde_json::json!({
                "class": c.name,
                "reason": if c.ok { "OK" } else { "FAILED" },
                "details": c.detail,
                "micros": c.micros,
            })).collect::<Vec<_>>(),
        })
    } else {
        let failed: Vec<String> = health
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} is not answering", c.name))
            .collect();
        let reasons = if failed.is_empty() {
            vec!["OK".to_string()]
        } else {
            failed
        };
        serde_json::json!({"detailed": false, "reasons": reasons})
    };
    json_response(status, &body)
}

/// The words of Cinder's documented paths, for metric labels.
fn route_words() -> &'static ember_api_common::RouteWords {
    static WORDS: std::sync::OnceLock<ember_api_common::RouteWords> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| ember_api_common::RouteWords::from_operations(&openapi_operations()))
}

/// The single entry point of the dialect.
pub async fn handle(
    State(state): State<Arc<CinderState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = ember_api_common::new_request_id();
    let started = std::time::Instant::now();
    let path = uri.path().to_string();
    let mut response = match ember_api_common::body::read(
        &headers,
        body,
        ember_api_common::body::MAX_RAW_BODY_BYTES,
    )
    .await
    {
        Ok((body, _budget)) => {
            dispatch(&state, method.clone(), &uri, headers, body, &request_id).await
        }
        Err(e) => error_response(&CinderError {
            status: e.status(),
            message: e.message().into(),
        }),
    };
    let unversioned = response.extensions().get::<Unversioned>().is_some();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-openstack-request-id", v.clone());
        if !unversioned {
            h.insert("x-compute-request-id", v);
        }
    }
    let (project, user) = response
        .extensions()
        .get::<Who>()
        .map(|w| (w.project.clone(), w.user.clone()))
        .unwrap_or_default();
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        project = %project,
        user = %user,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "cinder request"
    );
    ember_api_common::record_request(
        "cinder",
        &method,
        || route_words().label(&path),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn dispatch(
    state: &CinderState,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    request_id: &str,
) -> Response {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let base = base_url(&headers);
    let trailing_slash = uri.path().ends_with('/');
    match (method.as_str(), segments.as_slice()) {
        ("GET", []) => {
            let mut r = json_response(StatusCode::MULTIPLE_CHOICES, &version::versions_doc(&base));
            r.headers_mut().insert(
                "openstack-api-version",
                HeaderValue::from_static("volume 3.0"),
            );
            r.headers_mut().insert(
                header::VARY,
                HeaderValue::from_static("OpenStack-API-Version"),
            );
            return r;
        }
        ("GET", ["healthcheck"]) => return healthcheck(state, &headers).await,
        ("GET", ["v3"]) | ("GET", ["v2"]) if !trailing_slash => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::FOUND;
            let location = format!("{base}/{}/", segments[0]);
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf8"),
            );
            return r;
        }
        _ => {}
    }
    let api = match segments.first() {
        Some(&"v3") => Api::V3,
        Some(&"v2") => Api::V2,
        _ => return route_not_found(),
    };
    // Cinder's routes match no trailing slash below the version document:
    // `GET /v3/{p}/volumes/` is a 404 there, not the list.
    if trailing_slash && segments.len() > 1 {
        return route_not_found();
    }
    let mv = if api == Api::V3 {
        match version::negotiate(&headers) {
            Ok(mv) => mv,
            Err(version::VersionError::Malformed(message)) => {
                return error_response(&CinderError::bad_request(message));
            }
            Err(version::VersionError::Unsupported { asked }) => {
                let mut r = error_response(&CinderError {
                    status: StatusCode::NOT_ACCEPTABLE,
                    message: format!(
                        "Version {asked} is not supported by the API. Minimum is 3.{} and maximum is 3.{}.",
                        version::MIN_MINOR,
                        version::MAX_MINOR
                    ),
                });
                if let Ok(v) = HeaderValue::from_str(&format!("volume {asked}")) {
                    r.headers_mut().insert("openstack-api-version", v);
                }
                r.headers_mut().insert(
                    header::VARY,
                    HeaderValue::from_static("OpenStack-API-Version"),
                );
                return r;
            }
        }
    } else {
        Microversion::V3_0
    };
    let mut response = route_and_run(
        state,
        api,
        mv,
        method,
        uri,
        headers,
        body,
        &segments[1..],
        base,
        request_id,
    )
    .await;
    if api == Api::V3 && response.extensions().get::<Unversioned>().is_none() {
        if let Ok(v) = HeaderValue::from_str(&mv.header_value()) {
            response.headers_mut().insert("openstack-api-version", v);
        }
        response.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static("OpenStack-API-Version"),
        );
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn route_and_run(
    state: &CinderState,
    api: Api,
    mv: Microversion,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    rest: &[&str],
    base: String,
    request_id: &str,
) -> Response {
    if rest.is_empty() {
        // The version document of this API. Without a token, Cinder's noauth
        // pipeline answers 204 (Ember in noauth mode does the same), and a
        // Keystone-protected Cinder 401, upon which keystoneauth's version
        // discovery retries with its token and learns the microversions.
        if method != Method::GET {
            return route_not_found();
        }
        // A token that does not validate is refused as keystonemiddleware
        // refuses it, before the document is shown.
        if !state.auth.is_noauth() {
            if headers.get("x-auth-token").is_none() {
                return auth_failure(&ember_api_common::AuthError::Unauthenticated);
            }
            if let Err(e) = state.auth.authenticate(&headers, None).await {
                return auth_failure(&e);
            }
        }
        if headers.get("x-auth-token").is_none() {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=UTF-8"),
            );
            r.extensions_mut().insert(Unversioned);
            return r;
        }
        let doc = if api == Api::V3 {
            version::v3_version_doc(&base)
        } else {
            version::v2_version_doc(&base)
        };
        return json_response(StatusCode::OK, &doc);
    }
    let Some((project_in_path, endpoint)) = routes::parse(&method, rest, api) else {
        return route_not_found();
    };
    let caller = match state.auth.authenticate(&headers, project_in_path).await {
        Ok(c) => c,
        Err(e) => return auth_failure(&e),
    };
    if let Some(p) = project_in_path
        && p != caller.project_id.0
        && !caller.is_admin()
    {
        return error_response(&CinderError::bad_request(format!(
            "Malformed request URL: URL's project_id '{p}' doesn't match Context's project_id '{}'",
            caller.project_id
        )));
    }
    let req = Req {
        method,
        api,
        mv,
        caller,
        headers,
        query: parse_query(uri),
        body,
        base,
        path: uri.path().to_string(),
        request_id: request_id.to_string(),
    };
    let who = Who {
        project: req.caller.project_id.0.clone(),
        user: req.caller.user_id.0.clone(),
    };
    let mut response = answer(state, &req, endpoint).await;
    response.extensions_mut().insert(who);
    response
}

/// Who made a request, for its log line.
#[derive(Clone)]
struct Who {
    project: String,
    user: String,
}

async fn answer(state: &CinderState, req: &Req, endpoint: routes::Endpoint) -> Response {
    match handlers::run(state, req, endpoint).await {
        Ok(reply) => match reply.body {
            Some(body) => json_response(reply.status, &body),
            None if reply.raw.is_some() => {
                let data = reply.raw.expect("checked above");
                let mut r = Response::new(Body::new(HeldBytes::new(data)));
                *r.status_mut() = reply.status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                for (name, value) in &reply.headers {
                    if let Ok(value) = HeaderValue::from_str(value) {
                        r.headers_mut().insert(*name, value);
                    }
                }
                r
            }
            None => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = reply.status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
        },
        Err(e) => error_response(&e),
    }
}

/// A response body of bytes read through the data API, sent in 1 MiB
/// frames. It keeps the buffer (and its share of the data budget) until
/// the last frame has been taken by the connection, which for a client
/// that stops reading is when the connection is cut.
struct HeldBytes {
    data: Bytes,
    _held: ember_service::DataBuffer,
}

impl HeldBytes {
    fn new(mut held: ember_service::DataBuffer) -> Self {
        HeldBytes {
            data: Bytes::from(std::mem::take(&mut held.bytes)),
            _held: held,
        }
    }
}

impl http_body::Body for HeldBytes {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.data.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let n = self.data.len().min(1 << 20);
        let chunk = self.data.split_to(n);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.len() as u64)
    }
}
