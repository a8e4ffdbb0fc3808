//! Writes an empty qcow2 v3 image (optionally an overlay over a backing
//! file) directly, in three small `pwrite`s.
//!
//! Every snapshot creates one empty overlay, so its cost is the snapshot's.
//! imago's builder writes the refcount table, the refcount block and the L1
//! table as whole 64 KiB clusters: 192 KiB copied into the page cache and
//! flushed to disk per snapshot, which was about a third of the server's
//! CPU under load. An empty image needs a few hundred bytes of non-zero
//! metadata; the rest of its clusters are holes that read as zeros.
//!
//! Layout (cluster = 64 KiB, the layout imago's builder produces too):
//! cluster 0 the header, its extensions and the backing file name;
//! cluster 1 the refcount table (one entry); cluster 2 the refcount block
//! (16-bit counts of clusters 0.. in use); clusters 3.. the L1 table, all
//! zero (unallocated), sized like imago's: whole clusters of entries.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub(crate) const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
const MAGIC: u32 = 0x5146_49fb;
const HEADER_LENGTH: u32 = 104;
/// 16-bit refcounts, as qemu-img and imago default to.
const REFCOUNT_ORDER: u32 = 4;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_END: u32 = 0;
const REFTABLE_CLUSTER: u64 = 1;
const REFBLOCK_CLUSTER: u64 = 2;
const L1_CLUSTER: u64 = 3;
/// qemu refuses longer backing file names.
const MAX_BACKING_NAME: usize = 1023;
/// qemu refuses L1 tables over 32 MiB.
const MAX_L1_CLUSTERS: u64 = (32 << 20) / CLUSTER;

/// Bytes of guest data one L1 entry maps (one L2 table of 8-byte entries).
const L1_ENTRY_SPAN: u64 = CLUSTER * (CLUSTER / 8);
const L1_ENTRIES_PER_CLUSTER: u64 = CLUSTER / 8;

/// Writes an empty image of `size` guest bytes into `file` (which must be
/// empty), reading through to `backing` (a file name next to it, qcow2).
pub(crate) fn write_empty(file: &File, size: u64, backing: Option<&str>) -> io::Result<()> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let l1_clusters = size
        .div_ceil(L1_ENTRY_SPAN)
        .div_ceil(L1_ENTRIES_PER_CLUSTER)
        .max(1);
    if l1_clusters > MAX_L1_CLUSTERS {
        return Err(invalid(format!("image size {size} is too large")));
    }
    let l1_entries = (l1_clusters * L1_ENTRIES_PER_CLUSTER) as u32;
    // Fits one refcount block, which counts CLUSTER * 8 / 16 clusters.
    let clusters_in_use = L1_CLUSTER + l1_clusters;

    let mut header = Vec::with_capacity(512);
    let put32 = |h: &mut Vec<u8>, v: u32| h.extend_from_slice(&v.to_be_bytes());
    let put64 = |h: &mut Vec<u8>, v: u64| h.extend_from_slice(&v.to_be_bytes());
    put32(&mut header, MAGIC);
    put32(&mut header, 3); // version
    put64(&mut header, 0); // backing_file_offset, patched below
    put32(&mut header, 0); // backing_file_size, patched below
    put32(&mut header, CLUSTER_BITS);
    put64(&mut header, size);
    put32(&mut header, 0); // crypt_method
    put32(&mut header, l1_entries);
    put64(&mut header, L1_CLUSTER * CLUSTER);
    put64(&mut header, REFTABLE_CLUSTER * CLUSTER);
    put32(&mut header, 1); // refcount_table_clusters
    put32(&mut header, 0); // nb_snapshots
    put64(&mut header, 0); // snapshots_offset
    put64(&mut header, 0); // incompatible_features
    put64(&mut header, 0); // compatible_features
    put64(&mut header, 0); // autoclear_features
    put32(&mut header, REFCOUNT_ORDER);
    put32(&mut header, HEADER_LENGTH);
    debug_assert_eq!(header.len(), HEADER_LENGTH as usize);

    if let Some(name) = backing {
        if name.is_empty() || name.len() > MAX_BACKING_NAME {
            return Err(invalid(format!("backing file name {name:?}")));
        }
        // Extension: the backing file's format, padded to 8 bytes.
        put32(&mut header, EXT_BACKING_FORMAT);
        put32(&mut header, 5);
        header.extend_from_slice(b"qcow2\0\0\0");
    }
    put32(&mut header, EXT_END);
    put32(&mut header, 0);
    if let Some(name) = backing {
        let offset = header.len() as u64;
        header[8..16].copy_from_slice(&offset.to_be_bytes());
        header[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
        header.extend_from_slice(name.as_bytes());
    }

    let mut refblock = Vec::with_capacity(clusters_in_use as usize * 2);
    for _ in 0..clusters_in_use {
        refblock.extend_from_slice(&1u16.to_be_bytes());
    }

    // The length first: every table lies inside the file even if a crash
    // interrupts the writes below (the caller publishes only after fsync).
    file.set_len(clusters_in_use * CLUSTER)?;
    file.write_all_at(&refblock, REFBLOCK_CLUSTER * CLUSTER)?;
    file.write_all_at(
        &(REFBLOCK_CLUSTER * CLUSTER).to_be_bytes(),
        REFTABLE_CLUSTER * CLUSTER,
    )?;
    file.write_all_at(&header, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const GIB: u64 = 1 << 30;

    fn qemu_img(args: &[&str]) -> String {
        let out = Command::new("qemu-img")
            .args(args)
            .output()
            .expect("qemu-img is installed");
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn make(dir: &std::path::Path, name: &str, size: u64, backing: Option<&str>) -> String {
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        write_empty(&file, size, backing).unwrap();
        path.to_str().unwrap().to_string()
    }

    #[test]
    fn qemu_reads_the_image_as_imago_would_have_written_it() {
        let dir = tempfile::tempdir().unwrap();
        for size in [GIB, 1 << 40, 64 << 40, (1 << 50) + 12345 * 512] {
            let base = make(dir.path(), "base.qcow2", size, None);
            let top = make(dir.path(), "top.qcow2", size, Some("base.qcow2"));
            for path in [&base, &top] {
                qemu_img(&["check", path]);
            }
            let info: serde_json::Value =
                serde_json::from_str(&qemu_img(&["info", "--output=json", &top])).unwrap();
            assert_eq!(info["virtual-size"], size);
            assert_eq!(info["cluster-size"], 65536);
            assert_eq!(info["backing-filename"], "base.qcow2");
            assert_eq!(info["backing-filename-format"], "qcow2");
            assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
            assert_eq!(info["format-specific"]["data"]["refcount-bits"], 16);
            assert_eq!(info["dirty-flag"], false);
            crate::qcow2::header::check_tables(std::path::Path::new(&top)).unwrap();
            // Little is on disk: the holes are the L1 and the table slack.
            let allocated = std::fs::metadata(&top).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert!(
                allocated.blocks() * 512 <= 3 * 4096,
                "{} bytes",
                allocated.blocks() * 512
            );
        }
    }

    #[test]
    fn qemu_writes_into_the_overlay_and_reads_through_to_the_backing() {
        let dir = tempfile::tempdir().unwrap();
        let base = make(dir.path(), "base.qcow2", GIB, None);
        let top = make(dir.path(), "top.qcow2", GIB, Some("base.qcow2"));
        let io = |path: &str, cmd: &str| {
            let out = Command::new("qemu-io")
                .args(["-f", "qcow2", "-c", cmd, path])
                .output()
                .expect("qemu-io is installed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success() && !text.contains("fail"),
                "{cmd}: {text}"
            );
        };
        io(&base, "write -P 0xa1 0 64k");
        io(&base, "write -P 0xa2 900M 4k");
        io(&top, "write -P 0xb1 4k 4k");
        io(&top, "read -P 0xa1 0 4k");
        io(&top, "read -P 0xb1 4k 4k");
        io(&top, "read -P 0xa1 8k 56k");
        io(&top, "read -P 0xa2 900M 4k");
        io(&top, "read -P 0 1000M 64k");
        io(&base, "read -P 0xa1 4k 4k");
        for path in [&base, &top] {
            qemu_img(&["check", path]);
        }
    }

    #[test]
    fn refuses_what_qemu_could_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("x")).unwrap();
        let long = "n".repeat(MAX_BACKING_NAME + 1);
        assert!(write_empty(&file, GIB, Some(&long)).is_err());
        assert!(write_empty(&file, u64::MAX, None).is_err());
    }
}
