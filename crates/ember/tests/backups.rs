//! Backups leave the volume's storage and come back byte for byte: full
//! and incremental backups to the default target (a directory), restores
//! to a new and to an existing volume, deduplicated chunks, the parent
//! rule, quotas, and chunks deleted once nothing references them. Run on
//! every test backend, and against an S3 server (radosgw, from
//! `CEPH_RGW=1 scripts/ceph.sh up`) when `EMBER_TEST_S3_URL` names one.

mod common;

use common::{PROJECT, Server, TestBackend, test_backends};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

fn create_backup(s: &Server, body: Value) -> String {
    let (status, reply) = s.admin("POST", "/backups", Some(json!({ "backup": body })));
    assert_eq!(status, 202, "{reply}");
    let id = reply["backup"]["id"].as_str().unwrap().to_string();
    s.wait_status("backups", &id, "available");
    id
}

fn restore(s: &Server, backup: &str, body: Value) -> String {
    let (status, reply) = s.admin(
        "POST",
        &format!("/backups/{backup}/restore"),
        Some(json!({ "restore": body })),
    );
    assert_eq!(status, 202, "{reply}");
    let volume = reply["restore"]["volume_id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &volume, "available");
    s.wait_status("backups", backup, "available");
    volume
}

/// The backup targets under test: the default directory, and a prefix of
/// its own in the S3 bucket `EMBER_TEST_S3_URL` names.
fn targets() -> Vec<Option<String>> {
    let mut out = vec![None];
    match std::env::var("EMBER_TEST_S3_URL") {
        Ok(url) => {
            let run = format!("run-{}", uuid::Uuid::new_v4().simple());
            let (base, query) = url.split_once('?').unwrap_or((&url, ""));
            out.push(Some(format!(
                "{}/{run}?{query}",
                base.trim_end_matches('/')
            )));
        }
        Err(_) => assert!(
            std::env::var("EMBER_TEST_S3_REQUIRED").as_deref() != Ok("1"),
            "EMBER_TEST_S3_REQUIRED=1 but EMBER_TEST_S3_URL is not set"
        ),
    }
    out
}

/// Chunk objects on the server's target.
fn chunk_count(s: &Server, target: &Option<String>) -> usize {
    let url = match target {
        Some(url) => url.clone(),
        None => format!("file://{}", s.data_dir().join("backups").display()),
    };
    ember_backup::Target::open(&url)
        .unwrap()
        .count_chunks()
        .unwrap()
}

/// How many chunks the copies of the backups so far read, from the log.
fn chunks_read(s: &Server) -> Vec<u64> {
    s.log()
        .lines()
        .filter(|l| l.contains("backup copied"))
        .filter_map(|l| {
            l.split("read_chunks=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

#[test]
fn backups_restore_byte_for_byte_on_every_backend_and_target() {
    for backend in test_backends() {
        eprintln!("backend {backend:?}");
        backups_restore_byte_for_byte(&backend, &None);
    }
    for target in targets().into_iter().skip(1) {
        eprintln!("target {target:?}");
        backups_restore_byte_for_byte(&TestBackend::Qcow2, &target);
    }
}

fn backups_restore_byte_for_byte(backend: &TestBackend, target: &Option<String>) {
    let s = match target {
        None => Server::start_on(backend),
        Some(url) => Server::start_with(&["--auth", "noauth", "--backup-target", url]),
    };
    let volume = s.create_volume(1);
    s.write(&volume, 0, vec![0xA1; MIB as usize]);
    s.write(&volume, 100 * MIB, vec![0xA2; 512 * 1024]);

    // A full backup holds the three chunks with data.
    let full = create_backup(&s, json!({"volume_id": volume, "name": "full"}));
    let (_, shown) = s.admin("GET", &format!("/backups/{full}"), None);
    let b = &shown["backup"];
    assert_eq!(b["object_count"], 3, "{b}");
    assert_eq!(b["is_incremental"], false);
    assert_eq!(b["size"], 1);
    assert_eq!(b["volume_id"], volume.as_str());
    assert_eq!(b["os-backup-project-attr:project_id"], PROJECT);

    // Written after the full backup: an incremental has it; reading it
    // costs the changed chunks only where the backend can tell them.
    s.write(&volume, 100 * MIB, vec![0xB2; 512 * 1024]);
    s.write(&volume, 500 * MIB + 4096, vec![0xC3; 4096]);
    let incr = create_backup(
        &s,
        json!({"volume_id": volume, "name": "incr", "incremental": true}),
    );
    let (_, shown) = s.admin("GET", &format!("/backups/{incr}"), None);
    assert_eq!(shown["backup"]["is_incremental"], true);
    assert_eq!(shown["backup"]["object_count"], 4);
    let (_, shown) = s.admin("GET", &format!("/backups/{full}"), None);
    assert_eq!(shown["backup"]["has_dependent_backups"], true);
    // qcow2 from its layers' allocation, RBD from rbd_diff_iterate2.
    assert_eq!(
        chunks_read(&s),
        vec![3, 2],
        "an incremental reads what changed"
    );

    // Written after both: in neither.
    s.write(&volume, 0, vec![0xD4; 4096]);

    let restored = restore(&s, &incr, json!({"name": "from-incr"}));
    let (_, v) = s.admin("GET", &format!("/volumes/{restored}"), None);
    assert_eq!(v["volume"]["name"], "from-incr");
    assert_eq!(
        s.read("volumes", &restored, 0, MIB),
        vec![0xA1; MIB as usize]
    );
    assert_eq!(
        s.read("volumes", &restored, 100 * MIB, 512 * 1024),
        vec![0xB2; 512 * 1024]
    );
    assert_eq!(
        s.read("volumes", &restored, 500 * MIB, 3 * 4096),
        [vec![0; 4096], vec![0xC3; 4096], vec![0; 4096]].concat()
    );
    assert_eq!(s.read("volumes", &restored, 900 * MIB, 4096), vec![0; 4096]);

    // Restoring the full backup over the volume itself brings the old
    // bytes back and zeroes what the backup had no data for.
    restore(&s, &full, json!({"volume_id": volume}));
    assert_eq!(s.read("volumes", &volume, 0, 4096), vec![0xA1; 4096]);
    assert_eq!(
        s.read("volumes", &volume, 100 * MIB, 4096),
        vec![0xA2; 4096]
    );
    assert_eq!(
        s.read("volumes", &volume, 500 * MIB + 4096, 4096),
        vec![0; 4096]
    );

    // Same bytes in another volume of the project: stored once.
    let before = chunk_count(&s, target);
    let twin = s.create_volume(1);
    s.write(&twin, 0, vec![0xA1; MIB as usize]);
    create_backup(&s, json!({"volume_id": twin}));
    assert_eq!(chunk_count(&s, target), before, "deduplicated");

    // The parent goes only after its incremental.
    let (status, body) = s.admin("DELETE", &format!("/backups/{full}"), None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("Incremental backups exist"),
        "{body}"
    );
    for id in [&incr, &full] {
        let (status, body) = s.admin("DELETE", &format!("/backups/{id}"), None);
        assert_eq!(status, 202, "{body}");
        s.wait_gone("backups", id);
    }
    let (_, listed) = s.admin("GET", "/backups/detail", None);
    let left: Vec<_> = listed["backups"].as_array().unwrap().to_vec();
    assert_eq!(left.len(), 1, "{listed}");
    // Only the twin's chunk remains on the target (its two chunks with
    // data hold the same bytes), once the collection that follows the
    // deletes (after the records are gone) has run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while chunk_count(&s, target) != 1 {
        assert!(std::time::Instant::now() < deadline, "{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_, quotas) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    assert_eq!(quotas["quota_set"]["backups"]["in_use"], 1, "{quotas}");
    assert_eq!(quotas["quota_set"]["backup_gigabytes"]["in_use"], 1);

    // The volumes can go while a backup of one remains; the backup still
    // restores.
    let twin_backup = left[0]["id"].as_str().unwrap().to_string();
    for v in [&volume, &twin, &restored] {
        let (status, body) = s.admin("DELETE", &format!("/volumes/{v}"), None);
        assert_eq!(status, 202, "{body}");
        s.wait_gone("volumes", v);
    }
    let again = restore(&s, &twin_backup, json!(null));
    assert_eq!(s.read("volumes", &again, 0, MIB), vec![0xA1; MIB as usize]);
}

#[test]
fn backup_requests_are_checked() {
    let s = Server::start();
    let volume = s.create_volume(1);
    // Unknown volume, bad body, an incremental without a full backup.
    let (status, body) = s.admin(
        "POST",
        "/backups",
        Some(json!({"backup": {"volume_id": uuid::Uuid::new_v4().to_string()}})),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.admin("POST", "/backups", Some(json!({"backup": {"size": 1}})));
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.admin(
        "POST",
        "/backups",
        Some(json!({"backup": {"volume_id": volume, "incremental": true}})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("No backups available"), "{body}");
    // A restore into a smaller volume is refused.
    let backup = create_backup(&s, json!({"volume_id": volume}));
    let (_, created) = s.admin("POST", "/volumes", Some(json!({"volume": {"size": 2}})));
    let big = created["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &big, "available");
    let small_backup = backup.clone();
    let (_, created) = s.admin("POST", "/volumes", Some(json!({"volume": {"size": 1}})));
    let small = created["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &small, "available");
    let big_backup = create_backup(&s, json!({"volume_id": big}));
    let (status, body) = s.admin(
        "POST",
        &format!("/backups/{big_backup}/restore"),
        Some(json!({"restore": {"volume_id": small}})),
    );
    assert_eq!(status, 400, "{body}");
    // Another project sees nothing, and cannot back up this project's
    // volume.
    let other = |role: &str, method: &str, path: &str, body: Option<Value>| {
        s.call(
            method,
            &s.url(&format!("/v3/{}{path}", common::OTHER_PROJECT)),
            &format!("{role}:{}", common::OTHER_PROJECT),
            Some("3.71"),
            body,
        )
    };
    let (status, _) = other("member", "GET", &format!("/backups/{small_backup}"), None);
    assert_eq!(status, 404);
    let (_, listed) = other("member", "GET", "/backups", None);
    assert_eq!(listed["backups"], json!([]));
    let (status, body) = other(
        "member",
        "POST",
        "/backups",
        Some(json!({"backup": {"volume_id": volume}})),
    );
    assert_eq!(status, 404, "{body}");
    // Admin actions: reset status and export/import.
    let (status, body) = s.admin(
        "POST",
        &format!("/backups/{backup}/action"),
        Some(json!({"os-reset_status": {"status": "error"}})),
    );
    assert_eq!(status, 202, "{body}");
    s.wait_status("backups", &backup, "error");
    s.admin(
        "POST",
        &format!("/backups/{backup}/action"),
        Some(json!({"os-reset_status": {"status": "available"}})),
    );
    let (status, exported) = s.admin("GET", &format!("/backups/{backup}/export_record"), None);
    assert_eq!(status, 200, "{exported}");
    let record = exported["backup-record"].clone();
    assert_eq!(
        record["backup_service"],
        "cinder.backup.drivers.ember_chunked"
    );
    // Deleting the record keeps nothing; importing it back restores it.
    let (status, _) = s.admin("DELETE", &format!("/backups/{backup}"), None);
    assert_eq!(status, 202);
    s.wait_gone("backups", &backup);
    let (status, body) = s.admin(
        "POST",
        "/backups/import_record",
        Some(json!({"backup-record": record})),
    );
    // The manifest went with the backup: nothing to import.
    assert_eq!(status, 400, "{body}");
    let keep = create_backup(&s, json!({"volume_id": volume}));
    let (_, exported) = s.admin("GET", &format!("/backups/{keep}/export_record"), None);
    let (status, body) = s.admin(
        "POST",
        "/backups/import_record",
        Some(json!({"backup-record": exported["backup-record"]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("already exists"), "{body}");
}

/// A backup target that does not answer is the target's outage, not the
/// caller's mistake nor Ember's: importing a record while the S3 store is
/// unreachable answers 503 within seconds (the object store client's
/// retries are bounded), and Ember keeps answering everything else.
#[test]
fn an_unreachable_s3_target_answers_503_not_400_or_500() {
    let source = Server::start();
    let volume = source.create_volume(1);
    source.write(&volume, 0, vec![0x5A; 4096]);
    let backup = create_backup(&source, json!({"volume_id": volume}));
    let (status, exported) = source.admin("GET", &format!("/backups/{backup}/export_record"), None);
    assert_eq!(status, 200, "{exported}");

    let nobody = format!(
        "s3://ember-backups?endpoint=http://127.0.0.1:{}&allow_http=true",
        common::free_port()
    );
    // Keys of its own: the client must get as far as connecting.
    let s = Server::start_with_env(
        &["--auth", "noauth", "--backup-target", &nobody],
        &[
            ("AWS_ACCESS_KEY_ID", "ember"),
            ("AWS_SECRET_ACCESS_KEY", "unused"),
        ],
    );
    let started = std::time::Instant::now();
    let (status, body) = s.admin(
        "POST",
        "/backups/import_record",
        Some(json!({"backup-record": exported["backup-record"]})),
    );
    assert_eq!(status, 503, "{body}");
    let message = body.to_string();
    assert!(message.contains("retry later"), "{body}");
    assert!(!message.contains("169.254"), "{body}");
    eprintln!("answered in {:?}: {body}", started.elapsed());
    let (status, _) = s.admin("GET", "/backups", None);
    assert_eq!(status, 200);
}
