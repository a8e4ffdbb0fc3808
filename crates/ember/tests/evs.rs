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
