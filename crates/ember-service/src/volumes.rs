//! Volume operations and their rules.

use crate::engine::new_record;
use crate::quotas::{check_volume_size, reserve};
use crate::workflows::{volume_create, volume_delete, volume_extend, volume_revert};
use crate::*;
use ember_model::*;
use ember_store::{ListQuery, Page, Tx, VolumeFilter};

/// Statuses from which a volume may be deleted (Cinder's list).
const DELETABLE: &[VolumeStatus] = &[
    VolumeStatus::Available,
    VolumeStatus::Error,
    VolumeStatus::ErrorRestoring,
    VolumeStatus::ErrorExtending,
];

/// Which snapshots a volume may go back to.
#[derive(Clone, Copy, Debug)]
struct RevertRules {
    /// Only the volume's latest snapshot (Cinder).
    latest_only: bool,
    /// Only while the volume has the snapshot's size (Cinder).
    same_size: bool,
    /// Also from `error`, after a failed attempt (EVS's
    /// `error_rollbacking`).
    after_failure: bool,
}

impl RevertRules {
    const CINDER: RevertRules = RevertRules {
        latest_only: true,
        same_size: true,
        after_failure: false,
    };
    const ROLLBACK: RevertRules = RevertRules {
        latest_only: false,
        same_size: false,
        after_failure: true,
    };
}

/// Whether volumes of `t` may be attached more than once: its
/// `multiattach` extra spec says `<is> True` (Cinder's form).
pub(crate) fn type_allows_multiattach(t: &ember_model::VolumeType) -> bool {
    t.extra_specs
        .get("multiattach")
        .is_some_and(|v| v.split_whitespace().collect::<Vec<_>>() == ["<is>", "True"])
}

/// The one rule for a size in GiB, whatever the dialect: at least 1, at
/// most Cinder's 2^31 - 1. Returns it as the `i64` quotas count in.
pub(crate) fn check_size_gib(size: u64, field: &str) -> Result<i64> {
    if size == 0 {
        return Err(ServiceError::InvalidInput(format!(
            "Volume size '{size}' must be an integer and greater than 0."
        )));
    }
    if size > ember_model::MAX_SIZE_GIB {
        return Err(ServiceError::InvalidInput(format!(
            "{field} must be <= {}",
            ember_model::MAX_SIZE_GIB
        )));
    }
    Ok(size as i64)
}

/// Bytes of a size in GiB, refused past the cap (a record from before
/// sizes were checked must not become a wrapped, tiny image).
pub(crate) fn size_bytes(gib: u64) -> Result<u64> {
    ember_model::gib_to_bytes(gib).ok_or_else(|| {
        ServiceError::InvalidInput(format!("size must be <= {}", ember_model::MAX_SIZE_GIB))
    })
}

pub(crate) fn load_volume(tx: &mut dyn Tx, caller: &Caller, id: VolumeId) -> Result<Volume> {
    match tx.volume(id)? {
        Some(v) if caller.sees(&v.project_id) => Ok(v),
        _ => Err(ServiceError::VolumeNotFound(id.to_string())),
    }
}

pub(crate) fn require_writer(caller: &Caller, action: &str) -> Result<()> {
    if caller.can_write() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(action.into()))
    }
}

pub(crate) fn require_admin(caller: &Caller, action: &str) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(action.into()))
    }
}

impl Service {
    pub async fn create_volume(&self, caller: &Caller, req: CreateVolume) -> Result<Volume> {
        require_writer(caller, "volume:create")?;
        if let Some(az) = &req.availability_zone
            && az != &self.core.config.availability_zone
        {
            return Err(ServiceError::InvalidInput(format!(
                "Availability zone '{az}' is invalid."
            )));
        }
        let core = self.core.clone();
        let caller = caller.clone();
        let (volume, record) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let made = begin_volume(&core, tx.as_mut(), &caller, req)?;
                tx.commit()?;
                Ok(made)
            })
            .await?;
        if let Some(record) = record {
            self.start(record);
        }
        Ok(volume)
    }

    pub async fn volume(&self, caller: &Caller, id: VolumeId) -> Result<Volume> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.point_read(move || load_volume(core.store.read()?.as_mut(), &caller, id))
            .await
    }

    pub async fn list_volumes(
        &self,
        caller: &Caller,
        mut query: ListQuery<VolumeFilter>,
        all_tenants: bool,
    ) -> Result<Page<Volume>> {
        if !(all_tenants && caller.is_admin()) {
            query.project = Some(caller.project_id.clone());
        }
        let core = self.core.clone();
        self.run_blocking(move || Ok(core.store.read()?.list_volumes(&query)?))
            .await
    }

    pub async fn update_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        update: UpdateVolume,
    ) -> Result<Volume> {
        require_writer(caller, "volume:update")?;
        self.mutate_volume(caller, id, move |_, v| {
            if let Some(name) = update.name {
                v.name = name;
            }
            if let Some(description) = update.description {
                v.description = description;
            }
            if let Some(metadata) = update.metadata {
                v.metadata = metadata;
            }
            Ok(())
        })
        .await
    }

    /// `os-set_bootable`: marks the volume bootable or not.
    pub async fn set_bootable(
        &self,
        caller: &Caller,
        id: VolumeId,
        bootable: bool,
    ) -> Result<Volume> {
        require_writer(caller, "volume:update")?;
        self.mutate_volume(caller, id, move |_, v| {
            v.bootable = bootable;
            Ok(())
        })
        .await
    }

    /// `os-update_readonly_flag`: every export of a read-only volume is
    /// read-only (the NBD server refuses writes), whatever mode an
    /// attachment asks for. Only an `available` volume may change it.
    pub async fn set_read_only(
        &self,
        caller: &Caller,
        id: VolumeId,
        read_only: bool,
    ) -> Result<Volume> {
        require_writer(
            caller,
            "volume_extension:volume_actions:update_readonly_flag",
        )?;
        self.mutate_volume(caller, id, move |_, v| {
            if v.status != VolumeStatus::Available {
                return Err(ServiceError::InvalidVolume(format!(
                    "Volume {} status must be available to update readonly flag, but current status is: {}.",
                    v.id, v.status
                )));
            }
            v.read_only = Some(read_only);
            Ok(())
        })
        .await
    }

    /// Applies `change` to the volume in one write transaction.
    pub(crate) async fn mutate_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        change: impl FnOnce(&mut dyn Tx, &mut Volume) -> Result<()> + Send + 'static,
    ) -> Result<Volume> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut volume = load_volume(tx.as_mut(), &caller, id)?;
            change(tx.as_mut(), &mut volume)?;
            volume.updated_at = Some(Timestamp::now());
            tx.put_volume(&volume)?;
            tx.commit()?;
            Ok(volume)
        })
        .await
    }

    /// `os-retype`. When the volume's backend can hold the new type, no
    /// data moves: the volume takes the new type at once (and stays
    /// `available`/`in-use`). When it cannot, and `migration_policy` is
    /// `on-demand`, the volume moves to a backend that can (the migrate
    /// workflow; `retyping` meanwhile); with `never` the retype is refused.
    pub async fn retype_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        new_type: String,
        on_demand: bool,
    ) -> Result<Volume> {
        require_writer(caller, "volume:retype")?;
        let default_name = self.core.config.default_volume_type.clone();
        let core = self.core.clone();
        let who = caller.clone();
        let (volume, record) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut v = load_volume(tx.as_mut(), &who, id)?;
                if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Volume {} status must be available or in-use, but current status is: {}.",
                        v.id, v.status
                    )));
                }
                let t = crate::types::find_type(tx.as_mut(), &default_name, &who, &new_type)?;
                let current = v
                    .volume_type_id
                    .clone()
                    .unwrap_or_else(|| DEFAULT_VOLUME_TYPE_ID.into());
                if t.id == current {
                    return Err(ServiceError::InvalidInput(
                        "New volume type must be different from the original.".into(),
                    ));
                }
                // The type decides multiattach, as at create; an attached
                // volume cannot change it (Cinder refuses the same).
                let multiattach = type_allows_multiattach(&t);
                if multiattach != v.multiattach && v.status == VolumeStatus::InUse {
                    return Err(ServiceError::InvalidInput(
                        "Retype cannot change the multiattach property of an in-use volume.".into(),
                    ));
                }
                let here = core.backend_of(&v)?;
                if !crate::backend::can_hold(here.as_ref(), &t) {
                    if !on_demand {
                        return Err(ServiceError::InvalidInput(format!(
                            "Volume type {} needs another backend than {}; retype with migration_policy on-demand to move the volume.",
                            t.name, v.backend
                        )));
                    }
                    let target = match crate::backend::place(&core, tx.as_mut(), &t, None)? {
                        Ok(target) => target.name().to_string(),
                        Err(problem) => {
                            return Err(ServiceError::InvalidInput(format!(
                                "No valid backend was found for volume type {}: {problem}.",
                                t.name
                            )));
                        }
                    };
                    let record = begin_migration(
&core,
                        tx.as_mut(),
                        &mut v,
                        target,
                        Some((t.name.clone(), t.id.clone())),
                        multiattach,
                        VolumeStatus::Retyping,
                    )?;
                    tx.commit()?;
                    return Ok((v, Some(record)));
                }
                // The volume's per-type usage moves with it.
                let deltas = [
                    (QuotaResource::Volumes, 1),
                    (QuotaResource::Gigabytes, v.size_gib as i64),
                ];
                crate::quotas::release_typed(tx.as_mut(), &v.project_id, &current, &deltas)?;
                crate::quotas::reserve_typed(tx.as_mut(), &v.project_id, &t.id, &deltas)?;
                v.volume_type = t.name;
                v.volume_type_id = Some(t.id);
                v.multiattach = multiattach;
                v.updated_at = Some(Timestamp::now());
                tx.put_volume(&v)?;
                tx.commit()?;
                Ok((v, None))
            })
            .await?;
        if let Some(record) = record {
            self.start(record);
        }
        Ok(volume)
    }

    /// `os-migrate_volume` (admin): moves the volume's data to the backend
    /// `host` names (`ember@<backend>` or `ember@<backend>#<pool>`), keeping
    /// its type. The volume is `maintenance` until it has moved.
    pub async fn migrate_volume(&self, caller: &Caller, id: VolumeId, host: String) -> Result<()> {
        require_admin(
            caller,
            "volume_extension:volume_admin_actions:migrate_volume",
        )?;
        let core = self.core.clone();
        let who = caller.clone();
        let record = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut v = load_volume(tx.as_mut(), &who, id)?;
                let target = core
                    .backends
                    .all()
                    .find(|b| {
                        host == crate::backend::volume_service_host(b.name())
                            || host == crate::backend::pool_name(b.name(), b.pool())
                    })
                    .ok_or_else(|| {
                        ServiceError::InvalidInput(format!("No valid host was found: {host}."))
                    })?;
                if target.name() == v.backend {
                    return Err(ServiceError::InvalidInput(
                        "Destination host must be different than the current host.".into(),
                    ));
                }
                let multiattach = v.multiattach;
                let record = begin_migration(
                    &core,
                    tx.as_mut(),
                    &mut v,
                    target.name().to_string(),
                    None,
                    multiattach,
                    VolumeStatus::Maintenance,
                )?;
                tx.commit()?;
                Ok(record)
            })
            .await?;
        self.start(record);
        Ok(())
    }

    pub async fn delete_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        cascade: bool,
        force: bool,
    ) -> Result<()> {
        require_writer(caller, "volume:delete")?;
        if force {
            require_admin(caller, "volume_extension:volume_admin_actions:force_delete")?;
        }
        let core = self.core.clone();
        let caller = caller.clone();
        let record = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut volume = load_volume(tx.as_mut(), &caller, id)?;
                let snapshots = tx.snapshots_of_volume(id)?;
                let blocked_by_status = !DELETABLE.contains(&volume.status) || !volume.attachments.is_empty();
                if !force && (blocked_by_status || (!snapshots.is_empty() && !cascade)) {
                    return Err(ServiceError::InvalidVolume(
                        "Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.".into(),
                    ));
                }
                if cascade && !force
                    && let Some(s) = snapshots.iter().find(|s| !matches!(s.status, SnapshotStatus::Available | SnapshotStatus::Error)) {
                        return Err(ServiceError::InvalidVolume(format!("Snapshot {} is in {} state and cannot be deleted.", s.id, s.status)));
                    }
                if force && volume.status == VolumeStatus::Creating && volume.image.is_none() {
                    return Err(ServiceError::InvalidVolume("Volume is still being created; try again when it is available or in error.".into()));
                }
                for mut s in snapshots.into_iter().filter(|_| cascade || force) {
                    s.status = SnapshotStatus::Deleting;
                    tx.put_snapshot(&s)?;
                }
                volume.status = VolumeStatus::Deleting;
                volume.updated_at = Some(Timestamp::now());
                tx.put_volume(&volume)?;
                let record = new_record::<volume_delete::VolumeDelete>(&core, &volume_delete::Params {
                    volume_id: id,
                    cascade: cascade || force,
                });
                tx.put_workflow(&record)?;
                tx.commit()?;
                Ok(record)
            })
            .await?;
        self.start(record);
        Ok(())
    }

    pub async fn extend_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        new_size_gib: u64,
    ) -> Result<()> {
        require_writer(caller, "volume:extend")?;
        check_size_gib(new_size_gib, "new_size")?;
        let core = self.core.clone();
        let caller = caller.clone();
        let record = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut volume = load_volume(tx.as_mut(), &caller, id)?;
                if volume.status != VolumeStatus::Available {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Volume {id} status must be available to extend, but current status is: {}.",
                        volume.status
                    )));
                }
                if new_size_gib <= volume.size_gib {
                    return Err(ServiceError::InvalidInput(format!(
                        "New size for extend must be greater than current size. (current: {}, extended: {new_size_gib}).",
                        volume.size_gib
                    )));
                }
                // Both at most MAX_SIZE_GIB: the difference fits.
                let delta = (new_size_gib - volume.size_gib) as i64;
                check_volume_size(tx.as_mut(), &volume.project_id, new_size_gib as i64)?;
                reserve(tx.as_mut(), &volume.project_id, &[(QuotaResource::Gigabytes, delta)])?;
                let type_id = crate::quotas::type_of(&volume.volume_type_id);
                crate::quotas::reserve_typed(tx.as_mut(), &volume.project_id, &type_id, &[(QuotaResource::Gigabytes, delta)])?;
                let record = new_record::<volume_extend::VolumeExtend>(&core, &volume_extend::Params {
                    volume_id: id,
                    old_size_gib: volume.size_gib,
                    new_size_gib,
                    resume_status: volume.status,
                });
                volume.status = VolumeStatus::Extending;
                volume.updated_at = Some(Timestamp::now());
                tx.put_volume(&volume)?;
                tx.put_workflow(&record)?;
                tx.commit()?;
                Ok(record)
            })
            .await?;
        self.start(record);
        Ok(())
    }

    /// Reverts a volume to its latest snapshot (Cinder 3.40 `revert`).
    /// Cinder's revert (3.40): to the volume's latest snapshot only, of the
    /// volume's size, from `available`.
    pub async fn revert_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        snapshot_id: SnapshotId,
    ) -> Result<()> {
        require_writer(caller, "volume:revert_to_snapshot")?;
        self.start_revert(caller, id, snapshot_id, RevertRules::CINDER, None)
            .await
            .map(drop)
    }

    /// EVS's rollback: to any snapshot of the volume (newer snapshots stay
    /// as they are), from `available` or after a failed rollback; never to
    /// a snapshot a backup made. `name`, when given, renames the volume.
    /// Returns the volume as the rollback left it (`reverting`).
    pub async fn rollback_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        snapshot_id: SnapshotId,
        name: Option<String>,
    ) -> Result<Volume> {
        require_writer(caller, "volume:revert_to_snapshot")?;
        self.start_revert(caller, id, snapshot_id, RevertRules::ROLLBACK, name)
            .await
    }

    async fn start_revert(
        &self,
        caller: &Caller,
        id: VolumeId,
        snapshot_id: SnapshotId,
        rules: RevertRules,
        name: Option<String>,
    ) -> Result<Volume> {
        let core = self.core.clone();
        let caller = caller.clone();
        let (volume, record) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut volume = load_volume(tx.as_mut(), &caller, id)?;
                let mut snapshot = match tx.snapshot(snapshot_id)? {
                    Some(s) if caller.sees(&s.project_id) => s,
                    _ => return Err(ServiceError::SnapshotNotFound(snapshot_id.to_string())),
                };
                if snapshot.volume_id != id {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Snapshot {snapshot_id} does not belong to volume {id}."
                    )));
                }
                if rules.latest_only {
                    let latest = tx
                        .snapshots_of_volume(id)?
                        .into_iter()
                        .max_by_key(|s| (s.created_at, s.id))
                        .expect("the volume has this snapshot");
                    if latest.id != snapshot_id {
                        return Err(ServiceError::InvalidVolume(format!(
                            "Volume {id} status must be available and snapshot {snapshot_id} must be the latest snapshot of the volume to revert."
                        )));
                    }
                }
                if !rules.latest_only && crate::snapshots::check_changeable(&snapshot).is_err() {
                    return Err(ServiceError::InvalidSnapshot(format!(
                        "Snapshot {snapshot_id} was made by a backup and cannot be used for a rollback."
                    )));
                }
                // The snapshot is the volume as it was, size included: a
                // volume extended since cannot go back to it (Cinder).
                if rules.same_size && volume.size_gib != snapshot.size_gib {
                    return Err(ServiceError::InvalidInput(format!(
                        "Can't revert volume {id} to its latest snapshot {snapshot_id}. The volume size must be equal to the snapshot size."
                    )));
                }
                let volume_ok = volume.status == VolumeStatus::Available
                    || (rules.after_failure && volume.status == VolumeStatus::Error);
                if !volume_ok || snapshot.status != SnapshotStatus::Available {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Volume {id} status must be available and snapshot status must be available to revert, but current status is: {} and {}.",
                        volume.status, snapshot.status
                    )));
                }
                if let Some(name) = name {
                    volume.name = Some(name);
                }
                volume.status = VolumeStatus::Reverting;
                volume.updated_at = Some(Timestamp::now());
                snapshot.status = SnapshotStatus::Restoring;
                tx.put_volume(&volume)?;
                tx.put_snapshot(&snapshot)?;
                let record = new_record::<volume_revert::VolumeRevert>(&core, &volume_revert::Params {
                    volume_id: id,
                    snapshot_id,
                    new_top: ImageId::new(),
                });
                tx.put_workflow(&record)?;
                tx.commit()?;
                Ok((volume, record))
            })
            .await?;
        self.start(record);
        Ok(volume)
    }

    pub async fn write_volume_metadata(
        &self,
        caller: &Caller,
        id: VolumeId,
        metadata: Metadata,
        how: MetadataWrite,
    ) -> Result<Metadata> {
        require_writer(caller, "volume:update_volume_metadata")?;
        let v = self
            .mutate_volume(caller, id, move |_, v| {
                match how {
                    MetadataWrite::Merge => v.metadata.extend(metadata),
                    MetadataWrite::Replace => v.metadata = metadata,
                }
                Ok(())
            })
            .await?;
        Ok(v.metadata)
    }

    pub async fn delete_volume_metadata_key(
        &self,
        caller: &Caller,
        id: VolumeId,
        key: String,
    ) -> Result<()> {
        require_writer(caller, "volume:delete_volume_metadata")?;
        self.mutate_volume(caller, id, move |_, v| {
            v.metadata
                .remove(&key)
                .map(drop)
                .ok_or(ServiceError::VolumeMetadataNotFound {
                    volume: id.to_string(),
                    key,
                })
        })
        .await
        .map(drop)
    }

    /// Legacy `os-reserve`: `available` (or `in-use`, multiattach) becomes
    /// `attaching`, as in Cinder; anything else, a second reserve included,
    /// is refused. (`reserved` belongs to the attachments API.)
    pub async fn reserve_volume(&self, caller: &Caller, id: VolumeId) -> Result<Volume> {
        require_writer(caller, "volume:reserve_volume")?;
        self.mutate_volume(caller, id, move |_, v| {
            let ok = v.status == VolumeStatus::Available
                || (v.multiattach && v.status == VolumeStatus::InUse);
            if !ok {
                let expected = if v.multiattach {
                    "available or in-use"
                } else {
                    "available"
                };
                return Err(ServiceError::InvalidVolume(format!(
                    "Volume status must be {expected} to reserve, but the status is {}.",
                    v.status
                )));
            }
            v.status = VolumeStatus::Attaching;
            Ok(())
        })
        .await
    }

    /// Legacy `os-unreserve`: an `attaching` volume goes back to
    /// `available` (`in-use` if it has attachments); in any other status it
    /// is left as it is, without an error, as Cinder does.
    pub async fn unreserve_volume(&self, caller: &Caller, id: VolumeId) -> Result<Volume> {
        require_writer(caller, "volume:unreserve_volume")?;
        self.mutate_volume(caller, id, move |_, v| {
            if v.status == VolumeStatus::Attaching {
                let attached = v
                    .attachments
                    .iter()
                    .any(|a| a.status == ember_model::AttachStatus::Attached);
                v.status = if attached {
                    VolumeStatus::InUse
                } else {
                    VolumeStatus::Available
                };
            }
            Ok(())
        })
        .await
    }

    /// `os-reserve`, `os-unreserve`, `os-begin_detaching`, `os-roll_detaching`.
    pub async fn move_volume_status(
        &self,
        caller: &Caller,
        id: VolumeId,
        from: &'static [VolumeStatus],
        to: VolumeStatus,
        action: &'static str,
    ) -> Result<Volume> {
        require_writer(caller, action)?;
        self.mutate_volume(caller, id, move |_, v| {
            if v.status == to {
                return Ok(());
            }
            if !from.contains(&v.status) {
                return Err(ServiceError::InvalidVolume(format!(
                    "Volume {} status must be {}, but current status is: {}.",
                    v.id,
                    from.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    v.status
                )));
            }
            // Leaving the attached states without attachments means available.
            v.status = if to == VolumeStatus::Available && !v.attachments.is_empty() {
                VolumeStatus::InUse
            } else {
                to
            };
            Ok(())
        })
        .await
    }

    /// Admin `os-reset_status`: any status, as in Cinder (Tempest sets
    /// `creating` and `deleting` this way). Ember's own operations never
    /// leave a transitional status behind; one an admin sets by hand stays
    /// until an admin changes it (reset, force delete).
    pub async fn reset_volume_status(
        &self,
        caller: &Caller,
        id: VolumeId,
        status: VolumeStatus,
    ) -> Result<Volume> {
        require_admin(caller, "volume_extension:volume_admin_actions:reset_status")?;
        self.mutate_volume(caller, id, move |_, v| {
            v.status = status;
            Ok(())
        })
        .await
    }

    /// Reads `length` bytes at `offset` of a volume (Ember's data API).
    pub async fn read_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        offset: u64,
        length: u64,
    ) -> Result<crate::DataBuffer> {
        let v = self.volume(caller, id).await?;
        check_data_ready(&v)?;
        if length > 64 << 20 {
            return Err(ServiceError::InvalidInput(
                "At most 64 MiB can be read at once.".into(),
            ));
        }
        let budget = self.data_budget(length).await?;
        let core = self.core.clone();
        let bytes = self
            .run_blocking(move || {
                core.with_io(id, |io| {
                    let mut buf = vec![0u8; length as usize];
                    io.read_at(&mut buf, offset)?;
                    Ok(buf)
                })
            })
            .await?;
        Ok(Self::data_buffer(bytes, budget))
    }

    /// Writes bytes at `offset` and makes them durable before returning.
    pub async fn write_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<()> {
        require_writer(caller, "volume:write")?;
        let v = self.volume(caller, id).await?;
        check_data_ready(&v)?;
        let core = self.core.clone();
        self.run_blocking(move || {
            core.with_io(id, |io| {
                io.write_at(&data, offset)?;
                io.flush()?;
                Ok(())
            })
        })
        .await
    }
}

/// Checks that `v` can move to another backend and records its migrate
/// workflow, the volume in `status` meanwhile.
fn begin_migration(
    core: &Core,
    tx: &mut dyn Tx,
    v: &mut Volume,
    target: String,
    new_type: Option<(String, String)>,
    multiattach: bool,
    status: VolumeStatus,
) -> Result<ember_model::WorkflowRecord> {
    if v.status != VolumeStatus::Available || !v.attachments.is_empty() {
        return Err(ServiceError::InvalidVolume(format!(
            "Volume {} must be available and detached to move to another backend, but current status is: {}.",
            v.id, v.status
        )));
    }
    if !tx.snapshots_of_volume(v.id)?.is_empty() {
        return Err(ServiceError::InvalidVolume(format!(
            "Volume {} must not have snapshots.",
            v.id
        )));
    }
    if v.group_id.is_some() {
        return Err(ServiceError::InvalidVolume(format!(
            "Volume {} is in a group; remove it from the group first.",
            v.id
        )));
    }
    v.status = status;
    v.migration_status = Some("migrating".into());
    v.updated_at = Some(Timestamp::now());
    tx.put_volume(v)?;
    let record = new_record::<crate::workflows::volume_migrate::VolumeMigrate>(
        core,
        &crate::workflows::volume_migrate::Params {
            volume_id: v.id,
            target,
            data: ImageId::new(),
            new_type,
            multiattach,
        },
    );
    tx.put_workflow(&record)?;
    Ok(record)
}

fn check_data_ready(v: &Volume) -> Result<()> {
    if matches!(
        v.status,
        VolumeStatus::Available
            | VolumeStatus::InUse
            | VolumeStatus::Reserved
            | VolumeStatus::Attaching
            | VolumeStatus::Detaching
    ) && v.image.is_some()
    {
        Ok(())
    } else {
        Err(ServiceError::InvalidVolume(format!(
            "Volume {} status must be available or in-use for data access, but current status is: {}.",
            v.id, v.status
        )))
    }
}

/// The id of the one volume type Ember offers.
pub const DEFAULT_VOLUME_TYPE_ID: &str = "a4ae4b0e-3a52-4b7c-9a1e-5b1f1c7d2e90";

/// Records a new volume (and its create workflow, unless no backend can
/// hold it) in the caller's transaction, quota reserved; the caller commits
/// and starts the workflow.
pub(crate) fn begin_volume(
    core: &Core,
    tx: &mut dyn Tx,
    caller: &Caller,
    req: CreateVolume,
) -> Result<(Volume, Option<ember_model::WorkflowRecord>)> {
    let image = ImageId::new();
    // The type asked for, else the source's, else the default.
    let inherited = match (req.source_volid, req.snapshot_id) {
        (Some(v), _) => tx.volume(v)?.filter(|v| caller.sees(&v.project_id)),
        (None, Some(s)) => match tx.snapshot(s)? {
            Some(s) if caller.sees(&s.project_id) => tx.volume(s.volume_id)?,
            _ => None,
        },
        _ => None,
    };
    let default_name = core.config.default_volume_type.clone();
    let volume_type = match (&req.volume_type, inherited) {
        (Some(t), _) => crate::types::find_type(tx, &default_name, caller, t)
            .map_err(|_| ServiceError::NotFound("Volume type not found.".into()))?,
        (None, Some(v)) => crate::types::recorded_type(&v.volume_type, v.volume_type_id),
        (None, None) => crate::types::default_type(&default_name),
    };
    // A group member must have one of the group's volume types.
    if let Some(group_id) = &req.group_id {
        let group = crate::groups::load_group(tx, caller, group_id)?;
        if !group.volume_type_ids.contains(&volume_type.id) {
            return Err(ServiceError::InvalidInput(format!(
                "Invalid volume_type provided: {} (requested type is not compatible with the group).",
                volume_type.id
            )));
        }
    }
    // A clone lives on its source's backend (as Cinder places clones on
    // the source's host); a new volume where its type can be placed.
    let (size, source, source_backend) = if let Some(snapshot_id) = req.snapshot_id {
        let snapshot = match tx.snapshot(snapshot_id)? {
            Some(s) if caller.sees(&s.project_id) => s,
            _ => return Err(ServiceError::SnapshotNotFound(snapshot_id.to_string())),
        };
        if snapshot.status != SnapshotStatus::Available {
            return Err(ServiceError::InvalidSnapshot(
                "Originating snapshot status must be one of 'available' values".to_string(),
            ));
        }
        let frozen = snapshot
            .image
            .ok_or_else(|| ServiceError::InvalidSnapshot("Snapshot has no data.".into()))?;
        let size = req.size_gib.unwrap_or(snapshot.size_gib);
        if size < snapshot.size_gib {
            return Err(ServiceError::InvalidInput(format!(
                "Volume size '{size}'GB cannot be smaller than the snapshot size {}GB. They must be >= original snapshot size.",
                snapshot.size_gib
            )));
        }
        let backend = core.backend_of_snapshot(tx, &snapshot)?.name().to_string();
        (
            size,
            volume_create::Source::SnapshotImage(frozen),
            Some(backend),
        )
    } else if let Some(source_id) = req.source_volid {
        let source = load_volume(tx, caller, source_id)?;
        if !matches!(source.status, VolumeStatus::Available | VolumeStatus::InUse) {
            return Err(ServiceError::InvalidVolume(format!(
                "Source volume status must be available or in-use, but current status is: {}.",
                source.status
            )));
        }
        let size = req.size_gib.unwrap_or(source.size_gib);
        if size < source.size_gib {
            return Err(ServiceError::InvalidInput(format!(
                "Volume size '{size}'GB cannot be smaller than original volume size {}GB. They must be >= original volume size.",
                source.size_gib
            )));
        }
        (
            size,
            volume_create::Source::Volume {
                source: source_id,
                source_new_top: ImageId::new(),
            },
            Some(source.backend.clone()),
        )
    } else {
        let size = req
            .size_gib
            .ok_or_else(|| ServiceError::InvalidInput("Volume size is required.".into()))?;
        (size, volume_create::Source::Blank, None)
    };
    let size_i64 = check_size_gib(size, "size")?;
    check_volume_size(tx, &caller.project_id, size_i64)?;
    let deltas = [
        (QuotaResource::Volumes, 1),
        (QuotaResource::Gigabytes, size_i64),
    ];
    reserve(tx, &caller.project_id, &deltas)?;
    crate::quotas::reserve_typed(tx, &caller.project_id, &volume_type.id, &deltas)?;
    let volume = Volume {
        id: VolumeId::new(),
        project_id: caller.project_id.clone(),
        user_id: caller.user_id.clone(),
        name: req.name,
        description: req.description,
        size_gib: size,
        status: VolumeStatus::Creating,
        availability_zone: core.config.availability_zone.clone(),
        volume_type: volume_type.name.clone(),
        volume_type_id: Some(volume_type.id.clone()),
        group_id: req.group_id.clone(),
        snapshot_id: req.snapshot_id,
        source_volid: req.source_volid,
        metadata: req.metadata,
        bootable: false,
        // As Cinder: the type's `multiattach: <is> True` extra spec, or the
        // (deprecated) request flag.
        multiattach: req.multiattach || type_allows_multiattach(&volume_type),
        read_only: None,
        attachments: vec![],
        backend: String::new(),
        pool: String::new(),
        migration_status: None,
        image: None,
        error_reason: None,
        created_at: Timestamp::now(),
        updated_at: None,
    };
    // No backend for it: the volume is recorded in `error` (it
    // still counts against quota until deleted, as in Cinder)
    // and the project gets a user message saying why.
    let placed = crate::backend::place(core, tx, &volume_type, source_backend.as_deref())?;
    let backend = match placed {
        Ok(backend) => backend,
        Err(problem) => {
            let mut volume = volume;
            volume.backend = source_backend.unwrap_or_else(|| {
                core.backends
                    .all()
                    .next()
                    .expect("one backend")
                    .name()
                    .to_string()
            });
            volume.pool = core
                .backends
                .get(&volume.backend)
                .map(|b| b.pool().to_string())
                .unwrap_or_default();
            volume.status = VolumeStatus::Error;
            volume.error_reason = Some(format!("No valid backend was found: {problem}."));
            tx.put_volume(&volume)?;
            crate::messages::record(
                tx,
                &volume.project_id,
                req.request_id.as_deref(),
                "VOLUME_VOLUME_001_002",
                "VOLUME",
                Some(volume.id.to_string()),
                "schedule allocate volume:Could not find any available weighted backend.",
            )?;
            return Ok((volume, None));
        }
    };
    let mut volume = volume;
    volume.backend = backend.name().to_string();
    volume.pool = backend.pool().to_string();
    // The new volume's data is claimed now; from a snapshot, that keeps the
    // snapshot's data alive even if the snapshot is deleted before the
    // workflow runs. A clone of a volume claims its data when the source is
    // frozen.
    match &source {
        volume_create::Source::Blank => {
            backend.claim(tx, volume.id, image, size_bytes(size)?, None)?;
        }
        volume_create::Source::SnapshotImage(frozen) => {
            backend.claim(tx, volume.id, image, size_bytes(size)?, Some(*frozen))?;
        }
        volume_create::Source::Volume { .. } => {}
    }
    tx.put_volume(&volume)?;
    let record = new_record::<volume_create::VolumeCreate>(
        core,
        &volume_create::Params {
            volume_id: volume.id,
            image,
            size_gib: size,
            source,
        },
    );
    tx.put_workflow(&record)?;
    Ok((volume, Some(record)))
}
