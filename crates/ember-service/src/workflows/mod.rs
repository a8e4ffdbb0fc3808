//! One file per asynchronous operation, each a list of idempotent steps
//! with undos (see `crate::engine`). Every step says which subsystem it
//! touches: (DB) the metadata store, (Storage) image files.

pub mod backup_chunks;
pub mod backup_create;
pub mod backup_delete;
pub mod backup_restore;
pub mod snapshot_create;
pub mod snapshot_delete;
pub mod volume_create;
pub mod volume_delete;
pub mod volume_extend;
pub mod volume_migrate;
pub mod volume_revert;

use crate::core::Core;
use crate::engine::{Outcome, Workflow, drive};
use crate::error::{Result, ServiceError};
use ember_model::WorkflowRecord;

/// Runs a stored workflow record with the workflow its kind names.
/// Every workflow kind, e.g. to show every kind's counters from the start.
pub const KINDS: [&str; 10] = [
    volume_create::VolumeCreate::KIND,
    volume_migrate::VolumeMigrate::KIND,
    volume_delete::VolumeDelete::KIND,
    volume_extend::VolumeExtend::KIND,
    volume_revert::VolumeRevert::KIND,
    snapshot_create::SnapshotCreate::KIND,
    snapshot_delete::SnapshotDelete::KIND,
    backup_create::BackupCreate::KIND,
    backup_delete::BackupDelete::KIND,
    backup_restore::BackupRestore::KIND,
];

pub fn dispatch(core: &Core, record: WorkflowRecord) -> Result<Outcome> {
    match record.kind.as_str() {
        volume_create::VolumeCreate::KIND => drive::<volume_create::VolumeCreate>(core, record),
        volume_delete::VolumeDelete::KIND => drive::<volume_delete::VolumeDelete>(core, record),
        volume_extend::VolumeExtend::KIND => drive::<volume_extend::VolumeExtend>(core, record),
        volume_migrate::VolumeMigrate::KIND => drive::<volume_migrate::VolumeMigrate>(core, record),
        volume_revert::VolumeRevert::KIND => drive::<volume_revert::VolumeRevert>(core, record),
        snapshot_create::SnapshotCreate::KIND => {
            drive::<snapshot_create::SnapshotCreate>(core, record)
        }
        snapshot_delete::SnapshotDelete::KIND => {
            drive::<snapshot_delete::SnapshotDelete>(core, record)
        }
        backup_create::BackupCreate::KIND => drive::<backup_create::BackupCreate>(core, record),
        backup_delete::BackupDelete::KIND => drive::<backup_delete::BackupDelete>(core, record),
        backup_restore::BackupRestore::KIND => drive::<backup_restore::BackupRestore>(core, record),
        other => Err(ServiceError::Internal(format!(
            "unknown workflow kind {other}"
        ))),
    }
}

/// Truncates a failure reason to what fits in a status message.
pub(crate) fn reason(text: &str) -> String {
    text.chars().take(255).collect()
}
