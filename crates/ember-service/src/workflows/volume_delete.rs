//! Volume delete (optionally with its snapshots: `cascade`).
//!
//! Steps:
//! 1. (DB) `release`: in one transaction, release the volume's and (with
//!    cascade) its snapshots' data and quota and delete their records.
//! 2. (Storage) `collect`: the backend removes what is no longer needed;
//!    data that clones still read through stays.

use super::snapshot_delete::release_snapshot;
use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use ember_model::{QuotaResource, SnapshotStatus, Timestamp, VolumeId, VolumeStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    pub cascade: bool,
}

pub struct VolumeDelete;

impl Workflow for VolumeDelete {
    const KIND: &'static str = "volume-delete";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "release",
                run: release,
                undo: nothing,
            },
            Step {
                name: "collect",
                run: collect,
                undo: nothing,
            },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        for mut s in tx.snapshots_of_volume(p.volume_id)? {
            if s.status == SnapshotStatus::Deleting {
                s.status = SnapshotStatus::ErrorDeleting;
                s.updated_at = Some(Timestamp::now());
                tx.put_snapshot(&s)?;
            }
        }
        if let Some(mut v) = tx.volume(p.volume_id)? {
            v.status = VolumeStatus::ErrorDeleting;
            v.error_reason = Some(super::reason(reason));
            v.updated_at = Some(Timestamp::now());
            tx.put_volume(&v)?;
        }
        tx.commit()?;
        // If only the collection failed, the records are gone: try again so
        // no unowned image outlives the workflow.
        if let Err(e) = core.collect_garbage() {
            tracing::warn!(error = %e, "garbage collection after a failed delete");
        }
        Ok(())
    }
}

fn release(core: &Core, p: &Params) -> Result<()> {
    let slot = core.slot(p.volume_id);
    let guard = core.quiesce(&slot)?;
    let mut tx = core.store.write()?;
    let Some(volume) = tx.volume(p.volume_id)? else {
        return Ok(());
    };
    let snapshots = tx.snapshots_of_volume(p.volume_id)?;
    if !snapshots.is_empty() && !p.cascade {
        return Err(ServiceError::InvalidVolume(
            "Volume still has snapshots.".into(),
        ));
    }
    for snapshot in snapshots {
        release_snapshot(core, tx.as_mut(), snapshot.id)?;
    }
    if let Some(data) = volume.image {
        core.backend_of(&volume)?.release(tx.as_mut(), data)?;
    }
    crate::backups::release_points_of_volume(core, tx.as_mut(), &volume)?;
    tx.delete_volume(p.volume_id)?;
    tx.add_quota_usage(&volume.project_id, QuotaResource::Volumes, -1)?;
    tx.add_quota_usage(
        &volume.project_id,
        QuotaResource::Gigabytes,
        -(volume.size_gib as i64),
    )?;
    crate::quotas::release_typed(
        tx.as_mut(),
        &volume.project_id,
        &crate::quotas::type_of(&volume.volume_type_id),
        &[
            (QuotaResource::Volumes, 1),
            (QuotaResource::Gigabytes, volume.size_gib as i64),
        ],
    )?;
    tx.commit()?;
    guard.release();
    core.forget_slot(p.volume_id);
    Ok(())
}

fn collect(core: &Core, _: &Params) -> Result<()> {
    core.collect_garbage_step()
}
