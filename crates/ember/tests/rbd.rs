//! Volumes on Ceph RBD, end to end through the Cinder API, checked with
//! Ceph's own `rbd` tool: every volume an image, every snapshot an RBD
//! snapshot, clones RBD clones, a revert a clone (never a copy), deleting
//! a snapshot with clones works, and everything goes on delete. Bytes
//! through NBD (qemu-io) and the data API. Runs when a test cluster is
//! configured (see `common::test_backends`).

mod common;
use common::*;
use serde_json::json;
use std::process::Command;

fn ceph() -> Option<TestBackend> {
    test_backends()
        .into_iter()
        .find(|b| matches!(b, TestBackend::Rbd { .. }))
}

/// `rbd` with the test cluster's configuration, in the backend's namespace.
fn rbd(backend: &TestBackend, args: &[&str]) -> String {
    let TestBackend::Rbd {
        conf,
        pool,
        namespace,
    } = backend
    else {
        unreachable!()
    };
    let out = Command::new("rbd")
        .arg("--conf")
        .arg(conf)
        .args(["--pool", pool, "--namespace", namespace])
        .args(args)
        .output()
        .expect("the rbd tool (ceph-common)");
    assert!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn images(backend: &TestBackend) -> Vec<String> {
    let mut v: Vec<String> = rbd(backend, &["ls"]).lines().map(str::to_string).collect();
    v.sort();
    v
}

fn info(backend: &TestBackend, image: &str) -> serde_json::Value {
    serde_json::from_str(&rbd(backend, &["info", "--format", "json", image])).unwrap()
}

fn qemu_io(uri: &str, commands: &[&str]) -> String {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", uri]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd.output().expect("qemu-io");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("failed") && !text.contains("error"),
        "{text}"
    );
    text
}

/// Waits until the backend has removed what deletes released (the
/// workflows' last step runs after the records are gone).
fn wait_images(backend: &TestBackend, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = images(backend);
        if now.len() == n || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn volumes_snapshots_clones_and_reverts_are_rbd_images_and_snapshots() {
    let Some(b) = ceph() else {
        eprintln!("no test Ceph cluster configured: skipped");
        return;
    };
    let mut s = Server::start_on(&b);
    let vol = s.create_volume(1);
    let v = s.wait_status("volumes", &vol, "available");
    assert_eq!(v["os-vol-host-attr:host"], "ember@rbd#rbd");
    let imgs = images(&b);
    assert_eq!(imgs.len(), 1, "{imgs:?}");
    let volume_image = imgs[0].clone();
    assert_eq!(info(&b, &volume_image)["size"], 1u64 << 30);

    // Bytes through NBD, then a snapshot: an RBD snapshot of the image.
    let (attachment, uri) = attach(&s, &vol, "rw");
    qemu_io(&uri, &["write -P 7 0 64k"]);
    let snap = s.create_snapshot(&vol);
    let snaps = rbd(&b, &["snap", "ls", "--format", "json", &volume_image]);
    let snaps: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    qemu_io(&uri, &["write -P 9 0 64k"]);
    assert_eq!(s.read("snapshots", &snap, 0, 4096), vec![7; 4096]);
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![9; 4096]);
    let (st, body) = s.call(
        "DELETE",
        &s.v3(&format!("/attachments/{attachment}")),
        &format!("member:{PROJECT}"),
        Some("3.44"),
        None,
    );
    assert_eq!(st, 200, "{body}");
    s.wait_status("volumes", &vol, "available");

    // A volume from the snapshot: an RBD clone of it, grown to 2 GiB.
    let (st, c) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"snapshot_id": snap, "size": 2}})),
    );
    assert_eq!(st, 202, "{c}");
    let clone = c["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &clone, "available");
    let clone_image = images(&b).into_iter().find(|i| *i != volume_image).unwrap();
    let ci = info(&b, &clone_image);
    assert_eq!(ci["parent"]["image"], volume_image.as_str(), "{ci}");
    assert_eq!(ci["size"], 2u64 << 30);
    assert_eq!(s.read("volumes", &clone, 0, 4096), vec![7; 4096]);

    // Deleting the snapshot that the clone reads through works.
    assert_eq!(
        s.admin("DELETE", &format!("/snapshots/{snap}"), None).0,
        202
    );
    s.wait_gone("snapshots", &snap);
    assert_eq!(s.read("volumes", &clone, 0, 4096), vec![7; 4096]);
    s.write(&clone, 4096, vec![3; 4096]);

    // A revert is a clone of the snapshot under a new name: no copy.
    let snap2 = s.create_snapshot(&vol);
    s.write(&vol, 0, vec![5; 4096]);
    let (st, r) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"revert": {"snapshot_id": snap2}})),
    );
    assert_eq!(st, 202, "{r}");
    s.wait_status("volumes", &vol, "available");
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![9; 4096]);
    let reverted = images(&b)
        .into_iter()
        .find(|i| *i != volume_image && *i != clone_image)
        .expect("the reverted volume's image");
    assert_eq!(
        info(&b, &reverted)["parent"]["image"],
        volume_image.as_str()
    );

    // A restart (SIGKILL) keeps everything, and the audit finds nothing.
    s.restart();
    assert_eq!(s.read("volumes", &vol, 0, 4096), vec![9; 4096]);
    assert_eq!(s.read("volumes", &clone, 4096, 4096), vec![3; 4096]);

    // Everything goes: every image and snapshot is removed.
    for v in [&clone, &vol] {
        let (st, body) = s.admin("DELETE", &format!("/volumes/{v}?cascade=true"), None);
        assert_eq!(st, 202, "{body}");
        s.wait_gone("volumes", v);
    }
    assert_eq!(wait_images(&b, 0), Vec::<String>::new());
    s.stop();
    assert_eq!(s.audit(), Vec::<String>::new());
}

/// Sets the monitor's `paxos_propose_interval` while alive: 1 s is Ceph's
/// default (each snapshot then waits up to a second for the next map),
/// the test cluster runs at 0.05 s. Restored on drop, even on a panic.
struct PaxosInterval<'a>(&'a TestBackend);

impl<'a> PaxosInterval<'a> {
    fn set(backend: &'a TestBackend, seconds: &str) -> Self {
        let TestBackend::Rbd { conf, .. } = backend else {
            unreachable!()
        };
        let out = Command::new("ceph")
            .arg("--conf")
            .arg(conf)
            .args([
                "tell",
                "mon.a",
                "config",
                "set",
                "paxos_propose_interval",
                seconds,
            ])
            .output()
            .expect("the ceph tool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PaxosInterval(backend)
    }
}

impl Drop for PaxosInterval<'_> {
    fn drop(&mut self) {
        let TestBackend::Rbd { conf, .. } = self.0 else {
            return;
        };
        let _ = Command::new("ceph")
            .arg("--conf")
            .arg(conf)
            .args([
                "tell",
                "mon.a",
                "config",
                "set",
                "paxos_propose_interval",
                "0.05",
            ])
            .output();
    }
}

#[test]
fn a_slow_snapshot_answers_at_once_and_blocks_nothing() {
    let Some(b) = ceph() else {
        eprintln!("no test Ceph cluster configured: skipped");
        return;
    };
    let _default = PaxosInterval::set(&b, "1");
    let s = Server::start_on(&b);
    let vol = s.create_volume(1);
    s.write(&vol, 0, vec![1; 4096]);
    // The request returns before the RBD snapshot exists: `creating`,
    // then `available`, holding exactly what was written before.
    let (st, body) = s.admin(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": vol}})),
    );
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["snapshot"]["status"], "creating");
    let snap = body["snapshot"]["id"].as_str().unwrap().to_string();
    // Other work goes on meanwhile.
    let other = s.create_volume(1);
    s.write(&other, 0, vec![2; 4096]);
    s.wait_status("snapshots", &snap, "available");
    assert_eq!(s.read("snapshots", &snap, 0, 4096), vec![1; 4096]);
}

/// With `attach = "rbd"`, the hypervisor is told to open the image itself
/// (Cinder's RBD connection info): the name, monitors and user are the
/// volume's real image and the cluster's, as `rbd export` of the named
/// image shows with the bytes written through Ember.
#[test]
fn native_attach_names_the_volume_image_for_librbd() {
    let Some(b) = ceph() else {
        eprintln!("no test Ceph cluster configured: skipped");
        return;
    };
    let TestBackend::Rbd {
        conf,
        pool,
        namespace,
    } = &b
    else {
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ember.toml");
    std::fs::write(
        &config,
        format!(
            "[[backend]]\nname = \"ceph\"\ndriver = \"rbd\"\nceph_conf = {conf:?}\npool = {pool:?}\nnamespace = {namespace:?}\nattach = \"rbd\"\nsecret_uuid = \"457eb676-33da-42ec-9a8c-9293d545c337\"\n"
        ),
    )
    .unwrap();
    let s = Server::start_with(&["--auth", "noauth", "--config", config.to_str().unwrap()]);
    let (_, pools) = s.admin("GET", "/scheduler-stats/get_pools?detail=true", None);
    assert_eq!(
        pools["pools"][0]["capabilities"]["storage_protocol"],
        "ceph"
    );
    let vol = s.create_volume(1);
    s.write(&vol, 4096, vec![0x42; 4096]);
    let (st, body) = s.call(
        "POST",
        &s.v3("/attachments"),
        &format!("member:{PROJECT}"),
        Some("3.54"),
        Some(json!({"attachment": {"volume_uuid": vol, "instance_uuid": uuid::Uuid::new_v4().to_string(), "connector": connector("host-a"), "mode": "rw"}})),
    );
    assert_eq!(st, 200, "{body}");
    let info = &body["attachment"]["connection_info"];
    assert_eq!(info["driver_volume_type"], "rbd", "{info}");
    assert_eq!(info["auth_username"], "admin");
    assert_eq!(info["secret_type"], "ceph");
    assert_eq!(info["secret_uuid"], "457eb676-33da-42ec-9a8c-9293d545c337");
    assert_eq!(info["access_mode"], "rw");
    let mon_port = std::fs::read_to_string(conf)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("mon host = v2:127.0.0.1:")
                .map(str::to_string)
        })
        .unwrap();
    assert_eq!(info["hosts"], json!(["127.0.0.1"]));
    assert_eq!(info["ports"], json!([mon_port]));
    let name = info["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("{pool}/{namespace}/ember-")),
        "{name}"
    );
    let image = name.rsplit('/').next().unwrap();
    assert_eq!(images(&b), vec![image.to_string()]);
    let out = dir.path().join("export.raw");
    rbd(
        &b,
        &["export", "--no-progress", image, out.to_str().unwrap()],
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), 1 << 30);
    assert_eq!(&bytes[4096..8192], &[0x42; 4096][..]);
    assert!(bytes[..4096].iter().all(|b| *b == 0));
}
