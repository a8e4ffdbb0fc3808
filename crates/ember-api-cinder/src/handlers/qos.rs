//! `qos-specs`: QoS specifications and their associations with volume
//! types, in Cinder's wire format.

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_model::{Metadata, QosSpecs};
use ember_service::Service;
use serde_json::{Value, json};

fn view(q: &QosSpecs) -> Value {
    json!({"id": q.id, "name": q.name, "consumer": q.consumer, "specs": q.specs})
}

fn links(req: &Req, q: &QosSpecs) -> Value {
    let project = &req.caller.project_id.0;
    json!([
        {"rel": "self", "href": format!("{}/v3/{project}/qos-specs/{}", req.base, q.id)},
        {"rel": "bookmark", "href": format!("{}/{project}/qos-specs/{}", req.base, q.id)},
    ])
}

/// Spec values as strings (numbers taken as their text).
fn spec_map(obj: &serde_json::Map<String, Value>, skip: &[&str]) -> Result<Metadata, CinderError> {
    let mut out = Metadata::new();
    for (k, v) in obj {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(CinderError::bad_request(format!(
                    "Invalid input received: Value for QoS spec {k} must be a string."
                )));
            }
        };
        if k.is_empty() || k.chars().count() > 255 || text.chars().count() > 255 {
            return Err(CinderError::bad_request(format!(
                "Invalid input received: Invalid QoS spec {k}."
            )));
        }
        out.insert(k.clone(), text);
    }
    Ok(out)
}

fn body_object(req: &Req, key: &str) -> Result<serde_json::Map<String, Value>, CinderError> {
    let body = req.json_body()?;
    body.get(key)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            CinderError::bad_request(format!("Missing required element '{key}' in request body."))
        })
}

pub async fn create(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let obj = body_object(req, "qos_specs")?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad_request("Invalid input received: name is required."))?;
    let consumer = obj
        .get("consumer")
        .and_then(Value::as_str)
        .map(str::to_string);
    let specs = spec_map(&obj, &["name", "consumer"])?;
    let q = svc
        .create_qos(&req.caller, name.to_string(), consumer, specs)
        .await?;
    Ok(Reply::ok(
        json!({"qos_specs": view(&q), "links": links(req, &q)}),
    ))
}

pub async fn list(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let all = svc.list_qos(&req.caller).await?;
    Ok(Reply::ok(
        json!({"qos_specs": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

pub async fn show(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let q = svc.qos(&req.caller, id.to_string()).await?;
    Ok(Reply::ok(
        json!({"qos_specs": view(&q), "links": links(req, &q)}),
    ))
}

pub async fn set_keys(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let obj = body_object(req, "qos_specs")?;
    let specs = spec_map(&obj, &[])?;
    svc.change_qos_keys(&req.caller, id.to_string(), specs.clone(), vec![])
        .await?;
    Ok(Reply::ok(json!({"qos_specs": specs})))
}

pub async fn delete_keys(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let keys: Vec<String> = body
        .get("keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .ok_or_else(|| {
            CinderError::bad_request("Missing required element 'keys' in request body.")
        })?;
    svc.change_qos_keys(&req.caller, id.to_string(), Metadata::new(), keys)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn delete(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let force = req
        .query("force")
        .is_some_and(crate::listing::bool_from_string);
    svc.delete_qos(&req.caller, id.to_string(), force).await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub async fn associations(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let types = svc.qos_associations(&req.caller, id.to_string()).await?;
    let list: Vec<Value> = types
        .iter()
        .map(|t| json!({"association_type": "volume_type", "id": t.id, "name": t.name}))
        .collect();
    Ok(Reply::ok(json!({"qos_associations": list})))
}

/// `associate`, `disassociate` (both with `?vol_type_id=`) and
/// `disassociate_all`.
pub async fn associate(svc: &Service, req: &Req, id: &str, op: &str) -> Result<Reply, CinderError> {
    let type_id = req.query("vol_type_id").map(str::to_string);
    let (associate, type_id) = match op {
        "associate" | "disassociate" => {
            let t = type_id
                .ok_or_else(|| CinderError::bad_request("Volume Type id must not be None."))?;
            (op == "associate", Some(t))
        }
        _ => (false, None),
    };
    svc.associate_qos(&req.caller, id.to_string(), type_id, associate)
        .await?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}
