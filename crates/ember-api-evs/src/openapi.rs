//! The EVS snapshot routes (seed 004) as OpenAPI operations, for the EVS
//! listener's own `/openapi.json`. Both collection names EVS uses,
//! `snapshots` and `cloudsnapshots`, are listed.

use ember_api_common::openapi::shapes::*;
use ember_api_common::openapi::{Content, Operation};
use serde_json::{Value, json};

/// `{"error": {"message", "code"}}`; `code` is EVS's (`EVS.1002`) or the
/// HTTP status as a string.
fn error_body() -> Value {
    wrapped(
        "error",
        object(&[("message", string()), ("code", string())]),
    )
}

const ERRORS: &[u16] = &[400, 401, 403, 404, 409, 413, 503];

fn snapshot() -> Value {
    object(&[
        ("id", string()),
        ("status", string()),
        ("name", nullable_string()),
        ("description", nullable_string()),
        ("created_at", string()),
        ("updated_at", string()),
        ("metadata", string_map()),
        ("volume_id", string()),
        ("size", integer()),
    ])
}

fn metadata_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "maxLength": 255}})
}

fn create_body() -> Value {
    json!({
        "type": "object",
        "required": ["snapshot"],
        "properties": {"snapshot": {
            "type": "object",
            "required": ["volume_id"],
            "properties": {
                "volume_id": {"type": "string", "format": "uuid"},
                "force": {"type": "boolean"},
                "name": {"type": ["string", "null"], "maxLength": 64},
                "description": {"type": ["string", "null"], "maxLength": 85},
                "metadata": metadata_map()
            }
        }}
    })
}

fn update_body() -> Value {
    json!({
        "type": "object",
        "required": ["snapshot"],
        "properties": {"snapshot": {
            "type": "object",
            "properties": {
                "name": {"type": ["string", "null"], "maxLength": 64},
                "description": {"type": ["string", "null"], "maxLength": 85}
            }
        }}
    })
}

pub fn operations() -> Vec<Operation> {
    let mut ops = Vec::new();
    for collection in ["snapshots", "cloudsnapshots"] {
        let p = |s: &str| format!("/v2/{{project_id}}/{collection}{s}");
        let ok = |body: Value| Content::Json(body);
        let list_op = |path: String, summary: &str| {
            Operation::new("GET", path, summary)
                .query(
                    "limit",
                    json!({"type": "integer", "minimum": 0, "maximum": 1000}),
                )
                .query("offset", json!({"type": "integer", "minimum": 0}))
                .query("marker", json!({"type": "string"}))
                .query("status", json!({"type": "string"}))
                .query("name", json!({"type": "string"}))
                .query("volume_id", json!({"type": "string"}))
                .query("id", json!({"type": "string"}))
                .query("availability_zone", json!({"type": "string"}))
                .query("service_type", json!({"type": "string"}))
                .query("enterprise_project_id", json!({"type": "string"}))
                .query("dedicated_storage_id", json!({"type": "string"}))
                .query("dedicated_storage_name", json!({"type": "string"}))
                .responds(
                    200,
                    ok(json!({
                        "type": "object",
                        "required": ["snapshots", "count"],
                        "properties": {
                            "snapshots": array(snapshot()),
                            "count": integer(),
                            "snapshots_links": array(object(&[("href", string()), ("rel", string())]))
                        }
                    })),
                )
        };
        ops.extend([
            Operation::new("POST", p(""), "Create a snapshot (seed 004)")
                .json_body(create_body())
                .responds(202, ok(wrapped("snapshot", snapshot()))),
            list_op(p(""), "List snapshots"),
            list_op(p("/detail"), "List snapshots with details"),
            Operation::new("GET", p("/{snapshot_id}"), "Show a snapshot")
                .responds(200, ok(wrapped("snapshot", snapshot()))),
            Operation::new("PUT", p("/{snapshot_id}"), "Update a snapshot")
                .json_body(update_body())
                .responds(200, ok(wrapped("snapshot", snapshot()))),
            Operation::new("DELETE", p("/{snapshot_id}"), "Delete a snapshot")
                .responds(202, Content::Empty),
            Operation::new(
                "POST",
                p("/{snapshot_id}/rollback"),
                "Roll the snapshot's volume back to it",
            )
            .json_body(json!({
                "type": "object",
                "required": ["rollback"],
                "properties": {"rollback": {
                    "type": "object",
                    "required": ["volume_id"],
                    "properties": {
                        "volume_id": {"type": "string", "format": "uuid"},
                        "name": {"type": ["string", "null"], "maxLength": 255}
                    }
                }}
            }))
            .responds(
                202,
                ok(wrapped(
                    "rollback",
                    object(&[("volume_id", string()), ("volume_name", nullable_string())]),
                )),
            ),
            Operation::new("GET", p("/{snapshot_id}/metadata"), "Show metadata")
                .responds(200, ok(wrapped("metadata", string_map()))),
            Operation::new("POST", p("/{snapshot_id}/metadata"), "Add metadata")
                .json_body(wrapped("metadata", metadata_map()))
                .responds(200, ok(wrapped("metadata", string_map()))),
            Operation::new("PUT", p("/{snapshot_id}/metadata"), "Replace metadata")
                .json_body(wrapped("metadata", metadata_map()))
                .responds(200, ok(wrapped("metadata", string_map()))),
            Operation::new(
                "GET",
                p("/{snapshot_id}/metadata/{key}"),
                "Show a metadata item",
            )
            .responds(200, ok(wrapped("meta", string_map()))),
            Operation::new(
                "PUT",
                p("/{snapshot_id}/metadata/{key}"),
                "Set a metadata item",
            )
            .json_body(wrapped("meta", metadata_map()))
            .responds(200, ok(wrapped("meta", string_map()))),
            Operation::new(
                "DELETE",
                p("/{snapshot_id}/metadata/{key}"),
                "Delete a metadata item",
            )
            .responds(200, Content::Empty),
        ]);
    }
    let project = json!({"type": "string", "minLength": 1});
    let error = error_body();
    let versions = json!({"type": "object", "required": ["versions"], "properties": {"versions": array(object(&[
        ("id", string()),
        ("status", string()),
    ]))}});
    let mut ops: Vec<Operation> = ops
        .into_iter()
        .map(|op| {
            op.tag("evs")
                .path_param("project_id", project.clone())
                .errors(ERRORS, &error)
        })
        .collect();
    ops.extend([
        Operation::new("GET", "/", "List API versions")
            .public()
            .tag("evs")
            .responds(200, Content::Json(versions.clone())),
        Operation::new("GET", "/v2", "Show API version 2")
            .public()
            .tag("evs")
            .responds(200, Content::Json(versions)),
    ]);
    ops
}

/// The EVS listener's document.
pub fn document() -> Value {
    ember_api_common::openapi::document(
        "Ember: Huawei Cloud EVS snapshot API",
        "The EVS snapshot API (seed 004) on Ember's EVS listener. Requests carry an X-Auth-Token, or are signed with an access key (SDK-HMAC-SHA256).",
        Some("X-Auth-Token"),
        &operations(),
    )
}
