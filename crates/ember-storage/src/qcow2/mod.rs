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

mod header;
mod merge;

use crate::{BlockIo, Chain, ImageId, Result, StorageDriver, StorageError};
use imago::file::File;
use imago::qcow2::Qcow2;
use imago::{
    DenyImplicitOpenGate, FormatAccess, FormatCreateBuilder, FormatDriverBuilder,
    Storage, StorageCreateOptions, StorageOpenOptions,
};
use imago::format::PreallocateMode;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One layer as imago sees it; layers wrap each other through `Arc`s.
pub(crate) type Layer = Arc<FormatAccess<File>>;
type Qcow2Layer = Qcow2<File, Layer>;

const SUFFIX: &str = ".qcow2";

pub struct Qcow2Driver {
    dir: PathBuf,
}

impl Qcow2Driver {
    /// Uses (and creates) `dir` for image files.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(dir.display(), e))?;
        Ok(Qcow2Driver { dir })
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

    fn sync_dir(&self) -> Result<()> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io(self.dir.display(), e))
    }

    /// Opens `chain` bottom-up, each layer explicitly given its backing.
    pub(crate) fn open_layers(&self, chain: &Chain, writable: bool) -> Result<Layer> {
        if chain.images.is_empty() {
            return Err(StorageError::InvalidChain("empty chain".into()));
        }
        let mut below: Option<Layer> = None;
        for (depth, image) in chain.images.iter().enumerate().rev() {
            let write = writable && depth == 0;
            let path = self.path(*image);
            let file = File::open(
                StorageOpenOptions::new().filename(&path).write(write),
            )
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
        let path = self.path(image);
        let tmp = self.dir.join(format!("{image}{SUFFIX}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let file = File::create_open(StorageCreateOptions::new().filename(&tmp))
            .map_err(|e| StorageError::io(image, e))?;
        let mut builder = Qcow2Layer::create_builder(file).size(size);
        if let Some(backing) = backing {
            builder = builder.backing(Self::file_name(backing), "qcow2".into());
        }
        builder.create().map_err(|e| StorageError::io(image, e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| StorageError::io(image, e))?;
        // Atomic publish: a crash leaves either no image or a whole one.
        std::fs::rename(&tmp, &path).map_err(|e| StorageError::io(image, e))?;
        self.sync_dir()
    }

    fn delete_image(&self, image: ImageId) -> Result<()> {
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
        let top = self.open_layers(chain, true)?;
        top.resize_grow(new_size, PreallocateMode::Zero)
            .and_then(|()| top.flush())
            .and_then(|()| top.sync())
            .map_err(|e| StorageError::io(chain.top(), e))
    }

    fn open(&self, chain: &Chain, writable: bool) -> Result<Arc<dyn BlockIo>> {
        let top = self.open_layers(chain, writable)?;
        Ok(Arc::new(Qcow2Io { image: chain.top(), top }))
    }

    fn merge_into_child(&self, chain: &Chain) -> Result<()> {
        merge::merge_into_child(self, chain)
    }

    fn list_images(&self) -> Result<Vec<ImageId>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(self.dir.display(), e))?;
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

    fn remove_temporaries(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(self.dir.display(), e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.ends_with(".qcow2.tmp")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// An open chain; I/O goes to the top, reads fall through to the layers below.
struct Qcow2Io {
    image: ImageId,
    top: Layer,
}

impl Qcow2Io {
    fn check_range(&self, offset: u64, length: u64) -> Result<()> {
        let size = self.top.size();
        match offset.checked_add(length) {
            Some(end) if end <= size => Ok(()),
            _ => Err(StorageError::OutOfRange { offset, length, size }),
        }
    }
}

impl BlockIo for Qcow2Io {
    fn size(&self) -> u64 {
        self.top.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.top.read(buf, offset).map_err(|e| StorageError::io(self.image, e))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.top.write(buf, offset).map_err(|e| StorageError::io(self.image, e))
    }

    fn write_zeroes(&self, offset: u64, length: u64) -> Result<()> {
        self.check_range(offset, length)?;
        self.top.write_zeroes(offset, length).map_err(|e| StorageError::io(self.image, e))
    }

    fn flush(&self) -> Result<()> {
        self.top
            .flush()
            .and_then(|()| self.top.sync())
            .map_err(|e| StorageError::io(self.image, e))
    }
}

impl Drop for Qcow2Io {
    fn drop(&mut self) {
        // imago writes back its metadata caches on drop in sync mode; make it
        // explicit so an error is at least logged.
        if let Err(e) = self.top.flush() {
            tracing::error!(image = %self.image, error = %e, "flushing image on close failed");
        }
    }
}
