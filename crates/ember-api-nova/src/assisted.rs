//! `os-assisted-volume-snapshots` (seed 003): create (200) and delete (204),
//! admin or service role only, at every microversion (the delete's query
//! is closed from 2.75). The service layer runs the snapshot workflows.

use crate::{NovaError, Req};
use axum::http::{Method, StatusCode};
use ember_api_common::schema::{Schema, object, validate};
use ember_service::{Service, ServiceError};
use serde_json::{Value, json};

pub enum Endpoint {
    Create,
    Delete(String),
}

pub fn route(method: &Method, rest: &[&str]) -> Option<Endpoint> {
    match (method.as_str(), rest) {
        ("POST", ["os-assisted-volume-snapshots"]) => Some(Endpoint::Create),
        ("DELETE", ["os-assisted-volume-snapshots", id]) => Some(Endpoint::Delete(id.to_string())),
        _ => None,
    }
}

pub(crate) fn create_schema() -> Schema {
    let text = Schema::Str {
        nullable: false,
        min: Some(1),
        max: None,
        printable: false,
    };
    object(
        vec![(
            "snapshot",
            object(
                vec![
                    ("volume_id", text.clone()),
                    (
                        "create_info",
                        object(
                            vec![
                                ("snapshot_id", text.clone()),
                                ("type", text.clone()),
                                ("new_file", text.clone()),
                                ("id", text),
                            ],
                            vec!["snapshot_id", "type", "new_file"],
                        ),
                    ),
                ],
                vec!["volume_id", "create_info"],
            ),
        )],
        vec!["snapshot"],
    )
}

/// Nova reports these as plain 400s with the bare reason.
fn nova_error(e: ServiceError) -> NovaError {
    match e {
        ServiceError::InvalidInput(m)
        | ServiceError::InvalidSnapshot(m)
        | ServiceError::InvalidVolume(m) => NovaError::bad_request(m),
        other => other.into(),
    }
}

pub async fn run(
    svc: &Service,
    req: &Req,
    endpoint: Endpoint,
) -> Result<(StatusCode, Option<Value>), NovaError> {
    match endpoint {
        Endpoint::Create => {
            let body = req.json_body()?;
            validate(&create_schema(), &body)
                .map_err(|e| NovaError::bad_request(e.to_message()))?;
            let s = &body["snapshot"];
            let info = &s["create_info"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            if info["type"] != "qcow2" {
                return Err(NovaError::bad_request(format!(
                    "Invalid input for field/attribute type. Value: {}. {} is not one of ['qcow2']",
                    text(&info["type"]),
                    ember_api_common::pyrepr::repr(&info["type"])
                )));
            }
            let volume_id = text(&s["volume_id"]);
            svc.assisted_snapshot_create(
                &req.caller,
                volume_id.clone(),
                text(&info["snapshot_id"]),
                text(&info["new_file"]),
            )
            .await
            .map_err(nova_error)?;
            Ok((
                StatusCode::OK,
                Some(
                    json!({"snapshot": {"id": info.get("id").cloned().unwrap_or(Value::Null), "volumeId": volume_id}}),
                ),
            ))
        }
        Endpoint::Delete(id) => {
            if !req.mv.at_most(74)
                && let Some((k, _)) = req.query.iter().find(|(k, _)| k != "delete_info")
            {
                return Err(NovaError::bad_request(format!(
                    "Additional properties are not allowed ('{k}' was unexpected)"
                )));
            }
            let raw = req
                .query("delete_info")
                .ok_or_else(|| NovaError::bad_request("'delete_info'"))?;
            let info: Value = serde_json::from_str(raw)
                .map_err(|e| NovaError::bad_request(format!("Invalid delete_info: {e}")))?;
            let volume_id = info
                .get("volume_id")
                .and_then(Value::as_str)
                .ok_or_else(|| NovaError::bad_request("'volume_id'"))?
                .to_string();
            let name = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_string);
            svc.assisted_snapshot_delete(
                &req.caller,
                id,
                volume_id,
                name("file_to_merge"),
                name("merge_target_file"),
            )
            .await
            .map_err(nova_error)?;
            Ok((StatusCode::NO_CONTENT, None))
        }
    }
}
