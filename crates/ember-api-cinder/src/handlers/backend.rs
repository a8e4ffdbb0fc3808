//! Admin views of the backend in Cinder's shapes: `os-hosts`,
//! `scheduler-stats/get_pools`, `capabilities`, and the extensions list.

use crate::{CinderError, Reply, Req};
use ember_model::Timestamp;
use ember_service::Service;
use ember_service::backend::{HOST, PoolReport};
use serde_json::{Value, json};

const GIB: f64 = (1u64 << 30) as f64;

fn host_not_found(host: &str) -> CinderError {
    CinderError::not_found(format!("Host {host} could not be found."))
}

/// Every service as a host, as `os-services` lists them: a scheduler per
/// node (one when the store is private), a volume service per backend.
pub async fn list_hosts(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    // Same admin rule as the per-host view; its result is not needed here.
    svc.host_usage(&req.caller).await?;
    let services = svc.list_services(&req.caller).await?;
    let hosts: Vec<Value> = services
        .iter()
        .map(|s| {
            json!({"service-status": if s.up { "available" } else { "unavailable" },
                   "service": s.binary, "zone": svc.config().availability_zone,
                   "service-state": if s.switch.disabled { "disabled" } else { "enabled" },
                   "host_name": s.host,
                   "last-update": s.switch.updated_at.unwrap_or_else(Timestamp::now).to_iso_micros()})
        })
        .collect();
    Ok(Reply::ok(json!({ "hosts": hosts })))
}

pub async fn show_host(svc: &Service, req: &Req, host: &str) -> Result<Reply, CinderError> {
    let usage = svc.host_usage(&req.caller).await?;
    let known = host == HOST
        || svc
            .list_services(&req.caller)
            .await?
            .iter()
            .any(|s| s.host == host);
    if !known {
        return Err(host_not_found(host));
    }
    let resources: Vec<Value> = usage
        .iter()
        .map(|u| {
            json!({"resource": {
                "volume_count": u.volume_count.to_string(), "total_volume_gb": u.volume_gb.to_string(),
                "total_snapshot_gb": u.snapshot_gb.to_string(), "snapshot_count": u.snapshot_count.to_string(),
                "project": u.project.as_ref().map(|p| p.0.clone()).unwrap_or_else(|| "(total)".into()),
                "host": host,
            }})
        })
        .collect();
    Ok(Reply::ok(json!({"host": resources})))
}

/// A capability's value as `get_pools` shows it: booleans as JSON
/// booleans, as Cinder's drivers report them.
fn capability_value(value: &str) -> Value {
    match value {
        "True" => json!(true),
        "False" => json!(false),
        other => json!(other),
    }
}

fn pool_entry(pool: &PoolReport, detail: bool) -> Value {
    let mut out = json!({"name": pool.name});
    if detail {
        let now = Timestamp::now().to_iso_micros();
        let mut caps = serde_json::Map::new();
        for (key, value) in &pool.capabilities {
            caps.insert((*key).into(), capability_value(value));
        }
        let gib = |bytes: u64| (bytes as f64 / GIB * 100.0).round() / 100.0;
        caps.insert(
            "total_capacity_gb".into(),
            json!(gib(pool.capacity.total_bytes)),
        );
        caps.insert(
            "free_capacity_gb".into(),
            json!(gib(pool.capacity.free_bytes)),
        );
        caps.insert("reserved_percentage".into(), json!(0));
        caps.insert("timestamp".into(), json!(now));
        caps.insert("updated".into(), json!(now));
        out["capabilities"] = Value::Object(caps);
    }
    out
}

pub async fn pools(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let pools = svc.pools(&req.caller).await?;
    let detail = req
        .query("detail")
        .is_some_and(crate::listing::bool_from_string);
    let items: Vec<Value> = pools.iter().map(|p| pool_entry(p, detail)).collect();
    Ok(Reply::ok(json!({ "pools": items })))
}

pub async fn capabilities(svc: &Service, req: &Req, host: &str) -> Result<Reply, CinderError> {
    let pools = svc.pools(&req.caller).await?;
    // `ember` names the first volume service, as a host without a backend
    // names its only one in Cinder.
    let pool = pools
        .iter()
        .find(|p| {
            let service = format!("{HOST}@{}", p.backend);
            host == service || host == p.name
        })
        .or_else(|| pools.first().filter(|_| host == HOST))
        .ok_or_else(|| host_not_found(host))?;
    let cap = |key: &str| {
        pool.capabilities
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| json!(v))
            .unwrap_or(Value::Null)
    };
    Ok(Reply::ok(json!({
        "namespace": format!("OS::Storage::Capabilities::{HOST}@{}", pool.backend),
        "vendor_name": cap("vendor_name"),
        "volume_backend_name": pool.backend,
        "pool_name": null,
        "driver_version": cap("driver_version"),
        "storage_protocol": cap("storage_protocol"),
        "display_name": null,
        "description": null,
        "visibility": null,
        "replication_targets": [],
        "properties": {
            "thin_provisioning": {"title": "Thin Provisioning", "description": "Sets thin provisioning.", "type": "boolean"},
        },
    })))
}

/// The API extensions Ember implements, named as Cinder names them.
pub fn extensions() -> Reply {
    let list = [
        ("AdminActions", "os-admin-actions", "Enable admin actions."),
        (
            "AvailabilityZones",
            "os-availability-zone",
            "Describe Availability Zones.",
        ),
        ("Capabilities", "capabilities", "Capabilities support."),
        (
            "ExtendedSnapshotAttributes",
            "os-extended-snapshot-attributes",
            "Extended SnapshotAttributes support.",
        ),
        ("Hosts", "os-hosts", "Admin-only host administration."),
        (
            "QuotaClasses",
            "os-quota-class-sets",
            "Quota classes management support.",
        ),
        ("Quotas", "os-quota-sets", "Quota management support."),
        (
            "SchedulerStats",
            "scheduler-stats",
            "Scheduler stats support.",
        ),
        ("Services", "os-services", "Services support."),
        ("Qos_specs_manage", "qos-specs", "QoS specs support."),
        (
            "VolumeTransfer",
            "os-volume-transfer",
            "Volume transfer management support.",
        ),
        ("TypesManage", "os-types-manage", "Types manage support."),
        (
            "TypesExtraSpecs",
            "os-types-extra-specs",
            "Type extra specs support.",
        ),
        (
            "VolumeTypeAccess",
            "os-volume-type-access",
            "Volume type access support.",
        ),
        (
            "VolumeTypeEncryption",
            "encryption",
            "Encryption support for volume types.",
        ),
        (
            "SnapshotActions",
            "os-snapshot-actions",
            "Enable snapshot manager actions.",
        ),
        (
            "VolumeActions",
            "os-volume-actions",
            "Enable volume actions.",
        ),
        (
            "VolumeHostAttribute",
            "os-vol-host-attr",
            "Expose host as an attribute of a volume.",
        ),
        (
            "VolumeMigStatusAttribute",
            "os-vol-mig-status-attr",
            "Expose migration_status as an attribute of a volume.",
        ),
        (
            "VolumeTenantAttribute",
            "os-vol-tenant-attr",
            "Expose the internal project_id as an attribute of a volume.",
        ),
    ];
    let items: Vec<Value> = list
        .iter()
        .map(|(name, alias, description)| {
            json!({"name": name, "alias": alias, "description": description, "links": [],
                   "updated": "2013-01-01T00:00:00+00:00"})
        })
        .collect();
    Reply::ok(json!({"extensions": items}))
}

pub async fn list_services(svc: &Service, req: &Req) -> Result<Reply, CinderError> {
    let all = svc.list_services(&req.caller).await?;
    let (host, binary) = (req.query("host"), req.query("binary"));
    let items: Vec<Value> = all
        .iter()
        .filter(|s| {
            host.is_none_or(|want| ember_service::backend::host_matches(&s.host, want))
                && binary.is_none_or(|want| want == s.binary)
        })
        .map(|s| {
            let switch = &s.switch;
            json!({
                "binary": s.binary, "host": s.host, "zone": svc.config().availability_zone,
                "status": if switch.disabled { "disabled" } else { "enabled" },
                "state": if s.up { "up" } else { "down" }, "frozen": false,
                "disabled_reason": switch.disabled_reason,
                "updated_at": switch.updated_at.unwrap_or_else(Timestamp::now).to_iso_micros(),
                "replication_status": "disabled", "active_backend_id": null,
            })
        })
        .collect();
    Ok(Reply::ok(json!({"services": items})))
}

/// `PUT os-services/{enable|disable|disable-log-reason|freeze|thaw}`.
pub async fn update_service(svc: &Service, req: &Req, action: &str) -> Result<Reply, CinderError> {
    let body = req.json_body()?;
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let host = text("host").ok_or_else(|| {
        CinderError::bad_request("Missing required element 'host' in request body.")
    })?;
    if action == "freeze" || action == "thaw" {
        // Freezing is for replication failover, which Ember does not have.
        svc.list_services(&req.caller).await?;
        return Err(CinderError::bad_request(format!(
            "Invalid input received: Host {host} has no replication to {action}."
        )));
    }
    let binary = text("binary").unwrap_or_else(|| "cinder-volume".into());
    let (disabled, reason) = match action {
        "enable" => (false, None),
        "disable" => (true, None),
        "disable-log-reason" => {
            let reason = text("disabled_reason")
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty() && r.chars().count() <= 255)
                .ok_or_else(|| {
                    CinderError::bad_request(
                        "Disabled reason contains invalid characters or is too long",
                    )
                })?;
            (true, Some(reason))
        }
        _ => return Err(CinderError::not_found("Unknown action")),
    };
    let (service_host, switch) = svc
        .switch_service(&req.caller, host, binary.clone(), disabled, reason)
        .await?;
    let mut out = json!({
        "host": service_host, "binary": binary, "service": binary,
        "disabled": switch.disabled, "status": if switch.disabled { "disabled" } else { "enabled" },
    });
    if action != "disable" {
        out["disabled_reason"] = json!(switch.disabled_reason);
    }
    Ok(Reply::ok(out))
}
