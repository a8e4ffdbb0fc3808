//! Snapshot create: freeze the volume's top image as the snapshot, continue
//! the volume in a fresh overlay.
//!
//! ```text
//!   before:  base <- top (volume writes here)
//!   after:   base <- top (frozen: the snapshot) <- new_top (volume writes here)
//! ```
//!
//! Cost is one empty qcow2 file and one metadata transaction, whatever the
//! volume's size. The volume is quiesced for the switch: writes acknowledged
//! before it are flushed into the frozen image, later ones land above it.
//!
//! Steps:
//! 1. (Storage+DB) `freeze`: create `new_top` over the current top, then in
//!    one transaction hand the old top to the snapshot and `new_top` to the
//!    volume. Undo: give the frozen image up (no owner); the garbage
//!    collector merges it back into the volume, so no write is lost.
//! 2. (DB) `mark_available`.

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use crate::gc;
use ember_model::{Image, ImageId, ImageOwner, SnapshotId, SnapshotStatus, Timestamp, VolumeId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub snapshot_id: SnapshotId,
    pub volume_id: VolumeId,
    /// Chosen up front so a re-run reuses the same file name.
    pub new_top: ImageId,
}

pub struct SnapshotCreate;

impl Workflow for SnapshotCreate {
    const KIND: &'static str = "snapshot-create";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "freeze",
                run: freeze,
                undo: unfreeze,
            },
            Step {
                name: "mark_available",
                run: mark_available,
                undo: nothing,
            },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        if let Some(mut s) = tx.snapshot(p.snapshot_id)? {
            s.status = SnapshotStatus::Error;
            s.error_reason = Some(super::reason(reason));
            s.updated_at = Some(Timestamp::now());
            tx.put_snapshot(&s)?;
        }
        tx.commit()?;
        gc::collect_garbage(core)
    }
}

fn freeze(core: &Core, p: &Params) -> Result<()> {
    let slot = core.slot(p.volume_id);
    let guard = core.quiesce(&slot)?;
    let (volume, snapshot) = {
        let mut tx = core.store.read()?;
        (tx.volume(p.volume_id)?, tx.snapshot(p.snapshot_id)?)
    };
    let snapshot =
        snapshot.ok_or_else(|| ServiceError::SnapshotNotFound(p.snapshot_id.to_string()))?;
    if snapshot.image.is_some() {
        return Ok(()); // already frozen
    }
    let volume = volume.ok_or_else(|| ServiceError::VolumeNotFound(p.volume_id.to_string()))?;
    let old_top = volume
        .image
        .ok_or_else(|| ServiceError::InvalidVolume(format!("Volume {} has no data.", volume.id)))?;
    // Nothing references `new_top` until the commit below, so recreating it
    // on a re-run is safe.
    core.driver.create_image(
        p.new_top,
        crate::volumes::size_bytes(volume.size_gib)?,
        Some(old_top),
    )?;

    let mut tx = core.store.write()?;
    let mut frozen = tx
        .image(old_top)?
        .ok_or_else(|| ServiceError::Internal(format!("image {old_top} missing")))?;
    frozen.owner = ImageOwner::Snapshot(p.snapshot_id);
    tx.put_image(&frozen)?;
    tx.put_image(&Image {
        id: p.new_top,
        parent: Some(old_top),
        size_bytes: crate::volumes::size_bytes(volume.size_gib)?,
        owner: ImageOwner::Volume(p.volume_id),
        created_at: Timestamp::now(),
    })?;
    // Both records as they are now: only their images change here.
    Core::switch_top(tx.as_mut(), p.volume_id, Some(old_top), p.new_top)?;
    let mut snapshot = tx
        .snapshot(p.snapshot_id)?
        .ok_or_else(|| ServiceError::SnapshotNotFound(p.snapshot_id.to_string()))?;
    snapshot.image = Some(old_top);
    tx.put_snapshot(&snapshot)?;
    tx.commit()?;
    guard.release();
    Ok(())
}

fn unfreeze(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    match tx.snapshot(p.snapshot_id)? {
        Some(mut snapshot) if snapshot.image.is_some() => {
            let frozen = snapshot.image.take().expect("checked");
            if let Some(mut image) = tx.image(frozen)? {
                image.owner = ImageOwner::None;
                tx.put_image(&image)?;
            }
            tx.put_snapshot(&snapshot)?;
            tx.commit()?;
        }
        _ => {
            // Never switched: only the unreferenced overlay file may exist.
            let referenced = tx.image(p.new_top)?.is_some();
            drop(tx);
            if !referenced {
                core.driver.delete_image(p.new_top)?;
            }
        }
    }
    Ok(())
}

fn mark_available(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if let Some(mut s) = tx.snapshot(p.snapshot_id)?
        && s.status == SnapshotStatus::Creating
    {
        s.status = SnapshotStatus::Available;
        s.progress = "100%".into();
        s.updated_at = Some(Timestamp::now());
        tx.put_snapshot(&s)?;
        tx.commit()?;
    }
    Ok(())
}
