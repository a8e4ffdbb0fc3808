//! Snapshot operations and their rules.

use crate::engine::new_record;
use crate::quotas::reserve;
use crate::volumes::{load_volume, require_admin};
use crate::workflows::{snapshot_create, snapshot_delete};
use crate::*;
use ember_model::*;
use ember_store::{ListQuery, Page, SnapshotFilter, Tx};
use std::sync::{Arc, Mutex};

pub(crate) fn load_snapshot(tx: &mut dyn Tx, caller: &Caller, id: SnapshotId) -> Result<Snapshot> {
    match tx.snapshot(id)? {
        Some(s) if caller.sees(&s.project_id) => Ok(s),
        _ => Err(ServiceError::SnapshotNotFound(id.to_string())),
    }
}

fn require_writer(caller: &Caller, action: &str) -> Result<()> {
    if caller.can_write() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(action.into()))
    }
}

/// Names kept for the snapshots that backups and snapshot policies make
/// (EVS's automatic backups use them): no client may give a snapshot such
/// a name, or change or delete a snapshot that has one, through any API.
pub const RESERVED_SNAPSHOT_PREFIX: &str = "autobk_snapshot_";

/// Refuses a name a client may not give a snapshot.
pub(crate) fn check_client_name(name: Option<&str>) -> Result<()> {
    if name.is_some_and(|n| n.starts_with(RESERVED_SNAPSHOT_PREFIX)) {
        return Err(ServiceError::InvalidInput(format!(
            "the prefix {RESERVED_SNAPSHOT_PREFIX} is reserved for backups."
        )));
    }
    Ok(())
}

/// Refuses a client's change to a snapshot a backup made.
pub(crate) fn check_changeable(s: &Snapshot) -> Result<()> {
    if s.name
        .as_deref()
        .is_some_and(|n| n.starts_with(RESERVED_SNAPSHOT_PREFIX))
    {
        return Err(ServiceError::Protected(
            "Operations cannot be performed on snapshots made by backups.".into(),
        ));
    }
    Ok(())
}

impl Service {
    /// Accepts a snapshot request; the snapshot is `creating` until the
    /// workflow has frozen the volume's data.
    pub async fn create_snapshot(&self, caller: &Caller, req: CreateSnapshot) -> Result<Snapshot> {
        check_client_name(req.name.as_deref())?;
        self.create_snapshot_named(caller, req).await
    }

    /// `create_snapshot` without the reserved-name rule: for the snapshots
    /// policies make (`autobk_snapshot_…`).
    pub(crate) async fn create_snapshot_named(
        &self,
        caller: &Caller,
        req: CreateSnapshot,
    ) -> Result<Snapshot> {
        require_writer(caller, "volume:create_snapshot")?;
        let core = self.core.clone();
        let caller = caller.clone();
        let (snapshot, record) = self
            .run_blocking(move || {
                let req = match take_snapshot_now(&core, &caller, req)? {
                    Taken::Now(snapshot) => return Ok((snapshot, None)),
                    Taken::Later(req) => req,
                };
                let mut tx = core.store.write()?;
                let (snapshot, record) = begin_snapshot(&core, tx.as_mut(), &caller, req, None)?;
                tx.commit()?;
                Ok((snapshot, Some(record)))
            })
            .await?;
        if let Some(record) = record {
            self.start(record);
        }
        // The response shows the snapshot as accepted, `creating`, as every
        // snapshot API documents it; a GET shows it `available` at once.
        Ok(Snapshot {
            status: SnapshotStatus::Creating,
            progress: "0%".into(),
            updated_at: None,
            ..snapshot
        })
    }

    pub async fn snapshot(&self, caller: &Caller, id: SnapshotId) -> Result<Snapshot> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.point_read(move || load_snapshot(core.store.read()?.as_mut(), &caller, id))
            .await
    }

    pub async fn list_snapshots(
        &self,
        caller: &Caller,
        mut query: ListQuery<SnapshotFilter>,
        all_tenants: bool,
    ) -> Result<Page<Snapshot>> {
        if !(all_tenants && caller.is_admin()) {
            query.project = Some(caller.project_id.clone());
        }
        let core = self.core.clone();
        self.run_blocking(move || Ok(core.store.read()?.list_snapshots(&query)?))
            .await
    }

    async fn mutate_snapshot(
        &self,
        caller: &Caller,
        id: SnapshotId,
        change: impl FnOnce(&mut Snapshot) -> Result<()> + Send + 'static,
    ) -> Result<Snapshot> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut snapshot = load_snapshot(tx.as_mut(), &caller, id)?;
            change(&mut snapshot)?;
            snapshot.updated_at = Some(Timestamp::now());
            tx.put_snapshot(&snapshot)?;
            tx.commit()?;
            Ok(snapshot)
        })
        .await
    }

    pub async fn update_snapshot(
        &self,
        caller: &Caller,
        id: SnapshotId,
        update: UpdateSnapshot,
    ) -> Result<Snapshot> {
        require_writer(caller, "volume:update_snapshot")?;
        check_client_name(update.name.as_ref().and_then(|n| n.as_deref()))?;
        self.mutate_snapshot(caller, id, move |s| {
            check_changeable(s)?;
            if let Some(name) = update.name {
                s.name = name;
            }
            if let Some(description) = update.description {
                s.description = description;
            }
            Ok(())
        })
        .await
    }

    pub async fn write_snapshot_metadata(
        &self,
        caller: &Caller,
        id: SnapshotId,
        metadata: Metadata,
        how: MetadataWrite,
    ) -> Result<Metadata> {
        require_writer(caller, "volume:update_snapshot_metadata")?;
        let s = self
            .mutate_snapshot(caller, id, move |s| {
                check_changeable(s)?;
                match how {
                    MetadataWrite::Merge => s.metadata.extend(metadata),
                    MetadataWrite::Replace => s.metadata = metadata,
                }
                Ok(())
            })
            .await?;
        Ok(s.metadata)
    }

    pub async fn delete_snapshot_metadata_key(
        &self,
        caller: &Caller,
        id: SnapshotId,
        key: String,
    ) -> Result<()> {
        require_writer(caller, "volume:delete_snapshot_metadata")?;
        self.mutate_snapshot(caller, id, move |s| {
            check_changeable(s)?;
            s.metadata
                .remove(&key)
                .map(drop)
                .ok_or(ServiceError::SnapshotMetadataNotFound {
                    snapshot: id.to_string(),
                    key,
                })
        })
        .await
        .map(drop)
    }

    /// Deletes a snapshot; `force` (admin `os-force_delete`) skips the
    /// status rule.
    pub async fn delete_snapshot(
        &self,
        caller: &Caller,
        id: SnapshotId,
        force: bool,
    ) -> Result<()> {
        require_writer(caller, "volume:delete_snapshot")?;
        if force {
            require_admin(
                caller,
                "volume_extension:snapshot_admin_actions:force_delete",
            )?;
        }
        self.start_snapshot_delete(caller, id, force, false, false)
            .await
    }

    /// Starts a snapshot's delete workflow. `retry` also accepts a snapshot
    /// whose earlier delete failed (`error_deleting`), for a group snapshot
    /// delete asked again.
    pub(crate) async fn start_snapshot_delete(
        &self,
        caller: &Caller,
        id: SnapshotId,
        force: bool,
        retry: bool,
        by_policy: bool,
    ) -> Result<()> {
        let core = self.core.clone();
        let caller = caller.clone();
        let record = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut snapshot = load_snapshot(tx.as_mut(), &caller, id)?;
                if !by_policy {
                    check_changeable(&snapshot)?;
                }
                let deletable = matches!(snapshot.status, SnapshotStatus::Available | SnapshotStatus::Error)
                    || (retry && snapshot.status == SnapshotStatus::ErrorDeleting);
                if !deletable && !force {
                    return Err(ServiceError::InvalidSnapshot(
                        "Snapshot status must be available or error and must not be part of a group.".into(),
                    ));
                }
                if force && snapshot.status == SnapshotStatus::Creating && snapshot.image.is_none() {
                    return Err(ServiceError::InvalidSnapshot(
                        "Snapshot is still being taken; try again once it is available or in error.".into(),
                    ));
                }
                snapshot.status = SnapshotStatus::Deleting;
                snapshot.updated_at = Some(Timestamp::now());
                let exported = snapshot.export_secret.take().is_some();
                tx.put_snapshot(&snapshot)?;
                let record = new_record::<snapshot_delete::SnapshotDelete>(&core, &snapshot_delete::Params { snapshot_id: id });
                tx.put_workflow(&record)?;
                tx.commit()?;
                if exported {
                    core.revoke_export(id.0);
                }
                Ok(record)
            })
            .await?;
        self.start(record);
        Ok(())
    }

    /// Admin `os-reset_status`, any status as in Cinder (see volumes).
    pub async fn reset_snapshot_status(
        &self,
        caller: &Caller,
        id: SnapshotId,
        status: SnapshotStatus,
    ) -> Result<Snapshot> {
        require_admin(
            caller,
            "volume_extension:snapshot_admin_actions:reset_status",
        )?;
        self.mutate_snapshot(caller, id, move |s| {
            s.status = status;
            Ok(())
        })
        .await
    }

    /// `os-update_snapshot_status`, used by drivers that take snapshots
    /// with help from the compute host: only the transitions Cinder allows.
    /// Cinder's default policy lets any project member call it (Tempest's
    /// primary user does); readers cannot.
    pub async fn update_snapshot_status(
        &self,
        caller: &Caller,
        id: SnapshotId,
        status: SnapshotStatus,
        progress: Option<String>,
    ) -> Result<Snapshot> {
        require_writer(
            caller,
            "snapshot_extension:snapshot_actions:update_snapshot_status",
        )?;
        self.mutate_snapshot(caller, id, move |s| {
            let allowed: &[SnapshotStatus] = match s.status {
                SnapshotStatus::Creating => &[
                    SnapshotStatus::Creating,
                    SnapshotStatus::Available,
                    SnapshotStatus::Error,
                ],
                SnapshotStatus::Deleting => {
                    &[SnapshotStatus::Deleting, SnapshotStatus::ErrorDeleting]
                }
                _ => &[],
            };
            if !allowed.contains(&status) {
                return Err(ServiceError::InvalidSnapshot(format!(
                    "Snapshot status {} not allowed to transition to {status}.",
                    s.status
                )));
            }
            // Ember's own workflow finishes `creating`; an external report of
            // success is only recorded once the data is actually frozen.
            if status == SnapshotStatus::Available && s.image.is_none() {
                return Err(ServiceError::InvalidSnapshot(
                    "Snapshot data is not frozen yet.".into(),
                ));
            }
            s.status = status;
            if let Some(p) = progress {
                s.progress = p;
            }
            Ok(())
        })
        .await
    }

    /// Reads bytes of a snapshot's frozen data.
    pub async fn read_snapshot(
        &self,
        caller: &Caller,
        id: SnapshotId,
        offset: u64,
        length: u64,
    ) -> Result<crate::DataBuffer> {
        let s = self.snapshot(caller, id).await?;
        if s.image.is_none() {
            return Err(ServiceError::InvalidSnapshot(format!(
                "Snapshot {id} has no data yet (status {}).",
                s.status
            )));
        }
        if length > 64 << 20 {
            return Err(ServiceError::InvalidInput(
                "At most 64 MiB can be read at once.".into(),
            ));
        }
        let budget = self.data_budget(length).await?;
        let core = self.core.clone();
        let bytes = self
            .run_blocking(move || {
                let io = core.open_snapshot(&s)?;
                let mut buf = vec![0u8; length as usize];
                io.read_at(&mut buf, offset)?;
                Ok(buf)
            })
            .await?;
        Ok(Self::data_buffer(bytes, budget))
    }
}

/// Records a new snapshot of `req.volume_id` and its create workflow in the
/// caller's transaction (quota reserved); the caller commits and starts it.
pub(crate) fn begin_snapshot(
    core: &Core,
    tx: &mut dyn ember_store::Tx,
    caller: &Caller,
    req: CreateSnapshot,
    group_snapshot_id: Option<String>,
) -> Result<(Snapshot, ember_model::WorkflowRecord)> {
    begin_snapshot_as(
        core,
        tx,
        caller,
        req,
        group_snapshot_id,
        SnapshotId::new(),
        ImageId::new(),
    )
}

/// `begin_snapshot` with the snapshot's id and the volume's next top image
/// chosen by the caller (Nova's assisted snapshots name both).
pub(crate) fn begin_snapshot_as(
    core: &Core,
    tx: &mut dyn ember_store::Tx,
    caller: &Caller,
    req: CreateSnapshot,
    group_snapshot_id: Option<String>,
    snapshot_id: SnapshotId,
    new_top: ImageId,
) -> Result<(Snapshot, ember_model::WorkflowRecord)> {
    let (volume, snapshot) = prepare_snapshot(tx, caller, req, group_snapshot_id, snapshot_id)?;
    tx.put_snapshot(&snapshot)?;
    let record = new_record::<snapshot_create::SnapshotCreate>(
        core,
        &snapshot_create::Params {
            snapshot_id: snapshot.id,
            volume_id: volume.id,
            new_top,
        },
    );
    tx.put_workflow(&record)?;
    Ok((snapshot, record))
}

/// The rules of a new snapshot, checked in the caller's transaction: the
/// volume's state, and the quota (reserved here). Returns the volume and
/// the snapshot record, `creating`, not yet stored.
fn prepare_snapshot(
    tx: &mut dyn ember_store::Tx,
    caller: &Caller,
    req: CreateSnapshot,
    group_snapshot_id: Option<String>,
    snapshot_id: SnapshotId,
) -> Result<(Volume, Snapshot)> {
    // (Names are checked by the client-facing callers: policies give
    // reserved ones.)
    let volume = load_volume(tx, caller, req.volume_id)?;
    let allowed = volume.status == VolumeStatus::Available
        || (volume.status == VolumeStatus::InUse && req.allow_in_use);
    if !allowed {
        return Err(ServiceError::InvalidVolume(format!(
            "Volume {} status must be available, but current status is: {}.",
            volume.id, volume.status
        )));
    }
    let deltas = [
        (QuotaResource::Snapshots, 1),
        (QuotaResource::Gigabytes, volume.size_gib as i64),
    ];
    reserve(tx, &volume.project_id, &deltas)?;
    let type_id = crate::quotas::type_of(&volume.volume_type_id);
    crate::quotas::reserve_typed(tx, &volume.project_id, &type_id, &deltas)?;
    let snapshot = Snapshot {
        id: snapshot_id,
        project_id: volume.project_id.clone(),
        user_id: caller.user_id.clone(),
        volume_id: volume.id,
        name: req.name,
        description: req.description,
        size_gib: volume.size_gib,
        status: SnapshotStatus::Creating,
        metadata: req.metadata,
        group_snapshot_id,
        volume_type_id: Some(type_id),
        image: None,
        export_secret: None,
        progress: "0%".into(),
        error_reason: None,
        created_at: Timestamp::now(),
        updated_at: None,
    };
    Ok((volume, snapshot))
}

/// The metadata half of a snapshot taken now: the rules, the quota, the
/// backend's record of the freeze, and the volume and snapshot given their
/// data.
fn freeze_in(
    tx: &mut dyn Tx,
    backend: &dyn ember_backend::VolumeBackend,
    caller: &Caller,
    req: CreateSnapshot,
    data: ImageId,
    new_top: ImageId,
    size: u64,
) -> Result<Snapshot> {
    let (mut volume, mut snapshot) = prepare_snapshot(tx, caller, req, None, SnapshotId::new())?;
    if volume.image != Some(data)
        || volume.backend != backend.name()
        || crate::volumes::size_bytes(volume.size_gib)? != size
    {
        return Err(ServiceError::Conflict(
            "the volume changed while the snapshot was taken".into(),
        ));
    }
    let frozen = backend.record_freeze(tx, volume.id, data, new_top, size, Some(snapshot.id))?;
    volume.image = Some(frozen.volume_data);
    tx.put_volume(&volume)?;
    snapshot.image = Some(frozen.frozen);
    snapshot.status = SnapshotStatus::Available;
    snapshot.progress = "100%".into();
    // As in Cinder, where `creating` → `available` is an update.
    snapshot.updated_at = Some(Timestamp::now());
    tx.put_snapshot(&snapshot)?;
    Ok(snapshot)
}

/// What `take_snapshot_now` did. Short-lived (one per request), so the
/// size difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Taken {
    /// The snapshot exists, `available`, durably (image and metadata).
    Now(Snapshot),
    /// The fast path could not run (no data yet, a storage error): the
    /// request goes the workflow way, which reports the outcome.
    Later(CreateSnapshot),
}

/// Takes a snapshot inside the request: quiesce the volume, let the backend
/// stage the freeze (on qcow2: the new overlay, its contents fsync'd), and
/// in one transaction check the rules, reserve the quota, record the
/// freeze and give the volume and the snapshot their data. The transaction
/// is group-committed with concurrent snapshots: one backend barrier (on
/// qcow2 the directory fsync that makes every overlay's name durable) and
/// one WAL fsync serve the whole group. No workflow record: a crash before
/// the commit leaves only unreferenced staged data, which the backend's
/// start-up recovery removes; after it, the snapshot is complete. The
/// volume stays quiesced until the commit is durable, so no write lands in
/// the new data before the metadata naming it would survive a crash.
/// The same switch the `snapshot_create` workflow makes, which remains for
/// retries and group snapshots.
pub(crate) fn take_snapshot_now(
    core: &crate::core::Core,
    caller: &Caller,
    req: CreateSnapshot,
) -> Result<Taken> {
    use crate::engine::Workflow;
    if core
        .faults
        .planned_for(snapshot_create::SnapshotCreate::KIND)
    {
        return Ok(Taken::Later(req));
    }
    let t0 = std::time::Instant::now();
    // Find the volume first, so unknown ids never get an I/O slot.
    let volume = load_volume(core.store.read()?.as_mut(), caller, req.volume_id)?;
    let t1 = t0.elapsed();
    let size = crate::volumes::size_bytes(volume.size_gib)?;
    // A backend whose freeze takes a while (an RBD snapshot waits for the
    // monitors' next map, up to a second) answers at once with `creating`
    // and lets the workflow freeze: the request never waits for it.
    if !core.backend_of(&volume)?.instant_freeze() {
        return Ok(Taken::Later(req));
    }
    let slot = core.slot(volume.id);
    let guard = core.quiesce(&slot)?;
    // The data as it is now that I/O is held (a change may have won the
    // race for the slot).
    let Some(top) = core.store.read()?.volume(volume.id)?.and_then(|v| v.image) else {
        return Ok(Taken::Later(req));
    };
    let backend = core.backend_of(&volume)?.clone();
    let barrier = core.backends.barrier(backend.name())?;
    let new_top = ImageId::new();
    let t2 = t0.elapsed();
    let created = backend.stage_freeze(top, new_top, size, true);
    let t3 = t0.elapsed();
    if let Err(e) = created {
        tracing::warn!(volume = %volume.id, error = %e, "snapshot fast path failed; using the workflow");
        let _ = backend.abandon(Some(top), new_top);
        return Ok(Taken::Later(req));
    }
    // One transaction, committed together with concurrent snapshots of
    // other volumes (group commit: one fsync for all of them), after the
    // one directory sync that makes all their overlays' names durable.
    let out: Arc<Mutex<Option<Result<Snapshot>>>> = Arc::default();
    let job_out = out.clone();
    let caller = caller.clone();
    let job_req = req.clone();
    let job_backend = backend.clone();
    let job = Box::new(move |tx: &mut dyn Tx| {
        let result = freeze_in(
            tx,
            job_backend.as_ref(),
            &caller,
            job_req,
            top,
            new_top,
            size,
        );
        let keep = result.is_ok();
        *job_out.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        keep
    });
    let committed = match core.store.write_grouped_after(barrier, job) {
        Ok(_) => out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Err(ServiceError::Internal("snapshot job did not run".into()))),
        Err(e) => Err(e.into()),
    };
    tracing::debug!(load = ?t1, quiesced = ?t2, created = ?t3, committed = ?t0.elapsed(), "snapshot timing");
    match committed {
        Ok(snapshot) => {
            guard.release();
            Ok(Taken::Now(snapshot))
        }
        Err(e) => {
            // Nothing references what was staged: remove it.
            let _ = backend.abandon(Some(top), new_top);
            drop(guard);
            match e {
                ServiceError::Conflict(_) => Ok(Taken::Later(req)),
                other => Err(other),
            }
        }
    }
}
