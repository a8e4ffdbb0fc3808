//! Generic volume groups and group snapshots: a group snapshot holds every
//! member's bytes of before it; a group made from it holds them too; a
//! group with volumes goes only with `delete-volumes`.

mod common;

use common::{PROJECT, Server};
use serde_json::{Value, json};

fn call(s: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    s.call(
        method,
        &s.v3(path),
        &format!("admin:{PROJECT}"),
        Some("3.20"),
        body,
    )
}

fn wait_group(s: &Server, path: &str, key: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, body) = call(s, "GET", path, None);
        if body[key]["status"] == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never became {want}: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_group_snapshot_keeps_every_members_bytes() {
    let s = Server::start();
    let (_, t) = call(
        &s,
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "grouped"}})),
    );
    let vtype = t["volume_type"]["id"].as_str().unwrap().to_string();
    let (_, gt) = call(
        &s,
        "POST",
        "/group_types",
        Some(json!({"group_type": {"name": "gt"}})),
    );
    let gtype = gt["group_type"]["id"].as_str().unwrap().to_string();
    let (st, g) = call(
        &s,
        "POST",
        "/groups",
        Some(json!({"group": {"name": "g1", "group_type": gtype, "volume_types": [vtype]}})),
    );
    assert_eq!(st, 202, "{g}");
    let group = g["group"]["id"].as_str().unwrap().to_string();

    let mut vols = vec![];
    for byte in [0x11u8, 0x22] {
        let (st, v) = call(
            &s,
            "POST",
            "/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": vtype, "group_id": group}})),
        );
        assert_eq!(st, 202, "{v}");
        assert_eq!(v["volume"]["group_id"], group.as_str());
        let id = v["volume"]["id"].as_str().unwrap().to_string();
        s.wait_status("volumes", &id, "available");
        s.write(&id, 0, vec![byte; 4096]);
        vols.push((id, byte));
    }
    // A volume of another type cannot join.
    let (st, _) = call(
        &s,
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "group_id": group}})),
    );
    assert_eq!(st, 400);

    let (st, gs) = call(
        &s,
        "POST",
        "/group_snapshots",
        Some(json!({"group_snapshot": {"group_id": group, "name": "gs1"}})),
    );
    assert_eq!(st, 202, "{gs}");
    let gsid = gs["group_snapshot"]["id"].as_str().unwrap().to_string();
    wait_group(
        &s,
        &format!("/group_snapshots/{gsid}"),
        "group_snapshot",
        "available",
    );
    for (id, _) in &vols {
        s.write(id, 0, vec![0xff; 4096]);
    }
    let (_, snaps) = call(&s, "GET", "/snapshots/detail", None);
    let members: Vec<&Value> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["group_snapshot_id"] == gsid.as_str())
        .collect();
    assert_eq!(members.len(), 2);
    for m in members {
        let byte = vols
            .iter()
            .find(|(id, _)| m["volume_id"] == id.as_str())
            .unwrap()
            .1;
        assert_eq!(
            s.read("snapshots", m["id"].as_str().unwrap(), 0, 4096),
            vec![byte; 4096]
        );
    }

    // A group from the group snapshot: new volumes with the old bytes.
    let (st, g2) = call(
        &s,
        "POST",
        "/groups/action",
        Some(json!({"create-from-src": {"group_snapshot_id": gsid, "name": "g2"}})),
    );
    assert_eq!(st, 202, "{g2}");
    let group2 = g2["group"]["id"].as_str().unwrap().to_string();
    wait_group(&s, &format!("/groups/{group2}"), "group", "available");
    let (_, all) = call(&s, "GET", "/volumes/detail", None);
    let copies: Vec<&Value> = all["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["group_id"] == group2.as_str())
        .collect();
    assert_eq!(copies.len(), 2);
    let mut seen: Vec<u8> = copies
        .iter()
        .map(|v| s.read("volumes", v["id"].as_str().unwrap(), 0, 4096)[0])
        .collect();
    seen.sort();
    assert_eq!(seen, vec![0x11, 0x22]);

    // A group with a group snapshot, or with volumes unless asked, stays.
    let (st, _) = call(
        &s,
        "POST",
        &format!("/groups/{group}/action"),
        Some(json!({"delete": {"delete-volumes": true}})),
    );
    assert_eq!(st, 400);
    // A member that is busy (here: reset to `creating`) makes the delete
    // refuse up front, changing nothing: no group snapshot left `deleting`.
    let (_, snaps) = call(&s, "GET", "/snapshots/detail", None);
    let member = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["group_snapshot_id"] == gsid.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reset = |status: &str| {
        let (st, _) = call(
            &s,
            "POST",
            &format!("/snapshots/{member}/action"),
            Some(json!({"os-reset_status": {"status": status}})),
        );
        assert_eq!(st, 202);
    };
    reset("creating");
    let (st, body) = call(&s, "DELETE", &format!("/group_snapshots/{gsid}"), None);
    assert_eq!(st, 400, "{body}");
    let (_, shown) = call(&s, "GET", &format!("/group_snapshots/{gsid}"), None);
    assert_eq!(shown["group_snapshot"]["status"], "creating", "{shown}");
    let (_, m) = call(&s, "GET", &format!("/snapshots/{member}"), None);
    assert_eq!(m["snapshot"]["status"], "creating");
    reset("available");
    assert_eq!(
        call(&s, "DELETE", &format!("/group_snapshots/{gsid}"), None).0,
        202
    );
    // The delete is asynchronous (its member snapshots merge away); a
    // client waits for it to finish, as with Cinder.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while call(&s, "GET", &format!("/group_snapshots/{gsid}"), None).0 != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "group snapshot never went"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (st, _) = call(
        &s,
        "POST",
        &format!("/groups/{group2}/action"),
        Some(json!({"delete": {"delete-volumes": false}})),
    );
    assert_eq!(st, 400);
    for g in [&group2, &group] {
        let (st, body) = call(
            &s,
            "POST",
            &format!("/groups/{g}/action"),
            Some(json!({"delete": {"delete-volumes": true}})),
        );
        assert_eq!(st, 202, "{body}");
        assert_eq!(call(&s, "GET", &format!("/groups/{g}"), None).0, 404);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, all) = call(&s, "GET", "/volumes", None);
        if all["volumes"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{all}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    assert_eq!(
        (
            q["quota_set"]["volumes"]["in_use"].as_i64(),
            q["quota_set"]["snapshots"]["in_use"].as_i64()
        ),
        (Some(0), Some(0)),
        "{q}"
    );
}
