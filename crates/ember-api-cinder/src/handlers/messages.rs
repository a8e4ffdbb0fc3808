//! User messages (3.3+).

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_model::UserMessage;
use ember_service::Service;
use serde_json::{Value, json};

fn view(req: &Req, m: &UserMessage) -> Value {
    let project = &m.project_id.0;
    json!({
        "id": m.id,
        "request_id": m.request_id,
        "event_id": m.event_id,
        "message_level": m.message_level,
        "resource_type": m.resource_type,
        "resource_uuid": m.resource_uuid,
        "user_message": m.user_message,
        "created_at": m.created_at.to_iso_micros(),
        "guaranteed_until": m.guaranteed_until.to_iso_micros(),
        "links": [
            {"rel": "self", "href": format!("{}/v3/{project}/messages/{}", req.base, m.id)},
            {"rel": "bookmark", "href": format!("{}/{project}/messages/{}", req.base, m.id)},
        ],
    })
}

fn gate(req: &Req) -> Result<(), CinderError> {
    if req.mv.at_least(3) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

pub async fn list(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    gate(req)?;
    let all_tenants = req
        .query("all_tenants")
        .is_some_and(crate::listing::bool_from_string);
    let messages = svc.list_messages(&req.caller, all_tenants).await?;
    Ok(Reply::ok(
        json!({"messages": messages.iter().map(|m| view(req, m)).collect::<Vec<_>>()}),
    ))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    let m = svc.message(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(json!({"message": view(req, &m)})))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    svc.delete_message(&req.caller, id.to_string()).await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
