//! Backup delete.
//!
//! Steps:
//! 1. (Target) `manifest`: delete the backup's manifest (idempotent).
//! 2. (DB) `forget`: in one transaction, give up the backup's point,
//!    delete its record and chunk references, return its quota.
//! 3. (Target+Storage) `collect`: delete the chunks nothing references any
//!    more, and what the backend no longer needs. Housekeeping: a failure
//!    is left to the next collection.

use super::backup_chunks;
use super::backup_create::backend_of_data;
use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::Result;
use ember_model::{BackupId, BackupStatus, QuotaResource, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub backup_id: BackupId,
}

pub struct BackupDelete;

impl Workflow for BackupDelete {
    const KIND: &'static str = "backup-delete";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "manifest",
                run: delete_manifest,
                undo: nothing,
            },
            Step {
                name: "forget",
                run: forget,
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
        if let Some(mut b) = tx.backup(p.backup_id)? {
            b.status = BackupStatus::ErrorDeleting;
            b.fail_reason = Some(super::reason(reason));
            b.updated_at = Some(Timestamp::now());
            tx.put_backup(&b)?;
        }
        tx.commit()?;
        // If only the collection failed, the record is gone: collect again
        // so that nothing it gave up outlives the workflow.
        collect(core, p)
    }
}

fn delete_manifest(core: &Core, p: &Params) -> Result<()> {
    let Some(b) = core.store.read()?.backup(p.backup_id)? else {
        return Ok(());
    };
    backup_chunks::target(core)?
        .delete_manifest(&b.chunk_namespace().0, &p.backup_id.to_string())
        .map_err(backup_chunks::target_error)
}

fn forget(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    let Some(b) = tx.backup(p.backup_id)? else {
        return Ok(());
    };
    if let Some(point) = b.point {
        backend_of_data(core, tx.as_mut(), point)?.release(tx.as_mut(), point)?;
    }
    tx.delete_backup(p.backup_id)?;
    tx.add_quota_usage(&b.project_id, QuotaResource::Backups, -1)?;
    tx.add_quota_usage(
        &b.project_id,
        QuotaResource::BackupGigabytes,
        -(b.size_gib as i64),
    )?;
    tx.commit()?;
    Ok(())
}

fn collect(core: &Core, _: &Params) -> Result<()> {
    if let Err(e) = backup_chunks::collect(core) {
        tracing::warn!(error = %e, "backup chunk collection failed; the next one retries");
    }
    core.collect_garbage_step()
}
