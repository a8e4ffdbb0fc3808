//! Nova's os-assisted-volume-snapshots (seed 003) over an attached volume:
//! the seed's request takes a snapshot while the NBD client stays
//! connected, the bytes prove the switch, and file names that are not
//! plain names of the volume's own files are refused, touching nothing.

mod common;

use common::{PROJECT, Server, attach};
use serde_json::{Value, json};
use std::process::Command;

const SEED_SNAPSHOT: &str = "421752a6-acf6-4b2d-bc7a-119f9148cd8c";

fn nova(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
    mv: Option<&str>,
) -> (u16, Value) {
    let url = s.url(&format!("/v2.1/{PROJECT}{path}"));
    let (status, _, body) = s.compute(method, &url, token, mv, body.map(str::to_string));
    (status, body)
}

fn admin() -> String {
    format!("admin:{PROJECT}")
}

fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", uri]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && !text.contains("failed"), "{text}");
    text
}

fn request(volume: &str, snapshot: &str, new_file: &str) -> String {
    json!({"snapshot": {"volume_id": volume, "create_info": {"snapshot_id": snapshot, "type": "qcow2", "new_file": new_file}}}).to_string()
}

fn snapshot_count(s: &Server) -> usize {
    let (_, body) = s.admin("GET", "/snapshots?all_tenants=1", None);
    body["snapshots"].as_array().unwrap().len()
}

#[test]
fn seed_003_assisted_snapshots_switch_and_merge_an_attached_volume() {
    let s = Server::start();
    let vol = s.create_volume(1);
    // Not attached yet: Nova has no block device mapping for it.
    let (st, body) = nova(
        &s,
        "POST",
        "/os-assisted-volume-snapshots",
        &admin(),
        Some(&request(&vol, SEED_SNAPSHOT, "new_file_name")),
        None,
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        body["badRequest"]["message"],
        format!("No volume Block Device Mapping with id {vol}.")
    );

    let (_, uri) = attach(&s, &vol, "rw");
    qemu_io(&uri, &["write -P 0xa1 0 1M"]);

    // Only admins and services may ask.
    let (st, body) = nova(
        &s,
        "POST",
        "/os-assisted-volume-snapshots",
        &format!("member:{PROJECT}"),
        Some(&request(&vol, SEED_SNAPSHOT, "new_file_name")),
        None,
    );
    assert_eq!(st, 403, "{body}");
    assert_eq!(
        body["forbidden"]["message"],
        "Policy doesn't allow os_compute_api:os-assisted-volume-snapshots:create to be performed."
    );

    // The seed's request, verbatim but for the volume id.
    let seed = format!(
        r#"{{
        "snapshot": {{
            "volume_id": "{vol}",
            "create_info": {{
                "snapshot_id": "421752a6-acf6-4b2d-bc7a-119f9148cd8c",
                "type": "qcow2",
                "new_file": "new_file_name"
            }}
        }}
    }}"#
    );
    let (st, body) = nova(
        &s,
        "POST",
        "/os-assisted-volume-snapshots",
        &admin(),
        Some(&seed),
        None,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body, json!({"snapshot": {"id": null, "volumeId": vol}}));
    s.wait_status("snapshots", SEED_SNAPSHOT, "available");
    // A retry is answered the same and takes no second snapshot.
    let before = snapshot_count(&s);
    let (st, _) = nova(
        &s,
        "POST",
        "/os-assisted-volume-snapshots",
        &admin(),
        Some(&seed),
        Some("2.90"),
    );
    assert_eq!(st, 200);
    assert_eq!(snapshot_count(&s), before);

    // The client never disconnected; its later writes miss the snapshot.
    qemu_io(&uri, &["write -P 0xb2 0 64k", "read -P 0xa1 64k 64k"]);
    assert!(
        s.read("snapshots", SEED_SNAPSHOT, 0, 1 << 20)
            .iter()
            .all(|&b| b == 0xa1)
    );
    assert!(s.read("volumes", &vol, 0, 65536).iter().all(|&b| b == 0xb2));

    // create_info.id comes back as the response's id; an Ember image name
    // (`<uuid>.qcow2`) becomes the new overlay's file.
    let overlay = uuid::Uuid::new_v4();
    let second = uuid::Uuid::new_v4().to_string();
    let body_with_id = json!({"snapshot": {"volume_id": vol, "create_info": {"snapshot_id": second, "type": "qcow2", "new_file": format!("{overlay}.qcow2"), "id": "abc"}}}).to_string();
    let (st, body) = nova(
        &s,
        "POST",
        "/os-assisted-volume-snapshots",
        &admin(),
        Some(&body_with_id),
        None,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["snapshot"]["id"], "abc");
    s.wait_status("snapshots", &second, "available");
    assert!(s.images_dir().join(format!("{overlay}.qcow2")).exists());

    // Hostile names are refused and change nothing.
    let files_before_other = common::image_files(&s.images_dir());
    let other = s.create_volume(1);
    let other_file = common::image_files(&s.images_dir())
        .into_iter()
        .find(|f| !files_before_other.contains(f))
        .expect("the other volume's image file");
    std::os::unix::fs::symlink("/etc/passwd", s.images_dir().join("evil.qcow2")).unwrap();
    let files_before = common::image_files(&s.images_dir());
    let count_before = snapshot_count(&s);
    for name in [
        "../escape",
        "/etc/passwd",
        "a/b",
        "..",
        ".",
        "evil.qcow2",
        "x\u{0}y",
        other_file.as_str(),
    ] {
        let fresh = uuid::Uuid::new_v4().to_string();
        let (st, body) = nova(
            &s,
            "POST",
            "/os-assisted-volume-snapshots",
            &admin(),
            Some(&request(&vol, &fresh, name)),
            None,
        );
        assert_eq!(st, 400, "{name:?}: {body}");
        assert_eq!(snapshot_count(&s), count_before, "{name:?}");
    }
    let (_, v_other) = s.admin("GET", &format!("/volumes/{other}"), None);
    assert_eq!(v_other["volume"]["status"], "available");
    let mine = {
        let (_, snaps) = s.admin("GET", &format!("/snapshots?volume_id={vol}"), None);
        snaps["snapshots"].as_array().unwrap().len()
    };
    assert_eq!(mine, 2);
    assert_eq!(common::image_files(&s.images_dir()), files_before);
    // Bad shapes.
    for bad in [
        json!({"snapshot": {"volume_id": vol, "create_info": {"snapshot_id": SEED_SNAPSHOT, "type": "raw", "new_file": "n"}}}),
        json!({"snapshot": {"volume_id": vol, "create_info": {"type": "qcow2", "new_file": "n"}}}),
        json!({"snapshot": {"volume_id": vol, "create_info": {"snapshot_id": SEED_SNAPSHOT, "type": "qcow2", "new_file": "n"}, "extra": 1}}),
        json!({"snapshot": {"volume_id": "", "create_info": {"snapshot_id": SEED_SNAPSHOT, "type": "qcow2", "new_file": "n"}}}),
    ] {
        let (st, body) = nova(
            &s,
            "POST",
            "/os-assisted-volume-snapshots",
            &admin(),
            Some(&bad.to_string()),
            None,
        );
        assert_eq!(st, 400, "{bad}: {body}");
    }

    // Delete: delete_info is required and must name the volume; the
    // snapshot's layer is merged away, the volume keeps every byte.
    let (st, body) = nova(
        &s,
        "DELETE",
        &format!("/os-assisted-volume-snapshots/{SEED_SNAPSHOT}"),
        &admin(),
        None,
        None,
    );
    assert_eq!(
        (st, body["badRequest"]["message"].as_str()),
        (400, Some("'delete_info'"))
    );
    // DELETE with this delete_info (and extra query, microversion).
    let delete = |info: Value, extra: &str, mv: Option<&str>| {
        let path = format!(
            "/os-assisted-volume-snapshots/{SEED_SNAPSHOT}?delete_info={}{extra}",
            urlencode(&info.to_string())
        );
        nova(&s, "DELETE", &path, &admin(), None, mv)
    };
    let (st, body) = delete(json!({"type": "qcow2"}), "", None);
    assert_eq!(
        (st, body["badRequest"]["message"].as_str()),
        (400, Some("'volume_id'"))
    );
    let (st, _) = delete(json!({"volume_id": vol}), "&x=1", Some("2.75"));
    assert_eq!(st, 400);
    let merging = |file: Value| json!({"volume_id": vol, "type": "qcow2", "file_to_merge": file, "merge_target_file": null});
    let (st, body) = delete(merging(json!("../../x")), "", None);
    assert_eq!(st, 400, "{body}");
    let (st, body) = delete(merging(json!(other_file)), "", None);
    assert_eq!(st, 400, "{body}");
    s.wait_status("snapshots", SEED_SNAPSHOT, "available");
    let (st, body) = delete(merging(Value::Null), "", None);
    assert_eq!(st, 204, "{body}");
    s.wait_gone("snapshots", SEED_SNAPSHOT);
    qemu_io(&uri, &["read -P 0xb2 0 64k", "read -P 0xa1 64k 960k"]);
    assert!(
        s.read("snapshots", &second, 0, 65536)
            .iter()
            .all(|&b| b == 0xb2)
    );
    std::fs::remove_file(s.images_dir().join("evil.qcow2")).unwrap();
    assert!(common::check_all_images(&s.images_dir()) >= 3);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
