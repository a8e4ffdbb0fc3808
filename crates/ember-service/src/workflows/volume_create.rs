//! Volume create: blank, from a snapshot, or as a clone of another volume.
//! Every kind is O(1) in the volume size: a clone is an overlay.
//!
//! ```text
//!   blank:          (new image)
//!   from snapshot:  snapshot image <- new image
//!   from volume:    source top (frozen, unowned) <- source's new top
//!                                               <- new image
//! ```
//!
//! Steps:
//! 1. (Storage+DB) `freeze_source` (clones of volumes only): freeze the
//!    source's top as an unowned image shared by both volumes. Undo: none
//!    needed: the garbage collector merges it back if the clone never forms.
//! 2. (Storage+DB) `create_image`: record and create the volume's own top.
//!    Undo: delete it, unless the volume was already activated.
//! 3. (DB) `activate`: point the volume at its image; `available`.
//! 4. (Storage) `collect`: merge images this volume kept alive, now that
//!    its image is final (the collector never merges into an image that is
//!    not activated yet, since a re-run of step 2 would replace its file).

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use crate::gc;
use ember_model::{Image, ImageId, ImageOwner, Timestamp, VolumeId, VolumeStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Source {
    Blank,
    /// The snapshot's image; recorded as the new image's parent at request
    /// time, which keeps it alive even if the snapshot is deleted meanwhile.
    SnapshotImage(ImageId),
    /// The source's top at the time of the step is frozen; its new top is
    /// named up front so a re-run reuses it.
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
                run: |core, _| gc::collect_garbage(core),
                undo: nothing,
            },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        // An image recorded at request time (clones of snapshots) but never
        // activated is released, so no record outlives the failure.
        if let Some(mut image) = tx.image(p.image)?
            && tx
                .volume(p.volume_id)?
                .is_none_or(|v| v.image != Some(p.image))
        {
            image.owner = ImageOwner::None;
            tx.put_image(&image)?;
        }
        if let Some(mut v) = tx.volume(p.volume_id)? {
            // A failure after activation (collecting) leaves a good volume.
            if v.status == VolumeStatus::Creating {
                v.status = VolumeStatus::Error;
                v.error_reason = Some(super::reason(reason));
                v.updated_at = Some(Timestamp::now());
                tx.put_volume(&v)?;
            }
        }
        tx.commit()?;
        gc::collect_garbage(core)
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
    if tx.image(p.image)?.is_some() {
        return Ok(()); // already frozen: the clone's image row is written with it
    }
    let source_volume = tx
        .volume(source)?
        .ok_or_else(|| ServiceError::VolumeNotFound(source.to_string()))?;
    drop(tx);
    let frozen = source_volume
        .image
        .ok_or_else(|| ServiceError::InvalidVolume(format!("Volume {source} has no data.")))?;
    core.driver.create_image(
        source_new_top,
        crate::volumes::size_bytes(source_volume.size_gib)?,
        Some(frozen),
    )?;
    let mut tx = core.store.write()?;
    let mut image = tx
        .image(frozen)?
        .ok_or_else(|| ServiceError::Internal(format!("image {frozen} missing")))?;
    image.owner = ImageOwner::None;
    tx.put_image(&image)?;
    tx.put_image(&Image {
        id: source_new_top,
        parent: Some(frozen),
        size_bytes: crate::volumes::size_bytes(source_volume.size_gib)?,
        owner: ImageOwner::Volume(source),
        created_at: Timestamp::now(),
    })?;
    // The clone's image row goes in now, so the frozen image has two
    // children before anyone could collect it.
    tx.put_image(&Image {
        id: p.image,
        parent: Some(frozen),
        size_bytes: crate::volumes::size_bytes(p.size_gib)?,
        owner: ImageOwner::Volume(p.volume_id),
        created_at: Timestamp::now(),
    })?;
    Core::switch_top(tx.as_mut(), source, Some(frozen), source_new_top)?;
    tx.commit()?;
    guard.release();
    Ok(())
}

fn create_image(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    let volume = tx
        .volume(p.volume_id)?
        .ok_or_else(|| ServiceError::VolumeNotFound(p.volume_id.to_string()))?;
    if volume.image == Some(p.image) {
        return Ok(()); // activated: the image may hold data now
    }
    let parent = match (tx.image(p.image)?, &p.source) {
        (Some(recorded), _) => recorded.parent,
        (None, Source::Blank) => None,
        (None, Source::SnapshotImage(image)) => Some(*image),
        (None, Source::Volume { .. }) => {
            return Err(ServiceError::Internal(
                "clone image missing after freeze".into(),
            ));
        }
    };
    tx.put_image(&Image {
        id: p.image,
        parent,
        size_bytes: crate::volumes::size_bytes(p.size_gib)?,
        owner: ImageOwner::Volume(p.volume_id),
        created_at: Timestamp::now(),
    })?;
    tx.commit()?;
    core.driver
        .create_image(p.image, crate::volumes::size_bytes(p.size_gib)?, parent)?;
    Ok(())
}

fn delete_image(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if tx
        .volume(p.volume_id)?
        .is_some_and(|v| v.image == Some(p.image))
    {
        return Ok(());
    }
    // Drop our claim; the collector removes the file (and merges a frozen
    // source back into its volume if this was a clone).
    if let Some(mut image) = tx.image(p.image)? {
        image.owner = ImageOwner::None;
        tx.put_image(&image)?;
    }
    tx.commit()?;
    gc::collect_garbage(core)
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
