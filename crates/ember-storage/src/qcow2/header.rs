//! In-place edit of a qcow2 header's backing file reference.
//!
//! Header layout (big-endian, qcow2 spec): `backing_file_offset: u64` at
//! byte 8 and `backing_file_size: u32` at byte 16; the name itself lives in
//! the header cluster at that offset. Ember names every image `<uuid>.qcow2`,
//! so a new backing name always has the old one's length and is written over
//! it with one small `pwrite`. The metadata store, not this header, is what
//! Ember opens chains from, and a merge step re-run after a crash rewrites
//! the name again, so a torn write here cannot survive recovery. Removing
//! the backing entirely zeroes offset and size in one 12-byte write.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const BACKING_OFFSET_AT: u64 = 8;
const QCOW2_MAGIC: u32 = 0x5146_49fb;

pub(crate) fn set_backing_name(path: &Path, new_name: Option<&str>) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut header = [0u8; 20];
    file.read_exact_at(&mut header, 0)?;
    let magic = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
    if magic != QCOW2_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a qcow2 image",
        ));
    }
    let offset = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
    let size = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes"));
    match new_name {
        None => {
            if offset != 0 || size != 0 {
                file.write_all_at(&[0u8; 12], BACKING_OFFSET_AT)?;
            }
        }
        Some(name) => {
            if offset == 0 || size as usize != name.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "cannot re-point backing of {}: name length changes",
                        path.display()
                    ),
                ));
            }
            let mut current = vec![0u8; size as usize];
            file.read_exact_at(&mut current, offset)?;
            if current != name.as_bytes() {
                file.write_all_at(name.as_bytes(), offset)?;
            }
        }
    }
    file.sync_all()
}

/// Refuses an image whose metadata tables point outside the file.
///
/// imago 0.2.6 follows a refcount-table entry that points past the end of
/// the file into unbounded recursion when it allocates (a stack overflow
/// aborts the whole process; found by `tests/hostile_images.rs`). Ember
/// writes its images itself, so such a table means corruption; checking
/// the header, the refcount table and the L1 table (a few KiB read) before
/// opening turns it into an I/O error on that one image.
pub(crate) fn check_tables(path: &Path) -> io::Result<()> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    let file = OpenOptions::new().read(true).open(path)?;
    let len = file.metadata()?.len();
    let mut h = [0u8; 72];
    file.read_exact_at(&mut h, 0)?;
    let u32_at = |o: usize| u32::from_be_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_be_bytes(h[o..o + 8].try_into().expect("8 bytes"));
    if u32_at(0) != QCOW2_MAGIC {
        return Err(bad("not a qcow2 image"));
    }
    let cluster_bits = u32_at(20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(bad("cluster size out of range"));
    }
    let cluster = 1u64 << cluster_bits;
    // Offsets in table entries: bits 9..=55.
    let offset_of = |entry: u64| entry & 0x00ff_ffff_ffff_fe00;
    let within = |offset: u64, size: u64| offset.checked_add(size).is_some_and(|end| end <= len);
    let table = |offset: u64, bytes: u64, what: &str| -> io::Result<Vec<u64>> {
        if bytes > 64 << 20 || !within(offset, bytes) {
            return Err(bad(&format!("{what} table outside the file")));
        }
        let mut raw = vec![0u8; bytes as usize];
        file.read_exact_at(&mut raw, offset)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect())
    };
    let refcount_table = table(u64_at(48), u32_at(56) as u64 * cluster, "refcount")?;
    // Every cluster of the file lies in a region some refcount block
    // describes: the header at least is in use. Without that block, imago
    // 0.2.6 allocates the new block into the very region it is missing for,
    // again and again (unbounded recursion, found by the `qcow2_image`
    // fuzz target).
    let refcount_order = if u32_at(4) >= 3 {
        let mut order = [0u8; 4];
        file.read_exact_at(&mut order, 96)?;
        u32::from_be_bytes(order)
    } else {
        4
    };
    if refcount_order > 6 {
        return Err(bad("refcount width out of range"));
    }
    let per_block = (cluster * 8) >> refcount_order;
    let regions_in_use = len.div_ceil(cluster).div_ceil(per_block) as usize;
    if refcount_table.len() < regions_in_use
        || refcount_table[..regions_in_use]
            .iter()
            .any(|&e| offset_of(e) == 0)
    {
        return Err(bad("clusters in use have no refcount block"));
    }
    for entry in refcount_table {
        let block = offset_of(entry);
        if block != 0 && (block % cluster != 0 || !within(block, cluster)) {
            return Err(bad("a refcount block lies outside the file"));
        }
    }
    let l1 = table(u64_at(40), u32_at(36) as u64 * 8, "L1")?;
    for entry in l1 {
        let l2 = offset_of(entry);
        if l2 != 0 && (l2 % cluster != 0 || !within(l2, cluster)) {
            return Err(bad("an L2 table lies outside the file"));
        }
    }
    Ok(())
}
