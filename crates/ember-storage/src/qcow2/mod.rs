//! The qcow2-file driver: one qcow2 file per image, `<uuid>.qcow2`, in one
//! flat directory, so every backing reference is a bare file name that
//! `qemu-img info --backing-chain` resolves next to the image.
//!
//! A snapshot freezes the volume's top file and puts a fresh overlay above
//! it (the external-overlay model of Nova's assisted snapshots and Cinder's
//! NFS driver): O(1) in the volume size. Deleting a layer streams only that
//! layer's allocated clusters into its child (`merge`), then re-points the
//! child's header (`header`).
//!
//! Chains are opened explicitly from what the metadata store says, never
//! from the backing names written in headers, so a tampered or stale header
//! can never make Ember open a file outside its directory.
//!
//! Crash safety: imago 0.2.6 writes a new L1 entry before the refcount of
//! the L2 table it points to reaches the disk (`ensure_l2`), so a process
//! killed mid-write can leave a referenced cluster with refcount 0, which a
//! later allocation would reuse. Until imago orders those writes, every
//! image opened writable carries a `<uuid>.qcow2.dirty` marker, removed
//! after a clean flush and close; at start-up, marked images are repaired
//! with `qemu-img check -r all` before anything else touches them.

mod empty;
mod header;
mod merge;
mod space;

use crate::{BlockIo, Chain, ImageId, Result, StorageDriver, StorageError};
use imago::file::File;
use imago::format::PreallocateMode;
use imago::qcow2::Qcow2;
use imago::{DenyImplicitOpenGate, FormatAccess, FormatDriverBuilder, Storage, StorageOpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One layer as imago sees it; layers wrap each other through `Arc`s.
pub(crate) type Layer = Arc<FormatAccess<File>>;
type Qcow2Layer = Qcow2<File, Layer>;

const SUFFIX: &str = ".qcow2";

pub struct Qcow2Driver {
    dir: PathBuf,
    /// The directory, open once for its fsyncs.
    dir_handle: std::fs::File,
    dir_sync: DirSync,
    /// Free space left to the metadata store (see `space`).
    space: Arc<space::SpaceReserve>,
    /// Images whose cached metadata may not have reached the file (a
    /// flush failed, e.g. for lack of space, and the handle was closed
    /// anyway): repaired before anyone opens them again.
    suspect: Arc<std::sync::Mutex<std::collections::HashSet<ImageId>>>,
}

/// Coalesces directory fsyncs: a caller that needs its rename durable
/// waits for one fsync that started after the rename; concurrent callers
/// share it.
#[derive(Default)]
struct DirSync {
    /// Renames asking to be made durable, numbered.
    requested: std::sync::atomic::AtomicU64,
    /// The highest number an fsync has covered.
    synced: std::sync::Mutex<u64>,
}

impl Qcow2Driver {
    /// Uses (and creates) `dir` for image files.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(dir.display(), e))?;
        let dir_handle =
            std::fs::File::open(&dir).map_err(|e| StorageError::io(dir.display(), e))?;
        let space = Arc::new(space::SpaceReserve::for_dir(&dir)?);
        Ok(Qcow2Driver {
            dir,
            dir_handle,
            dir_sync: DirSync::default(),
            space,
            suspect: Arc::default(),
        })
    }

    /// Sets the free space image writes leave to the metadata store (0:
    /// none; the default is 1/64 of the file system, 4 MiB to 256 MiB).
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.space = Arc::new(self.space.with_bytes(bytes));
        self
    }

    /// The free space image writes leave to the metadata store, in bytes.
    pub fn reserve_bytes(&self) -> u64 {
        self.space.bytes()
    }

    /// Repairs `image` if its metadata is in doubt: left open for writing
    /// by a process that died, or a flush that failed. Openers wait for
    /// it; leaks alone are safe to open with (the dirty marker stays so
    /// that the next start repairs them).
    fn repair_if_suspect(&self, image: ImageId) -> Result<Repaired> {
        let mut suspect = self.suspect.lock().unwrap_or_else(|p| p.into_inner());
        if !suspect.contains(&image) {
            return Ok(Repaired::Clean);
        }
        if !self.path(image).exists() {
            // Deleted meanwhile (an orphan swept, a workflow finished).
            suspect.remove(&image);
            return Ok(Repaired::Clean);
        }
        let repaired = repair(&self.path(image))?;
        suspect.remove(&image);
        Ok(repaired)
    }

    fn mark_suspect(&self, image: ImageId) {
        self.suspect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(image);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file_name(image: ImageId) -> String {
        format!("{image}{SUFFIX}")
    }

    pub fn path(&self, image: ImageId) -> PathBuf {
        self.dir.join(Self::file_name(image))
    }

    fn marker(&self, image: ImageId) -> PathBuf {
        self.dir.join(format!("{image}{SUFFIX}.dirty"))
    }

    /// Records, durably, that `image` is about to be written.
    fn mark_dirty(&self, image: ImageId) -> Result<()> {
        let marker = self.marker(image);
        if !marker.exists() {
            std::fs::File::create(&marker).map_err(|e| StorageError::io(image, e))?;
            self.sync_dir()?;
        }
        Ok(())
    }

    fn clear_dirty(&self, image: ImageId) {
        let _ = std::fs::remove_file(self.marker(image));
    }

    /// `sync_dir` for a change already made, sharing the fsync with any
    /// concurrent caller.
    fn sync_dir_shared(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let mine = self.dir_sync.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self
            .dir_sync
            .synced
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *synced >= mine {
            return Ok(());
        }
        // Every request numbered up to `covers` made its change before
        // taking its number, so this fsync covers it.
        let covers = self.dir_sync.requested.load(Ordering::SeqCst);
        self.sync_dir()?;
        *synced = covers;
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        self.dir_handle
            .sync_all()
            .map_err(|e| StorageError::io(self.dir.display(), e))
    }

    /// Opens `chain` bottom-up, each layer explicitly given its backing.
    pub(crate) fn open_layers(&self, chain: &Chain, writable: bool) -> Result<Layer> {
        if chain.images.is_empty() {
            return Err(StorageError::InvalidChain("empty chain".into()));
        }
        if writable {
            self.mark_dirty(chain.top())?;
        }
        let opened = self.open_each(chain, writable);
        if writable && opened.is_err() {
            // Nothing was written: the image is as clean as before.
            self.clear_dirty(chain.top());
        }
        opened
    }

    fn open_each(&self, chain: &Chain, writable: bool) -> Result<Layer> {
        let mut below: Option<Layer> = None;
        for (depth, image) in chain.images.iter().enumerate().rev() {
            let write = writable && depth == 0;
            self.repair_if_suspect(*image)?;
            let path = self.path(*image);
            header::check_tables(&path).map_err(|e| StorageError::io(image, e))?;
            let file = File::open(StorageOpenOptions::new().filename(&path).write(write))
                .map_err(|e| StorageError::io(image, e))?;
            let layer = Qcow2Layer::builder(file)
                .backing(below.take())
                .write(write)
                .open(DenyImplicitOpenGate::default())
                .map_err(|e| StorageError::io(image, e))?;
            below = Some(Arc::new(FormatAccess::new(layer)));
        }
        Ok(below.expect("chain is not empty"))
    }
}

impl StorageDriver for Qcow2Driver {
    fn create_image(&self, image: ImageId, size: u64, backing: Option<ImageId>) -> Result<()> {
        self.create_image_unsynced(image, size, backing)?;
        self.sync_dir_shared()
    }

    /// Written under its final name: until the metadata names the image
    /// (after `sync_created`), a torn file is an unreferenced one, which
    /// the start-up sweep removes; a re-run truncates and rewrites it.
    fn create_image_unsynced(
        &self,
        image: ImageId,
        size: u64,
        backing: Option<ImageId>,
    ) -> Result<()> {
        self.space.check(0)?;
        let path = self.path(image);
        let backing = backing.map(Self::file_name);
        let written = std::fs::File::create(&path)
            .and_then(|file| {
                empty::write_empty(&file, size, backing.as_deref())?;
                file.sync_all()
            })
            .map_err(|e| StorageError::io(image, e));
        if written.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        written
    }

    fn sync_created(&self) -> Result<()> {
        self.sync_dir()
    }

    fn delete_image(&self, image: ImageId) -> Result<()> {
        self.clear_dirty(image);
        match std::fs::remove_file(self.path(image)) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(image, e)),
        }
    }

    fn image_exists(&self, image: ImageId) -> bool {
        self.path(image).exists()
    }

    fn grow(&self, chain: &Chain, new_size: u64) -> Result<()> {
        self.space.check(0)?;
        let top = self.open_layers(chain, true)?;
        let grown = top
            .resize_grow(new_size, PreallocateMode::Zero)
            .and_then(|()| top.flush())
            .and_then(|()| top.sync())
            .map_err(|e| StorageError::io(chain.top(), e));
        drop(top);
        match grown {
            Ok(()) => self.clear_dirty(chain.top()),
            // Its tables may be half-written: checked before the next open.
            Err(_) => self.mark_suspect(chain.top()),
        }
        grown
    }

    fn open(&self, chain: &Chain, writable: bool) -> Result<Arc<dyn BlockIo>> {
        let top = self.open_layers(chain, writable)?;
        let marker = writable.then(|| self.marker(chain.top()));
        Ok(Arc::new(Qcow2Io {
            image: chain.top(),
            top,
            marker,
            space: self.space.clone(),
            suspect: self.suspect.clone(),
            write_failed: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    fn merge_into_child(&self, chain: &Chain) -> Result<()> {
        self.space.check(0)?;
        let merged = merge::merge_into_child(self, chain, &self.space);
        if merged.is_err() {
            self.mark_suspect(chain.top());
        }
        merged
    }

    fn own_ranges(&self, chain: &Chain) -> Result<Option<Vec<(u64, u64)>>> {
        let top = self.open_layers(chain, false)?;
        merge::own_ranges(&top)
            .map(Some)
            .map_err(|e| StorageError::io(chain.top(), e))
    }

    fn capacity(&self) -> Result<crate::Capacity> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|e| StorageError::io(self.dir.display(), std::io::Error::other(e)))?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` a writable statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(StorageError::io(
                self.dir.display(),
                std::io::Error::last_os_error(),
            ));
        }
        let unit = st.f_frsize as u64;
        Ok(crate::Capacity {
            total_bytes: st.f_blocks as u64 * unit,
            free_bytes: st.f_bavail as u64 * unit,
        })
    }

    fn list_images(&self) -> Result<Vec<ImageId>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(self.dir.display(), e))?;
        let mut images = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(self.dir.display(), e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
                continue;
            };
            if let Ok(uuid) = uuid::Uuid::parse_str(stem) {
                images.push(ImageId(uuid));
            }
        }
        images.sort();
        Ok(images)
    }

    fn repair_after_crash(&self) -> Result<Vec<ImageId>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(self.dir.display(), e))?;
        let mut marked = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".qcow2.dirty")) else {
                continue;
            };
            let Ok(uuid) = uuid::Uuid::parse_str(stem) else {
                continue;
            };
            let image = ImageId(uuid);
            if self.path(image).exists() {
                // Repaired before its next open, or by `repair_marked`.
                self.mark_suspect(image);
                marked.push(image);
            } else {
                self.clear_dirty(image);
            }
        }
        Ok(marked)
    }

    fn repair_marked(&self) -> Result<usize> {
        let pending: Vec<ImageId> = self
            .suspect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        let mut repaired = 0;
        for image in pending {
            // A failed repair is logged, not fatal: the service keeps
            // serving every other volume, and this image's next open tries
            // again (and fails with the reason until it can be repaired).
            // The dirty marker stays until a clean close: the image may be
            // open for writing again by now.
            match self.repair_if_suspect(image) {
                Ok(_) => repaired += 1,
                Err(e) => tracing::error!(image = %image, error = %e, "could not repair image"),
            }
        }
        Ok(repaired)
    }

    fn is_special_entry(&self, name: &str) -> bool {
        std::fs::symlink_metadata(self.dir.join(name)).is_ok_and(|m| !m.file_type().is_file())
    }

    fn remove_temporaries(&self) -> Result<()> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(self.dir.display(), e))?;
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".qcow2.tmp"))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// What `qemu-img check -r all` left.
#[derive(Debug, PartialEq, Eq)]
enum Repaired {
    Clean,
    /// Only leaked clusters remain (the repair could not write, e.g. on a
    /// full disk): wasted space, no wrong data. Safe to open; repaired
    /// again at the next start.
    LeaksRemain,
}

/// Rebuilds the refcounts of an image that was open for writing when the
/// process died (see the module documentation).
fn repair(path: &Path) -> Result<Repaired> {
    // Checked alone (`backing: null`): refcounts are per file, and the
    // backing file named in the header may legitimately be gone.
    let spec = serde_json::json!({
        "driver": "qcow2",
        "file": {"driver": "file", "filename": path},
        "backing": null,
    });
    let out = std::process::Command::new("qemu-img")
        .args(["check", "-q", "-r", "all"])
        .arg(format!("json:{spec}"))
        .output()
        .map_err(|e| StorageError::io(path.display(), e))?;
    // 0: clean after repair; 3: leaks remain (repair could not finish).
    match out.status.code() {
        Some(0) => {
            tracing::info!(image = %path.display(), "checked image after unclean shutdown");
            Ok(Repaired::Clean)
        }
        Some(3) => {
            tracing::warn!(image = %path.display(), "image keeps leaked clusters until a repair can write");
            Ok(Repaired::LeaksRemain)
        }
        _ => Err(StorageError::Io {
            image: path.display().to_string(),
            source: std::io::Error::other(format!(
                "qemu-img check -r all failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }),
    }
}

/// An open chain; I/O goes to the top, reads fall through to the layers below.
struct Qcow2Io {
    image: ImageId,
    top: Layer,
    /// The dirty marker to remove after a clean close (writable handles).
    marker: Option<PathBuf>,
    space: Arc<space::SpaceReserve>,
    /// Where to record the image if its last flush fails on close.
    suspect: Arc<std::sync::Mutex<std::collections::HashSet<ImageId>>>,
    /// A write failed inside imago (e.g. ENOSPC while allocating): the
    /// clusters it had allocated leak, so the image is checked (`-r all`)
    /// before its next open rather than left with lost space.
    write_failed: std::sync::atomic::AtomicBool,
}

impl Qcow2Io {
    fn failed<T>(&self, result: std::io::Result<T>) -> Result<T> {
        result.map_err(|e| {
            self.write_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            StorageError::io(self.image, e)
        })
    }
}

impl Qcow2Io {
    fn check_range(&self, offset: u64, length: u64) -> Result<()> {
        let size = self.top.size();
        match offset.checked_add(length) {
            Some(end) if end <= size => Ok(()),
            _ => Err(StorageError::OutOfRange {
                offset,
                length,
                size,
            }),
        }
    }
}

impl BlockIo for Qcow2Io {
    fn size(&self) -> u64 {
        self.top.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.top
            .read(buf, offset)
            .map_err(|e| StorageError::io(self.image, e))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.space.check(buf.len() as u64)?;
        self.failed(self.top.write(buf, offset))
    }

    fn write_zeroes(&self, offset: u64, length: u64) -> Result<()> {
        self.check_range(offset, length)?;
        self.space.check(0)?;
        self.failed(self.top.write_zeroes(offset, length))
    }

    fn flush(&self) -> Result<()> {
        self.top
            .flush()
            .and_then(|()| self.top.sync())
            .map_err(|e| StorageError::io(self.image, e))
    }

    /// Through the whole chain (imago resolves each layer's references to
    /// the one below): data, zeroes written as such, or nothing anywhere.
    fn extents(&self, offset: u64, length: u64) -> Result<Option<Vec<crate::Extent>>> {
        self.check_range(offset, length)?;
        let end = offset + length;
        let mut out: Vec<crate::Extent> = Vec::new();
        let mut at = offset;
        while at < end {
            let (mapping, run) = self
                .top
                .get_mapping(at, end - at)
                .map_err(|e| StorageError::io(self.image, e))?;
            let run = run.min(end - at);
            if run == 0 {
                break;
            }
            let (hole, zero) = match mapping {
                imago::Mapping::Zero { explicit, .. } => (!explicit, true),
                imago::Mapping::Eof { .. } => (true, true),
                _ => (false, false),
            };
            match out.last_mut() {
                Some(last) if last.hole == hole && last.zero == zero => last.length += run,
                _ => out.push(crate::Extent {
                    length: run,
                    hole,
                    zero,
                }),
            }
            at += run;
        }
        Ok(Some(out))
    }
}

impl Drop for Qcow2Io {
    fn drop(&mut self) {
        // imago writes back its metadata caches on drop in sync mode; make it
        // explicit so an error is at least logged.
        let flushed = self.top.flush().and_then(|()| self.top.sync());
        if flushed.is_ok() && self.write_failed.load(std::sync::atomic::Ordering::Relaxed) {
            // Leaked clusters: the marker stays (a restart repairs too).
            self.suspect
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.image);
            return;
        }
        match flushed {
            Ok(()) => {
                if let Some(marker) = &self.marker {
                    let _ = std::fs::remove_file(marker);
                }
            }
            Err(e) => {
                // Cached tables may be lost with this handle: the image is
                // repaired before it is opened again (and its dirty marker
                // stays, so a restart repairs it too).
                self.suspect
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(self.image);
                tracing::error!(image = %self.image, error = %e, "flushing image on close failed")
            }
        }
    }
}
