//! What workflows and requests share: the store, the storage driver, and
//! one I/O slot per volume that serializes chain changes against I/O.

use crate::engine::Faults;
use crate::error::{Result, ServiceError};
use ember_model::{ImageId, VolumeId};
use ember_storage::{BlockIo, Chain, StorageDriver};
use ember_store::{MetadataStore, Tx};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Settings the service layer needs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub availability_zone: String,
    pub default_volume_type: String,
    /// Where clients reach the NBD export (none: exports are off).
    pub nbd: Option<crate::attachments::NbdEndpoint>,
    /// Derives export secrets from the nonces the metadata store keeps, so
    /// that the store alone (a copy, a backup) opens no export. The binary
    /// keeps it in `<data-dir>/secrets.key`; by default a random one.
    pub secrets_key: SecretKey,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            availability_zone: "nova".into(),
            default_volume_type: "__DEFAULT__".into(),
            nbd: None,
            secrets_key: SecretKey::random(),
        }
    }
}

/// A 256-bit key that never shows in logs or debug output.
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl SecretKey {
    pub fn random() -> SecretKey {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the system's random source");
        SecretKey(key)
    }

    /// HMAC-SHA256 of `message` under this key, as lowercase hex.
    pub fn derive(&self, message: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(message.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The open chain of one volume. I/O holds the read lock; anything that
/// changes the chain (snapshot, revert, merge into the top) holds the write
/// lock, flushes, and drops the handle so the next I/O reopens the new chain.
#[derive(Default)]
pub struct VolumeSlot {
    io: RwLock<Option<Arc<dyn BlockIo>>>,
}

pub struct Core {
    pub store: Arc<dyn MetadataStore>,
    pub driver: Arc<dyn StorageDriver>,
    pub config: ServiceConfig,
    pub faults: Faults,
    slots: Mutex<HashMap<VolumeId, Arc<VolumeSlot>>>,
    pub(crate) gc_lock: Mutex<()>,
    /// Read-held from reading a chain out of the store until its files are
    /// open; write-held by garbage collection from the commit that unlinks
    /// an image until its file is gone. Without it a reader could list an
    /// image that is deleted before it opens the file.
    pub(crate) chain_files: RwLock<()>,
    /// Live flags of the NBD exports opened since start-up, by attachment;
    /// cleared when the connection is withdrawn so open clients stop.
    pub(crate) exports: Mutex<HashMap<uuid::Uuid, Arc<std::sync::atomic::AtomicBool>>>,
    /// Makes images from `create_image_unsynced` durable; passed to group
    /// commits that name such images, so one directory sync serves a group.
    pub(crate) images_created: ember_store::Barrier,
}

/// Held while a volume's chain changes; I/O waits meanwhile.
pub struct ChainGuard<'a> {
    io: std::sync::RwLockWriteGuard<'a, Option<Arc<dyn BlockIo>>>,
}

impl Core {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        driver: Arc<dyn StorageDriver>,
        config: ServiceConfig,
    ) -> Self {
        let syncing = driver.clone();
        let images_created: ember_store::Barrier = Arc::new(move || {
            syncing
                .sync_created()
                .map_err(|e| ember_store::StoreError::Backend(e.to_string()))
        });
        Core {
            store,
            driver,
            images_created,
            config,
            faults: Faults::default(),
            slots: Mutex::new(HashMap::new()),
            gc_lock: Mutex::new(()),
            chain_files: RwLock::new(()),
            exports: Mutex::new(HashMap::new()),
        }
    }

    pub fn slot(&self, volume: VolumeId) -> Arc<VolumeSlot> {
        self.slots
            .lock()
            .unwrap()
            .entry(volume)
            .or_default()
            .clone()
    }

    /// Cuts live NBD clients of the attachment off (after the commit that
    /// removed its connection, so a concurrent open cannot revive it).
    pub(crate) fn revoke_export(&self, attachment: uuid::Uuid) {
        let mut live = self.exports.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flag) = live.remove(&attachment) {
            flag.store(false, std::sync::atomic::Ordering::Release);
        }
    }

    pub fn forget_slot(&self, volume: VolumeId) {
        self.slots.lock().unwrap().remove(&volume);
    }

    /// Quiesces the volume: waits for in-flight I/O, flushes it, and closes
    /// the open chain until the guard drops. If the flush fails (no space),
    /// the chain stays open with everything it caches, exactly as it was:
    /// a handle is closed only once its writes are on disk, or acknowledged
    /// writes could be lost with its cached tables.
    pub fn quiesce<'a>(&self, slot: &'a VolumeSlot) -> Result<ChainGuard<'a>> {
        let mut io = slot.io.write().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = io.as_ref() {
            open.flush()?;
        }
        io.take();
        Ok(ChainGuard { io })
    }

    /// Moves `volume` from top image `from` to `to`, in `tx`, changing
    /// nothing else of the record: it is read again here, inside the write
    /// transaction, because between a workflow's first read and this write
    /// anything else may have changed it (an attachment deleted, a rename);
    /// writing back the early copy would undo that change.
    pub(crate) fn switch_top(
        tx: &mut dyn Tx,
        volume: VolumeId,
        from: Option<ImageId>,
        to: ImageId,
    ) -> Result<()> {
        let mut current = tx
            .volume(volume)?
            .ok_or_else(|| ServiceError::VolumeNotFound(volume.to_string()))?;
        if current.image != from {
            // Only a chain change could do this, and those hold the
            // volume's slot: a bug if ever seen. The step fails and unwinds.
            return Err(ServiceError::Conflict(format!(
                "volume {volume} changed its top image during a switch"
            )));
        }
        current.image = Some(to);
        tx.put_volume(&current)?;
        Ok(())
    }

    /// The chain under `top`, as the metadata store records it. Only names:
    /// to touch the files, go through `with_chain`.
    pub(crate) fn chain_of(tx: &mut dyn Tx, top: ImageId) -> Result<Chain> {
        let mut images = vec![top];
        let mut current = top;
        while let Some(image) = tx.image(current)? {
            match image.parent {
                Some(parent) => {
                    if images.contains(&parent) || images.len() > 100_000 {
                        return Err(ServiceError::Internal(format!(
                            "image chain of {top} loops"
                        )));
                    }
                    images.push(parent);
                    current = parent;
                }
                None => return Ok(Chain { images }),
            }
        }
        Err(ServiceError::Internal(format!(
            "image {current} is missing from the metadata store"
        )))
    }

    /// Runs `f` on the volume's open chain (opening it on first use) while
    /// holding the slot's read lock, so a chain change waits for it.
    pub fn with_io<R>(
        &self,
        volume: VolumeId,
        f: impl FnOnce(&dyn BlockIo) -> Result<R>,
    ) -> Result<R> {
        let slot = self.slot(volume);
        loop {
            {
                let io = slot.io.read().unwrap_or_else(|p| p.into_inner());
                if let Some(open) = io.as_ref() {
                    return f(open.as_ref());
                }
            }
            let mut io = slot.io.write().unwrap_or_else(|p| p.into_inner());
            if io.is_none() {
                *io = Some(self.open_volume_chain(volume)?);
            }
        }
    }

    /// The one way to reach a chain's files: reads the chain under `top`
    /// from the store and runs `f` on it (open it, grow it) while garbage
    /// collection can neither remove nor rewrite any of its files. A chain
    /// read without this can name a file that is gone, or half-merged, by
    /// the time it is opened.
    pub fn with_chain<R>(&self, top: ImageId, f: impl FnOnce(&Chain) -> Result<R>) -> Result<R> {
        let _files = self.chain_files.read().unwrap_or_else(|p| p.into_inner());
        let chain = Self::chain_of(self.store.read()?.as_mut(), top)?;
        f(&chain)
    }

    /// Opens the chain under `top` as the store records it now.
    pub fn open_chain(&self, top: ImageId, writable: bool) -> Result<Arc<dyn BlockIo>> {
        self.with_chain(top, |chain| Ok(self.driver.open(chain, writable)?))
    }

    /// The top image of `volume`'s chain, as the store records it now.
    pub fn volume_top(&self, volume: VolumeId) -> Result<ImageId> {
        let v = self
            .store
            .read()?
            .volume(volume)?
            .ok_or_else(|| ServiceError::VolumeNotFound(volume.to_string()))?;
        v.image.ok_or_else(|| {
            ServiceError::InvalidVolume(format!(
                "Volume {volume} has no data yet (status {}).",
                v.status
            ))
        })
    }

    fn open_volume_chain(&self, volume: VolumeId) -> Result<Arc<dyn BlockIo>> {
        // The top may change between reading it and taking the chain lock
        // only through a quiesce, which holds this volume's slot (held by
        // the caller while it opens).
        let top = self.volume_top(volume)?;
        self.open_chain(top, true)
    }
}

impl ChainGuard<'_> {
    /// Keeps the handle closed; the next I/O reopens from the store.
    pub fn release(self) {
        drop(self.io)
    }
}
