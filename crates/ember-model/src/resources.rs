//! Volumes, snapshots, images, quotas and workflow records.

use crate::{
    BackupId, ImageId, Metadata, ProjectId, SnapshotId, Timestamp, UserId, VolumeId, WorkflowId,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! status_enum {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok($name::$variant),)* _ => Err(()) }
            }
        }
    };
}

status_enum!(VolumeStatus {
    Creating => "creating",
    Available => "available",
    Reserved => "reserved",
    Attaching => "attaching",
    Detaching => "detaching",
    InUse => "in-use",
    Maintenance => "maintenance",
    Deleting => "deleting",
    Error => "error",
    ErrorDeleting => "error_deleting",
    ErrorExtending => "error_extending",
    ErrorRestoring => "error_restoring",
    Extending => "extending",
    Reverting => "reverting",
    Retyping => "retyping",
    AwaitingTransfer => "awaiting-transfer",
    RestoringBackup => "restoring-backup",
});

impl VolumeStatus {
    /// Statuses in which work is under way; recovery never leaves a volume in
    /// one of these.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            VolumeStatus::Creating
                | VolumeStatus::Deleting
                | VolumeStatus::Extending
                | VolumeStatus::Reverting
                | VolumeStatus::Retyping
                | VolumeStatus::RestoringBackup
        )
    }
}

status_enum!(SnapshotStatus {
    Creating => "creating",
    Available => "available",
    Deleting => "deleting",
    Error => "error",
    ErrorDeleting => "error_deleting",
    Restoring => "restoring",
    BackingUp => "backing-up",
});

impl SnapshotStatus {
    pub fn is_transitional(self) -> bool {
        matches!(self, SnapshotStatus::Creating | SnapshotStatus::Deleting)
    }
}

/// Where an attachment is in its life (Cinder's `attach_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachStatus {
    /// Holds the volume for an instance; no connection yet.
    Reserved,
    /// Connection made (an export exists); not yet confirmed by the host.
    Attaching,
    Attached,
}

impl AttachStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachStatus::Reserved => "reserved",
            AttachStatus::Attaching => "attaching",
            AttachStatus::Attached => "attached",
        }
    }

    fn attached() -> Self {
        AttachStatus::Attached
    }
}

/// A volume attachment (legacy `os-attach` or the attachments API).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: uuid::Uuid,
    pub instance_uuid: Option<String>,
    pub host_name: Option<String>,
    pub mountpoint: Option<String>,
    /// `rw`, `ro`, or `null` (attachments API before a connector set it).
    pub mode: String,
    /// When the host confirmed the attachment; none while reserved.
    pub attached_at: Option<Timestamp>,
    #[serde(default = "AttachStatus::attached")]
    pub status: AttachStatus,
    /// What the host told us about itself (os-brick's connector).
    #[serde(default)]
    pub connector: Option<serde_json::Value>,
    /// The secret part of this attachment's NBD export name; present while
    /// a connection is initialized. Knowing the volume id is not enough.
    #[serde(default)]
    pub export_secret: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: VolumeId,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size_gib: u64,
    pub status: VolumeStatus,
    pub availability_zone: String,
    /// The type's name (kept in step when the type is renamed).
    pub volume_type: String,
    /// The type's id; `None` for volumes made before types could be created
    /// (they have the default type).
    #[serde(default)]
    pub volume_type_id: Option<String>,
    /// The generic volume group the volume belongs to (3.13+).
    #[serde(default)]
    pub group_id: Option<String>,
    pub snapshot_id: Option<SnapshotId>,
    pub source_volid: Option<VolumeId>,
    pub metadata: Metadata,
    pub bootable: bool,
    pub multiattach: bool,
    /// Cinder's `readonly` admin metadata (`os-update_readonly_flag`):
    /// when true every export of the volume is read-only. `None` until
    /// the flag is first set (Cinder then shows no `readonly` key).
    #[serde(default)]
    pub read_only: Option<bool>,
    pub attachments: Vec<Attachment>,
    /// The backend holding the volume's data (a `[[backend]]` name; the
    /// embedded default is `qcow2`) and its pool there.
    #[serde(default = "default_backend")]
    pub backend: String,
    #[serde(default = "default_backend")]
    pub pool: String,
    /// Cinder's `migration_status` of the last move between backends
    /// (`migrating`, `success`, `error`); None for a volume never moved.
    #[serde(default)]
    pub migration_status: Option<String>,
    /// The volume's data on its backend, once it exists: a name only the
    /// backend interprets.
    pub image: Option<ImageId>,
    /// Why the last operation failed, for admins (`error` statuses).
    pub error_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub volume_id: VolumeId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size_gib: u64,
    pub status: SnapshotStatus,
    pub metadata: Metadata,
    /// The group snapshot this snapshot was taken for (3.14+).
    #[serde(default)]
    pub group_snapshot_id: Option<String>,
    /// The volume's type when the snapshot was taken (its per-type quota).
    #[serde(default)]
    pub volume_type_id: Option<String>,
    /// The frozen image holding the snapshot's data, once taken.
    pub image: Option<ImageId>,
    /// Secret part of the snapshot's read-only NBD export name, while it
    /// is exported (Ember's `ember-export` action).
    #[serde(default)]
    pub export_secret: Option<String>,
    pub progress: String,
    pub error_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// Who keeps an image alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageOwner {
    /// The writable top of a volume.
    Volume(VolumeId),
    /// The frozen image of a snapshot.
    Snapshot(SnapshotId),
    /// Nobody: the image lives only while other images read through it, and
    /// the garbage collector merges or deletes it.
    None,
    /// Nobody, but kept: an unmanaged volume's or snapshot's data, offered
    /// for a later manage under the image's `label`.
    Unmanaged,
    /// A volume's point in time as its latest backup read it, kept so
    /// that the next incremental backup reads only what changed since.
    Backup(BackupId),
}

status_enum!(BackupStatus {
    Creating => "creating",
    Available => "available",
    Deleting => "deleting",
    Error => "error",
    ErrorDeleting => "error_deleting",
    Restoring => "restoring",
});

impl Backup {
    /// The project whose chunk namespace on the target holds the data.
    pub fn chunk_namespace(&self) -> &ProjectId {
        self.chunk_project.as_ref().unwrap_or(&self.project_id)
    }
}

impl BackupStatus {
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            BackupStatus::Creating | BackupStatus::Deleting | BackupStatus::Restoring
        )
    }
}

/// A copy of a volume (or of one of its snapshots) on the backup target:
/// chunks named by their SHA-256, listed by `backup_refs` rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub id: BackupId,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub volume_id: VolumeId,
    pub snapshot_id: Option<SnapshotId>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub availability_zone: Option<String>,
    pub container: Option<String>,
    pub size_gib: u64,
    pub status: BackupStatus,
    pub fail_reason: Option<String>,
    pub is_incremental: bool,
    pub parent_id: Option<BackupId>,
    pub metadata: Metadata,
    /// Chunks holding data, and the bytes they take on the target that
    /// this backup added (the rest it shares).
    pub object_count: u64,
    pub stored_bytes: u64,
    /// The moment the data is from (the snapshot's, for a snapshot's
    /// backup).
    pub data_timestamp: Timestamp,
    /// The frozen data of the volume this backup read, while it is kept as
    /// the base of the next incremental (see `ImageOwner::Backup`).
    #[serde(default)]
    pub point: Option<ImageId>,
    /// The data the backup reads (the point, or the snapshot's data).
    #[serde(default)]
    pub source: Option<ImageId>,
    /// The volume a restore is writing, while it runs.
    #[serde(default)]
    pub restore_volume_id: Option<VolumeId>,
    /// The volume's metadata when it was backed up (a restore brings it
    /// back, as Cinder's does).
    #[serde(default)]
    pub volume_metadata: Metadata,
    /// The project whose chunks and manifest hold the data, when not the
    /// backup's own (a backup imported into another project).
    #[serde(default)]
    pub chunk_project: Option<ProjectId>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// The name of the embedded backend, and of every volume recorded before
/// volumes recorded their backend.
pub const DEFAULT_BACKEND: &str = "qcow2";

fn default_backend() -> String {
    DEFAULT_BACKEND.into()
}

fn yes() -> bool {
    true
}

/// One piece of data a backend keeps for volumes and snapshots (a layer
/// of a qcow2 chain, an RBD image or snapshot), as the metadata store
/// records it for that backend. Only backends read and write these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: ImageId,
    pub parent: Option<ImageId>,
    pub size_bytes: u64,
    pub owner: ImageOwner,
    pub created_at: Timestamp,
    /// The backend the data is on.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// False from a new volume's claim until its data is made: a re-run
    /// may still replace it, so nothing may be merged into it meanwhile.
    #[serde(default = "yes")]
    pub ready: bool,
    /// What the data is, for backends that keep more than one kind (RBD:
    /// `image` or `snap`); empty for qcow2 layers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The name an operator manages the data by (`volume-<id>` after an
    /// unmanage, or a foreign object's own name while it is adopted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Quota-limited resources, as Cinder names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuotaResource {
    Volumes,
    Snapshots,
    Gigabytes,
    /// The largest single volume; not a counter.
    PerVolumeGigabytes,
    Backups,
    BackupGigabytes,
    Groups,
}

impl QuotaResource {
    pub const ALL: [QuotaResource; 7] = [
        QuotaResource::Volumes,
        QuotaResource::Snapshots,
        QuotaResource::Gigabytes,
        QuotaResource::PerVolumeGigabytes,
        QuotaResource::Backups,
        QuotaResource::BackupGigabytes,
        QuotaResource::Groups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaResource::Volumes => "volumes",
            QuotaResource::Snapshots => "snapshots",
            QuotaResource::Gigabytes => "gigabytes",
            QuotaResource::PerVolumeGigabytes => "per_volume_gigabytes",
            QuotaResource::Backups => "backups",
            QuotaResource::BackupGigabytes => "backup_gigabytes",
            QuotaResource::Groups => "groups",
        }
    }

    /// Cinder's defaults.
    pub fn default_limit(self) -> i64 {
        match self {
            QuotaResource::Volumes => 10,
            QuotaResource::Snapshots => 10,
            QuotaResource::Gigabytes => 1000,
            QuotaResource::PerVolumeGigabytes => -1,
            QuotaResource::Backups => 10,
            QuotaResource::BackupGigabytes => 1000,
            QuotaResource::Groups => 10,
        }
    }
}

/// Where a workflow stands; stored so a restart resumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowPhase {
    /// Running steps forward; `next_step` is the first not known done.
    Forward,
    /// A step failed; undoing steps `next_step - 1` down to 0.
    Unwinding,
}

/// A durable record of one asynchronous operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub id: WorkflowId,
    pub kind: String,
    pub params: serde_json::Value,
    pub phase: WorkflowPhase,
    pub next_step: u32,
    pub error: Option<String>,
    pub created_at: Timestamp,
    /// The node that runs it (see `Node`); another node takes it over when
    /// this one stops renewing its lease. None: written before nodes
    /// existed, taken by whichever node recovers first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One `ember serve` process sharing the metadata store with others. Its
/// heartbeat is its lease on the workflows it owns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    /// Where this node's API listens (for operators; any node answers any
    /// request).
    pub api: String,
    /// Where this node serves NBD exports, if it does.
    pub nbd: Option<String>,
    pub started_at: Timestamp,
    /// The last renewal, by the node's own clock (nodes' clocks must agree
    /// to within a second or two, as NTP keeps them).
    pub heartbeat: Timestamp,
}

/// A volume type: a name, extra specs for the scheduler and drivers (Ember
/// has one backend, so they are kept and shown, not acted on), who may use
/// it, and front-end encryption settings (done by the consumer, as in
/// Cinder; Ember records them and marks volumes `encrypted`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeType {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub extra_specs: Metadata,
    /// Projects that may use a private type.
    pub access: Vec<ProjectId>,
    pub encryption: Option<Encryption>,
    /// The QoS specs associated with the type.
    #[serde(default)]
    pub qos_specs_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    pub encryption_id: String,
    pub provider: String,
    pub cipher: Option<String>,
    pub key_size: Option<i64>,
    pub control_location: String,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// An offer to give a volume (and, unless `no_snapshots`, its snapshots) to
/// whichever project presents the auth key. Only a salted hash of the key
/// is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub volume_id: VolumeId,
    pub name: Option<String>,
    pub source_project_id: ProjectId,
    pub no_snapshots: bool,
    pub salt: String,
    pub key_hash: String,
    pub created_at: Timestamp,
}

/// An admin's switch on one of Ember's Cinder-style services
/// (`cinder-volume`, `cinder-scheduler`): disabled with a reason, or not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSwitch {
    pub binary: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub updated_at: Option<Timestamp>,
}

/// A QoS specification: limits for the consumer that enforces them
/// (`front-end`: the hypervisor, from the connection info; `back-end`: the
/// storage, which Ember's pool does not do — it reports `QoS_support:
/// false`), associated with volume types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QosSpecs {
    pub id: String,
    pub name: String,
    pub consumer: String,
    pub specs: Metadata,
    pub created_at: Timestamp,
}

/// A message for a project's users about something that failed without
/// failing their request (Cinder's user messages, API 3.3+).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserMessage {
    pub id: String,
    pub project_id: ProjectId,
    pub request_id: String,
    pub event_id: String,
    pub message_level: String,
    pub resource_type: String,
    pub resource_uuid: Option<String>,
    pub user_message: String,
    pub created_at: Timestamp,
    pub guaranteed_until: Timestamp,
}

/// A group type (Cinder API 3.11+): a name and group specs for generic
/// volume groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupType {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub group_specs: Metadata,
    pub created_at: Timestamp,
}

/// A generic volume group (3.13+). Its status is `available` unless an
/// admin set another or a member volume is still being created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub group_type_id: String,
    pub volume_type_ids: Vec<String>,
    pub availability_zone: String,
    pub status: String,
    pub group_snapshot_id: Option<String>,
    pub source_group_id: Option<String>,
    pub created_at: Timestamp,
}

/// A snapshot of every volume of a group, taken together (3.14+). Its
/// status follows its member snapshots unless an admin set one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub id: String,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub group_id: String,
    pub group_type_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status_override: Option<String>,
    pub created_at: Timestamp,
}

/// What a policy makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Snapshot,
    Backup,
}

/// When a policy runs: every `interval_seconds`, or at the times a cron
/// expression names in `time_zone` (an IANA name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// What a policy keeps of what it made: at most `count`, none older than
/// `max_age_seconds` (either or both; the newest is always kept).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
}

/// The volumes of its project a policy covers: those listed, those of a
/// volume type (id or name), those carrying every metadata pair given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<VolumeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// One run of a policy, as it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRun {
    /// The time the run was due.
    pub scheduled_at: Timestamp,
    pub started_at: Timestamp,
    /// How late it started (a run missed while Ember was down runs once,
    /// late, and says so here).
    pub late_seconds: u64,
    pub made: u32,
    pub deleted: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// A snapshot or backup policy of a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub id: String,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub name: String,
    pub kind: PolicyKind,
    pub schedule: Schedule,
    pub retention: Retention,
    pub volumes: Selector,
    pub enabled: bool,
    pub next_run: Timestamp,
    /// A run that was claimed (due time) and has not finished: it is
    /// finished after a restart, never started twice.
    #[serde(default)]
    pub pending_run: Option<Timestamp>,
    #[serde(default)]
    pub last_run: Option<PolicyRun>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}
