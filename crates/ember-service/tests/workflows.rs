//! Every workflow, failed at each step in turn, unwinds to a clean slate;
//! run with every step and undo executed twice, ends as a normal run does;
//! stopped after any step (a simulated crash) and resumed, completes.
//! Real SQLite, and every backend (`common::kinds`): real qcow2 files
//! (`qemu-img check` on every one), a real Ceph when configured. The clean
//! slate is the backend's own audit.

mod common;
use common::{Backing, Kind, kinds};

use ember_model::*;
use ember_service::engine::Workflow;
use ember_service::workflows::{
    backup_create::BackupCreate, backup_delete::BackupDelete, backup_restore::BackupRestore,
};
use ember_service::workflows::{snapshot_create::SnapshotCreate, snapshot_delete::SnapshotDelete};
use ember_service::workflows::{volume_create::VolumeCreate, volume_delete::VolumeDelete};
use ember_service::workflows::{volume_extend::VolumeExtend, volume_revert::VolumeRevert};
use ember_service::*;
use std::sync::Arc;
use std::time::Duration;

struct Env {
    svc: Service,
    backing: Backing,
}

fn admin() -> Caller {
    Caller {
        user_id: UserId("admin".into()),
        project_id: ProjectId("p".into()),
        roles: vec!["admin".into()],
    }
}

fn env(kind: Kind) -> Env {
    let backing = Backing::new(kind);
    Env {
        svc: backing.open(),
        backing,
    }
}

impl Env {
    async fn settle(&self) {
        for _ in 0..3000 {
            if self.svc.running_workflows() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("workflows did not finish");
    }

    async fn volume(&self, size: u64) -> Volume {
        let v = self
            .svc
            .create_volume(
                &admin(),
                CreateVolume {
                    size_gib: Some(size),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.settle().await;
        self.svc.volume(&admin(), v.id).await.unwrap()
    }

    async fn snapshot(&self, volume: VolumeId) -> Snapshot {
        let s = self
            .svc
            .create_snapshot(&admin(), create_snapshot(volume))
            .await
            .unwrap();
        self.settle().await;
        self.svc.snapshot(&admin(), s.id).await.unwrap()
    }

    async fn write(&self, volume: VolumeId, byte: u8) {
        self.svc
            .write_volume(&admin(), volume, 0, vec![byte; 4096])
            .await
            .unwrap();
    }

    async fn read(&self, volume: VolumeId) -> u8 {
        self.svc
            .read_volume(&admin(), volume, 0, 4096)
            .await
            .unwrap()[0]
    }

    /// Every backend's own audit finds nothing wrong (no data without its
    /// record or record without data, nothing released left behind, all
    /// data opens), quota equal to the live resources, no workflow record;
    /// on qcow2, `qemu-img check` passes on every file as well.
    fn verify_clean_slate(&self) {
        let core = self.svc.core();
        for backend in core.backends.all() {
            let problems = backend.audit().unwrap();
            assert!(
                problems.is_empty(),
                "backend {}: {problems:#?}",
                backend.name()
            );
        }
        let mut tx = core.store.read().unwrap();
        let volumes = tx.all_volumes().unwrap();
        let snapshots = tx.all_snapshots().unwrap();
        for v in &volumes {
            assert!(!v.status.is_transitional(), "volume left {}", v.status);
        }
        for s in &snapshots {
            assert!(!s.status.is_transitional(), "snapshot left {}", s.status);
        }
        let p = ProjectId("p".into());
        assert_eq!(
            tx.quota_usage(&p, QuotaResource::Volumes).unwrap(),
            volumes.len() as i64
        );
        assert_eq!(
            tx.quota_usage(&p, QuotaResource::Snapshots).unwrap(),
            snapshots.len() as i64
        );
        let gb: u64 = volumes
            .iter()
            .map(|v| v.size_gib)
            .chain(snapshots.iter().map(|s| s.size_gib))
            .sum();
        assert_eq!(
            tx.quota_usage(&p, QuotaResource::Gigabytes).unwrap(),
            gb as i64
        );
        // Per volume type too (everything here has the default type).
        let key = |r| ember_service::quotas::type_key(r, DEFAULT_VOLUME_TYPE_ID);
        assert_eq!(
            tx.keyed_quota_usage(&p, &key(QuotaResource::Volumes))
                .unwrap(),
            volumes.len() as i64
        );
        assert_eq!(
            tx.keyed_quota_usage(&p, &key(QuotaResource::Snapshots))
                .unwrap(),
            snapshots.len() as i64
        );
        assert_eq!(
            tx.keyed_quota_usage(&p, &key(QuotaResource::Gigabytes))
                .unwrap(),
            gb as i64
        );
        assert!(tx.workflows().unwrap().is_empty(), "workflow records left");
        // Backups: none in a transitional status, quota equal to them, and
        // the target holds exactly the chunks they reference.
        let backups = tx.backups(None).unwrap();
        for b in &backups {
            assert!(!b.status.is_transitional(), "backup left {}", b.status);
        }
        assert_eq!(
            tx.quota_usage(&p, QuotaResource::Backups).unwrap(),
            backups.len() as i64
        );
        assert_eq!(
            tx.quota_usage(&p, QuotaResource::BackupGigabytes).unwrap(),
            backups.iter().map(|b| b.size_gib as i64).sum::<i64>()
        );
        let mut referenced = std::collections::HashSet::new();
        for b in &backups {
            for (_, hash) in tx.backup_refs(b.id).unwrap() {
                referenced.insert(hash);
            }
        }
        assert!(
            tx.unreferenced_chunks(10).unwrap().is_empty(),
            "chunks nothing references"
        );
        let target = core.backup_target.get().unwrap();
        // The target's calls block: off the async worker.
        let stored = tokio::task::block_in_place(|| target.count_chunks().unwrap());
        assert_eq!(stored, referenced.len());
        for images in self.backing.images_dirs() {
            for entry in std::fs::read_dir(images).unwrap() {
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
    }
}

fn create_snapshot(volume: VolumeId) -> CreateSnapshot {
    CreateSnapshot {
        volume_id: volume,
        name: None,
        description: None,
        metadata: Metadata::new(),
        allow_in_use: true,
    }
}

/// The operations under test, each starting its workflow once.
#[derive(Clone, Copy, Debug)]
enum Op {
    CreateVolume,
    CloneVolume,
    VolumeFromSnapshot,
    DeleteVolume,
    CreateSnapshot,
    DeleteSnapshot,
    Revert,
    Extend,
    CreateBackup,
    IncrementalBackup,
    DeleteBackup,
    RestoreBackup,
}

impl Op {
    fn kind(self) -> &'static str {
        match self {
            Op::CreateVolume | Op::CloneVolume | Op::VolumeFromSnapshot => VolumeCreate::KIND,
            Op::DeleteVolume => VolumeDelete::KIND,
            Op::CreateSnapshot => SnapshotCreate::KIND,
            Op::DeleteSnapshot => SnapshotDelete::KIND,
            Op::Revert => VolumeRevert::KIND,
            Op::Extend => VolumeExtend::KIND,
            Op::CreateBackup | Op::IncrementalBackup => BackupCreate::KIND,
            Op::DeleteBackup => BackupDelete::KIND,
            Op::RestoreBackup => BackupRestore::KIND,
        }
    }

    fn steps(self) -> usize {
        match self {
            Op::CreateVolume | Op::CloneVolume | Op::VolumeFromSnapshot => {
                VolumeCreate::steps().len()
            }
            Op::DeleteVolume => VolumeDelete::steps().len(),
            Op::CreateSnapshot => SnapshotCreate::steps().len(),
            Op::DeleteSnapshot => SnapshotDelete::steps().len(),
            Op::Revert => VolumeRevert::steps().len(),
            Op::Extend => VolumeExtend::steps().len(),
            Op::CreateBackup | Op::IncrementalBackup => BackupCreate::steps().len(),
            Op::DeleteBackup => BackupDelete::steps().len(),
            Op::RestoreBackup => BackupRestore::steps().len(),
        }
    }
}

const ALL: [Op; 12] = [
    Op::CreateVolume,
    Op::CloneVolume,
    Op::VolumeFromSnapshot,
    Op::DeleteVolume,
    Op::CreateSnapshot,
    Op::DeleteSnapshot,
    Op::Revert,
    Op::Extend,
    Op::CreateBackup,
    Op::IncrementalBackup,
    Op::DeleteBackup,
    Op::RestoreBackup,
];

fn backup_of(volume: VolumeId, incremental: bool) -> CreateBackup {
    CreateBackup {
        volume_id: volume,
        incremental,
        ..Default::default()
    }
}

/// Sets up a volume (byte 1 snapshotted, then byte 2 written) and runs `op`.
/// Returns the volume, the snapshot and the id of whatever `op` created.
async fn scenario(
    e: &Env,
    op: Op,
    arm: impl Fn(&ember_service::engine::Faults),
) -> (VolumeId, SnapshotId) {
    let v = e.volume(1).await;
    e.write(v.id, 1).await;
    let s = e.snapshot(v.id).await;
    e.write(v.id, 2).await;
    let caller = admin();
    // What the backup operations work on, made before the faults are armed.
    let earlier = match op {
        Op::IncrementalBackup | Op::DeleteBackup | Op::RestoreBackup => {
            let b = e.svc.create_backup(&caller, backup_of(v.id, false)).await;
            e.settle().await;
            Some(b.unwrap().id)
        }
        _ => None,
    };
    arm(&e.svc.core().faults);
    let result = match op {
        Op::CreateVolume => e
            .svc
            .create_volume(
                &caller,
                CreateVolume {
                    size_gib: Some(1),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        Op::CloneVolume => e
            .svc
            .create_volume(
                &caller,
                CreateVolume {
                    source_volid: Some(v.id),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        Op::VolumeFromSnapshot => e
            .svc
            .create_volume(
                &caller,
                CreateVolume {
                    snapshot_id: Some(s.id),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        Op::DeleteVolume => e.svc.delete_volume(&caller, v.id, true, false).await,
        Op::CreateSnapshot => e
            .svc
            .create_snapshot(&caller, create_snapshot(v.id))
            .await
            .map(drop),
        Op::DeleteSnapshot => e.svc.delete_snapshot(&caller, s.id, false).await,
        Op::Revert => e.svc.revert_volume(&caller, v.id, s.id).await,
        Op::Extend => e.svc.extend_volume(&caller, v.id, 2).await,
        Op::CreateBackup => e
            .svc
            .create_backup(&caller, backup_of(v.id, false))
            .await
            .map(drop),
        Op::IncrementalBackup => e
            .svc
            .create_backup(&caller, backup_of(v.id, true))
            .await
            .map(drop),
        Op::DeleteBackup => e.svc.delete_backup(&caller, earlier.unwrap(), false).await,
        Op::RestoreBackup => e
            .svc
            .restore_backup(&caller, earlier.unwrap(), RestoreBackup::default())
            .await
            .map(drop),
    };
    result.unwrap();
    e.settle().await;
    (v.id, s.id)
}

/// The data promise after any outcome: the snapshot (if it still exists)
/// reads byte 1; the volume (if it exists) reads 2, or 1 after a revert.
async fn verify_data(e: &Env, v: VolumeId, s: SnapshotId, op: Op, succeeded: bool) {
    // A volume a restore made reads what the backup read: byte 2.
    if let Op::RestoreBackup = op {
        let volumes = e.svc.core().store.read().unwrap().all_volumes().unwrap();
        for other in volumes.iter().filter(|o| o.id != v) {
            if other.status == VolumeStatus::Available {
                assert_eq!(e.read(other.id).await, 2, "{op:?}: restored volume");
            } else {
                assert!(!succeeded, "{op:?}: restored volume {}", other.status);
            }
        }
    }
    if let Ok(snap) = e.svc.snapshot(&admin(), s).await
        && snap.status == SnapshotStatus::Available
    {
        assert_eq!(
            e.svc.read_snapshot(&admin(), s, 0, 1).await.unwrap()[0],
            1,
            "{op:?}"
        );
    }
    if let Ok(vol) = e.svc.volume(&admin(), v).await
        && vol.status == VolumeStatus::Available
    {
        let got = e.read(v).await;
        match (op, succeeded) {
            (Op::Revert, true) => assert_eq!(got, 1, "{op:?}"),
            // A revert that failed late may already have switched.
            (Op::Revert, false) => assert!(got == 1 || got == 2, "{op:?}: {got}"),
            _ => assert_eq!(got, 2, "{op:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_failing_unwinds_to_a_clean_slate() {
    for (kind, op) in kinds().into_iter().flat_map(|k| ALL.map(|op| (k, op))) {
        for step in 0..op.steps() {
            let e = env(kind);
            let (v, s) = scenario(&e, op, |f| f.fail_step(op.kind(), step)).await;
            verify_data(&e, v, s, op, false).await;
            eprintln!("{kind:?}: {op:?} failing at step {step}");
            e.verify_clean_slate();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_and_undo_run_twice_gives_the_same_result() {
    for (kind, op) in kinds().into_iter().flat_map(|k| ALL.map(|op| (k, op))) {
        let e = env(kind);
        let (v, s) = scenario(&e, op, |f| f.repeat_steps(true)).await;
        verify_data(&e, v, s, op, true).await;
        e.verify_clean_slate();
        // Failing runs with repeated undos are clean too.
        for step in 0..op.steps() {
            let e = env(kind);
            let (v, s) = scenario(&e, op, |f| {
                f.repeat_steps(true);
                f.fail_step(op.kind(), step);
            })
            .await;
            verify_data(&e, v, s, op, false).await;
            e.verify_clean_slate();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_step_resumes_to_completion() {
    for (kind, op) in kinds().into_iter().flat_map(|k| ALL.map(|op| (k, op))) {
        for step in 0..op.steps() {
            let e = env(kind);
            let (v, s) = scenario(&e, op, |f| f.crash_after_step(op.kind(), step)).await;
            // The process "died": the record is still there. Recovery resumes it.
            let resumed = e.svc.recover().await.unwrap();
            assert!(
                resumed >= 1,
                "{kind:?}: {op:?} step {step}: nothing to resume"
            );
            e.settle().await;
            verify_data(&e, v, s, op, true).await;
            e.verify_clean_slate();
            if let Ok(vol) = e.svc.volume(&admin(), v).await {
                assert!(
                    matches!(vol.status, VolumeStatus::Available),
                    "{op:?} step {step}: volume {}",
                    vol.status
                );
            }
        }
    }
}

/// Readers open chains from the store while garbage collection merges and
/// unlinks the images under them: every read succeeds with the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_race_snapshot_deletes_without_errors() {
    for kind in kinds() {
        reads_race_snapshot_deletes_on(kind).await;
    }
}

async fn reads_race_snapshot_deletes_on(kind: Kind) {
    let e = env(kind);
    let v = e.volume(1).await;
    let mut snaps = vec![];
    for k in 1..=8u8 {
        // Each layer holds its own byte at its own offset, and at 0.
        e.svc
            .write_volume(&admin(), v.id, k as u64 * 65536, vec![k; 4096])
            .await
            .unwrap();
        e.write(v.id, k).await;
        snaps.push(e.snapshot(v.id).await.id);
    }
    let newest = *snaps.last().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let svc = e.svc.clone();
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for k in 1..=8u8 {
                    let got = svc
                        .read_snapshot(&admin(), newest, k as u64 * 65536, 4096)
                        .await
                        .expect("snapshot read");
                    assert_eq!(got, vec![k; 4096]);
                }
                reads += 1;
            }
            reads
        })
    };
    for s in &snaps[..7] {
        e.svc.delete_snapshot(&admin(), *s, false).await.unwrap();
        e.settle().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert_eq!(e.read(v.id).await, 8);
    e.verify_clean_slate();
}

/// A reader that opened a snapshot (an NBD export of it, a backup reading
/// it) keeps reading the snapshot's bytes after the snapshot is deleted;
/// its data goes once the reader has closed. (librbd itself removes an
/// image or snapshot that only read-only handles have open: they register
/// no watch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_snapshot_stays_readable_until_its_reader_closes() {
    for kind in kinds() {
        let e = env(kind);
        let v = e.volume(1).await;
        e.write(v.id, 1).await;
        let s = e.snapshot(v.id).await;
        e.write(v.id, 2).await;
        let core = e.svc.core().clone();
        let reader = tokio::task::block_in_place(|| core.open_snapshot(&s)).unwrap();
        e.svc.delete_snapshot(&admin(), s.id, false).await.unwrap();
        e.settle().await;
        assert!(e.svc.snapshot(&admin(), s.id).await.is_err(), "{kind:?}");
        let mut buf = vec![0u8; 4096];
        tokio::task::block_in_place(|| reader.read_at(&mut buf, 0)).unwrap();
        assert!(
            buf.iter().all(|b| *b == 1),
            "{kind:?}: the deleted snapshot's reader read {} at 0, not 1",
            buf[0]
        );
        drop(reader);
        tokio::task::block_in_place(|| core.collect_garbage()).unwrap();
        e.verify_clean_slate();
        assert_eq!(e.read(v.id).await, 2, "{kind:?}");
    }
}

/// How a migration run is disturbed.
#[derive(Clone, Copy, Debug)]
enum Disturb {
    Fail(usize),
    Twice,
    TwiceFail(usize),
    Crash(usize),
}

/// Moving a volume between every pair of backends: each step failing (the
/// volume stays whole where it was), every step and undo run twice, a crash
/// after each step (resumed to completion); bytes intact, every backend's
/// audit clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_between_backends_unwinds_or_completes_cleanly() {
    use ember_service::workflows::volume_migrate::VolumeMigrate;
    let kinds = kinds();
    let mut pairs = vec![];
    for a in &kinds {
        for b in &kinds {
            pairs.push((*a, *b));
        }
    }
    let steps = VolumeMigrate::steps().len();
    let mut plans = vec![Disturb::Twice];
    for step in 0..steps {
        plans.extend([
            Disturb::Fail(step),
            Disturb::TwiceFail(step),
            Disturb::Crash(step),
        ]);
    }
    for (a, b) in pairs {
        for plan in &plans {
            eprintln!("{a:?} -> {b:?}: {plan:?}");
            let backing = Backing::with(&[a, b]);
            let e = Env {
                svc: backing.open(),
                backing,
            };
            let v = e.volume(1).await;
            e.write(v.id, 1).await;
            e.svc
                .write_volume(&admin(), v.id, 1 << 20, vec![2; 4096])
                .await
                .unwrap();
            let faults = &e.svc.core().faults;
            match *plan {
                Disturb::Fail(step) => faults.fail_step(VolumeMigrate::KIND, step),
                Disturb::Twice => faults.repeat_steps(true),
                Disturb::TwiceFail(step) => {
                    faults.repeat_steps(true);
                    faults.fail_step(VolumeMigrate::KIND, step);
                }
                Disturb::Crash(step) => faults.crash_after_step(VolumeMigrate::KIND, step),
            }
            e.svc
                .migrate_volume(&admin(), v.id, "ember@b1".into())
                .await
                .unwrap();
            e.settle().await;
            if let Disturb::Crash(_) = plan {
                assert!(e.svc.recover().await.unwrap() >= 1, "nothing to resume");
                e.settle().await;
            }
            let moved = e.svc.volume(&admin(), v.id).await.unwrap();
            assert_eq!(moved.status, VolumeStatus::Available, "{plan:?}");
            let failed = matches!(plan, Disturb::Fail(_) | Disturb::TwiceFail(_));
            // A failure in the last step (collecting) leaves a moved volume.
            let last = matches!(plan, Disturb::Fail(s) | Disturb::TwiceFail(s) if *s == steps - 1);
            let expect = if failed && !last { "b0" } else { "b1" };
            assert_eq!(moved.backend, expect, "{plan:?}");
            assert_eq!(
                moved.migration_status.as_deref(),
                Some(if failed && !last { "error" } else { "success" }),
                "{plan:?}"
            );
            assert_eq!(e.read(v.id).await, 1, "{plan:?}");
            assert_eq!(
                e.svc
                    .read_volume(&admin(), v.id, 1 << 20, 4096)
                    .await
                    .unwrap()[0],
                2,
                "{plan:?}"
            );
            e.verify_clean_slate();
        }
    }
}
