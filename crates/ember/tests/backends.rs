//! Several backends in one service: `[[backend]]` tables in the config
//! file, volume types that pick one with `volume_backend_name`, every pool
//! in `get_pools`, and each volume's data (snapshots, clones, reverts) on
//! the backend it was placed on.

mod common;
use common::*;
use serde_json::json;

/// Ember with two qcow2 backends: `qcow2` (the data directory's images)
/// and `fast` (a directory of its own).
fn two_backends() -> (Server, tempfile::TempDir) {
    let fast = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("ember.toml");
    let data_dir = data.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[[backend]]\nname = \"qcow2\"\ndriver = \"qcow2\"\npath = {:?}\n\n\
             [[backend]]\nname = \"fast\"\ndriver = \"qcow2\"\npath = {:?}\n",
            data_dir.join("images"),
            fast.path().join("images"),
        ),
    )
    .unwrap();
    let s = Server::start_at(
        Some(data_dir),
        &["--auth", "noauth", "--config", config.to_str().unwrap()],
    );
    std::mem::forget(data); // the config file lives as long as the test
    (s, fast)
}

fn qcow2_files(dir: &std::path::Path) -> usize {
    image_files(dir).len()
}

/// `qemu-img check` on every file, once background garbage collection
/// (which may remove a file between listing and checking) has let them be.
fn check_settled_images(dir: &std::path::Path) {
    for _ in 0..100 {
        let before = image_files(dir);
        std::thread::sleep(std::time::Duration::from_millis(50));
        if image_files(dir) == before {
            check_all_images(dir);
            return;
        }
    }
    panic!("image files in {} keep changing", dir.display());
}

#[test]
fn volume_types_place_volumes_on_their_backend_and_everything_follows() {
    let (s, fast) = two_backends();
    let fast_images = fast.path().join("images");

    let (st, pools) = s.admin("GET", "/scheduler-stats/get_pools?detail=true", None);
    assert_eq!(st, 200, "{pools}");
    let names: Vec<&str> = pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ember@qcow2#qcow2", "ember@fast#fast"]);
    assert_eq!(
        pools["pools"][1]["capabilities"]["volume_backend_name"],
        "fast"
    );
    let (_, services) = s.admin("GET", "/os-services?binary=cinder-volume", None);
    assert_eq!(
        services["services"].as_array().unwrap().len(),
        2,
        "{services}"
    );

    let (st, t) = s.admin(
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "fast", "extra_specs": {"volume_backend_name": "fast"}}})),
    );
    assert_eq!(st, 200, "{t}");

    // The default type goes to the first backend, the `fast` type to `fast`.
    let plain = s.create_volume(1);
    let (st, v) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "volume_type": "fast"}})),
    );
    assert_eq!(st, 202, "{v}");
    let on_fast = v["volume"]["id"].as_str().unwrap().to_string();
    let v = s.wait_status("volumes", &on_fast, "available");
    assert_eq!(v["os-vol-host-attr:host"], "ember@fast#fast");
    let (_, p) = s.admin("GET", &format!("/volumes/{plain}"), None);
    assert_eq!(p["volume"]["os-vol-host-attr:host"], "ember@qcow2#qcow2");
    assert_eq!(qcow2_files(&fast_images), 1);
    assert_eq!(qcow2_files(&s.images_dir()), 1);

    // Bytes, a snapshot, a clone of the snapshot and of the volume, a
    // revert: all on `fast`, with the bytes where they belong.
    s.write(&on_fast, 0, vec![1; 4096]);
    let snap = s.create_snapshot(&on_fast);
    s.write(&on_fast, 0, vec![2; 4096]);
    let (st, c) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"snapshot_id": snap}})),
    );
    assert_eq!(st, 202, "{c}");
    let from_snap = c["volume"]["id"].as_str().unwrap().to_string();
    let c = s.wait_status("volumes", &from_snap, "available");
    assert_eq!(c["os-vol-host-attr:host"], "ember@fast#fast");
    assert_eq!(c["volume_type"], "fast");
    let (st, c) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"source_volid": on_fast}})),
    );
    assert_eq!(st, 202, "{c}");
    let clone = c["volume"]["id"].as_str().unwrap().to_string();
    let c = s.wait_status("volumes", &clone, "available");
    assert_eq!(c["os-vol-host-attr:host"], "ember@fast#fast");
    assert_eq!(s.read("volumes", &from_snap, 0, 4096), vec![1; 4096]);
    assert_eq!(s.read("volumes", &clone, 0, 4096), vec![2; 4096]);
    assert_eq!(s.read("snapshots", &snap, 0, 4096), vec![1; 4096]);
    let (st, r) = s.admin(
        "POST",
        &format!("/volumes/{on_fast}/action"),
        Some(json!({"revert": {"snapshot_id": snap}})),
    );
    assert_eq!(st, 202, "{r}");
    s.wait_status("volumes", &on_fast, "available");
    assert_eq!(s.read("volumes", &on_fast, 0, 4096), vec![1; 4096]);
    assert_eq!(
        qcow2_files(&s.images_dir()),
        1,
        "nothing of `fast` on qcow2"
    );
    assert!(qcow2_files(&fast_images) >= 4);
    check_settled_images(&fast_images);

    // Everything goes, from both backends.
    for v in [&from_snap, &clone] {
        assert_eq!(s.admin("DELETE", &format!("/volumes/{v}"), None).0, 202);
        s.wait_gone("volumes", v);
    }
    assert_eq!(
        s.admin("DELETE", &format!("/volumes/{on_fast}?cascade=true"), None)
            .0,
        202
    );
    s.wait_gone("volumes", &on_fast);
    assert_eq!(s.admin("DELETE", &format!("/volumes/{plain}"), None).0, 202);
    s.wait_gone("volumes", &plain);
    // Records go first, data right after (the workflows' last step).
    for dir in [&fast_images, &s.images_dir()] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while qcow2_files(dir) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(image_files(dir), Vec::<String>::new(), "{}", dir.display());
    }
}

#[test]
fn a_disabled_backend_takes_no_volumes_and_the_others_still_do() {
    let (s, _fast) = two_backends();
    let (st, body) = s.admin(
        "PUT",
        "/os-services/disable",
        Some(json!({"host": "ember@qcow2", "binary": "cinder-volume"})),
    );
    assert_eq!(st, 200, "{body}");
    let v = s.create_volume(1);
    let v = s.wait_status("volumes", &v, "available");
    assert_eq!(v["os-vol-host-attr:host"], "ember@fast#fast");
    let (_, services) = s.admin("GET", "/os-services?binary=cinder-volume", None);
    let status: Vec<(&str, &str)> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["host"].as_str().unwrap(), x["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [("ember@qcow2", "disabled"), ("ember@fast", "enabled")]
    );
}

#[test]
fn bad_backend_tables_stop_the_start_with_a_reason() {
    let data = tempfile::tempdir().unwrap();
    for (table, says) in [
        (
            "[[backend]]\nname = \"a@b\"\ndriver = \"qcow2\"\npath = \"/tmp/x\"\n",
            "backend name",
        ),
        (
            "[[backend]]\nname = \"a\"\ndriver = \"zfs\"\n",
            "unknown driver",
        ),
        (
            "[[backend]]\nname = \"a\"\ndriver = \"qcow2\"\n",
            "needs `path`",
        ),
        (
            "[[backend]]\nname = \"a\"\ndriver = \"rbd\"\n",
            "needs a `pool`",
        ),
        (
            "[[backend]]\nname = \"a\"\ndriver = \"qcow2\"\npath = \"/tmp/x\"\n[[backend]]\nname = \"a\"\ndriver = \"qcow2\"\npath = \"/tmp/y\"\n",
            "declared twice",
        ),
    ] {
        let config = data.path().join("c.toml");
        std::fs::write(&config, table).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(["serve", "--auth", "noauth", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data.path().join("d"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{table}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(says), "{table}: {text}");
    }
}

/// Moving a volume between backends: a retype to a type of another
/// backend (`migration_policy: on-demand`) and an admin's migrate. The
/// bytes come along, the id, name and size stay, the host, type and
/// `migration_status` say what happened, and nothing is left behind.
#[test]
fn retype_and_migrate_move_volumes_between_backends_with_their_bytes() {
    let (s, fast) = two_backends();
    let fast_images = fast.path().join("images");
    let (st, t) = s.admin(
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "fast", "extra_specs": {"volume_backend_name": "fast"}}})),
    );
    assert_eq!(st, 200, "{t}");
    let vol = s.create_volume(1);
    s.write(&vol, 0, vec![4; 4096]);
    s.write(&vol, 512 << 20, vec![6; 4096]);

    // `never` cannot move it.
    let (st, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-retype": {"new_type": "fast", "migration_policy": "never"}})),
    );
    assert_eq!(st, 400, "{body}");
    let (_, v) = s.admin("GET", &format!("/volumes/{vol}"), None);
    assert_eq!(v["volume"]["migration_status"], serde_json::Value::Null);

    // A volume with snapshots does not move.
    let snap = s.create_snapshot(&vol);
    let (st, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-retype": {"new_type": "fast", "migration_policy": "on-demand"}})),
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        s.admin("DELETE", &format!("/snapshots/{snap}"), None).0,
        202
    );
    s.wait_gone("snapshots", &snap);

    let (st, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-retype": {"new_type": "fast", "migration_policy": "on-demand"}})),
    );
    assert_eq!(st, 202, "{body}");
    let v = s.wait_status("volumes", &vol, "available");
    assert_eq!(v["volume_type"], "fast", "{v}");
    assert_eq!(v["os-vol-host-attr:host"], "ember@fast#fast");
    assert_eq!(v["migration_status"], "success");
    assert_eq!(v["os-vol-mig-status-attr:migstat"], "success");
    assert_eq!(v["size"], 1);
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![4; 4096]);
    assert_eq!(s.read("volumes", &vol, 512 << 20, 4096), vec![6; 4096]);
    assert_eq!(s.read("volumes", &vol, 4096, 4096), vec![0; 4096]);

    // An admin moves it back, keeping its type.
    let (st, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-migrate_volume": {"host": "ember@qcow2#qcow2", "force_host_copy": false}})),
    );
    assert_eq!(st, 202, "{body}");
    let v = s.wait_status("volumes", &vol, "available");
    assert_eq!(v["os-vol-host-attr:host"], "ember@qcow2#qcow2");
    assert_eq!(v["volume_type"], "fast");
    assert_eq!(s.read("volumes", &vol, 512 << 20, 4096), vec![6; 4096]);
    // To where it is, or nowhere: refused. Members may not migrate.
    for (host, want) in [("ember@qcow2", 400), ("nowhere@x#y", 400)] {
        let (st, body) = s.admin(
            "POST",
            &format!("/volumes/{vol}/action"),
            Some(json!({"os-migrate_volume": {"host": host}})),
        );
        assert_eq!(st, want, "{host}: {body}");
    }
    let (st, _) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{vol}/action")),
        &format!("member:{PROJECT}"),
        Some("3.0"),
        Some(json!({"os-migrate_volume": {"host": "ember@fast"}})),
    );
    assert_eq!(st, 403);

    // The moved-from data is gone from `fast`; the volume's is on qcow2.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while qcow2_files(&fast_images) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(qcow2_files(&fast_images), 0);
    check_settled_images(&s.images_dir());
}
