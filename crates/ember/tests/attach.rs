//! Attaching volumes: the attachments API and the legacy actions give a
//! client an NBD export, real NBD clients (qemu-io, qemu-img, nbdinfo) use
//! it, and snapshots taken while a client writes hold exactly the writes
//! acknowledged before them.

mod common;

use common::{PROJECT, Server, attach, connector};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn member() -> String {
    format!("member:{PROJECT}")
}

fn call(s: &Server, method: &str, path: &str, mv: &str, body: Option<Value>) -> (u16, Value) {
    s.call(method, &s.v3(path), &member(), Some(mv), body)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("tool runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn qemu_io(uri: &str, read_only: bool, commands: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("qemu-io");
    if read_only {
        cmd.arg("-r");
    }
    cmd.args(["-f", "raw", uri]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let (ok, out) = run(&mut cmd);
    (ok && !out.contains("failed") && !out.contains("error"), out)
}

fn nbdinfo_available() -> bool {
    Command::new("nbdinfo").arg("--version").output().is_ok()
}

#[test]
fn the_attachments_api_exports_a_volume_only_while_it_is_attached() {
    let s = Server::start();
    let vol = s.create_volume(1);

    // Before 3.27 there is no attachments API.
    let (st, _) = call(&s, "GET", "/attachments", "3.26", None);
    assert_eq!(st, 404);

    // Reserve without a connector: no connection yet.
    let instance = uuid::Uuid::new_v4().to_string();
    let (st, body) = call(
        &s,
        "POST",
        "/attachments",
        "3.27",
        Some(json!({"attachment": {"volume_uuid": vol, "instance_uuid": instance}})),
    );
    assert_eq!(st, 200, "{body}");
    let a = &body["attachment"];
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["status"], "reserved");
    assert_eq!(a["instance"], instance.as_str());
    assert_eq!(a["attached_at"], "");
    assert_eq!(a["detached_at"], "");
    assert_eq!(a["attach_mode"], "null");
    assert_eq!(a["connection_info"], json!({}));
    s.wait_status("volumes", &vol, "reserved");
    // A second reservation of a non-multiattach volume is refused.
    let (st, body) = call(
        &s,
        "POST",
        "/attachments",
        "3.27",
        Some(json!({"attachment": {"volume_uuid": vol}})),
    );
    assert_eq!(st, 400, "{body}");
    // `mode` arrives with 3.54.
    let (st, _) = call(
        &s,
        "POST",
        "/attachments",
        "3.27",
        Some(json!({"attachment": {"volume_uuid": vol, "mode": "rw"}})),
    );
    assert_eq!(st, 400);

    // Connect: the export appears in connection_info.
    let (st, body) = call(
        &s,
        "PUT",
        &format!("/attachments/{id}"),
        "3.27",
        Some(json!({"attachment": {"connector": connector("host-a")}})),
    );
    assert_eq!(st, 200, "{body}");
    let a = &body["attachment"];
    assert_eq!(a["status"], "attaching");
    assert_eq!(a["attach_mode"], "rw");
    let info = a["connection_info"].clone();
    assert_eq!(info["driver_volume_type"], "nbd");
    assert_eq!(info["attachment_id"], id.as_str());
    assert_eq!(info["access_mode"], "rw");
    assert_eq!(info["host"], "127.0.0.1");
    let export = info["export_name"].as_str().unwrap().to_string();
    assert!(
        export.contains(&vol) && export.len() > vol.len() + 30,
        "{export}"
    );
    let uri = info["uri"].as_str().unwrap().to_string();
    assert_eq!(uri, format!("nbd://127.0.0.1:{}/{export}", s.nbd_port));
    s.wait_status("volumes", &vol, "attaching");

    // os-complete (3.44+) makes the volume in-use.
    let (st, _) = call(
        &s,
        "POST",
        &format!("/attachments/{id}/action"),
        "3.43",
        Some(json!({"os-complete": {}})),
    );
    assert_eq!(st, 404);
    let (st, _) = call(
        &s,
        "POST",
        &format!("/attachments/{id}/action"),
        "3.44",
        Some(json!({"os-complete": {}})),
    );
    assert_eq!(st, 204);
    let v = s.wait_status("volumes", &vol, "in-use");
    assert_eq!(v["attachments"][0]["attachment_id"], id.as_str());
    assert_eq!(v["attachments"][0]["server_id"], instance.as_str());
    let (_, body) = call(&s, "GET", &format!("/attachments/{id}"), "3.27", None);
    assert_eq!(body["attachment"]["status"], "attached");
    assert_ne!(body["attachment"]["attached_at"], "");
    let (_, body) = call(
        &s,
        "GET",
        &format!("/attachments?volume_id={vol}"),
        "3.27",
        None,
    );
    assert_eq!(body["attachments"].as_array().unwrap().len(), 1);
    assert!(
        body["attachments"][0].get("connection_info").is_none(),
        "summary view"
    );
    let (_, body) = call(&s, "GET", "/attachments/detail", "3.27", None);
    assert_eq!(
        body["attachments"][0]["connection_info"]["uri"],
        uri.as_str()
    );
    // Another project sees no attachment.
    let other = format!("member:{}", common::OTHER_PROJECT);
    let (st, _) = s.call(
        "GET",
        &s.url(&format!("/v3/{}/attachments/{id}", common::OTHER_PROJECT)),
        &other,
        Some("3.27"),
        None,
    );
    assert_eq!(st, 404);

    // A real NBD client writes; the data API reads the same bytes.
    let (ok, out) = qemu_io(
        &uri,
        false,
        &["write -P 0x5c 1M 64k", "flush", "read -P 0x5c 1M 64k"],
    );
    assert!(ok, "{out}");
    assert!(
        s.read("volumes", &vol, 1 << 20, 65536)
            .iter()
            .all(|&b| b == 0x5c)
    );
    let (ok, out) =
        run(Command::new("qemu-img").args(["info", "--output=json", "-f", "raw", &uri]));
    assert!(ok && out.contains("\"virtual-size\": 1073741824"), "{out}");

    if nbdinfo_available() {
        let base = format!("nbd://127.0.0.1:{}", s.nbd_port);
        let (ok, out) = run(Command::new("nbdinfo").args(["--list", &base]));
        assert!(ok, "{out}");
        assert!(!out.contains(&vol), "nbdinfo --list reveals nothing: {out}");
        // Knowing the volume id is not enough; a wrong secret gets nothing.
        let (ok, _) = run(Command::new("nbdinfo").arg(format!(
            "{base}/ember-{vol}-00000000000000000000000000000000"
        )));
        assert!(!ok);
        let (ok, out) = run(Command::new("nbdinfo").args(["--size", &uri]));
        assert!(ok && out.trim() == "1073741824", "{out}");
    }

    // A client connected when the attachment is deleted is cut off.
    let mut live = Command::new("qemu-io")
        .args(["-f", "raw", &uri])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = live.stdin.take().unwrap();
    writeln!(stdin, "read -P 0x5c 1M 4k").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (st, body) = call(&s, "DELETE", &format!("/attachments/{id}"), "3.27", None);
    assert_eq!(st, 200, "{body}");
    assert_eq!(body, json!({"attachments": []}));
    s.wait_status("volumes", &vol, "available");
    writeln!(stdin, "write -P 0x77 1M 4k").unwrap();
    drop(stdin);
    let out = live.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("read 4096/4096"), "{text}");
    assert!(
        !text.contains("wrote 4096/4096"),
        "a write after detach must fail: {text}"
    );
    assert!(
        s.read("volumes", &vol, 1 << 20, 4096)
            .iter()
            .all(|&b| b == 0x5c)
    );
    // The stale name gets nothing.
    let (ok, _) = qemu_io(&uri, true, &["read 0 4k"]);
    assert!(!ok, "stale export name still works");
    let (st, _) = call(&s, "GET", &format!("/attachments/{id}"), "3.27", None);
    assert_eq!(st, 404);
    // The volume can be deleted again.
    let (st, _) = call(&s, "DELETE", &format!("/volumes/{vol}"), "3.27", None);
    assert_eq!(st, 202);
    s.wait_gone("volumes", &vol);
}

#[test]
fn legacy_actions_connect_attach_and_detach() {
    let s = Server::start();
    let vol = s.create_volume(1);
    let act = |body: Value| {
        call(
            &s,
            "POST",
            &format!("/volumes/{vol}/action"),
            "3.0",
            Some(body),
        )
    };
    // Cinder's legacy reserve: `attaching`; a second reserve is refused;
    // unreserve returns it, and is a no-op when there is nothing to undo.
    assert_eq!(act(json!({"os-reserve": {}})).0, 202);
    s.wait_status("volumes", &vol, "attaching");
    let (st, body) = act(json!({"os-reserve": {}}));
    assert_eq!(st, 400, "{body}");
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Volume status must be available to reserve"),
        "{body}"
    );
    assert_eq!(act(json!({"os-unreserve": {}})).0, 202);
    s.wait_status("volumes", &vol, "available");
    assert_eq!(act(json!({"os-unreserve": {}})).0, 202);
    s.wait_status("volumes", &vol, "available");
    assert_eq!(act(json!({"os-reserve": {}})).0, 202);
    s.wait_status("volumes", &vol, "attaching");
    let (st, body) =
        act(json!({"os-initialize_connection": {"connector": connector("compute-1")}}));
    assert_eq!(st, 200, "{body}");
    let info = &body["connection_info"];
    assert_eq!(info["driver_volume_type"], "nbd");
    assert_eq!(info["data"]["access_mode"], "rw");
    let uri = info["data"]["uri"].as_str().unwrap().to_string();
    // Asking again for the same host gives the same connection.
    let (_, again) =
        act(json!({"os-initialize_connection": {"connector": connector("compute-1")}}));
    assert_eq!(again["connection_info"]["data"]["uri"], uri.as_str());
    let (st, _) = act(
        json!({"os-attach": {"instance_uuid": uuid::Uuid::new_v4().to_string(), "mountpoint": "/dev/vdb", "mode": "rw", "host_name": "compute-1"}}),
    );
    assert_eq!(st, 202);
    let v = s.wait_status("volumes", &vol, "in-use");
    assert_eq!(v["attachments"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["attachments"][0]["device"], "/dev/vdb");

    let (ok, out) = qemu_io(
        &uri,
        false,
        &["write -P 0xa1 0 128k", "read -P 0xa1 0 128k"],
    );
    assert!(ok, "{out}");
    // connector is required.
    assert_eq!(act(json!({"os-initialize_connection": {}})).0, 400);

    // Terminating the connection withdraws the export; the volume stays
    // attached until os-detach.
    assert_eq!(
        act(json!({"os-terminate_connection": {"connector": connector("compute-1")}})).0,
        202
    );
    let (ok, _) = qemu_io(&uri, true, &["read 0 4k"]);
    assert!(!ok, "export still served after terminate_connection");
    s.wait_status("volumes", &vol, "in-use");
    assert_eq!(act(json!({"os-begin_detaching": {}})).0, 202);
    assert_eq!(act(json!({"os-detach": {}})).0, 202);
    s.wait_status("volumes", &vol, "available");
    assert!(
        s.read("volumes", &vol, 0, 131072)
            .iter()
            .all(|&b| b == 0xa1)
    );

    // os-force_detach (admin) clears an attachment whatever its state.
    assert_eq!(act(json!({"os-attach": {"instance_uuid": uuid::Uuid::new_v4().to_string(), "mountpoint": "/dev/vdc", "mode": "rw"}})).0, 202);
    s.wait_status("volumes", &vol, "in-use");
    let (st, _) = act(json!({"os-force_detach": {}}));
    assert_eq!(st, 403, "members may not force-detach");
    let (st, body) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{vol}/action")),
        &format!("admin:{PROJECT}"),
        Some("3.0"),
        Some(json!({"os-force_detach": {"attachment_id": uuid::Uuid::new_v4().to_string()}})),
    );
    assert_eq!(st, 400, "{body}");
    let (st, _) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{vol}/action")),
        &format!("admin:{PROJECT}"),
        Some("3.0"),
        Some(json!({"os-force_detach": {"connector": null}})),
    );
    assert_eq!(st, 202);
    s.wait_status("volumes", &vol, "available");
}

/// One sequential writer's log: write `i` puts pattern `pattern(i)` into
/// region `i`; `acked` counts writes qemu-io reported done.
const REGION: u64 = 256 << 10;
const WRITES: usize = 256; // 64 MiB
fn pattern(i: usize) -> u8 {
    (i % 250) as u8 + 1
}

/// How many leading writes `data` (the first 64 MiB of a snapshot) holds;
/// panics unless it is exactly a prefix of the write log.
fn prefix_len(data: &[u8]) -> usize {
    let regions: Vec<&[u8]> = data.chunks(REGION as usize).collect();
    let k = regions
        .iter()
        .enumerate()
        .take_while(|(i, r)| r.iter().all(|&b| b == pattern(*i)))
        .count();
    for (i, r) in regions.iter().enumerate().skip(k) {
        assert!(
            r.iter().all(|&b| b == 0),
            "region {i} is neither the write nor untouched after a prefix of {k} writes"
        );
    }
    k
}

#[test]
fn snapshots_taken_while_qemu_io_writes_hold_exactly_the_acknowledged_writes() {
    let s = Server::start();
    let vol = s.create_volume(1);
    let (attachment, uri) = attach(&s, &vol, "rw");
    s.wait_status("volumes", &vol, "in-use");

    // qemu-io, fed one write at a time; a write counts once qemu-io says
    // it is done (the NBD reply arrived).
    let mut writer = Command::new("qemu-io")
        .args(["-f", "raw", &uri])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let mut stdin = writer.stdin.take().unwrap();
    let stdout = BufReader::new(writer.stdout.take().unwrap());
    let acked_w = acked.clone();
    let feeder = std::thread::spawn(move || {
        let mut lines = stdout.lines();
        for i in 0..WRITES {
            writeln!(
                stdin,
                "write -P {} {} {}",
                pattern(i),
                i as u64 * REGION,
                REGION
            )
            .unwrap();
            stdin.flush().unwrap();
            let want = format!(
                "wrote {REGION}/{REGION} bytes at offset {}",
                i as u64 * REGION
            );
            loop {
                let line = lines.next().expect("qemu-io output").unwrap();
                assert!(!line.contains("failed"), "write {i}: {line}");
                if line.contains(&want) {
                    break;
                }
            }
            acked_w.store(i + 1, Ordering::SeqCst);
            // No pause: the writes must keep coming while snapshots switch.
        }
        drop(stdin);
    });

    // Ten snapshots while the writes go on: each records how many writes
    // were acknowledged before it was asked for and after it was available.
    let mut taken = Vec::new();
    for n in 0..10 {
        let threshold = (n + 1) * WRITES / 12;
        while acked.load(Ordering::SeqCst) < threshold {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = acked.load(Ordering::SeqCst);
        let (st, body) = call(
            &s,
            "POST",
            "/snapshots",
            "3.0",
            Some(
                json!({"snapshot": {"volume_id": vol, "name": format!("online-{n}"), "force": true}}),
            ),
        );
        assert_eq!(st, 202, "{body}");
        let id = body["snapshot"]["id"].as_str().unwrap().to_string();
        s.wait_status("snapshots", &id, "available");
        let after = acked.load(Ordering::SeqCst);
        taken.push((id, before, after));
    }
    feeder.join().unwrap();
    assert!(writer.wait().unwrap().success());
    assert!(
        taken.iter().any(|(_, b, a)| a > b),
        "no snapshot overlapped a write: {taken:?}"
    );

    for (id, before, after) in &taken {
        let data = s.read("snapshots", id, 0, REGION * WRITES as u64);
        let k = prefix_len(&data);
        // The feeder sends write i+1 only after logging write i, so one
        // write at most is in flight: it may have completed on the server
        // (and be in the snapshot) before the feeder logged it.
        assert!(
            *before <= k && k <= *after + 1,
            "snapshot {id} holds {k} writes; {before} were acknowledged before it was requested, {after} when it was available"
        );
    }
    // The volume itself holds every write.
    assert_eq!(
        prefix_len(&s.read("volumes", &vol, 0, REGION * WRITES as u64)),
        WRITES
    );

    // Detach; a clone of a snapshot, attached read-only, serves its bytes
    // to qemu-io and refuses writes.
    let (st, _) = call(
        &s,
        "DELETE",
        &format!("/attachments/{attachment}"),
        "3.27",
        None,
    );
    assert_eq!(st, 200);
    s.wait_status("volumes", &vol, "available");
    let (snap, _, _) = &taken[4];
    let k = prefix_len(&s.read("snapshots", snap, 0, REGION * WRITES as u64));
    assert!(k > 0);
    let (st, body) = call(
        &s,
        "POST",
        "/volumes",
        "3.0",
        Some(json!({"volume": {"snapshot_id": snap, "size": 1}})),
    );
    assert_eq!(st, 202, "{body}");
    let clone = body["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &clone, "available");
    let (_, ro_uri) = attach(&s, &clone, "ro");
    let first = format!("read -P {} 0 {REGION}", pattern(0));
    let last = format!(
        "read -P {} {} {REGION}",
        pattern(k - 1),
        (k as u64 - 1) * REGION
    );
    let past = format!("read -P 0 {} {REGION}", k as u64 * REGION);
    let (ok, out) = qemu_io(&ro_uri, true, &[&first, &last, &past]);
    assert!(ok, "{out}");
    let (_, out) = qemu_io(&ro_uri, false, &["write -P 9 0 4k"]);
    assert!(
        out.contains("Permission denied")
            || out.contains("not permitted")
            || out.contains("read-only"),
        "{out}"
    );

    // The same snapshot exported read-only (Ember's `ember-export`).
    let (st, body) = call(
        &s,
        "POST",
        &format!("/snapshots/{snap}/action"),
        "3.0",
        Some(json!({"ember-export": {}})),
    );
    assert_eq!(st, 200, "{body}");
    let data = &body["connection_info"]["data"];
    assert_eq!(data["access_mode"], "ro");
    let snap_uri = data["uri"].as_str().unwrap().to_string();
    let (ok, out) = qemu_io(&snap_uri, true, &[&first, &last, &past]);
    assert!(ok, "{out}");
    let (_, out) = qemu_io(&snap_uri, false, &["write -P 9 0 4k"]);
    assert!(
        out.contains("Permission denied")
            || out.contains("not permitted")
            || out.contains("read-only"),
        "{out}"
    );
    // libnbd's nbdcopy streams the export out; its first 65 MiB are the
    // snapshot's bytes.
    if Command::new("nbdcopy").arg("--version").output().is_ok() {
        use std::io::Read;
        let mut copy = Command::new("nbdcopy")
            .args([snap_uri.as_str(), "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let want = (REGION * WRITES as u64 + (1 << 20)) as usize;
        let mut bytes = vec![0u8; want];
        copy.stdout.take().unwrap().read_exact(&mut bytes).unwrap();
        let _ = copy.kill();
        let _ = copy.wait();
        let region_end = (REGION * WRITES as u64) as usize;
        assert_eq!(prefix_len(&bytes[..region_end]), k);
        assert!(bytes[region_end..].iter().all(|&b| b == 0));
    }
    let (st, _) = call(
        &s,
        "POST",
        &format!("/snapshots/{snap}/action"),
        "3.0",
        Some(json!({"ember-unexport": {}})),
    );
    assert_eq!(st, 202);
    let (ok, _) = qemu_io(&snap_uri, true, &["read 0 4k"]);
    assert!(!ok, "unexported snapshot still served");
    assert!(common::check_all_images(&s.images_dir()) >= 10);
}

#[test]
fn multiattach_exports_share_one_volume_across_snapshot_delete_and_restart() {
    let mut s = Server::start();
    let (st, body) = s.admin(
        "POST",
        "/types",
        Some(
            json!({"volume_type": {"name": "multi", "extra_specs": {"multiattach": "<is> True"}}}),
        ),
    );
    assert_eq!(st, 200, "{body}");
    let (st, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "volume_type": "multi"}})),
    );
    assert_eq!(st, 202, "{body}");
    let vol = body["volume"]["id"].as_str().unwrap().to_string();
    let v = s.wait_status("volumes", &vol, "available");
    assert_eq!(v["multiattach"], true);

    let (first, uri1) = attach(&s, &vol, "rw");
    let (_second, uri2) = attach(&s, &vol, "rw");
    assert_ne!(uri1, uri2);
    let v = s.wait_status("volumes", &vol, "in-use");
    assert_eq!(v["attachments"].as_array().unwrap().len(), 2);
    let (ok, out) = qemu_io(&uri1, false, &["write -P 0x31 0 256k"]);
    assert!(ok, "{out}");
    let (ok, out) = qemu_io(
        &uri2,
        false,
        &["read -P 0x31 0 256k", "write -P 0x32 256k 256k"],
    );
    assert!(ok, "{out}");

    // A snapshot of the attached volume, more writes, then the snapshot is
    // deleted while attached: its layer merges into the live overlay.
    let (st, body) = call(
        &s,
        "POST",
        "/snapshots",
        "3.66",
        Some(json!({"snapshot": {"volume_id": vol}})),
    );
    assert_eq!(st, 202, "{body}");
    let snap = body["snapshot"]["id"].as_str().unwrap().to_string();
    s.wait_status("snapshots", &snap, "available");
    let (ok, out) = qemu_io(&uri1, false, &["write -P 0x33 128k 256k"]);
    assert!(ok, "{out}");
    assert!(
        s.read("snapshots", &snap, 128 << 10, 128 << 10)
            .iter()
            .all(|&b| b == 0x31)
    );
    // Reverting an attached volume is refused, as upstream (it must be
    // available); deleting the snapshot while attached is allowed.
    let (st, body) = call(
        &s,
        "POST",
        &format!("/volumes/{vol}/action"),
        "3.40",
        Some(json!({"revert": {"snapshot_id": snap}})),
    );
    assert_eq!(st, 400, "{body}");
    let (st, _) = call(&s, "DELETE", &format!("/snapshots/{snap}"), "3.66", None);
    assert_eq!(st, 202);
    s.wait_gone("snapshots", &snap);
    let expect = [
        "read -P 0x31 0 128k",
        "read -P 0x33 128k 256k",
        "read -P 0x32 384k 128k",
    ];
    let (ok, out) = qemu_io(&uri2, true, &expect);
    assert!(ok, "{out}");

    // Export names survive a restart (they are part of the attachment).
    s.restart();
    let (ok, out) = qemu_io(&uri1, true, &expect);
    assert!(ok, "{out}");
    s.wait_status("volumes", &vol, "in-use");

    // Detaching one leaves the other connected and the volume in use.
    let (st, body) = call(&s, "DELETE", &format!("/attachments/{first}"), "3.27", None);
    assert_eq!(st, 200);
    assert_eq!(body["attachments"].as_array().unwrap().len(), 1);
    s.wait_status("volumes", &vol, "in-use");
    let (ok, _) = qemu_io(&uri1, true, &["read 0 4k"]);
    assert!(!ok, "detached export still served");
    let (ok, out) = qemu_io(&uri2, true, &expect);
    assert!(ok, "{out}");
    assert!(common::check_all_images(&s.images_dir()) >= 1);
}
