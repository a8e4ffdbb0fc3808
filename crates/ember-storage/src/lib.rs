//! Storage drivers: where volume and snapshot bytes live.
//!
//! The service layer thinks in *images*: immutable-or-writable layers that
//! form backing chains. A volume is its writable top image plus the chain of
//! frozen images below it; a snapshot owns one frozen image. The metadata
//! store is the single source of truth for which image backs which; drivers
//! never discover chains on their own, they are told them (`Chain`).
//!
//! Every driver operation is idempotent, because workflows re-run steps after
//! a crash: creating an image that exists replaces it, deleting a missing
//! image succeeds, merging an already merged layer is a no-op.

pub mod fuzzing;
pub mod qcow2;

use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// Identifies one image (one layer of a backing chain).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ImageId(pub Uuid);

impl ImageId {
    pub fn new() -> Self {
        ImageId(Uuid::new_v4())
    }
}

impl Default for ImageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A backing chain, top first: `images[0]` is the image read and written,
/// `images[1]` its backing image, and so on down to the base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub images: Vec<ImageId>,
}

impl Chain {
    pub fn top(&self) -> ImageId {
        self.images[0]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on image {image}: {source}")]
    Io {
        image: String,
        #[source]
        source: std::io::Error,
    },
    #[error("request out of range: offset {offset} + length {length} exceeds size {size}")]
    OutOfRange { offset: u64, length: u64, size: u64 },
    #[error("invalid chain: {0}")]
    InvalidChain(String),
    #[error("no space left on the data device")]
    NoSpace,
}

impl StorageError {
    pub(crate) fn io(image: impl fmt::Display, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(28) {
            return StorageError::NoSpace;
        }
        StorageError::Io {
            image: image.to_string(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Byte-level access to an open chain. Implementations are safe to share
/// between threads; calls block, so async callers use `spawn_blocking`.
pub trait BlockIo: Send + Sync {
    fn size(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    fn write_zeroes(&self, offset: u64, length: u64) -> Result<()>;
    /// Make every completed write durable (metadata caches and fsync).
    fn flush(&self) -> Result<()>;
    /// What `[offset, offset + length)` holds, as consecutive extents from
    /// `offset` (they may end before `offset + length`), found from the
    /// format's mapping without reading data. None when the driver cannot
    /// tell (everything then counts as data).
    fn extents(&self, _offset: u64, _length: u64) -> Result<Option<Vec<Extent>>> {
        Ok(None)
    }
}

/// One run of bytes that read alike: data, or zeroes (`zero`), stored or
/// not (`hole`: nothing allocated anywhere in the chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub length: u64,
    pub hole: bool,
    pub zero: bool,
}

/// What a storage engine must offer the service. All methods are blocking
/// and idempotent.
pub trait StorageDriver: Send + Sync + 'static {
    /// Creates `image` of `size` bytes, empty, or as an overlay over `backing`
    /// (reading through to it where it has no data of its own). Replaces any
    /// existing image of that id: a re-run step must not inherit a torn file.
    fn create_image(&self, image: ImageId, size: u64, backing: Option<ImageId>) -> Result<()>;

    /// `create_image` whose new name is durable only after the next
    /// `sync_created` (the file's contents are durable on return), so many
    /// creates can share one directory sync. Until then a crash may lose
    /// the image: nothing may reference it durably before `sync_created`.
    fn create_image_unsynced(
        &self,
        image: ImageId,
        size: u64,
        backing: Option<ImageId>,
    ) -> Result<()> {
        self.create_image(image, size, backing)
    }

    /// Makes every image created so far by `create_image_unsynced` durable.
    fn sync_created(&self) -> Result<()> {
        Ok(())
    }

    /// Removes the image. Missing images are not an error.
    fn delete_image(&self, image: ImageId) -> Result<()>;

    /// Whether the image exists.
    fn image_exists(&self, image: ImageId) -> bool;

    /// Grows the top image of `chain` to `new_size` bytes (never shrinks).
    fn grow(&self, chain: &Chain, new_size: u64) -> Result<()>;

    /// Opens a chain for I/O; the top is writable when `writable`.
    fn open(&self, chain: &Chain, writable: bool) -> Result<Arc<dyn BlockIo>>;

    /// Removes `chain.images[1]` from under `chain.images[0]`: copies the
    /// data that the child reads from that layer into the child, then points
    /// the child at the layer below. Costs time in proportion to the data in
    /// the removed layer, never to the volume size. The caller guarantees no
    /// one writes the child meanwhile. Re-running after a crash is safe.
    fn merge_into_child(&self, chain: &Chain) -> Result<()>;

    /// The byte ranges that the top image of `chain` holds itself (data
    /// or explicit zeroes; what it reads through to its backing is not
    /// listed), ascending. None when the driver cannot tell.
    fn own_ranges(&self, _chain: &Chain) -> Result<Option<Vec<(u64, u64)>>> {
        Ok(None)
    }

    /// Every image present on the storage, for the start-up orphan sweep.
    fn list_images(&self) -> Result<Vec<ImageId>>;

    /// Total and free bytes of the storage the images live on (reported
    /// to admins as the pool's capacity).
    fn capacity(&self) -> Result<Capacity>;

    /// Whether `name` is an entry of the image store that is not a regular
    /// file (a symlink, a directory): such names are never accepted from
    /// clients.
    fn is_special_entry(&self, _name: &str) -> bool {
        false
    }

    /// Removes half-created images left by a crash (never visible as images).
    fn remove_temporaries(&self) -> Result<()>;

    /// Finds the images that were open for writing when the process died
    /// and marks them for repair: each is repaired before it is next
    /// opened (or by `repair_marked`), so start-up need not wait for all of
    /// them. Runs at start-up before any I/O. Returns the images marked.
    fn repair_after_crash(&self) -> Result<Vec<ImageId>>;

    /// Repairs every image still marked by `repair_after_crash` (in the
    /// background, while the service already serves). Returns how many.
    fn repair_marked(&self) -> Result<usize> {
        Ok(0)
    }
}

/// Size of a storage pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
}
