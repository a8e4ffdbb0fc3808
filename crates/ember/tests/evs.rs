//! Seed 004: Huawei Cloud EVS's snapshot API on its own listener, over the
//! same snapshots as Cinder — EVS's limits, reserved prefix, error codes.

mod common;

use common::{PROJECT, Server, free_port};
use serde_json::{Value, json};

struct Evs {
    server: Server,
    port: u16,
}

impl Evs {
    fn start() -> Evs {
        let port = free_port();
        let server = Server::start_with(&[
            "--auth",
            "noauth",
            "--evs-listen",
            &format!("127.0.0.1:{port}"),
        ]);
        Evs { server, port }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = reqwest::blocking::Client::new()
            .request(
                method.parse().unwrap(),
                format!("http://127.0.0.1:{}/v2/{PROJECT}{path}", self.port),
            )
            .header("X-Auth-Token", format!("alice:{PROJECT}"));
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = rb.send().unwrap();
        let status = resp.status().as_u16();
        assert!(resp.headers().contains_key("x-request-id"));
        (
            status,
            serde_json::from_str(&resp.text().unwrap_or_default()).unwrap_or(Value::Null),
        )
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an EVS error: {body}"))
}

#[test]
fn seed_004_creates_a_snapshot_the_cinder_api_sees_with_its_bytes() {
    let evs = Evs::start();
    let s = &evs.server;
    let vol = s.create_volume(1);
    s.write(&vol, 0, vec![0x5a; 4096]);
    // The seed's example request, but for the volume id.
    let (status, body) = evs.call("POST", "/snapshots", Some(json!({"snapshot": {
        "name": "snap-001", "description": "Daily backup", "volume_id": vol, "force": false, "metadata": {}
    }})));
    assert_eq!(status, 202, "{body}");
    let snap = body["snapshot"].as_object().unwrap();
    let mut keys: Vec<&str> = snap.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "id",
            "metadata",
            "name",
            "size",
            "status",
            "updated_at",
            "volume_id"
        ]
    );
    assert_eq!(
        (
            snap["status"].as_str(),
            snap["name"].as_str(),
            snap["size"].as_u64()
        ),
        (Some("creating"), Some("snap-001"), Some(1))
    );
    let id = snap["id"].as_str().unwrap().to_string();
    s.wait_status("snapshots", &id, "available");
    s.write(&vol, 0, vec![0xa5; 4096]);
    assert_eq!(s.read("snapshots", &id, 0, 4096), vec![0x5a; 4096]);

    // The SDK's native paths see the same snapshot, with EVS's extra fields.
    let (status, body) = evs.call("GET", &format!("/cloudsnapshots/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(
        body["snapshot"]["os-extended-snapshot-attributes:project_id"],
        PROJECT
    );
    let (status, body) = evs.call("GET", "/cloudsnapshots/detail?limit=10", None);
    assert_eq!((status, body["count"].as_u64()), (200, Some(1)));
    let (status, body) = evs.call(
        "PUT",
        &format!("/snapshots/{id}/metadata/k"),
        Some(json!({"meta": {"k": "v"}})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = evs.call("GET", &format!("/snapshots/{id}/metadata"), None);
    assert_eq!(body["metadata"], json!({"k": "v"}));
    let (status, _) = evs.call("DELETE", &format!("/snapshots/{id}"), None);
    assert_eq!(status, 202);
    s.wait_gone("snapshots", &id);
}

#[test]
fn evs_rules_and_error_codes() {
    let evs = Evs::start();
    let vol = evs.server.create_volume(1);
    let create =
        |snapshot: Value| evs.call("POST", "/snapshots", Some(json!({ "snapshot": snapshot })));
    let (st, body) = create(json!({"volume_id": vol, "name": "n".repeat(65)}));
    assert_eq!((st, code(&body)), (400, "EVS.5400"));
    let (st, _) = create(json!({"volume_id": vol, "name": "n".repeat(64)}));
    assert_eq!(st, 202, "64 characters are allowed");
    let (st, body) = create(json!({"volume_id": vol, "description": "d".repeat(86)}));
    assert_eq!((st, code(&body)), (400, "EVS.5400"));
    let (st, body) = create(json!({"volume_id": vol, "name": "autobk_snapshot_mine"}));
    assert_eq!(st, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("autobk_snapshot_")
    );
    let (st, body) = create(json!({"volume_id": vol, "metadata": {"a": 1}}));
    assert_eq!((st, code(&body)), (400, "EVS.5400"));
    let (st, body) = create(json!({"name": "x"}));
    assert_eq!((st, code(&body)), (400, "EVS.1002"));
    let (st, body) = create(json!({"volume_id": "not-a-uuid"}));
    assert_eq!((st, code(&body)), (400, "EVS.1002"));
    let (st, body) = create(json!({"volume_id": "00000000-0000-4000-8000-000000000000"}));
    assert_eq!((st, code(&body)), (404, "EVS.5404"));
    let (st, body) = evs.call("GET", "/snapshots/detail?limit=1001", None);
    assert_eq!((st, code(&body)), (400, "EVS.2142"));
    // No token, another project in the path.
    let resp = reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/v2/{PROJECT}/snapshots",
            evs.port
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/v2/0123456789abcdef0123456789abcdef/snapshots",
            evs.port
        ))
        .header("X-Auth-Token", format!("alice:{PROJECT}"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // A snapshot not available or error cannot be deleted: EVS.1047.
    let (_, body) = create(json!({"volume_id": vol}));
    let id = body["snapshot"]["id"].as_str().unwrap().to_string();
    evs.server.wait_status("snapshots", &id, "available");
    let (st, _) = evs.server.admin(
        "POST",
        &format!("/snapshots/{id}/action"),
        Some(json!({"os-reset_status": {"status": "error_deleting"}})),
    );
    assert_eq!(st, 202);
    let (st, body) = evs.call("DELETE", &format!("/snapshots/{id}"), None);
    assert_eq!((st, code(&body)), (400, "EVS.1047"), "{body}");
    // The main listener's v2 keeps Cinder's rules (65-character names pass).
    let (st, body) = evs.server.call(
        "POST",
        &evs.server.url(&format!("/v2/{PROJECT}/snapshots")),
        &format!("alice:{PROJECT}"),
        None,
        Some(json!({"snapshot": {"volume_id": vol, "name": "n".repeat(65), "force": true}})),
    );
    assert_eq!(st, 202, "{body}");
}

/// EVS's rollback (any snapshot of the volume, newer ones kept), its list
/// filters and paging links, and the version documents, proven with bytes.
#[test]
fn rollback_filters_paging_and_versions() {
    let evs = Evs::start();
    let s = &evs.server;
    let vol = s.create_volume(1);
    s.write(&vol, 0, vec![0xa1; 4096]);
    let create = |name: &str| {
        let (st, body) = evs.call(
            "POST",
            "/cloudsnapshots",
            Some(json!({"snapshot": {"volume_id": vol, "name": name}})),
        );
        assert_eq!(st, 202, "{body}");
        let id = body["snapshot"]["id"].as_str().unwrap().to_string();
        s.wait_status("snapshots", &id, "available");
        id
    };
    let first = create("first");
    s.write(&vol, 0, vec![0xb2; 4096]);
    let second = create("second");
    s.write(&vol, 0, vec![0xc3; 4096]);

    // Back to the older snapshot: the volume reads it; the newer one stays.
    let (st, body) = evs.call(
        "POST",
        &format!("/cloudsnapshots/{first}/rollback"),
        Some(json!({"rollback": {"volume_id": vol, "name": "restored"}})),
    );
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["rollback"]["volume_id"], vol.as_str());
    assert_eq!(body["rollback"]["volume_name"], "restored");
    let v = s.wait_status("volumes", &vol, "available");
    assert_eq!(v["name"], "restored");
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![0xa1; 4096]);
    s.wait_status("snapshots", &second, "available");
    assert_eq!(s.read("snapshots", &second, 0, 4096), vec![0xb2; 4096]);
    // And forward again to the newer one.
    let (st, body) = evs.call(
        "POST",
        &format!("/cloudsnapshots/{second}/rollback"),
        Some(json!({"rollback": {"volume_id": vol}})),
    );
    assert_eq!(st, 202, "{body}");
    s.wait_status("volumes", &vol, "available");
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![0xb2; 4096]);
    // Only to the snapshot's own volume; the body is checked.
    let other = s.create_volume(1);
    let (st, body) = evs.call(
        "POST",
        &format!("/cloudsnapshots/{first}/rollback"),
        Some(json!({"rollback": {"volume_id": other}})),
    );
    assert_eq!((st, code(&body)), (400, "EVS.5400"), "{body}");
    let (st, body) = evs.call(
        "POST",
        &format!("/cloudsnapshots/{first}/rollback"),
        Some(json!({"rollback": {}})),
    );
    assert_eq!((st, code(&body)), (400, "EVS.2108"), "{body}");
    let (st, body) = evs.call(
        "POST",
        "/cloudsnapshots/00000000-0000-4000-8000-000000000000/rollback",
        Some(json!({"rollback": {"volume_id": vol}})),
    );
    assert_eq!((st, code(&body)), (404, "EVS.5404"), "{body}");

    // Every filter of the SDK's list_snapshots.
    let count = |query: &str| {
        let (st, body) = evs.call("GET", &format!("/cloudsnapshots/detail?{query}"), None);
        assert_eq!(st, 200, "{query}: {body}");
        body["snapshots"].as_array().unwrap().len()
    };
    assert_eq!(count(""), 2);
    assert_eq!(count(&format!("id={first}")), 1);
    assert_eq!(count("id=not-an-id"), 0);
    assert_eq!(count("name=second"), 1);
    assert_eq!(count(&format!("volume_id={vol}")), 2);
    assert_eq!(count("status=available"), 2);
    assert_eq!(count("availability_zone=nova"), 2);
    assert_eq!(count("availability_zone=elsewhere"), 0);
    assert_eq!(count("service_type=EVS"), 2);
    assert_eq!(count("service_type=other"), 0);
    assert_eq!(count("enterprise_project_id=0"), 2);
    assert_eq!(count("enterprise_project_id=1234"), 0);
    assert_eq!(count("dedicated_storage_id=ds-1"), 0);
    assert_eq!(count("dedicated_storage_name=pool"), 0);

    // A page the limit cuts short links to the next one.
    let (st, page) = evs.call("GET", "/cloudsnapshots/detail?limit=1", None);
    assert_eq!(st, 200);
    assert_eq!(page["count"], 2);
    let next = page["snapshots_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(page["snapshots_links"][0]["rel"], "next");
    let path = next.split_once(&format!("/v2/{PROJECT}")).unwrap().1;
    let (st, rest) = evs.call("GET", path, None);
    assert_eq!(st, 200, "{rest}");
    assert_eq!(rest["snapshots"].as_array().unwrap().len(), 1);
    assert_ne!(rest["snapshots"][0]["id"], page["snapshots"][0]["id"]);
    assert!(rest.get("snapshots_links").is_none(), "{rest}");

    // The SDK's list_versions and show_version.
    for path in ["/", "/v2"] {
        let resp = reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", evs.port)).unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let v: Value = resp.json().unwrap();
        assert_eq!(v["versions"][0]["id"], "v2.0", "{v}");
    }
}
