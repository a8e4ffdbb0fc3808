//! Volume extend: grow the writable top. The quota for the extra size was
//! reserved with the request; the undo of the first step returns it.
//!
//! Steps:
//! 1. (DB) `reserve`: nothing forward. Undo: if the volume is still
//!    `extending`, return the reserved gigabytes and mark `error_extending`
//!    in one transaction (so a repeated undo returns them only once).
//! 2. (Storage) `grow`: the backend grows the data (a no-op if already grown).
//! 3. (DB) `finish`: record the new size; `available`.

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::Result;
use ember_model::{QuotaResource, Timestamp, VolumeId, VolumeStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    pub old_size_gib: u64,
    pub new_size_gib: u64,
    /// The status to return to (`available` or `in-use`).
    pub resume_status: VolumeStatus,
}

pub struct VolumeExtend;

impl Workflow for VolumeExtend {
    const KIND: &'static str = "volume-extend";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "reserve",
                run: nothing,
                undo: unreserve,
            },
            Step {
                name: "grow",
                run: grow,
                undo: nothing,
            },
            Step {
                name: "finish",
                run: finish,
                undo: nothing,
            },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        if let Some(mut v) = tx.volume(p.volume_id)? {
            v.error_reason = Some(super::reason(reason));
            tx.put_volume(&v)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn unreserve(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if let Some(mut v) = tx.volume(p.volume_id)?
        && v.status == VolumeStatus::Extending
    {
        let delta = p.new_size_gib as i64 - p.old_size_gib as i64;
        tx.add_quota_usage(&v.project_id, QuotaResource::Gigabytes, -delta)?;
        crate::quotas::release_typed(
            tx.as_mut(),
            &v.project_id,
            &crate::quotas::type_of(&v.volume_type_id),
            &[(QuotaResource::Gigabytes, delta)],
        )?;
        v.status = VolumeStatus::ErrorExtending;
        v.updated_at = Some(Timestamp::now());
        tx.put_volume(&v)?;
        tx.commit()?;
    }
    Ok(())
}

fn grow(core: &Core, p: &Params) -> Result<()> {
    let slot = core.slot(p.volume_id);
    let guard = core.quiesce(&slot)?;
    let (volume, data) = core.volume_data(p.volume_id)?;
    let new_size = crate::volumes::size_bytes(p.new_size_gib)?;
    core.backend_of(&volume)?.grow(data, new_size)?;
    guard.release();
    Ok(())
}

fn finish(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if let Some(mut v) = tx.volume(p.volume_id)?
        && v.status == VolumeStatus::Extending
    {
        v.size_gib = p.new_size_gib;
        v.status = p.resume_status;
        v.updated_at = Some(Timestamp::now());
        tx.put_volume(&v)?;
        tx.commit()?;
    }
    Ok(())
}
