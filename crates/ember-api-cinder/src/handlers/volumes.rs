//! `/volumes`: create, list, show, update, delete, metadata, actions, and
//! Ember's raw data API.

use super::{body, metadata_map, text_field};
use crate::listing::{bool_from_string, filters, next_link, paging, to_query};
use crate::{CinderError, Reply, Req, schemas, views};
use axum::http::StatusCode;
use ember_api_common::schema::as_bool;
use ember_model::{ProjectId, SnapshotId, VolumeId, VolumeStatus};
use ember_service::{AttachRequest, CreateVolume, MetadataWrite, Service, UpdateVolume};
use ember_store::{SortKey, VolumeFilter};
use serde_json::{Value, json};

fn volume_id(id: &str) -> Result<VolumeId, CinderError> {
    VolumeId::parse(id).ok_or_else(|| CinderError::volume_not_found(id))
}

fn sort_key(key: &str) -> Option<SortKey> {
    Some(match key {
        "id" => SortKey::Id,
        "created_at" => SortKey::CreatedAt,
        "updated_at" => SortKey::UpdatedAt,
        "status" => SortKey::Status,
        "name" | "display_name" => SortKey::Name,
        "display_description" => SortKey::Description,
        "size" => SortKey::Size,
        "project_id" => SortKey::ProjectId,
        "user_id" => SortKey::UserId,
        _ => return None,
    })
}

pub async fn list(svc: &Service, req: &Req, detail: bool) -> Result<Reply, CinderError> {
    let p = paging(req, sort_key)?;
    let marker = match &p.marker {
        Some(m) => Some(
            VolumeId::parse(m)
                .ok_or_else(|| CinderError::volume_not_found(m))?
                .0,
        ),
        None => None,
    };
    let mut filter = VolumeFilter::default();
    let mut project = None;
    for (k, v) in filters(req) {
        match k.as_str() {
            "name" | "display_name" => filter.name = Some(v),
            "status" => match v.parse::<VolumeStatus>() {
                Ok(s) => filter.status = Some(s),
                Err(()) => filter.match_nothing = true,
            },
            "metadata" => match ember_api_common::pyrepr::parse_literal_dict(&v) {
                Some(m) => filter.metadata = m.into_iter().collect(),
                None => {
                    return Err(CinderError::bad_request(format!(
                        "Invalid input received: Invalid metadata filter {v}"
                    )));
                }
            },
            "availability_zone" => filter.availability_zone = Some(v),
            "bootable" => filter.bootable = Some(bool_from_string(&v)),
            "project_id" => project = Some(ProjectId(v)),
            _ => filter.match_nothing = true,
        }
    }
    let mut query = to_query(&p, marker, filter);
    // Only an admin listing all projects may narrow it to one; the service
    // scopes everyone else to their own project.
    query.project = project;
    query.with_count = p.with_count && req.mv.at_least(45);
    let page = svc.list_volumes(&req.caller, query, p.all_tenants).await?;
    if page.marker_not_found {
        return Err(CinderError::volume_not_found(
            p.marker.as_deref().unwrap_or_default(),
        ));
    }
    let admin = req.caller.is_admin();
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|v| {
            if detail {
                views::volume(v, req.mv, &req.base, views::VolumeAttrs::for_reader(admin))
            } else {
                views::volume_summary(v, &req.base)
            }
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("volumes".into(), Value::Array(items));
    if let Some(links) = next_link(
        req,
        page.items.len(),
        p.limit,
        page.items.last().map(|v| v.id.to_string()),
    ) {
        out.insert("volumes_links".into(), links);
    }
    if let Some(count) = page.count {
        out.insert("count".into(), json!(count));
    }
    Ok(Reply::ok(Value::Object(out)))
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let value = body(req, &schemas::volume_create(req.mv))?;
    let v = &value["volume"];
    // Digits past u64 (the schema let them through) are a size the
    // service refuses as too large, not a missing one.
    let size = match v.get("size") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => Some(s.parse().unwrap_or(u64::MAX)),
        _ => None,
    };
    let snapshot_id = match v.get("snapshot_id").and_then(Value::as_str) {
        Some(s) => Some(SnapshotId::parse(s).ok_or_else(|| CinderError::snapshot_not_found(s))?),
        None => None,
    };
    let source_volid = match v.get("source_volid").and_then(Value::as_str) {
        Some(s) => Some(volume_id(s)?),
        None => None,
    };
    if size.is_none() && snapshot_id.is_none() && source_volid.is_none() {
        return Err(CinderError::bad_request(
            "Invalid input received: Volume size is required when not creating from a snapshot or volume.",
        ));
    }
    let request = CreateVolume {
        request_id: Some(req.request_id.clone()),
        name: text_field(v, "name", "display_name")
            .flatten()
            .map(|n| n.trim().to_string()),
        description: text_field(v, "description", "display_description").flatten(),
        size_gib: size,
        snapshot_id,
        source_volid,
        metadata: metadata_map(v.get("metadata")),
        availability_zone: v
            .get("availability_zone")
            .and_then(Value::as_str)
            .map(str::to_string),
        volume_type: v
            .get("volume_type")
            .and_then(Value::as_str)
            .map(str::to_string),
        multiattach: v.get("multiattach").and_then(as_bool).unwrap_or(false),
        // Groups exist from 3.13; before, the field is ignored as Cinder does.
        group_id: v
            .get("group_id")
            .and_then(Value::as_str)
            .filter(|g| !g.is_empty() && req.mv.at_least(13))
            .map(str::to_string),
    };
    let volume = svc.create_volume(&req.caller, request).await?;
    Ok(Reply::accepted(
        json!({"volume": views::volume(&volume, req.mv, &req.base, views::VolumeAttrs::None)}),
    ))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    if id == "summary" && req.mv.at_least(12) {
        return summary(svc, req).await;
    }
    let volume = svc.volume(&req.caller, volume_id(id)?).await?;
    Ok(Reply::ok(
        json!({"volume": views::volume(&volume, req.mv, &req.base, views::VolumeAttrs::for_reader(req.caller.is_admin()))}),
    ))
}

/// `GET /volumes/summary` (3.12; `metadata` from 3.36): count and size of
/// the caller's volumes (every project's for an admin with `all_tenants`).
async fn summary(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let all_tenants = req.query("all_tenants").is_some_and(bool_from_string);
    let query = ember_store::ListQuery {
        limit: None,
        ..Default::default()
    };
    let page = svc.list_volumes(&req.caller, query, all_tenants).await?;
    let total_size: u64 = page.items.iter().map(|v| v.size_gib).sum();
    let mut summary = json!({"total_size": total_size, "total_count": page.items.len()});
    if req.mv.at_least(36) {
        let mut metadata: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for v in &page.items {
            for (k, val) in &v.metadata {
                let values = metadata.entry(k.clone()).or_default();
                if !values.contains(val) {
                    values.push(val.clone());
                }
            }
        }
        summary["metadata"] = json!(metadata);
    }
    Ok(Reply::ok(json!({"volume-summary": summary})))
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let id = volume_id(id)?;
    let value = body(req, &schemas::volume_update(req.mv))?;
    let v = &value["volume"];
    let update = UpdateVolume {
        name: text_field(v, "name", "display_name").map(|n| n.map(|n| n.trim().to_string())),
        description: text_field(v, "description", "display_description"),
        metadata: v.get("metadata").map(|m| metadata_map(Some(m))),
    };
    let volume = svc.update_volume(&req.caller, id, update).await?;
    // Cinder's `os-vol-*` extensions extend show and detail only: an
    // update answers the plain view.
    Ok(Reply::ok(
        json!({"volume": views::volume(&volume, req.mv, &req.base, views::VolumeAttrs::None)}),
    ))
}

/// A required boolean argument of an action, in the forms OpenStack
/// accepts (a JSON boolean or one of its boolean strings).
fn strict_bool(args: &Value, key: &str) -> Result<bool, CinderError> {
    let Some(value) = args.get(key) else {
        return Err(CinderError::bad_request(format!(
            "'{key}' is a required property"
        )));
    };
    let ok = matches!(value, Value::Bool(_) | Value::String(_));
    ok.then(|| ember_api_common::schema::as_bool(value))
        .flatten()
        .ok_or_else(|| {
            CinderError::bad_request(format!(
                "Invalid input for field/attribute {key}. Value: {}. {} is not of type 'boolean', 'string'",
                ember_api_common::pyrepr::str(value),
                ember_api_common::pyrepr::repr(value)
            ))
        })
}

/// The `connector` of a connection action: an object (required or not).
fn connector_arg(args: &Value, required: bool) -> Result<Option<Value>, CinderError> {
    match args.get("connector") {
        Some(c @ Value::Object(_)) => Ok(Some(c.clone())),
        None | Some(Value::Null) if !required => Ok(None),
        None => Err(CinderError::bad_request(
            "'connector' is a required property",
        )),
        Some(other) => Err(CinderError::bad_request(format!(
            "Invalid input for field/attribute connector. Value: {other}. {other} is not of type 'object'"
        ))),
    }
}

fn flag(req: &Req, key: &str) -> bool {
    req.query(key)
        .and_then(|v| as_bool(&Value::String(v.to_string())))
        .unwrap_or(false)
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let force = req.mv.at_least(23) && flag(req, "force");
    svc.delete_volume(&req.caller, volume_id(id)?, flag(req, "cascade"), force)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

fn field<'a>(args: &'a Value, key: &str) -> Result<&'a Value, CinderError> {
    args.get(key)
        .ok_or_else(|| CinderError::bad_request(format!("'{key}' is a required property")))
}

pub async fn action(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let id = volume_id(id)?;
    let value = req.json_body()?;
    let Some((name, args)) = value
        .as_object()
        .and_then(|o| if o.len() == 1 { o.iter().next() } else { None })
    else {
        return Err(CinderError::bad_request(
            "There is either no action or more than one action in the request body.",
        ));
    };
    let caller = &req.caller;
    use VolumeStatus::*;
    match name.as_str() {
        "os-extend" => {
            let new_size = field(args, "new_size")?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let n = new_size
                .as_u64()
                .or_else(|| {
                    new_size
                        .as_str()
                        .filter(|s| digits(s))
                        .map(|s| s.parse().unwrap_or(u64::MAX))
                })
                .filter(|n| *n >= 1)
                .ok_or_else(|| CinderError::bad_request(format!("Invalid input for field/attribute new_size. Value: {}. It must be an integer of at least 1", ember_api_common::pyrepr::str(new_size))))?;
            svc.extend_volume(caller, id, n).await?;
        }
        "os-retype" => {
            let new_type = field(args, "new_type")?
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    CinderError::bad_request("Invalid input for field/attribute new_type.")
                })?;
            if let Some(policy) = args.get("migration_policy").filter(|p| !p.is_null())
                && !matches!(policy.as_str(), Some("never" | "on-demand"))
            {
                return Err(CinderError::bad_request(format!(
                    "Invalid input for field/attribute migration_policy. Value: {}. {} is not one of ['on-demand', 'never']",
                    ember_api_common::pyrepr::str(policy),
                    ember_api_common::pyrepr::repr(policy)
                )));
            }
            let on_demand = args
                .get("migration_policy")
                .and_then(Value::as_str)
                .is_some_and(|p| p == "on-demand");
            svc.retype_volume(caller, id, new_type.to_string(), on_demand)
                .await?;
        }
        "revert" if req.mv.at_least(40) => {
            let snap = field(args, "snapshot_id")?.as_str().unwrap_or_default();
            let snapshot =
                SnapshotId::parse(snap).ok_or_else(|| CinderError::snapshot_not_found(snap))?;
            svc.revert_volume(caller, id, snapshot).await?;
        }
        "os-attach" => {
            let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
            let mode = text("mode").unwrap_or_else(|| "rw".into());
            if mode != "rw" && mode != "ro" {
                return Err(CinderError::bad_request(
                    "Invalid attaching mode. Mode must be 'rw' or 'ro'.",
                ));
            }
            let request = AttachRequest {
                instance_uuid: text("instance_uuid"),
                host_name: text("host_name"),
                mountpoint: text("mountpoint"),
                mode,
            };
            svc.attach_volume(caller, id, request).await?;
        }
        "os-detach" => {
            let attachment = args
                .get("attachment_id")
                .and_then(Value::as_str)
                .and_then(|a| uuid::Uuid::parse_str(a).ok());
            svc.detach_volume(caller, id, attachment).await?;
        }
        "os-initialize_connection" => {
            let connector = connector_arg(args, true)?.unwrap_or_default();
            let (v, a) = svc.initialize_connection(caller, id, connector).await?;
            let (kind, data) = ember_service::attachments::connection(svc.core(), caller, &v, &a);
            return Ok(Reply::ok(json!({"connection_info": {
                "driver_volume_type": kind,
                "data": data,
                "enforce_multipath": false,
            }})));
        }
        "os-terminate_connection" => {
            let connector = connector_arg(args, true)?.unwrap_or_default();
            svc.terminate_connection(caller, id, connector).await?;
        }
        "os-force_detach" => {
            let attachment = match args.get("attachment_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(a)) => Some(uuid::Uuid::parse_str(a).map_err(|_| {
                    CinderError::bad_request(format!(
                        "Error force detaching volume - VolumeAttachmentNotFound: Volume attachment could not be found with filter: attachment_id = {a}."
                    ))
                })?),
                Some(other) => {
                    return Err(CinderError::bad_request(format!(
                        "Invalid input for field/attribute attachment_id. Value: {other}."
                    )));
                }
            };
            connector_arg(args, false)?;
            svc.force_detach(caller, id, attachment)
                .await
                .map_err(|e| match e {
                    ember_service::ServiceError::NotFound(m) => CinderError::bad_request(format!(
                        "Error force detaching volume - VolumeAttachmentNotFound: {m}"
                    )),
                    other => other.into(),
                })?;
        }
        "os-set_bootable" => {
            let bootable = strict_bool(args, "bootable")?;
            svc.set_bootable(caller, id, bootable).await?;
            return Ok(Reply::empty(StatusCode::OK));
        }
        "os-update_readonly_flag" => {
            let readonly = strict_bool(args, "readonly")?;
            svc.set_read_only(caller, id, readonly).await?;
        }
        "os-reserve" => drop(svc.reserve_volume(caller, id).await?),
        "os-unreserve" => drop(svc.unreserve_volume(caller, id).await?),
        "os-begin_detaching" => drop(
            svc.move_volume_status(caller, id, &[InUse], Detaching, "volume:begin_detaching")
                .await?,
        ),
        "os-roll_detaching" => drop(
            svc.move_volume_status(caller, id, &[Detaching], InUse, "volume:roll_detaching")
                .await?,
        ),
        "os-reset_status" => {
            let status = field(args, "status")?.as_str().unwrap_or_default();
            let status = status.parse().map_err(|()| {
                CinderError::bad_request(format!(
                    "Invalid input received: Invalid volume status {status}"
                ))
            })?;
            svc.reset_volume_status(caller, id, status).await?;
        }
        "os-force_delete" => svc.delete_volume(caller, id, true, true).await?,
        "os-unmanage" => svc.unmanage_volume(caller, id).await?,
        "os-migrate_volume" => {
            // `cluster` (3.16) names no Ember host: Ember runs no clusters.
            let host = match (args.get("host"), args.get("cluster")) {
                (Some(Value::String(h)), None | Some(Value::Null)) if !h.is_empty() => h.clone(),
                (None | Some(Value::Null), Some(Value::String(c))) if req.mv.at_least(16) => {
                    return Err(CinderError::bad_request(format!(
                        "Invalid input received: No valid host was found: cluster {c}."
                    )));
                }
                _ => {
                    return Err(CinderError::bad_request(
                        "Invalid input received: One and only one of host and cluster must be set.",
                    ));
                }
            };
            for flag in ["force_host_copy", "lock_volume"] {
                if let Some(v) = args.get(flag)
                    && !v.is_null()
                    && ember_api_common::schema::as_bool(v).is_none()
                {
                    return Err(CinderError::bad_request(format!(
                        "Invalid input for field/attribute {flag}."
                    )));
                }
            }
            svc.migrate_volume(caller, id, host).await?;
        }
        other => {
            return Err(CinderError::bad_request(format!(
                "Action {other} is not supported on volumes at this version."
            )));
        }
    }
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn metadata(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let volume = svc.volume(&req.caller, volume_id(id)?).await?;
    Ok(Reply::ok(json!({"metadata": volume.metadata})))
}

pub async fn write_metadata(
    svc: &Service,
    req: &Req,
    id: &str,
    replace: bool,
) -> Result<Reply, CinderError> {
    let id = volume_id(id)?;
    let value = body(req, &schemas::metadata_body())?;
    let how = if replace {
        MetadataWrite::Replace
    } else {
        MetadataWrite::Merge
    };
    let result = svc
        .write_volume_metadata(&req.caller, id, metadata_map(value.get("metadata")), how)
        .await?;
    Ok(Reply::ok(json!({"metadata": result})))
}

pub async fn metadata_key(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    let volume = svc.volume(&req.caller, volume_id(id)?).await?;
    match volume.metadata.get(key) {
        Some(v) => Ok(Reply::ok(json!({"meta": {key: v}}))),
        None => Err(CinderError::not_found(format!(
            "Volume {} has no metadata with key {key}.",
            volume.id
        ))),
    }
}

pub async fn put_metadata_key(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    let id = volume_id(id)?;
    let item = super::snapshots::meta_item(req, key)?;
    svc.write_volume_metadata(&req.caller, id, item.clone(), MetadataWrite::Merge)
        .await?;
    Ok(Reply::ok(json!({"meta": item})))
}

pub async fn delete_metadata_key(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    svc.delete_volume_metadata_key(&req.caller, volume_id(id)?, key.to_string())
        .await?;
    Ok(Reply::empty(StatusCode::OK))
}

/// `?offset=N&length=M` of the data API.
pub(crate) fn range(req: &Req) -> Result<(u64, u64), CinderError> {
    let num = |k: &str, default: Option<u64>| -> Result<u64, CinderError> {
        match req.query(k) {
            Some(v) => v.parse().map_err(|_| {
                CinderError::bad_request(format!("{k} must be a non-negative integer"))
            }),
            None => default.ok_or_else(|| CinderError::bad_request(format!("{k} is required"))),
        }
    };
    Ok((num("offset", Some(0))?, num("length", None)?))
}

pub async fn read_data(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let (offset, length) = range(req)?;
    let data = svc
        .read_volume(&req.caller, volume_id(id)?, offset, length)
        .await?;
    Ok(Reply {
        status: StatusCode::OK,
        body: None,
        raw: Some(data),
        headers: Vec::new(),
    })
}

pub async fn write_data(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let offset = match req.query("offset") {
        Some(v) => v
            .parse()
            .map_err(|_| CinderError::bad_request("offset must be a non-negative integer"))?,
        None => 0,
    };
    svc.write_volume(&req.caller, volume_id(id)?, offset, req.body.to_vec())
        .await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
