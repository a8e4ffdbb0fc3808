//! The example requests of seeds 000 (Cinder v2) and 002 (Cinder v3),
//! sent verbatim (with a real volume id): 202, every documented field with
//! its documented type, `creating` then `available`.

mod common;

use common::{PROJECT, Server};
use serde_json::Value;

fn assert_documented_fields(s: &Value, with_updated_at: bool) {
    let string = |k: &str| assert!(s[k].is_string(), "{k} should be a string: {s}");
    let string_or_null = |k: &str| assert!(s[k].is_string() || s[k].is_null(), "{k}: {s}");
    string("id");
    assert!(uuid::Uuid::parse_str(s["id"].as_str().unwrap()).is_ok());
    string("status");
    assert_eq!(s["status"], "creating");
    string_or_null("description");
    string("created_at");
    assert!(s["metadata"].is_object());
    string("volume_id");
    assert!(s["size"].is_u64());
    string_or_null("name");
    if with_updated_at {
        assert!(s.as_object().unwrap().contains_key("updated_at") && s["updated_at"].is_null());
    }
}

#[test]
fn seed_000_cinder_v2_create_snapshot() {
    let s = Server::start();
    let vol = s.create_volume(1);
    let body = format!(
        r#"{{
        "snapshot": {{
            "name": "snap-001",
            "description": "Daily backup",
            "volume_id": "{vol}",
            "force": true
       }}
   }}   "#
    );
    let resp = s
        .http
        .post(s.url(&format!("/v2/{PROJECT}/snapshots")))
        .header("X-Auth-Token", format!("admin:{PROJECT}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let json: Value = resp.json().unwrap();
    let snap = &json["snapshot"];
    assert_documented_fields(snap, false);
    assert_eq!(snap["name"], "snap-001");
    assert_eq!(snap["description"], "Daily backup");
    assert_eq!(snap["volume_id"], vol.as_str());
    assert_eq!(snap["size"], 1);
    assert_eq!(snap["metadata"], serde_json::json!({}));
    // The v2 API answers with v3.0 shapes, no microversion header.
    let id = snap["id"].as_str().unwrap();
    let shown = s.wait_status("snapshots", id, "available");
    assert_eq!(shown["name"], "snap-001");
    let (status, v2) = s.call(
        "GET",
        &s.url(&format!("/v2/{PROJECT}/snapshots/{id}")),
        &format!("admin:{PROJECT}"),
        None,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(v2["snapshot"]["status"], "available");
}

#[test]
fn seed_002_cinder_v3_create_snapshot() {
    let s = Server::start();
    let vol = s.create_volume(2);
    // The curl example of the seed, with this volume's id.
    let body = format!(
        r#" {{ "snapshot": {{ "name": "snapshot1", "volume_id": "{vol}", "force": true }} }}"#
    );
    for mv in [None, Some("3.41"), Some("3.45"), Some("3.71")] {
        let mut rb = s
            .http
            .post(s.url(&format!("/v3/{PROJECT}/snapshots")))
            .header("X-Auth-Token", format!("admin:{PROJECT}"))
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Some(mv) = mv {
            rb = rb.header("OpenStack-API-Version", format!("volume {mv}"));
        }
        let resp = rb.send().unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let expected_version = format!("volume {}", mv.unwrap_or("3.0"));
        assert_eq!(
            resp.headers()["openstack-api-version"],
            expected_version.as_str()
        );
        assert!(
            resp.headers()["x-openstack-request-id"]
                .to_str()
                .unwrap()
                .starts_with("req-")
        );
        let json: Value = resp.json().unwrap();
        let snap = &json["snapshot"];
        assert_documented_fields(snap, true);
        assert_eq!(snap["name"], "snapshot1");
        assert_eq!(snap["size"], 2);
        assert!(snap["description"].is_null());
        let has_user = snap.get("user_id").is_some();
        assert_eq!(
            has_user,
            mv.is_some_and(|m| m != "3.0"),
            "user_id from 3.41 only: {snap}"
        );
        if has_user {
            assert_eq!(snap["user_id"], "admin");
        }
        s.wait_status("snapshots", snap["id"].as_str().unwrap(), "available");
    }
    let (_, list) = s.call(
        "GET",
        &s.v3("/snapshots?with_count=true"),
        &format!("admin:{PROJECT}"),
        Some("3.45"),
        None,
    );
    assert_eq!(list["count"], 4);
}
