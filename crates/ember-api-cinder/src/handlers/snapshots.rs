//! `/snapshots`: create, list, show, update, delete, metadata, actions.

use super::{body, metadata_map, text_field};
use crate::listing::{filters, next_link, paging, to_query};
use crate::views::{self, SnapshotView};
use crate::{Api, CinderError, Reply, Req, schemas};
use axum::http::StatusCode;
use ember_api_common::schema::{as_bool, validate};
use ember_model::{Metadata, ProjectId, SnapshotId, SnapshotStatus, VolumeId};
use ember_service::{CreateSnapshot, MetadataWrite, Service, UpdateSnapshot};
use ember_store::{SnapshotFilter, SortKey};
use serde_json::{Value, json};

fn snapshot_id(id: &str) -> Result<SnapshotId, CinderError> {
    SnapshotId::parse(id).ok_or_else(|| CinderError::snapshot_not_found(id))
}

fn sort_key(key: &str) -> Option<SortKey> {
    Some(match key {
        "id" => SortKey::Id,
        "created_at" => SortKey::CreatedAt,
        "updated_at" => SortKey::UpdatedAt,
        "status" => SortKey::Status,
        "volume_id" => SortKey::VolumeId,
        "display_name" => SortKey::Name,
        "display_description" => SortKey::Description,
        "volume_size" => SortKey::Size,
        "project_id" => SortKey::ProjectId,
        "user_id" => SortKey::UserId,
        _ => return None,
    })
}

pub async fn list(svc: &Service, req: &Req, detail: bool) -> Result<Reply, CinderError> {
    let p = paging(req, sort_key)?;
    let marker = match &p.marker {
        Some(m) => Some(
            SnapshotId::parse(m)
                .ok_or_else(|| CinderError::snapshot_not_found(m))?
                .0,
        ),
        None => None,
    };
    let mut filter = SnapshotFilter::default();
    let mut project = None;
    let with_count_known = req.mv.at_least(45);
    for (k, v) in filters(req) {
        match k.as_str() {
            "name" | "display_name" => filter.name = Some(v),
            "status" => match v.parse::<SnapshotStatus>() {
                Ok(s) => filter.status = Some(s),
                Err(()) => filter.match_nothing = true,
            },
            "volume_id" => match VolumeId::parse(&v) {
                Some(id) => filter.volume_id = Some(id),
                None => filter.match_nothing = true,
            },
            "metadata" if req.mv.at_least(22) => {
                match ember_api_common::pyrepr::parse_literal_dict(&v) {
                    Some(m) => filter.metadata = m.into_iter().collect(),
                    None => {
                        return Err(CinderError::bad_request(format!(
                            "Invalid input received: Invalid metadata filter {v}"
                        )));
                    }
                }
            }
            "project_id" => project = Some(ProjectId(v)),
            _ => filter.match_nothing = true,
        }
    }
    // `with_count` below 3.45 is just an unknown filter.
    if req.query("with_count").is_some() && !with_count_known {
        filter.match_nothing = true;
    }
    let mut query = to_query(&p, marker, filter);
    // Narrows an admin's all-projects listing; others are scoped anyway.
    query.project = project;
    query.with_count = p.with_count && with_count_known;
    let page = svc
        .list_snapshots(&req.caller, query, p.all_tenants)
        .await?;
    if page.marker_not_found {
        return Err(CinderError::snapshot_not_found(
            p.marker.as_deref().unwrap_or_default(),
        ));
    }
    let view = if detail {
        SnapshotView::Detailed
    } else {
        SnapshotView::Basic
    };
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|s| views::snapshot(s, req.mv, view, !detail))
        .collect();
    let mut out = serde_json::Map::new();
    let last = page.items.last().map(|s| s.id.to_string());
    out.insert("snapshots".into(), Value::Array(items));
    if let Some(links) = next_link(req, page.items.len(), p.limit, last) {
        out.insert("snapshots_links".into(), links);
    }
    if let Some(count) = page.count {
        out.insert("count".into(), json!(count));
    }
    Ok(Reply::ok(Value::Object(out)))
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let value = body(req, &schemas::snapshot_create())?;
    let s = &value["snapshot"];
    let volume_id = match s.get("volume_id") {
        Some(Value::String(id)) => {
            VolumeId::parse(id).ok_or_else(|| CinderError::volume_not_found(id))?
        }
        _ => return Err(CinderError::volume_not_found("None")),
    };
    let force = s.get("force").and_then(as_bool);
    let allow_in_use = if req.api == Api::V3 && req.mv.at_least(66) {
        if force == Some(false) {
            return Err(CinderError::bad_request(
                "Since microversion 3.66 the 'force' flag is invalid for this request.  For backward compatability, however, when the 'force' flag is passed with a value evaluating to True, it is silently ignored.",
            ));
        }
        true
    } else {
        force == Some(true)
    };
    let name = text_field(s, "name", "display_name")
        .flatten()
        .map(|n| n.trim().to_string());
    let description = text_field(s, "description", "display_description").flatten();
    let request = CreateSnapshot {
        volume_id,
        name,
        description,
        metadata: metadata_map(s.get("metadata")),
        allow_in_use,
    };
    let snapshot = svc.create_snapshot(&req.caller, request).await?;
    Ok(Reply::accepted(
        json!({"snapshot": views::snapshot(&snapshot, req.mv, SnapshotView::Basic, false)}),
    ))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let snapshot = svc.snapshot(&req.caller, snapshot_id(id)?).await?;
    Ok(Reply::ok(
        json!({"snapshot": views::snapshot(&snapshot, req.mv, SnapshotView::Detailed, false)}),
    ))
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let id = snapshot_id(id)?;
    let value = body(req, &schemas::snapshot_update())?;
    let s = &value["snapshot"];
    let update = UpdateSnapshot {
        name: text_field(s, "name", "display_name").map(|n| n.map(|n| n.trim().to_string())),
        description: text_field(s, "description", "display_description"),
    };
    let snapshot = svc.update_snapshot(&req.caller, id, update).await?;
    Ok(Reply::ok(
        json!({"snapshot": views::snapshot(&snapshot, req.mv, SnapshotView::Basic, false)}),
    ))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    svc.delete_snapshot(&req.caller, snapshot_id(id)?, false)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn action(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let id = snapshot_id(id)?;
    let value = req.json_body()?;
    let Some((name, args)) = value
        .as_object()
        .and_then(|o| if o.len() == 1 { o.iter().next() } else { None })
    else {
        return Err(CinderError::bad_request(
            "There is either no action or more than one action in the request body.",
        ));
    };
    match name.as_str() {
        "os-reset_status" => {
            let status = parse_status(args)?;
            svc.reset_snapshot_status(&req.caller, id, status).await?;
        }
        "os-force_delete" => svc.delete_snapshot(&req.caller, id, true).await?,
        "os-unmanage" => svc.unmanage_snapshot(&req.caller, id).await?,
        // Ember's own: a read-only NBD export of the snapshot's data.
        "ember-export" => {
            let s = svc.export_snapshot(&req.caller, id).await?;
            let data =
                ember_service::attachments::snapshot_connection_data(svc.core(), &req.caller, &s);
            return Ok(Reply::ok(
                json!({"connection_info": {"driver_volume_type": "nbd", "data": data}}),
            ));
        }
        "ember-unexport" => svc.unexport_snapshot(&req.caller, id).await?,
        "os-update_snapshot_status" => {
            let status = parse_status(args)?;
            let progress = args
                .get("progress")
                .and_then(Value::as_str)
                .map(str::to_string);
            svc.update_snapshot_status(&req.caller, id, status, progress)
                .await?;
        }
        other => {
            return Err(CinderError::bad_request(format!(
                "Action {other} is not supported on snapshots."
            )));
        }
    }
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

fn parse_status(args: &Value) -> Result<SnapshotStatus, CinderError> {
    let status = args
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad_request("Must specify 'status'"))?;
    status.parse().map_err(|()| {
        CinderError::bad_request(format!(
            "Invalid input received: Invalid snapshot status {status}"
        ))
    })
}

fn metadata_json(m: &Metadata) -> Value {
    json!({"metadata": m})
}

pub async fn metadata(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let snapshot = svc.snapshot(&req.caller, snapshot_id(id)?).await?;
    Ok(Reply::ok(metadata_json(&snapshot.metadata)))
}

pub async fn write_metadata(
    svc: &Service,
    req: &Req,
    id: &str,
    replace: bool,
) -> Result<Reply, CinderError> {
    let id = snapshot_id(id)?;
    let value = body(req, &schemas::metadata_body())?;
    let how = if replace {
        MetadataWrite::Replace
    } else {
        MetadataWrite::Merge
    };
    let result = svc
        .write_snapshot_metadata(&req.caller, id, metadata_map(value.get("metadata")), how)
        .await?;
    Ok(Reply::ok(metadata_json(&result)))
}

pub async fn metadata_key(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    let snapshot = svc.snapshot(&req.caller, snapshot_id(id)?).await?;
    match snapshot.metadata.get(key) {
        Some(v) => Ok(Reply::ok(json!({"meta": {key: v}}))),
        None => Err(CinderError::not_found(format!(
            "Snapshot {} has no metadata with key {key}.",
            snapshot.id
        ))),
    }
}

pub async fn put_metadata_key(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    let id = snapshot_id(id)?;
    let item = meta_item(req, key)?;
    svc.write_snapshot_metadata(&req.caller, id, item.clone(), MetadataWrite::Merge)
        .await?;
    Ok(Reply::ok(json!({"meta": item})))
}

/// Validates `{"meta": {key: value}}` against the key in the URL.
pub(crate) fn meta_item(req: &Req, key: &str) -> Result<Metadata, CinderError> {
    let value = req.json_body()?;
    validate(&schemas::meta_item_body(), &value)
        .map_err(|e| CinderError::bad_request(e.to_message()))?;
    let item = metadata_map(value.get("meta"));
    if item.len() > 1 {
        return Err(CinderError::bad_request(
            "Request body contains too many items",
        ));
    }
    if !item.contains_key(key) {
        return Err(CinderError::bad_request("Request body and URI mismatch"));
    }
    Ok(item)
}

pub async fn delete_metadata_key(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    svc.delete_snapshot_metadata_key(&req.caller, snapshot_id(id)?, key.to_string())
        .await?;
    Ok(Reply::empty(StatusCode::OK))
}

pub async fn read_data(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let (offset, length) = super::volumes::range(req)?;
    let data = svc
        .read_snapshot(&req.caller, snapshot_id(id)?, offset, length)
        .await?;
    Ok(Reply {
        status: StatusCode::OK,
        body: None,
        raw: Some(data),
        headers: Vec::new(),
    })
}
