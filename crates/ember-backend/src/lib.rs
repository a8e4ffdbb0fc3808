//! Volume backends: where a volume's and a snapshot's data live.
//!
//! The service owns every rule (states, quotas, policy, workflows) and
//! never sees how data is stored: it holds, in each volume and snapshot
//! record, an opaque name of the data ([`DataRef`]) that only the backend
//! interprets, and asks the backend to make, freeze, revert, grow, open
//! and release data by those names. A backend keeps its own bookkeeping
//! (which layer reads through which, who still needs what) in the metadata
//! store, in the same transaction as the service's records where the two
//! must change together, so that a crash never leaves one without the
//! other.
//!
//! Changes that touch storage come in halves: a *stage* half that does
//! the storage work before any transaction (idempotent; nothing durable
//! references what it makes), and a *record* half that runs inside the
//! caller's write transaction. If the transaction does not commit, the
//! caller *abandons* what was staged. Data no record needs any more is
//! *released* in a transaction and removed later by [`VolumeBackend::collect`],
//! which is safe to run at any time, any number of times.

pub mod manage;
pub mod qcow2;
pub mod rbd;

use ember_model::{BackupId, ImageId, ImageOwner, SnapshotId, VolumeId};
use ember_storage::{BlockIo, Capacity, StorageError};
use ember_store::{StoreError, Tx};
pub use manage::{Claimed, Manageable};
use std::sync::Arc;

/// The name of one piece of data on a backend: a volume's current data or
/// a snapshot's frozen data. The service chooses fresh names up front (so
/// that a re-run step reuses them) and stores what backends return.
pub type DataRef = ImageId;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The backend's records are not what the operation expects: the data
    /// changed underneath it (the step fails and unwinds).
    #[error("{0}")]
    Conflict(String),
    /// The backend cannot do what was asked (e.g. file names on a backend
    /// without files).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// What a freeze left: the data the volume continues in (new, or the same
/// when the backend snapshots in place) and the frozen data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frozen {
    pub volume_data: DataRef,
    pub frozen: DataRef,
}

/// Lets a backend stop a volume's I/O while it rewrites data under it
/// (a merge into a volume's writable layer): the service owns the
/// volume's open handle and its in-flight requests.
pub trait IoFence: Sync {
    /// Runs `f` while `volume` takes no I/O: in-flight requests done and
    /// flushed, its handle closed (the next request reopens it).
    fn quiesced(&self, volume: VolumeId, f: &mut dyn FnMut() -> Result<()>) -> Result<()>;
}

/// An `IoFence` for callers that hold no open handles (tests, tools).
pub struct NoIo;

impl IoFence for NoIo {
    fn quiesced(&self, _: VolumeId, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        f()
    }
}

/// One storage backend with one pool. Every method blocks (async callers
/// use `spawn_blocking`) and every storage-touching method is idempotent,
/// because workflows re-run steps after a crash.
pub trait VolumeBackend: Send + Sync + 'static {
    /// The name volume types select it by (`volume_backend_name`).
    fn name(&self) -> &str;
    /// The name of its one pool.
    fn pool(&self) -> &str;
    /// The driver (`qcow2`, `rbd`).
    fn driver(&self) -> &'static str;
    /// What the pool offers, as Cinder's scheduler reports capabilities
    /// (`storage_protocol`, `thin_provisioning_support`, ...); the names
    /// (`volume_backend_name`, `pool_name`) are the service's to add.
    fn capabilities(&self) -> Vec<(&'static str, String)>;
    /// Size and free space of the pool.
    fn capacity(&self) -> Result<Capacity>;

    // --- New volumes ---------------------------------------------------

    /// Claims `data` for `volume`: `size` bytes, empty, or reading through
    /// `from` (a snapshot's data, or frozen data of a cloned volume) until
    /// written. In the caller's transaction; from its commit on, `from`
    /// stays as long as the claim does. Nothing is made yet.
    fn claim(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        data: DataRef,
        size: u64,
        from: Option<DataRef>,
    ) -> Result<()>;

    /// Makes claimed data. A re-run replaces half-made data; data already
    /// made is left as it is (it may hold writes by then).
    fn make(&self, data: DataRef) -> Result<()>;

    /// Whether the backend has a record of `data` (claimed or made).
    fn recorded(&self, tx: &mut dyn Tx, data: DataRef) -> Result<bool>;

    // --- Freezing: snapshots, and the source of a clone -------------------

    /// Storage half of freezing the volume's current data `data`: prepares
    /// `fresh`, which the backend uses for the volume's next data or for
    /// the frozen copy, as it works. With `grouped`, what it makes is
    /// durable only after the next `barrier`, so many freezes share one.
    fn stage_freeze(&self, data: DataRef, fresh: DataRef, size: u64, grouped: bool) -> Result<()>;

    /// Record half, in the caller's transaction: the frozen data belongs
    /// to `snapshot`, or (None) to no one, living while clones claimed
    /// from it do.
    fn record_freeze(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        data: DataRef,
        fresh: DataRef,
        size: u64,
        snapshot: Option<SnapshotId>,
    ) -> Result<Frozen>;

    /// Whether a freeze is quick enough (no network round trip) to take
    /// inside a client's request; otherwise the service answers first and
    /// freezes in a workflow.
    fn instant_freeze(&self) -> bool {
        false
    }

    /// Makes everything staged with `grouped` durable.
    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    /// Removes what `stage_freeze(data, fresh)` or `stage_revert(_, fresh)`
    /// made, unless a record names it (the record's transaction committed
    /// after all).
    fn abandon(&self, data: Option<DataRef>, fresh: DataRef) -> Result<()>;

    // --- Revert ----------------------------------------------------------

    /// Storage half of reverting a volume to `frozen`: prepares `fresh` as
    /// the volume's next data, reading as `frozen` does. Must not cost time
    /// in proportion to the volume's size.
    fn stage_revert(&self, frozen: DataRef, fresh: DataRef, size: u64) -> Result<()>;

    /// Record half: the volume continues in the returned data; `current`
    /// is released.
    fn record_revert(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        current: Option<DataRef>,
        frozen: DataRef,
        fresh: DataRef,
        size: u64,
    ) -> Result<DataRef>;

    // --- Everything else ---------------------------------------------------

    /// Grows the volume's data to `new_size` bytes (never shrinks), and
    /// records it. The caller keeps I/O off the volume meanwhile.
    fn grow(&self, data: DataRef, new_size: u64) -> Result<()>;

    /// Gives `data` up (a deleted volume or snapshot), in the caller's
    /// transaction. `collect` removes it once nothing reads through it.
    fn release(&self, tx: &mut dyn Tx, data: DataRef) -> Result<()>;

    /// Removes released data that nothing needs any more. Safe at any time
    /// and after a crash at any point.
    fn collect(&self, fence: &dyn IoFence) -> Result<()>;

    /// Whether the last `collect` left released data for later because
    /// something still read it: the service collects again shortly.
    fn collect_deferred(&self) -> bool {
        false
    }

    /// Opens `data` for block I/O (writable for a volume's data).
    fn open(&self, data: DataRef, writable: bool) -> Result<Arc<dyn BlockIo>>;

    /// Start-up, before any I/O or workflow: removes what a crash left
    /// half-made or unrecorded, and marks data a crash left open for
    /// writing for repair before its next use. Returns how many are marked.
    fn recover(&self) -> Result<usize>;

    /// Cuts node `node` (another process sharing the metadata store, whose
    /// lease expired) off this backend's data before its work is taken
    /// over, so that it cannot write even if it is not dead after all, and
    /// whatever it held (locks) is released at once. Nothing to do for a
    /// backend only one node reaches.
    fn fence_node(&self, _node: &str) -> Result<()> {
        Ok(())
    }

    /// Repairs what `recover` marked (in the background). Returns how many.
    fn repair_marked(&self) -> Result<usize> {
        Ok(0)
    }

    /// Everything wrong with the backend's data and records, for tests
    /// and audits: data without a record or a record without data,
    /// released data left behind, data that fails its checks.
    fn audit(&self) -> Result<Vec<String>>;

    // --- Backups ---------------------------------------------------------

    /// Keeps `frozen` (frozen by `record_freeze` for no snapshot) for
    /// `backup`: the volume's point in time that backup read, the base of
    /// the next incremental one. In the caller's transaction; given up
    /// with `release`.
    fn hold_for_backup(&self, tx: &mut dyn Tx, frozen: DataRef, backup: BackupId) -> Result<()> {
        let mut row = tx.image(frozen)?.ok_or_else(|| {
            BackendError::Internal(format!("image {frozen} is missing from the metadata store"))
        })?;
        row.owner = ImageOwner::Backup(backup);
        tx.put_image(&row)?;
        Ok(())
    }

    /// Where `data` may read differently from `since` (an earlier point
    /// of the same volume, held by `hold_for_backup`), from the backend's
    /// own knowledge, never by reading data.
    fn changed_ranges(&self, _data: DataRef, _since: Option<DataRef>) -> Result<Changed> {
        Ok(Changed::Unknown)
    }

    // --- Manage and unmanage (Cinder's) --------------------------------

    /// Keeps `data` for a later manage under `label` (see `manage::label`),
    /// owned by no one and never collected. In the caller's transaction.
    fn unmanage(&self, tx: &mut dyn Tx, data: DataRef, label: &str) -> Result<()> {
        manage::unmanage(tx, self.name(), data, label)
    }

    /// What could become a volume: unmanaged volumes' data, and objects the
    /// backend holds that Ember did not make, where it can adopt them.
    fn manageable_volumes(&self, tx: &mut dyn Tx) -> Result<Vec<Manageable>> {
        manage::unmanaged(tx, self.name(), false)
    }

    /// What could become a snapshot: unmanaged snapshots' data.
    fn manageable_snapshots(&self, tx: &mut dyn Tx) -> Result<Vec<Manageable>> {
        manage::unmanaged(tx, self.name(), true)
    }

    /// Claims what `reference` names for `volume`, in the caller's
    /// transaction: unmanaged data is the volume's at once; a foreign
    /// object (where the backend adopts them) is claimed as `data` and
    /// adopted by `make`.
    fn claim_existing(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        reference: &str,
        _data: DataRef,
    ) -> Result<Claimed> {
        match manage::find(tx, self.name(), reference)? {
            Some(row) => manage::reclaim_volume(row, tx, volume),
            None => Err(BackendError::Unsupported(format!(
                "Manage existing volume failed due to invalid backend reference {reference}: nothing by that name on backend {}.",
                self.name()
            ))),
        }
    }

    /// Gives the unmanaged snapshot data `reference` names to `snapshot`
    /// of the volume whose data is `volume_data` (whose lineage it must be
    /// in). Returns the data and its size.
    fn claim_existing_snapshot(
        &self,
        tx: &mut dyn Tx,
        snapshot: SnapshotId,
        reference: &str,
        volume_data: DataRef,
    ) -> Result<(DataRef, u64)> {
        let row = manage::find(tx, self.name(), reference)?
            .filter(|r| {
                r.label
                    .as_deref()
                    .is_some_and(|l| l.starts_with("snapshot-"))
            })
            .ok_or_else(|| {
                BackendError::Unsupported(format!(
                    "Manage existing snapshot failed due to invalid backend reference {reference}."
                ))
            })?;
        if !self.in_lineage(tx, row.id, volume_data)? {
            return Err(BackendError::Unsupported(format!(
                "{reference} is not a snapshot of that volume."
            )));
        }
        manage::reclaim_snapshot(row, tx, snapshot)
    }

    /// Whether frozen data `frozen` is a point in the history of the
    /// volume whose data is now `volume_data`.
    fn in_lineage(&self, tx: &mut dyn Tx, frozen: DataRef, volume_data: DataRef) -> Result<bool>;

    /// How a hypervisor attaches `data` itself, without Ember in the data
    /// path, where the backend offers it and is configured to: Cinder's
    /// `driver_volume_type` and `connection_info` data (e.g. `rbd` with the
    /// image's name, the monitors and the Ceph user). None: clients attach
    /// through Ember's NBD export, as for every backend by default.
    fn native_attach(
        &self,
        _volume: VolumeId,
        _data: DataRef,
    ) -> Option<(String, serde_json::Map<String, serde_json::Value>)> {
        None
    }

    /// The backend's file names, where volumes are chains of files that
    /// clients may name (Nova's assisted snapshots); None elsewhere.
    fn files(&self) -> Option<&dyn FileChains> {
        None
    }
}

/// Volumes kept as chains of files that a client may name.
pub trait FileChains {
    /// Whether `name` is an entry of the backend's directory that is not a
    /// regular file (a symlink, a directory): never accepted from clients.
    fn is_special_entry(&self, name: &str) -> bool;
    /// The data a file name is the name of (`<uuid>.qcow2`), existing or not.
    fn data_named(&self, name: &str) -> Option<DataRef>;
    /// The chain under `data`, top first.
    fn chain(&self, tx: &mut dyn Tx, data: DataRef) -> Result<Vec<DataRef>>;
    /// Whether `data` exists, as a record or as a file.
    fn exists(&self, tx: &mut dyn Tx, data: DataRef) -> Result<bool>;
}

/// What `VolumeBackend::changed_ranges` knows. Ranges are (offset,
/// length), ascending, not overlapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// The ranges that may differ from `since`: everything else reads as
    /// `since` does.
    Since(Vec<(u64, u64)>),
    /// `since` is no base (none given, or not in `data`'s history): the
    /// ranges that may hold data at all; everything else reads as zeroes.
    All(Vec<(u64, u64)>),
    /// The backend cannot tell: every byte may hold data.
    Unknown,
}

/// Sorts ranges and joins those that overlap or touch.
pub fn join_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut joined: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, len) in ranges {
        match joined.last_mut() {
            Some((s, l)) if start <= *s + *l => *l = (*l).max(start + len - *s),
            _ => joined.push((start, len)),
        }
    }
    joined
}

#[cfg(test)]
mod range_tests {
    #[test]
    fn ranges_join_where_they_overlap_or_touch() {
        assert_eq!(
            super::join_ranges(vec![(10, 5), (0, 4), (4, 2), (12, 10), (40, 1)]),
            vec![(0, 6), (10, 12), (40, 1)]
        );
    }
}
