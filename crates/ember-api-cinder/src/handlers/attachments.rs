//! The attachments API (3.27+; `os-complete` 3.44+, `mode` 3.54+).
//! `connection_info` is flat, as Cinder stores it: the driver's data with
//! `driver_volume_type` and `attachment_id` beside it.

use crate::{Api, CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_model::{AttachStatus, Attachment, Volume, VolumeId};
use ember_service::Service;
use ember_service::attachments::{AttachmentFilter, connection};
use serde_json::{Map, Value, json};

fn gate(req: &Req, min: u32) -> Result<(), CinderError> {
    if req.api == Api::V3 && req.mv.at_least(min) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

fn summary(v: &Volume, a: &Attachment) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("id".into(), json!(a.id.to_string()));
    o.insert("status".into(), json!(a.status.as_str()));
    o.insert("instance".into(), json!(a.instance_uuid));
    o.insert("volume_id".into(), json!(v.id.to_string()));
    o
}

/// The flat `connection_info` of the attachments API (empty before a
/// connector was given).
pub(crate) fn flat_connection_info(
    svc: &Service,
    caller: &ember_service::Caller,
    v: &Volume,
    a: &Attachment,
) -> Value {
    let (kind, mut data) = connection(svc.core(), caller, v, a);
    if !data.is_empty() {
        data.insert("driver_volume_type".into(), json!(kind));
        data.insert("attachment_id".into(), json!(a.id.to_string()));
        data.insert("enforce_multipath".into(), json!(false));
    }
    Value::Object(data)
}

fn detail(svc: &Service, caller: &ember_service::Caller, v: &Volume, a: &Attachment) -> Value {
    let mut o = summary(v, a);
    let time =
        |t: Option<&ember_model::Timestamp>| t.map(|t| t.to_iso_micros()).unwrap_or_default();
    o.insert("attached_at".into(), json!(time(a.attached_at.as_ref())));
    o.insert("detached_at".into(), json!(""));
    o.insert("attach_mode".into(), json!(a.mode));
    o.insert(
        "connection_info".into(),
        flat_connection_info(svc, caller, v, a),
    );
    Value::Object(o)
}

fn invalid(field: &str, value: &Value, why: &str) -> CinderError {
    CinderError::bad_request(format!(
        "Invalid input for field/attribute {field}. Value: {}. {why}",
        ember_api_common::pyrepr::str(value)
    ))
}

fn uuid_field(o: &Map<String, Value>, field: &str) -> Result<Option<String>, CinderError> {
    match o.get(field) {
        None => Ok(None),
        Some(Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => Ok(Some(s.clone())),
        Some(other) => Err(invalid(
            field,
            other,
            &format!("{} is not a 'uuid'", ember_api_common::pyrepr::repr(other)),
        )),
    }
}

/// The `attachment` object of a body, with only the `allowed` keys.
fn attachment_body<'a>(
    body: &'a Value,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, CinderError> {
    let top = body
        .as_object()
        .ok_or_else(|| CinderError::bad_request("Invalid input: the body must be an object."))?;
    if let Some(extra) = top.keys().find(|k| *k != "attachment") {
        return Err(CinderError::bad_request(format!(
            "Additional properties are not allowed ('{extra}' was unexpected)"
        )));
    }
    let o = top
        .get("attachment")
        .ok_or_else(|| CinderError::bad_request("'attachment' is a required property"))?
        .as_object()
        .ok_or_else(|| CinderError::bad_request("Invalid input for field/attribute attachment."))?;
    if let Some(extra) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(CinderError::bad_request(format!(
            "Additional properties are not allowed ('{extra}' was unexpected)"
        )));
    }
    Ok(o)
}

fn parse_id(id: &str) -> Result<uuid::Uuid, CinderError> {
    uuid::Uuid::parse_str(id).map_err(|_| {
        CinderError::not_found(format!(
            "Volume attachment could not be found with filter: attachment_id = {id}."
        ))
    })
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    gate(req, 27)?;
    let body = req.json_body()?;
    let mut allowed = vec!["instance_uuid", "connector", "volume_uuid"];
    if req.mv.at_least(54) {
        allowed.push("mode");
    }
    let o = attachment_body(&body, &allowed)?;
    let volume = uuid_field(o, "volume_uuid")?
        .ok_or_else(|| CinderError::bad_request("'volume_uuid' is a required property"))?;
    let instance = match o.get("instance_uuid") {
        Some(Value::Null) => None,
        _ => uuid_field(o, "instance_uuid")?,
    };
    let connector = match o.get("connector") {
        None | Some(Value::Null) => None,
        Some(c @ Value::Object(_)) => Some(c.clone()),
        Some(other) => {
            return Err(invalid(
                "connector",
                other,
                "is not of type 'object', 'null'",
            ));
        }
    };
    let mode = match o.get("mode") {
        None => None,
        Some(Value::String(m)) if m == "rw" || m == "ro" => Some(m.clone()),
        Some(other) => return Err(invalid("mode", other, "is not one of ['rw', 'ro']")),
    };
    let volume_id =
        VolumeId::parse(&volume).ok_or_else(|| CinderError::volume_not_found(&volume))?;
    let (v, a) = svc
        .create_attachment(&req.caller, volume_id, instance, connector, mode)
        .await?;
    Ok(Reply::ok(
        json!({"attachment": detail(svc, &req.caller, &v, &a)}),
    ))
}

pub async fn list(svc: &Service, req: &Req, detailed: bool) -> Result<Reply, CinderError> {
    gate(req, 27)?;
    let all_tenants = req
        .query("all_tenants")
        .is_some_and(crate::listing::bool_from_string);
    let mut filter = AttachmentFilter::default();
    for (key, value) in &req.query {
        match key.as_str() {
            // An id that cannot exist matches nothing.
            "volume_id" => filter.volume_id = Some(VolumeId::parse(value).unwrap_or_default()),
            "instance_id" | "instance_uuid" => filter.instance = Some(value.clone()),
            "status" | "attach_status" => {
                let status = [
                    AttachStatus::Reserved,
                    AttachStatus::Attaching,
                    AttachStatus::Attached,
                ]
                .into_iter()
                .find(|s| s.as_str() == value);
                match status {
                    Some(s) => filter.status = Some(s),
                    None => return Ok(Reply::ok(json!({"attachments": []}))),
                }
            }
            "limit" => filter.limit = value.parse().ok(),
            "all_tenants" | "marker" | "offset" | "sort" | "sort_key" | "sort_dir" => {}
            other => {
                return Err(CinderError::bad_request(format!(
                    "Invalid input received: Invalid filter keys: {other}"
                )));
            }
        }
    }
    let items = svc
        .list_attachments(&req.caller, all_tenants, filter)
        .await?;
    let views: Vec<Value> = items
        .iter()
        .map(|(v, a)| {
            if detailed {
                detail(svc, &req.caller, v, a)
            } else {
                Value::Object(summary(v, a))
            }
        })
        .collect();
    Ok(Reply::ok(json!({"attachments": views})))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 27)?;
    let (v, a) = svc.attachment(&req.caller, parse_id(id)?).await?;
    Ok(Reply::ok(
        json!({"attachment": detail(svc, &req.caller, &v, &a)}),
    ))
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 27)?;
    let id = parse_id(id)?;
    let body = req.json_body()?;
    let o = attachment_body(&body, &["connector"])?;
    let connector = match o.get("connector") {
        Some(c @ Value::Object(m)) if !m.is_empty() => c.clone(),
        Some(other) => return Err(invalid("connector", other, "should be non-empty")),
        None => {
            return Err(CinderError::bad_request(
                "'connector' is a required property",
            ));
        }
    };
    let (v, a) = svc.update_attachment(&req.caller, id, connector).await?;
    Ok(Reply::ok(
        json!({"attachment": detail(svc, &req.caller, &v, &a)}),
    ))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 27)?;
    let rest = svc.delete_attachment(&req.caller, parse_id(id)?).await?;
    let views: Vec<Value> = rest
        .iter()
        .map(|(v, a)| Value::Object(summary(v, a)))
        .collect();
    Ok(Reply::ok(json!({"attachments": views})))
}

pub async fn action(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req, 44)?;
    let id = parse_id(id)?;
    let body = req.json_body()?;
    let o = body
        .as_object()
        .filter(|o| o.len() == 1 && o.contains_key("os-complete"));
    if o.is_none() {
        return Err(CinderError::bad_request(
            "Invalid input: the only attachment action is os-complete.",
        ));
    }
    svc.complete_attachment(&req.caller, id).await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
