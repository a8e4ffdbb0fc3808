//! Volume backups (`/backups`), as Cinder 29 serves them: the fields each
//! microversion adds, the admin-only actions and attributes.

use super::{body, metadata_map, text_field};
use crate::{CinderError, Reply, Req, schemas};
use axum::http::StatusCode;
use ember_api_common::schema::as_bool;
use ember_model::{Backup, BackupId, BackupStatus, SnapshotId, VolumeId};
use ember_service::{CreateBackup, RestoreBackup, Service, UpdateBackup};
use serde_json::{Value, json};

fn backup_id(id: &str) -> Result<BackupId, CinderError> {
    BackupId::parse(id)
        .ok_or_else(|| CinderError::not_found(format!("Backup {id} could not be found.")))
}

fn links(req: &Req, b: &Backup) -> Value {
    let project = &b.project_id.0;
    json!([
        {"rel": "self", "href": format!("{}/v3/{project}/backups/{}", req.base, b.id)},
        {"rel": "bookmark", "href": format!("{}/{project}/backups/{}", req.base, b.id)},
    ])
}

fn summary(req: &Req, b: &Backup) -> Value {
    json!({"id": b.id.to_string(), "name": b.name, "links": links(req, b)})
}

fn detail(req: &Req, b: &Backup, has_dependents: bool) -> Value {
    let mut o = json!({
        "id": b.id.to_string(),
        "status": b.status.as_str(),
        "size": b.size_gib,
        "object_count": b.object_count,
        "availability_zone": b.availability_zone,
        "container": b.container,
        "created_at": b.created_at.to_iso_micros(),
        "updated_at": b.updated_at.map(|t| t.to_iso_micros()),
        "name": b.name,
        "description": b.description,
        "fail_reason": b.fail_reason,
        "volume_id": b.volume_id.to_string(),
        "links": links(req, b),
        "is_incremental": b.is_incremental,
        "has_dependent_backups": has_dependents,
        "snapshot_id": b.snapshot_id.map(|s| s.to_string()),
        "data_timestamp": b.data_timestamp.to_iso_micros(),
    });
    if req.mv.at_least(43) {
        o["metadata"] = json!(b.metadata);
    }
    if req.caller.is_admin() {
        if req.mv.at_least(18) {
            o["os-backup-project-attr:project_id"] = json!(b.project_id.0);
        }
        if req.mv.at_least(56) {
            o["user_id"] = json!(b.user_id.0);
        }
    }
    o
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let value = body(req, &schemas::backup_create(req.mv))?;
    let b = &value["backup"];
    let raw = b["volume_id"].as_str().unwrap_or_default();
    let volume_id = VolumeId::parse(raw).ok_or_else(|| CinderError::volume_not_found(raw))?;
    let snapshot_id = match b.get("snapshot_id").and_then(Value::as_str) {
        Some(s) => Some(SnapshotId::parse(s).ok_or_else(|| CinderError::snapshot_not_found(s))?),
        None => None,
    };
    let flag = |k: &str| b.get(k).and_then(as_bool).unwrap_or(false);
    let request = CreateBackup {
        volume_id,
        snapshot_id,
        name: text_field(b, "name", "name").flatten(),
        description: text_field(b, "description", "description").flatten(),
        container: text_field(b, "container", "container").flatten(),
        availability_zone: text_field(b, "availability_zone", "availability_zone").flatten(),
        metadata: metadata_map(b.get("metadata")),
        incremental: flag("incremental"),
        force: flag("force"),
    };
    let backup = svc.create_backup(&req.caller, request).await?;
    Ok(Reply::accepted(json!({"backup": summary(req, &backup)})))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let b = svc.backup(&req.caller, backup_id(id)?).await?;
    let dependents = svc.backup_has_dependents(&b).await?;
    Ok(Reply::ok(json!({"backup": detail(req, &b, dependents)})))
}

/// Lists with Cinder's filters (`name`, `status`, `volume_id`), sorting
/// (`created_at` descending by default) and paging (`limit`, `marker`,
/// `offset`).
pub async fn list(svc: &Service, req: &Req, with_detail: bool) -> Result<Reply, CinderError> {
    let all_tenants = req
        .query("all_tenants")
        .is_some_and(crate::listing::bool_from_string);
    let mut found = svc.list_backups(&req.caller, all_tenants).await?;
    for (key, value) in crate::listing::filters(req) {
        found.retain(|(b, _)| match key.as_str() {
            "name" | "display_name" => b.name.as_deref() == Some(value.as_str()),
            "status" => b.status.as_str() == value,
            "volume_id" => b.volume_id.to_string() == value,
            // Unknown filters match nothing, as Cinder's database query.
            _ => false,
        });
    }
    let sort_key = req
        .query("sort_key")
        .or_else(|| req.query("sort").map(|s| s.split(':').next().unwrap_or("")))
        .unwrap_or("created_at");
    let descending = match req
        .query("sort_dir")
        .or_else(|| req.query("sort").and_then(|s| s.split(':').nth(1)))
    {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(CinderError::bad_request(format!(
                "Invalid input received: Unknown sort direction {other}, must be 'desc' or 'asc'"
            )));
        }
    };
    match sort_key {
        "created_at" => found.sort_by_key(|(b, _)| (b.created_at, b.id)),
        "id" => found.sort_by_key(|(b, _)| b.id),
        "name" | "display_name" => found.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name)),
        "status" => found.sort_by(|(a, _), (b, _)| a.status.as_str().cmp(b.status.as_str())),
        "size" => found.sort_by_key(|(b, _)| b.size_gib),
        other => {
            return Err(CinderError::bad_request(format!(
                "Invalid input received: Invalid sort key {other}"
            )));
        }
    }
    if descending {
        found.reverse();
    }
    if let Some(marker) = req.query("marker") {
        let at = found
            .iter()
            .position(|(b, _)| b.id.to_string() == marker)
            .ok_or_else(|| {
                CinderError::not_found(format!("Marker {marker} could not be found."))
            })?;
        found.drain(..=at);
    }
    let offset = match req.query("offset") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| CinderError::bad_request("offset param must be an integer"))?,
        None => 0,
    };
    found.drain(..offset.min(found.len()));
    let limit = match req.query("limit") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| CinderError::bad_request("limit param must be an integer"))?,
        None => crate::listing::MAX_LIMIT as usize,
    };
    let more = found.len() > limit;
    found.truncate(limit);
    let items: Vec<Value> = found
        .iter()
        .map(|(b, dependents)| {
            if with_detail {
                detail(req, b, *dependents)
            } else {
                summary(req, b)
            }
        })
        .collect();
    let mut out = json!({"backups": items});
    if more && let Some((last, _)) = found.last() {
        let collection = if with_detail {
            "backups/detail"
        } else {
            "backups"
        };
        out["backups_links"] = json!([{
            "rel": "next",
            "href": format!(
                "{}/v3/{}/{collection}?limit={limit}&marker={}",
                req.base, req.caller.project_id.0, last.id
            ),
        }]);
    }
    Ok(Reply::ok(out))
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    if !req.mv.at_least(9) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    let id = backup_id(id)?;
    let value = body(req, &schemas::backup_update(req.mv))?;
    let b = &value["backup"];
    let update = UpdateBackup {
        name: text_field(b, "name", "name"),
        description: text_field(b, "description", "description"),
        metadata: b
            .get("metadata")
            .filter(|m| !m.is_null())
            .map(|m| metadata_map(Some(m))),
    };
    let backup = svc.update_backup(&req.caller, id, update).await?;
    Ok(Reply::ok(json!({"backup": summary(req, &backup)})))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    svc.delete_backup(&req.caller, backup_id(id)?, false)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn restore(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let id = backup_id(id)?;
    let value = body(req, &schemas::backup_restore())?;
    let r = &value["restore"];
    let volume_id = match r.get("volume_id").and_then(Value::as_str) {
        Some(v) => Some(VolumeId::parse(v).ok_or_else(|| CinderError::volume_not_found(v))?),
        None => None,
    };
    let restored = svc
        .restore_backup(
            &req.caller,
            id,
            RestoreBackup {
                volume_id,
                name: r.get("name").and_then(Value::as_str).map(str::to_string),
            },
        )
        .await?;
    Ok(Reply::accepted(json!({"restore": {
        "backup_id": restored.backup_id.to_string(),
        "volume_id": restored.volume_id.to_string(),
        "volume_name": restored.volume_name,
    }})))
}

/// `POST /backups/{id}/action`: `os-reset_status`, `os-force_delete`.
pub async fn action(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let id = backup_id(id)?;
    let value = req.json_body()?;
    let (name, args) = value
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| CinderError::bad_request("Malformed request body"))?;
    match name.as_str() {
        "os-reset_status" => {
            let status = args
                .get("status")
                .and_then(Value::as_str)
                .ok_or_else(|| CinderError::bad_request("Must specify 'status'"))?;
            let status: BackupStatus = status.parse().map_err(|()| {
                CinderError::bad_request(format!(
                    "Invalid input received: Invalid backup status {status}"
                ))
            })?;
            svc.reset_backup_status(&req.caller, id, status).await?;
        }
        "os-force_delete" => svc.delete_backup(&req.caller, id, true).await?,
        other => {
            return Err(CinderError::bad_request(format!(
                "There is no such action: {other}"
            )));
        }
    }
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn export_record(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let (service, url) = svc
        .export_backup_record(&req.caller, backup_id(id)?)
        .await?;
    Ok(Reply::ok(json!({"backup-record": {
        "backup_service": service,
        "backup_url": url,
    }})))
}

pub async fn import_record(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let value = body(req, &schemas::backup_import())?;
    let r = &value["backup-record"];
    let backup = svc
        .import_backup_record(
            &req.caller,
            r["backup_service"].as_str().unwrap_or_default(),
            r["backup_url"].as_str().unwrap_or_default(),
        )
        .await?;
    Ok(Reply {
        status: StatusCode::CREATED,
        body: Some(json!({"backup": summary(req, &backup)})),
        raw: None,
        headers: Vec::new(),
    })
}
