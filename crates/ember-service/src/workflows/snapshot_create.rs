//! Snapshot create: freeze the volume's top image as the snapshot, continue
//! the volume in a fresh overlay.
//!
//! ```text
//!   before:  base <- top (volume writes here)
//!   after:   base <- top (frozen: the snapshot) <- new_top (volume writes here)
//! ```
//!
//! (As the qcow2 backend does it; a backend that snapshots in place keeps
//! the volume's data and freezes `new_top` instead.) Cost is one empty
//! qcow2 file and one metadata transaction, whatever the volume's size. The volume is quiesced for the switch: writes acknowledged
//! before it are flushed into the frozen image, later ones land above it.
//!
//! Steps:
//! 1. (Storage+DB) `freeze`: the backend stages `new_top`, then in one
//!    transaction it records the freeze and the volume and snapshot take
//!    their data. Undo: release the frozen data; the backend merges it
//!    back into the volume (or drops it), so no write is lost.
//! 2. (DB) `mark_available`.

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use ember_model::{ImageId, SnapshotId, SnapshotStatus, Timestamp, VolumeId};
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
        core.collect_garbage()
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
    let data = volume
        .image
        .ok_or_else(|| ServiceError::InvalidVolume(format!("Volume {} has no data.", volume.id)))?;
    let backend = core.backend_of(&volume)?;
    let size = crate::volumes::size_bytes(volume.size_gib)?;
    // Nothing references `new_top` until the commit below, so staging it
    // again on a re-run is safe.
    backend.stage_freeze(data, p.new_top, size, false)?;

    let mut tx = core.store.write()?;
    let frozen = backend.record_freeze(
        tx.as_mut(),
        p.volume_id,
        data,
        p.new_top,
        size,
        Some(p.snapshot_id),
    )?;
    // Both records as they are now: only their data changes here.
    Core::switch_top(tx.as_mut(), p.volume_id, Some(data), frozen.volume_data)?;
    let mut snapshot = tx
        .snapshot(p.snapshot_id)?
        .ok_or_else(|| ServiceError::SnapshotNotFound(p.snapshot_id.to_string()))?;
    snapshot.image = Some(frozen.frozen);
    tx.put_snapshot(&snapshot)?;
    tx.commit()?;
    guard.release();
    Ok(())
}

fn unfreeze(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    let Some(volume) = tx.volume(p.volume_id)? else {
        return Ok(());
    };
    let backend = core.backend_of(&volume)?;
    match tx.snapshot(p.snapshot_id)? {
        Some(mut snapshot) if snapshot.image.is_some() => {
            // The frozen data is released; the backend folds it back into
            // the volume (a merge) or drops it, so no write is lost.
            let frozen = snapshot.image.take().expect("checked");
            backend.release(tx.as_mut(), frozen)?;
            tx.put_snapshot(&snapshot)?;
            tx.commit()?;
        }
        _ => {
            // Never switched: only what the stage made may exist.
            drop(tx);
            backend.abandon(volume.image, p.new_top)?;
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
