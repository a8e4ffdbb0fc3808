//! The metadata store: every record Ember keeps, behind one trait.
//!
//! The service layer composes its rules out of the primitive reads and
//! writes of [`Tx`], inside one transaction, so a rule such as "reserve quota
//! and insert the snapshot and its workflow" is atomic on every backend.
//! Nothing here knows about API dialects or business rules; nothing above
//! it writes SQL. `sqlite` is the embedded default; a PostgreSQL backend
//! implements the same two traits.

mod list;
pub mod postgres;
pub mod sqlite;

pub use list::{ListQuery, Page, SnapshotFilter, SortDir, SortKey, VolumeFilter};

use ember_model::{
    AccessKey, Backup, BackupId, Group, GroupSnapshot, GroupType, Image, ImageId, Node, Policy,
    Project, ProjectId, QosSpecs, QuotaResource, Role, ServiceSwitch, Snapshot, SnapshotId,
    Transfer, User, UserMessage, Volume, VolumeId, VolumeType, WorkflowId, WorkflowRecord,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store error: {0}")]
    Backend(String),
    #[error("corrupt record {0}: {1}")]
    Corrupt(String, String),
    /// The file system holding the store has no space left: the change
    /// was not made (and can be retried once space is freed).
    #[error("no space left for the metadata store: {0}")]
    Full(String),
    /// The store could not be reached (a database server down or
    /// restarting, a connection cut, every connection busy): nothing was
    /// changed, and the same call may succeed later.
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Records are stored as JSON bodies on every engine.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain records always serialize")
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(what.to_string(), e.to_string()))
}

pub trait MetadataStore: Send + Sync + 'static {
    /// Starts a read-write transaction. Writers are serialized; a commit
    /// returns only once the change is durable.
    fn write(&self) -> Result<Box<dyn Tx + '_>>;
    /// Starts a read-only transaction (a consistent snapshot).
    fn read(&self) -> Result<Box<dyn Tx + '_>>;

    /// Whether a one-row read never waits for a writer (it has connections
    /// of its own), so it may run on an async worker rather than a
    /// blocking thread.
    fn point_reads_never_wait(&self) -> bool {
        false
    }

    /// Whether other processes (nodes) may share this store: they then
    /// register, renew leases on their workflows and take over those of a
    /// node that stopped.
    fn shared(&self) -> bool {
        false
    }

    /// Runs `job` in a write transaction that may be shared with other
    /// callers' jobs and committed once for all of them (group commit: one
    /// fsync for many small changes). The job returns whether to keep its
    /// changes; when it returns false they are rolled back without
    /// affecting the others. Returns, once the commit is durable, what the
    /// job returned. The default runs the job in a transaction of its own.
    fn write_grouped(&self, job: GroupJob) -> Result<bool> {
        let mut tx = self.write()?;
        // A job that panics fails alone (its transaction rolls back), as
        // in a shared group commit.
        let keep = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(tx.as_mut())))
            .map_err(|_| StoreError::Backend("a write job panicked".into()))?;
        if keep {
            tx.commit()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `write_grouped`, with `barrier` run (once per group, however many
    /// of its jobs pass it) after the jobs and before the commit: if the
    /// barrier fails, nothing of the group is committed.
    fn write_grouped_after(&self, barrier: Barrier, job: GroupJob) -> Result<bool> {
        barrier()?;
        self.write_grouped(job)
    }
}

/// A unit of work for [`MetadataStore::write_grouped`].
pub type GroupJob = Box<dyn FnOnce(&mut dyn Tx) -> bool + Send>;

/// Something that must be durable before a group's commit is, e.g. the
/// directory entries of the files the group's jobs name. Jobs that pass
/// the same `Arc` share one call per commit.
pub type Barrier = std::sync::Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// One transaction. Dropping it without `commit` rolls it back.
pub trait Tx {
    fn commit(self: Box<Self>) -> Result<()>;

    fn volume(&mut self, id: VolumeId) -> Result<Option<Volume>>;
    fn put_volume(&mut self, volume: &Volume) -> Result<()>;
    fn delete_volume(&mut self, id: VolumeId) -> Result<()>;
    fn list_volumes(&mut self, query: &ListQuery<VolumeFilter>) -> Result<Page<Volume>>;
    fn all_volumes(&mut self) -> Result<Vec<Volume>>;
    /// The volume holding the attachment of that id.
    fn volume_with_attachment(&mut self, attachment: uuid::Uuid) -> Result<Option<Volume>>;
    /// Volumes that have attachments, of one project or all.
    fn attached_volumes(&mut self, project: Option<&ProjectId>) -> Result<Vec<Volume>>;

    fn snapshot(&mut self, id: SnapshotId) -> Result<Option<Snapshot>>;
    fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<()>;
    fn delete_snapshot(&mut self, id: SnapshotId) -> Result<()>;
    fn list_snapshots(&mut self, query: &ListQuery<SnapshotFilter>) -> Result<Page<Snapshot>>;
    fn snapshots_of_volume(&mut self, volume: VolumeId) -> Result<Vec<Snapshot>>;
    fn all_snapshots(&mut self) -> Result<Vec<Snapshot>>;

    fn image(&mut self, id: ImageId) -> Result<Option<Image>>;
    fn put_image(&mut self, image: &Image) -> Result<()>;
    fn delete_image(&mut self, id: ImageId) -> Result<()>;
    fn image_children(&mut self, id: ImageId) -> Result<Vec<Image>>;
    fn all_images(&mut self) -> Result<Vec<Image>>;
    /// Images no volume or snapshot owns (what garbage collection looks
    /// at), without reading every image.
    fn unowned_images(&mut self) -> Result<Vec<Image>> {
        Ok(self
            .all_images()?
            .into_iter()
            .filter(|i| i.owner == ember_model::ImageOwner::None)
            .collect())
    }

    /// The project's limit, or `None` when it uses the default.
    fn quota_limit(&mut self, project: &ProjectId, resource: QuotaResource) -> Result<Option<i64>>;
    fn set_quota_limit(
        &mut self,
        project: &ProjectId,
        resource: QuotaResource,
        limit: i64,
    ) -> Result<()>;
    fn group(&mut self, id: &str) -> Result<Option<Group>>;
    fn groups(&mut self) -> Result<Vec<Group>>;
    fn put_group(&mut self, g: &Group) -> Result<()>;
    fn delete_group(&mut self, id: &str) -> Result<()>;
    fn group_snapshot(&mut self, id: &str) -> Result<Option<GroupSnapshot>>;
    fn group_snapshots(&mut self) -> Result<Vec<GroupSnapshot>>;
    fn put_group_snapshot(&mut self, g: &GroupSnapshot) -> Result<()>;
    fn delete_group_snapshot(&mut self, id: &str) -> Result<()>;

    fn group_type(&mut self, id: &str) -> Result<Option<GroupType>>;
    fn group_types(&mut self) -> Result<Vec<GroupType>>;
    fn put_group_type(&mut self, t: &GroupType) -> Result<()>;
    fn delete_group_type(&mut self, id: &str) -> Result<()>;

    fn message(&mut self, id: &str) -> Result<Option<UserMessage>>;
    /// Messages, oldest first; of one project, or all.
    fn messages(&mut self, project: Option<&ProjectId>) -> Result<Vec<UserMessage>>;
    fn put_message(&mut self, m: &UserMessage) -> Result<()>;
    fn delete_message(&mut self, id: &str) -> Result<()>;

    fn qos_specs(&mut self, id: &str) -> Result<Option<QosSpecs>>;
    fn all_qos_specs(&mut self) -> Result<Vec<QosSpecs>>;
    fn put_qos_specs(&mut self, q: &QosSpecs) -> Result<()>;
    fn delete_qos_specs(&mut self, id: &str) -> Result<()>;

    fn service_switch(&mut self, binary: &str) -> Result<Option<ServiceSwitch>>;
    fn put_service_switch(&mut self, s: &ServiceSwitch) -> Result<()>;

    fn transfer(&mut self, id: &str) -> Result<Option<Transfer>>;
    /// Every pending transfer, oldest first.
    fn transfers(&mut self) -> Result<Vec<Transfer>>;
    fn put_transfer(&mut self, t: &Transfer) -> Result<()>;
    fn delete_transfer(&mut self, id: &str) -> Result<()>;

    fn volume_type(&mut self, id: &str) -> Result<Option<VolumeType>>;
    /// Every stored type (the built-in default is not stored), by name.
    fn volume_types(&mut self) -> Result<Vec<VolumeType>>;
    fn put_volume_type(&mut self, t: &VolumeType) -> Result<()>;
    fn delete_volume_type(&mut self, id: &str) -> Result<()>;

    /// Per-volume-type limits and usage, under keys the service makes
    /// (e.g. `volumes:type:<id>`); same tables as the others.
    fn keyed_quota_limit(&mut self, project: &ProjectId, key: &str) -> Result<Option<i64>>;
    fn set_keyed_quota_limit(&mut self, project: &ProjectId, key: &str, limit: i64) -> Result<()>;
    fn keyed_quota_usage(&mut self, project: &ProjectId, key: &str) -> Result<i64>;
    fn add_keyed_quota_usage(&mut self, project: &ProjectId, key: &str, delta: i64) -> Result<()>;

    /// Forgets every limit set for `project` (it follows the defaults again).
    fn clear_quota_limits(&mut self, project: &ProjectId) -> Result<()>;
    fn quota_usage(&mut self, project: &ProjectId, resource: QuotaResource) -> Result<i64>;
    fn add_quota_usage(
        &mut self,
        project: &ProjectId,
        resource: QuotaResource,
        delta: i64,
    ) -> Result<()>;
    /// Every (project, resource, in-use) row, for audits.
    fn all_quota_usage(&mut self) -> Result<Vec<(ProjectId, QuotaResource, i64)>>;

    fn workflow(&mut self, id: WorkflowId) -> Result<Option<WorkflowRecord>>;
    fn put_workflow(&mut self, workflow: &WorkflowRecord) -> Result<()>;
    fn delete_workflow(&mut self, id: WorkflowId) -> Result<()>;
    /// Workflows not yet finished, oldest first.
    fn workflows(&mut self) -> Result<Vec<WorkflowRecord>>;

    // Identity (embedded Keystone-compatible service).
    fn project(&mut self, id: &str) -> Result<Option<Project>>;
    fn put_project(&mut self, project: &Project) -> Result<()>;
    fn delete_project(&mut self, id: &str) -> Result<()>;
    fn projects(&mut self) -> Result<Vec<Project>>;
    fn user(&mut self, id: &str) -> Result<Option<User>>;
    fn put_user(&mut self, user: &User) -> Result<()>;
    fn delete_user(&mut self, id: &str) -> Result<()>;
    fn users(&mut self) -> Result<Vec<User>>;
    fn access_key(&mut self, access: &str) -> Result<Option<AccessKey>>;
    fn access_keys(&mut self) -> Result<Vec<AccessKey>>;
    fn put_access_key(&mut self, key: &AccessKey) -> Result<()>;
    fn delete_access_key(&mut self, access: &str) -> Result<()>;
    fn role(&mut self, id: &str) -> Result<Option<Role>>;
    fn put_role(&mut self, role: &Role) -> Result<()>;
    fn delete_role(&mut self, id: &str) -> Result<()>;
    fn roles(&mut self) -> Result<Vec<Role>>;
    /// Role ids granted to `user` on `project`.
    fn role_assignments(&mut self, user: &str, project: &str) -> Result<Vec<String>>;
    /// Every (user, project, role) grant.
    fn all_role_assignments(&mut self) -> Result<Vec<(String, String, String)>>;
    fn grant_role(&mut self, user: &str, project: &str, role: &str) -> Result<()>;
    fn revoke_role(&mut self, user: &str, project: &str, role: &str) -> Result<()>;
    /// Records a revoked token (by audit id) until it would have expired.
    fn revoke_token(&mut self, audit_id: &str, expires_at: i64) -> Result<()>;
    /// Revoked audit ids that have not expired by `now`.
    fn revoked_tokens(&mut self, now: i64) -> Result<Vec<String>>;
    /// Records that every token of `subject` (`user:<id>`, `project:<id>`,
    /// `grant:<user>:<project>`, `role:<id>`) issued before `before_ms`
    /// (Unix milliseconds) is revoked; kept until `expires_at` (seconds),
    /// when no such token can still be valid. A later moment wins.
    fn revoke_subject(&mut self, subject: &str, before_ms: i64, expires_at: i64) -> Result<()>;
    /// (subject, before_ms) of the revocations not expired by `now`.
    fn revoked_subjects(&mut self, now: i64) -> Result<Vec<(String, i64)>>;
    /// Forgets revocations of tokens that expired before `now`.
    fn purge_revocations(&mut self, now: i64) -> Result<()>;

    /// Every node that has registered, by id.
    fn nodes(&mut self) -> Result<Vec<Node>>;
    fn put_node(&mut self, node: &Node) -> Result<()>;
    /// Forgets a node (gone for good); nothing else names it.
    fn delete_node(&mut self, id: &str) -> Result<()>;
    /// A value every node shares (signing keys), by name.
    fn secret(&mut self, name: &str) -> Result<Option<String>>;
    /// Stores `value` under `name` unless a value is there already (the
    /// first node to start creates each key).
    fn put_secret_if_absent(&mut self, name: &str, value: &str) -> Result<()>;

    // Backups, and the chunks on the backup target they reference.
    fn backup(&mut self, id: BackupId) -> Result<Option<Backup>>;
    fn put_backup(&mut self, backup: &Backup) -> Result<()>;
    /// Deletes the backup and its chunk references.
    fn delete_backup(&mut self, id: BackupId) -> Result<()>;
    /// Backups, oldest first; of one project, or all.
    fn backups(&mut self, project: Option<&ProjectId>) -> Result<Vec<Backup>>;
    /// Records that chunk `index` of `backup` (of `project`) holds the
    /// chunk named `hash`; replaces what that index held.
    fn put_backup_refs(
        &mut self,
        backup: BackupId,
        project: &ProjectId,
        refs: &[(u64, String)],
    ) -> Result<()>;
    /// The backup's (index, hash) references, by index.
    fn backup_refs(&mut self, backup: BackupId) -> Result<Vec<(u64, String)>>;
    fn clear_backup_refs(&mut self, backup: BackupId) -> Result<()>;
    /// What is known of the chunk `hash` of `project` on the target.
    fn chunk_state(&mut self, project: &ProjectId, hash: &str) -> Result<Option<ChunkState>>;
    fn put_chunk_state(&mut self, project: &ProjectId, hash: &str, state: ChunkState)
    -> Result<()>;
    fn delete_chunk_state(&mut self, project: &ProjectId, hash: &str) -> Result<()>;
    /// Up to `limit` chunks that no backup references.
    fn unreferenced_chunks(&mut self, limit: usize)
    -> Result<Vec<(ProjectId, String, ChunkState)>>;

    // Snapshot and backup policies.
    fn policy(&mut self, id: &str) -> Result<Option<Policy>>;
    fn put_policy(&mut self, policy: &Policy) -> Result<()>;
    fn delete_policy(&mut self, id: &str) -> Result<()>;
    /// Policies, oldest first; of one project, or all.
    fn policies(&mut self, project: Option<&ProjectId>) -> Result<Vec<Policy>>;
}

/// A chunk's life on the backup target. A backup references a chunk
/// (a `backup_refs` row) before it uploads it; the collector dooms chunks
/// nobody references, deletes their objects, then forgets them. A backup
/// that finds a chunk doomed waits for it to be forgotten and uploads it
/// again, so an upload never races a deletion of the same object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// Being uploaded (by the backup that recorded it).
    Pending,
    /// On the target.
    Stored,
    /// Unreferenced; its object is being deleted.
    Doomed,
}

impl ChunkState {
    pub fn code(self) -> i64 {
        match self {
            ChunkState::Pending => 0,
            ChunkState::Stored => 1,
            ChunkState::Doomed => 2,
        }
    }
    pub fn from_code(code: i64) -> Result<Self> {
        match code {
            0 => Ok(ChunkState::Pending),
            1 => Ok(ChunkState::Stored),
            2 => Ok(ChunkState::Doomed),
            other => Err(StoreError::Corrupt(
                "backup_chunks".into(),
                format!("unknown chunk state {other}"),
            )),
        }
    }
}
