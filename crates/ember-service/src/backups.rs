//! Backups and their rules: a copy of a volume (or of one of its
//! snapshots) on the backup target, away from the volume's storage.
//!
//! A backup reads a point in time, never the live volume: a backup of a
//! volume freezes the volume's data first (as a snapshot does, O(1)) and
//! keeps that frozen point, owned by the backup, as the base its next
//! incremental backup diffs against (`VolumeBackend::changed_ranges`); a
//! volume keeps only its latest backup's point. The volume stays usable
//! meanwhile (Ember does not hold it `backing-up` as Cinder does: nothing
//! the backup reads can change under it). Chunk bookkeeping and the
//! collection of chunks no backup references live in `workflows::backup_chunks`.

use crate::engine::new_record;
use crate::quotas::reserve;
use crate::volumes::{load_volume, require_admin, require_writer};
use crate::workflows::{backup_create, backup_delete, backup_restore};
use crate::*;
use ember_model::*;
use ember_store::Tx;
use std::time::Duration;

/// What `export_record` names as the backup service.
/// Named in Cinder's driver namespace, which clients (Tempest) expect of
/// every `backup_service`.
pub const BACKUP_SERVICE: &str = "cinder.backup.drivers.ember_chunked";

pub(crate) fn load_backup(tx: &mut dyn Tx, caller: &Caller, id: BackupId) -> Result<Backup> {
    match tx.backup(id)? {
        Some(b) if caller.sees(&b.project_id) => Ok(b),
        _ => Err(ServiceError::NotFound(format!(
            "Backup {id} could not be found."
        ))),
    }
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidInput(message.into())
}

/// Refuses a name a client may not give a backup.
fn check_client_name(name: Option<&str>) -> Result<()> {
    if name.is_some_and(|n| n.starts_with(crate::policies::RESERVED_BACKUP_PREFIX)) {
        return Err(invalid(format!(
            "the prefix {} is reserved for policies.",
            crate::policies::RESERVED_BACKUP_PREFIX
        )));
    }
    Ok(())
}

/// Refuses a client's change to a backup a policy made.
fn check_changeable(b: &Backup) -> Result<()> {
    if b.name
        .as_deref()
        .is_some_and(|n| n.starts_with(crate::policies::RESERVED_BACKUP_PREFIX))
    {
        return Err(ServiceError::Protected(
            "Operations cannot be performed on backups made by policies.".into(),
        ));
    }
    Ok(())
}

/// Whether another backup names `backup` as its parent.
pub fn has_dependents(all: &[Backup], backup: BackupId) -> bool {
    all.iter().any(|b| b.parent_id == Some(backup))
}

/// Gives up the points the volume's finished backups hold (the volume is
/// being deleted), in the caller's transaction. A backup still being made
/// keeps its point until it finishes, and then gives it up itself.
pub(crate) fn release_points_of_volume(
    core: &Core,
    tx: &mut dyn Tx,
    volume: &Volume,
) -> Result<()> {
    let backend = core.backend_of(volume)?.clone();
    for mut b in tx.backups(Some(&volume.project_id))? {
        if b.volume_id == volume.id
            && b.status != BackupStatus::Creating
            && let Some(point) = b.point.take()
        {
            backend.release(tx, point)?;
            tx.put_backup(&b)?;
        }
    }
    Ok(())
}

impl Service {
    /// Sets where backups go (once, at start-up).
    pub fn set_backup_target(&self, target: std::sync::Arc<ember_backup::Target>) {
        let _ = self.core.backup_target.set(target);
    }

    /// The backup target's description (for operators), if configured.
    pub fn backup_target(&self) -> Option<String> {
        self.core
            .backup_target
            .get()
            .map(|t| t.describe().to_string())
    }

    pub async fn create_backup(&self, caller: &Caller, req: CreateBackup) -> Result<Backup> {
        check_client_name(req.name.as_deref())?;
        self.create_backup_named(caller, req).await
    }

    /// `create_backup` without the reserved-name rule (policies' backups).
    pub(crate) async fn create_backup_named(
        &self,
        caller: &Caller,
        req: CreateBackup,
    ) -> Result<Backup> {
        require_writer(caller, "backup:create")?;
        if self.core.backup_target.get().is_none() {
            return Err(invalid("No backup target is configured."));
        }
        if let Some(az) = &req.availability_zone
            && az != &self.core.config.availability_zone
        {
            return Err(invalid(format!("Availability zone '{az}' is invalid.")));
        }
        let core = self.core.clone();
        let caller = caller.clone();
        let (backup, record) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let volume = load_volume(tx.as_mut(), &caller, req.volume_id)?;
                let mut data_timestamp = Timestamp::now();
                let snapshot = match req.snapshot_id {
                    Some(sid) => {
                        let s = crate::snapshots::load_snapshot(tx.as_mut(), &caller, sid)?;
                        if s.volume_id != volume.id {
                            return Err(invalid(format!(
                                "Invalid backup: Snapshot {sid} is not a snapshot of volume {}.",
                                volume.id
                            )));
                        }
                        if s.status != SnapshotStatus::Available {
                            return Err(ServiceError::InvalidSnapshot(format!(
                                "Snapshot to be backed up must be available, but the current status is \"{}\".",
                                s.status
                            )));
                        }
                        data_timestamp = s.created_at;
                        Some(s)
                    }
                    None => {
                        match volume.status {
                            VolumeStatus::Available => {}
                            VolumeStatus::InUse if req.force => {}
                            VolumeStatus::InUse => {
                                return Err(ServiceError::InvalidVolume(
                                    "Backing up an in-use volume must use the force flag.".into(),
                                ));
                            }
                            other => {
                                return Err(ServiceError::InvalidVolume(format!(
                                    "Volume to be backed up must be available or in-use, but the current status is \"{other}\"."
                                )));
                            }
                        }
                        None
                    }
                };
                // The parent: the volume's backup with the latest data
                // (for a snapshot's backup, data older than the snapshot).
                let project_backups = tx.backups(Some(&caller.project_id))?;
                let parent = if req.incremental {
                    let candidates: Vec<&Backup> = project_backups
                        .iter()
                        .filter(|b| b.volume_id == volume.id)
                        .filter(|b| snapshot.as_ref().is_none_or(|s| b.data_timestamp < s.created_at))
                        .collect();
                    let latest = candidates
                        .into_iter()
                        .max_by_key(|b| (b.data_timestamp, b.created_at))
                        .ok_or_else(|| invalid("Invalid backup: No backups available to do an incremental backup."))?;
                    if latest.status != BackupStatus::Available {
                        return Err(invalid(
                            "Invalid backup: The parent backup must be available for incremental backup.",
                        ));
                    }
                    Some(latest.id)
                } else {
                    None
                };
                reserve(
                    tx.as_mut(),
                    &caller.project_id,
                    &[
                        (QuotaResource::Backups, 1),
                        (QuotaResource::BackupGigabytes, volume.size_gib as i64),
                    ],
                )?;
                let now = Timestamp::now();
                let backup = Backup {
                    id: BackupId::new(),
                    project_id: caller.project_id.clone(),
                    user_id: caller.user_id.clone(),
                    volume_id: volume.id,
                    snapshot_id: req.snapshot_id,
                    name: req.name,
                    description: req.description,
                    availability_zone: Some(core.config.availability_zone.clone()),
                    container: req.container,
                    size_gib: volume.size_gib,
                    status: BackupStatus::Creating,
                    fail_reason: None,
                    is_incremental: parent.is_some(),
                    parent_id: parent,
                    metadata: req.metadata,
                    object_count: 0,
                    stored_bytes: 0,
                    data_timestamp: if snapshot.is_some() { data_timestamp } else { now },
                    point: None,
                    source: None,
                    restore_volume_id: None,
                    volume_metadata: volume.metadata.clone(),
                    chunk_project: None,
                    created_at: now,
                    updated_at: None,
                };
                if let Some(mut s) = snapshot {
                    // Held until the backup has read it.
                    s.status = SnapshotStatus::BackingUp;
                    s.updated_at = Some(now);
                    tx.put_snapshot(&s)?;
                }
                tx.put_backup(&backup)?;
                let record = new_record::<backup_create::BackupCreate>(
                    &core,
                    &backup_create::Params {
                        backup_id: backup.id,
                        new_top: ImageId::new(),
                    },
                );
                tx.put_workflow(&record)?;
                tx.commit()?;
                Ok((backup, record))
            })
            .await?;
        self.start(record);
        Ok(backup)
    }

    pub async fn backup(&self, caller: &Caller, id: BackupId) -> Result<Backup> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.point_read(move || load_backup(core.store.read()?.as_mut(), &caller, id))
            .await
    }

    /// Every backup the caller sees (all projects' for an admin asking for
    /// `all_tenants`), oldest first, with whether each has dependents.
    pub async fn list_backups(
        &self,
        caller: &Caller,
        all_tenants: bool,
    ) -> Result<Vec<(Backup, bool)>> {
        let core = self.core.clone();
        let project = (!(all_tenants && caller.is_admin())).then(|| caller.project_id.clone());
        self.run_blocking(move || {
            let all = core.store.read()?.backups(project.as_ref())?;
            Ok(all
                .iter()
                .map(|b| (b.clone(), has_dependents(&all, b.id)))
                .collect())
        })
        .await
    }

    /// Whether another backup was made from this one.
    pub async fn backup_has_dependents(&self, backup: &Backup) -> Result<bool> {
        let core = self.core.clone();
        let (project, id) = (backup.project_id.clone(), backup.id);
        self.run_blocking(move || {
            let all = core.store.read()?.backups(Some(&project))?;
            Ok(has_dependents(&all, id))
        })
        .await
    }

    pub async fn update_backup(
        &self,
        caller: &Caller,
        id: BackupId,
        update: UpdateBackup,
    ) -> Result<Backup> {
        require_writer(caller, "backup:update")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut b = load_backup(tx.as_mut(), &caller, id)?;
            check_changeable(&b)?;
            check_client_name(update.name.as_ref().and_then(|n| n.as_deref()))?;
            if let Some(name) = update.name {
                b.name = name;
            }
            if let Some(description) = update.description {
                b.description = description;
            }
            if let Some(metadata) = update.metadata {
                b.metadata = metadata;
            }
            b.updated_at = Some(Timestamp::now());
            tx.put_backup(&b)?;
            tx.commit()?;
            Ok(b)
        })
        .await
    }

    /// Deletes a backup; `force` (admin `os-force_delete`) also takes one
    /// in `error_deleting`.
    pub async fn delete_backup(&self, caller: &Caller, id: BackupId, force: bool) -> Result<()> {
        require_writer(caller, "backup:delete")?;
        if force {
            require_admin(caller, "backup:force_delete")?;
        }
        self.start_backup_delete(caller, id, force, false).await
    }

    /// A policy's retention deleting one of its backups: allowed although
    /// the backup is protected, and although later backups name it as
    /// their parent (they are re-parented to its parent: every backup's
    /// chunk list is complete, so none of them needs it).
    pub(crate) async fn delete_backup_of_policy(
        &self,
        caller: &Caller,
        id: BackupId,
    ) -> Result<()> {
        self.start_backup_delete(caller, id, false, true).await
    }

    async fn start_backup_delete(
        &self,
        caller: &Caller,
        id: BackupId,
        force: bool,
        by_policy: bool,
    ) -> Result<()> {
        let core = self.core.clone();
        let caller = caller.clone();
        let record = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut b = load_backup(tx.as_mut(), &caller, id)?;
                let allowed = matches!(b.status, BackupStatus::Available | BackupStatus::Error)
                    || (force && b.status == BackupStatus::ErrorDeleting);
                if !allowed {
                    return Err(invalid(if force {
                        format!("Invalid backup: Backup status must be available or error, but the current status is \"{}\".", b.status)
                    } else {
                        "Invalid backup: Backup status must be available or error".to_string()
                    }));
                }
                if !by_policy {
                    check_changeable(&b)?;
                }
                let all = tx.backups(Some(&b.project_id))?;
                if has_dependents(&all, id) {
                    if !by_policy {
                        return Err(invalid(
                            "Invalid backup: Incremental backups exist for this backup.",
                        ));
                    }
                    for mut child in all.into_iter().filter(|c| c.parent_id == Some(id)) {
                        child.parent_id = b.parent_id;
                        child.updated_at = Some(Timestamp::now());
                        tx.put_backup(&child)?;
                    }
                }
                b.status = BackupStatus::Deleting;
                b.updated_at = Some(Timestamp::now());
                tx.put_backup(&b)?;
                let record = new_record::<backup_delete::BackupDelete>(
                    &core,
                    &backup_delete::Params { backup_id: id },
                );
                tx.put_workflow(&record)?;
                tx.commit()?;
                Ok(record)
            })
            .await?;
        self.start(record);
        Ok(())
    }

    /// Restores a backup to an existing volume, or to a new one made for
    /// it (as Cinder does: the volume is created, and written once it is
    /// available).
    pub async fn restore_backup(
        &self,
        caller: &Caller,
        id: BackupId,
        req: RestoreBackup,
    ) -> Result<Restored> {
        require_writer(caller, "backup:restore")?;
        let backup = self.backup(caller, id).await?;
        if backup.status != BackupStatus::Available {
            return Err(invalid("Invalid backup: Backup status must be available"));
        }
        let (volume_id, fresh) = match req.volume_id {
            Some(v) => (v, false),
            None => {
                let name = req
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("restore_backup_{id}"));
                let volume = self
                    .create_volume(
                        caller,
                        CreateVolume {
                            name: Some(name),
                            description: Some(format!(
                                "auto-created_from_restore_from_backup {id}"
                            )),
                            size_gib: Some(backup.size_gib),
                            ..Default::default()
                        },
                    )
                    .await?;
                self.wait_volume_made(caller, volume.id).await?;
                (volume.id, true)
            }
        };
        let core = self.core.clone();
        let caller = caller.clone();
        let (restored, record) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut b = load_backup(tx.as_mut(), &caller, id)?;
                let mut volume = load_volume(tx.as_mut(), &caller, volume_id)?;
                if b.status != BackupStatus::Available {
                    return Err(invalid("Invalid backup: Backup status must be available"));
                }
                if volume.status != VolumeStatus::Available {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Volume to be restored to must be available, but the current status is \"{}\".",
                        volume.status
                    )));
                }
                if volume.size_gib < b.size_gib {
                    return Err(ServiceError::InvalidVolume(format!(
                        "volume size {} is smaller than backup size {}.",
                        volume.size_gib, b.size_gib
                    )));
                }
                let now = Timestamp::now();
                volume.status = VolumeStatus::RestoringBackup;
                volume.updated_at = Some(now);
                tx.put_volume(&volume)?;
                b.status = BackupStatus::Restoring;
                b.restore_volume_id = Some(volume_id);
                b.updated_at = Some(now);
                tx.put_backup(&b)?;
                let record = new_record::<backup_restore::BackupRestore>(
                    &core,
                    &backup_restore::Params {
                        backup_id: id,
                        volume_id,
                        fresh_volume: fresh,
                    },
                );
                tx.put_workflow(&record)?;
                tx.commit()?;
                Ok((
                    Restored {
                        backup_id: id,
                        volume_id,
                        volume_name: volume.name,
                    },
                    record,
                ))
            })
            .await?;
        self.start(record);
        Ok(restored)
    }

    /// Waits (bounded) for a volume made for a restore to be available.
    async fn wait_volume_made(&self, caller: &Caller, id: VolumeId) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.volume(caller, id).await?;
            match v.status {
                VolumeStatus::Available => return Ok(()),
                VolumeStatus::Creating if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                other => {
                    return Err(ServiceError::InvalidVolume(format!(
                        "The volume made for the restore is {other}."
                    )));
                }
            }
        }
    }

    /// Admin `os-reset_status`: `available` or `error`, as Cinder allows.
    pub async fn reset_backup_status(
        &self,
        caller: &Caller,
        id: BackupId,
        status: BackupStatus,
    ) -> Result<()> {
        require_admin(caller, "backup:backup-reset_status")?;
        if !matches!(status, BackupStatus::Available | BackupStatus::Error) {
            return Err(invalid(format!("Invalid backup status: {status}")));
        }
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut b = load_backup(tx.as_mut(), &caller, id)?;
            b.status = status;
            b.updated_at = Some(Timestamp::now());
            tx.put_backup(&b)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Admin `export_record`: the backup's record, which `import_record`
    /// on any Ember reaching the same target turns back into a backup.
    pub async fn export_backup_record(
        &self,
        caller: &Caller,
        id: BackupId,
    ) -> Result<(String, String)> {
        require_admin(caller, "backup:export-import")?;
        let b = self.backup(caller, id).await?;
        if b.status != BackupStatus::Available {
            return Err(invalid(
                "Invalid backup: Backup status must be available and not restoring.",
            ));
        }
        let record = serde_json::json!({
            "id": b.id,
            "project_id": b.project_id,
            "user_id": b.user_id,
            "volume_id": b.volume_id,
            "snapshot_id": b.snapshot_id,
            "display_name": b.name,
            "display_description": b.description,
            "container": b.container,
            "size": b.size_gib,
            "object_count": b.object_count,
            "data_timestamp": b.data_timestamp,
            "created_at": b.created_at,
            "metadata": b.metadata,
            "volume_metadata": b.volume_metadata,
            "chunk_project": b.chunk_namespace(),
            "manifest_id": b.id,
        });
        use base64::Engine;
        let url = base64::engine::general_purpose::STANDARD.encode(record.to_string());
        Ok((BACKUP_SERVICE.to_string(), url))
    }

    /// Admin `import_record`: recreates a backup from an exported record,
    /// its chunk list read back from the target's manifest.
    pub async fn import_backup_record(
        &self,
        caller: &Caller,
        service: &str,
        url: &str,
    ) -> Result<Backup> {
        require_admin(caller, "backup:export-import")?;
        if service != BACKUP_SERVICE {
            return Err(invalid(format!("Unsupported backup service {service}.")));
        }
        use base64::Engine;
        let record: serde_json::Value = base64::engine::general_purpose::STANDARD
            .decode(url)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or_else(|| invalid("Invalid backup_url: not an exported backup record."))?;
        let field = |k: &str| record.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let parse = |k: &str| -> Result<String> {
            field(k)
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid(format!("Invalid backup_url: no {k}.")))
        };
        let id =
            BackupId::parse(&parse("id")?).ok_or_else(|| invalid("Invalid backup_url: bad id."))?;
        let volume_id = VolumeId::parse(&parse("volume_id")?)
            .ok_or_else(|| invalid("Invalid backup_url: bad volume_id."))?;
        // The chunks stay where they are; the backup is the importer's.
        let chunks = ProjectId(
            field("chunk_project")
                .as_str()
                .map(str::to_string)
                .map_or_else(|| parse("project_id"), Ok)?,
        );
        let manifest_id = field("manifest_id")
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| id.to_string());
        let size_gib = field("size")
            .as_u64()
            .ok_or_else(|| invalid("Invalid backup_url: no size."))?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let field = |k: &str| record.get(k).cloned().unwrap_or(serde_json::Value::Null);
            let target = core
                .backup_target
                .get()
                .ok_or_else(|| invalid("No backup target is configured."))?
                .clone();
            let project = caller.project_id.clone();
            let manifest = target
                .get_manifest(&chunks.0, &manifest_id)
                .map_err(|e| match e {
                    ember_backup::TargetError::Unavailable { .. } => unreachable_target(e),
                    e => invalid(format!("Invalid backup_url: {e}")),
                })?;
            if Some(manifest.size) != size_gib.checked_mul(1 << 30) {
                return Err(invalid(
                    "Invalid backup_url: the manifest does not match the record.",
                ));
            }
            let mut tx = core.store.write()?;
            if tx.backup(id)?.is_some() {
                return Err(invalid(format!(
                    "Invalid backup: Backup {id} already exists."
                )));
            }
            reserve(
                tx.as_mut(),
                &project,
                &[
                    (QuotaResource::Backups, 1),
                    (QuotaResource::BackupGigabytes, size_gib as i64),
                ],
            )?;
            let now = Timestamp::now();
            let timestamp = |k: &str| serde_json::from_value::<Timestamp>(field(k)).unwrap_or(now);
            let string = |k: &str| field(k).as_str().map(str::to_string);
            let backup = Backup {
                id,
                project_id: project.clone(),
                user_id: caller.user_id.clone(),
                volume_id,
                snapshot_id: string("snapshot_id").and_then(|s| SnapshotId::parse(&s)),
                name: string("display_name"),
                description: string("display_description"),
                availability_zone: Some(core.config.availability_zone.clone()),
                container: string("container"),
                size_gib,
                status: BackupStatus::Available,
                fail_reason: None,
                is_incremental: false,
                parent_id: None,
                metadata: serde_json::from_value(field("metadata")).unwrap_or_default(),
                object_count: manifest.chunks.len() as u64,
                stored_bytes: 0,
                data_timestamp: timestamp("data_timestamp"),
                point: None,
                source: None,
                restore_volume_id: None,
                volume_metadata: serde_json::from_value(field("volume_metadata"))
                    .unwrap_or_default(),
                chunk_project: (chunks != project).then(|| chunks.clone()),
                created_at: timestamp("created_at"),
                updated_at: Some(now),
            };
            // Its own manifest, so that it can be exported in turn.
            if manifest_id != id.to_string() {
                target
                    .put_manifest(&chunks.0, &id.to_string(), &manifest)
                    .and_then(|()| target.sync())
                    .map_err(|e| match e {
                        ember_backup::TargetError::Unavailable { .. } => unreachable_target(e),
                        e => ServiceError::Internal(e.to_string()),
                    })?;
            }
            tx.put_backup(&backup)?;
            for batch in manifest.chunks.chunks(4096) {
                for (_, hash) in batch {
                    match tx.chunk_state(&chunks, hash)? {
                        None => {
                            tx.put_chunk_state(&chunks, hash, ember_store::ChunkState::Stored)?
                        }
                        Some(ember_store::ChunkState::Doomed) => {
                            return Err(ServiceError::Busy(
                                "Chunks of this backup are being collected; retry the import."
                                    .into(),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                tx.put_backup_refs(id, &chunks, batch)?;
            }
            tx.commit()?;
            Ok(backup)
        })
        .await
    }
}

/// The backup target did not answer: 503, retry later (neither the
/// caller's fault nor a fault of Ember's).
fn unreachable_target(e: ember_backup::TargetError) -> ServiceError {
    ServiceError::Busy(format!("{e}; retry later."))
}
