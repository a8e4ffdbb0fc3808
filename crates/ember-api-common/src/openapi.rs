//! A small builder for the OpenAPI 3.1 documents Ember serves at
//! `/openapi.json`. Each dialect lists its operations next to its router
//! (and a test there checks that every listed operation routes); request
//! bodies reuse the validation schemas of [`crate::schema`], so what the
//! document calls valid is what the server accepts.

use serde_json::{Map, Value, json};
use std::sync::Arc;

/// One documented operation.
#[derive(Clone, Debug)]
pub struct Operation {
    pub method: &'static str,
    /// A path template, parameters in braces: `/v3/{project_id}/snapshots`.
    pub path: String,
    pub summary: String,
    pub tag: &'static str,
    pub params: Vec<Param>,
    pub body: Option<Content>,
    pub responses: Vec<(u16, Content)>,
    /// Served without credentials (version documents, token issue).
    pub public: bool,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    /// `path`, `query` or `header`.
    pub location: &'static str,
    pub required: bool,
    pub schema: Value,
}

/// A request or response body.
#[derive(Clone, Debug)]
pub enum Content {
    Json(Value),
    Bytes,
    Text,
    Empty,
}

impl Operation {
    pub fn new(method: &'static str, path: impl Into<String>, summary: impl Into<String>) -> Self {
        Operation {
            method,
            path: path.into(),
            summary: summary.into(),
            tag: "",
            params: Vec::new(),
            body: None,
            responses: Vec::new(),
            public: false,
        }
    }

    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    pub fn query(mut self, name: &str, schema: Value) -> Self {
        self.params.push(Param {
            name: name.into(),
            location: "query",
            required: false,
            schema,
        });
        self
    }

    pub fn header(mut self, name: &str, required: bool, schema: Value) -> Self {
        self.params.push(Param {
            name: name.into(),
            location: "header",
            required,
            schema,
        });
        self
    }

    /// Overrides the schema of a path parameter (default: a non-empty
    /// string).
    pub fn path_param(mut self, name: &str, schema: Value) -> Self {
        self.params.push(Param {
            name: name.into(),
            location: "path",
            required: true,
            schema,
        });
        self
    }

    pub fn json_body(mut self, schema: Value) -> Self {
        self.body = Some(Content::Json(schema));
        self
    }

    pub fn bytes_body(mut self) -> Self {
        self.body = Some(Content::Bytes);
        self
    }

    pub fn responds(mut self, status: u16, content: Content) -> Self {
        self.responses.push((status, content));
        self
    }

    /// The same error body for each of these statuses.
    pub fn errors(mut self, statuses: &[u16], body: &Value) -> Self {
        for s in statuses {
            if !self.responses.iter().any(|(have, _)| have == s) {
                self.responses.push((*s, Content::Json(body.clone())));
            }
        }
        self
    }

    /// The names in braces in the path template, in order.
    pub fn path_names(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect()
    }

    /// The path with every parameter replaced by `sample(name)`, for tests
    /// that check the router knows every documented path.
    pub fn concrete_path(&self, sample: impl Fn(&str) -> String) -> String {
        self.path
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => sample(name),
                    None => s.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/")
    }

    fn operation_id(&self) -> String {
        let mut id = self.method.to_ascii_lowercase();
        for seg in self.path.split('/').filter(|s| !s.is_empty()) {
            id.push('_');
            id.extend(
                seg.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
            );
        }
        id
    }

    fn to_json(&self) -> Value {
        let mut params: Vec<Value> = Vec::new();
        for name in self.path_names() {
            let schema = self
                .params
                .iter()
                .find(|p| p.location == "path" && p.name == name)
                .map(|p| p.schema.clone())
                .unwrap_or_else(|| json!({"type": "string", "minLength": 1}));
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
        for p in self.params.iter().filter(|p| p.location != "path") {
            params.push(json!({"name": p.name, "in": p.location, "required": p.required, "schema": p.schema}));
        }
        let mut op = json!({
            "operationId": self.operation_id(),
            "summary": self.summary,
            "tags": [self.tag],
            "parameters": params,
        });
        if self.public {
            op["security"] = json!([]);
        }
        if let Some(body) = &self.body {
            op["requestBody"] = json!({"required": true, "content": content_json(body)});
        }
        let mut responses = Map::new();
        for (status, content) in &self.responses {
            let mut r = json!({"description": reason(*status)});
            if !matches!(content, Content::Empty) {
                r["content"] = content_json(content);
            }
            responses.insert(status.to_string(), r);
        }
        op["responses"] = Value::Object(responses);
        op
    }
}

fn content_json(c: &Content) -> Value {
    match c {
        Content::Json(schema) => json!({"application/json": {"schema": schema}}),
        Content::Bytes => json!({"application/octet-stream": {"schema": {}}}),
        Content::Text => json!({"text/plain": {"schema": {"type": "string"}}}),
        Content::Empty => json!({}),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        300 => "Multiple Choices",
        302 => "Found",
        400 => "Bad Request: the request does not match the schema or the resource's state",
        401 => "Unauthorized: no or an invalid token",
        403 => "Forbidden: the caller's roles do not allow this",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable: unsupported microversion",
        409 => "Conflict",
        413 => "Request Entity Too Large: body over the limit, or over quota",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Response",
    }
}

/// The whole document. `token_header` names the header that carries the
/// credentials, when the API has one.
pub fn document(
    title: &str,
    description: &str,
    token_header: Option<&str>,
    ops: &[Operation],
) -> Value {
    let mut paths = Map::new();
    for op in ops {
        let entry = paths
            .entry(op.path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let mut json = op.to_json();
        for (status, links) in links_from(op, ops) {
            json["responses"][status.to_string()]["links"] = links;
        }
        entry[op.method.to_ascii_lowercase()] = json;
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": env!("CARGO_PKG_VERSION"), "description": description},
        "paths": paths,
    });
    if let Some(h) = token_header {
        doc["components"] =
            json!({"securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": h}}});
        doc["security"] = json!([{"token": []}]);
    }
    doc
}

/// OpenAPI links from a create to what can be done with what it created,
/// derived from the paths: `POST /a/{p}/things` answering
/// `{"thing": {"id": …}}` links to every operation on
/// `/a/{p}/things/{thing_id}` that needs no other parameter, so stateful
/// testing can chain create → show → update → delete.
fn links_from(op: &Operation, ops: &[Operation]) -> Vec<(u16, Value)> {
    if op.method != "POST" || op.path.ends_with('}') {
        return Vec::new();
    }
    let own = op.path_names();
    let mut out = Vec::new();
    for (status, content) in &op.responses {
        let Content::Json(schema) = content else {
            continue;
        };
        if !(200..300).contains(status) {
            continue;
        }
        let Some(key) = schema["required"]
            .as_array()
            .filter(|r| r.len() == 1)
            .and_then(|r| r[0].as_str())
        else {
            continue;
        };
        let prefix = format!("{}/{{", op.path);
        let mut links = Map::new();
        for target in ops {
            let Some(rest) = target.path.strip_prefix(&prefix) else {
                continue;
            };
            let names = target.path_names();
            let Some(new_param) = rest.split('}').next() else {
                continue;
            };
            if names.len() != own.len() + 1 || names.last().map(String::as_str) != Some(new_param) {
                continue;
            }
            let mut parameters = Map::new();
            for name in &own {
                parameters.insert(name.clone(), json!(format!("$request.path.{name}")));
            }
            parameters.insert(
                new_param.to_string(),
                json!(format!("$response.body#/{key}/id")),
            );
            links.insert(
                target.operation_id(),
                json!({"operationId": target.operation_id(), "parameters": parameters}),
            );
        }
        if !links.is_empty() {
            out.push((*status, Value::Object(links)));
        }
    }
    out
}

/// Shorthands for response schemas.
pub mod shapes {
    use serde_json::{Value, json};

    pub fn string() -> Value {
        json!({"type": "string"})
    }
    pub fn nullable_string() -> Value {
        json!({"type": ["string", "null"]})
    }
    pub fn integer() -> Value {
        json!({"type": "integer"})
    }
    pub fn boolean() -> Value {
        json!({"type": "boolean"})
    }
    pub fn any_object() -> Value {
        json!({"type": "object"})
    }
    pub fn string_map() -> Value {
        json!({"type": "object", "additionalProperties": {"type": "string"}})
    }
    pub fn array(items: Value) -> Value {
        json!({"type": "array", "items": items})
    }

    /// An object with these properties, all required, others allowed.
    pub fn object(props: &[(&str, Value)]) -> Value {
        let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
        let properties: serde_json::Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        json!({"type": "object", "properties": properties, "required": required})
    }

    /// `{key: inner}`.
    pub fn wrapped(key: &str, inner: Value) -> Value {
        object(&[(key, inner)])
    }

    /// OpenStack's wsgi fault: `{"badRequest": {"code": 400, "message": "…"}}`
    /// (Cinder and Nova).
    pub fn fault_envelope() -> Value {
        json!({
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": object(&[("code", integer()), ("message", string())])
        })
    }

    /// `{key: [inner]}`, with optional pagination links beside it.
    pub fn list(key: &str, inner: Value) -> Value {
        object(&[(key, array(inner))])
    }
}

/// A `GET` route serving the document `build` returns, built on the first
/// request and kept serialized. Built eagerly, the ~1 MiB document's value
/// tree took some 35 MiB of an idle service's memory (and every request
/// cloned it).
pub fn route<S: Clone + Send + Sync + 'static>(
    build: impl Fn() -> Value + Send + Sync + 'static,
) -> axum::routing::MethodRouter<S> {
    let build = Arc::new(build);
    let built: Arc<std::sync::OnceLock<axum::body::Bytes>> = Arc::default();
    axum::routing::get(move || {
        let (build, built) = (build.clone(), built.clone());
        async move {
            let body = built
                .get_or_init(|| {
                    serde_json::to_vec(&build())
                        .expect("a JSON value serializes")
                        .into()
                })
                .clone();
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    })
}
