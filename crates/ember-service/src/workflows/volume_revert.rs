//! Volume revert to its latest snapshot (Cinder's `revert` action): the
//! volume continues in a fresh overlay on the snapshot's image, and its old
//! top is released. O(1) in the volume size.
//!
//! Steps:
//! 1. (Storage+DB) `switch`: create the overlay and point the volume at it.
//!    No undo: once switched, the old top's data is intentionally gone.
//! 2. (DB) `finish`: volume back to `available`, snapshot to `available`.
//! 3. (Storage) `collect`: remove the released top.

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use crate::gc;
use ember_model::{
    Image, ImageId, ImageOwner, SnapshotId, SnapshotStatus, Timestamp, VolumeId, VolumeStatus,
};
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
                run: |core, _| gc::collect_garbage(core),
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
        if let Err(e) = gc::collect_garbage(core) {
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
    core.driver.create_image(
        p.new_top,
        crate::volumes::size_bytes(volume.size_gib)?,
        Some(frozen),
    )?;
    let mut tx = core.store.write()?;
    if let Some(old) = volume.image
        && let Some(mut image) = tx.image(old)?
    {
        image.owner = ImageOwner::None;
        tx.put_image(&image)?;
    }
    tx.put_image(&Image {
        id: p.new_top,
        parent: Some(frozen),
        size_bytes: crate::volumes::size_bytes(volume.size_gib)?,
        owner: ImageOwner::Volume(p.volume_id),
        created_at: Timestamp::now(),
    })?;
    Core::switch_top(tx.as_mut(), p.volume_id, volume.image, p.new_top)?;
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
