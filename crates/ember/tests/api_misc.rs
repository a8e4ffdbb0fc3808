//! The rest of the core API surface: listing and pagination, metadata,
//! snapshot status updates, discovery endpoints, configuration and
//! graceful shutdown.

mod common;

use common::{PROJECT, Server};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn listing_filters_pagination_and_counts() {
    let s = Server::start();
    let (a, b) = (s.create_volume(1), s.create_volume(2));
    let mut snaps = vec![];
    for i in 0..5 {
        let vol = if i % 2 == 0 { &a } else { &b };
        let (st, body) = s.admin("POST", "/snapshots", Some(json!({"snapshot": {"volume_id": vol, "name": format!("s{i}"), "metadata": {"i": i.to_string()}}})));
        assert_eq!(st, 202, "{body}");
        let id = body["snapshot"]["id"].as_str().unwrap().to_string();
        s.wait_status("snapshots", &id, "available");
        snaps.push(id);
    }
    // Newest first, followed page by page through the next links.
    let mut seen = vec![];
    let mut url = s.v3("/snapshots/detail?limit=2");
    loop {
        let (st, body) = s.call("GET", &url, &format!("admin:{PROJECT}"), None, None);
        assert_eq!(st, 200, "{body}");
        seen.extend(
            body["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_string()),
        );
        match body["snapshots_links"][0]["href"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    let mut newest_first = snaps.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // Filters.
    let (_, body) = s.admin("GET", &format!("/snapshots?volume_id={a}"), None);
    assert_eq!(body["snapshots"].as_array().unwrap().len(), 3);
    let (_, body) = s.admin("GET", "/snapshots/detail?name=s3", None);
    assert_eq!(body["snapshots"][0]["id"], snaps[3].as_str());
    let (_, body) = s.admin(
        "GET",
        "/snapshots/detail?metadata=%7B%22i%22%3A%20%224%22%7D",
        None,
    );
    assert_eq!(body["snapshots"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["snapshots"][0]["id"], snaps[4].as_str());
    let (_, body) = s.admin("GET", "/snapshots/detail?status=error", None);
    assert_eq!(body["snapshots"], json!([]));
    let (_, body) = s.admin(
        "GET",
        "/snapshots/detail?sort=created_at:asc&limit=1&with_count=true",
        None,
    );
    assert_eq!(body["snapshots"][0]["id"], snaps[0].as_str());
    assert_eq!(body["count"], 5);
    let (_, body) = s.admin("GET", "/snapshots/detail?offset=4", None);
    assert_eq!(body["snapshots"].as_array().unwrap().len(), 1);
    // Volumes: summary list and detail.
    let (_, body) = s.admin("GET", "/volumes", None);
    let first = &body["volumes"][0];
    let mut keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "links", "name"]);
    let (_, body) = s.admin("GET", "/volumes/detail?sort=size:desc", None);
    assert_eq!(body["volumes"][0]["id"], b.as_str());
    // v2 lists the same snapshots.
    let (st, body) = s.call(
        "GET",
        &s.url(&format!("/v2/{PROJECT}/snapshots/detail")),
        &format!("admin:{PROJECT}"),
        None,
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(body["snapshots"].as_array().unwrap().len(), 5);
}

#[test]
fn volume_metadata_and_update() {
    let s = Server::start();
    let v = s.create_volume(1);
    let (st, body) = s.admin(
        "POST",
        &format!("/volumes/{v}/metadata"),
        Some(json!({"metadata": {"a": "1", "b": "2"}})),
    );
    assert_eq!((st, &body["metadata"]), (200, &json!({"a": "1", "b": "2"})));
    let (st, body) = s.admin(
        "PUT",
        &format!("/volumes/{v}/metadata/a"),
        Some(json!({"meta": {"a": "9"}})),
    );
    assert_eq!((st, &body), (200, &json!({"meta": {"a": "9"}})));
    let (st, body) = s.admin("GET", &format!("/volumes/{v}/metadata/a"), None);
    assert_eq!((st, &body), (200, &json!({"meta": {"a": "9"}})));
    let (st, _) = s.admin("DELETE", &format!("/volumes/{v}/metadata/b"), None);
    assert_eq!(st, 200);
    let (st, body) = s.admin("DELETE", &format!("/volumes/{v}/metadata/b"), None);
    assert_eq!(st, 404, "{body}");
    assert_eq!(
        body["itemNotFound"]["message"],
        format!("Volume {v} has no metadata with key b.")
    );
    let (st, body) = s.admin(
        "PUT",
        &format!("/volumes/{v}/metadata"),
        Some(json!({"metadata": {"c": "3"}})),
    );
    assert_eq!((st, &body["metadata"]), (200, &json!({"c": "3"})));
    let (st, body) = s.admin(
        "PUT",
        &format!("/volumes/{v}"),
        Some(json!({"volume": {"name": " renamed ", "description": "d"}})),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["volume"]["name"], "renamed");
    assert_eq!(body["volume"]["description"], "d");
    assert_eq!(body["volume"]["metadata"], json!({"c": "3"}));
}

#[test]
fn snapshot_status_updates_follow_cinder_transitions() {
    let s = Server::start();
    let v = s.create_volume(1);
    let snap = s.create_snapshot(&v);
    // available -> anything is not an allowed driver transition.
    let (st, body) = s.admin(
        "POST",
        &format!("/snapshots/{snap}/action"),
        Some(json!({"os-update_snapshot_status": {"status": "error"}})),
    );
    assert_eq!(st, 400, "{body}");
    // An admin may reset to error, then delete.
    let (st, _) = s.admin(
        "POST",
        &format!("/snapshots/{snap}/action"),
        Some(json!({"os-reset_status": {"status": "error"}})),
    );
    assert_eq!(st, 202);
    let (_, body) = s.admin("GET", &format!("/snapshots/{snap}"), None);
    assert_eq!(body["snapshot"]["status"], "error");
    let (st, _) = s.admin("DELETE", &format!("/snapshots/{snap}"), None);
    assert_eq!(st, 202);
    s.wait_gone("snapshots", &snap);
}

#[test]
fn discovery_types_zones_limits() {
    let s = Server::start();
    let (st, body) = s.call("GET", &s.url("/"), "", None, None);
    assert_eq!(st, 300);
    assert_eq!(body["versions"][0]["version"], "3.71");
    assert_eq!(body["versions"][1]["status"], "DEPRECATED");
    let (st, body) = s.admin("GET", "/types", None);
    assert_eq!(st, 200);
    assert_eq!(body["volume_types"][0]["name"], "__DEFAULT__");
    let (st, body) = s.admin("GET", "/os-availability-zone", None);
    assert_eq!(st, 200);
    assert_eq!(body["availabilityZoneInfo"][0]["zoneName"], "nova");
    s.create_volume(3);
    let (st, body) = s.admin("GET", "/limits", None);
    assert_eq!(st, 200);
    assert_eq!(body["limits"]["absolute"]["totalGigabytesUsed"], 3);
    assert_eq!(body["limits"]["absolute"]["maxTotalVolumes"], 10);
    let (st, body) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}/defaults"), None);
    assert_eq!(st, 200);
    assert_eq!(body["quota_set"]["gigabytes"], 1000);
}

#[test]
fn sigterm_shuts_down_gracefully_and_state_survives() {
    let mut s = Server::start();
    let v = s.create_volume(1);
    s.write(&v, 0, vec![9u8; 4096]);
    let t = Instant::now();
    s.stop();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "graceful shutdown took {:?}",
        t.elapsed()
    );
    assert!(s.log().contains("shutting down"), "{}", s.log());
    s.restart();
    assert_eq!(s.read("volumes", &v, 0, 4096), vec![9u8; 4096]);
}

#[test]
fn config_file_with_flags_overriding_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("ember.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:1\"\n",
            dir.path().join("from-file").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["serve", "--config"])
        .arg(&config)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--nbd-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = false;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/")).send() {
            ok = r.status().as_u16() == 300;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "the --listen flag should override the file");
    assert!(
        dir.path().join("from-file/ember.db").exists(),
        "data_dir should come from the file"
    );
}

/// The OpenAPI document is served whole (built on the first request, then
/// the same bytes every time) and describes the block storage and compute
/// routes.
#[test]
fn openapi_document_is_served_and_stable() {
    let s = Server::start();
    let (st, first) = s.call("GET", &s.url("/openapi.json"), "", None, None);
    assert_eq!(st, 200);
    assert!(first["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = first["paths"].as_object().unwrap();
    assert!(
        paths.contains_key("/v3/{project_id}/snapshots"),
        "{:?}",
        paths.keys().take(5).collect::<Vec<_>>()
    );
    assert!(
        paths
            .keys()
            .any(|p| p.contains("os-assisted-volume-snapshots"))
    );
    let (st, second) = s.call("GET", &s.url("/openapi.json"), "", None, None);
    assert_eq!(st, 200);
    assert_eq!(first, second);
}
