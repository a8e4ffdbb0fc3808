//! Volume types, their extra specs, access lists and encryption, in
//! Cinder's wire format. The rules live in `ember_service::types`.

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_api_common::schema::as_bool;
use ember_model::{Encryption, Metadata, ProjectId, VolumeType};
use ember_service::Service;
use ember_service::types::{EncryptionChange, TypeChange};
use serde_json::{Map, Value, json};

/// Cinder's three renderings of a type: show/list have everything, the
/// answer to a create has no `qos_specs_id`, the answer to an update
/// neither that nor the access flag.
#[derive(Clone, Copy, PartialEq)]
enum View {
    Full,
    Created,
    Updated,
}

fn render(t: &VolumeType, v: View) -> Value {
    let mut out = view(t);
    let o = out.as_object_mut().expect("object");
    if v != View::Full {
        o.remove("qos_specs_id");
    }
    if v == View::Updated {
        o.remove("os-volume-type-access:is_public");
    }
    out
}

pub fn view(t: &VolumeType) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "extra_specs": t.extra_specs,
        "os-volume-type-access:is_public": t.is_public,
        "qos_specs_id": t.qos_specs_id,
    })
}

fn encryption_view(type_id: &str, e: &Encryption) -> Value {
    json!({
        "volume_type_id": type_id,
        "encryption_id": e.encryption_id,
        "provider": e.provider,
        "cipher": e.cipher,
        "key_size": e.key_size,
        "control_location": e.control_location,
        "created_at": e.created_at.to_iso_micros(),
        "updated_at": e.updated_at.map(|t| t.to_iso_micros()),
        "deleted": false,
        "deleted_at": null,
    })
}

/// A JSON object of string → string (numbers and booleans are taken as
/// their text, as Cinder does); keys of 1–255 characters.
fn specs(value: Option<&Value>) -> Result<Metadata, CinderError> {
    let Some(Value::Object(map)) = value else {
        return Err(CinderError::bad_request(
            "Invalid input received: extra_specs must be an object.",
        ));
    };
    let mut out = Metadata::new();
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > 255 {
            return Err(CinderError::bad_request(format!(
                "Invalid input received: Invalid extra spec key {k:?}."
            )));
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => {
                if *b {
                    "True".into()
                } else {
                    "False".into()
                }
            }
            _ => {
                return Err(CinderError::bad_request(format!(
                    "Invalid input received: Value for extra spec {k} must be a string."
                )));
            }
        };
        if text.chars().count() > 255 {
            return Err(CinderError::bad_request(format!(
                "Invalid input received: Value for extra spec {k} is too long."
            )));
        }
        out.insert(k.clone(), text);
    }
    Ok(out)
}

pub async fn list(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    // Admins see public types unless they ask (`is_public=false|none`);
    // everyone else sees public types plus those shared with them.
    let is_public = match (req.caller.is_admin(), req.query("is_public")) {
        (false, _) => None,
        (true, None) => Some(true),
        (true, Some(v)) if v.eq_ignore_ascii_case("none") => None,
        (true, Some(v)) => Some(crate::listing::bool_from_string(v)),
    };
    let types = svc.list_types(&req.caller, is_public).await?;
    Ok(Reply::ok(
        json!({"volume_types": types.iter().map(view).collect::<Vec<_>>()}),
    ))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let t = svc.volume_type(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(json!({"volume_type": view(&t)})))
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let t = body
        .get("volume_type")
        .filter(|t| t.is_object())
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'volume_type' in request body.")
        })?;
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad_request("Invalid input received: name is required."))?;
    let description = t
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let is_public = match t
        .get("os-volume-type-access:is_public")
        .or_else(|| t.get("is_public"))
    {
        None | Some(Value::Null) => true,
        Some(v) => as_bool(v).ok_or_else(|| {
            CinderError::bad_request(format!("Invalid value '{v}' for is_public."))
        })?,
    };
    let extra = match t.get("extra_specs") {
        None | Some(Value::Null) => Metadata::new(),
        some => specs(some)?,
    };
    let created = svc
        .create_type(&req.caller, name, description, is_public, extra)
        .await?;
    Ok(Reply::ok(
        json!({"volume_type": render(&created, View::Created)}),
    ))
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let t = body
        .get("volume_type")
        .filter(|t| t.is_object())
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'volume_type' in request body.")
        })?;
    let change = TypeChange {
        name: t.get("name").and_then(Value::as_str).map(str::to_string),
        description: t.get("description").map(|d| d.as_str().map(str::to_string)),
        is_public: match t
            .get("is_public")
            .or_else(|| t.get("os-volume-type-access:is_public"))
        {
            None | Some(Value::Null) => None,
            Some(v) => Some(as_bool(v).ok_or_else(|| {
                CinderError::bad_request(format!("Invalid value '{v}' for is_public."))
            })?),
        },
    };
    if change.name.is_none() && change.description.is_none() && change.is_public.is_none() {
        return Err(CinderError::bad_request(
            "Specify volume type name, description, is_public or a combination thereof.",
        ));
    }
    let t = svc.update_type(&req.caller, id.to_string(), change).await?;
    Ok(Reply::ok(json!({"volume_type": render(&t, View::Updated)})))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    svc.delete_type(&req.caller, id.to_string()).await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn extra_specs(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let t = svc.volume_type(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(json!({"extra_specs": t.extra_specs})))
}

pub async fn set_extra_specs(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let new = specs(body.get("extra_specs"))?;
    svc.set_type_extra_specs(&req.caller, id.to_string(), new.clone())
        .await?;
    Ok(Reply::ok(json!({"extra_specs": new})))
}

pub async fn extra_spec(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    let t = svc.volume_type(&req.caller, id.to_string()).await?;
    match t.extra_specs.get(key) {
        Some(v) => Ok(Reply::ok(json!({ key: v }))),
        None => Err(CinderError::not_found(format!(
            "Volume Type {id} has no extra specs with key {key}."
        ))),
    }
}

pub async fn put_extra_spec(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let new = specs(Some(&body))?;
    if new.len() > 1 {
        return Err(CinderError::bad_request(
            "Request body contains too many items.",
        ));
    }
    if !new.contains_key(key) {
        return Err(CinderError::bad_request("Request body and URI mismatch"));
    }
    svc.set_type_extra_specs(&req.caller, id.to_string(), new.clone())
        .await?;
    Ok(Reply::ok(json!(new)))
}

pub async fn delete_extra_spec(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    svc.delete_type_extra_spec(&req.caller, id.to_string(), key.to_string())
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

/// `addProjectAccess` / `removeProjectAccess`.
pub async fn action(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let (add, args) = match (
        body.get("addProjectAccess"),
        body.get("removeProjectAccess"),
    ) {
        (Some(a), None) => (true, a),
        (None, Some(r)) => (false, r),
        _ => {
            return Err(CinderError::bad_request(
                "There is either no action or more than one action in the request body.",
            ));
        }
    };
    let project = args
        .get("project")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'project' in request body.")
        })?;
    svc.set_type_access(&req.caller, id.to_string(), ProjectId(project.into()), add)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn access(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    if !req.caller.is_admin() {
        return Err(ember_service::ServiceError::Forbidden(
            "volume_extension:volume_type_access".into(),
        )
        .into());
    }
    let t = svc.volume_type(&req.caller, id.to_string()).await?;
    if t.is_public {
        return Err(CinderError::not_found(
            "Access list not available for public volume types.",
        ));
    }
    let list: Vec<Value> = t
        .access
        .iter()
        .map(|p| json!({"volume_type_id": t.id, "project_id": p.0}))
        .collect();
    Ok(Reply::ok(json!({"volume_type_access": list})))
}

pub async fn show_encryption(
    svc: &Service,
    req: &Req,
    id: &str,
    key: Option<&str>,
) -> Result<Reply, CinderError> {
    if !req.caller.is_admin() {
        return Err(ember_service::ServiceError::Forbidden(
            "volume_extension:volume_type_encryption:get".into(),
        )
        .into());
    }
    let t = svc.volume_type(&req.caller, id.to_string()).await?;
    let body = match &t.encryption {
        Some(e) => encryption_view(&t.id, e),
        None => json!({}),
    };
    match key {
        None => Ok(Reply::ok(body)),
        Some(k) => match body.get(k) {
            Some(v) => Ok(Reply::ok(json!({ k: v }))),
            None => Err(CinderError::not_found(format!(
                "Volume type encryption for type {id} does not exist."
            ))),
        },
    }
}

fn encryption_change(req: &Req) -> Result<EncryptionChange, CinderError> {
    let body = req.json_body()?;
    let e = body
        .get("encryption")
        .filter(|e| e.is_object())
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'encryption' in request body.")
        })?;
    let text = |k: &str| -> Result<Option<Option<String>>, CinderError> {
        match e.get(k) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(other) => Err(CinderError::bad_request(format!(
                "Invalid input for field/attribute {k}. Value: {other}."
            ))),
        }
    };
    let control_location = text("control_location")?.flatten();
    if let Some(c) = &control_location
        && c != "front-end"
        && c != "back-end"
    {
        return Err(CinderError::bad_request(
            "Invalid input received: Valid control location are: ['front-end', 'back-end']",
        ));
    }
    let key_size = match e.get("key_size") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            CinderError::bad_request(
                "Invalid input received: key_size must be a non-negative integer.",
            )
        })?)),
    };
    Ok(EncryptionChange {
        provider: text("provider")?.flatten(),
        cipher: text("cipher")?,
        key_size,
        control_location,
    })
}

pub async fn create_encryption(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let change = encryption_change(req)?;
    if change.provider.is_none() {
        return Err(CinderError::bad_request(
            "Invalid input received: provider must be specified.",
        ));
    }
    let e = svc
        .set_type_encryption(&req.caller, id.to_string(), change, true)
        .await?;
    let mut view = encryption_view(id, &e);
    if let Some(o) = view.as_object_mut() {
        strip_bookkeeping(o);
    }
    Ok(Reply::ok(json!({"encryption": view})))
}

pub async fn update_encryption(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let change = encryption_change(req)?;
    let asked: Vec<&str> = [
        ("provider", change.provider.is_some()),
        ("cipher", change.cipher.is_some()),
        ("key_size", change.key_size.is_some()),
        ("control_location", change.control_location.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| *k)
    .collect();
    let e = svc
        .set_type_encryption(&req.caller, id.to_string(), change, false)
        .await?;
    let full = encryption_view(id, &e);
    // Cinder answers with the fields the request changed.
    let mut out = Map::new();
    for k in asked {
        out.insert(k.into(), full[k].clone());
    }
    Ok(Reply::ok(json!({"encryption": out})))
}

fn strip_bookkeeping(o: &mut Map<String, Value>) {
    for k in ["created_at", "updated_at", "deleted", "deleted_at"] {
        o.remove(k);
    }
}

pub async fn delete_encryption(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    svc.delete_type_encryption(&req.caller, id.to_string())
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}
