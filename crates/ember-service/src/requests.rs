//! Dialect-neutral requests. Each dialect fills these from its own wire
//! format after validating syntax; the service checks the rules.

use ember_model::{BackupId, Metadata, SnapshotId, SnapshotStatus, VolumeId, VolumeStatus};

#[derive(Clone, Debug, Default)]
pub struct CreateVolume {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Required unless the volume is made from a snapshot or volume.
    pub size_gib: Option<u64>,
    pub snapshot_id: Option<SnapshotId>,
    pub source_volid: Option<VolumeId>,
    pub metadata: Metadata,
    pub availability_zone: Option<String>,
    pub volume_type: Option<String>,
    pub multiattach: bool,
    /// The API request's id, for user messages about it.
    pub request_id: Option<String>,
    /// The generic volume group to join (3.13+).
    pub group_id: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct UpdateVolume {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug)]
pub struct CreateSnapshot {
    pub volume_id: VolumeId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// Whether an attached (`in-use`) volume may be snapshotted: the
    /// dialect decides from `force` and its version rules.
    pub allow_in_use: bool,
}

#[derive(Clone, Debug, Default)]
pub struct UpdateSnapshot {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
}

/// How a metadata write combines with what is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataWrite {
    /// Add or overwrite the given keys (POST).
    Merge,
    /// Make the metadata exactly the given map (PUT).
    Replace,
}

#[derive(Clone, Debug)]
pub struct AttachRequest {
    pub instance_uuid: Option<String>,
    pub host_name: Option<String>,
    pub mountpoint: Option<String>,
    pub mode: String,
}

/// Admin status overrides.
#[derive(Clone, Debug)]
pub enum ResetStatus {
    Volume(VolumeStatus),
    Snapshot(SnapshotStatus),
}

#[derive(Clone, Debug, Default)]
pub struct CreateBackup {
    pub volume_id: VolumeId,
    pub snapshot_id: Option<SnapshotId>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub container: Option<String>,
    pub availability_zone: Option<String>,
    pub metadata: Metadata,
    pub incremental: bool,
    /// Whether an attached (`in-use`) volume may be backed up.
    pub force: bool,
}

#[derive(Clone, Debug, Default)]
pub struct UpdateBackup {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Metadata>,
}

/// Where a restore writes: an existing volume, or a new one (named).
#[derive(Clone, Debug, Default)]
pub struct RestoreBackup {
    pub volume_id: Option<VolumeId>,
    pub name: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Restored {
    pub backup_id: BackupId,
    pub volume_id: VolumeId,
    pub volume_name: Option<String>,
}
