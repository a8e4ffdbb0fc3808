//! Differences a real client saw between Ember and Cinder 29, each checked
//! the way that client sees it (the Cinder API over HTTP): microversioned
//! request schemas, revert after extend, the legacy reserve, bootable and
//! read-only flags, per-operation response keys, routing of trailing
//! slashes, retype and multiattach, shared targets.

mod common;

use common::nbd_client::NbdClient;
use common::{PROJECT, Server};
use serde_json::json;

fn member() -> String {
    format!("member:{PROJECT}")
}

#[test]
fn volume_create_ignores_unknown_keys_below_3_53_only() {
    let s = Server::start();
    for (mv, want) in [("3.0", 202), ("3.52", 202), ("3.53", 400), ("3.71", 400)] {
        let (code, body) = s.call(
            "POST",
            &s.v3("/volumes"),
            &member(),
            Some(mv),
            Some(json!({"volume": {"'snapshot_id": "x", "size": 1, "imageRef": null}})),
        );
        assert_eq!(code, want, "{mv}: {body}");
        if want == 400 {
            let msg = body["badRequest"]["message"].as_str().unwrap();
            assert!(
                msg.contains("Additional properties are not allowed"),
                "{msg}"
            );
        }
    }
    // From 3.53 an update must change something; below, an empty one is fine.
    let volume = s.create_volume(1);
    for (mv, want) in [("3.52", 200), ("3.53", 400)] {
        let (code, body) = s.call(
            "PUT",
            &s.v3(&format!("/volumes/{volume}")),
            &member(),
            Some(mv),
            Some(json!({"volume": {}})),
        );
        assert_eq!(code, want, "{mv}: {body}");
    }
    // An update answers the plain view: no os-vol-* attributes.
    let (code, body) = s.call(
        "PUT",
        &s.v3(&format!("/volumes/{volume}")),
        &format!("admin:{PROJECT}"),
        Some("3.71"),
        Some(json!({"volume": {"name": "renamed"}})),
    );
    assert_eq!(code, 200, "{body}");
    let keys: Vec<&String> = body["volume"].as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| !k.starts_with("os-vol-")),
        "update answered {keys:?}"
    );
    let (_, shown) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert!(shown["volume"]["os-vol-tenant-attr:tenant_id"].is_string());
    // Per-attachment exports: nothing shared.
    assert_eq!(shown["volume"]["shared_targets"], false);
    // A trailing slash is not the list.
    let (code, _) = s.call("GET", &s.v3("/volumes/"), &member(), Some("3.71"), None);
    assert_eq!(code, 404);
    let (code, _) = s.call("GET", &s.v3("/snapshots/"), &member(), Some("3.0"), None);
    assert_eq!(code, 404);
}

#[test]
fn revert_needs_the_snapshot_size_and_leaves_the_snapshot_usable() {
    let s = Server::start();
    let volume = s.create_volume(1);
    s.write(&volume, 0, vec![1; 4096]);
    let snapshot = s.create_snapshot(&volume);
    let (code, body) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{volume}/action")),
        &member(),
        Some("3.40"),
        Some(json!({"os-extend": {"new_size": 2}})),
    );
    assert_eq!(code, 202, "{body}");
    s.wait_status("volumes", &volume, "available");
    let (code, body) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{volume}/action")),
        &member(),
        Some("3.40"),
        Some(json!({"revert": {"snapshot_id": snapshot}})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("The volume size must be equal to the snapshot size."),
        "{body}"
    );
    let v = s.wait_status("volumes", &volume, "available");
    assert_eq!(v["size"], 2);
    s.wait_status("snapshots", &snapshot, "available");
    let (code, body) = s.admin("DELETE", &format!("/snapshots/{snapshot}"), None);
    assert_eq!(code, 202, "{body}");
    s.wait_gone("snapshots", &snapshot);
}

#[test]
fn bootable_and_read_only_flags_change_the_volume_and_its_exports() {
    let s = Server::start();
    let volume = s.create_volume(1);
    let action = |mv: &str, body: serde_json::Value| {
        s.call(
            "POST",
            &s.v3(&format!("/volumes/{volume}/action")),
            &member(),
            Some(mv),
            Some(body),
        )
    };
    for mv in ["3.0", "3.71"] {
        let (code, body) = action(mv, json!({"os-set_bootable": {"bootable": true}}));
        assert_eq!(code, 200, "{mv}: {body}");
        let (_, v) = s.admin("GET", &format!("/volumes/{volume}"), None);
        assert_eq!(v["volume"]["bootable"], "true");
        let (code, _) = action(mv, json!({"os-set_bootable": {"bootable": "false"}}));
        assert_eq!(code, 200);
        let (_, v) = s.admin("GET", &format!("/volumes/{volume}"), None);
        assert_eq!(v["volume"]["bootable"], "false");
    }
    let (code, body) = action("3.0", json!({"os-set_bootable": {"bootable": "maybe"}}));
    assert_eq!(code, 400, "{body}");
    let (code, body) = action("3.0", json!({"os-set_bootable": {}}));
    assert_eq!(code, 400, "{body}");

    let (code, body) = action(
        "3.71",
        json!({"os-update_readonly_flag": {"readonly": true}}),
    );
    assert_eq!(code, 202, "{body}");
    // A read-only volume's exports are read-only, whatever mode is asked.
    let (attachment, uri) = common::attach(&s, &volume, "rw");
    let (_, a) = s.call(
        "GET",
        &s.v3(&format!("/attachments/{attachment}")),
        &member(),
        Some("3.54"),
        None,
    );
    assert_eq!(a["attachment"]["connection_info"]["access_mode"], "ro");
    let mut nbd = NbdClient::connect(&uri).expect("export");
    assert!(nbd.read_only());
    assert_eq!(nbd.write(0, &[5u8; 4096], true), Err(1));
    nbd.disconnect();
    let (_, v) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert_eq!(v["volume"]["metadata"]["readonly"], "True", "{v}");
    // Only an available volume changes its flag.
    let (code, body) = action(
        "3.71",
        json!({"os-update_readonly_flag": {"readonly": false}}),
    );
    assert_eq!(code, 400, "{body}");
}

#[test]
fn retype_to_a_multiattach_type_makes_the_volume_multiattach() {
    let s = Server::start();
    let (code, body) = s.admin(
        "POST",
        "/types",
        Some(
            json!({"volume_type": {"name": "shared", "extra_specs": {"multiattach": "<is> True"}}}),
        ),
    );
    assert_eq!(code, 200, "{body}");
    let volume = s.create_volume(1);
    let (_, v) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert_eq!(v["volume"]["multiattach"], false);
    let (code, body) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{volume}/action")),
        &member(),
        Some("3.71"),
        Some(json!({"os-retype": {"new_type": "shared"}})),
    );
    assert_eq!(code, 202, "{body}");
    let (_, v) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert_eq!(v["volume"]["multiattach"], true, "{v}");
    assert_eq!(v["volume"]["volume_type"], "shared");
    // And back.
    let (code, _) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{volume}/action")),
        &member(),
        Some("3.71"),
        Some(json!({"os-retype": {"new_type": "__DEFAULT__"}})),
    );
    assert_eq!(code, 202);
    let (_, v) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert_eq!(v["volume"]["multiattach"], false);
}

/// The reserved `autobk_snapshot_` prefix is a service rule: the Cinder
/// and Nova APIs refuse it as EVS does.
#[test]
fn the_reserved_snapshot_prefix_holds_in_every_dialect() {
    let s = Server::start();
    let volume = s.create_volume(1);
    let (code, body) = s.call(
        "POST",
        &s.v3("/snapshots"),
        &member(),
        Some("3.71"),
        Some(json!({"snapshot": {"volume_id": volume, "name": "autobk_snapshot_x"}})),
    );
    assert_eq!(code, 400, "{body}");
    let (code, _, body) = s.compute(
        "POST",
        &s.url(&format!("/v2.1/{PROJECT}/os-snapshots")),
        &member(),
        None,
        Some(
            json!({"snapshot": {"volume_id": volume, "display_name": "autobk_snapshot_y"}})
                .to_string(),
        ),
    );
    assert_eq!(code, 400, "{body}");
    let snapshot = s.create_snapshot(&volume);
    let (code, body) = s.call(
        "PUT",
        &s.v3(&format!("/snapshots/{snapshot}")),
        &member(),
        Some("3.71"),
        Some(json!({"snapshot": {"name": "autobk_snapshot_z"}})),
    );
    assert_eq!(code, 400, "{body}");
}
