//! Manage and unmanage on every backend: an unmanaged snapshot or volume
//! leaves its record and quota but keeps its bytes on the backend, listed
//! as manageable (`snapshot-<id>`, `volume-<id>`), and managing it back
//! gives a new record reading the same bytes. On RBD a foreign image (made
//! with Ceph's own `rbd import`) is adopted by its name.

mod common;
use common::*;
use serde_json::{Value, json};

fn quota_in_use(s: &Server, resource: &str) -> i64 {
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    q["quota_set"][resource]["in_use"].as_i64().unwrap()
}

fn manageable(s: &Server, kind: &str, host: &str) -> Vec<Value> {
    let (st, body) = s.admin(
        "GET",
        &format!("/manageable_{kind}/detail?host={host}"),
        None,
    );
    assert_eq!(st, 200, "{body}");
    body[format!("manageable-{kind}")]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn unmanaged_data_stays_and_manages_back_with_its_bytes() {
    for backend in test_backends() {
        eprintln!("backend {backend:?}");
        unmanage_and_manage_on(&backend);
    }
}

fn unmanage_and_manage_on(backend: &TestBackend) {
    let mut s = Server::start_on(backend);
    let vol = s.create_volume(1);
    let (_, v) = s.admin("GET", &format!("/volumes/{vol}"), None);
    let host = v["volume"]["os-vol-host-attr:host"]
        .as_str()
        .unwrap()
        .to_string();
    s.write(&vol, 0, vec![1; 4096]);
    let snap = s.create_snapshot(&vol);
    s.write(&vol, 0, vec![2; 4096]);

    // A snapshot: out of Ember's records, still on the backend.
    let (st, body) = s.admin(
        "POST",
        &format!("/snapshots/{snap}/action"),
        Some(json!({"os-unmanage": {}})),
    );
    assert_eq!(st, 202, "{body}");
    assert_eq!(s.admin("GET", &format!("/snapshots/{snap}"), None).0, 404);
    assert_eq!(quota_in_use(&s, "snapshots"), 0);
    let listed = manageable(&s, "snapshots", &host);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["reference"]["source-name"],
        format!("snapshot-{snap}")
    );
    assert_eq!(
        listed[0]["source_reference"]["source-name"],
        format!("volume-{vol}")
    );
    assert_eq!(listed[0]["size"], 1);
    // Not before 3.8 under its v3 name; members may not.
    let (st, _) = s.call(
        "GET",
        &s.v3("/manageable_snapshots"),
        &format!("admin:{PROJECT}"),
        Some("3.7"),
        None,
    );
    assert_eq!(st, 404);
    let (st, _) = s.call(
        "GET",
        &s.v3(&format!("/manageable_snapshots?host={host}")),
        &format!("member:{PROJECT}"),
        Some("3.8"),
        None,
    );
    assert_eq!(st, 403);

    let (st, body) = s.admin(
        "POST",
        "/os-snapshot-manage",
        Some(json!({"snapshot": {"volume_id": vol, "ref": {"source-name": format!("snapshot-{snap}")}, "name": "back"}})),
    );
    assert_eq!(st, 202, "{body}");
    let managed = body["snapshot"]["id"].as_str().unwrap().to_string();
    let m = s.wait_status("snapshots", &managed, "available");
    assert_eq!(m["name"], "back");
    assert_eq!(m["size"], 1);
    assert_eq!(s.read("snapshots", &managed, 0, 4096), vec![1; 4096]);
    assert_eq!(quota_in_use(&s, "snapshots"), 1);
    assert!(manageable(&s, "snapshots", &host).is_empty());
    // Nothing by that name any more; a bad reference is a 400.
    for r in [
        json!({"source-name": format!("snapshot-{snap}")}),
        json!({"x": 1}),
        json!(7),
    ] {
        let (st, body) = s.admin(
            "POST",
            "/os-snapshot-manage",
            Some(json!({"snapshot": {"volume_id": vol, "ref": r}})),
        );
        assert_eq!(st, 400, "{body}");
    }

    // A volume: unmanaged only without snapshots.
    let (st, _) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-unmanage": {}})),
    );
    assert_eq!(st, 400);
    assert_eq!(
        s.admin("DELETE", &format!("/snapshots/{managed}"), None).0,
        202
    );
    s.wait_gone("snapshots", &managed);
    let (st, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-unmanage": {}})),
    );
    assert_eq!(st, 202, "{body}");
    assert_eq!(s.admin("GET", &format!("/volumes/{vol}"), None).0, 404);
    assert_eq!(quota_in_use(&s, "volumes"), 0);
    let listed = manageable(&s, "volumes", &host);
    assert!(
        listed
            .iter()
            .any(|e| e["reference"]["source-name"] == format!("volume-{vol}")),
        "{listed:?}"
    );
    let (st, body) = s.admin(
        "POST",
        "/os-volume-manage",
        Some(json!({"volume": {"host": host, "ref": {"source-name": format!("volume-{vol}")}, "name": "again"}})),
    );
    assert_eq!(st, 202, "{body}");
    let again = body["volume"]["id"].as_str().unwrap().to_string();
    let a = s.wait_status("volumes", &again, "available");
    assert_eq!(a["name"], "again");
    assert_eq!(a["size"], 1);
    assert_eq!(a["os-vol-host-attr:host"], host.as_str());
    assert_eq!(s.read("volumes", &again, 0, 4096), vec![2; 4096]);
    assert_eq!(quota_in_use(&s, "volumes"), 1);
    // Unknown hosts and references, and members: refused.
    let (st, _) = s.admin(
        "POST",
        "/os-volume-manage",
        Some(json!({"volume": {"host": "nowhere@x#y", "ref": {"source-name": "volume-x"}}})),
    );
    assert_eq!(st, 400);
    let (st, _) = s.admin(
        "POST",
        "/os-volume-manage",
        Some(json!({"volume": {"host": host, "ref": {"source-name": "volume-missing"}}})),
    );
    assert_eq!(st, 400);
    let (st, _) = s.call(
        "POST",
        &s.v3("/os-volume-manage"),
        &format!("member:{PROJECT}"),
        Some("3.8"),
        Some(json!({"volume": {"host": host, "ref": {"source-name": "x"}}})),
    );
    assert_eq!(st, 403);

    // The managed volume lives on as any other: a snapshot, a restart.
    let snap2 = s.create_snapshot(&again);
    s.restart();
    assert_eq!(s.read("snapshots", &snap2, 0, 4096), vec![2; 4096]);
    let (st, _) = s.admin("DELETE", &format!("/volumes/{again}?cascade=true"), None);
    assert_eq!(st, 202);
    s.wait_gone("volumes", &again);
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.stop();
    assert_eq!(s.audit(), Vec::<String>::new());
}

/// RBD: an image made outside Ember (`rbd import`) is listed by its name
/// and adopted: renamed to Ember's name, grown to whole GiB, its bytes
/// the new volume's.
#[test]
fn a_foreign_rbd_image_is_adopted_with_its_bytes() {
    let Some(backend) = test_backends()
        .into_iter()
        .find(|b| matches!(b, TestBackend::Rbd { .. }))
    else {
        eprintln!("no test Ceph cluster configured: skipped");
        return;
    };
    let TestBackend::Rbd {
        conf,
        pool,
        namespace,
    } = &backend
    else {
        unreachable!()
    };
    let s = Server::start_on(&backend);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    let mut bytes = vec![0u8; 3 << 20];
    bytes[..4096].fill(0x3c);
    bytes[(2 << 20)..(2 << 20) + 4096].fill(0x7e);
    std::fs::write(&file, &bytes).unwrap();
    let out = std::process::Command::new("rbd")
        .arg("--conf")
        .arg(conf)
        .args(["import", "--no-progress"])
        .arg(&file)
        .arg(format!("{pool}/{namespace}/legacy-disk"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = manageable(&s, "volumes", "ember@rbd#rbd");
    let entry = listed
        .iter()
        .find(|e| e["reference"]["source-name"] == "legacy-disk")
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(entry["size"], 1);
    assert_eq!(entry["safe_to_manage"], true);
    let (st, body) = s.admin(
        "POST",
        "/os-volume-manage",
        Some(json!({"volume": {"host": "ember@rbd", "ref": {"source-name": "legacy-disk"}}})),
    );
    assert_eq!(st, 202, "{body}");
    let vol = body["volume"]["id"].as_str().unwrap().to_string();
    let v = s.wait_status("volumes", &vol, "available");
    assert_eq!(v["size"], 1);
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![0x3c; 4096]);
    assert_eq!(s.read("volumes", &vol, 2 << 20, 4096), vec![0x7e; 4096]);
    assert_eq!(
        s.read("volumes", &vol, (1 << 30) - 4096, 4096),
        vec![0; 4096]
    );
    assert!(
        !manageable(&s, "volumes", "ember@rbd#rbd")
            .iter()
            .any(|e| e["reference"]["source-name"] == "legacy-disk")
    );
}
