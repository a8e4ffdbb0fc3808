//! Ember's nodes (`/v3/{project_id}/ember/nodes`): the `ember serve`
//! processes sharing one database, and forgetting one gone for good.

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_service::Service;
use serde_json::json;

pub async fn list(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let nodes: Vec<_> = svc
        .list_nodes(&req.caller)
        .await?
        .into_iter()
        .map(|n| {
            json!({"id": n.node.id, "api": n.node.api, "nbd": n.node.nbd,
                   "state": if n.up { "up" } else { "down" },
                   "started_at": n.node.started_at.to_iso_micros(),
                   "heartbeat_at": n.node.heartbeat.to_iso_micros()})
        })
        .collect();
    Ok(Reply::ok(json!({ "nodes": nodes })))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    svc.forget_node(&req.caller, id.to_string()).await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
