//! Generic volume groups (3.13+) and group snapshots (3.14+).

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_model::{GroupSnapshot, VolumeId};
use ember_service::Service;
use ember_service::groups::{GroupSource, GroupView};
use serde_json::{Value, json};

fn gate(req: &Req, minor: u32) -> Result<(), CinderError> {
    if req.mv.at_least(minor) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

fn group_view(req: &Req, g: &GroupView) -> Value {
    let mut o = json!({
        "id": g.group.id,
        "name": g.group.name,
        "description": g.group.description,
        "status": g.status,
        "availability_zone": g.group.availability_zone,
        "created_at": g.group.created_at.to_iso_micros(),
        "group_type": g.group.group_type_id,
        "volume_types": g.group.volume_type_ids,
        "group_snapshot_id": g.group.group_snapshot_id,
        "source_group_id": g.group.source_group_id,
    });
    if req.mv.at_least(25)
        && req
            .query("list_volume")
            .is_some_and(crate::listing::bool_from_string)
    {
        o["volumes"] = json!(g.volumes.iter().map(|v| v.to_string()).collect::<Vec<_>>());
    }
    if req.mv.at_least(38) {
        o["replication_status"] = json!("disabled");
    }
    if req.mv.at_least(58) {
        o["project_id"] = json!(g.group.project_id.0);
    }
    o
}

fn snapshot_view(req: &Req, g: &GroupSnapshot, status: &str) -> Value {
    let mut o = json!({
        "id": g.id, "group_id": g.group_id, "status": status, "created_at": g.created_at.to_iso_micros(),
        "name": g.name, "description": g.description, "group_type_id": g.group_type_id,
    });
    if req.mv.at_least(58) {
        o["project_id"] = json!(g.project_id.0);
    }
    o
}

fn wrapped<'a>(body: &'a Value, key: &str) -> Result<&'a Value, CinderError> {
    body.get(key).filter(|v| v.is_object()).ok_or_else(|| {
        CinderError::bad_request(format!("Missing required element '{key}' in request body."))
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn volume_ids(v: Option<&Value>) -> Result<Vec<VolumeId>, CinderError> {
    let Some(list) = v.and_then(Value::as_str) else {
        return Ok(vec![]);
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| VolumeId::parse(s).ok_or_else(|| CinderError::volume_not_found(s)))
        .collect()
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    gate(req, 13)?;
    let body = req.json_body()?;
    let g = wrapped(&body, "group")?;
    let group_type = text(g, "group_type")
        .ok_or_else(|| CinderError::bad_request("group_type must be provided to create group."))?;
    let volume_types: Vec<String> = match g.get("volume_types") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => vec![],
    };
    let group = svc
        .create_group(
            &req.caller,
            text(g, "name"),
            text(g, "description"),
            GroupSource::Nothing {
                group_type,
                volume_types,
            },
        )
        .await?;
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body: Some(json!({"group": {"id": group.id, "name": group.name}})),
        raw: None,
        headers: Vec::new(),
    })
}

pub async fn create_from_source(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    gate(req, 14)?;
    let body = req.json_body()?;
    let g = wrapped(&body, "create-from-src")?;
    let source = match (text(g, "group_snapshot_id"), text(g, "source_group_id")) {
        (Some(s), None) => GroupSource::GroupSnapshot(s),
        (None, Some(s)) => GroupSource::Group(s),
        _ => {
            return Err(CinderError::bad_request(
                "Either 'group_snapshot_id' or 'source_group_id' must be provided, not both.",
            ));
        }
    };
    let group = svc
        .create_group(&req.caller, text(g, "name"), text(g, "description"), source)
        .await?;
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body: Some(json!({"group": {"id": group.id, "name": group.name}})),
        raw: None,
        headers: Vec::new(),
    })
}

pub async fn list(svc: &Service, req: &Req, detail: bool) -> Result<Reply, CinderError> {
    gate(req, 13)?;
    let all = req
        .query("all_tenants")
        .is_some_and(crate::listing::bool_from_string);
    let groups = svc.list_groups(&req.caller, all).await?;
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            if detail {
                group_view(req, g)
            } else {
                json!({"id": g.group.id, "name": g.group.name})
            }
        })
        .collect();
    Ok(Reply::ok(json!({"groups": items})))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 13)?;
    let g = svc.group(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(json!({"group": group_view(req, &g)})))
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 13)?;
    let body = req.json_body()?;
    let g = wrapped(&body, "group")?;
    let name = g.get("name").map(|n| n.as_str().map(str::to_string));
    let description = g.get("description").map(|d| d.as_str().map(str::to_string));
    let add = volume_ids(g.get("add_volumes"))?;
    let remove = volume_ids(g.get("remove_volumes"))?;
    if name.is_none() && description.is_none() && add.is_empty() && remove.is_empty() {
        return Err(CinderError::bad_request(
            "Name, description, add_volumes, and remove_volumes can not be all empty in the request body.",
        ));
    }
    svc.update_group(&req.caller, id.to_string(), name, description, add, remove)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn action(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 13)?;
    let body = req.json_body()?;
    if let Some(d) = body.get("delete") {
        let delete_volumes = d
            .get("delete-volumes")
            .and_then(ember_api_common::schema::as_bool)
            .unwrap_or(false);
        svc.delete_group(&req.caller, id.to_string(), delete_volumes)
            .await?;
    } else if let Some(r) = body.get("reset_status") {
        gate(req, 20)?;
        let status =
            text(r, "status").ok_or_else(|| CinderError::bad_request("Must specify 'status'"))?;
        svc.reset_group_status(&req.caller, id.to_string(), status)
            .await?;
    } else {
        return Err(CinderError::bad_request(
            "There is either no action or more than one action in the request body.",
        ));
    }
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn create_snapshot(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    gate(req, 14)?;
    let body = req.json_body()?;
    let g = wrapped(&body, "group_snapshot")?;
    let group_id = text(g, "group_id")
        .ok_or_else(|| CinderError::bad_request("'group_id' must be specified"))?;
    let gs = svc
        .create_group_snapshot(
            &req.caller,
            group_id,
            text(g, "name"),
            text(g, "description"),
        )
        .await?;
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body: Some(
            json!({"group_snapshot": {"id": gs.id, "name": gs.name, "group_type_id": gs.group_type_id}}),
        ),
        raw: None,
        headers: Vec::new(),
    })
}

pub async fn list_snapshots(svc: &Service, req: &Req, detail: bool) -> Result<Reply, CinderError> {
    gate(req, 14)?;
    let all = req
        .query("all_tenants")
        .is_some_and(crate::listing::bool_from_string);
    let list = svc.list_group_snapshots(&req.caller, all).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|(g, st)| {
            if detail {
                snapshot_view(req, g, st)
            } else {
                json!({"id": g.id, "name": g.name})
            }
        })
        .collect();
    Ok(Reply::ok(json!({"group_snapshots": items})))
}

pub async fn show_snapshot(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 14)?;
    let (g, st) = svc.group_snapshot(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(
        json!({"group_snapshot": snapshot_view(req, &g, &st)}),
    ))
}

pub async fn delete_snapshot(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 14)?;
    svc.delete_group_snapshot(&req.caller, id.to_string())
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn snapshot_action(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 19)?;
    let body = req.json_body()?;
    let r = wrapped(&body, "reset_status")?;
    let status =
        text(r, "status").ok_or_else(|| CinderError::bad_request("Must specify 'status'"))?;
    svc.reset_group_snapshot_status(&req.caller, id.to_string(), status)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}
