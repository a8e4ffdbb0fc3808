//! SIGKILL in the middle of a mixed load, many times: after every restart,
//! once recovery has run, nothing is transitional, every acknowledged
//! operation is complete or visibly failed, quota usage equals the live
//! resources, every image passes `qemu-img check`, no file is an orphan,
//! and every acknowledged write reads back.
//!
//! Seeded and bounded: `EMBER_CRASH_SEED` and `EMBER_CRASH_ROUNDS` choose
//! the schedule (defaults 7 and 8 rounds).

mod common;

use common::{
    PROJECT, Rng, Server, TestBackend, attach, check_all_images, image_files, test_backends,
};
use ember_store::MetadataStore;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Acked {
    volumes: HashSet<String>,
    snapshots: HashSet<String>,
    deleted_volumes: HashSet<String>,
    deleted_snapshots: HashSet<String>,
    /// (volume, thread) -> last acknowledged byte at that thread's offset.
    writes: HashMap<(String, usize), u8>,
    /// A write that was sent but not acknowledged (the server died): it
    /// may or may not have happened.
    pending_writes: HashMap<(String, usize), u8>,
    /// Deletes sent but not acknowledged: may or may not have happened.
    attempted_deletes: HashSet<String>,
}

const MIB: u64 = 1 << 20;

/// FUA writes through the NBD export of one attached volume.
#[derive(Default)]
struct NbdLog {
    /// offset -> last byte whose write qemu-io reported done (FUA: durable).
    acked: HashMap<u64, u8>,
    /// offset -> a byte sent when the server died: may or may not be there.
    pending: HashMap<u64, u8>,
    /// Writes acknowledged in all rounds.
    writes: u64,
}

/// Writes 4 KiB with FUA at one of 16 offsets, one qemu-io per write, and
/// now and then snapshots the attached volume (`force`), until stopped or
/// the server is gone.
fn nbd_load(
    s: &Server,
    volume: &str,
    uri: &str,
    seed: u64,
    stop: &AtomicBool,
    log: &Mutex<NbdLog>,
    acked: &Mutex<Acked>,
) {
    let mut rng = Rng(seed ^ 0x5eed);
    while !stop.load(Ordering::SeqCst) {
        if rng.below(8) == 0 {
            if let Ok((202, body)) = s.try_admin(
                "POST",
                "/snapshots",
                Some(json!({"snapshot": {"volume_id": volume, "force": true}})),
            ) && let Some(id) = body["snapshot"]["id"].as_str()
            {
                acked.lock().unwrap().snapshots.insert(id.to_string());
            }
            continue;
        }
        let offset = rng.below(16) * 64 * 1024;
        let byte = 1 + rng.below(255) as u8;
        log.lock().unwrap().pending.insert(offset, byte);
        let out = std::process::Command::new("qemu-io")
            .args([
                "-f",
                "raw",
                uri,
                "-c",
                &format!("write -f -P {byte} {offset} 4k"),
            ])
            .output();
        let done = out.as_ref().is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("wrote 4096/4096")
        });
        if !done {
            return; // the server died: the write stays pending
        }
        let mut l = log.lock().unwrap();
        l.pending.remove(&offset);
        l.acked.insert(offset, byte);
        l.writes += 1;
    }
}

/// Every FUA write acknowledged through NBD is there after the restart.
fn check_nbd_writes(s: &Server, volume: &str, log: &mut NbdLog) {
    for slot in 0..16u64 {
        let offset = slot * 64 * 1024;
        let got = s.read("volumes", volume, offset, 4096);
        let acked = log.acked.get(&offset).copied().unwrap_or(0);
        let pending = log.pending.get(&offset).copied();
        assert!(
            got.iter().all(|&b| b == got[0]),
            "torn 4 KiB write at {offset}"
        );
        assert!(
            got[0] == acked || Some(got[0]) == pending,
            "NBD write at {offset}: read {}, acknowledged {acked}, pending {pending:?}",
            got[0]
        );
        // What is there now is the new truth for the next round.
        log.acked.insert(offset, got[0]);
    }
    log.pending.clear();
}

fn load(s: &Server, thread: usize, seed: u64, stop: &AtomicBool, acked: &Mutex<Acked>) {
    let mut rng = Rng(seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(thread as u64 + 1));
    let mut counter: u8 = 0;
    while !stop.load(Ordering::SeqCst) {
        let (vols, snaps): (Vec<String>, Vec<String>) = {
            let a = acked.lock().unwrap();
            (
                a.volumes.difference(&a.deleted_volumes).cloned().collect(),
                a.snapshots
                    .difference(&a.deleted_snapshots)
                    .cloned()
                    .collect(),
            )
        };
        let pick =
            |rng: &mut Rng, v: &Vec<String>| v.get(rng.below(v.len() as u64) as usize).cloned();
        let op = rng.below(10);
        let result = match op {
            0 | 1 => s
                .try_admin("POST", "/volumes", Some(json!({"volume": {"size": 1}})))
                .map(|(st, b)| {
                    if st == 202 {
                        acked
                            .lock()
                            .unwrap()
                            .volumes
                            .insert(b["volume"]["id"].as_str().unwrap().to_string());
                    }
                }),
            2 | 3 => match pick(&mut rng, &vols) {
                Some(v) => s
                    .try_admin(
                        "POST",
                        "/snapshots",
                        Some(json!({"snapshot": {"volume_id": v, "force": true}})),
                    )
                    .map(|(st, b)| {
                        if st == 202 {
                            acked
                                .lock()
                                .unwrap()
                                .snapshots
                                .insert(b["snapshot"]["id"].as_str().unwrap().to_string());
                        }
                    }),
                None => Ok(()),
            },
            4 => match pick(&mut rng, &snaps) {
                Some(sn) => s
                    .try_admin(
                        "POST",
                        "/volumes",
                        Some(json!({"volume": {"snapshot_id": sn}})),
                    )
                    .map(|(st, b)| {
                        if st == 202 {
                            acked
                                .lock()
                                .unwrap()
                                .volumes
                                .insert(b["volume"]["id"].as_str().unwrap().to_string());
                        }
                    }),
                None => Ok(()),
            },
            5 => match pick(&mut rng, &snaps) {
                Some(sn) => {
                    acked.lock().unwrap().attempted_deletes.insert(sn.clone());
                    s.try_admin("DELETE", &format!("/snapshots/{sn}"), None)
                        .map(|(st, _)| {
                            if st == 202 {
                                acked.lock().unwrap().deleted_snapshots.insert(sn);
                            }
                        })
                }
                None => Ok(()),
            },
            6 => match pick(&mut rng, &vols) {
                Some(v) => {
                    acked.lock().unwrap().attempted_deletes.insert(v.clone());
                    s.try_admin("DELETE", &format!("/volumes/{v}?cascade=true"), None)
                        .map(|(st, _)| {
                            if st == 202 {
                                let mut a = acked.lock().unwrap();
                                a.deleted_volumes.insert(v.clone());
                                a.writes.retain(|(vol, _), _| vol != &v);
                            }
                        })
                }
                None => Ok(()),
            },
            _ => match pick(&mut rng, &vols) {
                Some(v) => {
                    counter = counter.wrapping_add(1).max(1);
                    let byte = counter;
                    acked
                        .lock()
                        .unwrap()
                        .pending_writes
                        .insert((v.clone(), thread), byte);
                    let r = s
                        .http
                        .put(s.v3(&format!("/volumes/{v}/data?offset={}", thread as u64 * MIB)))
                        .header("X-Auth-Token", format!("admin:{PROJECT}"))
                        .body(vec![byte; 64 * 1024])
                        .send();
                    match r {
                        Ok(resp) if resp.status().as_u16() == 204 => {
                            let mut a = acked.lock().unwrap();
                            a.pending_writes.remove(&(v.clone(), thread));
                            a.writes.insert((v, thread), byte);
                            Ok(())
                        }
                        Ok(_) => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                None => Ok(()),
            },
        };
        if result.is_err() {
            // The server died under us; the round is over.
            return;
        }
    }
}

trait TryAdmin {
    fn try_admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String>;
}

impl TryAdmin for Server {
    fn try_admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), self.v3(path))
            .header("X-Auth-Token", format!("admin:{PROJECT}"))
            .header("OpenStack-API-Version", "volume 3.71");
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = rb.send().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

fn list(s: &Server, collection: &str) -> Vec<Value> {
    let (st, b) = s.admin("GET", &format!("/{collection}/detail"), None);
    assert_eq!(st, 200);
    b[collection].as_array().unwrap().clone()
}

/// Waits for recovery to finish: nothing transitional left, and no
/// workflow (including garbage collection after deletes) still running.
fn settle(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let store = ember_store::sqlite::SqliteStore::open(&s.data_dir().join("ember.db")).unwrap();
    while !store.read().unwrap().workflows().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "workflows never finished:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    loop {
        let busy: Vec<String> = list(s, "volumes")
            .iter()
            .chain(list(s, "snapshots").iter())
            .filter(|r| {
                matches!(
                    r["status"].as_str(),
                    Some("creating" | "deleting" | "extending" | "reverting")
                )
            })
            .map(|r| format!("{} {}", r["id"], r["status"]))
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stuck after recovery: {busy:?}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_invariants(s: &Server, acked: &Acked) {
    let volumes = list(s, "volumes");
    let snapshots = list(s, "snapshots");
    let vol_ids: HashSet<String> = volumes
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    let snap_ids: HashSet<String> = snapshots
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    for v in acked.volumes.difference(&acked.deleted_volumes) {
        assert!(
            vol_ids.contains(v) || acked.attempted_deletes.contains(v),
            "acknowledged volume {v} vanished"
        );
    }
    for v in &acked.deleted_volumes {
        assert!(
            !vol_ids.contains(v),
            "acknowledged delete of volume {v} did not complete"
        );
    }
    for sn in &acked.deleted_snapshots {
        assert!(
            !snap_ids.contains(sn),
            "acknowledged delete of snapshot {sn} did not complete"
        );
    }
    for r in volumes.iter() {
        let attached = r["attachments"].as_array().is_some_and(|a| !a.is_empty());
        let ok = match r["status"].as_str() {
            Some("available" | "error") => !attached,
            Some("in-use") => attached,
            _ => false,
        };
        assert!(ok, "volume {r}");
    }
    for r in snapshots.iter() {
        assert!(
            matches!(r["status"].as_str(), Some("available" | "error")),
            "snapshot {r}"
        );
        let parent = r["volume_id"].as_str().unwrap();
        assert!(
            vol_ids.contains(parent),
            "snapshot {} outlived its volume",
            r["id"]
        );
    }
    let gigabytes: u64 = volumes
        .iter()
        .chain(snapshots.iter())
        .map(|r| r["size"].as_u64().unwrap())
        .sum();
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    assert_eq!(
        q["quota_set"]["volumes"]["in_use"],
        volumes.len() as u64,
        "{q}"
    );
    assert_eq!(
        q["quota_set"]["snapshots"]["in_use"],
        snapshots.len() as u64,
        "{q}"
    );
    assert_eq!(q["quota_set"]["gigabytes"]["in_use"], gigabytes, "{q}");
    for ((volume, thread), byte) in &acked.writes {
        if !vol_ids.contains(volume) {
            continue;
        }
        let got = s.read("volumes", volume, *thread as u64 * MIB, 4096);
        // The last acknowledged write, or a later one that was in flight.
        let pending = acked.pending_writes.get(&(volume.clone(), *thread));
        assert!(
            got[0] == *byte || Some(&got[0]) == pending,
            "volume {volume} thread {thread}: {} vs acked {byte}, pending {pending:?}",
            got[0]
        );
        assert!(got.iter().all(|b| *b == got[0]), "torn write in {volume}");
    }
    if s.backend == TestBackend::Qcow2 {
        check_all_images(&s.images_dir());
    }
}

/// No data without records or records without data (the backend's own
/// audit; on qcow2 also the files against the records, directly), and no
/// unfinished workflow.
fn check_no_orphans(s: &Server) {
    let problems = s.audit();
    assert!(problems.is_empty(), "{problems:#?}");
    let store = ember_store::sqlite::SqliteStore::open(&s.data_dir().join("ember.db")).unwrap();
    if s.backend == TestBackend::Qcow2 {
        let known: HashSet<String> = store
            .read()
            .unwrap()
            .all_images()
            .unwrap()
            .iter()
            .map(|i| format!("{}.qcow2", i.id))
            .collect();
        let files: HashSet<String> = image_files(&s.images_dir()).into_iter().collect();
        assert_eq!(files, known, "image files and image records differ");
    }
    assert!(
        store.read().unwrap().workflows().unwrap().is_empty(),
        "workflows left unfinished"
    );
}

#[test]
fn sigkill_during_mixed_load_loses_nothing_and_leaves_nothing() {
    for backend in test_backends() {
        eprintln!("backend {backend:?}");
        sigkill_during_mixed_load_on(&backend);
    }
}

fn sigkill_during_mixed_load_on(backend: &TestBackend) {
    let seed: u64 = std::env::var("EMBER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let rounds: u64 = std::env::var("EMBER_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut rng = Rng(seed | 1);
    let mut s = Server::start_on(backend);
    let (st, _) = s.admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
    );
    assert_eq!(st, 200);
    let acked = Mutex::new(Acked::default());
    // One volume stays attached all along; NBD clients write to it.
    let attached = s.create_volume(1);
    let (_, uri) = attach(&s, &attached, "rw");
    let nbd_log = Mutex::new(NbdLog::default());
    for round in 0..rounds {
        let stop = AtomicBool::new(false);
        let run_for = Duration::from_millis(50 + rng.below(250));
        let round_seed = rng.next();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (s, stop, acked) = (&s, &stop, &acked);
                scope.spawn(move || load(s, t, round_seed, stop, acked));
            }
            {
                let (s, stop, acked, log) = (&s, &stop, &acked, &nbd_log);
                let (volume, uri) = (&attached, &uri);
                scope.spawn(move || nbd_load(s, volume, uri, round_seed, stop, log, acked));
            }
            std::thread::sleep(run_for);
            s.kill_now();
            stop.store(true, Ordering::SeqCst);
        });
        s.restart();
        settle(&s);
        let a = acked.lock().unwrap();
        check_invariants(&s, &a);
        let nbd_acked = nbd_log.lock().unwrap().writes;
        check_nbd_writes(&s, &attached, &mut nbd_log.lock().unwrap());
        eprintln!("round {round}: {nbd_acked} FUA writes through NBD acknowledged so far");
        eprintln!(
            "round {round}: killed after {run_for:?}; {} volumes and {} snapshots acknowledged so far",
            a.volumes.len(),
            a.snapshots.len()
        );
    }
    // Let the collector finish, then stop and compare files with records.
    std::thread::sleep(Duration::from_millis(200));
    s.kill();
    check_no_orphans(&s);
}
