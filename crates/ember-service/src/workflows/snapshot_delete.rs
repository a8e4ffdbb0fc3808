//! Snapshot delete: give up the snapshot's data, let the backend merge or
//! remove it, then delete the record and return the quota. The
//! snapshot stays visible as `deleting` until its storage work is done, so
//! a 404 means nothing is left to do.
//!
//! Steps:
//! 1. (DB) `disown`: the backend releases the data. A re-run finds the
//!    snapshot without data.
//! 2. (Storage) `collect`: the backend removes the data, or folds it into
//!    what reads through it, or keeps it while clones still need it.
//! 3. (DB) `remove`: in one transaction, delete the record and return the
//!    quota. A re-run finds no record and does nothing.

use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::Result;
use ember_model::{QuotaResource, SnapshotId, SnapshotStatus, Timestamp};
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
            Step {
                name: "disown",
                run: disown,
                undo: nothing,
            },
            Step {
                name: "collect",
                run: collect,
                undo: nothing,
            },
            Step {
                name: "remove",
                run: remove,
                undo: nothing,
            },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        if let Some(mut s) = tx.snapshot(p.snapshot_id)? {
            s.status = SnapshotStatus::ErrorDeleting;
            s.error_reason = Some(super::reason(reason));
            s.updated_at = Some(Timestamp::now());
            tx.put_snapshot(&s)?;
            // A group snapshot being deleted shows the failure too (a new
            // DELETE retries the members that failed).
            if let Some(mut gs) = s
                .group_snapshot_id
                .as_deref()
                .map(|g| tx.group_snapshot(g))
                .transpose()?
                .flatten()
                && gs.status_override.as_deref() == Some("deleting")
            {
                gs.status_override = Some("error_deleting".into());
                tx.put_group_snapshot(&gs)?;
            }
        }
        tx.commit()?;
        // The image may be unowned already: try again so no collectable
        // image outlives the workflow.
        if let Err(e) = core.collect_garbage() {
            tracing::warn!(error = %e, "garbage collection after a failed delete");
        }
        Ok(())
    }
}

pub(crate) fn release_snapshot(
    core: &Core,
    tx: &mut dyn ember_store::Tx,
    snapshot_id: SnapshotId,
) -> Result<()> {
    forget_snapshot(core, tx, snapshot_id, None)
}

/// Deletes the snapshot's record and returns its quota, in `tx`; its data
/// is released, or with `keep_as` kept unmanaged under that label.
pub(crate) fn forget_snapshot(
    core: &Core,
    tx: &mut dyn ember_store::Tx,
    snapshot_id: SnapshotId,
    keep_as: Option<&str>,
) -> Result<()> {
    let Some(snapshot) = tx.snapshot(snapshot_id)? else {
        return Ok(());
    };
    if let Some(data) = snapshot.image {
        let backend = core.backend_of_snapshot(tx, &snapshot)?;
        match keep_as {
            Some(label) => backend.unmanage(tx, data, label)?,
            None => backend.release(tx, data)?,
        }
    }
    tx.delete_snapshot(snapshot_id)?;
    // The last member of a group snapshot being deleted takes it along.
    if let Some(gid) = &snapshot.group_snapshot_id
        && let Some(gs) = tx.group_snapshot(gid)?
    {
        let deleting = matches!(
            gs.status_override.as_deref(),
            Some("deleting" | "error_deleting")
        );
        if deleting && !any_member_left(tx, gid)? {
            tx.delete_group_snapshot(gid)?;
        }
    }
    tx.add_quota_usage(&snapshot.project_id, QuotaResource::Snapshots, -1)?;
    tx.add_quota_usage(
        &snapshot.project_id,
        QuotaResource::Gigabytes,
        -(snapshot.size_gib as i64),
    )?;
    crate::quotas::release_typed(
        tx,
        &snapshot.project_id,
        &crate::quotas::type_of(&snapshot.volume_type_id),
        &[
            (QuotaResource::Snapshots, 1),
            (QuotaResource::Gigabytes, snapshot.size_gib as i64),
        ],
    )?;
    Ok(())
}

/// Whether any snapshot still belongs to group snapshot `gid`.
pub(crate) fn any_member_left(tx: &mut dyn ember_store::Tx, gid: &str) -> Result<bool> {
    Ok(tx
        .all_snapshots()?
        .iter()
        .any(|s| s.group_snapshot_id.as_deref() == Some(gid)))
}

fn disown(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    if let Some(mut snapshot) = tx.snapshot(p.snapshot_id)?
        && let Some(data) = snapshot.image.take()
    {
        core.backend_of_snapshot(tx.as_mut(), &snapshot)?
            .release(tx.as_mut(), data)?;
        tx.put_snapshot(&snapshot)?;
    }
    tx.commit()?;
    Ok(())
}

fn remove(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    release_snapshot(core, tx.as_mut(), p.snapshot_id)?;
    tx.commit()?;
    Ok(())
}

fn collect(core: &Core, _: &Params) -> Result<()> {
    core.collect_garbage_step()
}
