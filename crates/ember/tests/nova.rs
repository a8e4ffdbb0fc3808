//! Seed 001: Nova's os-snapshots proxy over the same volumes and snapshots
//! as the Cinder API — same ids, same bytes — with Nova's shape, status
//! codes, microversions (gone from 2.36) and faults.

mod common;

use common::{PROJECT, Server};
use serde_json::{Value, json};

fn nova(
    s: &Server,
    method: &str,
    path: &str,
    version: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let token = format!("admin:{PROJECT}");
    s.compute(
        method,
        &s.url(path),
        &token,
        version,
        body.map(|b| b.to_string()),
    )
}

const KEYS: [&str; 7] = [
    "createdAt",
    "displayDescription",
    "displayName",
    "id",
    "size",
    "status",
    "volumeId",
];

#[test]
fn seed_001_creates_a_snapshot_that_every_dialect_sees_with_its_bytes() {
    let s = Server::start();
    let vol = s.create_volume(1);
    s.write(&vol, 0, vec![0xa1; 4096]);
    // The seed's request, verbatim but for the volume id.
    let (status, headers, body) = nova(
        &s,
        "POST",
        &format!("/v2.1/{PROJECT}/os-snapshots"),
        None,
        Some(json!({
            "snapshot": {"display_name": "snap-001", "display_description": "Daily backup", "volume_id": vol, "force": false}
        })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["openstack-api-version"], "compute 2.1");
    assert_eq!(headers["x-openstack-nova-api-version"], "2.1");
    let snap = body["snapshot"].as_object().unwrap();
    let mut keys: Vec<&str> = snap.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, KEYS, "exactly Nova's fields");
    assert_eq!(
        (
            snap["displayName"].as_str(),
            snap["displayDescription"].as_str()
        ),
        (Some("snap-001"), Some("Daily backup"))
    );
    assert_eq!(snap["volumeId"], vol.as_str());
    assert!(snap["size"].is_u64() && snap["createdAt"].is_string());
    assert!(matches!(
        snap["status"].as_str(),
        Some("creating" | "available")
    ));
    let id = snap["id"].as_str().unwrap().to_string();
    s.write(&vol, 0, vec![0xb2; 4096]);

    // The Cinder API shows the same snapshot, with the bytes of before.
    let shown = s.wait_status("snapshots", &id, "available");
    assert_eq!(shown["name"], "snap-001");
    assert_eq!(s.read("snapshots", &id, 0, 4096), vec![0xa1; 4096]);
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![0xb2; 4096]);

    // Nova shows Cinder's snapshots too, with and without the project id,
    // and on the compute endpoint's /v2.
    let other = s.create_snapshot(&vol);
    for path in [
        format!("/v2.1/{PROJECT}/os-snapshots"),
        "/v2.1/os-snapshots/detail".into(),
        format!("/compute/v2/{PROJECT}/os-snapshots"),
    ] {
        let (status, _, body) = nova(&s, "GET", &path, Some("2.35"), None);
        assert_eq!(status, 200, "{path}: {body}");
        let ids: Vec<&str> = body["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap())
            .collect();
        assert!(
            ids.contains(&id.as_str()) && ids.contains(&other.as_str()),
            "{path}: {body}"
        );
    }
    let (status, _, body) = nova(&s, "GET", "/v2.1/os-snapshots?limit=1&offset=1", None, None);
    assert_eq!(
        (status, body["snapshots"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (status, _, body) = nova(
        &s,
        "GET",
        &format!("/v2.1/{PROJECT}/os-snapshots/{other}"),
        None,
        None,
    );
    assert_eq!(
        (status, body["snapshot"]["status"].as_str()),
        (200, Some("available"))
    );

    // Delete: 202, then Nova's 404.
    let (status, _, _) = nova(
        &s,
        "DELETE",
        &format!("/v2.1/{PROJECT}/os-snapshots/{other}"),
        None,
        None,
    );
    assert_eq!(status, 202);
    s.wait_gone("snapshots", &other);
    let (status, _, body) = nova(
        &s,
        "GET",
        &format!("/v2.1/{PROJECT}/os-snapshots/{other}"),
        None,
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"itemNotFound": {"code": 404, "message": format!("Snapshot {other} could not be found.")}})
    );
}

#[test]
fn nova_rules_versions_and_faults() {
    let s = Server::start();
    let vol = s.create_volume(1);
    let path = format!("/v2.1/{PROJECT}/os-snapshots");
    let fault = |v: &Value, kind: &str, code: u16| -> String {
        assert_eq!(v[kind]["code"], code, "{v}");
        v[kind]["message"].as_str().unwrap().to_string()
    };
    // Gone from 2.36, with Nova's generic 404 and the version headers.
    let (status, headers, body) = nova(&s, "GET", &path, Some("2.36"), None);
    assert_eq!(status, 404);
    assert_eq!(
        fault(&body, "itemNotFound", 404),
        "The resource could not be found."
    );
    assert_eq!(headers["openstack-api-version"], "compute 2.36");
    let (status, _, _) = nova(
        &s,
        "POST",
        &path,
        Some("latest"),
        Some(json!({"snapshot": {"volume_id": vol}})),
    );
    assert_eq!(status, 404);
    // Versions outside the range, malformed ones.
    let (status, _, body) = nova(&s, "GET", &path, Some("2.105"), None);
    assert_eq!(status, 406);
    assert!(fault(&body, "computeFault", 406).contains("Minimum is 2.1 and maximum is 2.104"));
    let (status, _, body) = nova(&s, "GET", &path, Some("two"), None);
    assert_eq!(status, 400, "{body}");
    // Only Nova's four request fields.
    let (status, _, body) = nova(
        &s,
        "POST",
        &path,
        None,
        Some(json!({"snapshot": {"volume_id": vol, "name": "x"}})),
    );
    assert_eq!(status, 400);
    assert!(
        fault(&body, "badRequest", 400)
            .ends_with("Additional properties are not allowed ('name' was unexpected)"),
        "{body}"
    );
    let (status, _, body) = nova(
        &s,
        "POST",
        &path,
        None,
        Some(json!({"snapshot": {"display_name": "x"}})),
    );
    assert_eq!(status, 400);
    assert!(
        fault(&body, "badRequest", 400).ends_with("'volume_id' is a required property"),
        "{body}"
    );
    let (status, _, body) = nova(
        &s,
        "POST",
        &path,
        None,
        Some(json!({"snapshot": {"volume_id": vol, "force": "maybe"}})),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = nova(&s, "POST", &path, None, Some(json!({})));
    assert_eq!(
        (status, fault(&body, "badRequest", 400)),
        (400, "'snapshot' is a required property".to_string())
    );
    // Where Nova would turn Cinder's 404 into a 500, Ember answers the 404.
    let (status, _, body) = nova(
        &s,
        "POST",
        &path,
        None,
        Some(json!({"snapshot": {"volume_id": "00000000-0000-4000-8000-000000000000"}})),
    );
    assert_eq!(status, 404, "{body}");
    // No token: 401; a project the token does not name: 400.
    let resp = reqwest::blocking::Client::new()
        .get(s.url(&path))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = reqwest::blocking::Client::new()
        .get(s.url("/v2.1/0123456789abcdef0123456789abcdef/os-snapshots"))
        .header("X-Auth-Token", format!("alice:{PROJECT}"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[test]
fn compute_version_discovery() {
    let s = Server::start();
    let (status, _, body) = nova(&s, "GET", "/compute/", None, None);
    assert_eq!(status, 200);
    let current = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "v2.1")
        .unwrap()
        .clone();
    assert_eq!(
        (current["version"].as_str(), current["min_version"].as_str()),
        (Some("2.104"), Some("2.1"))
    );
    let (status, _, body) = nova(&s, "GET", "/compute/v2.1/", None, None);
    assert_eq!(
        (status, body["version"]["id"].as_str()),
        (200, Some("v2.1"))
    );
    let resp = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(s.url("/compute/v2.1"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("/compute/v2.1/")
    );
}
