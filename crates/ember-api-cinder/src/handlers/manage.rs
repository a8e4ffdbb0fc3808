//! Manage and unmanage: `os-volume-manage`, `os-snapshot-manage` and the
//! lists of what could be managed (`manageable_volumes`/`_snapshots` from
//! 3.8). Admin only (the service checks).

use super::{body, metadata_map};
use crate::{CinderError, Reply, Req, schemas, views};
use ember_api_common::schema::as_bool;
use ember_model::VolumeId;
use ember_service::Service;
use ember_service::manage::{ManageSnapshot, ManageVolume, ManageableEntry};
use serde_json::{Value, json};

/// The backend's name for the object: `{"source-name": ...}` (or
/// `source-id`), or a plain string.
fn reference(r: Option<&Value>, what: &str) -> Result<String, CinderError> {
    let name = match r {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o
            .get("source-name")
            .or_else(|| o.get("source-id"))
            .and_then(Value::as_str),
        _ => None,
    };
    name.filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            CinderError::bad_request(format!(
                "Manage existing {what} failed due to invalid backend reference {}: a source-name is required.",
                r.cloned().unwrap_or(Value::Null)
            ))
        })
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
}

pub async fn manage_volume(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let value = body(req, &schemas::volume_manage(req.mv))?;
    let v = &value["volume"];
    let host = text(v, "host").filter(|h| !h.is_empty());
    let cluster = text(v, "cluster").filter(|c| !c.is_empty());
    let host = match (host, cluster) {
        (Some(h), None) => h,
        (None, Some(c)) => {
            return Err(CinderError::bad_request(format!(
                "Invalid input received: Cluster '{c}' not found: Ember runs no clusters."
            )));
        }
        _ => {
            return Err(CinderError::bad_request(
                "Invalid input received: One and only one of cluster and host must be set.",
            ));
        }
    };
    let request = ManageVolume {
        host,
        reference: reference(v.get("ref"), "volume")?,
        name: text(v, "name"),
        description: text(v, "description"),
        volume_type: text(v, "volume_type"),
        metadata: metadata_map(v.get("metadata")),
        availability_zone: text(v, "availability_zone"),
        bootable: v.get("bootable").and_then(as_bool).unwrap_or(false),
    };
    let volume = svc.manage_volume(&req.caller, request).await?;
    Ok(Reply::accepted(json!({"volume": views::volume(
        &volume,
        req.mv,
        &req.base,
        views::VolumeAttrs::None
    )})))
}

pub async fn manage_snapshot(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let value = body(req, &schemas::snapshot_manage())?;
    let s = &value["snapshot"];
    let raw = s["volume_id"].as_str().unwrap_or_default();
    let volume_id = VolumeId::parse(raw).ok_or_else(|| CinderError::volume_not_found(raw))?;
    let request = ManageSnapshot {
        volume_id,
        reference: reference(s.get("ref"), "snapshot")?,
        name: text(s, "name"),
        description: text(s, "description"),
        metadata: metadata_map(s.get("metadata")),
    };
    let snapshot = svc.manage_snapshot(&req.caller, request).await?;
    Ok(Reply::accepted(json!({"snapshot": views::snapshot(
        &snapshot,
        req.mv,
        views::SnapshotView::Basic,
        false
    )})))
}

fn entry(e: &ManageableEntry, detail: bool, snapshots: bool) -> Value {
    let mut o = json!({
        "reference": {"source-name": e.item.reference},
        "size": e.size_gib,
        "safe_to_manage": e.item.safe,
    });
    if snapshots {
        o["source_reference"] = json!(e.item.source.as_ref().map(|s| json!({"source-name": s})));
    }
    if detail {
        o["reason_not_safe"] = json!(e.item.reason_not_safe);
        o["cinder_id"] = Value::Null;
        o["extra_info"] = Value::Null;
    }
    o
}

/// The lists, sorted by `reference` or `size` (Cinder's only sort keys),
/// with `marker`/`limit`/`offset`.
pub async fn list(
    svc: &Service,
    req: &Req,
    detail: bool,
    since_38: bool,
    snapshots: bool,
) -> Result<Reply, CinderError> {
    if since_38 && !req.mv.at_least(8) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    let host = req.query("host").map(str::to_string);
    if req.query("cluster").is_some() {
        return Err(CinderError::bad_request(
            "Invalid input received: Ember runs no clusters; give a host.",
        ));
    }
    let mut entries = svc.manageable(&req.caller, host, snapshots).await?;
    let (key, dir) = match req.query("sort") {
        Some(sort) => {
            let (k, d) = sort.split_once(':').unwrap_or((sort, "asc"));
            (k.to_string(), d.to_string())
        }
        None => (
            req.query("sort_key").unwrap_or("reference").to_string(),
            req.query("sort_dir").unwrap_or("desc").to_string(),
        ),
    };
    if key != "reference" && key != "size" {
        return Err(CinderError::bad_request(format!(
            "Invalid input received: Invalid sort keys passed: {key}"
        )));
    }
    if dir != "asc" && dir != "desc" {
        return Err(CinderError::bad_request(format!(
            "Invalid input received: Invalid sort dirs passed: {dir}"
        )));
    }
    entries.sort_by(|a, b| match key.as_str() {
        "size" => a.size_gib.cmp(&b.size_gib),
        _ => a.item.reference.cmp(&b.item.reference),
    });
    if dir == "desc" {
        entries.reverse();
    }
    if let Some(marker) = req.query("marker") {
        match entries.iter().position(|e| e.item.reference == marker) {
            Some(i) => entries.drain(..=i).for_each(drop),
            None => {
                return Err(CinderError::bad_request(format!(
                    "Invalid input received: marker {marker} not found"
                )));
            }
        }
    }
    let number = |k: &str| -> Result<Option<usize>, CinderError> {
        req.query(k)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    CinderError::bad_request(format!(
                        "Invalid input received: {k} must be a non-negative integer"
                    ))
                })
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let limit = number("limit")?.unwrap_or(usize::MAX);
    let items: Vec<Value> = entries
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| entry(e, detail, snapshots))
        .collect();
    let key = if snapshots {
        "manageable-snapshots"
    } else {
        "manageable-volumes"
    };
    Ok(Reply::ok(json!({ key: items })))
}
