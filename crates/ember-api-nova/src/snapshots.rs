//! `os-snapshots` (2.1–2.35): create (200), list, detail, show, delete
//! (202), with exactly Nova's seven camelCase fields.

use crate::{NovaError, Req};
use axum::http::{Method, StatusCode};
use ember_api_common::schema::{Schema, as_bool, object, validate};
use ember_model::{Metadata, Snapshot, SnapshotId, VolumeId};
use ember_service::{CreateSnapshot, Service};
use ember_store::{ListQuery, SnapshotFilter};
use serde_json::{Value, json};

pub enum Endpoint {
    List,
    Create,
    Show(String),
    Delete(String),
}

pub fn route(method: &Method, rest: &[&str]) -> Option<Endpoint> {
    match (method.as_str(), rest) {
        ("GET", ["os-snapshots"]) | ("GET", ["os-snapshots", "detail"]) => Some(Endpoint::List),
        ("POST", ["os-snapshots"]) => Some(Endpoint::Create),
        ("GET", ["os-snapshots", id]) => Some(Endpoint::Show(id.to_string())),
        ("DELETE", ["os-snapshots", id]) => Some(Endpoint::Delete(id.to_string())),
        _ => None,
    }
}

fn view(s: &Snapshot) -> Value {
    json!({
        "id": s.id.to_string(),
        "volumeId": s.volume_id.to_string(),
        "status": s.status.as_str(),
        "size": s.size_gib,
        "createdAt": s.created_at.to_iso_micros(),
        "displayName": s.name,
        "displayDescription": s.description,
    })
}

pub(crate) fn create_schema() -> Schema {
    let text = Schema::Str {
        nullable: false,
        min: None,
        max: None,
        printable: false,
    };
    object(
        vec![(
            "snapshot",
            object(
                vec![
                    ("volume_id", text.clone()),
                    ("force", Schema::Boolean),
                    ("display_name", text.clone()),
                    ("display_description", text),
                ],
                vec!["volume_id"],
            ),
        )],
        vec!["snapshot"],
    )
}

fn snapshot_not_found(id: &str) -> NovaError {
    NovaError::not_found(format!("Snapshot {id} could not be found."))
}

/// A non-negative integer query parameter.
fn count(req: &Req, key: &str) -> Result<Option<usize>, NovaError> {
    match req.query(key) {
        None => Ok(None),
        Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
            NovaError::bad_request(format!("Invalid input for query parameters {key}. Value: {v}. '{v}' does not match '^[0-9]*$'"))
        }),
    }
}

pub async fn run(
    svc: &Service,
    req: &Req,
    endpoint: Endpoint,
) -> Result<(StatusCode, Option<Value>), NovaError> {
    // The proxy APIs are gone from 2.36, with Nova's generic 404.
    if !req.mv.at_most(35) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    match endpoint {
        Endpoint::List => {
            let page = svc
                .list_snapshots(
                    &req.caller,
                    ListQuery::<SnapshotFilter> {
                        limit: None,
                        ..Default::default()
                    },
                    false,
                )
                .await?;
            let offset = count(req, "offset")?.unwrap_or(0);
            let limit = count(req, "limit")?;
            let items: Vec<Value> = page
                .items
                .iter()
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .map(view)
                .collect();
            Ok((StatusCode::OK, Some(json!({"snapshots": items}))))
        }
        Endpoint::Show(id) => {
            let sid = SnapshotId::parse(&id).ok_or_else(|| snapshot_not_found(&id))?;
            let s = svc
                .snapshot(&req.caller, sid)
                .await
                .map_err(|_| snapshot_not_found(&id))?;
            Ok((StatusCode::OK, Some(json!({"snapshot": view(&s)}))))
        }
        Endpoint::Delete(id) => {
            let sid = SnapshotId::parse(&id).ok_or_else(|| snapshot_not_found(&id))?;
            svc.delete_snapshot(&req.caller, sid, false).await?;
            Ok((StatusCode::ACCEPTED, None))
        }
        Endpoint::Create => {
            let body = req.json_body()?;
            validate(&create_schema(), &body)
                .map_err(|e| NovaError::bad_request(e.to_message()))?;
            let s = &body["snapshot"];
            let raw = s["volume_id"].as_str().unwrap_or_default();
            // Nova turns Cinder's 404 into a 500; Ember answers the 404.
            let volume_id = VolumeId::parse(raw)
                .ok_or_else(|| NovaError::not_found(format!("Volume {raw} could not be found.")))?;
            let force = s.get("force").and_then(as_bool).unwrap_or(false);
            let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
            let created = svc
                .create_snapshot(
                    &req.caller,
                    CreateSnapshot {
                        volume_id,
                        name: text("display_name"),
                        description: text("display_description"),
                        metadata: Metadata::new(),
                        allow_in_use: force,
                    },
                )
                .await?;
            Ok((StatusCode::OK, Some(json!({"snapshot": view(&created)}))))
        }
    }
}
