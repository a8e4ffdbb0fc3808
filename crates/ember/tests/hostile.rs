//! Hostile HTTP input against the Cinder, Nova and EVS routers in process
//! (real SQLite and qcow2 underneath): seeded random methods, paths built
//! from real and junk segments, microversion headers, content types and
//! bodies mutated from valid requests. Every answer must be a well-formed
//! response below 500.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ember_api_common::{Authenticator, NoAuth};
use ember_service::{Service, ServiceConfig};
use ember_storage::qcow2::Qcow2Driver;
use ember_store::sqlite::SqliteStore;
use std::sync::Arc;
use tower::ServiceExt;

mod common;
use common::Rng;

use common::PROJECT;

const SEGMENTS: &[&str] = &[
    "snapshots",
    "volumes",
    "detail",
    "action",
    "metadata",
    "types",
    "extra_specs",
    "os-volume-transfer",
    "volume-transfers",
    "attachments",
    "groups",
    "group_snapshots",
    "group_types",
    "qos-specs",
    "os-quota-sets",
    "os-services",
    "limits",
    "messages",
    "os-snapshots",
    "os-assisted-volume-snapshots",
    "data",
    "accept",
    "summary",
    "00000000-0000-0000-0000-000000000000",
    "%00",
    "..",
    "%2e%2e",
    "",
    "\u{1F525}",
    "a%ZZ",
    "9d8c7b6a5f4e4d3c2b1a0f9e8d7c6b5a",
];

const ROUTES: &[&str] = &[
    "/v3/{p}/snapshots",
    "/v3/{p}/snapshots/detail",
    "/v3/{p}/snapshots/{id}",
    "/v3/{p}/snapshots/{id}/action",
    "/v3/{p}/snapshots/{id}/metadata",
    "/v3/{p}/snapshots/{id}/metadata/k",
    "/v3/{p}/volumes",
    "/v3/{p}/volumes/detail",
    "/v3/{p}/volumes/{id}",
    "/v3/{p}/volumes/{id}/action",
    "/v3/{p}/volumes/{id}/metadata",
    "/v3/{p}/volumes/{id}/data",
    "/v3/{p}/volumes/summary",
    "/v3/{p}/attachments",
    "/v3/{p}/attachments/detail",
    "/v3/{p}/attachments/{id}",
    "/v3/{p}/attachments/{id}/action",
    "/v3/{p}/types",
    "/v3/{p}/types/{id}/extra_specs",
    "/v3/{p}/os-quota-sets/{p}",
    "/v3/{p}/groups",
    "/v3/{p}/groups/detail",
    "/v3/{p}/group_snapshots",
    "/v3/{p}/os-volume-transfer",
    "/v3/{p}/volume-transfers/{id}/accept",
    "/v3/{p}/qos-specs",
    "/v3/{p}/messages",
    "/v3/{p}/limits",
    "/v3/{p}/os-services",
    "/v3/{p}/scheduler-stats/get_pools",
    "/v2/{p}/snapshots",
    "/v2/{p}/snapshots/{id}",
    "/v2.1/{p}/os-snapshots",
    "/v2.1/{p}/os-snapshots/{id}",
    "/v2.1/os-snapshots/detail",
    "/v2.1/{p}/os-assisted-volume-snapshots",
    "/v2.1/{p}/os-assisted-volume-snapshots/{id}",
    "/compute/v2.1/{p}/os-snapshots",
];

const BODIES: &[&str] = &[
    r#"{"snapshot": {"volume_id": "VOL", "name": "n", "force": true, "metadata": {"k": "v"}}}"#,
    r#"{"volume": {"size": 1, "name": "v", "metadata": {}}}"#,
    r#"{"attachment": {"volume_uuid": "VOL", "connector": {"host": "h"}, "mode": "rw"}}"#,
    r#"{"os-initialize_connection": {"connector": {"host": "h"}}}"#,
    r#"{"os-extend": {"new_size": 2}}"#,
    r#"{"revert": {"snapshot_id": "SNAP"}}"#,
    r#"{"metadata": {"a": "b"}}"#,
    r#"{"snapshot": {"volume_id": "VOL", "create_info": {"snapshot_id": "SNAP", "type": "qcow2", "new_file": "f"}}}"#,
    r#"{"quota_set": {"volumes": -1}}"#,
    r#"{"volume_type": {"name": "t", "extra_specs": {"k": "v"}}}"#,
    r#"{"transfer": {"volume_id": "VOL"}}"#,
    "[]",
    "null",
    "1e999",
    "{",
    r#"{"a":{"a":{"a":{"a":{"a":{"a":{}}}}}}}"#,
    "\u{feff}{}",
    r#"{"snapshot": {"volume_id": "VOL", "volume_id": 3}}"#,
];

/// Mutates a body: truncation, byte flips, type swaps, huge numbers.
fn mutate(rng: &mut Rng, body: &str) -> Vec<u8> {
    let mut b = body.as_bytes().to_vec();
    match rng.below(6) {
        0 => b.truncate(rng.index(b.len() + 1)),
        1 => {
            for _ in 0..1 + rng.below(3) {
                if !b.is_empty() {
                    let i = rng.index(b.len());
                    b[i] = rng.next() as u8;
                }
            }
        }
        2 => {
            let s = String::from_utf8_lossy(&b)
                .replace("\"v\"", "123456789012345678901234567890")
                .replace("1,", "-1,")
                .replace("true", "\"maybe\"");
            b = s.into_bytes();
        }
        3 => b.extend(std::iter::repeat_n(b'[', 1 + rng.index(5000))),
        _ => {}
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_hostile_requests_never_get_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let driver = Qcow2Driver::new(dir.path().join("images")).unwrap();
    let service = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
    service.recover().await.unwrap();
    let auth: Arc<dyn Authenticator> = Arc::new(NoAuth);
    let app = ember_api_nova::router(Arc::new(ember_api_nova::NovaState {
        service: service.clone(),
        auth: auth.clone(),
    }))
    .merge(ember_api_cinder::router(Arc::new(
        ember_api_cinder::CinderState {
            service: service.clone(),
            auth: auth.clone(),
        },
    )));

    // One real volume and snapshot, so ids sometimes hit something.
    let make = |method: &str, uri: String, body: String| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("X-Auth-Token", format!("admin:{PROJECT}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let resp = app
        .clone()
        .oneshot(make(
            "POST",
            format!("/v3/{PROJECT}/volumes"),
            r#"{"volume": {"size": 1}}"#.into(),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let vol: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut vol = vol["volume"]["id"].as_str().unwrap().to_string();
    let new_volume = |app: axum::Router| async move {
        let resp = app
            .oneshot(make(
                "POST",
                format!("/v3/{PROJECT}/volumes"),
                r#"{"volume": {"size": 1}}"#.into(),
            ))
            .await
            .unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["volume"]["id"].as_str().unwrap().to_string()
    };

    let seed: u64 = std::env::var("EMBER_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let count: usize = std::env::var("EMBER_HOSTILE_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let mut rng = Rng(seed | 1);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..count {
        let method = rng.pick(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]);
        let root = rng.pick(&["/v3/", "/v2/", "/v2.1/", "/compute/v2.1/", "/v3/", "/v3/"]);
        let mut path;
        if rng.below(3) > 0 {
            // A real route, with the live volume's id where one goes.
            path = rng
                .pick(ROUTES)
                .replace("{p}", PROJECT)
                .replace("{id}", &vol);
        } else {
            path = root.to_string();
            if rng.below(5) > 0 {
                path.push_str(PROJECT);
            }
            for _ in 0..1 + rng.below(4) {
                path.push('/');
                let seg = match rng.below(4) {
                    0 => vol.clone(),
                    _ => rng.pick(SEGMENTS).to_string(),
                };
                path.push_str(&seg);
            }
        }
        if rng.below(3) == 0 {
            path.push_str(rng.pick(&[
                "?limit=-1",
                "?limit=99999999999999999999",
                "?marker=zzz",
                "?sort=name:sideways",
                "?all_tenants=1&project_id=x",
                "?metadata={'a'",
                "?offset=1e3",
                "?delete_info=%7B",
                "?with_count=maybe",
                "?%ZZ=1",
            ]));
        }
        let template = rng.pick(BODIES).replace("VOL", &vol).replace("SNAP", &vol);
        let body = mutate(&mut rng, &template);
        let mut req = Request::builder().method(method).uri(&path);
        req = req.header(
            "X-Auth-Token",
            match rng.below(6) {
                0 => "".to_string(),
                1 => format!("member:{PROJECT}:reader"),
                _ => format!("admin:{PROJECT}"),
            },
        );
        match rng.below(5) {
            0 => {
                req = req.header(
                    "OpenStack-API-Version",
                    rng.pick(&[
                        "volume 3.0",
                        "volume 3.71",
                        "volume 3.72",
                        "volume latest",
                        "volume 3.abc",
                        "compute 2.1",
                        "compute 2.200",
                    ]),
                )
            }
            1 => {
                req = req.header(
                    "X-OpenStack-Nova-API-Version",
                    rng.pick(&["2.1", "2.36", "2.75", "junk"]),
                )
            }
            _ => {}
        }
        req = req.header(
            "Content-Type",
            rng.pick(&[
                "application/json",
                "text/plain",
                "application/json; charset=latin1",
                "",
            ]),
        );
        let Ok(request) = req.body(Body::from(body)) else {
            continue;
        };
        let resp = app.clone().oneshot(request).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap();
        assert!(
            status.as_u16() < 500,
            "request {i}: {method} {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        *statuses.entry(status.as_u16()).or_insert(0usize) += 1;
        if status == StatusCode::NOT_FOUND && std::env::var_os("EMBER_HOSTILE_SHOW").is_some() {
            eprintln!("404: {method} {path} {}", String::from_utf8_lossy(&bytes));
        }
        // Keep a live volume to aim at.
        if method == "DELETE" && status == StatusCode::ACCEPTED && path.contains(&vol) {
            vol = new_volume(app.clone()).await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    eprintln!("statuses: {statuses:?}");
}
