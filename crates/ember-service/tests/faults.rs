//! Faults and races. A full disk: a fault-injecting wrapper around the real qcow2 driver
//! answers ENOSPC to new images and to writes while "full". Operations fail
//! with a visible error state and reason (never stuck in a transitional
//! status), reads keep working, quota usage stays equal to the live
//! resources, and everything works again once space returns.

use ember_model::*;
use ember_service::*;
use ember_storage::qcow2::Qcow2Driver;
use ember_storage::{BlockIo, Capacity, Chain, ImageId, StorageDriver, StorageError};
use ember_store::sqlite::SqliteStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Default)]
struct Full {
    inner: Option<Qcow2Driver>,
    full: Arc<AtomicBool>,
    /// Layers merged into their child so far (data copied).
    merges: Arc<std::sync::atomic::AtomicUsize>,
    /// While set, every flush fails with "no space" (writes still land).
    flush_fails: Arc<AtomicBool>,
    /// Chains opened so far.
    opens: Arc<std::sync::atomic::AtomicUsize>,
}

type R<T> = ember_storage::Result<T>;

impl Full {
    fn on(inner: Qcow2Driver) -> Full {
        Full {
            inner: Some(inner),
            ..Default::default()
        }
    }

    fn inner(&self) -> &Qcow2Driver {
        self.inner.as_ref().expect("a driver underneath")
    }

    fn check(&self) -> R<()> {
        if self.full.load(Ordering::SeqCst) {
            Err(StorageError::NoSpace)
        } else {
            Ok(())
        }
    }
}

impl StorageDriver for Full {
    fn create_image(&self, image: ImageId, size: u64, backing: Option<ImageId>) -> R<()> {
        self.check()?;
        self.inner().create_image(image, size, backing)
    }
    fn delete_image(&self, image: ImageId) -> R<()> {
        self.inner().delete_image(image)
    }
    fn image_exists(&self, image: ImageId) -> bool {
        self.inner().image_exists(image)
    }
    fn grow(&self, chain: &Chain, new_size: u64) -> R<()> {
        self.check()?;
        self.inner().grow(chain, new_size)
    }
    fn open(&self, chain: &Chain, writable: bool) -> R<Arc<dyn BlockIo>> {
        let io = self.inner().open(chain, writable)?;
        self.opens.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(FullIo {
            inner: io,
            full: self.full.clone(),
            flush_fails: self.flush_fails.clone(),
        }))
    }
    fn merge_into_child(&self, chain: &Chain) -> R<()> {
        self.merges.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner().merge_into_child(chain)
    }
    fn list_images(&self) -> R<Vec<ImageId>> {
        self.inner().list_images()
    }
    fn capacity(&self) -> R<Capacity> {
        self.inner().capacity()
    }
    fn remove_temporaries(&self) -> R<()> {
        self.inner().remove_temporaries()
    }
    fn repair_after_crash(&self) -> R<Vec<ImageId>> {
        self.inner().repair_after_crash()
    }
    fn repair_marked(&self) -> R<usize> {
        self.inner().repair_marked()
    }
}

struct FullIo {
    inner: Arc<dyn BlockIo>,
    full: Arc<AtomicBool>,
    flush_fails: Arc<AtomicBool>,
}

impl BlockIo for FullIo {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> R<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> R<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StorageError::NoSpace);
        }
        self.inner.write_at(buf, offset)
    }
    fn write_zeroes(&self, offset: u64, length: u64) -> R<()> {
        self.inner.write_zeroes(offset, length)
    }
    fn flush(&self) -> R<()> {
        if self.flush_fails.load(Ordering::SeqCst) {
            return Err(StorageError::NoSpace);
        }
        self.inner.flush()
    }
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

/// A new 1 GiB volume, created and settled.
async fn one_gib_volume(svc: &Service) -> VolumeId {
    let req = CreateVolume {
        size_gib: Some(1),
        ..Default::default()
    };
    let id = svc.create_volume(&admin(), req).await.unwrap().id;
    settle(svc).await;
    id
}

fn snapshot_of(volume: VolumeId) -> CreateSnapshot {
    CreateSnapshot {
        volume_id: volume,
        name: None,
        description: None,
        metadata: Metadata::new(),
        allow_in_use: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_operations_visibly_and_everything_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let driver = Full {
        full: full.clone(),
        ..Full::on(Qcow2Driver::new(dir.path().join("images")).unwrap())
    };
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let svc = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
    svc.recover().await.unwrap();

    let vol = one_gib_volume(&svc).await;
    svc.write_volume(&admin(), vol, 0, vec![7; 4096])
        .await
        .unwrap();

    full.store(true, Ordering::SeqCst);
    // A write fails with "no space"; the bytes already there stay readable.
    let err = svc
        .write_volume(&admin(), vol, 0, vec![8; 4096])
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::StorageFull), "{err:?}");
    assert_eq!(
        svc.read_volume(&admin(), vol, 0, 4096).await.unwrap(),
        vec![7; 4096]
    );
    // A snapshot is accepted and ends `error` with the reason.
    let s = svc
        .create_snapshot(&admin(), snapshot_of(vol))
        .await
        .unwrap();
    settle(&svc).await;
    let s = svc.snapshot(&admin(), s.id).await.unwrap();
    assert_eq!(s.status, SnapshotStatus::Error);
    let reason = s.error_reason.clone().unwrap_or_default();
    assert!(reason.to_lowercase().contains("space"), "{reason}");
    // A new volume ends `error` too; the existing one is untouched.
    let v2 = svc
        .create_volume(
            &admin(),
            CreateVolume {
                size_gib: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    settle(&svc).await;
    let v2 = svc.volume(&admin(), v2).await.unwrap();
    assert_eq!(v2.status, VolumeStatus::Error);
    assert_eq!(
        svc.volume(&admin(), vol).await.unwrap().status,
        VolumeStatus::Available
    );

    // Space returns: everything works again, failed resources can go.
    full.store(false, Ordering::SeqCst);
    svc.write_volume(&admin(), vol, 0, vec![9; 4096])
        .await
        .unwrap();
    let ok = svc
        .create_snapshot(&admin(), snapshot_of(vol))
        .await
        .unwrap();
    settle(&svc).await;
    let ok = svc.snapshot(&admin(), ok.id).await.unwrap();
    assert_eq!(ok.status, SnapshotStatus::Available);
    assert_eq!(
        svc.read_snapshot(&admin(), ok.id, 0, 4096).await.unwrap(),
        vec![9; 4096]
    );
    svc.delete_snapshot(&admin(), s.id, false).await.unwrap();
    svc.delete_volume(&admin(), v2.id, false, false)
        .await
        .unwrap();
    settle(&svc).await;
    assert!(svc.snapshot(&admin(), s.id).await.is_err());
    assert!(svc.volume(&admin(), v2.id).await.is_err());

    // Quota usage equals what is left: one volume, one snapshot.
    let core = svc.core();
    let mut tx = core.store.read().unwrap();
    let p = ProjectId("p".into());
    assert_eq!(tx.quota_usage(&p, QuotaResource::Volumes).unwrap(), 1);
    assert_eq!(tx.quota_usage(&p, QuotaResource::Snapshots).unwrap(), 1);
    assert_eq!(tx.quota_usage(&p, QuotaResource::Gigabytes).unwrap(), 2);
    let left: Vec<_> = tx.workflows().unwrap().into_iter().map(|w| w.id).collect();
    assert!(left.is_empty(), "workflows left behind: {left:?}");
}

/// Many clients at once on one volume: snapshot creates and deletes, and
/// clones racing the deletes of their snapshots. Every request is answered
/// (a success or a clean refusal), nothing stays transitional, quota usage
/// equals the live resources, and every clone has the bytes of its snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_deletes_and_clones_keep_quota_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let driver = Qcow2Driver::new(dir.path().join("images")).unwrap();
    let svc = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
    svc.recover().await.unwrap();
    let p = ProjectId("p".into());
    let unlimited = [
        QuotaResource::Volumes,
        QuotaResource::Snapshots,
        QuotaResource::Gigabytes,
    ];
    svc.set_quotas(
        &admin(),
        p.clone(),
        unlimited.iter().map(|r| (*r, -1)).collect(),
        vec![],
    )
    .await
    .unwrap();
    let vol = one_gib_volume(&svc).await;
    svc.write_volume(&admin(), vol, 0, vec![0x42; 4096])
        .await
        .unwrap();

    let mut tasks = vec![];
    for t in 0..16u8 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let mut clones = vec![];
            let who = admin();
            for i in 0..6 {
                let s = svc
                    .create_snapshot(&admin(), snapshot_of(vol))
                    .await
                    .unwrap();
                // Race a clone of the snapshot against its delete.
                let clone = svc.create_volume(
                    &who,
                    CreateVolume {
                        snapshot_id: Some(s.id),
                        ..Default::default()
                    },
                );
                let delete = svc.delete_snapshot(&who, s.id, false);
                let (clone, delete) = tokio::join!(clone, delete);
                match clone {
                    Ok(v) => clones.push(v.id),
                    // The delete won: the snapshot is going or gone.
                    Err(e) => assert!(
                        matches!(
                            e,
                            ServiceError::InvalidSnapshot(_) | ServiceError::SnapshotNotFound(_)
                        ),
                        "task {t} round {i}: {e:?}"
                    ),
                }
                if let Err(e) = delete {
                    // The clone won the race for the status check.
                    assert!(
                        matches!(e, ServiceError::InvalidSnapshot(_)),
                        "task {t} round {i}: {e:?}"
                    );
                    svc.delete_snapshot(&admin(), s.id, false)
                        .await
                        .unwrap_or(());
                }
            }
            clones
        }));
    }
    let mut clones = vec![];
    for t in tasks {
        clones.extend(t.await.unwrap());
    }
    settle(&svc).await;
    for c in &clones {
        let v = svc.volume(&admin(), *c).await.unwrap();
        assert_eq!(v.status, VolumeStatus::Available, "{:?}", v.error_reason);
        assert_eq!(
            svc.read_volume(&admin(), *c, 0, 4096).await.unwrap(),
            vec![0x42; 4096]
        );
    }
    let core = svc.core();
    let mut tx = core.store.read().unwrap();
    let volumes = tx.all_volumes().unwrap();
    let snapshots = tx.all_snapshots().unwrap();
    for s in &snapshots {
        assert!(
            !s.status.is_transitional(),
            "snapshot {} left {}",
            s.id,
            s.status
        );
    }
    assert_eq!(volumes.len(), 1 + clones.len());
    assert_eq!(
        tx.quota_usage(&p, QuotaResource::Volumes).unwrap(),
        volumes.len() as i64
    );
    assert_eq!(
        tx.quota_usage(&p, QuotaResource::Snapshots).unwrap(),
        snapshots.len() as i64
    );
    let gib: u64 = volumes.iter().map(|v| v.size_gib).sum::<u64>()
        + snapshots.iter().map(|s| s.size_gib).sum::<u64>();
    assert_eq!(
        tx.quota_usage(&p, QuotaResource::Gigabytes).unwrap(),
        gib as i64
    );
    assert!(tx.workflows().unwrap().is_empty());
}

/// Garbage collection copies no data it will throw away: deleting a volume
/// with its snapshots (cascade) leaves a chain of unowned layers, each
/// holding data, which go leaf first without a single merge; and deleting
/// two snapshots of a live volume merges each layer once, into an owned
/// child. The data the volume reads stays what it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_never_merges_into_a_layer_it_then_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let merges: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let driver = Full {
        merges: merges.clone(),
        ..Full::on(Qcow2Driver::new(dir.path().join("images")).unwrap())
    };
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let svc = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
    svc.recover().await.unwrap();

    // A chain of four layers, each with data of its own, then the volume
    // and its snapshots deleted at once.
    let doomed = one_gib_volume(&svc).await;
    for layer in 0..4u8 {
        svc.write_volume(
            &admin(),
            doomed,
            layer as u64 * 65536,
            vec![layer + 1; 65536],
        )
        .await
        .unwrap();
        svc.create_snapshot(&admin(), snapshot_of(doomed))
            .await
            .unwrap();
        settle(&svc).await;
    }
    svc.delete_volume(&admin(), doomed, true, false)
        .await
        .unwrap();
    settle(&svc).await;
    assert_eq!(
        merges.load(Ordering::SeqCst),
        0,
        "a deleted chain was merged"
    );
    assert!(svc.volume(&admin(), doomed).await.is_err());

    // A live volume whose two snapshots are deleted: one merge per layer,
    // and every byte still reads back.
    let kept = one_gib_volume(&svc).await;
    let mut snaps = vec![];
    for layer in 0..2u8 {
        svc.write_volume(&admin(), kept, layer as u64 * 65536, vec![layer + 1; 65536])
            .await
            .unwrap();
        snaps.push(
            svc.create_snapshot(&admin(), snapshot_of(kept))
                .await
                .unwrap()
                .id,
        );
        settle(&svc).await;
    }
    for s in snaps {
        svc.delete_snapshot(&admin(), s, false).await.unwrap();
        settle(&svc).await;
    }
    assert_eq!(merges.load(Ordering::SeqCst), 2);
    for layer in 0..2u8 {
        assert_eq!(
            svc.read_volume(&admin(), kept, layer as u64 * 65536, 65536)
                .await
                .unwrap(),
            vec![layer + 1; 65536]
        );
    }
}

/// The class of defect behind "a full disk corrupts an attached volume":
/// an open chain closed although its flush failed, losing the tables it
/// caches (and with them acknowledged writes), then reopened from a file
/// that does not know them. Every operation that quiesces a volume
/// (snapshot, extend, revert) must, when the flush fails, leave the chain
/// open exactly as it was: no reopen, every byte readable, and the volume
/// usable once flushes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_never_closes_the_open_chain() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Full::on(Qcow2Driver::new(dir.path().join("images")).unwrap());
    let (flush_fails, opens) = (driver.flush_fails.clone(), driver.opens.clone());
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let svc = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
    svc.recover().await.unwrap();

    let vol = one_gib_volume(&svc).await;
    svc.write_volume(&admin(), vol, 0, vec![1; 65536])
        .await
        .unwrap();
    let first = svc
        .create_snapshot(&admin(), snapshot_of(vol))
        .await
        .unwrap();
    settle(&svc).await;
    svc.write_volume(&admin(), vol, 65536, vec![2; 65536])
        .await
        .unwrap();
    let opened = opens.load(Ordering::SeqCst);

    flush_fails.store(true, Ordering::SeqCst);
    // A snapshot: refused or failed, never taken from a half-flushed chain.
    match svc.create_snapshot(&admin(), snapshot_of(vol)).await {
        Err(e) => assert!(matches!(e, ServiceError::StorageFull), "{e:?}"),
        Ok(s) => {
            settle(&svc).await;
            let s = svc.snapshot(&admin(), s.id).await.unwrap();
            assert_eq!(s.status, SnapshotStatus::Error, "{s:?}");
        }
    }
    // A revert and an extend quiesce too (a failed extend leaves the
    // volume `error_extending`, as in Cinder; an admin resets it).
    let _ = svc.revert_volume(&admin(), vol, first.id).await;
    settle(&svc).await;
    let _ = svc.extend_volume(&admin(), vol, 2).await;
    settle(&svc).await;
    svc.reset_volume_status(&admin(), vol, VolumeStatus::Available)
        .await
        .unwrap();
    assert!(
        svc.read_volume(&admin(), vol, 0, 131072).await.unwrap()
            == [vec![1; 65536], vec![2; 65536]].concat(),
        "acknowledged writes lost after a failed flush"
    );
    assert_eq!(
        opens.load(Ordering::SeqCst),
        opened,
        "a chain was closed with an unflushed cache and opened again"
    );

    // Flushes work again: so does everything else, on the same bytes.
    flush_fails.store(false, Ordering::SeqCst);
    let again = svc
        .create_snapshot(&admin(), snapshot_of(vol))
        .await
        .unwrap();
    settle(&svc).await;
    let again = svc.snapshot(&admin(), again.id).await.unwrap();
    assert_eq!(again.status, SnapshotStatus::Available);
    assert!(
        svc.read_snapshot(&admin(), again.id, 0, 131072)
            .await
            .unwrap()
            == [vec![1; 65536], vec![2; 65536]].concat(),
        "the snapshot lacks acknowledged writes"
    );
}

/// The class of defect behind "an extend racing a snapshot delete ends
/// `error_extending`": a path that reads a chain and opens its files
/// without the lock garbage collection honours, so a layer is deleted (or
/// half-merged) between the two. Extends, snapshot reads and clones run
/// while snapshots sharing layers with them are deleted and merged away;
/// no operation may fail, and every byte stays where it was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chain_readers_never_race_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Full::on(Qcow2Driver::new(dir.path().join("images")).unwrap());
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let svc = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
    svc.recover().await.unwrap();
    let caller = admin();
    svc.set_quotas(
        &caller,
        ProjectId("p".into()),
        vec![
            (QuotaResource::Snapshots, -1),
            (QuotaResource::Gigabytes, -1),
            (QuotaResource::Volumes, -1),
        ],
        vec![],
    )
    .await
    .unwrap();
    for round in 0..12u8 {
        let vol = one_gib_volume(&svc).await;
        // Layers with data of their own, each frozen by a snapshot.
        let mut snaps = vec![];
        for layer in 0..4u8 {
            svc.write_volume(&caller, vol, layer as u64 * 65536, vec![layer + 1; 65536])
                .await
                .unwrap();
            let s = svc
                .create_snapshot(&caller, snapshot_of(vol))
                .await
                .unwrap();
            snaps.push(s.id);
        }
        settle(&svc).await;
        // A clone shares the lower layers.
        let clone = svc
            .create_volume(
                &caller,
                CreateVolume {
                    snapshot_id: Some(snaps[2]),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .id;
        settle(&svc).await;
        let deletes = {
            let svc = svc.clone();
            let snaps = snaps.clone();
            tokio::spawn(async move {
                for s in [snaps[1], snaps[0], snaps[2]] {
                    svc.delete_snapshot(&admin(), s, false).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let extends = {
            let svc = svc.clone();
            tokio::spawn(async move {
                for size in 2..=4u64 {
                    svc.extend_volume(&admin(), vol, size).await.unwrap();
                    for _ in 0..2000 {
                        let v = svc.volume(&admin(), vol).await.unwrap();
                        if v.status != VolumeStatus::Extending {
                            assert_eq!(v.status, VolumeStatus::Available, "{v:?}");
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        };
        let reads = {
            let svc = svc.clone();
            let last = snaps[3];
            tokio::spawn(async move {
                for _ in 0..20 {
                    let data = svc.read_snapshot(&admin(), last, 0, 65536).await.unwrap();
                    assert!(data == vec![1; 65536], "a snapshot read saw other bytes");
                    let data = svc
                        .read_volume(&admin(), clone, 131072, 65536)
                        .await
                        .unwrap();
                    assert!(data == vec![3; 65536], "a clone read saw other bytes");
                }
            })
        };
        deletes.await.unwrap();
        extends.await.unwrap();
        reads.await.unwrap();
        settle(&svc).await;
        let v = svc.volume(&caller, vol).await.unwrap();
        assert_eq!(
            (v.status, v.size_gib),
            (VolumeStatus::Available, 4),
            "round {round}"
        );
        for layer in 0..4u8 {
            let data = svc
                .read_volume(&caller, vol, layer as u64 * 65536, 65536)
                .await
                .unwrap();
            assert!(
                data == vec![layer + 1; 65536],
                "round {round}: layer {layer} lost"
            );
        }
        assert_eq!(
            svc.volume(&caller, clone).await.unwrap().status,
            VolumeStatus::Available
        );
    }
}
