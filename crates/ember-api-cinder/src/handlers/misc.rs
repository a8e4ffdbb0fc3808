//! Volume types, availability zones, limits and quota sets: enough for the
//! standard clients that list them.

use crate::{CinderError, Reply, Req};
use ember_model::{ProjectId, QuotaResource};
use ember_service::{QuotaSet, Service};
use serde_json::{Map, Value, json};

pub fn availability_zones(svc: &Service) -> Result<Reply, CinderError> {
    Ok(Reply::ok(json!({"availabilityZoneInfo": [
        {"zoneName": svc.config().availability_zone, "zoneState": {"available": true}}
    ]})))
}

fn render(set: &QuotaSet, usage: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(set.project_id.0));
    for (resource, limit, in_use) in &set.entries {
        let v = if usage {
            json!({"limit": limit, "in_use": in_use, "reserved": 0, "allocated": 0})
        } else {
            json!(limit)
        };
        o.insert(resource.as_str().into(), v);
    }
    for (key, limit, in_use) in &set.typed {
        let v = if usage {
            json!({"limit": limit, "in_use": in_use, "reserved": 0, "allocated": 0})
        } else {
            json!(limit)
        };
        o.insert(key.clone(), v);
    }
    json!({"quota_set": o})
}

pub async fn show_quotas(svc: &Service, req: &Req, project: &str) -> Result<Reply, CinderError> {
    let usage = req
        .query("usage")
        .is_some_and(|u| u.eq_ignore_ascii_case("true") || u == "1");
    let set = svc
        .quota_set(&req.caller, ProjectId(project.into()))
        .await?;
    Ok(Reply::ok(render(&set, usage)))
}

pub async fn quota_defaults(svc: &Service, project: &str) -> Result<Reply, CinderError> {
    Ok(Reply::ok(render(
        &svc.quota_defaults(ProjectId(project.into())).await?,
        false,
    )))
}

pub async fn update_quotas(svc: &Service, req: &Req, project: &str) -> Result<Reply, CinderError> {
    svc.authorize_quota_update(&req.caller)?;
    let (limits, typed) = quota_limits_in(req, "quota_set")?;
    let set = svc
        .set_quotas(&req.caller, ProjectId(project.into()), limits, typed)
        .await?;
    Ok(Reply::ok(render(&set, false)))
}

/// The limits a `quota_set`/`quota_class_set` body asks for: the global
/// ones, and the per-volume-type ones (`volumes_<type name>` …) for the
/// service to resolve.
#[allow(clippy::type_complexity)]
fn quota_limits_in(
    req: &Req,
    wrapper: &str,
) -> Result<(Vec<(QuotaResource, i64)>, Vec<(String, i64)>), CinderError> {
    let body = req.json_body()?;
    let Some(set) = body.get(wrapper).and_then(Value::as_object) else {
        return Err(CinderError::bad_request(format!(
            "Missing required element '{wrapper}' in request body."
        )));
    };
    let mut limits = Vec::new();
    let mut typed = Vec::new();
    for (key, value) in set {
        // Cinder ignores these (python-cinderclient sends `tenant_id`).
        if key == "tenant_id" || key == "id" || key == "class_name" {
            continue;
        }
        let n = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                CinderError::bad_request(format!(
                    "Invalid input received: Quota '{key}' must be an integer."
                ))
            })?;
        match QuotaResource::ALL.iter().find(|r| r.as_str() == key) {
            Some(r) => limits.push((*r, n)),
            None if ["volumes_", "snapshots_", "gigabytes_"]
                .iter()
                .any(|p| key.starts_with(p)) =>
            {
                typed.push((key.clone(), n))
            }
            None => {
                return Err(CinderError::bad_request(format!(
                    "Invalid input received: Bad key(s) in quota set: {key}"
                )));
            }
        }
    }
    Ok((limits, typed))
}

/// Ember has one quota class, `default`; any other name answers 404.
fn quota_class_name(class: &str) -> Result<(), CinderError> {
    if class == "default" {
        Ok(())
    } else {
        Err(CinderError::not_found(format!(
            "Quota class {class} could not be found."
        )))
    }
}

fn render_class(set: &QuotaSet, id: bool) -> Value {
    let mut body = render(set, false);
    let o = body["quota_set"].as_object_mut().expect("object");
    if id {
        o.insert("id".into(), json!("default"));
    } else {
        o.remove("id");
    }
    json!({"quota_class_set": body["quota_set"].take()})
}

pub async fn show_quota_class(svc: &Service, req: &Req, class: &str) -> Result<Reply, CinderError> {
    let set = svc.quota_class(&req.caller).await?;
    quota_class_name(class)?;
    Ok(Reply::ok(render_class(&set, true)))
}

pub async fn update_quota_class(
    svc: &Service,
    req: &Req,
    class: &str,
) -> Result<Reply, CinderError> {
    svc.authorize_quota_update(&req.caller)?;
    quota_class_name(class)?;
    let (limits, typed) = quota_limits_in(req, "quota_class_set")?;
    let set = svc.set_quota_class(&req.caller, limits, typed).await?;
    Ok(Reply::ok(render_class(&set, false)))
}

pub async fn limits(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let set = svc
        .quota_set(&req.caller, req.caller.project_id.clone())
        .await?;
    let get = |r: QuotaResource| {
        set.entries
            .iter()
            .find(|(x, _, _)| *x == r)
            .map(|(_, l, u)| (*l, *u))
            .unwrap_or((0, 0))
    };
    let (vl, vu) = get(QuotaResource::Volumes);
    let (sl, su) = get(QuotaResource::Snapshots);
    let (gl, gu) = get(QuotaResource::Gigabytes);
    Ok(Reply::ok(json!({"limits": {"rate": [], "absolute": {
        "totalSnapshotsUsed": su, "maxTotalBackups": 10, "maxTotalVolumeGigabytes": gl,
        "maxTotalSnapshots": sl, "maxTotalBackupGigabytes": 1000, "totalBackupGigabytesUsed": 0,
        "maxTotalVolumes": vl, "totalVolumesUsed": vu, "totalBackupsUsed": 0, "totalGigabytesUsed": gu
    }}})))
}
