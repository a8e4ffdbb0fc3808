//! Ember's changed-blocks API, in the style of the EBS direct APIs: which
//! fixed-size blocks of a snapshot hold data, which differ between two
//! snapshots of one volume's lineage, and one block's bytes with their
//! SHA-256, so that a backup tool can copy exactly what changed.
//!
//! Blocks are 512 KiB, as EBS's and as Ember's backup chunks. What holds
//! data and what changed comes from the backend's own knowledge
//! (`VolumeBackend::changed_ranges`: qcow2 layer allocation, RBD's
//! `diff_iterate`), never from reading data; a backend that cannot tell
//! lists every block.

use crate::*;
use ember_backend::Changed;
use ember_model::*;

/// The block size of the API.
pub const BLOCK_SIZE: u64 = ember_backup::CHUNK_SIZE;
/// Most blocks one page lists (EBS's `MaxResults` bound).
pub const MAX_RESULTS: usize = 10_000;

/// One page of block indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPage {
    pub indices: Vec<u64>,
    /// The index to ask from for the next page, if there is one.
    pub next: Option<u64>,
    pub volume_size_gib: u64,
}

/// The block indices `ranges` touch (all blocks when None), ascending,
/// from block `from`, produced lazily: a page costs its own length, never
/// the volume's size.
fn indices(
    ranges: Option<Vec<(u64, u64)>>,
    size: u64,
    from: u64,
) -> Box<dyn Iterator<Item = u64> + Send> {
    let blocks = size.div_ceil(BLOCK_SIZE);
    match ranges {
        None => Box::new(from.min(blocks)..blocks),
        Some(ranges) => {
            let mut last: Option<u64> = None;
            Box::new(
                ranges
                    .into_iter()
                    .filter(move |&(start, len)| len > 0 && start < size)
                    .flat_map(move |(start, len)| {
                        let end = start.saturating_add(len).min(size).div_ceil(BLOCK_SIZE);
                        (start / BLOCK_SIZE).max(from)..end
                    })
                    .filter(move |&i| {
                        // Ranges may share a block: each block once.
                        let new = last.is_none_or(|l| i > l);
                        if new {
                            last = Some(i);
                        }
                        new
                    }),
            )
        }
    }
}

fn page(mut all: impl Iterator<Item = u64>, max: usize, volume_size_gib: u64) -> BlockPage {
    let indices: Vec<u64> = all.by_ref().take(max).collect();
    BlockPage {
        next: all.next(),
        indices,
        volume_size_gib,
    }
}

impl Service {
    /// The blocks of `snapshot` that may hold data, from block `from`.
    pub async fn snapshot_blocks(
        &self,
        caller: &Caller,
        snapshot: SnapshotId,
        from: u64,
        max: usize,
    ) -> Result<BlockPage> {
        let s = self.snapshot(caller, snapshot).await?;
        let data = s.image.ok_or_else(|| {
            ServiceError::InvalidSnapshot(format!("Snapshot {snapshot} has no data yet."))
        })?;
        let core = self.core.clone();
        let size = crate::volumes::size_bytes(s.size_gib)?;
        self.run_blocking(move || {
            let backend = core
                .backend_of_snapshot(core.store.read()?.as_mut(), &s)?
                .clone();
            let ranges = match backend.changed_ranges(data, None)? {
                Changed::All(ranges) | Changed::Since(ranges) => Some(ranges),
                Changed::Unknown => None,
            };
            Ok(page(indices(ranges, size, from), max, s.size_gib))
        })
        .await
    }

    /// The blocks that may differ between `first` and the later `second`,
    /// two snapshots of one volume's lineage, from block `from`.
    pub async fn changed_blocks(
        &self,
        caller: &Caller,
        first: SnapshotId,
        second: SnapshotId,
        from: u64,
        max: usize,
    ) -> Result<BlockPage> {
        let a = self.snapshot(caller, first).await?;
        let b = self.snapshot(caller, second).await?;
        let (Some(base), Some(data)) = (a.image, b.image) else {
            return Err(ServiceError::InvalidSnapshot(
                "Both snapshots must have their data.".into(),
            ));
        };
        let core = self.core.clone();
        let size = crate::volumes::size_bytes(b.size_gib)?;
        self.run_blocking(move || {
            let backend = core
                .backend_of_snapshot(core.store.read()?.as_mut(), &b)?
                .clone();
            let ranges = match backend.changed_ranges(data, Some(base))? {
                Changed::Since(ranges) => Some(ranges),
                Changed::All(_) => {
                    return Err(ServiceError::InvalidInput(format!(
                        "Snapshot {first} is not an earlier point of snapshot {second}'s volume."
                    )));
                }
                Changed::Unknown => None,
            };
            Ok(page(indices(ranges, size, from), max, b.size_gib))
        })
        .await
    }

    /// One block of a snapshot, and the hex SHA-256 of its bytes.
    pub async fn snapshot_block(
        &self,
        caller: &Caller,
        snapshot: SnapshotId,
        index: u64,
    ) -> Result<(DataBuffer, String)> {
        let s = self.snapshot(caller, snapshot).await?;
        let size = crate::volumes::size_bytes(s.size_gib)?;
        let offset = index
            .checked_mul(BLOCK_SIZE)
            .filter(|o| *o < size)
            .ok_or_else(|| {
                ServiceError::InvalidInput(format!(
                    "Block {index} lies past the end of the snapshot."
                ))
            })?;
        let data = self
            .read_snapshot(caller, snapshot, offset, BLOCK_SIZE.min(size - offset))
            .await?;
        let hash = ember_backup::chunk_hash(&data);
        Ok((data, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_block_indices_once_each() {
        let b = BLOCK_SIZE;
        let ranges = vec![(0, 1), (10, 20), (b - 1, 2), (5 * b, b), (9 * b + 7, 3 * b)];
        let all: Vec<u64> = indices(Some(ranges.clone()), 10 * b, 0).collect();
        assert_eq!(all, vec![0, 1, 5, 9]);
        let p = page(indices(Some(ranges), 10 * b, 1), 2, 5);
        assert_eq!((p.indices, p.next), (vec![1, 5], Some(9)));
        // Unknown: every block, lazily, even for the largest volume.
        let huge = u64::MAX - BLOCK_SIZE;
        let p = page(indices(None, huge, 7), 3, 1);
        assert_eq!((p.indices, p.next), (vec![7, 8, 9], Some(10)));
    }
}
