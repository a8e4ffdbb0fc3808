//! Volume transfers: the volume, its snapshots, their bytes and their quota
//! usage move to the accepting project in one step; a wrong key moves
//! nothing.

mod common;

use common::{OTHER_PROJECT, PROJECT, Server};
use serde_json::json;

#[test]
fn a_transfer_moves_volume_snapshots_bytes_and_quota() {
    let s = Server::start();
    let vol = s.create_volume(1);
    s.write(&vol, 0, vec![0xab; 4096]);
    let snap = s.create_snapshot(&vol);
    s.write(&vol, 0, vec![0xcd; 4096]);

    let (st, body) = s.admin(
        "POST",
        "/os-volume-transfer",
        Some(json!({"transfer": {"volume_id": vol, "name": "gift"}})),
    );
    assert_eq!(st, 202, "{body}");
    let id = body["transfer"]["id"].as_str().unwrap().to_string();
    let key = body["transfer"]["auth_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 16);
    assert_eq!(
        s.wait_status("volumes", &vol, "awaiting-transfer")["status"],
        "awaiting-transfer"
    );
    // A volume on offer cannot be snapshotted or deleted.
    let (st, _) = s.admin(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": vol}})),
    );
    assert_eq!(st, 400);

    let bob = format!("bob:{OTHER_PROJECT}");
    let other = |path: &str| s.url(&format!("/v3/{OTHER_PROJECT}{path}"));
    let (st, body) = s.call(
        "POST",
        &other(&format!("/os-volume-transfer/{id}/accept")),
        &bob,
        None,
        Some(json!({"accept": {"auth_key": "0000000000000000"}})),
    );
    assert_eq!(st, 400, "{body}");
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid auth key"),
        "{body}"
    );
    let (st, _) = s.call("GET", &other(&format!("/volumes/{vol}")), &bob, None, None);
    assert_eq!(st, 404, "nothing moved yet");

    let (st, body) = s.call(
        "POST",
        &other(&format!("/os-volume-transfer/{id}/accept")),
        &bob,
        None,
        Some(json!({"accept": {"auth_key": key}})),
    );
    assert_eq!(st, 202, "{body}");
    let (st, body) = s.call(
        "GET",
        &other(&format!("/volumes/{vol}")),
        &bob,
        Some("3.71"),
        None,
    );
    assert_eq!(
        (st, body["volume"]["status"].as_str()),
        (200, Some("available")),
        "{body}"
    );
    assert_eq!(body["volume"]["user_id"], "bob");
    assert_eq!(
        body["volume"]["os-vol-tenant-attr:tenant_id"],
        OTHER_PROJECT
    );

    // The bytes came along: the volume's current ones and the snapshot's.
    let read = |kind: &str, id: &str| {
        let resp = reqwest::blocking::Client::new()
            .get(other(&format!("/{kind}/{id}/data?offset=0&length=4096")))
            .header("X-Auth-Token", &bob)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.bytes().unwrap().to_vec()
    };
    assert_eq!(read("volumes", &vol), vec![0xcd; 4096]);
    assert_eq!(read("snapshots", &snap), vec![0xab; 4096]);

    // The old owner sees nothing; the offer is gone.
    let alice = format!("alice:{PROJECT}");
    assert_eq!(
        s.call("GET", &s.v3(&format!("/volumes/{vol}")), &alice, None, None)
            .0,
        404
    );
    assert_eq!(
        s.call(
            "GET",
            &s.v3(&format!("/snapshots/{snap}")),
            &alice,
            None,
            None
        )
        .0,
        404
    );
    assert_eq!(
        s.admin("GET", &format!("/os-volume-transfer/{id}"), None).0,
        404
    );

    // Quota usage moved with them.
    for (project, volumes, snapshots, gigabytes) in [(PROJECT, 0, 0, 0), (OTHER_PROJECT, 1, 1, 2)] {
        let (_, q) = s.admin("GET", &format!("/os-quota-sets/{project}?usage=true"), None);
        assert_eq!(
            q["quota_set"]["volumes"]["in_use"], volumes,
            "{project}: {q}"
        );
        assert_eq!(
            q["quota_set"]["snapshots"]["in_use"], snapshots,
            "{project}: {q}"
        );
        assert_eq!(
            q["quota_set"]["gigabytes"]["in_use"], gigabytes,
            "{project}: {q}"
        );
    }
}

#[test]
fn withdrawing_a_transfer_makes_the_volume_available_again() {
    let s = Server::start();
    let vol = s.create_volume(1);
    let (st, body) = s.call(
        "POST",
        &s.v3("/volume-transfers"),
        &format!("admin:{PROJECT}"),
        Some("3.57"),
        Some(json!({"transfer": {"volume_id": vol, "no_snapshots": true}})),
    );
    assert_eq!(st, 202, "{body}");
    let t = &body["transfer"];
    assert_eq!(
        (
            t["no_snapshots"].as_bool(),
            t["accepted"].as_bool(),
            t["source_project_id"].as_str()
        ),
        (Some(true), Some(false), Some(PROJECT))
    );
    // The 3.55 collection does not exist before 3.55.
    assert_eq!(
        s.call(
            "GET",
            &s.v3("/volume-transfers"),
            &format!("admin:{PROJECT}"),
            Some("3.54"),
            None
        )
        .0,
        404
    );
    let id = t["id"].as_str().unwrap();
    let (st, body) = s.admin("GET", "/os-volume-transfer/detail", None);
    assert_eq!(st, 200);
    assert_eq!(body["transfers"][0]["volume_id"], vol.as_str());
    assert_eq!(
        s.admin("DELETE", &format!("/os-volume-transfer/{id}"), None)
            .0,
        202
    );
    s.wait_status("volumes", &vol, "available");
    assert_eq!(s.admin("DELETE", &format!("/volumes/{vol}"), None).0, 202);
}
