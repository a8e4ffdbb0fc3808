//! Backup create: freeze a point of the volume (or take the snapshot's
//! data), copy what changed since the parent backup's point to the target
//! as content-addressed chunks, keep the new point for the next one.
//!
//! Steps:
//! 1. (Storage+DB) `freeze`: for a volume's backup, the backend freezes
//!    the volume's data as a snapshot does, and the frozen point is the
//!    backup's (`hold_for_backup`), in one transaction. Undo: release it
//!    (the backend merges it back into the volume).
//! 2. (Target+DB) `copy`: the chunks that may differ from the parent's
//!    point (all allocated ones without a parent or point) are read,
//!    hashed, referenced, and uploaded unless the target has them; the
//!    manifest goes next to them. Undo: drop the backup's references (the
//!    collector deletes chunks nothing else references).
//! 3. (DB) `finish`: the backup is available; the volume's older backup
//!    point is given up (one point per volume).
//! 4. (Storage) `collect`: the backend removes what was given up.

use super::backup_chunks;
use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use ember_backend::{Changed, DataRef, VolumeBackend};
use ember_backup::{CHUNK_SIZE, MANIFEST_FORMAT, Manifest, chunk_hash};
use ember_model::{Backup, BackupId, BackupStatus, ImageId, SnapshotStatus, Timestamp};
use ember_store::Tx;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Chunks read, then referenced and uploaded, together (32 MiB).
const BATCH: usize = 64;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub backup_id: BackupId,
    /// The volume's next data, chosen up front so a re-run reuses it.
    pub new_top: ImageId,
}

pub struct BackupCreate;

impl Workflow for BackupCreate {
    const KIND: &'static str = "backup-create";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "freeze",
                run: freeze,
                undo: unfreeze,
            },
            Step {
                name: "copy",
                run: copy,
                undo: drop_references,
            },
            Step {
                name: "finish",
                run: finish,
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
            b.status = BackupStatus::Error;
            b.fail_reason = Some(super::reason(reason));
            b.updated_at = Some(Timestamp::now());
            give_back_snapshot(tx.as_mut(), &b)?;
            tx.put_backup(&b)?;
        }
        tx.commit()?;
        // The chunks only this backup had referenced go now, not at the
        // next delete.
        if let Err(e) = backup_chunks::collect(core) {
            tracing::warn!(error = %e, "backup chunk collection failed; the next one retries");
        }
        core.collect_garbage()
    }
}

fn load(tx: &mut dyn Tx, id: BackupId) -> Result<Backup> {
    tx.backup(id)?
        .ok_or_else(|| ServiceError::NotFound(format!("Backup {id} could not be found.")))
}

/// The backend holding `data`.
pub(crate) fn backend_of_data(
    core: &Core,
    tx: &mut dyn Tx,
    data: DataRef,
) -> Result<Arc<dyn VolumeBackend>> {
    let image = tx
        .image(data)?
        .ok_or_else(|| ServiceError::Internal(format!("backup data {data} has no record")))?;
    Ok(core.backends.get(&image.backend)?.clone())
}

/// A snapshot held `backing-up` for the backup is available again.
fn give_back_snapshot(tx: &mut dyn Tx, b: &Backup) -> Result<()> {
    if let Some(sid) = b.snapshot_id
        && let Some(mut s) = tx.snapshot(sid)?
        && s.status == SnapshotStatus::BackingUp
    {
        s.status = SnapshotStatus::Available;
        s.updated_at = Some(Timestamp::now());
        tx.put_snapshot(&s)?;
    }
    Ok(())
}

fn freeze(core: &Core, p: &Params) -> Result<()> {
    let backup = load(core.store.read()?.as_mut(), p.backup_id)?;
    if backup.source.is_some() {
        return Ok(()); // frozen already
    }
    if let Some(sid) = backup.snapshot_id {
        let mut tx = core.store.write()?;
        let snapshot = tx
            .snapshot(sid)?
            .ok_or_else(|| ServiceError::SnapshotNotFound(sid.to_string()))?;
        let mut backup = load(tx.as_mut(), p.backup_id)?;
        backup.source = Some(snapshot.image.ok_or_else(|| {
            ServiceError::InvalidSnapshot(format!("Snapshot {sid} has no data."))
        })?);
        tx.put_backup(&backup)?;
        tx.commit()?;
        return Ok(());
    }
    let slot = core.slot(backup.volume_id);
    let guard = core.quiesce(&slot)?;
    let (volume, data) = core.volume_data(backup.volume_id)?;
    let backend = core.backend_of(&volume)?.clone();
    let size = crate::volumes::size_bytes(volume.size_gib)?;
    backend.stage_freeze(data, p.new_top, size, false)?;
    let mut tx = core.store.write()?;
    let frozen = backend.record_freeze(tx.as_mut(), volume.id, data, p.new_top, size, None)?;
    backend.hold_for_backup(tx.as_mut(), frozen.frozen, p.backup_id)?;
    Core::switch_top(tx.as_mut(), volume.id, Some(data), frozen.volume_data)?;
    let mut backup = load(tx.as_mut(), p.backup_id)?;
    backup.point = Some(frozen.frozen);
    backup.source = Some(frozen.frozen);
    tx.put_backup(&backup)?;
    tx.commit()?;
    guard.release();
    Ok(())
}

fn unfreeze(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    let Some(mut backup) = tx.backup(p.backup_id)? else {
        return Ok(());
    };
    match backup.point.take() {
        Some(point) => {
            let backend = backend_of_data(core, tx.as_mut(), point)?;
            backend.release(tx.as_mut(), point)?;
            backup.source = None;
            tx.put_backup(&backup)?;
            tx.commit()?;
        }
        None if backup.snapshot_id.is_none() => {
            drop(tx);
            if let Ok((volume, data)) = core.volume_data(backup.volume_id) {
                core.backend_of(&volume)?.abandon(Some(data), p.new_top)?;
            }
        }
        None => {}
    }
    Ok(())
}

/// The chunk indices to read, and whether they are relative to `since`
/// (else to nothing: every other chunk reads as zeroes).
fn chunks_to_read(
    backend: &dyn VolumeBackend,
    source: DataRef,
    since: Option<DataRef>,
    size: u64,
) -> Result<(BTreeSet<u64>, bool)> {
    let chunks = size.div_ceil(CHUNK_SIZE);
    let to_indices = |ranges: Vec<(u64, u64)>| {
        let mut set = BTreeSet::new();
        for (start, len) in ranges {
            if len == 0 || start >= size {
                continue;
            }
            let end = start.saturating_add(len).min(size);
            set.extend(start / CHUNK_SIZE..end.div_ceil(CHUNK_SIZE));
        }
        set
    };
    Ok(match backend.changed_ranges(source, since)? {
        Changed::Since(ranges) => (to_indices(ranges), true),
        Changed::All(ranges) => (to_indices(ranges), false),
        Changed::Unknown => ((0..chunks).collect(), false),
    })
}

fn copy(core: &Core, p: &Params) -> Result<()> {
    let target = backup_chunks::target(core)?;
    let (backup, parent) = {
        let mut tx = core.store.read()?;
        let backup = load(tx.as_mut(), p.backup_id)?;
        let parent = match backup.parent_id {
            Some(pid) => Some((load(tx.as_mut(), pid)?, tx.backup_refs(pid)?)),
            None => None,
        };
        (backup, parent)
    };
    let source = backup
        .source
        .ok_or_else(|| ServiceError::Internal("backup has no source data".into()))?;
    let size = crate::volumes::size_bytes(backup.size_gib)?;
    let project = backup.chunk_namespace().clone();
    let backend = backend_of_data(core, core.store.read()?.as_mut(), source)?;
    // The parent's point is the base to diff against, if the backend
    // finds it in this data's history; otherwise every chunk with data is
    // read (and chunks the target has are still not uploaded again).
    let (since, parent_refs) = match parent {
        Some((parent, refs)) if parent.chunk_namespace() == &project => (parent.point, refs),
        _ => (None, Vec::new()),
    };
    let (changed, relative) = chunks_to_read(backend.as_ref(), source, since, size)?;
    let mut manifest: BTreeMap<u64, String> = if relative {
        parent_refs.into_iter().collect()
    } else {
        BTreeMap::new()
    };
    // A re-run starts over: references of an earlier run are replaced.
    {
        let mut tx = core.store.write()?;
        tx.clear_backup_refs(p.backup_id)?;
        tx.commit()?;
    }
    let _turn = backup_chunks::copy_turn();
    let io = backend.open(source, false)?;
    let mut stored_bytes = 0u64;
    let changed: Vec<u64> = changed.into_iter().collect();
    for batch in changed.chunks(BATCH) {
        // Read in order (one handle), hash on every core.
        let mut buffers = Vec::with_capacity(batch.len());
        for &index in batch {
            let offset = index * CHUNK_SIZE;
            let len = CHUNK_SIZE.min(size - offset) as usize;
            let mut buf = vec![0u8; len];
            io.read_at(&mut buf, offset)?;
            buffers.push((index, buf));
        }
        let hashes = backup_chunks::parallel_map(&buffers, |(_, buf)| {
            (!buf.iter().all(|b| *b == 0)).then(|| chunk_hash(buf))
        });
        let mut refs = Vec::with_capacity(batch.len());
        let mut bytes: HashMap<&str, &[u8]> = HashMap::new();
        for ((index, buf), hash) in buffers.iter().zip(&hashes) {
            match hash {
                None => {
                    manifest.remove(index);
                }
                Some(hash) => {
                    manifest.insert(*index, hash.clone());
                    refs.push((*index, hash.clone()));
                    bytes.insert(hash.as_str(), buf.as_slice());
                }
            }
        }
        if refs.is_empty() {
            continue;
        }
        let upload = backup_chunks::reference(core, p.backup_id, &project, &refs)?;
        let stored = backup_chunks::parallel_map(&upload, |hash| {
            target.put_chunk(&project.0, hash, bytes[hash.as_str()])
        });
        for one in stored {
            stored_bytes += one.map_err(backup_chunks::target_error)?;
        }
        backup_chunks::mark_stored(core, &project, &upload)?;
    }
    // What is unchanged since the parent is referenced as it is.
    let carried: Vec<(u64, String)> = manifest
        .iter()
        .filter(|(i, _)| changed.binary_search(i).is_err())
        .map(|(i, h)| (*i, h.clone()))
        .collect();
    for batch in carried.chunks(4096) {
        let missing = backup_chunks::reference(core, p.backup_id, &project, batch)?;
        if !missing.is_empty() {
            // The parent's chunks are stored: this is a bug if ever seen.
            return Err(ServiceError::Internal(format!(
                "the parent backup's chunk {} is not on the target",
                missing[0]
            )));
        }
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        chunk_size: CHUNK_SIZE,
        size,
        chunks: manifest.into_iter().collect(),
    };
    target
        .put_manifest(&project.0, &p.backup_id.to_string(), &manifest)
        .and_then(|()| target.sync())
        .map_err(backup_chunks::target_error)?;
    let mut tx = core.store.write()?;
    let mut backup = load(tx.as_mut(), p.backup_id)?;
    backup.object_count = manifest.chunks.len() as u64;
    backup.stored_bytes = stored_bytes;
    tx.put_backup(&backup)?;
    tx.commit()?;
    tracing::info!(
        backup = %p.backup_id,
        read_chunks = changed.len(),
        chunks = manifest.chunks.len(),
        stored_bytes,
        incremental = relative,
        "backup copied"
    );
    Ok(())
}

fn drop_references(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    tx.clear_backup_refs(p.backup_id)?;
    tx.commit()?;
    if let Some(target) = core.backup_target.get()
        && let Some(b) = core.store.read()?.backup(p.backup_id)?
    {
        target
            .delete_manifest(&b.chunk_namespace().0, &p.backup_id.to_string())
            .map_err(backup_chunks::target_error)?;
    }
    Ok(())
}

fn finish(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    let mut backup = load(tx.as_mut(), p.backup_id)?;
    if backup.status != BackupStatus::Creating {
        return Ok(());
    }
    backup.status = BackupStatus::Available;
    backup.updated_at = Some(Timestamp::now());
    give_back_snapshot(tx.as_mut(), &backup)?;
    // One point per volume: the newest backup's. A volume deleted
    // meanwhile needs none.
    let volume_gone = tx.volume(backup.volume_id)?.is_none();
    for mut other in tx.backups(Some(&backup.project_id))? {
        if other.volume_id == backup.volume_id
            && other.id != backup.id
            && other.status != BackupStatus::Creating
            && let Some(point) = other.point.take()
        {
            backend_of_data(core, tx.as_mut(), point)?.release(tx.as_mut(), point)?;
            tx.put_backup(&other)?;
        }
    }
    if volume_gone && let Some(point) = backup.point.take() {
        backend_of_data(core, tx.as_mut(), point)?.release(tx.as_mut(), point)?;
    }
    tx.put_backup(&backup)?;
    tx.commit()?;
    Ok(())
}

fn collect(core: &Core, _: &Params) -> Result<()> {
    core.collect_garbage_step()
}
