//! The admin's views of the backend (hosts, pools, capabilities, services)
//! and the switches and defaults that change behaviour: a disabled volume
//! service takes no new volumes; the default quota class applies to every
//! project without its own limits.

mod common;

use common::{OTHER_PROJECT, PROJECT, Server};
use serde_json::json;

#[test]
fn hosts_pools_and_capabilities_describe_the_real_backend() {
    let s = Server::start();
    let vol = s.create_volume(3);
    let (st, body) = s.admin("GET", "/scheduler-stats/get_pools?detail=true", None);
    assert_eq!(st, 200, "{body}");
    let pool = &body["pools"][0];
    let (_, v) = s.admin("GET", &format!("/volumes/{vol}"), None);
    assert_eq!(
        pool["name"], v["volume"]["os-vol-host-attr:host"],
        "volumes live in the pool listed"
    );
    let total = pool["capabilities"]["total_capacity_gb"].as_f64().unwrap();
    let free = pool["capabilities"]["free_capacity_gb"].as_f64().unwrap();
    assert!(total > 0.0 && free > 0.0 && free <= total, "{pool}");
    let (st, caps) = s.admin(
        "GET",
        &format!("/capabilities/{}", pool["name"].as_str().unwrap()),
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(caps["vendor_name"], pool["capabilities"]["vendor_name"]);
    assert_eq!(s.admin("GET", "/capabilities/nowhere@x", None).0, 404);

    let (_, hosts) = s.admin("GET", "/os-hosts", None);
    let volume_host = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["service"] == "cinder-volume")
        .unwrap()["host_name"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, host) = s.admin("GET", &format!("/os-hosts/{volume_host}"), None);
    assert_eq!(st, 200);
    let total = &host["host"][0]["resource"];
    assert_eq!(
        (
            total["project"].as_str(),
            total["volume_count"].as_str(),
            total["total_volume_gb"].as_str()
        ),
        (Some("(total)"), Some("1"), Some("3"))
    );

    // Members see none of this.
    let member = format!("alice:{PROJECT}");
    for path in [
        "/scheduler-stats/get_pools",
        "/os-hosts",
        "/os-services",
        "/os-quota-class-sets/default",
    ] {
        assert_eq!(
            s.call("GET", &s.v3(path), &member, None, None).0,
            403,
            "{path}"
        );
    }
}

#[test]
fn a_disabled_volume_service_takes_no_new_volumes() {
    let s = Server::start();
    let (st, body) = s.admin(
        "PUT",
        "/os-services/disable-log-reason",
        Some(json!({"host": "ember", "binary": "cinder-volume", "disabled_reason": "maintenance"})),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "disabled");
    let (_, list) = s.admin("GET", "/os-services?binary=cinder-volume", None);
    assert_eq!(list["services"][0]["disabled_reason"], "maintenance");
    // As in Cinder: accepted, then `error` (no valid backend), and a user
    // message says why.
    let (st, body) = s.admin("POST", "/volumes", Some(json!({"volume": {"size": 1}})));
    assert_eq!(st, 202, "{body}");
    let failed = body["volume"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.wait_status("volumes", &failed, "error")["ember:error_reason"]
            .as_str()
            .map(|r| r.contains("maintenance")),
        Some(true)
    );
    let (_, msgs) = s.admin("GET", "/messages", None);
    assert_eq!(
        msgs["messages"][0]["resource_uuid"],
        failed.as_str(),
        "{msgs}"
    );
    assert_eq!(msgs["messages"][0]["event_id"], "VOLUME_VOLUME_001_002");
    // It still counts against quota until deleted, and deletes cleanly.
    assert_eq!(
        s.admin("DELETE", &format!("/volumes/{failed}"), None).0,
        202
    );
    s.wait_gone("volumes", &failed);
    assert_eq!(
        s.admin(
            "PUT",
            "/os-services/enable",
            Some(json!({"host": "nohost", "binary": "cinder-volume"}))
        )
        .0,
        404
    );
    assert_eq!(
        s.admin(
            "PUT",
            "/os-services/enable",
            Some(json!({"host": "ember", "binary": "cinder-volume"}))
        )
        .0,
        200
    );
    s.create_volume(1);
}

#[test]
fn the_default_quota_class_applies_to_projects_without_their_own_limits() {
    let s = Server::start();
    let (st, body) = s.admin(
        "PUT",
        "/os-quota-class-sets/default",
        Some(json!({"quota_class_set": {"volumes": 1}})),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["quota_class_set"]["volumes"], 1);
    let (_, d) = s.admin(
        "GET",
        &format!("/os-quota-sets/{OTHER_PROJECT}/defaults"),
        None,
    );
    assert_eq!(d["quota_set"]["volumes"], 1);
    s.create_volume(1);
    let (st, body) = s.admin("POST", "/volumes", Some(json!({"volume": {"size": 1}})));
    assert_eq!(st, 413, "the class default limits this project: {body}");
    // A project's own limit wins; deleting it falls back to the class.
    assert_eq!(
        s.admin(
            "PUT",
            &format!("/os-quota-sets/{PROJECT}"),
            Some(json!({"quota_set": {"volumes": 5}}))
        )
        .0,
        200
    );
    s.create_volume(1);
    assert_eq!(
        s.admin("DELETE", &format!("/os-quota-sets/{PROJECT}"), None)
            .0,
        200
    );
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}"), None);
    assert_eq!(q["quota_set"]["volumes"], 1);
}

#[test]
fn qos_specs_associate_with_types_and_block_their_own_deletion() {
    let s = Server::start();
    let (st, body) = s.admin("POST", "/qos-specs", Some(json!({"qos_specs": {"name": "gold", "consumer": "front-end", "read_iops_sec": "2000"}})));
    assert_eq!(st, 200, "{body}");
    let qos = body["qos_specs"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["qos_specs"]["specs"], json!({"read_iops_sec": "2000"}));
    let (st, body) = s.admin(
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "fast"}})),
    );
    assert_eq!(st, 200, "{body}");
    let t = body["volume_type"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.admin(
            "GET",
            &format!("/qos-specs/{qos}/associate?vol_type_id={t}"),
            None
        )
        .0,
        202
    );
    let (_, body) = s.admin("GET", &format!("/types/{t}"), None);
    assert_eq!(body["volume_type"]["qos_specs_id"], qos.as_str());
    assert_eq!(
        s.admin("DELETE", &format!("/qos-specs/{qos}"), None).0,
        400,
        "still associated"
    );
    assert_eq!(
        s.admin("DELETE", &format!("/qos-specs/{qos}?force=true"), None)
            .0,
        202
    );
    let (_, body) = s.admin("GET", &format!("/types/{t}"), None);
    assert_eq!(body["volume_type"]["qos_specs_id"], serde_json::Value::Null);
    let member = format!("alice:{PROJECT}");
    assert_eq!(
        s.call("GET", &s.v3("/qos-specs"), &member, None, None).0,
        403
    );
}

#[test]
fn a_type_asking_for_capabilities_the_pool_lacks_gives_an_error_volume_and_a_message() {
    let s = Server::start();
    let (_, body) = s.admin(
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "fc", "extra_specs": {"storage_protocol": "FC"}}})),
    );
    let fc = body["volume_type"]["id"].as_str().unwrap().to_string();
    let (_, body) = s.admin("POST", "/types", Some(json!({"volume_type": {"name": "ours", "extra_specs": {"storage_protocol": "nbd", "thin_provisioning_support": "<is> True", "unrelated:key": "x"}}})));
    let ours = body["volume_type"]["id"].as_str().unwrap().to_string();
    let (st, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "volume_type": fc}})),
    );
    assert_eq!(st, 202, "{body}");
    let bad = body["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &bad, "error");
    let (st, body) = s.call(
        "GET",
        &s.v3("/messages"),
        &format!("admin:{PROJECT}"),
        Some("3.3"),
        None,
    );
    assert_eq!(st, 200);
    let id = body["messages"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(body["messages"][0]["resource_uuid"], bad.as_str());
    assert_eq!(
        s.call(
            "GET",
            &s.v3("/messages"),
            &format!("admin:{PROJECT}"),
            Some("3.2"),
            None
        )
        .0,
        404,
        "3.3+ only"
    );
    assert_eq!(
        s.call(
            "GET",
            &s.url(&format!("/v3/{OTHER_PROJECT}/messages")),
            &format!("bob:{OTHER_PROJECT}"),
            Some("3.3"),
            None
        )
        .1["messages"],
        json!([])
    );
    assert_eq!(
        s.call(
            "DELETE",
            &s.v3(&format!("/messages/{id}")),
            &format!("admin:{PROJECT}"),
            Some("3.3"),
            None
        )
        .0,
        204
    );
    // A type the pool satisfies gives a working volume.
    let (st, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "volume_type": ours}})),
    );
    assert_eq!(st, 202, "{body}");
    s.wait_status(
        "volumes",
        body["volume"]["id"].as_str().unwrap(),
        "available",
    );
}

#[test]
fn group_types_are_admin_managed_and_private_ones_hidden() {
    let s = Server::start();
    let admin = format!("admin:{PROJECT}");
    let member = format!("alice:{PROJECT}");
    let body = json!({"group_type": {"name": "secret", "is_public": false, "group_specs": {"consistent_group_snapshot_enabled": "<is> False"}}});
    assert_eq!(
        s.call(
            "POST",
            &s.v3("/group_types"),
            &member,
            Some("3.11"),
            Some(body.clone())
        )
        .0,
        403
    );
    assert_eq!(
        s.call(
            "POST",
            &s.v3("/group_types"),
            &admin,
            Some("3.10"),
            Some(body.clone())
        )
        .0,
        404,
        "3.11+ only"
    );
    let (st, created) = s.call(
        "POST",
        &s.v3("/group_types"),
        &admin,
        Some("3.11"),
        Some(body),
    );
    assert_eq!(st, 202, "{created}");
    let id = created["group_type"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.call(
            "GET",
            &s.v3(&format!("/group_types/{id}")),
            &member,
            Some("3.11"),
            None
        )
        .0,
        404,
        "private"
    );
    let (_, all) = s.call(
        "GET",
        &s.v3("/group_types?is_public=None&sort=name:desc"),
        &admin,
        Some("3.11"),
        None,
    );
    let names: Vec<&str> = all["group_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["secret", "default_group_type"]);
    let (st, _) = s.call(
        "DELETE",
        &s.v3(&format!(
            "/group_types/{id}/group_specs/consistent_group_snapshot_enabled"
        )),
        &admin,
        Some("3.11"),
        None,
    );
    assert_eq!(st, 202);
    let (_, shown) = s.call(
        "GET",
        &s.v3(&format!("/group_types/{id}")),
        &admin,
        Some("3.11"),
        None,
    );
    assert_eq!(shown["group_type"]["group_specs"], json!({}));
}

#[test]
fn per_type_quotas_limit_each_type_and_follow_retype_and_deletes() {
    let s = Server::start();
    let (_, t) = s.admin(
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "gold"}})),
    );
    let gold = t["volume_type"]["id"].as_str().unwrap().to_string();
    let (st, q) = s.admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"volumes_gold": 1, "gigabytes_gold": 5}})),
    );
    assert_eq!(st, 200, "{q}");
    assert_eq!(q["quota_set"]["volumes_gold"], 1);
    let (st, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "volume_type": gold}})),
    );
    assert_eq!(st, 202, "{body}");
    let first = body["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &first, "available");
    let (st, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "volume_type": gold}})),
    );
    assert_eq!(st, 413, "one gold volume only: {body}");
    // Other types are not limited by gold's quota.
    let plain = s.create_volume(1);
    // Retyping into gold is refused while gold is full; out of it frees it.
    let (st, _) = s.admin(
        "POST",
        &format!("/volumes/{plain}/action"),
        Some(json!({"os-retype": {"new_type": gold}})),
    );
    assert_eq!(st, 413);
    let (st, body) = s.admin(
        "POST",
        &format!("/volumes/{first}/action"),
        Some(json!({"os-retype": {"new_type": "__DEFAULT__"}})),
    );
    assert_eq!(st, 202, "{body}");
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    assert_eq!(
        (
            q["quota_set"]["volumes_gold"]["in_use"].as_i64(),
            q["quota_set"]["volumes___DEFAULT__"]["in_use"].as_i64()
        ),
        (Some(0), Some(2)),
        "{q}"
    );
    let (st, _) = s.admin(
        "POST",
        &format!("/volumes/{plain}/action"),
        Some(json!({"os-retype": {"new_type": gold}})),
    );
    assert_eq!(st, 202);
    // A snapshot counts under its volume's type; deleting returns it all.
    let snap = s.create_snapshot(&plain);
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    assert_eq!(
        (
            q["quota_set"]["snapshots_gold"]["in_use"].as_i64(),
            q["quota_set"]["gigabytes_gold"]["in_use"].as_i64()
        ),
        (Some(1), Some(2)),
        "{q}"
    );
    let (st, _) = s.admin("DELETE", &format!("/volumes/{plain}?cascade=true"), None);
    assert_eq!(st, 202);
    s.wait_gone("volumes", &plain);
    s.wait_gone("snapshots", &snap);
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    for key in ["volumes_gold", "snapshots_gold", "gigabytes_gold"] {
        assert_eq!(q["quota_set"][key]["in_use"], 0, "{key}: {q}");
    }
    assert_eq!(
        s.admin(
            "PUT",
            &format!("/os-quota-sets/{PROJECT}"),
            Some(json!({"quota_set": {"volumes_nosuchtype": 1}}))
        )
        .0,
        400
    );
}
