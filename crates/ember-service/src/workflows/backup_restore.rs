//! Backup restore: write a backup's chunks into a volume.
//!
//! Steps:
//! 1. (Target+Storage) `write`: every chunk of the manifest is read from
//!    the target, checked against its SHA-256 and written at its offset;
//!    into a volume that held data before, the chunks the backup has no
//!    data for are zeroed. Re-running writes the same bytes again.
//! 2. (DB) `finish`: the volume and the backup are available.
//!
//! If the restore fails, the volume is `error_restoring` (its data is
//! part old, part restored) and the backup `available`, as in Cinder.

use super::backup_chunks;
use crate::core::Core;
use crate::engine::{Step, Workflow, nothing};
use crate::error::{Result, ServiceError};
use ember_backup::CHUNK_SIZE;
use ember_model::{BackupId, BackupStatus, Timestamp, VolumeId, VolumeStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub backup_id: BackupId,
    pub volume_id: VolumeId,
    /// The volume was made for this restore (empty: no zeroing needed).
    pub fresh_volume: bool,
}

pub struct BackupRestore;

impl Workflow for BackupRestore {
    const KIND: &'static str = "backup-restore";
    type Params = Params;

    fn steps() -> Vec<Step<Params>> {
        vec![
            Step {
                name: "write",
                run: write,
                undo: nothing,
            },
            Step {
                name: "finish",
                run: finish,
                undo: nothing,
            },
        ]
    }

    fn on_failed(core: &Core, p: &Params, reason: &str) -> Result<()> {
        let mut tx = core.store.write()?;
        let now = Some(Timestamp::now());
        if let Some(mut v) = tx.volume(p.volume_id)? {
            v.status = VolumeStatus::ErrorRestoring;
            v.error_reason = Some(super::reason(reason));
            v.updated_at = now;
            tx.put_volume(&v)?;
        }
        if let Some(mut b) = tx.backup(p.backup_id)? {
            b.status = BackupStatus::Available;
            b.restore_volume_id = None;
            b.updated_at = now;
            tx.put_backup(&b)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn write(core: &Core, p: &Params) -> Result<()> {
    let target = backup_chunks::target(core)?;
    let (backup, refs) = {
        let mut tx = core.store.read()?;
        let b = tx.backup(p.backup_id)?.ok_or_else(|| {
            ServiceError::NotFound(format!("Backup {} could not be found.", p.backup_id))
        })?;
        let refs = tx.backup_refs(p.backup_id)?;
        (b, refs)
    };
    let size = crate::volumes::size_bytes(backup.size_gib)?;
    let namespace = &backup.chunk_namespace().0;
    let _turn = backup_chunks::copy_turn();
    // Fetched, decompressed and checked on every core, 64 at a time, one
    // batch ahead of the writing (which goes in order through the
    // volume's handle): at most two batches (64 MiB) in memory.
    std::thread::scope(|scope| -> Result<()> {
        let (ahead, fetched) = std::sync::mpsc::sync_channel(1);
        let refs = &refs;
        scope.spawn(move || {
            for batch in refs.chunks(64) {
                let chunks = super::backup_chunks::parallel_map(batch, |(_, hash)| {
                    target.get_chunk(namespace, hash)
                });
                if ahead.send(chunks).is_err() {
                    return; // the writer stopped
                }
            }
        });
        let mut next = 0u64; // the first byte not yet written
        for (batch, chunks) in refs.chunks(64).zip(fetched.iter()) {
            for ((index, _), data) in batch.iter().zip(chunks) {
                let data = data.map_err(backup_chunks::target_error)?;
                let offset = index
                    .checked_mul(CHUNK_SIZE)
                    .filter(|o| *o < size)
                    .ok_or_else(|| {
                        ServiceError::Internal(format!("chunk {index} lies past the backup"))
                    })?;
                if !p.fresh_volume && next < offset {
                    core.with_io(p.volume_id, |io| Ok(io.write_zeroes(next, offset - next)?))?;
                }
                core.with_io(p.volume_id, |io| Ok(io.write_at(&data, offset)?))?;
                next = offset + data.len() as u64;
            }
        }
        if !p.fresh_volume && next < size {
            core.with_io(p.volume_id, |io| Ok(io.write_zeroes(next, size - next)?))?;
        }
        Ok(())
    })?;
    core.with_io(p.volume_id, |io| Ok(io.flush()?))
}

fn finish(core: &Core, p: &Params) -> Result<()> {
    let mut tx = core.store.write()?;
    let now = Some(Timestamp::now());
    let backup = tx.backup(p.backup_id)?;
    if let Some(mut v) = tx.volume(p.volume_id)?
        && v.status == VolumeStatus::RestoringBackup
    {
        v.status = VolumeStatus::Available;
        if let Some(b) = &backup {
            for (k, value) in &b.volume_metadata {
                v.metadata.insert(k.clone(), value.clone());
            }
        }
        v.updated_at = now;
        tx.put_volume(&v)?;
    }
    if let Some(mut b) = backup
        && b.status == BackupStatus::Restoring
    {
        b.status = BackupStatus::Available;
        b.restore_volume_id = None;
        b.updated_at = now;
        tx.put_backup(&b)?;
    }
    tx.commit()?;
    Ok(())
}
