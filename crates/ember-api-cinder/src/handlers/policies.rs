//! Ember's snapshot and backup policies (`/v3/{project_id}/ember/policies`):
//! a schedule, a retention and the volumes covered, per project.

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_model::{Policy, PolicyKind, Retention, Schedule, Selector};
use ember_service::Service;
use ember_service::policies::PolicySpec;
use serde_json::{Value, json};

fn render(p: &Policy) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "kind": p.kind,
        "schedule": p.schedule,
        "retention": p.retention,
        "volumes": p.volumes,
        "enabled": p.enabled,
        "project_id": p.project_id.0,
        "next_run": p.next_run.to_iso_micros(),
        "last_run": p.last_run.as_ref().map(|r| json!({
            "scheduled_at": r.scheduled_at.to_iso_micros(),
            "started_at": r.started_at.to_iso_micros(),
            "late_seconds": r.late_seconds,
            "made": r.made,
            "deleted": r.deleted,
            "failures": r.failures,
        })),
        "created_at": p.created_at.to_iso_micros(),
        "updated_at": p.updated_at.map(|t| t.to_iso_micros()),
    })
}

fn bad(message: impl Into<String>) -> CinderError {
    CinderError::bad_request(message)
}

/// The `policy` object of a create or update body.
fn spec(req: &Req) -> Result<PolicySpec, CinderError> {
    let body = req.json_body()?;
    let p = body
        .get("policy")
        .filter(|p| p.is_object())
        .ok_or_else(|| bad("Missing required element 'policy' in request body."))?;
    let known = [
        "name",
        "kind",
        "schedule",
        "retention",
        "volumes",
        "enabled",
    ];
    if let Some(extra) = p
        .as_object()
        .unwrap()
        .keys()
        .find(|k| !known.contains(&k.as_str()))
    {
        return Err(bad(format!("Unknown policy attribute {extra}.")));
    }
    let field = |k: &str| p.get(k).cloned().unwrap_or(Value::Null);
    let name = field("name")
        .as_str()
        .ok_or_else(|| bad("A policy needs a name."))?
        .to_string();
    let kind: PolicyKind = serde_json::from_value(field("kind"))
        .map_err(|_| bad("kind must be snapshot or backup."))?;
    let schedule: Schedule = serde_json::from_value(field("schedule"))
        .map_err(|e| bad(format!("Invalid schedule: {e}")))?;
    let retention: Retention = match field("retention") {
        Value::Null => Retention::default(),
        v => serde_json::from_value(v).map_err(|e| bad(format!("Invalid retention: {e}")))?,
    };
    let volumes: Selector = serde_json::from_value(field("volumes"))
        .map_err(|e| bad(format!("Invalid volumes: {e}")))?;
    let enabled = match field("enabled") {
        Value::Null => true,
        Value::Bool(b) => b,
        _ => return Err(bad("enabled must be a boolean.")),
    };
    Ok(PolicySpec {
        name,
        kind,
        schedule,
        retention,
        volumes,
        enabled,
    })
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let p = svc.create_policy(&req.caller, spec(req)?).await?;
    Ok(Reply {
        status: StatusCode::CREATED,
        body: Some(json!({"policy": render(&p)})),
        raw: None,
        headers: Vec::new(),
    })
}

pub async fn list(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let all = req
        .query("all_tenants")
        .is_some_and(crate::listing::bool_from_string);
    let policies = svc.list_policies(&req.caller, all).await?;
    Ok(Reply::ok(
        json!({"policies": policies.iter().map(render).collect::<Vec<_>>()}),
    ))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let p = svc.policy(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(json!({"policy": render(&p)})))
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let p = svc
        .update_policy(&req.caller, id.to_string(), spec(req)?)
        .await?;
    Ok(Reply::ok(json!({"policy": render(&p)})))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    svc.delete_policy(&req.caller, id.to_string()).await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
