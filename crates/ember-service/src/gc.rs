//! Image garbage collection: images that no volume or snapshot owns any
//! more are removed, or merged into their only child, until none is left
//! that can go.
//!
//! Deleting a snapshot therefore never has to refuse because clones depend
//! on it: its image simply stays, unowned, as long as two or more images
//! read through it, and is merged away once only one does. The rule is the
//! same whichever workflow released the image, so it lives here once.

use crate::core::Core;
use crate::error::Result;
use ember_model::{Image, ImageOwner};

/// Runs until no unowned image can be removed. Idempotent and safe to run
/// after a crash at any point.
///
/// Order matters for cost, not for correctness: unowned leaves go first
/// (repeatedly, so a deleted volume's whole chain of unowned layers goes
/// without copying a byte), then one merge at a time, preferring an image
/// whose child is owned: merging into an unowned child first would copy
/// data that the next merge copies again.
pub fn collect_garbage(core: &Core) -> Result<()> {
    let _only_one = core.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let unowned: Vec<Image> = core.store.read()?.unowned_images()?;
        let (mut leaves, mut merges) = (vec![], vec![]);
        for image in unowned {
            let mut children = core.store.read()?.image_children(image.id)?;
            match children.len() {
                0 => leaves.push(image),
                1 => merges.push((image, children.remove(0))),
                _ => {}
            }
        }
        let mut progressed = false;
        for image in &leaves {
            progressed |= delete_unowned_leaf(core, image)?;
        }
        if progressed {
            continue;
        }
        // Owned children first; the chains read above are only current
        // until a merge changes one, so one merge per pass.
        merges.sort_by_key(|(_, child)| child.owner == ImageOwner::None);
        for (image, child) in &merges {
            if merge_into(core, image, child)? {
                progressed = true;
                break;
            }
        }
        if !progressed {
            return Ok(());
        }
    }
}

/// Deletes an unowned image no other image reads through. Re-checked in
/// the transaction that deletes the record; the file goes after the commit
/// (a crash in between leaves an orphan file, which start-up removes).
fn delete_unowned_leaf(core: &Core, image: &Image) -> Result<bool> {
    let _files = core.chain_files.write().unwrap_or_else(|p| p.into_inner());
    let mut tx = core.store.write()?;
    let still_unowned = tx
        .image(image.id)?
        .is_some_and(|i| i.owner == ImageOwner::None);
    if !still_unowned || !tx.image_children(image.id)?.is_empty() {
        return Ok(false);
    }
    tx.delete_image(image.id)?;
    tx.commit()?;
    core.driver.delete_image(image.id)?;
    tracing::debug!(image = %image.id, "deleted unowned image");
    Ok(true)
}

/// Streams `image` into its only child and unlinks it from the chain.
/// Returns false when the child is not ready (its file is still being made).
fn merge_into(core: &Core, image: &Image, child: &Image) -> Result<bool> {
    if !core.driver.image_exists(child.id) {
        return Ok(false);
    }
    // A volume's writable top must not take guest writes while data from
    // below is copied into it. Frozen images take no writes at all; open
    // readers of them keep the merged file open and read identical bytes.
    let slot = match child.owner {
        ImageOwner::Volume(volume) => Some(core.slot(volume)),
        _ => None,
    };
    let guard = slot.as_deref().map(|s| core.quiesce(s)).transpose()?;
    let chain = {
        let mut tx = core.store.read()?;
        // A volume's image that is not activated yet may still be
        // (re)created by its workflow: merging into it now could be undone
        // by that file being replaced. Its workflow collects afterwards.
        if let ImageOwner::Volume(volume) = child.owner
            && tx.volume(volume)?.is_none_or(|v| v.image != Some(child.id))
        {
            return Ok(false);
        }
        Core::chain_of(tx.as_mut(), child.id)?
    };
    if chain.images.get(1) != Some(&image.id) {
        return Ok(false);
    }
    // A frozen child is in other chains (its snapshot's, clones'): no one
    // may open it while data is copied into it and its header re-pointed,
    // or they could read a table the merge is still writing. A volume's
    // top is in no other chain, and its slot is quiesced.
    let early =
        (slot.is_none()).then(|| core.chain_files.write().unwrap_or_else(|p| p.into_inner()));
    core.driver.merge_into_child(&chain)?;
    let files = match early {
        Some(files) => files,
        None => core.chain_files.write().unwrap_or_else(|p| p.into_inner()),
    };
    let mut tx = core.store.write()?;
    // The parent as it is now: an earlier merge in this pass may have
    // re-pointed `image` since the caller listed it.
    let below = chain.images.get(2).copied();
    if let Some(mut current) = tx.image(child.id)? {
        current.parent = below;
        tx.put_image(&current)?;
    }
    tx.delete_image(image.id)?;
    tx.commit()?;
    drop(guard);
    core.driver.delete_image(image.id)?;
    drop(files);
    tracing::debug!(image = %image.id, child = %child.id, "merged unowned image into its child");
    Ok(true)
}

/// Deletes image files the metadata store does not know: leftovers of a
/// crash between a metadata commit and a file removal. Runs at start-up,
/// before any workflow resumes.
pub fn sweep_orphan_files(core: &Core) -> Result<usize> {
    let known: std::collections::HashSet<_> = core
        .store
        .read()?
        .all_images()?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let mut removed = 0;
    for image in core.driver.list_images()? {
        if !known.contains(&image) {
            tracing::info!(image = %image, "removing orphan image file");
            core.driver.delete_image(image)?;
            removed += 1;
        }
    }
    Ok(removed)
}
