//! Unmanaged data, kept for a later manage (Cinder's `os-unmanage`,
//! `os-volume-manage`, `os-snapshot-manage`). An unmanaged volume's or
//! snapshot's data stays on its backend, owned by no one but out of the
//! collector's reach, under a label the operator manages it back by
//! (`volume-<id>`, `snapshot-<id>`: what Tempest's `manage_volume_ref` and
//! `manage_snapshot_ref` default to). The rows are the backends' own, so
//! the same rules serve every backend.

use crate::{BackendError, DataRef, Result};
use ember_model::{Image, ImageOwner, SnapshotId, VolumeId};
use ember_store::Tx;

/// Something a backend holds that could become a volume or a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Manageable {
    /// The `source-name` that manages it.
    pub reference: String,
    pub size_bytes: u64,
    pub safe: bool,
    pub reason_not_safe: Option<String>,
    /// A snapshot's volume, as a `source-name`, when known.
    pub source: Option<String>,
}

/// What `claim_existing` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// Data the backend already has (unmanaged earlier): the volume's now.
    Ready { data: DataRef, size_bytes: u64 },
    /// A foreign object, claimed: `make` adopts it.
    ToMake { size_bytes: u64 },
}

/// The label of unmanaged data: its reference, and for a snapshot its
/// volume's (space-separated; neither contains spaces).
pub fn label(reference: &str, source: Option<&str>) -> String {
    match source {
        Some(source) => format!("{reference} {source}"),
        None => reference.to_string(),
    }
}

fn split(label: &str) -> (&str, Option<&str>) {
    match label.split_once(' ') {
        Some((reference, source)) => (reference, Some(source)),
        None => (label, None),
    }
}

pub(crate) fn unmanage(tx: &mut dyn Tx, backend: &str, data: DataRef, label: &str) -> Result<()> {
    let mut row = tx
        .image(data)?
        .filter(|r| r.backend == backend)
        .ok_or_else(|| {
            BackendError::Internal(format!("data {data} is not on backend {backend}"))
        })?;
    row.owner = ImageOwner::Unmanaged;
    row.label = Some(label.to_string());
    tx.put_image(&row)?;
    Ok(())
}

/// Rows of `backend` unmanaged as volumes (`volume-…`) or snapshots.
pub(crate) fn unmanaged(
    tx: &mut dyn Tx,
    backend: &str,
    snapshots: bool,
) -> Result<Vec<Manageable>> {
    Ok(tx
        .all_images()?
        .into_iter()
        .filter(|r| r.backend == backend && r.owner == ImageOwner::Unmanaged)
        .filter_map(|r| {
            let (reference, source) = split(r.label.as_deref()?);
            (reference.starts_with("snapshot-") == snapshots).then(|| Manageable {
                reference: reference.to_string(),
                size_bytes: r.size_bytes,
                safe: true,
                reason_not_safe: None,
                source: source.map(str::to_string),
            })
        })
        .collect())
}

/// The unmanaged row `reference` names on `backend`.
pub(crate) fn find(tx: &mut dyn Tx, backend: &str, reference: &str) -> Result<Option<Image>> {
    Ok(tx.all_images()?.into_iter().find(|r| {
        r.backend == backend
            && r.owner == ImageOwner::Unmanaged
            && r.label.as_deref().map(|l| split(l).0) == Some(reference)
    }))
}

/// Gives unmanaged data back to a volume.
pub(crate) fn reclaim_volume(mut row: Image, tx: &mut dyn Tx, volume: VolumeId) -> Result<Claimed> {
    if row
        .label
        .as_deref()
        .is_some_and(|l| l.starts_with("snapshot-"))
    {
        return Err(BackendError::Unsupported(format!(
            "{} is a snapshot's data; manage it as a snapshot.",
            split(row.label.as_deref().unwrap_or_default()).0
        )));
    }
    row.owner = ImageOwner::Volume(volume);
    row.label = None;
    tx.put_image(&row)?;
    Ok(Claimed::Ready {
        data: row.id,
        size_bytes: row.size_bytes,
    })
}

/// Gives unmanaged data back to a snapshot.
pub(crate) fn reclaim_snapshot(
    mut row: Image,
    tx: &mut dyn Tx,
    snapshot: SnapshotId,
) -> Result<(DataRef, u64)> {
    row.owner = ImageOwner::Snapshot(snapshot);
    row.label = None;
    tx.put_image(&row)?;
    Ok((row.id, row.size_bytes))
}
