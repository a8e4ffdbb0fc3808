//! Volume migrate: move a volume's data to another backend (`os-retype`
//! with `migration_policy: on-demand` when the new type needs another
//! backend, or an admin's `os-migrate_volume`). The volume keeps its id;
//! its data is copied into new data on the target and the volume switched
//! to it, all at once with its new type and host.
//!
//! Steps:
//! 1. (DB) `claim`: claim the new data on the target backend. Undo: release
//!    it (the target's collector removes what was made).
//! 2. (Storage) `make`: the target makes it, empty.
//! 3. (Storage) `copy`: every allocated byte of the volume, read as the
//!    source backend serves it (through any snapshot it was cloned from),
//!    written to the target and flushed. Runs of zeros are skipped (the
//!    target is thin and reads zeros there). A re-run copies again.
//! 4. (DB) `switch`: in one transaction the source data is released and the
//!    volume takes the new data, backend, pool, type (with its per-type
//!    quota) and `migration_status: success`, back to `available`.
//! 5. (Storage) `collect`: the source backend removes the old data.
//!
//! The volume is `retyping` (a retype) or `maintenance` (a migrate) all
//! along, so nothing writes to it: an attached volume is not moved (Nova's
//! swap is not Ember's to drive), nor one with snapshots (as Cinder).

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use ember_model::{ImageId, QuotaResource, Timestamp, VolumeId, VolumeStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    pub target: String,
    /// The new data's name on the target, chosen up front.
    pub data: ImageId,
    /// A retype's new type (name, id); None for a migrate.
    pub new_type: Option<(String, String)>,
    /// The multiattach flag the new type gives.
    pub multiattach: bool,
}

pub struct VolumeMigrate;

/// Bytes copied per read and write.
const CHUNK: usize = 4 << 20;

impl Workflow for VolumeMigrate {
    const KIND: &'static str = "volume-migrate";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "claim",
                run: claim,
                undo: unclaim,
            },
            Step {
                name: "make",
                run: make,
                undo: nothing,
            },
            Step {
                name: "copy",
                run: copy,
                undo: nothing,
            },
            Step {
                name: "switch",
                run: switch,
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
        if let Some(mut v) = tx.volume(p.volume_id)?
            && v.image != Some(p.data)
        {
            // Not switched: the volume is whole on its old backend.
            v.status = VolumeStatus::Available;
            v.migration_status = Some("error".into());
            v.error_reason = Some(super::reason(reason));
            v.updated_at = Some(Timestamp::now());
            tx.put_volume(&v)?;
        }
        tx.commit()?;
        if let Err(e) = core.collect_garbage() {
            tracing::warn!(error = %e, "garbage collection after a failed migration");
        }
        Ok(())
    }
}

fn claim(core: &Core, p: &Params) -> Result<()> {
    let target = core.backends.get(&p.target)?;
    let mut tx = core.store.write()?;
    let volume = tx
        .volume(p.volume_id)?
        .ok_or_else(|| ServiceError::VolumeNotFound(p.volume_id.to_string()))?;
    if volume.image == Some(p.data) || target.recorded(tx.as_mut(), p.data)? {
        return Ok(());
    }
    let size = crate::volumes::size_bytes(volume.size_gib)?;
    target.claim(tx.as_mut(), p.volume_id, p.data, size, None)?;
    tx.commit()?;
    Ok(())
}

fn unclaim(core: &Core, p: &Params) -> Result<()> {
    let target = core.backends.get(&p.target)?;
    let mut tx = core.store.write()?;
    if tx
        .volume(p.volume_id)?
        .is_some_and(|v| v.image == Some(p.data))
    {
        return Ok(()); // switched: the data is the volume's now
    }
    target.release(tx.as_mut(), p.data)?;
    tx.commit()?;
    core.collect_garbage()
}

fn make(core: &Core, p: &Params) -> Result<()> {
    let volume = core
        .store
        .read()?
        .volume(p.volume_id)?
        .ok_or_else(|| ServiceError::VolumeNotFound(p.volume_id.to_string()))?;
    if volume.image == Some(p.data) {
        return Ok(());
    }
    Ok(core.backends.get(&p.target)?.make(p.data)?)
}

fn copy(core: &Core, p: &Params) -> Result<()> {
    // Whatever an earlier handle cached is flushed and the handle closed;
    // nothing writes while the volume is `retyping`/`maintenance`.
    let slot = core.slot(p.volume_id);
    let _guard = core.quiesce(&slot)?;
    let (volume, source_data) = core.volume_data(p.volume_id)?;
    if source_data == p.data {
        return Ok(()); // switched already
    }
    let source = core.backend_of(&volume)?.open(source_data, false)?;
    let target = core.backends.get(&p.target)?.open(p.data, true)?;
    let size = source.size();
    let mut buf = vec![0u8; CHUNK];
    // Compared with `==`, which is one memcmp: fast in any build.
    let zeros = vec![0u8; CHUNK];
    let mut offset = 0u64;
    let mut next_report = size / 10;
    while offset < size {
        let n = ((size - offset) as usize).min(CHUNK);
        source.read_at(&mut buf[..n], offset)?;
        if buf[..n] != zeros[..n] {
            target.write_at(&buf[..n], offset)?;
        }
        offset += n as u64;
        if offset >= next_report {
            tracing::info!(volume = %p.volume_id, target = %p.target, copied = offset, of = size, "migrating");
            next_report = offset + size / 10;
        }
    }
    target.flush()?;
    Ok(())
}

fn switch(core: &Core, p: &Params) -> Result<()> {
    let slot = core.slot(p.volume_id);
    let guard = core.quiesce(&slot)?;
    let mut tx = core.store.write()?;
    let mut volume = tx
        .volume(p.volume_id)?
        .ok_or_else(|| ServiceError::VolumeNotFound(p.volume_id.to_string()))?;
    if volume.image == Some(p.data) {
        return Ok(());
    }
    let target = core.backends.get(&p.target)?;
    if let Some(old) = volume.image {
        core.backend_of(&volume)?.release(tx.as_mut(), old)?;
    }
    if let Some((name, id)) = &p.new_type {
        let current = crate::quotas::type_of(&volume.volume_type_id);
        let deltas = [
            (QuotaResource::Volumes, 1),
            (QuotaResource::Gigabytes, volume.size_gib as i64),
        ];
        crate::quotas::release_typed(tx.as_mut(), &volume.project_id, &current, &deltas)?;
        crate::quotas::reserve_typed(tx.as_mut(), &volume.project_id, id, &deltas)?;
        volume.volume_type = name.clone();
        volume.volume_type_id = Some(id.clone());
        volume.multiattach = p.multiattach;
    }
    volume.image = Some(p.data);
    volume.backend = target.name().to_string();
    volume.pool = target.pool().to_string();
    volume.migration_status = Some("success".into());
    volume.status = VolumeStatus::Available;
    volume.updated_at = Some(Timestamp::now());
    tx.put_volume(&volume)?;
    tx.commit()?;
    guard.release();
    Ok(())
}
