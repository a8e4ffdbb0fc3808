//! Volume revert to its latest snapshot (Cinder's `revert` action): the
//! volume continues in fresh data that reads as the snapshot's (a new
//! overlay on qcow2), and its old data is released. O(1) in the volume
//! size on every backend.
//!
//! Steps:
//! 1. (Storage+DB) `switch`: the backend stages the fresh data; the volume
//!    is pointed at it. No undo: once switched, the old data is
//!    intentionally gone.
//! 2. (DB) `finish`: volume back to `available`, snapshot to `available`.
//! 3. (Storage) `collect`: remove the released data.

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use ember_model::{ImageId, SnapshotId, SnapshotStatus, Timestamp, VolumeId, VolumeStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    pub snapshot_id: SnapshotId,
    pub new_top: ImageId,
}

pub struct VolumeRevert;

impl Workflow for VolumeRevert {
    const KIND: &'static str = "volume-revert";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "switch",
                run: switch,
                undo: nothing,
            },
            Step {
                name: "finish",
                run: finish,
                undo: nothing,
            },
            Step {
                name: "collect",
                run: |core, _| core.collect_garbage_step(),
                undo: nothing,
            },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        if let Some(mut v) = tx.volume(p.volume_id)? {
            // Only a revert that did not finish is an error; a failure while
            // collecting the old top leaves a correctly reverted volume.
            if v.status == VolumeStatus::Reverting {
                v.status = VolumeStatus::Error;
                v.error_reason = Some(super::reason(reason));
                v.updated_at = Some(Timestamp::now());
                tx.put_volume(&v)?;
            }
        }
        if let Some(mut s) = tx.snapshot(p.snapshot_id)?
            && s.status == SnapshotStatus::Restoring
        {
            s.status = SnapshotStatus::Available;
            tx.put_snapshot(&s)?;
        }
        tx.commit()?;
        if let Err(e) = core.collect_garbage() {
            tracing::warn!(error = %e, "garbage collection after a failed revert");
        }
        Ok(())
    }
}

fn switch(core: &Core, p: &Params) -> Result<()> {
    let slot = core.slot(p.volume_id);
    let guard = core.quiesce(&slot)?;
    let (volume, snapshot) = {
        let mut tx = core.store.read()?;
        (tx.volume(p.volume_id)?, tx.snapshot(p.snapshot_id)?)
    };
    let volume = volume.ok_or_else(|| ServiceError::VolumeNotFound(p.volume_id.to_string()))?;
    if volume.image == Some(p.new_top) {
        return Ok(());
    }
    let snapshot =
        snapshot.ok_or_else(|| ServiceError::SnapshotNotFound(p.snapshot_id.to_string()))?;
    let frozen = snapshot
        .image
        .ok_or_else(|| ServiceError::InvalidSnapshot("Snapshot has no data.".into()))?;
    let backend = core.backend_of(&volume)?;
    let size = crate::volumes::size_bytes(volume.size_gib)?;
    backend.stage_revert(frozen, p.new_top, size)?;
    let mut tx = core.store.write()?;
    let data = backend.record_revert(
        tx.as_mut(),
        p.volume_id,
        volume.image,
        frozen,
        p.new_top,
        size,
    )?;
    Core::switch_top(tx.as_mut(), p.volume_id, volume.image, data)?;
    tx.commit()?;
    guard.release();
    Ok(())
}

fn finish(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if let Some(mut v) = tx.volume(p.volume_id)?
        && v.status == VolumeStatus::Reverting
    {
        v.status = VolumeStatus::Available;
        v.updated_at = Some(Timestamp::now());
        tx.put_volume(&v)?;
    }
    if let Some(mut s) = tx.snapshot(p.snapshot_id)?
        && s.status == SnapshotStatus::Restoring
    {
        s.status = SnapshotStatus::Available;
        s.updated_at = Some(Timestamp::now());
        tx.put_snapshot(&s)?;
    }
    tx.commit()?;
    Ok(())
}
