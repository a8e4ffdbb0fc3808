//! The chunks on the backup target, counted by reference.
//!
//! A chunk is referenced (a `backup_refs` row) *before* it is uploaded,
//! in a transaction that also records it `Pending` if it is new; the
//! collector only dooms chunks nothing references, and deletes a doomed
//! chunk's object before it forgets the chunk. A backup that meets a
//! doomed chunk waits until it is forgotten and then uploads it again. So
//! an upload and a deletion of the same object never overlap, on one node
//! or many, and a crash anywhere leaves at worst an object that the next
//! collection deletes again (deletes are idempotent).

use crate::core::Core;
use crate::error::{Result, ServiceError};
use ember_backup::Target;
use ember_model::{BackupId, ProjectId};
use ember_store::ChunkState;
use std::time::Duration;

/// Applies `f` to every item on up to `available_parallelism` threads (at
/// most 8), keeping the order: hashing, compressing and checking chunks
/// use every core rather than one.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a chunk worker panicked"))
            .collect()
    })
}

/// Backup copies and restores running at once, per process: each holds up
/// to two 32 MiB batches, so this bounds their memory (256 MiB) whatever
/// the number of backups clients start; the others wait their turn.
const MAX_COPIES: usize = 4;

static COPIES: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// A turn to copy, held until dropped.
pub(crate) struct CopyTurn(());

pub(crate) fn copy_turn() -> CopyTurn {
    let (count, freed) = &COPIES;
    let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
    while *n >= MAX_COPIES {
        n = freed.wait(n).unwrap_or_else(|p| p.into_inner());
    }
    *n += 1;
    CopyTurn(())
}

impl Drop for CopyTurn {
    fn drop(&mut self) {
        let (count, freed) = &COPIES;
        *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        freed.notify_one();
    }
}

pub(crate) fn target(core: &Core) -> Result<&Target> {
    core.backup_target
        .get()
        .map(|t| t.as_ref())
        .ok_or_else(|| ServiceError::InvalidInput("No backup target is configured.".into()))
}

pub(crate) fn target_error(e: ember_backup::TargetError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// References `refs` (index, hash) for `backup`, waiting out chunks being
/// collected. Returns the hashes this backup must upload (new ones, or
/// ones still pending from an upload that may have died).
pub(crate) fn reference(
    core: &Core,
    backup: BackupId,
    project: &ProjectId,
    refs: &[(u64, String)],
) -> Result<Vec<String>> {
    let mut wait = Duration::from_millis(10);
    loop {
        let mut tx = core.store.write()?;
        let mut upload = Vec::new();
        let mut doomed = false;
        for (_, hash) in refs {
            match tx.chunk_state(project, hash)? {
                Some(ChunkState::Doomed) => {
                    doomed = true;
                    break;
                }
                Some(ChunkState::Stored) => {}
                Some(ChunkState::Pending) => upload.push(hash.clone()),
                None => {
                    tx.put_chunk_state(project, hash, ChunkState::Pending)?;
                    upload.push(hash.clone());
                }
            }
        }
        if !doomed {
            tx.put_backup_refs(backup, project, refs)?;
            tx.commit()?;
            upload.sort();
            upload.dedup();
            return Ok(upload);
        }
        drop(tx);
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Records chunks as on the target.
pub(crate) fn mark_stored(core: &Core, project: &ProjectId, hashes: &[String]) -> Result<()> {
    if hashes.is_empty() {
        return Ok(());
    }
    let mut tx = core.store.write()?;
    for hash in hashes {
        if tx.chunk_state(project, hash)? == Some(ChunkState::Pending) {
            tx.put_chunk_state(project, hash, ChunkState::Stored)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Deletes the chunks no backup references: dooms them, deletes their
/// objects, then forgets them. Returns how many it deleted.
pub(crate) fn collect(core: &Core) -> Result<usize> {
    let Some(target) = core.backup_target.get() else {
        return Ok(0);
    };
    let mut deleted = 0;
    loop {
        let doomed = {
            let mut tx = core.store.write()?;
            let found = tx.unreferenced_chunks(1000)?;
            for (project, hash, state) in &found {
                if *state != ChunkState::Doomed {
                    tx.put_chunk_state(project, hash, ChunkState::Doomed)?;
                }
            }
            tx.commit()?;
            found
        };
        if doomed.is_empty() {
            return Ok(deleted);
        }
        for (project, hash, _) in &doomed {
            target
                .delete_chunk(&project.0, hash)
                .map_err(target_error)?;
        }
        let mut tx = core.store.write()?;
        for (project, hash, _) in &doomed {
            tx.delete_chunk_state(project, hash)?;
        }
        tx.commit()?;
        deleted += doomed.len();
    }
}
