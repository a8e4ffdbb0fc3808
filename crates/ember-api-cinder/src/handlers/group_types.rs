//! Group types and their group specs (3.11+).

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_api_common::schema::as_bool;
use ember_model::{GroupType, Metadata};
use ember_service::Service;
use ember_service::group_types::GroupTypeChange;
use serde_json::{Value, json};

fn view(t: &GroupType) -> Value {
    json!({"id": t.id, "name": t.name, "description": t.description, "is_public": t.is_public, "group_specs": t.group_specs})
}

fn gate(req: &Req) -> Result<(), CinderError> {
    if req.mv.at_least(11) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

fn specs(value: Option<&Value>) -> Result<Metadata, CinderError> {
    let Some(Value::Object(map)) = value else {
        return Err(CinderError::bad_request(
            "Invalid input received: group_specs must be an object.",
        ));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s)
                if !k.is_empty() && k.chars().count() <= 255 && s.chars().count() <= 255 =>
            {
                Ok((k.clone(), s.clone()))
            }
            _ => Err(CinderError::bad_request(format!(
                "Invalid input received: Invalid group spec {k:?}."
            ))),
        })
        .collect()
}

fn is_public_field(v: Option<&Value>) -> Result<Option<bool>, CinderError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_bool(v)
            .map(Some)
            .ok_or_else(|| CinderError::bad_request(format!("Invalid value '{v}' for is_public."))),
    }
}

pub async fn list(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    gate(req)?;
    let is_public = match req.query("is_public") {
        None => Some(true),
        Some(v) if v.eq_ignore_ascii_case("none") => None,
        Some(v) => Some(crate::listing::bool_from_string(v)),
    };
    let mut types = svc.list_group_types(&req.caller, is_public).await?;
    // `sort=name:asc|desc` (and `sort_key`/`sort_dir`), by name only.
    let sort = req.query("sort").map(str::to_string).or_else(|| {
        req.query("sort_key")
            .map(|k| format!("{k}:{}", req.query("sort_dir").unwrap_or("asc")))
    });
    if let Some(sort) = sort {
        let (key, dir) = sort.split_once(':').unwrap_or((sort.as_str(), "asc"));
        if key == "name" {
            types.sort_by(|a, b| a.name.cmp(&b.name));
        }
        if dir.eq_ignore_ascii_case("desc") {
            types.reverse();
        }
    }
    Ok(Reply::ok(
        json!({"group_types": types.iter().map(view).collect::<Vec<_>>()}),
    ))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    let t = svc.group_type(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(json!({"group_type": view(&t)})))
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    gate(req)?;
    let body = req.json_body()?;
    let t = body
        .get("group_type")
        .filter(|t| t.is_object())
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'group_type' in request body.")
        })?;
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad_request("Invalid input received: name is required."))?;
    let group_specs = match t.get("group_specs") {
        None | Some(Value::Null) => Metadata::new(),
        some => specs(some)?,
    };
    let created = svc
        .create_group_type(
            &req.caller,
            name,
            t.get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            is_public_field(t.get("is_public"))?.unwrap_or(true),
            group_specs,
        )
        .await?;
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body: Some(json!({"group_type": view(&created)})),
        raw: None,
        headers: Vec::new(),
    })
}

pub async fn update(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    let body = req.json_body()?;
    let t = body
        .get("group_type")
        .filter(|t| t.is_object())
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'group_type' in request body.")
        })?;
    let change = GroupTypeChange {
        name: t.get("name").and_then(Value::as_str).map(str::to_string),
        description: t.get("description").map(|d| d.as_str().map(str::to_string)),
        is_public: is_public_field(t.get("is_public"))?,
    };
    if change.name.is_none() && change.description.is_none() && change.is_public.is_none() {
        return Err(CinderError::bad_request(
            "Specify group type name, description or a combination thereof.",
        ));
    }
    let t = svc
        .update_group_type(&req.caller, id.to_string(), change)
        .await?;
    Ok(Reply::ok(json!({"group_type": view(&t)})))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    svc.delete_group_type(&req.caller, id.to_string()).await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn list_specs(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    let t = svc.group_type(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(json!({"group_specs": t.group_specs})))
}

pub async fn set_specs(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    let body = req.json_body()?;
    let new = specs(body.get("group_specs"))?;
    svc.set_group_specs(&req.caller, id.to_string(), new.clone())
        .await?;
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body: Some(json!({"group_specs": new})),
        raw: None,
        headers: Vec::new(),
    })
}

pub async fn show_spec(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    gate(req)?;
    let t = svc.group_type(&req.caller, id.to_string()).await?;
    match t.group_specs.get(key) {
        Some(v) => Ok(Reply::ok(json!({ key: v }))),
        None => Err(CinderError::not_found(format!(
            "Group Type {id} has no specs with key {key}."
        ))),
    }
}

pub async fn put_spec(svc: &Service, req: &Req, id: &str, key: &str) -> Result<Reply, CinderError> {
    gate(req)?;
    let body = req.json_body()?;
    let new = specs(Some(&body))?;
    if new.len() != 1 || !new.contains_key(key) {
        return Err(CinderError::bad_request("Request body and URI mismatch"));
    }
    svc.set_group_specs(&req.caller, id.to_string(), new.clone())
        .await?;
    Ok(Reply::ok(json!(new)))
}

pub async fn delete_spec(
    svc: &Service,
    req: &Req,
    id: &str,
    key: &str,
) -> Result<Reply, CinderError> {
    gate(req)?;
    svc.delete_group_spec(&req.caller, id.to_string(), key.to_string())
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}
