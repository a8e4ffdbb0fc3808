//! Volume transfers at `os-volume-transfer` (every version) and
//! `volume-transfers` (3.55+), with the fields each microversion adds.

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_api_common::schema::as_bool;
use ember_model::{Transfer, VolumeId};
use ember_service::Service;
use serde_json::{Value, json};

/// What a view includes.
#[derive(Clone, Copy, PartialEq)]
enum View {
    Summary,
    Detail,
}

fn render(req: &Req, t: &Transfer, view: View, collection: &str) -> Value {
    let project = &t.source_project_id.0;
    let mut o = json!({
        "id": t.id,
        "name": t.name,
        "volume_id": t.volume_id.to_string(),
        "links": [
            {"rel": "self", "href": format!("{}/v3/{project}/{collection}/{}", req.base, t.id)},
            {"rel": "bookmark", "href": format!("{}/{project}/{collection}/{}", req.base, t.id)},
        ],
    });
    if view == View::Detail {
        o["created_at"] = json!(t.created_at.to_iso_micros());
        if req.mv.at_least(55) {
            o["no_snapshots"] = json!(t.no_snapshots);
        }
        if req.mv.at_least(57) {
            o["source_project_id"] = json!(t.source_project_id.0);
            o["destination_project_id"] = Value::Null;
            o["accepted"] = json!(false);
        }
    }
    o
}

pub async fn create(svc: &Service, req: &Req, collection: &str) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let t = body
        .get("transfer")
        .filter(|t| t.is_object())
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'transfer' in request body.")
        })?;
    let raw_id = t
        .get("volume_id")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad_request("Incorrect request body format"))?;
    let volume_id = VolumeId::parse(raw_id).ok_or_else(|| CinderError::volume_not_found(raw_id))?;
    let name = match t.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= 255 => Some(s.trim().to_string()),
        Some(other) => {
            return Err(CinderError::bad_request(format!(
                "Invalid input for field/attribute name. Value: {other}."
            )));
        }
    };
    let no_snapshots = match t.get("no_snapshots") {
        Some(v) if req.mv.at_least(55) => as_bool(v).ok_or_else(|| {
            CinderError::bad_request(format!("Invalid value '{v}' for no_snapshots."))
        })?,
        _ => false,
    };
    let created = svc
        .create_transfer(&req.caller, volume_id, name, no_snapshots)
        .await?;
    let mut view = render(req, &created.transfer, View::Detail, collection);
    view["auth_key"] = json!(created.auth_key);
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body: Some(json!({"transfer": view})),
        raw: None,
        headers: Vec::new(),
    })
}

pub async fn list(
    svc: &Service,
    req: &Req,
    detail: bool,
    collection: &str,
) -> Result<Reply, CinderError> {
    let all_tenants = req
        .query("all_tenants")
        .is_some_and(crate::listing::bool_from_string);
    let transfers = svc.list_transfers(&req.caller, all_tenants).await?;
    let view = if detail { View::Detail } else { View::Summary };
    Ok(Reply::ok(
        json!({"transfers": transfers.iter().map(|t| render(req, t, view, collection)).collect::<Vec<_>>()}),
    ))
}

pub async fn show(
    svc: &Service,
    req: &Req,
    id: &str,
    collection: &str,
) -> Result<Reply, CinderError> {
    let t = svc.transfer(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(
        json!({"transfer": render(req, &t, View::Detail, collection)}),
    ))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    svc.delete_transfer(&req.caller, id.to_string()).await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn accept(
    svc: &Service,
    req: &Req,
    id: &str,
    collection: &str,
) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let key = body
        .pointer("/accept/auth_key")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad_request("Incorrect request body format"))?;
    let t = svc
        .accept_transfer(&req.caller, id.to_string(), key.to_string())
        .await?;
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body: Some(json!({"transfer": render(req, &t, View::Summary, collection)})),
        raw: None,
        headers: Vec::new(),
    })
}
