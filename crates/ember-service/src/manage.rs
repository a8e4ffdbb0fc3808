//! Manage and unmanage (Cinder's `os-unmanage`, `os-volume-manage`,
//! `os-snapshot-manage`, `manageable_volumes`, `manageable_snapshots`),
//! all admin-only as in Cinder. Unmanaging forgets the record (and returns
//! its quota) but keeps the data on its backend, named `volume-<id>` or
//! `snapshot-<id>`; managing gives such data, or a foreign object the
//! backend can adopt, a new record. Metadata-only changes are one
//! transaction; adopting a foreign object runs the create workflow, whose
//! `make` step adopts it.

use crate::engine::new_record;
use crate::quotas::reserve;
use crate::volumes::{load_volume, require_admin};
use crate::workflows::{snapshot_delete, volume_create};
use crate::*;
use ember_backend::{Claimed, Manageable};
use ember_model::*;

#[derive(Clone, Debug, Default)]
pub struct ManageVolume {
    /// `ember@<backend>` (or with `#<pool>`).
    pub host: String,
    /// The backend's name for the data (`source-name`).
    pub reference: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub volume_type: Option<String>,
    pub metadata: Metadata,
    pub availability_zone: Option<String>,
    pub bootable: bool,
}

#[derive(Clone, Debug)]
pub struct ManageSnapshot {
    pub volume_id: VolumeId,
    pub reference: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
}

/// One manageable volume or snapshot as Cinder lists it.
#[derive(Clone, Debug)]
pub struct ManageableEntry {
    pub host: String,
    pub item: Manageable,
    /// Whole GiB, rounded up.
    pub size_gib: u64,
}

fn gib(bytes: u64) -> u64 {
    bytes.div_ceil(GIB).max(1)
}

/// The backend a `host` names.
fn backend_for<'a>(
    core: &'a core::Core,
    host: &str,
) -> Result<&'a std::sync::Arc<dyn ember_backend::VolumeBackend>> {
    core.backends
        .all()
        .find(|b| {
            host == crate::backend::volume_service_host(b.name())
                || host == crate::backend::pool_name(b.name(), b.pool())
        })
        .ok_or_else(|| ServiceError::InvalidInput(format!("Host '{host}' not found")))
}

impl Service {
    /// `os-unmanage` of a volume: the record goes (its quota returned), its
    /// data stays on the backend as `volume-<id>`. Like a delete: the
    /// volume must be detached, without snapshots, in a settled status.
    pub async fn unmanage_volume(&self, caller: &Caller, id: VolumeId) -> Result<()> {
        require_admin(caller, "volume_extension:volume_unmanage")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let slot = core.slot(id);
            let guard = core.quiesce(&slot)?;
            let mut tx = core.store.write()?;
            let volume = load_volume(tx.as_mut(), &caller, id)?;
            let settled = matches!(
                volume.status,
                VolumeStatus::Available
                    | VolumeStatus::Error
                    | VolumeStatus::ErrorRestoring
                    | VolumeStatus::ErrorExtending
            );
            if !settled || !volume.attachments.is_empty() {
                return Err(ServiceError::InvalidVolume(format!(
                    "Volume status must be available or error and the volume detached to unmanage, but current status is: {}.",
                    volume.status
                )));
            }
            if !tx.snapshots_of_volume(id)?.is_empty() {
                return Err(ServiceError::InvalidVolume(
                    "Volume still has snapshots.".into(),
                ));
            }
            if let Some(data) = volume.image {
                core.backend_of(&volume)?
                    .unmanage(tx.as_mut(), data, &format!("volume-{id}"))?;
            }
            tx.delete_volume(id)?;
            let deltas = [
                (QuotaResource::Volumes, 1),
                (QuotaResource::Gigabytes, volume.size_gib as i64),
            ];
            for (resource, delta) in deltas {
                tx.add_quota_usage(&volume.project_id, resource, -delta)?;
            }
            crate::quotas::release_typed(
                tx.as_mut(),
                &volume.project_id,
                &crate::quotas::type_of(&volume.volume_type_id),
                &deltas,
            )?;
            tx.commit()?;
            guard.release();
            core.forget_slot(id);
            Ok(())
        })
        .await
    }

    /// `os-unmanage` of a snapshot: the record goes, its data stays as
    /// `snapshot-<id>` (in its volume's lineage, for a later manage).
    pub async fn unmanage_snapshot(&self, caller: &Caller, id: SnapshotId) -> Result<()> {
        require_admin(caller, "volume_extension:snapshot_unmanage")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let snapshot = crate::snapshots::load_snapshot(tx.as_mut(), &caller, id)?;
            if !matches!(snapshot.status, SnapshotStatus::Available | SnapshotStatus::Error) {
                return Err(ServiceError::InvalidSnapshot(format!(
                    "Snapshot status must be available or error to unmanage, but current status is: {}.",
                    snapshot.status
                )));
            }
            if snapshot.group_snapshot_id.is_some() {
                return Err(ServiceError::InvalidSnapshot(
                    "Snapshot is part of a group snapshot.".into(),
                ));
            }
            let label = ember_backend::manage::label(
                &format!("snapshot-{id}"),
                Some(&format!("volume-{}", snapshot.volume_id)),
            );
            snapshot_delete::forget_snapshot(&core, tx.as_mut(), id, Some(&label))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// `POST os-volume-manage`: a new volume of what `reference` names on
    /// the backend `host` names: `available` at once for data unmanaged
    /// earlier, `creating` until a foreign object is adopted.
    pub async fn manage_volume(&self, caller: &Caller, req: ManageVolume) -> Result<Volume> {
        require_admin(caller, "volume_extension:volume_manage")?;
        crate::snapshots::check_client_name(req.name.as_deref())?;
        let core = self.core.clone();
        let caller = caller.clone();
        let (volume, record) = self
            .run_blocking(move || {
                let backend = backend_for(&core, &req.host)?.clone();
                if let Some(zone) = &req.availability_zone
                    && !zone.is_empty()
                    && *zone != core.config.availability_zone
                {
                    return Err(ServiceError::InvalidInput(format!(
                        "Availability zone '{zone}' is invalid."
                    )));
                }
                let mut tx = core.store.write()?;
                let default_name = core.config.default_volume_type.clone();
                let volume_type = match &req.volume_type {
                    Some(t) if !t.is_empty() => {
                        crate::types::find_type(tx.as_mut(), &default_name, &caller, t).map_err(
                            |_| {
                                ServiceError::InvalidInput(format!(
                                    "Cannot find requested '{t}' volume type"
                                ))
                            },
                        )?
                    }
                    _ => crate::types::default_type(&default_name),
                };
                let id = VolumeId::new();
                let data = ImageId::new();
                let claimed = backend.claim_existing(tx.as_mut(), id, &req.reference, data)?;
                let (size_bytes, image, status) = match claimed {
                    Claimed::Ready { data, size_bytes } => {
                        (size_bytes, Some(data), VolumeStatus::Available)
                    }
                    Claimed::ToMake { size_bytes } => (size_bytes, None, VolumeStatus::Creating),
                };
                let size_gib = gib(size_bytes);
                let size_i64 = crate::volumes::check_size_gib(size_gib, "size")?;
                let deltas = [
                    (QuotaResource::Volumes, 1),
                    (QuotaResource::Gigabytes, size_i64),
                ];
                reserve(tx.as_mut(), &caller.project_id, &deltas)?;
                crate::quotas::reserve_typed(
                    tx.as_mut(),
                    &caller.project_id,
                    &volume_type.id,
                    &deltas,
                )?;
                let volume = Volume {
                    id,
                    project_id: caller.project_id.clone(),
                    user_id: caller.user_id.clone(),
                    name: req.name,
                    description: req.description,
                    size_gib,
                    status,
                    availability_zone: core.config.availability_zone.clone(),
                    volume_type: volume_type.name.clone(),
                    volume_type_id: Some(volume_type.id.clone()),
                    group_id: None,
                    snapshot_id: None,
                    source_volid: None,
                    metadata: req.metadata,
                    bootable: req.bootable,
                    multiattach: crate::volumes::type_allows_multiattach(&volume_type),
                    read_only: None,
                    attachments: vec![],
                    backend: backend.name().to_string(),
                    pool: backend.pool().to_string(),
                    migration_status: None,
                    image,
                    error_reason: None,
                    created_at: Timestamp::now(),
                    updated_at: None,
                };
                tx.put_volume(&volume)?;
                let record = (status == VolumeStatus::Creating).then(|| {
                    new_record::<volume_create::VolumeCreate>(
                        &core,
                        &volume_create::Params {
                            volume_id: id,
                            image: data,
                            size_gib,
                            source: volume_create::Source::Blank,
                        },
                    )
                });
                if let Some(record) = &record {
                    tx.put_workflow(record)?;
                }
                tx.commit()?;
                Ok((volume, record))
            })
            .await?;
        if let Some(record) = record {
            self.start(record);
        }
        Ok(volume)
    }

    /// `POST os-snapshot-manage`: a new snapshot of `volume_id` of the
    /// unmanaged snapshot data `reference` names, which must be a point
    /// in that volume's history.
    pub async fn manage_snapshot(&self, caller: &Caller, req: ManageSnapshot) -> Result<Snapshot> {
        require_admin(caller, "volume_extension:snapshot_manage")?;
        crate::snapshots::check_client_name(req.name.as_deref())?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let volume = load_volume(tx.as_mut(), &caller, req.volume_id)?;
            let data = match (volume.status, volume.image) {
                (VolumeStatus::Available | VolumeStatus::InUse, Some(data)) => data,
                _ => {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Volume {} status must be available or in-use, but current status is: {}.",
                        volume.id, volume.status
                    )));
                }
            };
            let id = SnapshotId::new();
            let (frozen, size_bytes) = core.backend_of(&volume)?.claim_existing_snapshot(
                tx.as_mut(),
                id,
                &req.reference,
                data,
            )?;
            let size_gib = gib(size_bytes);
            let deltas = [
                (QuotaResource::Snapshots, 1),
                (QuotaResource::Gigabytes, size_gib as i64),
            ];
            reserve(tx.as_mut(), &volume.project_id, &deltas)?;
            let type_id = crate::quotas::type_of(&volume.volume_type_id);
            crate::quotas::reserve_typed(tx.as_mut(), &volume.project_id, &type_id, &deltas)?;
            let snapshot = Snapshot {
                id,
                project_id: volume.project_id.clone(),
                user_id: caller.user_id.clone(),
                volume_id: volume.id,
                name: req.name,
                description: req.description,
                size_gib,
                status: SnapshotStatus::Available,
                metadata: req.metadata,
                group_snapshot_id: None,
                volume_type_id: Some(type_id),
                image: Some(frozen),
                export_secret: None,
                progress: "100%".into(),
                error_reason: None,
                created_at: Timestamp::now(),
                updated_at: None,
            };
            tx.put_snapshot(&snapshot)?;
            tx.commit()?;
            Ok(snapshot)
        })
        .await
    }

    /// What could be managed on the backends `host` names (all when None):
    /// volumes, or snapshots. Admin only.
    pub async fn manageable(
        &self,
        caller: &Caller,
        host: Option<String>,
        snapshots: bool,
    ) -> Result<Vec<ManageableEntry>> {
        require_admin(
            caller,
            if snapshots {
                "snapshot_extension:list_manageable"
            } else {
                "volume_extension:list_manageable"
            },
        )?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let backends: Vec<_> = match &host {
                Some(h) if h != crate::backend::HOST => vec![backend_for(&core, h)?.clone()],
                _ => core.backends.all().cloned().collect(),
            };
            let mut out = vec![];
            for backend in backends {
                let mut tx = core.store.read()?;
                let items = if snapshots {
                    backend.manageable_snapshots(tx.as_mut())?
                } else {
                    backend.manageable_volumes(tx.as_mut())?
                };
                out.extend(items.into_iter().map(|item| ManageableEntry {
                    host: crate::backend::pool_name(backend.name(), backend.pool()),
                    size_gib: gib(item.size_bytes),
                    item,
                }));
            }
            Ok(out)
        })
        .await
    }
}
