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
