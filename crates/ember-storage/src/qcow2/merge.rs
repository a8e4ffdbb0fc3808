//! Removing one layer from a chain by streaming its data into its child.
//!
//! For chain `child -> removed -> below…`: every range that `removed` holds
//! itself (allocated data, explicit zeroes, compressed clusters) and that
//! `child` does not, is read through the child (which falls through to
//! `removed`) and written into the child. Then the child's header is pointed
//! at `below`. Work is proportional to the allocated data in `removed`;
//! unallocated ranges are skipped by walking the qcow2 mapping, never by
//! reading them.
//!
//! Crash safety: until the header is re-pointed, the child still reads
//! through `removed`, and the data copied so far is identical to what it
//! would read there, so a re-run simply skips the ranges already copied.

use super::{Layer, Qcow2Driver, header};
use crate::{Chain, Result, StorageError};
use imago::ShallowMapping;

const COPY_CHUNK: u64 = 1 << 20;

pub(crate) fn merge_into_child(
    driver: &Qcow2Driver,
    chain: &Chain,
    space: &super::space::SpaceReserve,
) -> Result<()> {
    let [child_id, removed_id, ..] = chain.images[..] else {
        return Err(StorageError::InvalidChain(
            "merge needs a child and a layer below it".into(),
        ));
    };
    {
        let child = driver.open_layers(chain, true)?;
        let removed_chain = Chain {
            images: chain.images[1..].to_vec(),
        };
        let removed = driver.open_layers(&removed_chain, false)?;
        let end = removed.size().min(child.size());
        let mut offset = 0;
        while offset < end {
            let (mapping, length) = removed
                .get_shallow_mapping(offset, end - offset)
                .map_err(|e| StorageError::io(removed_id, e))?;
            let length = length.min(end - offset);
            let own_data = match mapping {
                ShallowMapping::Raw { .. } | ShallowMapping::Special { .. } => true,
                ShallowMapping::Zero { explicit, .. } => explicit,
                ShallowMapping::Indirect { .. } => false,
                ShallowMapping::Eof { .. } => break,
                // A mapping kind this imago version adds later: copy, to be safe.
                _ => true,
            };
            if length == 0 {
                break;
            }
            if own_data {
                space.check(length)?;
                copy_where_child_unallocated(&child, offset, length)
                    .map_err(|e| StorageError::io(child_id, e))?;
            }
            offset += length;
        }
        child
            .flush()
            .and_then(|()| child.sync())
            .map_err(|e| StorageError::io(child_id, e))?;
    }
    let below = chain.images.get(2).map(|id| Qcow2Driver::file_name(*id));
    header::set_backing_name(&driver.path(child_id), below.as_deref())
        .map_err(|e| StorageError::io(child_id, e))?;
    driver.clear_dirty(child_id);
    Ok(())
}

/// The ranges `layer` holds itself, found by walking its mapping (never by
/// reading data), adjacent ranges joined.
pub(crate) fn own_ranges(layer: &Layer) -> std::io::Result<Vec<(u64, u64)>> {
    let end = layer.size();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut offset = 0;
    while offset < end {
        let (mapping, length) = layer.get_shallow_mapping(offset, end - offset)?;
        let length = length.min(end - offset);
        if length == 0 {
            break;
        }
        let own = match mapping {
            ShallowMapping::Raw { .. } | ShallowMapping::Special { .. } => true,
            ShallowMapping::Zero { explicit, .. } => explicit,
            ShallowMapping::Indirect { .. } => false,
            ShallowMapping::Eof { .. } => break,
            _ => true,
        };
        if own {
            match ranges.last_mut() {
                Some((start, len)) if *start + *len == offset => *len += length,
                _ => ranges.push((offset, length)),
            }
        }
        offset += length;
    }
    Ok(ranges)
}

fn copy_where_child_unallocated(child: &Layer, start: u64, length: u64) -> std::io::Result<()> {
    let end = start + length;
    let mut offset = start;
    let mut buf = Vec::new();
    while offset < end {
        let (mapping, run) = child.get_shallow_mapping(offset, end - offset)?;
        let run = run.min(end - offset);
        if run == 0 {
            break;
        }
        if matches!(mapping, ShallowMapping::Indirect { .. }) {
            let mut done = 0;
            while done < run {
                let n = (run - done).min(COPY_CHUNK);
                buf.resize(n as usize, 0);
                child.read(&mut buf[..], offset + done)?;
                if buf.iter().all(|b| *b == 0) {
                    child.write_zeroes(offset + done, n)?;
                } else {
                    child.write(&buf[..], offset + done)?;
                }
                done += n;
            }
        }
        offset += run;
    }
    Ok(())
}
