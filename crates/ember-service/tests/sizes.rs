//! Property test over sizes and quota operations: random sequences of
//! creates (blank, from snapshots, from volumes), extends, snapshots,
//! deletes and quota changes, with sizes drawn mostly from the edges
//! (0, 1, 2^31 - 2 .. 2^31, 2^34, 2^40, 2^63, u64::MAX). After every step:
//! no operation failed with an internal error, every live size is within
//! Cinder's cap, usage equals a recount of the live resources (so it can
//! never wrap, go negative or pass a limit by overflow), and usage never
//! exceeds a limit it was checked against. `PROPTEST_CASES=300` soaks.

use ember_model::*;
use ember_service::*;
use ember_storage::qcow2::Qcow2Driver;
use ember_store::sqlite::SqliteStore;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
enum Op {
    Create { size: u64 },
    CreateFromSnapshot { snap: usize, size: Option<u64> },
    CreateFromVolume { vol: usize, size: Option<u64> },
    Extend { vol: usize, size: u64 },
    Snapshot { vol: usize },
    DeleteVolume { vol: usize },
    DeleteSnapshot { snap: usize },
    SetGigabytes { limit: i64 },
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 1..6u64,
        1 => Just(0u64),
        1 => (MAX_SIZE_GIB - 2)..=(MAX_SIZE_GIB + 1),
        1 => Just(1u64 << 34),
        1 => Just((1u64 << 34) + 1),
        1 => Just(1u64 << 40),
        1 => Just(i64::MAX as u64),
        1 => Just(i64::MAX as u64 + 6),
        1 => Just(u64::MAX),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => size().prop_map(|size| Op::Create { size }),
        1 => (any::<usize>(), proptest::option::of(size()))
            .prop_map(|(snap, size)| Op::CreateFromSnapshot { snap, size }),
        1 => (any::<usize>(), proptest::option::of(size()))
            .prop_map(|(vol, size)| Op::CreateFromVolume { vol, size }),
        3 => (any::<usize>(), size()).prop_map(|(vol, size)| Op::Extend { vol, size }),
        2 => any::<usize>().prop_map(|vol| Op::Snapshot { vol }),
        1 => any::<usize>().prop_map(|vol| Op::DeleteVolume { vol }),
        1 => any::<usize>().prop_map(|snap| Op::DeleteSnapshot { snap }),
        1 => prop_oneof![
            Just(-1i64),
            0..40i64,
            Just(MAX_QUOTA_LIMIT),
            Just(MAX_QUOTA_LIMIT + 1),
            Just(i64::MAX),
            Just(i64::MIN),
        ]
        .prop_map(|limit| Op::SetGigabytes { limit }),
    ]
}

fn admin() -> Caller {
    Caller {
        user_id: UserId("admin".into()),
        project_id: ProjectId("p".into()),
        roles: vec!["admin".into()],
    }
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

/// A failure is fine (the request was refused); an internal error is not.
fn refused_cleanly<T>(what: &str, r: &Result<T>) {
    if let Err(ServiceError::Internal(e)) = r {
        panic!("{what}: internal error {e}");
    }
}

async fn check_invariants(svc: &Service) {
    let core = svc.core();
    let mut tx = core.store.read().unwrap();
    let p = ProjectId("p".into());
    let volumes: Vec<Volume> = tx
        .all_volumes()
        .unwrap()
        .into_iter()
        .filter(|v| !v.status.as_str().starts_with("error"))
        .collect();
    let all_volumes = tx.all_volumes().unwrap();
    let snapshots = tx.all_snapshots().unwrap();
    for v in &all_volumes {
        assert!(v.size_gib <= MAX_SIZE_GIB, "volume of {} GiB", v.size_gib);
    }
    let gb: i64 = all_volumes.iter().map(|v| v.size_gib as i64).sum::<i64>()
        + snapshots.iter().map(|s| s.size_gib as i64).sum::<i64>();
    let used = tx.quota_usage(&p, QuotaResource::Gigabytes).unwrap();
    assert_eq!(used, gb, "gigabytes in use differ from the live resources");
    assert_eq!(
        tx.quota_usage(&p, QuotaResource::Volumes).unwrap(),
        all_volumes.len() as i64
    );
    assert_eq!(
        tx.quota_usage(&p, QuotaResource::Snapshots).unwrap(),
        snapshots.len() as i64
    );
    let _ = volumes;
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        max_shrink_iters: 64,
        .. ProptestConfig::default()
    })]

    #[test]
    fn sizes_and_quotas_never_overflow(ops in proptest::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let driver = Qcow2Driver::new(dir.path().join("images")).unwrap();
            let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
            let svc = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
            svc.recover().await.unwrap();
            settle(&svc).await;
            let me = admin();
            let r = svc
                .set_quotas(
                    &me,
                    ProjectId("p".into()),
                    vec![(QuotaResource::Gigabytes, 30), (QuotaResource::Snapshots, -1), (QuotaResource::Volumes, -1)],
                    vec![],
                )
                .await;
            refused_cleanly("set quotas", &r);
            let mut limit: i64 = 30;
            let mut vols: Vec<VolumeId> = vec![];
            let mut snaps: Vec<SnapshotId> = vec![];
            for op in ops {
                let pick = |n: usize, len: usize| n % len.max(1);
                match op {
                    Op::Create { size } => {
                        let r = svc.create_volume(&me, CreateVolume { size_gib: Some(size), ..Default::default() }).await;
                        refused_cleanly("create", &r);
                        if size == 0 || size > MAX_SIZE_GIB {
                            assert!(r.is_err(), "a {size} GiB volume was accepted");
                        }
                        if let Ok(v) = r { vols.push(v.id); }
                    }
                    Op::CreateFromSnapshot { snap, size } if !snaps.is_empty() => {
                        let r = svc.create_volume(&me, CreateVolume {
                            snapshot_id: Some(snaps[pick(snap, snaps.len())]),
                            size_gib: size,
                            ..Default::default()
                        }).await;
                        refused_cleanly("create from snapshot", &r);
                        if let Ok(v) = r { vols.push(v.id); }
                    }
                    Op::CreateFromVolume { vol, size } if !vols.is_empty() => {
                        let r = svc.create_volume(&me, CreateVolume {
                            source_volid: Some(vols[pick(vol, vols.len())]),
                            size_gib: size,
                            ..Default::default()
                        }).await;
                        refused_cleanly("create from volume", &r);
                        if let Ok(v) = r { vols.push(v.id); }
                    }
                    Op::Extend { vol, size } if !vols.is_empty() => {
                        let r = svc.extend_volume(&me, vols[pick(vol, vols.len())], size).await;
                        refused_cleanly("extend", &r);
                        if size > MAX_SIZE_GIB {
                            assert!(r.is_err(), "an extend to {size} GiB was accepted");
                        }
                    }
                    Op::Snapshot { vol } if !vols.is_empty() => {
                        let r = svc.create_snapshot(&me, CreateSnapshot {
                            volume_id: vols[pick(vol, vols.len())],
                            name: None,
                            description: None,
                            metadata: Metadata::new(),
                            allow_in_use: true,
                        }).await;
                        refused_cleanly("snapshot", &r);
                        if let Ok(s) = r { snaps.push(s.id); }
                    }
                    Op::DeleteVolume { vol } if !vols.is_empty() => {
                        let id = vols[pick(vol, vols.len())];
                        let r = svc.delete_volume(&me, id, true, false).await;
                        refused_cleanly("delete volume", &r);
                    }
                    Op::DeleteSnapshot { snap } if !snaps.is_empty() => {
                        let r = svc.delete_snapshot(&me, snaps[pick(snap, snaps.len())], false).await;
                        refused_cleanly("delete snapshot", &r);
                    }
                    Op::SetGigabytes { limit: want } => {
                        let r = svc
                            .set_quotas(&me, ProjectId("p".into()), vec![(QuotaResource::Gigabytes, want)], vec![])
                            .await;
                        refused_cleanly("set quota", &r);
                        if !(-1..=MAX_QUOTA_LIMIT).contains(&want) {
                            assert!(r.is_err(), "a limit of {want} was accepted");
                        }
                        if r.is_ok() { limit = want; }
                    }
                    _ => {}
                }
                settle(&svc).await;
                check_invariants(&svc).await;
                let used = svc.core().store.read().unwrap()
                    .quota_usage(&ProjectId("p".into()), QuotaResource::Gigabytes).unwrap();
                assert!(used >= 0, "negative usage {used}");
                if limit >= 0 {
                    assert!(used <= limit, "{used} GiB in use past a limit of {limit}");
                }
            }
        });
    }
}
