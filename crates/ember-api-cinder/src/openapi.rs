//! The Cinder routes of [`crate::routes`] as OpenAPI operations, under
//! `/v3/{project_id}` and `/v2/{project_id}` (Cinder also accepts the
//! same paths without the project segment; they are not listed twice).
//! Request bodies with a schema in [`crate::schemas`] are documented with
//! it; the others as the objects the handlers read.

use crate::schemas;
use ember_api_common::openapi::shapes::*;
use ember_api_common::openapi::{Content, Operation};
use serde_json::{Value, json};

/// Every status a Cinder request can end in besides its success: schema
/// or state (400), token (401), policy (403), missing resource or route
/// (404), microversion (406), conflict (409), size or quota (413), media
/// type (415), and a full disk (503).
const ERRORS: &[u16] = &[400, 401, 403, 404, 406, 409, 413, 415, 503];

/// The fault envelope, or the router's plain 404 `{"message", "code",
/// "title"}`.
fn error_body() -> Value {
    json!({"anyOf": [
        fault_envelope(),
        object(&[("message", string()), ("code", string()), ("title", string())]),
    ]})
}

fn snapshot() -> Value {
    object(&[
        ("id", string()),
        ("created_at", string()),
        ("name", nullable_string()),
        ("description", nullable_string()),
        ("volume_id", string()),
        ("status", string()),
        ("size", integer()),
        ("metadata", string_map()),
    ])
}

fn volume() -> Value {
    object(&[
        ("id", string()),
        ("status", string()),
        ("size", integer()),
        ("availability_zone", string()),
        ("created_at", string()),
        ("name", nullable_string()),
        ("description", nullable_string()),
        ("volume_type", nullable_string()),
        ("snapshot_id", nullable_string()),
        ("source_volid", nullable_string()),
        ("metadata", string_map()),
        ("links", array(any_object())),
        ("attachments", array(any_object())),
        ("bootable", string()),
        ("encrypted", boolean()),
        ("multiattach", boolean()),
    ])
}

fn volume_summary() -> Value {
    object(&[
        ("id", string()),
        ("links", array(any_object())),
        ("name", nullable_string()),
    ])
}

fn attachment() -> Value {
    object(&[
        ("id", string()),
        ("status", string()),
        ("volume_id", string()),
    ])
}

fn metadata_reply() -> Value {
    wrapped("metadata", string_map())
}

fn meta_reply() -> Value {
    wrapped("meta", string_map())
}

/// The paging, sorting and filtering parameters of the snapshot and
/// volume lists (`listing::paging`). Unknown filters are accepted and match
/// nothing, as in Cinder.
fn list_params(op: Operation) -> Operation {
    op.query("limit", json!({"type": "integer", "minimum": 0}))
        .query("marker", json!({"type": "string"}))
        .query("offset", json!({"type": "integer", "minimum": 0}))
        .query(
            "sort",
            json!({"type": "string", "description": "key[:dir],…"}),
        )
        .query("sort_key", json!({"type": "string"}))
        .query(
            "sort_dir",
            json!({"type": "string", "description": "asc or desc, comma-separated per sort key"}),
        )
        .query("all_tenants", bool_like())
        .query("status", json!({"type": "string"}))
        .query("name", json!({"type": "string"}))
        .query("with_count", bool_like())
}

/// A query flag read as oslo's `bool_from_string`: any string, the
/// true-ish ones (`1`, `true`, `yes`, `on`, …) enable it.
fn bool_like() -> Value {
    json!({"type": "string"})
}

/// Lists that only know `all_tenants`.
fn tenant_param(op: Operation) -> Operation {
    op.query("all_tenants", bool_like())
}

/// An action body: one object naming the action.
fn action_body(actions: &[&str]) -> Value {
    let props: serde_json::Map<String, Value> = actions
        .iter()
        .map(|a| (a.to_string(), json!({"type": ["object", "null"]})))
        .collect();
    json!({"type": "object", "properties": props, "minProperties": 1})
}

const VOLUME_ACTIONS: &[&str] = &[
    "os-extend",
    "os-reset_status",
    "os-force_delete",
    "os-update_readonly_flag",
    "os-set_bootable",
    "revert",
    "os-reserve",
    "os-unreserve",
    "os-begin_detaching",
    "os-roll_detaching",
    "os-attach",
    "os-detach",
    "os-initialize_connection",
    "os-terminate_connection",
    "os-force_detach",
    "os-retype",
    "os-volume_upload_image",
    "os-migrate_volume",
];

const SNAPSHOT_ACTIONS: &[&str] = &[
    "os-reset_status",
    "os-force_delete",
    "os-update_snapshot_status",
    "os-unmanage",
    "ember-export",
    "ember-unexport",
];

fn any_body() -> Value {
    any_object()
}

/// The metadata routes of a resource at `base` (`/…/snapshots/{id}`).
fn metadata_ops(base: &str, noun: &str, tag: &'static str) -> Vec<Operation> {
    let ok = |body: Value| Content::Json(body);
    let whole = format!("{base}/metadata");
    let item = format!("{base}/metadata/{{key}}");
    vec![
        Operation::new("GET", &whole, format!("Show a {noun}'s metadata"))
            .responds(200, ok(metadata_reply())),
        Operation::new("POST", &whole, format!("Add or update a {noun}'s metadata"))
            .json_body(schemas::metadata_body().to_json_schema())
            .responds(200, ok(metadata_reply())),
        Operation::new("PUT", &whole, format!("Replace a {noun}'s metadata"))
            .json_body(schemas::metadata_body().to_json_schema())
            .responds(200, ok(metadata_reply())),
        Operation::new("GET", &item, format!("Show one metadata item of a {noun}"))
            .responds(200, ok(meta_reply())),
        Operation::new("PUT", &item, format!("Set one metadata item of a {noun}"))
            .json_body(schemas::meta_item_body().to_json_schema())
            .responds(200, ok(meta_reply())),
        Operation::new(
            "DELETE",
            &item,
            format!("Delete one metadata item of a {noun}"),
        )
        .responds(200, Content::Empty),
    ]
    .into_iter()
    .map(|op| op.tag(tag))
    .collect()
}

/// Volume transfers under one of their two collection names.
fn transfer_ops(base: &str, note: &str) -> Vec<Operation> {
    let ok = |body: Value| Content::Json(body);
    let transfer = || ok(wrapped("transfer", any_object()));
    let one = format!("{base}/{{transfer_id}}");
    vec![
        Operation::new("POST", base, format!("Create a volume transfer{note}"))
            .json_body(wrapped("transfer", any_object()))
            .responds(202, transfer()),
        tenant_param(Operation::new(
            "GET",
            base,
            format!("List volume transfers{note}"),
        ))
        .responds(200, ok(list("transfers", any_object()))),
        tenant_param(Operation::new(
            "GET",
            format!("{base}/detail"),
            format!("List volume transfers with details{note}"),
        ))
        .responds(200, ok(list("transfers", any_object()))),
        Operation::new("GET", &one, format!("Show a volume transfer{note}"))
            .responds(200, transfer()),
        Operation::new("DELETE", &one, format!("Delete a volume transfer{note}"))
            .responds(202, Content::Empty),
        Operation::new(
            "POST",
            format!("{one}/accept"),
            format!("Accept a volume transfer{note}"),
        )
        .json_body(wrapped("accept", any_object()))
        .responds(202, transfer()),
    ]
    .into_iter()
    .map(|op| op.tag("transfers"))
    .collect()
}

/// Ember's changed-blocks API (EBS direct APIs' style).
fn block_ops(base: &str) -> Vec<Operation> {
    let page = |key: &str| {
        json!({"type": "object", "required": [key, "block_size", "volume_size"], "properties": {
            key: {"type": "array", "items": {"type": "object", "properties": {
                "block_index": {"type": "integer", "minimum": 0}}}},
            "block_size": {"type": "integer"},
            "volume_size": {"type": "integer"},
            "next_token": {"type": ["string", "null"]},
        }})
    };
    let paged = |op: Operation| {
        op.query(
            "max_results",
            json!({"type": "integer", "minimum": 100, "maximum": 10000}),
        )
        .query(
            "next_token",
            json!({"type": "string", "pattern": "^[0-9]+$"}),
        )
        .query(
            "starting_block_index",
            json!({"type": "integer", "minimum": 0}),
        )
    };
    vec![
        paged(Operation::new(
            "GET",
            format!("{base}/{{snapshot_id}}/blocks"),
            "Ember: list the 512 KiB blocks of a snapshot that hold data",
        ))
        .responds(200, Content::Json(page("blocks"))),
        paged(Operation::new(
            "GET",
            format!("{base}/{{snapshot_id}}/changed-blocks"),
            "Ember: list the blocks that differ from an earlier snapshot of the same volume",
        ))
        .query(
            "first_snapshot_id",
            json!({"type": "string", "format": "uuid"}),
        )
        .responds(200, Content::Json(page("changed_blocks"))),
        Operation::new(
            "GET",
            format!("{base}/{{snapshot_id}}/blocks/{{block_index}}"),
            "Ember: read one block (its SHA-256 in x-ember-checksum)",
        )
        .path_param("block_index", json!({"type": "integer", "minimum": 0}))
        .responds(200, Content::Bytes),
    ]
    .into_iter()
    .map(|op| op.tag("blocks"))
    .collect()
}

/// Ember's snapshot and backup policies.
fn policy_ops(base: &str) -> Vec<Operation> {
    let body = json!({"type": "object", "required": ["policy"], "properties": {"policy": {
        "type": "object",
        "required": ["name", "kind", "schedule", "volumes"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "kind": {"type": "string", "enum": ["snapshot", "backup"]},
            "schedule": {"type": "object", "properties": {
                "interval_seconds": {"type": "integer", "minimum": 1},
                "cron": {"type": "string"},
                "time_zone": {"type": "string"}}},
            "retention": {"type": "object", "properties": {
                "count": {"type": "integer", "minimum": 1},
                "max_age_seconds": {"type": "integer", "minimum": 0}}},
            "volumes": {"type": "object", "properties": {
                "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "volume_type": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "enabled": {"type": "boolean"}}}}});
    let one = format!("{base}/{{policy_id}}");
    let policy = || Content::Json(wrapped("policy", any_object()));
    vec![
        Operation::new("POST", base, "Ember: create a snapshot or backup policy")
            .json_body(body.clone())
            .responds(201, policy()),
        tenant_param(Operation::new("GET", base, "Ember: list policies"))
            .responds(200, Content::Json(list("policies", any_object()))),
        Operation::new("GET", &one, "Ember: show a policy (next and last run)")
            .responds(200, policy()),
        Operation::new("PUT", &one, "Ember: replace a policy's settings")
            .json_body(body)
            .responds(200, policy()),
        Operation::new(
            "DELETE",
            &one,
            "Ember: delete a policy (what it made stays)",
        )
        .responds(204, Content::Empty),
    ]
    .into_iter()
    .map(|op| op.tag("policies"))
    .collect()
}

/// Ember's nodes (`/ember/nodes`), admin only.
fn node_ops(base: &str) -> Vec<Operation> {
    let one = format!("{base}/{{node_id}}");
    vec![
        Operation::new(
            "GET",
            base,
            "Ember: list the nodes sharing the database (up or down)",
        )
        .responds(200, Content::Json(list("nodes", any_object()))),
        Operation::new(
            "DELETE",
            &one,
            "Ember: forget a node gone for good (409 while its lease is current)",
        )
        .responds(204, Content::Empty),
    ]
    .into_iter()
    .map(|op| op.tag("nodes"))
    .collect()
}

/// Backups (`/backups`).
fn backup_ops(base: &str) -> Vec<Operation> {
    let ok = |body: Value| Content::Json(body);
    let backup = || ok(wrapped("backup", any_object()));
    let one = format!("{base}/{{backup_id}}");
    let mv = crate::version::Microversion(crate::version::MAX_MINOR);
    vec![
        Operation::new("POST", base, "Create a backup (full or incremental)")
            .json_body(schemas::backup_create(mv).to_json_schema())
            .responds(202, backup()),
        tenant_param(Operation::new("GET", base, "List backups"))
            .responds(200, ok(list("backups", any_object()))),
        tenant_param(Operation::new(
            "GET",
            format!("{base}/detail"),
            "List backups with details",
        ))
        .responds(200, ok(list("backups", any_object()))),
        Operation::new("GET", &one, "Show a backup").responds(200, backup()),
        Operation::new("PUT", &one, "Update a backup (3.9)")
            .json_body(schemas::backup_update(mv).to_json_schema())
            .responds(200, backup()),
        Operation::new("DELETE", &one, "Delete a backup").responds(202, Content::Empty),
        Operation::new(
            "POST",
            format!("{one}/action"),
            "Reset a backup's status or force-delete it (admin)",
        )
        .json_body(action_body(&["os-reset_status", "os-force_delete"]))
        .responds(202, Content::Empty),
        Operation::new(
            "POST",
            format!("{one}/restore"),
            "Restore a backup to a new or an existing volume",
        )
        .json_body(schemas::backup_restore().to_json_schema())
        .responds(202, ok(wrapped("restore", any_object()))),
        Operation::new(
            "GET",
            format!("{one}/export_record"),
            "Export a backup's record (admin)",
        )
        .responds(200, ok(wrapped("backup-record", any_object()))),
        Operation::new(
            "POST",
            format!("{base}/import_record"),
            "Import a backup's record (admin)",
        )
        .json_body(schemas::backup_import().to_json_schema())
        .responds(201, backup()),
    ]
    .into_iter()
    .map(|op| op.tag("backups"))
    .collect()
}

/// The operations under one API root (`/v3/{project_id}` or
/// `/v2/{project_id}`).
fn under(root: &str) -> Vec<Operation> {
    let p = |s: &str| format!("{root}{s}");
    let ok = |body: Value| Content::Json(body);
    let mut ops = vec![
        // Snapshots (seeds 000 and 002).
        list_params(Operation::new("GET", p("/snapshots"), "List snapshots"))
            .tag("snapshots")
            .query("volume_id", json!({"type": "string"}))
            .responds(200, ok(list("snapshots", snapshot()))),
        list_params(Operation::new(
            "GET",
            p("/snapshots/detail"),
            "List snapshots with details",
        ))
        .tag("snapshots")
        .query("volume_id", json!({"type": "string"}))
        .responds(200, ok(list("snapshots", snapshot()))),
        Operation::new("POST", p("/snapshots"), "Create a snapshot")
            .tag("snapshots")
            .json_body(schemas::snapshot_create().to_json_schema())
            .responds(202, ok(wrapped("snapshot", snapshot()))),
        Operation::new("GET", p("/snapshots/{snapshot_id}"), "Show a snapshot")
            .tag("snapshots")
            .responds(200, ok(wrapped("snapshot", snapshot()))),
        Operation::new("PUT", p("/snapshots/{snapshot_id}"), "Update a snapshot")
            .tag("snapshots")
            .json_body(schemas::snapshot_update().to_json_schema())
            .responds(200, ok(wrapped("snapshot", snapshot()))),
        Operation::new("DELETE", p("/snapshots/{snapshot_id}"), "Delete a snapshot")
            .tag("snapshots")
            .responds(202, Content::Empty),
        Operation::new(
            "POST",
            p("/snapshots/{snapshot_id}/action"),
            "Snapshot actions (reset status, force delete, Ember's read-only export)",
        )
        .tag("snapshots")
        .json_body(action_body(SNAPSHOT_ACTIONS))
        .responds(200, ok(any_body()))
        .responds(202, Content::Empty),
    ];
    ops.extend(metadata_ops(
        &p("/snapshots/{snapshot_id}"),
        "snapshot",
        "snapshots",
    ));
    ops.extend([
        Operation::new(
            "GET",
            p("/snapshots/{snapshot_id}/data"),
            "Ember: read a snapshot's bytes (Range supported)",
        )
        .tag("data")
        .header("Range", false, json!({"type": "string"}))
        .responds(200, Content::Bytes)
        .responds(206, Content::Bytes),
        // Volumes.
        list_params(Operation::new("GET", p("/volumes"), "List volumes"))
            .tag("volumes")
            .responds(200, ok(list("volumes", volume_summary()))),
        list_params(Operation::new(
            "GET",
            p("/volumes/detail"),
            "List volumes with details",
        ))
        .tag("volumes")
        .responds(200, ok(list("volumes", volume()))),
        Operation::new("POST", p("/volumes"), "Create a volume")
            .tag("volumes")
            .json_body(
                schemas::volume_create(crate::version::Microversion(crate::version::MAX_MINOR))
                    .to_json_schema(),
            )
            .responds(202, ok(wrapped("volume", volume()))),
        Operation::new(
            "GET",
            p("/volumes/{volume_id}"),
            "Show a volume (`summary` as the id: volume summary)",
        )
        .tag("volumes")
        .responds(200, ok(any_body())),
        Operation::new("PUT", p("/volumes/{volume_id}"), "Update a volume")
            .tag("volumes")
            .json_body(
                schemas::volume_update(crate::version::Microversion(crate::version::MAX_MINOR))
                    .to_json_schema(),
            )
            .responds(200, ok(wrapped("volume", volume()))),
        Operation::new("DELETE", p("/volumes/{volume_id}"), "Delete a volume")
            .tag("volumes")
            .query("cascade", bool_like())
            .query("force", bool_like())
            .responds(202, Content::Empty),
        Operation::new(
            "POST",
            p("/volumes/{volume_id}/action"),
            "Volume actions (extend, revert, reset status, attach and detach, …)",
        )
        .tag("volumes")
        .json_body(action_body(VOLUME_ACTIONS))
        .responds(200, ok(any_body()))
        .responds(202, Content::Empty),
    ]);
    ops.extend(metadata_ops(
        &p("/volumes/{volume_id}"),
        "volume",
        "volumes",
    ));
    ops.extend([
        Operation::new(
            "GET",
            p("/volumes/{volume_id}/data"),
            "Ember: read a volume's bytes (Range supported)",
        )
        .tag("data")
        .header("Range", false, json!({"type": "string"}))
        .responds(200, Content::Bytes)
        .responds(206, Content::Bytes),
        Operation::new(
            "PUT",
            p("/volumes/{volume_id}/data"),
            "Ember: write bytes into an available volume (Content-Range or ?offset=)",
        )
        .tag("data")
        .query("offset", json!({"type": "integer", "minimum": 0}))
        .bytes_body()
        .responds(204, Content::Empty),
        // Volume types.
        Operation::new("GET", p("/types"), "List volume types")
            .tag("types")
            .query("is_public", json!({"type": "string"}))
            .responds(200, ok(list("volume_types", any_object()))),
        Operation::new("POST", p("/types"), "Create a volume type")
            .tag("types")
            .json_body(wrapped("volume_type", any_object()))
            .responds(200, ok(wrapped("volume_type", any_object()))),
        Operation::new("GET", p("/types/default"), "Show the default volume type")
            .tag("types")
            .responds(200, ok(wrapped("volume_type", any_object()))),
        Operation::new("GET", p("/types/{type_id}"), "Show a volume type")
            .tag("types")
            .responds(200, ok(wrapped("volume_type", any_object()))),
        Operation::new("PUT", p("/types/{type_id}"), "Update a volume type")
            .tag("types")
            .json_body(wrapped("volume_type", any_object()))
            .responds(200, ok(wrapped("volume_type", any_object()))),
        Operation::new("DELETE", p("/types/{type_id}"), "Delete a volume type")
            .tag("types")
            .responds(202, Content::Empty),
        Operation::new(
            "GET",
            p("/types/{type_id}/extra_specs"),
            "List a type's extra specs",
        )
        .tag("types")
        .responds(200, ok(wrapped("extra_specs", string_map()))),
        Operation::new(
            "POST",
            p("/types/{type_id}/extra_specs"),
            "Set a type's extra specs",
        )
        .tag("types")
        .json_body(wrapped("extra_specs", string_map()))
        .responds(200, ok(wrapped("extra_specs", string_map()))),
        Operation::new(
            "GET",
            p("/types/{type_id}/extra_specs/{key}"),
            "Show one extra spec",
        )
        .tag("types")
        .responds(200, ok(string_map())),
        Operation::new(
            "PUT",
            p("/types/{type_id}/extra_specs/{key}"),
            "Set one extra spec",
        )
        .tag("types")
        .json_body(string_map())
        .responds(200, ok(string_map())),
        Operation::new(
            "DELETE",
            p("/types/{type_id}/extra_specs/{key}"),
            "Delete one extra spec",
        )
        .tag("types")
        .responds(202, Content::Empty),
        Operation::new(
            "POST",
            p("/types/{type_id}/action"),
            "Add or remove project access to a private type",
        )
        .tag("types")
        .json_body(action_body(&["addProjectAccess", "removeProjectAccess"]))
        .responds(202, Content::Empty),
        Operation::new(
            "GET",
            p("/types/{type_id}/os-volume-type-access"),
            "List the projects with access to a private type",
        )
        .tag("types")
        .responds(200, ok(list("volume_type_access", any_object()))),
        Operation::new(
            "GET",
            p("/types/{type_id}/encryption"),
            "Show a type's encryption specs",
        )
        .tag("types")
        .responds(200, ok(any_object())),
        Operation::new(
            "GET",
            p("/types/{type_id}/encryption/{key}"),
            "Show one encryption spec",
        )
        .tag("types")
        .responds(200, ok(any_object())),
        Operation::new(
            "POST",
            p("/types/{type_id}/encryption"),
            "Create a type's encryption specs",
        )
        .tag("types")
        .json_body(wrapped("encryption", any_object()))
        .responds(200, ok(wrapped("encryption", any_object()))),
        Operation::new(
            "PUT",
            p("/types/{type_id}/encryption/{encryption_id}"),
            "Update a type's encryption specs",
        )
        .tag("types")
        .json_body(wrapped("encryption", any_object()))
        .responds(200, ok(wrapped("encryption", any_object()))),
        Operation::new(
            "DELETE",
            p("/types/{type_id}/encryption/{encryption_id}"),
            "Delete a type's encryption specs",
        )
        .tag("types")
        .responds(202, Content::Empty),
        // Zones, limits, quotas.
        Operation::new("GET", p("/os-availability-zone"), "List availability zones")
            .tag("misc")
            .responds(200, ok(list("availabilityZoneInfo", any_object()))),
        Operation::new(
            "GET",
            p("/availability-zone"),
            "List availability zones (alias)",
        )
        .tag("misc")
        .responds(200, ok(list("availabilityZoneInfo", any_object()))),
        Operation::new("GET", p("/limits"), "Show absolute limits")
            .tag("misc")
            .responds(200, ok(wrapped("limits", any_object()))),
        Operation::new(
            "GET",
            p("/os-quota-sets/{target_project}"),
            "Show a project's quotas",
        )
        .tag("quotas")
        .query("usage", bool_like())
        .responds(200, ok(wrapped("quota_set", any_object()))),
        Operation::new(
            "PUT",
            p("/os-quota-sets/{target_project}"),
            "Update a project's quotas",
        )
        .tag("quotas")
        .json_body(wrapped("quota_set", any_object()))
        .responds(200, ok(wrapped("quota_set", any_object()))),
        Operation::new(
            "DELETE",
            p("/os-quota-sets/{target_project}"),
            "Reset a project's quotas to the defaults",
        )
        .tag("quotas")
        .responds(200, Content::Empty),
        Operation::new(
            "GET",
            p("/os-quota-sets/{target_project}/defaults"),
            "Show the default quotas",
        )
        .tag("quotas")
        .responds(200, ok(wrapped("quota_set", any_object()))),
        Operation::new(
            "GET",
            p("/os-quota-class-sets/{quota_class}"),
            "Show a quota class",
        )
        .tag("quotas")
        .responds(200, ok(wrapped("quota_class_set", any_object()))),
        Operation::new(
            "PUT",
            p("/os-quota-class-sets/{quota_class}"),
            "Update a quota class",
        )
        .tag("quotas")
        .json_body(wrapped("quota_class_set", any_object()))
        .responds(200, ok(wrapped("quota_class_set", any_object()))),
        // The backend, as an operator sees it.
        Operation::new("GET", p("/os-hosts"), "List hosts")
            .tag("backend")
            .responds(200, ok(list("hosts", any_object()))),
        Operation::new("GET", p("/os-hosts/{host}"), "Show a host")
            .tag("backend")
            .responds(200, ok(wrapped("host", array(any_object())))),
        Operation::new(
            "GET",
            p("/scheduler-stats/get_pools"),
            "List back-end storage pools",
        )
        .tag("backend")
        .query("detail", bool_like())
        .responds(200, ok(list("pools", any_object()))),
        Operation::new(
            "GET",
            p("/capabilities/{host}"),
            "Show a back end's capabilities",
        )
        .tag("backend")
        .responds(200, ok(any_object())),
        // Manage and unmanage (admin).
        Operation::new("POST", p("/os-volume-manage"), "Manage an existing volume")
            .tag("backend")
            .json_body(wrapped("volume", any_object()))
            .responds(202, ok(wrapped("volume", any_object()))),
        Operation::new(
            "GET",
            p("/manageable_volumes"),
            "List volumes that could be managed (3.8+)",
        )
        .tag("backend")
        .query("host", string())
        .responds(200, ok(list("manageable-volumes", any_object()))),
        Operation::new(
            "POST",
            p("/os-snapshot-manage"),
            "Manage an existing snapshot",
        )
        .tag("backend")
        .json_body(wrapped("snapshot", any_object()))
        .responds(202, ok(wrapped("snapshot", any_object()))),
        Operation::new(
            "GET",
            p("/manageable_snapshots"),
            "List snapshots that could be managed (3.8+)",
        )
        .tag("backend")
        .query("host", string())
        .responds(200, ok(list("manageable-snapshots", any_object()))),
        Operation::new("GET", p("/extensions"), "List API extensions")
            .tag("backend")
            .responds(200, ok(list("extensions", any_object()))),
        Operation::new("GET", p("/os-services"), "List services")
            .tag("backend")
            .responds(200, ok(list("services", any_object()))),
        Operation::new(
            "PUT",
            p("/os-services/{service_action}"),
            "Enable, disable or freeze a service",
        )
        .tag("backend")
        .json_body(any_object())
        .responds(200, ok(any_object())),
    ]);
    ops.extend(added_in_v3(root));
    ops
}

/// Resources Cinder added in v3 (microversion-gated there); Ember's router
/// serves them under `/v2` too.
fn added_in_v3(root: &str) -> Vec<Operation> {
    let p = |s: &str| format!("{root}{s}");
    let ok = |body: Value| Content::Json(body);
    let mut ops = vec![
        // Groups and group snapshots (3.13, 3.14).
        tenant_param(Operation::new("GET", p("/groups"), "List groups"))
            .tag("groups")
            .responds(200, ok(list("groups", any_object()))),
        tenant_param(Operation::new(
            "GET",
            p("/groups/detail"),
            "List groups with details",
        ))
        .tag("groups")
        .responds(200, ok(list("groups", any_object()))),
        Operation::new("POST", p("/groups"), "Create a group")
            .tag("groups")
            .json_body(wrapped("group", any_object()))
            .responds(202, ok(wrapped("group", any_object()))),
        Operation::new(
            "POST",
            p("/groups/action"),
            "Create a group from a group snapshot or another group",
        )
        .tag("groups")
        .json_body(wrapped("create-from-src", any_object()))
        .responds(202, ok(wrapped("group", any_object()))),
        Operation::new("GET", p("/groups/{group_id}"), "Show a group")
            .tag("groups")
            .responds(200, ok(wrapped("group", any_object()))),
        Operation::new("PUT", p("/groups/{group_id}"), "Update a group")
            .tag("groups")
            .json_body(wrapped("group", any_object()))
            .responds(202, Content::Empty),
        Operation::new(
            "POST",
            p("/groups/{group_id}/action"),
            "Group actions (delete, reset status)",
        )
        .tag("groups")
        .json_body(action_body(&["delete", "reset_status"]))
        .responds(202, Content::Empty),
        tenant_param(Operation::new(
            "GET",
            p("/group_snapshots"),
            "List group snapshots",
        ))
        .tag("group_snapshots")
        .responds(200, ok(list("group_snapshots", any_object()))),
        tenant_param(Operation::new(
            "GET",
            p("/group_snapshots/detail"),
            "List group snapshots with details",
        ))
        .tag("group_snapshots")
        .responds(200, ok(list("group_snapshots", any_object()))),
        Operation::new("POST", p("/group_snapshots"), "Create a group snapshot")
            .tag("group_snapshots")
            .json_body(wrapped("group_snapshot", any_object()))
            .responds(202, ok(wrapped("group_snapshot", any_object()))),
        Operation::new(
            "GET",
            p("/group_snapshots/{group_snapshot_id}"),
            "Show a group snapshot",
        )
        .tag("group_snapshots")
        .responds(200, ok(wrapped("group_snapshot", any_object()))),
        Operation::new(
            "DELETE",
            p("/group_snapshots/{group_snapshot_id}"),
            "Delete a group snapshot",
        )
        .tag("group_snapshots")
        .responds(202, Content::Empty),
        Operation::new(
            "POST",
            p("/group_snapshots/{group_snapshot_id}/action"),
            "Reset a group snapshot's status",
        )
        .tag("group_snapshots")
        .json_body(action_body(&["reset_status"]))
        .responds(202, Content::Empty),
        // Group types.
        Operation::new("GET", p("/group_types"), "List group types")
            .tag("group_types")
            .responds(200, ok(list("group_types", any_object()))),
        Operation::new("POST", p("/group_types"), "Create a group type")
            .tag("group_types")
            .json_body(wrapped("group_type", any_object()))
            .responds(200, ok(wrapped("group_type", any_object()))),
        Operation::new(
            "GET",
            p("/group_types/{group_type_id}"),
            "Show a group type (`default`: the default one)",
        )
        .tag("group_types")
        .responds(200, ok(wrapped("group_type", any_object()))),
        Operation::new(
            "PUT",
            p("/group_types/{group_type_id}"),
            "Update a group type",
        )
        .tag("group_types")
        .json_body(wrapped("group_type", any_object()))
        .responds(200, ok(wrapped("group_type", any_object()))),
        Operation::new(
            "DELETE",
            p("/group_types/{group_type_id}"),
            "Delete a group type",
        )
        .tag("group_types")
        .responds(202, Content::Empty),
        Operation::new(
            "GET",
            p("/group_types/{group_type_id}/group_specs"),
            "List a group type's specs",
        )
        .tag("group_types")
        .responds(200, ok(wrapped("group_specs", string_map()))),
        Operation::new(
            "POST",
            p("/group_types/{group_type_id}/group_specs"),
            "Set a group type's specs",
        )
        .tag("group_types")
        .json_body(wrapped("group_specs", string_map()))
        .responds(200, ok(wrapped("group_specs", string_map()))),
        Operation::new(
            "GET",
            p("/group_types/{group_type_id}/group_specs/{key}"),
            "Show one group spec",
        )
        .tag("group_types")
        .responds(200, ok(string_map())),
        Operation::new(
            "PUT",
            p("/group_types/{group_type_id}/group_specs/{key}"),
            "Set one group spec",
        )
        .tag("group_types")
        .json_body(string_map())
        .responds(200, ok(string_map())),
        Operation::new(
            "DELETE",
            p("/group_types/{group_type_id}/group_specs/{key}"),
            "Delete one group spec",
        )
        .tag("group_types")
        .responds(202, Content::Empty),
        // User messages (3.3).
        tenant_param(Operation::new("GET", p("/messages"), "List user messages"))
            .tag("messages")
            .responds(200, ok(list("messages", any_object()))),
        Operation::new("GET", p("/messages/{message_id}"), "Show a message")
            .tag("messages")
            .responds(200, ok(wrapped("message", any_object()))),
        Operation::new("DELETE", p("/messages/{message_id}"), "Delete a message")
            .tag("messages")
            .responds(204, Content::Empty),
        // QoS specs.
        Operation::new("POST", p("/qos-specs"), "Create QoS specs")
            .tag("qos")
            .json_body(wrapped("qos_specs", any_object()))
            .responds(200, ok(wrapped("qos_specs", any_object()))),
        Operation::new("GET", p("/qos-specs"), "List QoS specs")
            .tag("qos")
            .responds(200, ok(list("qos_specs", any_object()))),
        Operation::new("GET", p("/qos-specs/{qos_id}"), "Show QoS specs")
            .tag("qos")
            .responds(200, ok(wrapped("qos_specs", any_object()))),
        Operation::new("PUT", p("/qos-specs/{qos_id}"), "Set keys in QoS specs")
            .tag("qos")
            .json_body(wrapped("qos_specs", any_object()))
            .responds(200, ok(wrapped("qos_specs", any_object()))),
        Operation::new(
            "PUT",
            p("/qos-specs/{qos_id}/delete_keys"),
            "Unset keys in QoS specs",
        )
        .tag("qos")
        .json_body(wrapped("keys", array(string())))
        .responds(202, Content::Empty),
        Operation::new("DELETE", p("/qos-specs/{qos_id}"), "Delete QoS specs")
            .tag("qos")
            .query("force", bool_like())
            .responds(202, Content::Empty),
        Operation::new(
            "GET",
            p("/qos-specs/{qos_id}/associations"),
            "List the types associated with QoS specs",
        )
        .tag("qos")
        .responds(200, ok(list("qos_associations", any_object()))),
        Operation::new(
            "GET",
            p("/qos-specs/{qos_id}/associate"),
            "Associate QoS specs with a type",
        )
        .tag("qos")
        .query("vol_type_id", json!({"type": "string"}))
        .responds(202, Content::Empty),
        Operation::new(
            "GET",
            p("/qos-specs/{qos_id}/disassociate"),
            "Disassociate QoS specs from a type",
        )
        .tag("qos")
        .query("vol_type_id", json!({"type": "string"}))
        .responds(202, Content::Empty),
        Operation::new(
            "GET",
            p("/qos-specs/{qos_id}/disassociate_all"),
            "Disassociate QoS specs from every type",
        )
        .tag("qos")
        .responds(202, Content::Empty),
        // Attachments (3.27, NBD connection info).
        Operation::new("POST", p("/attachments"), "Create an attachment")
            .tag("attachments")
            .json_body(wrapped("attachment", any_object()))
            .responds(200, ok(wrapped("attachment", attachment()))),
        tenant_param(Operation::new("GET", p("/attachments"), "List attachments"))
            .tag("attachments")
            .query("volume_id", json!({"type": "string"}))
            .query("instance_id", json!({"type": "string"}))
            .query("status", json!({"type": "string"}))
            .query(
                "limit",
                json!({"type": "string", "description": "a number; others are ignored"}),
            )
            .responds(200, ok(list("attachments", attachment()))),
        tenant_param(Operation::new(
            "GET",
            p("/attachments/detail"),
            "List attachments with details",
        ))
        .tag("attachments")
        .query("volume_id", json!({"type": "string"}))
        .query("instance_id", json!({"type": "string"}))
        .query("status", json!({"type": "string"}))
        .query(
            "limit",
            json!({"type": "string", "description": "a number; others are ignored"}),
        )
        .responds(200, ok(list("attachments", attachment()))),
        Operation::new(
            "GET",
            p("/attachments/{attachment_id}"),
            "Show an attachment",
        )
        .tag("attachments")
        .responds(200, ok(wrapped("attachment", attachment()))),
        Operation::new(
            "PUT",
            p("/attachments/{attachment_id}"),
            "Update an attachment with a connector",
        )
        .tag("attachments")
        .json_body(wrapped("attachment", any_object()))
        .responds(200, ok(wrapped("attachment", attachment()))),
        Operation::new(
            "DELETE",
            p("/attachments/{attachment_id}"),
            "Delete an attachment",
        )
        .tag("attachments")
        .responds(200, ok(list("attachments", any_object()))),
        Operation::new(
            "POST",
            p("/attachments/{attachment_id}/action"),
            "Complete an attachment (3.44)",
        )
        .tag("attachments")
        .json_body(action_body(&["os-complete"]))
        .responds(204, Content::Empty),
    ];
    // Volume transfers, under both names.
    ops.extend(transfer_ops(&p("/volume-transfers"), ""));
    ops.extend(transfer_ops(&p("/os-volume-transfer"), " (legacy path)"));
    ops.extend(backup_ops(&p("/backups")));
    ops.extend(block_ops(&p("/ember/snapshots")));
    ops.extend(policy_ops(&p("/ember/policies")));
    ops.extend(node_ops(&p("/ember/nodes")));
    ops
}

/// Every Cinder operation Ember serves, with its errors.
pub fn operations() -> Vec<Operation> {
    let project = json!({"type": "string", "pattern": "^[0-9a-f-]+$", "minLength": 1});
    let microversion = json!({
        "type": "string",
        "pattern": "^volume (3\\.([0-9]|[1-6][0-9]|7[01])|latest)$",
        "description": "Cinder microversion, 3.0 to 3.71"
    });
    let error = error_body();
    // The version document of an API needs a valid token (noauth: 204
    // without one), as behind keystonemiddleware.
    let version = |path: &str, summary: &str| {
        Operation::new("GET", path, summary)
            .tag("versions")
            .responds(200, Content::Json(any_object()))
            .responds(204, Content::Empty)
            .errors(&[401, 503], &error)
    };
    let mut ops = vec![
        Operation::new("GET", "/", "List the API versions")
            .tag("versions")
            .public()
            .responds(300, Content::Json(any_object())),
        version("/v3/", "Show the v3 API version"),
        version("/v2/", "Show the v2 API version"),
        Operation::new("GET", "/healthcheck", "Health check")
            .tag("versions")
            .public()
            .responds(200, Content::Json(any_object())),
    ];
    for (root, v3) in [("/v3/{project_id}", true), ("/v2/{project_id}", false)] {
        for mut op in under(root) {
            op = op.path_param("project_id", project.clone());
            if v3 {
                op = op.header("OpenStack-API-Version", false, microversion.clone());
            }
            ops.push(op.errors(ERRORS, &error));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Api;
    use crate::routes::{Endpoint, parse};
    use axum::http::Method;
    use std::collections::HashSet;
    use std::mem::discriminant;
    use strum::EnumCount;

    fn sample(name: &str) -> String {
        match name {
            "project_id" | "target_project" => "f5d834d636c642c7bfe8af86139c6f26".into(),
            "key" => "k".into(),
            _ => "3e2b8f83-6a4b-4d0c-8a0e-5b2d1c5b9a10".into(),
        }
    }

    /// Every documented path routes, and every route is documented: the
    /// document cannot drift from the router.
    #[test]
    fn document_and_router_agree() {
        let mut seen = HashSet::new();
        for op in operations() {
            if !op.path.starts_with("/v") || op.path.ends_with('/') {
                continue;
            }
            let path = op.concrete_path(sample);
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let method = Method::from_bytes(op.method.as_bytes()).unwrap();
            let (project, endpoint) = parse(&method, &segs[1..], Api::V3)
                .unwrap_or_else(|| panic!("{} {} does not route", op.method, op.path));
            assert!(project.is_some(), "{}", op.path);
            seen.insert(discriminant(&endpoint));
        }
        assert_eq!(
            seen.len(),
            Endpoint::COUNT,
            "some routes are not in the OpenAPI document"
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let ops = operations();
        let doc = ember_api_common::openapi::document("t", "d", Some("X-Auth-Token"), &ops);
        let mut ids = HashSet::new();
        for methods in doc["paths"].as_object().unwrap().values() {
            for op in methods.as_object().unwrap().values() {
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()));
            }
        }
        assert_eq!(ids.len(), ops.len());
    }
}
