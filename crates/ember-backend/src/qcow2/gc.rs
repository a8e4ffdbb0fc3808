//! Garbage collection of released layers: each is deleted when no other
//! layer reads through it, merged into its child when exactly one does,
//! and kept while two or more do.
//!
//! Deleting a snapshot therefore never has to refuse because clones depend
//! on it: its layer simply stays, unowned, as long as two or more layers
//! read through it, and is merged away once only one does.

use super::Qcow2Backend;
use crate::{IoFence, Result};
use ember_model::{Image, ImageOwner};

/// Runs until no released layer can go. Idempotent and safe to run after
/// a crash at any point.
///
/// Order matters for cost, not for correctness: unowned leaves go first
/// (repeatedly, so a deleted volume's whole chain of unowned layers goes
/// without copying a byte), then one merge at a time, preferring a layer
/// whose child is owned: merging into an unowned child first would copy
/// data that the next merge copies again.
pub(super) fn collect_garbage(b: &Qcow2Backend, fence: &dyn IoFence) -> Result<()> {
    let _only_one = b.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let unowned: Vec<Image> = b
            .store
            .read()?
            .unowned_images()?
            .into_iter()
            .filter(|i| i.backend == b.name)
            .collect();
        let (mut leaves, mut merges) = (vec![], vec![]);
        for image in unowned {
            let mut children = b.store.read()?.image_children(image.id)?;
            match children.len() {
                0 => leaves.push(image),
                1 => merges.push((image, children.remove(0))),
                _ => {}
            }
        }
        let mut progressed = false;
        for image in &leaves {
            progressed |= delete_unowned_leaf(b, image)?;
        }
        if progressed {
            continue;
        }
        // Owned children first; the chains read above are only current
        // until a merge changes one, so one merge per pass.
        merges.sort_by_key(|(_, child)| child.owner == ImageOwner::None);
        for (image, child) in &merges {
            if merge_into(b, fence, image, child)? {
                progressed = true;
                break;
            }
        }
        if !progressed {
            return Ok(());
        }
    }
}

/// Deletes an unowned layer no other layer reads through. Re-checked in
/// the transaction that deletes the record; the file goes after the commit
/// (a crash in between leaves an orphan file, which start-up removes).
fn delete_unowned_leaf(b: &Qcow2Backend, image: &Image) -> Result<bool> {
    let _files = b.chain_files.write().unwrap_or_else(|p| p.into_inner());
    let mut tx = b.store.write()?;
    let still_unowned = tx
        .image(image.id)?
        .is_some_and(|i| i.owner == ImageOwner::None);
    if !still_unowned || !tx.image_children(image.id)?.is_empty() {
        return Ok(false);
    }
    tx.delete_image(image.id)?;
    tx.commit()?;
    b.driver.delete_image(image.id)?;
    tracing::debug!(image = %image.id, "deleted unowned image");
    Ok(true)
}

/// Streams `image` into its only child and unlinks it from the chain.
/// Returns false when the child is not ready (its file is still being
/// made, or may still be made again).
fn merge_into(b: &Qcow2Backend, fence: &dyn IoFence, image: &Image, child: &Image) -> Result<bool> {
    // A claimed layer may still be (re)created by its workflow: merging
    // into it now could be undone by that file being replaced. Its
    // workflow collects again once it is made.
    if !child.ready || !b.driver.image_exists(child.id) {
        return Ok(false);
    }
    match child.owner {
        // A volume's writable top must not take guest writes while data
        // from below is copied into it.
        ImageOwner::Volume(volume) => {
            let mut merged = false;
            fence.quiesced(volume, &mut || {
                merged = merge_locked(b, image, child, true)?;
                Ok(())
            })?;
            Ok(merged)
        }
        // Frozen layers take no writes at all; open readers of them keep
        // the merged file open and read identical bytes.
        _ => merge_locked(b, image, child, false),
    }
}

fn merge_locked(b: &Qcow2Backend, image: &Image, child: &Image, quiesced: bool) -> Result<bool> {
    let chain = {
        let mut tx = b.store.read()?;
        match tx.image(child.id)? {
            Some(current) if current.ready => {}
            _ => return Ok(false),
        }
        Qcow2Backend::chain_of(tx.as_mut(), child.id)?
    };
    if chain.images.get(1) != Some(&image.id) {
        return Ok(false);
    }
    // A frozen child is in other chains (its snapshot's, clones'): no one
    // may open it while data is copied into it and its header re-pointed,
    // or they could read a table the merge is still writing. A volume's
    // top is in no other chain, and it is quiesced.
    let early = (!quiesced).then(|| b.chain_files.write().unwrap_or_else(|p| p.into_inner()));
    b.driver.merge_into_child(&chain)?;
    let _files = match early {
        Some(files) => files,
        None => b.chain_files.write().unwrap_or_else(|p| p.into_inner()),
    };
    let mut tx = b.store.write()?;
    // The parent as it is now: an earlier merge in this pass may have
    // re-pointed `image` since the caller listed it.
    let below = chain.images.get(2).copied();
    if let Some(mut current) = tx.image(child.id)? {
        current.parent = below;
        tx.put_image(&current)?;
    }
    tx.delete_image(image.id)?;
    tx.commit()?;
    b.driver.delete_image(image.id)?;
    tracing::debug!(image = %image.id, child = %child.id, "merged unowned image into its child");
    Ok(true)
}
