//! Huawei Cloud EVS's snapshot API (seed 004) as a view over Ember's
//! service: the Cinder-compatible `/v2/{project_id}/snapshots` with EVS's
//! rules (name ≤ 64 characters, description ≤ 85, the reserved
//! `autobk_snapshot_` prefix, string metadata) and EVS's error bodies
//! (`{"error": {"message", "code": "EVS.xxxx"}}`), plus the native
//! `/v2/{project_id}/cloudsnapshots` paths the Huawei SDK calls.
//!
//! It has its own listener (`--evs-listen`) because Cinder v2 owns the same
//! paths with other rules. Authentication is `X-Auth-Token`, or the SDK's
//! AK/SK signature (`SDK-HMAC-SHA256`) with an access key from the
//! identity service (Keystone's EC2 credentials API).

mod openapi;
mod signing;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use ember_api_common::Authenticator;
use ember_api_common::schema::as_bool;
use ember_model::{Metadata, Snapshot, SnapshotId, VolumeId};
use ember_service::{Caller, CreateSnapshot, MetadataWrite, Service, ServiceError, UpdateSnapshot};
use ember_store::{ListQuery, SnapshotFilter};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub struct EvsState {
    pub service: Service,
    pub auth: Arc<dyn Authenticator>,
    /// Access keys for signed requests; `None` accepts tokens only.
    pub access_keys: Option<Arc<dyn ember_api_common::auth::AccessKeys>>,
}

pub fn router(state: Arc<EvsState>) -> Router {
    Router::new()
        .route(
            "/openapi.json",
            ember_api_common::openapi::route(openapi::document),
        )
        .fallback(handle)
        .with_state(state)
}

#[derive(Debug)]
struct EvsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl EvsError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status.as_u16() {
            400 => "EVS.5400",
            401 => "EVS.5401",
            403 => "EVS.5403",
            404 => "EVS.5404",
            413 => "EVS.5413",
            503 => "EVS.5503",
            _ => "EVS.5500",
        };
        EvsError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

impl From<ServiceError> for EvsError {
    fn from(e: ServiceError) -> Self {
        if let ServiceError::Internal(detail) = &e {
            tracing::error!(error = %detail, "internal error");
            return EvsError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.");
        }
        let status = ember_api_common::service_status(&e);
        let err = EvsError::new(status, e.to_string());
        match e {
            ServiceError::InvalidSnapshot(_)
                if err.message.contains("must be available or error") =>
            {
                err.with_code("EVS.1047")
            }
            _ => err,
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The words of EVS's documented paths, for metric labels.
fn route_words() -> &'static ember_api_common::RouteWords {
    static WORDS: std::sync::OnceLock<ember_api_common::RouteWords> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| ember_api_common::RouteWords::from_operations(&openapi::operations()))
}

async fn handle(
    State(state): State<Arc<EvsState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = ember_api_common::new_request_id();
    let started = std::time::Instant::now();
    let read = ember_api_common::body::read(&headers, body, ember_api_common::body::MAX_BODY_BYTES)
        .await
        .map_err(|e| EvsError::new(e.status(), e.message()));
    let outcome = match read {
        Ok((body, _budget)) => dispatch(&state, &method, &uri, &headers, &body).await,
        Err(e) => Err(e),
    };
    let mut response = match outcome {
        Ok((status, Some(body))) => json_response(status, &body),
        Ok((status, None)) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            r
        }
        Err(e) => json_response(
            e.status,
            &json!({"error": {"message": e.message, "code": e.code}}),
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        // The Huawei SDK reads X-Request-Id; OpenStack clients the other.
        response.headers_mut().insert("x-request-id", v.clone());
        response.headers_mut().insert("x-openstack-request-id", v);
    }
    tracing::info!(request_id = %request_id, method = %method, path = %uri.path(), status = response.status().as_u16(), "evs request");
    ember_api_common::record_request(
        "evs",
        &method,
        || route_words().label(uri.path()),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

type Reply = Result<(StatusCode, Option<Value>), EvsError>;

async fn dispatch(
    state: &EvsState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Reply {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // The SDK's list_versions (`GET /`) and show_version (`GET /v2`).
    match (method.as_str(), segs.as_slice()) {
        ("GET", []) => {
            return Ok((
                StatusCode::OK,
                Some(json!({"versions": [version_doc(headers)]})),
            ));
        }
        ("GET", ["v2"]) => {
            return Ok((
                StatusCode::OK,
                Some(json!({"versions": [version_doc(headers)]})),
            ));
        }
        _ => {}
    }
    let (project, rest) = match segs.as_slice() {
        ["v2", project, rest @ ..]
            if !rest.is_empty() && matches!(rest[0], "snapshots" | "cloudsnapshots") =>
        {
            (*project, &rest[1..])
        }
        _ => {
            return Err(EvsError::new(
                StatusCode::NOT_FOUND,
                "The resource could not be found.",
            ));
        }
    };
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with(signing::ALGORITHM))
        .map(str::to_string);
    let caller = if let Some(value) = signed {
        let unauthenticated =
            || EvsError::new(StatusCode::UNAUTHORIZED, "Authentication required.");
        let auth = signing::parse_authorization(&value).ok_or_else(unauthenticated)?;
        let (secret, caller) = state
            .access_keys
            .as_ref()
            .and_then(|k| k.lookup(&auth.access))
            .ok_or_else(unauthenticated)?;
        if !signing::verify(&auth, &secret, method, uri, headers, body) {
            return Err(unauthenticated());
        }
        caller
    } else {
        match state.auth.authenticate(headers, Some(project)).await {
            Ok(c) => c,
            Err(ember_api_common::AuthError::IdentityUnavailable) => {
                return Err(EvsError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable.",
                ));
            }
            Err(_) => {
                return Err(EvsError::new(
                    StatusCode::UNAUTHORIZED,
                    "Authentication required.",
                ));
            }
        }
    };
    if project != caller.project_id.0 && !caller.is_admin() {
        return Err(EvsError::bad("invalid tenant id!").with_code("EVS.0001"));
    }
    let query = ember_api_common::query_pairs(uri.query());
    let collection = format!(
        "{}/v2/{project}/{}",
        ember_api_common::base_url(headers),
        segs[2]
    );
    let req = Req {
        svc: &state.service,
        caller,
        body,
        headers,
        query,
        collection,
    };
    match (method.as_str(), rest) {
        ("POST", []) => req.create().await,
        ("GET", []) | ("GET", ["detail"]) => req.list().await,
        ("GET", [id]) => req.show(id).await,
        ("PUT", [id]) => req.update(id).await,
        ("DELETE", [id]) => req.delete(id).await,
        ("POST", [id, "rollback"]) => req.rollback(id).await,
        ("GET", [id, "metadata"]) => req.metadata(id).await,
        ("POST", [id, "metadata"]) => req.write_metadata(id, false).await,
        ("PUT", [id, "metadata"]) => req.write_metadata(id, true).await,
        ("GET", [id, "metadata", key]) => req.metadata_key(id, key).await,
        ("PUT", [id, "metadata", key]) => req.put_metadata_key(id, key).await,
        ("DELETE", [id, "metadata", key]) => req.delete_metadata_key(id, key).await,
        _ => Err(EvsError::new(
            StatusCode::NOT_FOUND,
            "The resource could not be found.",
        )),
    }
}

struct Req<'a> {
    svc: &'a Service,
    caller: Caller,
    body: &'a Bytes,
    headers: &'a HeaderMap,
    query: Vec<(String, String)>,
    /// `/v2/{project}/snapshots` or `/v2/{project}/cloudsnapshots`, for
    /// paging links.
    collection: String,
}

/// EVS's version document (the SDK's `Versions`): one API, v2.
fn version_doc(headers: &HeaderMap) -> Value {
    let base = ember_api_common::base_url(headers);
    json!({
        "id": "v2.0",
        "links": [{"href": format!("{base}/v2/"), "rel": "self"}],
        "media_types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=1"}],
        "min_version": "",
        "status": "SUPPORTED",
        "updated": "2014-06-28T12:20:21Z",
        "version": ""
    })
}

/// What EVS shows of a snapshot (its `SnapshotDetails`).
fn view(s: &Snapshot) -> Value {
    json!({
        "id": s.id.to_string(),
        "status": s.status.as_str(),
        "name": s.name,
        "description": s.description,
        "created_at": s.created_at.to_iso_micros(),
        "updated_at": s.updated_at.unwrap_or(s.created_at).to_iso_micros(),
        "metadata": s.metadata,
        "volume_id": s.volume_id.to_string(),
        "size": s.size_gib,
        "os-extended-snapshot-attributes:project_id": s.project_id.0,
        "os-extended-snapshot-attributes:progress": s.progress,
    })
}

/// A list item (the SDK's `SnapshotList`): the details plus the storage
/// pool keys (Ember has no dedicated storage).
fn list_item(s: &Snapshot) -> Value {
    let mut v = view(s);
    v["dedicated_storage_id"] = Value::Null;
    v["dedicated_storage_name"] = Value::Null;
    v["service_type"] = json!("EVS");
    v
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The create view (seed 004's `SnapshotSummary`): no `os-extended-*`.
fn summary(s: &Snapshot) -> Value {
    let mut v = view(s);
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !k.starts_with("os-extended"));
    }
    v
}

fn not_found(id: &str) -> EvsError {
    EvsError::new(
        StatusCode::NOT_FOUND,
        format!("Snapshot {id} could not be found."),
    )
}

fn check_name(v: Option<&Value>) -> Result<Option<Option<String>>, EvsError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => {
            if s.chars().count() > 64 {
                return Err(EvsError::bad(
                    "Invalid input received: name can contain up to 64 characters.",
                ));
            }
            Ok(Some(Some(s.clone())))
        }
        Some(_) => Err(EvsError::bad(
            "Invalid input received: name must be a string.",
        )),
    }
}

fn check_description(v: Option<&Value>) -> Result<Option<Option<String>>, EvsError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() <= 85 => Ok(Some(Some(s.clone()))),
        Some(Value::String(_)) => Err(EvsError::bad(
            "Invalid input received: description can contain up to 85 characters.",
        )),
        Some(_) => Err(EvsError::bad(
            "Invalid input received: description must be a string.",
        )),
    }
}

fn check_metadata(v: Option<&Value>) -> Result<Metadata, EvsError> {
    match v {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) if !k.is_empty() && k.chars().count() <= 255 && s.chars().count() <= 255 => Ok((k.clone(), s.clone())),
                _ => Err(EvsError::bad(format!("Invalid input received: metadata value of {k} must be a string of at most 255 characters."))),
            })
            .collect(),
        Some(_) => Err(EvsError::bad("Invalid input received: metadata must be a map of strings.")),
    }
}

impl Req<'_> {
    fn json(&self) -> Result<Value, EvsError> {
        ember_api_common::body::parse_json(self.headers, self.body)
            .map_err(|_| EvsError::bad("Malformed request body.").with_code("EVS.1052"))
    }

    fn object(&self, key: &str) -> Result<Map<String, Value>, EvsError> {
        self.json()?
            .get(key)
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| EvsError::bad("Request body is invalid.").with_code("EVS.2108"))
    }

    async fn snapshot(&self, id: &str) -> Result<Snapshot, EvsError> {
        let sid = SnapshotId::parse(id).ok_or_else(|| not_found(id))?;
        self.svc
            .snapshot(&self.caller, sid)
            .await
            .map_err(|_| not_found(id))
    }

    /// The snapshot's id (the service refuses changes to snapshots with
    /// the reserved `autobk_snapshot_` names, in every dialect).
    async fn changeable(&self, id: &str) -> Result<SnapshotId, EvsError> {
        Ok(self.snapshot(id).await?.id)
    }

    async fn create(&self) -> Reply {
        let s = self.object("snapshot")?;
        let raw = s
            .get("volume_id")
            .and_then(Value::as_str)
            .ok_or_else(|| EvsError::bad("invalid volume id!").with_code("EVS.1002"))?;
        let volume_id = VolumeId::parse(raw)
            .ok_or_else(|| EvsError::bad("invalid volume id!").with_code("EVS.1002"))?;
        let force = match s.get("force") {
            None | Some(Value::Null) => false,
            Some(v) => as_bool(v)
                .ok_or_else(|| EvsError::bad("Invalid input received: force must be a boolean."))?,
        };
        let created = self
            .svc
            .create_snapshot(
                &self.caller,
                CreateSnapshot {
                    volume_id,
                    name: check_name(s.get("name"))?.flatten(),
                    description: check_description(s.get("description"))?.flatten(),
                    metadata: check_metadata(s.get("metadata"))?,
                    allow_in_use: force,
                },
            )
            .await?;
        Ok((
            StatusCode::ACCEPTED,
            Some(json!({"snapshot": summary(&created)})),
        ))
    }

    async fn list(&self) -> Reply {
        let q = |k: &str| {
            self.query
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let number = |k: &str| -> Result<Option<usize>, EvsError> {
            q(k).map(|v| {
                v.parse::<usize>()
                    .map_err(|_| EvsError::bad(format!("{k} param must be an integer.")))
            })
            .transpose()
        };
        let limit = number("limit")?;
        if limit.is_some_and(|l| l > 1000) {
            return Err(
                EvsError::bad("invalid filter limit, can not greater than 1000.")
                    .with_code("EVS.2142"),
            );
        }
        let mut filter = SnapshotFilter {
            name: q("name").map(str::to_string),
            ..Default::default()
        };
        if let Some(v) = q("id") {
            match SnapshotId::parse(v) {
                Some(id) => filter.id = Some(id),
                None => filter.match_nothing = true,
            }
        }
        // Filters on what every Ember snapshot shares: each matches all
        // of them or none.
        let zone = self.svc.config().availability_zone.clone();
        let shared: [(&str, Option<&str>); 5] = [
            ("availability_zone", Some(zone.as_str())),
            ("service_type", Some("EVS")),
            ("enterprise_project_id", Some("0")),
            // No dedicated storage pools: any value matches nothing.
            ("dedicated_storage_id", None),
            ("dedicated_storage_name", None),
        ];
        for (key, ours) in shared {
            if let Some(v) = q(key)
                && Some(v) != ours
            {
                filter.match_nothing = true;
            }
        }
        if let Some(v) = q("volume_id") {
            match VolumeId::parse(v) {
                Some(id) => filter.volume_id = Some(id),
                None => filter.match_nothing = true,
            }
        }
        if let Some(st) = q("status") {
            match st.parse() {
                Ok(st) => filter.status = Some(st),
                Err(()) => filter.match_nothing = true,
            }
        }
        let offset = number("offset")?.unwrap_or(0);
        let limit = limit.unwrap_or(1000);
        let query = ListQuery {
            filter,
            limit: Some(limit as u64),
            offset: offset as u64,
            with_count: true,
            ..Default::default()
        };
        let page = self.svc.list_snapshots(&self.caller, query, false).await?;
        let items: Vec<Value> = page.items.iter().map(list_item).collect();
        let count = page.count.unwrap_or(items.len() as u64);
        let mut out = json!({"snapshots": items, "count": count});
        // A page the limit cut short links to the next one (same filters).
        if ((offset + items.len()) as u64) < count && !items.is_empty() {
            let mut params: Vec<(String, String)> = self
                .query
                .iter()
                .filter(|(k, _)| k != "offset" && k != "limit")
                .cloned()
                .collect();
            params.push(("limit".into(), limit.to_string()));
            params.push(("offset".into(), (offset + items.len()).to_string()));
            let query: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            out["snapshots_links"] = json!([{
                "href": format!("{}/detail?{}", self.collection, query.join("&")),
                "rel": "next"
            }]);
        }
        Ok((StatusCode::OK, Some(out)))
    }

    /// `POST …/cloudsnapshots/{id}/rollback`: the snapshot's own volume
    /// goes back to it (any snapshot of it, not only the latest).
    async fn rollback(&self, id: &str) -> Reply {
        let body = self.object("rollback")?;
        let volume = match body.get("volume_id") {
            Some(Value::String(v)) => v.clone(),
            _ => {
                return Err(EvsError::bad("Request body is invalid.").with_code("EVS.2108"));
            }
        };
        let name = match body.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) if n.len() <= 255 => Some(n.clone()),
            Some(_) => {
                return Err(EvsError::bad(
                    "Invalid input received: name can contain up to 255 bytes.",
                ));
            }
        };
        let s = self.snapshot(id).await?;
        let Some(volume_id) = VolumeId::parse(&volume).filter(|v| *v == s.volume_id) else {
            return Err(EvsError::bad(format!(
                "Snapshot {id} can only be rolled back to its own volume {}.",
                s.volume_id
            )));
        };
        let v = self
            .svc
            .rollback_volume(&self.caller, volume_id, s.id, name)
            .await?;
        Ok((
            StatusCode::ACCEPTED,
            Some(json!({"rollback": {"volume_id": v.id.to_string(), "volume_name": v.name}})),
        ))
    }

    async fn show(&self, id: &str) -> Reply {
        let s = self.snapshot(id).await?;
        Ok((StatusCode::OK, Some(json!({"snapshot": view(&s)}))))
    }

    async fn update(&self, id: &str) -> Reply {
        let s = self.object("snapshot")?;
        let name = check_name(s.get("name").or_else(|| s.get("display_name")))?;
        let description = check_description(
            s.get("description")
                .or_else(|| s.get("display_description")),
        )?;
        if name.is_none() && description.is_none() {
            return Err(EvsError::bad("Request body is invalid.").with_code("EVS.2108"));
        }
        let sid = self.changeable(id).await?;
        let updated = self
            .svc
            .update_snapshot(&self.caller, sid, UpdateSnapshot { name, description })
            .await?;
        Ok((StatusCode::OK, Some(json!({"snapshot": view(&updated)}))))
    }

    async fn delete(&self, id: &str) -> Reply {
        let sid = self.changeable(id).await?;
        self.svc.delete_snapshot(&self.caller, sid, false).await?;
        Ok((StatusCode::ACCEPTED, None))
    }

    async fn metadata(&self, id: &str) -> Reply {
        let s = self.snapshot(id).await?;
        Ok((StatusCode::OK, Some(json!({"metadata": s.metadata}))))
    }

    async fn write_metadata(&self, id: &str, replace: bool) -> Reply {
        let body = self.json()?;
        let metadata = match body.get("metadata") {
            Some(m @ Value::Object(_)) => check_metadata(Some(m))?,
            _ => return Err(EvsError::bad("Request body is invalid.").with_code("EVS.2108")),
        };
        let sid = self.changeable(id).await?;
        let how = if replace {
            MetadataWrite::Replace
        } else {
            MetadataWrite::Merge
        };
        let all = self
            .svc
            .write_snapshot_metadata(&self.caller, sid, metadata, how)
            .await?;
        Ok((StatusCode::OK, Some(json!({"metadata": all}))))
    }

    async fn metadata_key(&self, id: &str, key: &str) -> Reply {
        let s = self.snapshot(id).await?;
        match s.metadata.get(key) {
            Some(v) => Ok((StatusCode::OK, Some(json!({"meta": {key: v}})))),
            None => Err(EvsError::new(
                StatusCode::NOT_FOUND,
                format!("Snapshot {id} has no metadata with key {key}."),
            )),
        }
    }

    async fn put_metadata_key(&self, id: &str, key: &str) -> Reply {
        let body = self.json()?;
        let meta = check_metadata(body.get("meta"))?;
        if meta.len() != 1 || !meta.contains_key(key) {
            return Err(EvsError::bad("Request body and URI mismatch."));
        }
        let sid = self.changeable(id).await?;
        self.svc
            .write_snapshot_metadata(&self.caller, sid, meta.clone(), MetadataWrite::Merge)
            .await?;
        Ok((StatusCode::OK, Some(json!({"meta": meta}))))
    }

    async fn delete_metadata_key(&self, id: &str, key: &str) -> Reply {
        let sid = self.changeable(id).await?;
        self.svc
            .delete_snapshot_metadata_key(&self.caller, sid, key.to_string())
            .await?;
        Ok((StatusCode::OK, None))
    }
}
