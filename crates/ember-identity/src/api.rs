//! The Keystone v3 wire format, under `/identity` on Ember's listener.

use crate::fields;
use crate::password;
use crate::service::{
    IdentityError, IdentityService, Reference, TokenInfo, subject_grant, subject_project,
    subject_role, subject_user,
};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use ember_model::{DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, Project, Role, User, new_identity_id};
use serde_json::{Value, json};
use std::sync::Arc;

/// Routes for `/identity` and everything below it; merge into the server.
pub fn router(svc: Arc<IdentityService>) -> Router {
    Router::new()
        .route("/identity", axum::routing::any(handle))
        .route("/identity/", axum::routing::any(handle))
        .route("/identity/{*rest}", axum::routing::any(handle))
        .with_state(svc)
}

type Reply = Result<(StatusCode, Option<Value>, Option<String>), IdentityError>;

fn respond(
    status: StatusCode,
    body: Option<&Value>,
    subject: Option<&str>,
    head: bool,
) -> Response {
    let bytes = match (body, head) {
        (Some(b), false) => serde_json::to_vec(b).expect("json"),
        _ => vec![],
    };
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = subject.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert("x-subject-token", s);
    }
    if let Ok(v) = HeaderValue::from_str(&ember_api_common::new_request_id()) {
        r.headers_mut().insert("x-openstack-request-id", v);
    }
    r
}

fn error_body(e: &IdentityError) -> (StatusCode, Value) {
    let (status, title) = match e {
        IdentityError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        IdentityError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        IdentityError::NotFound(_) => (StatusCode::NOT_FOUND, "Not Found"),
        IdentityError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad Request"),
        IdentityError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        IdentityError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        IdentityError::Internal(detail) => {
            tracing::error!(error = %detail, "identity internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    };
    (
        status,
        json!({"error": {"code": status.as_u16(), "message": e.to_string(), "title": title}}),
    )
}

fn bad(msg: impl Into<String>) -> IdentityError {
    IdentityError::BadRequest(msg.into())
}

fn not_found(kind: &str, id: &str) -> IdentityError {
    IdentityError::NotFound(format!("Could not find {kind}: {id}."))
}

/// The words of the identity API's documented paths, for metric labels.
fn route_words() -> &'static ember_api_common::RouteWords {
    static WORDS: std::sync::OnceLock<ember_api_common::RouteWords> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        ember_api_common::RouteWords::from_operations(&crate::openapi::operations())
    })
}

async fn handle(
    State(svc): State<Arc<IdentityService>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let head = method == Method::HEAD;
    let method_for_metrics = method.clone();
    let (body, _budget) = match ember_api_common::body::read(
        &headers,
        body,
        ember_api_common::body::MAX_BODY_BYTES,
    )
    .await
    {
        Ok(pair) => pair,
        Err(e) => {
            let status = e.status();
            let title = status.canonical_reason().unwrap_or("Bad Request");
            let value =
                json!({"error": {"code": status.as_u16(), "message": e.message(), "title": title}});
            return respond(status, Some(&value), None, head);
        }
    };
    let base = ember_api_common::base_url(&headers);
    let path = uri.path().trim_end_matches('/').to_string();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let query = ember_api_common::query_pairs(uri.query());
    let svc2 = svc.clone();
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        route(&svc2, &method, &segments, &query, &headers, &body, &base)
    })
    .await
    .unwrap_or_else(|e| Err(IdentityError::Internal(e.to_string())));
    let response = match result {
        Ok((status, value, subject)) => respond(status, value.as_ref(), subject.as_deref(), head),
        Err(e) => {
            let (status, value) = error_body(&e);
            respond(status, Some(&value), None, head)
        }
    };
    tracing::info!(path = %path, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "identity request");
    ember_api_common::record_request(
        "identity",
        &method_for_metrics,
        || route_words().label(&path),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn version(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
    })
}

fn domain() -> Value {
    json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME, "description": "The default domain", "enabled": true, "tags": [], "options": {}, "links": {}})
}

fn iso(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The service catalog: every endpoint points back at this server.
pub fn catalog(base: &str) -> Value {
    let services = [
        (
            "block-storage",
            "cinder",
            format!("{base}/v3/$(project_id)s"),
        ),
        ("volumev3", "cinderv3", format!("{base}/v3/$(project_id)s")),
        ("volumev2", "cinderv2", format!("{base}/v2/$(project_id)s")),
        ("compute", "nova", format!("{base}/compute/v2.1")),
        ("identity", "keystone", format!("{base}/identity")),
    ];
    Value::Array(
        services
            .iter()
            .map(|(kind, name, url)| {
                let endpoints: Vec<Value> = ["public", "internal", "admin"]
                    .iter()
                    .map(|iface| {
                        json!({"id": format!("{:x}", md5ish(&format!("{kind}{iface}"))), "interface": iface, "region": "RegionOne", "region_id": "RegionOne", "url": url})
                    })
                    .collect();
                json!({"endpoints": endpoints, "id": format!("{:x}", md5ish(kind)), "type": kind, "name": name})
            })
            .collect(),
    )
}

/// A stable id from a string (FNV-1a), for catalog entries.
fn md5ish(s: &str) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in s.bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

fn token_body(info: &TokenInfo, base: &str, with_catalog: bool) -> Value {
    let p = &info.payload;
    let mut token = json!({
        "methods": p.methods,
        "user": {"domain": {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}, "id": info.user.id, "name": info.user.name, "password_expires_at": null},
        "audit_ids": [p.audit_id],
        "expires_at": iso(p.expires_at),
        "issued_at": iso(p.issued_at),
    });
    if let Some(project) = &info.project {
        token["project"] = json!({"domain": {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}, "id": project.id, "name": project.name});
        token["is_domain"] = json!(false);
        token["roles"] = Value::Array(
            p.roles
                .iter()
                .map(|(id, name)| json!({"id": id, "name": name}))
                .collect(),
        );
        if with_catalog {
            let project_id = project.id.clone();
            let mut cat = catalog(base);
            if let Value::Array(services) = &mut cat {
                for s in services.iter_mut() {
                    if let Some(Value::Array(eps)) = s.get_mut("endpoints") {
                        for ep in eps.iter_mut() {
                            let url = ep["url"]
                                .as_str()
                                .unwrap_or_default()
                                .replace("$(project_id)s", &project_id);
                            ep["url"] = json!(url);
                        }
                    }
                }
            }
            token["catalog"] = cat;
        }
    }
    json!({"token": token})
}

fn reference(v: &Value) -> Reference {
    Reference {
        id: v.get("id").and_then(Value::as_str).map(str::to_string),
        name: v.get("name").and_then(Value::as_str).map(str::to_string),
        domain_id: v
            .pointer("/domain/id")
            .and_then(Value::as_str)
            .map(str::to_string),
        domain_name: v
            .pointer("/domain/name")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

fn parse(body: &[u8]) -> Result<Value, IdentityError> {
    serde_json::from_slice(body).map_err(|_| bad("The request body is not valid JSON."))
}

fn issue_token(
    svc: &IdentityService,
    body: &[u8],
    base: &str,
    query: &[(String, String)],
) -> Reply {
    let v = parse(body)?;
    let auth = v
        .get("auth")
        .filter(|a| a.is_object())
        .ok_or_else(|| bad("'auth' is a required property"))?;
    let identity = auth
        .get("identity")
        .filter(|a| a.is_object())
        .ok_or_else(|| bad("'identity' is a required property"))?;
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("'methods' is a required property"))?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let scope = match auth.get("scope") {
        None | Some(Value::Null) => None,
        Some(s) => match s.get("project") {
            Some(p) if p.is_object() => Some(reference(p)),
            _ => {
                return Err(IdentityError::Unauthorized(
                    "Ember scopes tokens to projects only.".into(),
                ));
            }
        },
    };
    let (token, info) = if methods.contains(&"password") {
        let user = identity
            .pointer("/password/user")
            .filter(|u| u.is_object())
            .ok_or_else(|| bad("'user' is a required property"))?;
        let password = user
            .get("password")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("'password' is a required property"))?;
        svc.authenticate_password(&reference(user), password, scope)?
    } else if methods.contains(&"token") {
        let id = identity
            .pointer("/token/id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("'id' is a required property"))?;
        svc.authenticate_token(id, scope)?
    } else {
        return Err(IdentityError::Unauthorized(
            "Attempted to authenticate with an unsupported method.".into(),
        ));
    };
    let no_catalog = query.iter().any(|(k, _)| k == "nocatalog");
    Ok((
        StatusCode::CREATED,
        Some(token_body(&info, base, !no_catalog)),
        Some(token),
    ))
}

/// The caller of an admin call, which must hold the admin role.
fn require_admin(
    svc: &IdentityService,
    headers: &HeaderMap,
) -> Result<crate::token::Payload, IdentityError> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            IdentityError::Unauthorized("The request you have made requires authentication.".into())
        })?;
    let payload = svc.check(token)?;
    if !payload.roles.iter().any(|(_, n)| n == "admin") {
        return Err(IdentityError::Forbidden(
            "You are not authorized to perform the requested action.".into(),
        ));
    }
    Ok(payload)
}

fn project_json(p: &Project) -> Value {
    json!({"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description, "enabled": p.enabled,
           "parent_id": p.domain_id, "is_domain": false, "tags": [], "options": {}, "links": {}})
}

fn user_json(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled, "default_project_id": u.default_project_id,
           "email": u.email, "description": u.description, "password_expires_at": null, "options": {}, "links": {}})
}

fn role_json(r: &Role) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": null, "description": null, "options": {}, "links": {}})
}

fn filter_name<T>(items: Vec<T>, query: &[(String, String)], name: impl Fn(&T) -> &str) -> Vec<T> {
    match query.iter().find(|(k, _)| k == "name") {
        Some((_, want)) => items.into_iter().filter(|i| name(i) == want).collect(),
        None => items,
    }
}

fn route(
    svc: &IdentityService,
    method: &Method,
    segs: &[String],
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    base: &str,
) -> Reply {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let subject = || {
        headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match (m, &s[..]) {
        ("GET", ["identity"]) => Ok((
            StatusCode::MULTIPLE_CHOICES,
            Some(json!({"versions": {"values": [version(base)]}})),
            None,
        )),
        ("GET", ["identity", "v3"]) => Ok((
            StatusCode::OK,
            Some(json!({"version": version(base)})),
            None,
        )),
        ("POST", ["identity", "v3", "auth", "tokens"]) => issue_token(svc, body, base, query),
        ("GET" | "HEAD", ["identity", "v3", "auth", "tokens"]) => {
            let caller = headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            svc.check(caller)?;
            let subject =
                subject().ok_or_else(|| IdentityError::NotFound("Could not find token.".into()))?;
            let info = svc.validate(&subject).map_err(|_| {
                IdentityError::NotFound(format!("Could not find token: {subject}."))
            })?;
            let no_catalog = query.iter().any(|(k, _)| k == "nocatalog");
            Ok((
                StatusCode::OK,
                Some(token_body(&info, base, !no_catalog)),
                Some(subject),
            ))
        }
        ("DELETE", ["identity", "v3", "auth", "tokens"]) => {
            let caller = headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            svc.check(caller)?;
            let subject =
                subject().ok_or_else(|| IdentityError::NotFound("Could not find token.".into()))?;
            svc.revoke(&subject).map_err(|_| {
                IdentityError::NotFound(format!("Could not find token: {subject}."))
            })?;
            Ok((StatusCode::NO_CONTENT, None, None))
        }
        ("GET", ["identity", "v3", "auth", "catalog"]) => {
            let caller = headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            svc.check(caller)?;
            Ok((
                StatusCode::OK,
                Some(json!({"catalog": catalog(base)})),
                None,
            ))
        }
        // Keystone's EC2 credentials: the access keys the Huawei SDK signs with.
        (
            m @ ("POST" | "GET" | "DELETE"),
            [
                "identity",
                "v3",
                "users",
                user,
                "credentials",
                "OS-EC2",
                rest @ ..,
            ],
        ) => {
            let caller = headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let acting = svc.check(caller)?;
            let view = |k: &ember_model::AccessKey| {
                json!({"user_id": k.user_id, "tenant_id": k.project_id, "access": k.access, "secret": svc.secret_of(k), "trust_id": null,
                       "links": {"self": format!("{base}/identity/v3/users/{}/credentials/OS-EC2/{}", k.user_id, k.access)}})
            };
            match (m, rest) {
                ("POST", []) => {
                    let v = parse(body)?;
                    let project = v
                        .get("tenant_id")
                        .and_then(Value::as_str)
                        .or(acting.project_id.as_deref())
                        .ok_or_else(|| bad("'tenant_id' is a required property"))?
                        .to_string();
                    let key = svc.create_access_key(&acting, user, &project)?;
                    Ok((
                        StatusCode::CREATED,
                        Some(json!({"credential": view(&key)})),
                        None,
                    ))
                }
                ("GET", []) => {
                    let keys = svc.access_keys(&acting, user)?;
                    Ok((
                        StatusCode::OK,
                        Some(
                            json!({"credentials": keys.iter().map(view).collect::<Vec<_>>(), "links": {}}),
                        ),
                        None,
                    ))
                }
                ("GET", [access]) => {
                    let keys = svc.access_keys(&acting, user)?;
                    let k = keys.iter().find(|k| k.access == *access).ok_or_else(|| {
                        IdentityError::NotFound(format!("Could not find credential: {access}."))
                    })?;
                    Ok((StatusCode::OK, Some(json!({"credential": view(k)})), None))
                }
                ("DELETE", [access]) => {
                    svc.delete_access_key(&acting, user, access)?;
                    Ok((StatusCode::NO_CONTENT, None, None))
                }
                _ => Err(IdentityError::NotFound(
                    "The resource could not be found.".into(),
                )),
            }
        }
        ("GET", ["identity", "v3", "domains"]) => {
            require_admin(svc, headers)?;
            Ok((
                StatusCode::OK,
                Some(json!({"domains": [domain()], "links": {}})),
                None,
            ))
        }
        ("GET", ["identity", "v3", "domains", id]) if *id == DEFAULT_DOMAIN_ID => {
            require_admin(svc, headers)?;
            Ok((StatusCode::OK, Some(json!({"domain": domain()})), None))
        }
        _ => admin_route(
            svc,
            m,
            &s[2.min(s.len())..],
            query,
            headers,
            body,
            s.first() == Some(&"identity") && s.get(1) == Some(&"v3"),
        ),
    }
}

fn store_err<T>(r: ember_store::Result<T>) -> Result<T, IdentityError> {
    r.map_err(IdentityError::from)
}

fn admin_route(
    svc: &IdentityService,
    m: &str,
    s: &[&str],
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    v3: bool,
) -> Reply {
    if !v3 {
        return Err(IdentityError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    require_admin(svc, headers)?;
    let store = svc.store();
    let ok = |v: Value| Ok((StatusCode::OK, Some(v), None));
    match (m, s) {
        ("GET", ["projects"]) => {
            let projects = filter_name(
                store_err(store.read().and_then(|mut t| t.projects()))?,
                query,
                |p| &p.name,
            );
            ok(
                json!({"projects": projects.iter().map(project_json).collect::<Vec<_>>(), "links": {}}),
            )
        }
        ("POST", ["projects"]) => {
            let v = parse(body)?;
            let p = fields::PROJECT_CREATE.check(&v)?;
            let name = p["name"].as_str().unwrap_or_default();
            let mut tx = store_err(store.write())?;
            if store_err(tx.projects())?.iter().any(|x| x.name == name) {
                return Err(IdentityError::Conflict(format!(
                    "Conflict occurred attempting to store project - it is not permitted to have two projects with the same name in the same domain : {name}."
                )));
            }
            let project = Project {
                id: new_identity_id(),
                name: name.into(),
                domain_id: DEFAULT_DOMAIN_ID.into(),
                description: p
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                enabled: p.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            };
            store_err(tx.put_project(&project))?;
            store_err(tx.commit())?;
            Ok((
                StatusCode::CREATED,
                Some(json!({"project": project_json(&project)})),
                None,
            ))
        }
        ("GET", ["projects", id]) => {
            let p = store_err(store.read().and_then(|mut t| t.project(id)))?
                .ok_or_else(|| not_found("project", id))?;
            ok(json!({"project": project_json(&p)}))
        }
        ("PATCH", ["projects", id]) => {
            let v = parse(body)?;
            let patch = fields::PROJECT_UPDATE.check(&v)?;
            let mut tx = store_err(store.write())?;
            let mut p = store_err(tx.project(id))?.ok_or_else(|| not_found("project", id))?;
            if let Some(n) = patch.get("name").and_then(Value::as_str) {
                p.name = n.into();
            }
            if let Some(d) = patch.get("description").and_then(Value::as_str) {
                p.description = d.into();
            }
            let mut revoke = vec![];
            if let Some(e) = patch.get("enabled").and_then(Value::as_bool) {
                if !e {
                    revoke.push(subject_project(&p.id));
                }
                p.enabled = e;
            }
            store_err(tx.put_project(&p))?;
            svc.commit_revoking(tx, &revoke)?;
            ok(json!({"project": project_json(&p)}))
        }
        ("DELETE", ["projects", id]) => {
            let mut tx = store_err(store.write())?;
            store_err(tx.project(id))?.ok_or_else(|| not_found("project", id))?;
            store_err(tx.delete_project(id))?;
            svc.commit_revoking(tx, &[subject_project(id)])?;
            Ok((StatusCode::NO_CONTENT, None, None))
        }
        ("GET", ["users"]) => {
            let users = filter_name(
                store_err(store.read().and_then(|mut t| t.users()))?,
                query,
                |u| &u.name,
            );
            ok(json!({"users": users.iter().map(user_json).collect::<Vec<_>>(), "links": {}}))
        }
        ("POST", ["users"]) => {
            let v = parse(body)?;
            let u = fields::USER_CREATE.check(&v)?;
            let name = u["name"].as_str().unwrap_or_default();
            let mut tx = store_err(store.write())?;
            if store_err(tx.users())?.iter().any(|x| x.name == name) {
                return Err(IdentityError::Conflict(format!(
                    "Conflict occurred attempting to store user - Duplicate entry found with name {name} at domain ID default."
                )));
            }
            let user = User {
                id: new_identity_id(),
                name: name.into(),
                domain_id: DEFAULT_DOMAIN_ID.into(),
                password_hash: password::hash(
                    u.get("password")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ),
                enabled: u.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                default_project_id: u
                    .get("default_project_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                email: u.get("email").and_then(Value::as_str).map(str::to_string),
                description: u
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            store_err(tx.put_user(&user))?;
            store_err(tx.commit())?;
            Ok((
                StatusCode::CREATED,
                Some(json!({"user": user_json(&user)})),
                None,
            ))
        }
        ("GET", ["users", id]) => {
            let u = store_err(store.read().and_then(|mut t| t.user(id)))?
                .ok_or_else(|| not_found("user", id))?;
            ok(json!({"user": user_json(&u)}))
        }
        ("PATCH", ["users", id]) => {
            let v = parse(body)?;
            let patch = fields::USER_UPDATE.check(&v)?;
            let mut tx = store_err(store.write())?;
            let mut u = store_err(tx.user(id))?.ok_or_else(|| not_found("user", id))?;
            if let Some(n) = patch.get("name").and_then(Value::as_str) {
                u.name = n.into();
            }
            // As Keystone: a new password or disabling the user ends every
            // token the user holds.
            let mut revoke = vec![];
            if let Some(p) = patch.get("password").and_then(Value::as_str) {
                u.password_hash = password::hash(p);
                revoke.push(subject_user(&u.id));
            }
            if let Some(e) = patch.get("enabled").and_then(Value::as_bool) {
                if !e {
                    revoke.push(subject_user(&u.id));
                }
                u.enabled = e;
            }
            if let Some(e) = patch.get("email").and_then(Value::as_str) {
                u.email = Some(e.into());
            }
            store_err(tx.put_user(&u))?;
            revoke.dedup();
            svc.commit_revoking(tx, &revoke)?;
            ok(json!({"user": user_json(&u)}))
        }
        ("DELETE", ["users", id]) => {
            let mut tx = store_err(store.write())?;
            store_err(tx.user(id))?.ok_or_else(|| not_found("user", id))?;
            store_err(tx.delete_user(id))?;
            // The user's access keys (EC2 credentials) go with the user.
            for key in store_err(tx.access_keys())? {
                if key.user_id == *id {
                    store_err(tx.delete_access_key(&key.access))?;
                }
            }
            svc.commit_revoking(tx, &[subject_user(id)])?;
            Ok((StatusCode::NO_CONTENT, None, None))
        }
        ("GET", ["roles"]) => {
            let roles = filter_name(
                store_err(store.read().and_then(|mut t| t.roles()))?,
                query,
                |r| &r.name,
            );
            ok(json!({"roles": roles.iter().map(role_json).collect::<Vec<_>>(), "links": {}}))
        }
        ("POST", ["roles"]) => {
            let v = parse(body)?;
            let name = fields::ROLE_CREATE.check(&v)?["name"]
                .as_str()
                .unwrap_or_default();
            let mut tx = store_err(store.write())?;
            if store_err(tx.roles())?.iter().any(|r| r.name == name) {
                return Err(IdentityError::Conflict(format!(
                    "Conflict occurred attempting to store role - Duplicate entry found with name {name}."
                )));
            }
            let role = Role {
                id: new_identity_id(),
                name: name.into(),
            };
            store_err(tx.put_role(&role))?;
            store_err(tx.commit())?;
            Ok((
                StatusCode::CREATED,
                Some(json!({"role": role_json(&role)})),
                None,
            ))
        }
        ("GET", ["roles", id]) => {
            let r = store_err(store.read().and_then(|mut t| t.role(id)))?
                .ok_or_else(|| not_found("role", id))?;
            ok(json!({"role": role_json(&r)}))
        }
        ("DELETE", ["roles", id]) => {
            let mut tx = store_err(store.write())?;
            store_err(tx.role(id))?.ok_or_else(|| not_found("role", id))?;
            store_err(tx.delete_role(id))?;
            svc.commit_revoking(tx, &[subject_role(id)])?;
            Ok((StatusCode::NO_CONTENT, None, None))
        }
        ("GET", ["projects", p, "users", u, "roles"]) => {
            let mut tx = store_err(store.read())?;
            let granted = store_err(tx.role_assignments(u, p))?;
            let roles: Vec<Value> = store_err(tx.roles())?
                .iter()
                .filter(|r| granted.contains(&r.id))
                .map(role_json)
                .collect();
            ok(json!({"roles": roles, "links": {}}))
        }
        (m @ ("PUT" | "HEAD" | "DELETE"), ["projects", p, "users", u, "roles", r]) => {
            let mut tx = store_err(store.write())?;
            store_err(tx.project(p))?.ok_or_else(|| not_found("project", p))?;
            store_err(tx.user(u))?.ok_or_else(|| not_found("user", u))?;
            store_err(tx.role(r))?.ok_or_else(|| not_found("role", r))?;
            let mut revoke = vec![];
            match m {
                "PUT" => store_err(tx.grant_role(u, p, r))?,
                "DELETE" => {
                    // Tokens carry their roles: the user's tokens on the
                    // project end (Keystone does the same).
                    store_err(tx.revoke_role(u, p, r))?;
                    revoke.push(subject_grant(u, p));
                }
                _ => {
                    if !store_err(tx.role_assignments(u, p))?.iter().any(|x| x == r) {
                        return Err(not_found("role assignment", r));
                    }
                }
            }
            svc.commit_revoking(tx, &revoke)?;
            Ok((StatusCode::NO_CONTENT, None, None))
        }
        ("GET", ["role_assignments"]) => {
            let want = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
            let (user, project) = (want("user.id"), want("scope.project.id"));
            let rows = store_err(store.read().and_then(|mut t| t.all_role_assignments()))?;
            let list: Vec<Value> = rows
                .iter()
                .filter(|(u, p, _)| user.as_ref().is_none_or(|x| x == u) && project.as_ref().is_none_or(|x| x == p))
                .map(|(u, p, r)| json!({"role": {"id": r}, "user": {"id": u}, "scope": {"project": {"id": p}}, "links": {}}))
                .collect();
            ok(json!({"role_assignments": list, "links": {}}))
        }
        _ => Err(IdentityError::NotFound(
            "The resource could not be found.".into(),
        )),
    }
}
