//! Volume create: blank, from a snapshot, or as a clone of another volume.
//! The volume's data is claimed on its backend with the request (a clone
//! of a snapshot keeps the snapshot's data alive from then on) or, for a
//! clone of a volume, when the source is frozen.
//!
//! Steps:
//! 1. (Storage+DB) `freeze_source` (clones of volumes only): freeze the
//!    source's data, owned by no one and shared by both volumes, and claim
//!    the clone's data from it. Undo: none needed: released frozen data is
//!    folded back into the source if the clone never forms.
//! 2. (Storage) `create_image`: the backend makes the claimed data.
//!    Undo: release it, unless the volume was already activated.
//! 3. (DB) `activate`: point the volume at its data; `available`.
//! 4. (Storage) `collect`: let the backend tidy what this volume kept
//!    alive, now that its data is final.

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use ember_model::{ImageId, Timestamp, VolumeId, VolumeStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Source {
    Blank,
    /// The snapshot's data; claimed from at request time, which keeps it
    /// alive even if the snapshot is deleted meanwhile.
    SnapshotImage(ImageId),
    /// The source's data at the time of the step is frozen; the name the
    /// backend may use for the source's next data is chosen up front so a
    /// re-run reuses it.
    Volume {
        source: VolumeId,
        source_new_top: ImageId,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    pub image: ImageId,
    pub size_gib: u64,
    pub source: Source,
}

pub struct VolumeCreate;

impl Workflow for VolumeCreate {
    const KIND: &'static str = "volume-create";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "freeze_source",
                run: freeze_source,
                undo: nothing,
            },
            Step {
                name: "create_image",
                run: create_image,
                undo: delete_image,
            },
            Step {
                name: "activate",
                run: activate,
                undo: deactivate,
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
            // Data claimed but never activated is released, so no record
            // outlives the failure.
            if v.image != Some(p.image) {
                core.backend_of(&v)?.release(tx.as_mut(), p.image)?;
            }
            // A failure after activation (collecting) leaves a good volume.
            if v.status == VolumeStatus::Creating {
                v.status = VolumeStatus::Error;
                v.error_reason = Some(super::reason(reason));
                v.updated_at = Some(Timestamp::now());
                tx.put_volume(&v)?;
            }
        }
        tx.commit()?;
        core.collect_garbage()
    }
}

fn freeze_source(core: &Core, p: &Params) -> Result<()> {
    let Source::Volume {
        source,
        source_new_top,
    } = p.source
    else {
        return Ok(());
    };
    let slot = core.slot(source);
    let guard = core.quiesce(&slot)?;
    let mut tx = core.store.read()?;
    let source_volume = tx
        .volume(source)?
        .ok_or_else(|| ServiceError::VolumeNotFound(source.to_string()))?;
    let backend = core.backend_of(&source_volume)?;
    if backend.recorded(tx.as_mut(), p.image)? {
        return Ok(()); // already frozen: the clone's data is claimed with it
    }
    drop(tx);
    let data = source_volume
        .image
        .ok_or_else(|| ServiceError::InvalidVolume(format!("Volume {source} has no data.")))?;
    let source_size = crate::volumes::size_bytes(source_volume.size_gib)?;
    backend.stage_freeze(data, source_new_top, source_size, false)?;
    let mut tx = core.store.write()?;
    let frozen =
        backend.record_freeze(tx.as_mut(), source, data, source_new_top, source_size, None)?;
    // The clone's claim goes in now, so the frozen data has its reader
    // before anyone could collect it.
    backend.claim(
        tx.as_mut(),
        p.volume_id,
        p.image,
        crate::volumes::size_bytes(p.size_gib)?,
        Some(frozen.frozen),
    )?;
    Core::switch_top(tx.as_mut(), source, Some(data), frozen.volume_data)?;
    tx.commit()?;
    guard.release();
    Ok(())
}

fn create_image(core: &Core, p: &Params) -> Result<()> {
    let volume = core
        .store
        .read()?
        .volume(p.volume_id)?
        .ok_or_else(|| ServiceError::VolumeNotFound(p.volume_id.to_string()))?;
    if volume.image == Some(p.image) {
        return Ok(()); // activated: the data may hold writes now
    }
    Ok(core.backend_of(&volume)?.make(p.image)?)
}

fn delete_image(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    let Some(volume) = tx.volume(p.volume_id)? else {
        return Ok(());
    };
    if volume.image == Some(p.image) {
        return Ok(());
    }
    // Drop our claim; the backend removes the data (and folds a frozen
    // source back into its volume if this was a clone).
    core.backend_of(&volume)?.release(tx.as_mut(), p.image)?;
    tx.commit()?;
    core.collect_garbage()
}

fn activate(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if let Some(mut v) = tx.volume(p.volume_id)?
        && v.status == VolumeStatus::Creating
    {
        v.image = Some(p.image);
        v.status = VolumeStatus::Available;
        v.updated_at = Some(Timestamp::now());
        tx.put_volume(&v)?;
        tx.commit()?;
    }
    Ok(())
}

fn deactivate(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if let Some(mut v) = tx.volume(p.volume_id)?
        && v.image == Some(p.image)
    {
        v.image = None;
        tx.put_volume(&v)?;
        tx.commit()?;
    }
    Ok(())
}
