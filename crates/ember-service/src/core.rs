//! What workflows and requests share: the store, the backends, and one
//! I/O slot per volume that serializes data changes against I/O.

use crate::engine::Faults;
use crate::error::{Result, ServiceError};
use ember_backend::{DataRef, IoFence, VolumeBackend};
use ember_model::{ImageId, Snapshot, Volume, VolumeId};
use ember_storage::BlockIo;
use ember_store::{MetadataStore, Tx};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// The backends volumes live on, by name, and for each the barrier that
/// makes its grouped stages durable before a group commit.
pub struct Backends {
    list: Vec<(Arc<dyn VolumeBackend>, ember_store::Barrier)>,
}

impl Backends {
    /// The backends, in the order pools are listed and new volumes placed.
    /// Names must be unique; there must be one at least.
    pub fn new(list: Vec<Arc<dyn VolumeBackend>>) -> Self {
        assert!(!list.is_empty(), "at least one backend");
        let mut names = std::collections::HashSet::new();
        for b in &list {
            assert!(
                names.insert(b.name().to_string()),
                "backend names are unique"
            );
        }
        Backends {
            list: list
                .into_iter()
                .map(|b| {
                    let syncing = b.clone();
                    let barrier: ember_store::Barrier = Arc::new(move || {
                        syncing
                            .barrier()
                            .map_err(|e| ember_store::StoreError::Backend(e.to_string()))
                    });
                    (b, barrier)
                })
                .collect(),
        }
    }

    pub fn single(backend: Arc<dyn VolumeBackend>) -> Self {
        Self::new(vec![backend])
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn VolumeBackend>> {
        self.list.iter().map(|(b, _)| b)
    }

    pub fn get(&self, name: &str) -> Result<&Arc<dyn VolumeBackend>> {
        self.list
            .iter()
            .map(|(b, _)| b)
            .find(|b| b.name() == name)
            .ok_or_else(|| ServiceError::Internal(format!("backend {name} is not configured")))
    }

    pub(crate) fn barrier(&self, name: &str) -> Result<ember_store::Barrier> {
        self.list
            .iter()
            .find(|(b, _)| b.name() == name)
            .map(|(_, barrier)| barrier.clone())
            .ok_or_else(|| ServiceError::Internal(format!("backend {name} is not configured")))
    }
}

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
    /// This process's name among the nodes sharing the metadata store
    /// (its workflows' owner; `os-services` host of its scheduler).
    pub node_id: String,
    /// Where this node's API listens, as shown in the node list.
    pub node_api: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            availability_zone: "nova".into(),
            default_volume_type: "__DEFAULT__".into(),
            nbd: None,
            secrets_key: SecretKey::random(),
            node_id: "ember".into(),
            node_api: String::new(),
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

/// The open data of one volume. I/O holds the read lock; anything that
/// changes what the volume reads (snapshot, revert, a merge into it) holds
/// the write lock, flushes, and drops the handle so the next I/O reopens.
#[derive(Default)]
pub struct VolumeSlot {
    io: RwLock<Option<Arc<dyn BlockIo>>>,
}

pub struct Core {
    pub store: Arc<dyn MetadataStore>,
    pub backends: Backends,
    pub config: ServiceConfig,
    pub faults: Faults,
    slots: Mutex<HashMap<VolumeId, Arc<VolumeSlot>>>,
    /// Live flags of the NBD exports opened since start-up, by attachment;
    /// cleared when the connection is withdrawn so open clients stop.
    pub(crate) exports: Mutex<HashMap<uuid::Uuid, Arc<std::sync::atomic::AtomicBool>>>,
    pub started_at: ember_model::Timestamp,
    /// Whether this node collects garbage. With a shared store one live
    /// node does (the one with the smallest id, chosen again every
    /// heartbeat; see `membership`), so that two nodes never remove the
    /// same data at once; with a private store, always.
    pub(crate) collector: std::sync::atomic::AtomicBool,
    /// Where backups go (set once at start-up; none: backups are refused).
    pub backup_target: std::sync::OnceLock<Arc<ember_backup::Target>>,
}

/// Held while a volume's chain changes; I/O waits meanwhile.
pub struct ChainGuard<'a> {
    io: std::sync::RwLockWriteGuard<'a, Option<Arc<dyn BlockIo>>>,
}

impl Core {
    pub fn new(store: Arc<dyn MetadataStore>, backends: Backends, config: ServiceConfig) -> Self {
        let store_shared = store.shared();
        Core {
            store,
            backends,
            config,
            faults: Faults::default(),
            slots: Mutex::new(HashMap::new()),
            exports: Mutex::new(HashMap::new()),
            started_at: ember_model::Timestamp::now(),
            collector: std::sync::atomic::AtomicBool::new(!store_shared),
            backup_target: std::sync::OnceLock::new(),
        }
    }

    /// The backend holding `volume`'s data.
    pub fn backend_of(&self, volume: &Volume) -> Result<&Arc<dyn VolumeBackend>> {
        self.backends.get(&volume.backend)
    }

    /// The backend holding `snapshot`'s data (its volume's).
    pub(crate) fn backend_of_snapshot(
        &self,
        tx: &mut dyn Tx,
        snapshot: &Snapshot,
    ) -> Result<&Arc<dyn VolumeBackend>> {
        match tx.volume(snapshot.volume_id)? {
            Some(volume) => self.backend_of(&volume),
            None => Err(ServiceError::Internal(format!(
                "snapshot {} outlived its volume",
                snapshot.id
            ))),
        }
    }

    /// Removes what every backend no longer needs (released data).
    pub fn collect_garbage(&self) -> Result<()> {
        if !self.collector.load(std::sync::atomic::Ordering::Acquire) {
            // Another node collects (every second), this node's releases
            // included.
            return Ok(());
        }
        for backend in self.backends.all() {
            backend.collect(self)?;
        }
        Ok(())
    }

    /// A workflow's last step: collects what the workflow released. It is
    /// housekeeping after the change is committed and visible, so a failure
    /// (a backend busy, another node removing the same data) is logged and
    /// left to the next collection; it never unwinds the change.
    pub fn collect_garbage_step(&self) -> Result<()> {
        if let Err(e) = self.collect_garbage() {
            tracing::warn!(error = %e, "garbage collection failed; the next one retries");
        }
        Ok(())
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
        Ok(Self::quiesce_slot(slot)?)
    }

    fn quiesce_slot(
        slot: &VolumeSlot,
    ) -> std::result::Result<ChainGuard<'_>, ember_storage::StorageError> {
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

    /// Opens data of the backend named `backend`.
    pub fn open_data(
        &self,
        backend: &str,
        data: DataRef,
        writable: bool,
    ) -> Result<Arc<dyn BlockIo>> {
        Ok(self.backends.get(backend)?.open(data, writable)?)
    }

    /// Opens a snapshot's frozen data, read-only.
    pub fn open_snapshot(&self, snapshot: &Snapshot) -> Result<Arc<dyn BlockIo>> {
        let data = snapshot.image.ok_or_else(|| {
            ServiceError::InvalidSnapshot(format!("Snapshot {} has no data yet.", snapshot.id))
        })?;
        let mut tx = self.store.read()?;
        let backend = self.backend_of_snapshot(tx.as_mut(), snapshot)?.clone();
        drop(tx);
        Ok(backend.open(data, false)?)
    }

    /// The volume and its data, as the store records them now.
    pub fn volume_data(&self, volume: VolumeId) -> Result<(Volume, ImageId)> {
        let v = self
            .store
            .read()?
            .volume(volume)?
            .ok_or_else(|| ServiceError::VolumeNotFound(volume.to_string()))?;
        match v.image {
            Some(data) => Ok((v, data)),
            None => Err(ServiceError::InvalidVolume(format!(
                "Volume {volume} has no data yet (status {}).",
                v.status
            ))),
        }
    }

    fn open_volume_chain(&self, volume: VolumeId) -> Result<Arc<dyn BlockIo>> {
        // The data may change between reading it and opening it only
        // through a quiesce, which holds this volume's slot (held by the
        // caller while it opens).
        let (v, data) = self.volume_data(volume)?;
        Ok(self.backend_of(&v)?.open(data, true)?)
    }
}

impl IoFence for Core {
    fn quiesced(
        &self,
        volume: VolumeId,
        f: &mut dyn FnMut() -> ember_backend::Result<()>,
    ) -> ember_backend::Result<()> {
        let slot = self.slot(volume);
        let guard = Self::quiesce_slot(&slot)?;
        f()?;
        guard.release();
        Ok(())
    }
}

impl ChainGuard<'_> {
    /// Keeps the handle closed; the next I/O reopens from the store.
    pub fn release(self) {
        drop(self.io)
    }
}
