//! Snapshot delete: release the snapshot's image and its quota, then let
//! the garbage collector merge or remove the image.
//!
//! Steps:
//! 1. (DB) `release`: in one transaction, give up the image, delete the
//!    record and return the quota. A re-run finds no record and does nothing.
//! 2. (Storage) `collect`: merge the image into its only child, delete it if
//!    it has none, keep it while several clones still read through it.

use crate::core::Core;
use crate::engine::{nothing, Step, Workflow};
use crate::error::Result;
use crate::gc;
use ember_model::{ImageOwner, QuotaResource, SnapshotId, SnapshotStatus, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub snapshot_id: SnapshotId,
}

pub struct SnapshotDelete;

impl Workflow for SnapshotDelete {
    const KIND: &'static str = "snapshot-delete";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step { name: "release", run: release, undo: nothing },
            Step { name: "collect", run: collect, undo: nothing },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        if let Some(mut s) = tx.snapshot(p.snapshot_id)? {
            s.status = SnapshotStatus::ErrorDeleting;
            s.error_reason = Some(super::reason(reason));
            s.updated_at = Some(Timestamp::now());
            tx.put_snapshot(&s)?;
        }
        tx.commit()?;
        // If only the collection failed, the records are gone: try again so
        // no unowned image outlives the workflow.
        if let Err(e) = gc::collect_garbage(core) {
            tracing::warn!(error = %e, "garbage collection after a failed delete");
        }
        Ok(())
    }
}

pub(crate) fn release_snapshot(tx: &mut dyn ember_store::Tx, snapshot_id: SnapshotId) -> Result<()> {
    let Some(snapshot) = tx.snapshot(snapshot_id)? else {
        return Ok(());
    };
    if let Some(image_id) = snapshot.image {
        if let Some(mut image) = tx.image(image_id)? {
            image.owner = ImageOwner::None;
            tx.put_image(&image)?;
        }
    }
    tx.delete_snapshot(snapshot_id)?;
    tx.add_quota_usage(&snapshot.project_id, QuotaResource::Snapshots, -1)?;
    tx.add_quota_usage(&snapshot.project_id, QuotaResource::Gigabytes, -(snapshot.size_gib as i64))?;
    Ok(())
}

fn release(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    release_snapshot(tx.as_mut(), p.snapshot_id)?;
    tx.commit()?;
    Ok(())
}

fn collect(core: &Core, _: &Params) -> Result<()> {
    gc::collect_garbage(core)
}
