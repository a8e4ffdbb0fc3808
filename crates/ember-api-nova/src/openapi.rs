//! Nova's snapshot routes as OpenAPI operations, under
//! `/v2.1/{project_id}` (also served under `/compute/v2.1`, and without
//! the project segment; those aliases are not listed twice).

use ember_api_common::openapi::shapes::*;
use ember_api_common::openapi::{Content, Operation};
use serde_json::{Value, json};

/// Schema (400), token (401), policy (403), unknown resource or a route
/// hidden at this microversion (404), unsupported microversion (406),
/// size or quota (413), media type (415), full disk (503).
const ERRORS: &[u16] = &[400, 401, 403, 404, 406, 409, 413, 415, 503];

fn error_body() -> Value {
    fault_envelope()
}

fn snapshot() -> Value {
    object(&[
        ("id", string()),
        ("volumeId", string()),
        ("status", string()),
        ("size", integer()),
        ("createdAt", string()),
        ("displayName", nullable_string()),
        ("displayDescription", nullable_string()),
    ])
}

pub fn operations() -> Vec<Operation> {
    let root = "/v2.1/{project_id}";
    let p = |s: &str| format!("{root}{s}");
    let project = json!({"type": "string", "pattern": "^[0-9a-f-]+$", "minLength": 1});
    let microversion = json!({
        "type": "string",
        "pattern": "^(2\\.([1-9]|[1-9][0-9]|10[0-4])|latest)$",
        "description": "Nova microversion, 2.1 to 2.104; os-snapshots is gone from 2.36"
    });
    let error = error_body();
    let ok = |body: Value| Content::Json(body);
    let ops = vec![
        Operation::new("GET", p("/os-snapshots"), "List snapshots (Nova proxy)")
            .query("limit", json!({"type": "integer", "minimum": 0}))
            .query("offset", json!({"type": "integer", "minimum": 0}))
            .responds(200, ok(list("snapshots", snapshot()))),
        Operation::new(
            "GET",
            p("/os-snapshots/detail"),
            "List snapshots with details (Nova proxy)",
        )
        .query("limit", json!({"type": "integer", "minimum": 0}))
        .query("offset", json!({"type": "integer", "minimum": 0}))
        .responds(200, ok(list("snapshots", snapshot()))),
        Operation::new("POST", p("/os-snapshots"), "Create a snapshot (seed 001)")
            .json_body(crate::snapshots::create_schema().to_json_schema())
            .responds(200, ok(wrapped("snapshot", snapshot()))),
        Operation::new("GET", p("/os-snapshots/{snapshot_id}"), "Show a snapshot")
            .responds(200, ok(wrapped("snapshot", snapshot()))),
        Operation::new(
            "DELETE",
            p("/os-snapshots/{snapshot_id}"),
            "Delete a snapshot",
        )
        .responds(202, Content::Empty),
        Operation::new(
            "POST",
            p("/os-assisted-volume-snapshots"),
            "Create an assisted volume snapshot (seed 003; admin or service role)",
        )
        .json_body(crate::assisted::create_schema().to_json_schema())
        .responds(
            200,
            ok(wrapped(
                "snapshot",
                object(&[("id", nullable_string()), ("volumeId", string())]),
            )),
        ),
        Operation::new(
            "DELETE",
            p("/os-assisted-volume-snapshots/{snapshot_id}"),
            "Delete an assisted volume snapshot",
        )
        .query(
            "delete_info",
            json!({"type": "string", "contentMediaType": "application/json"}),
        )
        .responds(204, Content::Empty),
    ];
    let mut out: Vec<Operation> = ops
        .into_iter()
        .map(|op| {
            op.tag("nova")
                .path_param("project_id", project.clone())
                .header("X-OpenStack-Nova-API-Version", false, microversion.clone())
                .errors(ERRORS, &error)
        })
        .collect();
    out.push(
        Operation::new("GET", "/v2.1/", "Show the compute API version")
            .tag("nova")
            .public()
            .responds(200, ok(any_object())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn every_documented_operation_routes() {
        let mut routed = 0;
        for op in operations() {
            if op.path.ends_with('/') {
                continue;
            }
            let path = op.concrete_path(|_| "0123abcd".into());
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let method = Method::from_bytes(op.method.as_bytes()).unwrap();
            let rest = &segs[2..];
            assert!(
                crate::snapshots::route(&method, rest).is_some()
                    || crate::assisted::route(&method, rest).is_some(),
                "{} {}",
                op.method,
                op.path
            );
            routed += 1;
        }
        // os-snapshots: list, detail, create, show, delete; assisted:
        // create, delete.
        assert_eq!(routed, 7);
    }
}
