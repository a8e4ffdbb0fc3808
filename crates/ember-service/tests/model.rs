//! Model-based data test: random sequences of writes, snapshots, clones
//! (volume from snapshot and from volume), reverts, deletes and restarts,
//! applied to the real service (SQLite, qcow2 files) and to a trivial
//! in-memory model; after every step every byte of every live volume and
//! snapshot must match the model. At the end every image passes
//! `qemu-img check`. `PROPTEST_CASES=500 cargo test -p ember-service --test
//! model` runs a longer soak.

use ember_model::*;
use ember_service::*;
use ember_storage::qcow2::Qcow2Driver;
use ember_store::sqlite::SqliteStore;
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The part of each (1 GiB) volume the test touches: 16 blocks of 4 KiB.
const BLOCK: usize = 4096;
const BLOCKS: usize = 16;
const REGION: usize = BLOCK * BLOCKS;

#[derive(Clone, Debug)]
enum Op {
    Write {
        vol: usize,
        block: usize,
        blocks: usize,
        byte: u8,
    },
    Snapshot {
        vol: usize,
    },
    CloneSnapshot {
        snap: usize,
    },
    CloneVolume {
        vol: usize,
    },
    RevertToLatest {
        vol: usize,
    },
    DeleteSnapshot {
        snap: usize,
    },
    DeleteVolume {
        vol: usize,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<usize>(), 0..BLOCKS, 1..4usize, 1..=255u8)
            .prop_map(|(vol, block, blocks, byte)| Op::Write { vol, block, blocks, byte }),
        3 => any::<usize>().prop_map(|vol| Op::Snapshot { vol }),
        1 => any::<usize>().prop_map(|snap| Op::CloneSnapshot { snap }),
        1 => any::<usize>().prop_map(|vol| Op::CloneVolume { vol }),
        1 => any::<usize>().prop_map(|vol| Op::RevertToLatest { vol }),
        2 => any::<usize>().prop_map(|snap| Op::DeleteSnapshot { snap }),
        1 => any::<usize>().prop_map(|vol| Op::DeleteVolume { vol }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    /// Live volumes and their first `REGION` bytes, oldest first.
    volumes: Vec<(VolumeId, Vec<u8>)>,
    /// Live snapshots: id, volume, bytes; in creation order.
    snapshots: Vec<(SnapshotId, VolumeId, Vec<u8>)>,
}

fn admin() -> Caller {
    Caller {
        user_id: UserId("admin".into()),
        project_id: ProjectId("p".into()),
        roles: vec!["admin".into()],
    }
}

fn open(dir: &Path) -> Service {
    let store = SqliteStore::open(&dir.join("m.db")).unwrap();
    let driver = Qcow2Driver::new(dir.join("images")).unwrap();
    Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default())
}

async fn settle(svc: &Service) {
    for _ in 0..5000 {
        if svc.running_workflows() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("workflows did not finish");
}

async fn wait_volume(svc: &Service, id: VolumeId) {
    settle(svc).await;
    let v = svc.volume(&admin(), id).await.unwrap();
    assert_eq!(
        v.status,
        VolumeStatus::Available,
        "volume {id}: {:?}",
        v.error_reason
    );
}

async fn new_volume(svc: &Service, req: CreateVolume) -> VolumeId {
    let v = svc.create_volume(&admin(), req).await.unwrap();
    wait_volume(svc, v.id).await;
    v.id
}

async fn check(svc: &Service, model: &Model) {
    for (id, bytes) in &model.volumes {
        let got = svc
            .read_volume(&admin(), *id, 0, REGION as u64)
            .await
            .unwrap();
        assert!(got == *bytes, "volume {id} differs from the model");
    }
    for (id, _, bytes) in &model.snapshots {
        let got = svc
            .read_snapshot(&admin(), *id, 0, REGION as u64)
            .await
            .unwrap();
        assert!(got == *bytes, "snapshot {id} differs from the model");
    }
}

async fn apply(svc: &mut Service, dir: &Path, model: &mut Model, op: &Op) {
    let pick = |n: usize, i: usize| (n > 0).then(|| i % n);
    match *op {
        Op::Write {
            vol,
            block,
            blocks,
            byte,
        } => {
            let Some(i) = pick(model.volumes.len(), vol) else {
                return;
            };
            let blocks = blocks.min(BLOCKS - block);
            let (id, bytes) = &mut model.volumes[i];
            let data = vec![byte; blocks * BLOCK];
            svc.write_volume(&admin(), *id, (block * BLOCK) as u64, data.clone())
                .await
                .unwrap();
            bytes[block * BLOCK..(block + blocks) * BLOCK].copy_from_slice(&data);
        }
        Op::Snapshot { vol } => {
            let Some(i) = pick(model.volumes.len(), vol) else {
                return;
            };
            let (volume, bytes) = model.volumes[i].clone();
            let s = svc
                .create_snapshot(
                    &admin(),
                    CreateSnapshot {
                        volume_id: volume,
                        name: None,
                        description: None,
                        metadata: Metadata::new(),
                        allow_in_use: false,
                    },
                )
                .await
                .unwrap();
            settle(svc).await;
            let s = svc.snapshot(&admin(), s.id).await.unwrap();
            assert_eq!(s.status, SnapshotStatus::Available);
            model.snapshots.push((s.id, volume, bytes));
        }
        Op::CloneSnapshot { snap } => {
            let Some(i) = pick(model.snapshots.len(), snap) else {
                return;
            };
            let (sid, _, bytes) = model.snapshots[i].clone();
            let req = CreateVolume {
                snapshot_id: Some(sid),
                ..Default::default()
            };
            let id = new_volume(svc, req).await;
            model.volumes.push((id, bytes));
        }
        Op::CloneVolume { vol } => {
            let Some(i) = pick(model.volumes.len(), vol) else {
                return;
            };
            let (source, bytes) = model.volumes[i].clone();
            let req = CreateVolume {
                source_volid: Some(source),
                ..Default::default()
            };
            let id = new_volume(svc, req).await;
            model.volumes.push((id, bytes));
        }
        Op::RevertToLatest { vol } => {
            let Some(i) = pick(model.volumes.len(), vol) else {
                return;
            };
            let volume = model.volumes[i].0;
            let Some((sid, _, bytes)) = model
                .snapshots
                .iter()
                .rev()
                .find(|(_, v, _)| *v == volume)
                .cloned()
            else {
                return;
            };
            svc.revert_volume(&admin(), volume, sid).await.unwrap();
            wait_volume(svc, volume).await;
            model.volumes[i].1 = bytes;
        }
        Op::DeleteSnapshot { snap } => {
            let Some(i) = pick(model.snapshots.len(), snap) else {
                return;
            };
            let (sid, _, _) = model.snapshots.remove(i);
            svc.delete_snapshot(&admin(), sid, false).await.unwrap();
            settle(svc).await;
            assert!(
                svc.snapshot(&admin(), sid).await.is_err(),
                "snapshot {sid} still there"
            );
        }
        Op::DeleteVolume { vol } => {
            let Some(i) = pick(model.volumes.len(), vol) else {
                return;
            };
            let volume = model.volumes[i].0;
            let has_snapshots = model.snapshots.iter().any(|(_, v, _)| *v == volume);
            let result = svc.delete_volume(&admin(), volume, false, false).await;
            if has_snapshots {
                assert!(result.is_err(), "a volume with snapshots was deleted");
                return;
            }
            result.unwrap();
            settle(svc).await;
            model.volumes.remove(i);
            assert!(svc.volume(&admin(), volume).await.is_err());
        }
        Op::Restart => {
            settle(svc).await;
            *svc = open(dir);
            svc.recover().await.unwrap();
            settle(svc).await;
        }
    }
}

fn qemu_img_check_all(dir: &Path) {
    for entry in std::fs::read_dir(dir.join("images")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "qcow2") {
            let out = std::process::Command::new("qemu-img")
                .args(["check", "-q", "-f", "qcow2"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(16),
        max_shrink_iters: 64,
        .. ProptestConfig::default()
    })]

    #[test]
    fn the_service_stores_exactly_what_the_model_does(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let mut svc = open(dir.path());
            svc.recover().await.unwrap();
            // Quotas are not under test here: lift them.
            let unlimited = [QuotaResource::Volumes, QuotaResource::Snapshots, QuotaResource::Gigabytes];
            svc.set_quotas(&admin(), ProjectId("p".into()), unlimited.iter().map(|r| (*r, -1)).collect(), vec![])
                .await
                .unwrap();
            let mut model = Model::default();
            let first = new_volume(&svc, CreateVolume { size_gib: Some(1), ..Default::default() }).await;
            model.volumes.push((first, vec![0; REGION]));
            for op in &ops {
                apply(&mut svc, dir.path(), &mut model, op).await;
                check(&svc, &model).await;
            }
            settle(&svc).await;
        });
        drop(rt);
        qemu_img_check_all(dir.path());
    }
}
