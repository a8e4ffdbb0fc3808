//! Volumes on Ceph RBD: each volume an RBD image, each snapshot an RBD
//! snapshot of its volume's image, clones RBD clones (v2: no protection,
//! snapshots removable while clones live), reverts a clone of the
//! snapshot under a new name (O(1), where `rbd snap rollback` copies every
//! object of the image).
//!
//! ```text
//!   volume:    ember-<data>                     (kind image)
//!   snapshot:  ember-<volume data>@snap-<data>  (kind snap)
//!   clone:     ember-<data>, parent ember-<x>@snap-<y>
//!   revert:    the volume continues in ember-<fresh>, a clone of the
//!              snapshot; its old image is released and removed once its
//!              snapshots are gone
//! ```
//!
//! The metadata store's `images` records (this backend's) say which RBD
//! image or snapshot is whose, and what reads through what; Ceph is asked
//! only to make, remove and open them. Names never come from clients.

use crate::{BackendError, Claimed, DataRef, Frozen, IoFence, Manageable, Result, VolumeBackend};
use ember_model::{Image, ImageOwner, SnapshotId, Timestamp, VolumeId};
use ember_rbd::{Cluster, ConnectOptions, Pool, RbdError};
use ember_storage::{BlockIo, Capacity, StorageError};
use ember_store::{MetadataStore, Tx};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const IMAGE: &str = "image";
const SNAP: &str = "snap";

/// How to reach the pool (the `[[backend]]` table's rbd keys).
#[derive(Clone, Debug, Default)]
pub struct RbdSettings {
    pub ceph_conf: Option<PathBuf>,
    pub pool: String,
    /// An RBD namespace of the pool that this backend owns (created when
    /// missing); None: the pool's default namespace. Ember removes images
    /// named like its own that it has no record of, so two services (or a
    /// service and anything else naming images `ember-…`) must not share
    /// one namespace.
    pub namespace: Option<String>,
    pub user: Option<String>,
    pub keyring: Option<PathBuf>,
    /// Attach volumes natively (`driver_volume_type: rbd`): hypervisors
    /// open the image with librbd themselves, with `user` and the libvirt
    /// secret `secret_uuid` holding its key. Default: through Ember's NBD
    /// export, like every backend.
    pub native_attach: bool,
    pub secret_uuid: Option<String>,
    /// This process's node id (see `ember_model::Node`): each node records
    /// its Ceph client address under it, so that it (restarted) or the
    /// node taking its work over can fence the dead client.
    pub node: String,
}

pub struct RbdBackend {
    name: String,
    pool_name: String,
    namespace: Option<String>,
    user: String,
    /// What native attachments name; None: NBD only.
    native: Option<NativeAttach>,
    pool: Pool,
    store: Arc<dyn MetadataStore>,
    gc_lock: Mutex<()>,
    /// The last collection left data something still read (see
    /// `collect_deferred`).
    deferred: AtomicBool,
    node: String,
}

fn image_name(data: DataRef) -> String {
    format!("ember-{data}")
}

fn snap_name(data: DataRef) -> String {
    format!("snap-{data}")
}

fn parse_suffix(name: &str, prefix: &str) -> Option<DataRef> {
    name.strip_prefix(prefix)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .map(ember_model::ImageId)
}

impl From<RbdError> for BackendError {
    fn from(e: RbdError) -> Self {
        if e.is_no_space() {
            return BackendError::Storage(StorageError::NoSpace);
        }
        BackendError::Storage(StorageError::Io {
            image: e.op.to_string(),
            source: std::io::Error::from_raw_os_error(e.errno),
        })
    }
}

/// `Ok` for "already gone".
fn gone_ok(r: std::result::Result<(), RbdError>) -> std::result::Result<(), RbdError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

impl RbdBackend {
    /// Connects to the cluster (once: every image shares the connection)
    /// and opens the pool.
    pub fn connect(
        name: impl Into<String>,
        settings: &RbdSettings,
        store: Arc<dyn MetadataStore>,
    ) -> Result<Self> {
        let cluster = Cluster::connect(&ConnectOptions {
            conf: settings.ceph_conf.as_deref(),
            user: settings.user.as_deref(),
            keyring: settings.keyring.as_deref(),
            // Clones of unprotected snapshots, and snapshots that can go
            // while clones live (into the trash, removed with the last one).
            options: &[("rbd_default_clone_format", "2")],
        })?;
        let pool = cluster.pool(&settings.pool, settings.namespace.as_deref())?;
        let native = if settings.native_attach {
            Some(NativeAttach {
                monitors: monitors(&cluster.conf("mon_host")?),
                secret_uuid: settings.secret_uuid.clone(),
            })
        } else {
            None
        };
        let backend = RbdBackend {
            name: name.into(),
            pool_name: settings.pool.clone(),
            namespace: settings.namespace.clone(),
            user: settings.user.clone().unwrap_or_else(|| "admin".into()),
            native,
            pool,
            store,
            gc_lock: Mutex::new(()),
            deferred: AtomicBool::new(false),
            node: settings.node.clone(),
        };
        backend.fence_previous_incarnation()?;
        Ok(backend)
    }

    /// A process that died (SIGKILL, power loss) still holds its images'
    /// exclusive locks until the OSDs time its watches out (30 s by
    /// default): every open for writing would wait that long. So each
    /// connection records its address in the namespace, and the next one
    /// blocklists the previous before touching any image: the dead
    /// client's watches and locks go at once, and were it somehow still
    /// alive, it could no longer write (one writer per namespace).
    /// Nodes sharing a metadata store each record their own address
    /// (`ember.instance.<backend>.<node>`).
    fn fence_previous_incarnation(&self) -> Result<()> {
        let ours = self.pool.cluster().addrs()?;
        self.fence(&self.node, &ours)?;
        self.pool
            .write_object(&self.instance_object(&self.node), ours.as_bytes())?;
        Ok(())
    }

    fn instance_object(&self, node: &str) -> String {
        format!("ember.instance.{}.{node}", self.name)
    }

    /// Blocklists the client address node `node` last recorded, unless it
    /// is `ours`.
    fn fence(&self, node: &str, ours: &str) -> Result<()> {
        if let Some(previous) = self.pool.read_object(&self.instance_object(node), 4096)? {
            let previous = String::from_utf8_lossy(&previous).trim().to_string();
            if !previous.is_empty() && previous != ours {
                // An hour: far longer than any watch could outlive it.
                self.pool.cluster().blocklist(&previous, 3600)?;
                tracing::info!(backend = %self.name, node, previous = %previous, "fenced an earlier Ember client off the pool");
            }
        }
        Ok(())
    }

    pub fn pool_handle(&self) -> &Pool {
        &self.pool
    }

    fn row(
        &self,
        data: DataRef,
        owner: ImageOwner,
        parent: Option<DataRef>,
        size: u64,
        kind: &str,
    ) -> Image {
        Image {
            id: data,
            parent,
            size_bytes: size,
            owner,
            created_at: Timestamp::now(),
            backend: self.name.clone(),
            ready: true,
            kind: kind.into(),
            label: None,
        }
    }

    /// The recorded data `id`, which must be this backend's, of `kind`.
    fn own_row(&self, tx: &mut dyn Tx, id: DataRef, kind: &str) -> Result<Image> {
        match tx.image(id)? {
            Some(i) if i.backend == self.name && i.kind == kind => Ok(i),
            Some(i) => Err(BackendError::Internal(format!(
                "data {id} is a {:?} of backend {}, not a {kind} of {}",
                i.kind, i.backend, self.name
            ))),
            None => Err(BackendError::Internal(format!(
                "data {id} is missing from the metadata store"
            ))),
        }
    }

    fn exists(&self, name: &str) -> Result<bool> {
        match self.pool.open(name, None, true) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Clones `parent@snap` as `child`, grown to `size`; a half-made
    /// `child` from an earlier run (nothing references it) is replaced.
    fn clone_of(&self, snap: &Image, child: DataRef, size: u64) -> Result<()> {
        let parent = snap
            .parent
            .ok_or_else(|| BackendError::Internal(format!("snapshot {} has no image", snap.id)))?;
        let name = image_name(child);
        let made = self
            .pool
            .clone_image(&image_name(parent), &snap_name(snap.id), &name);
        match made {
            Err(e) if e.is_exists() => {
                self.pool.remove(&name)?;
                self.pool
                    .clone_image(&image_name(parent), &snap_name(snap.id), &name)?;
            }
            other => other?,
        }
        let image = self.pool.open(&name, None, false)?;
        if image.size()? < size {
            image.resize(size)?;
        }
        Ok(())
    }

    /// Adopts the foreign image `foreign` as `claim`: renamed to Ember's
    /// name for it (a rename keeps its data and snapshots), grown to whole
    /// GiB, then made ready. Re-runs find it renamed already.
    fn adopt(&self, claim: &Image, foreign: &str) -> Result<()> {
        let name = image_name(claim.id);
        if !self.exists(&name)? {
            self.pool.rename(foreign, &name)?;
        }
        let image = self.pool.open(&name, None, false)?;
        if image.size()? < claim.size_bytes {
            image.resize(claim.size_bytes)?;
        }
        drop(image);
        let mut tx = self.store.write()?;
        if let Some(mut row) = tx.image(claim.id)? {
            row.ready = true;
            row.label = None;
            tx.put_image(&row)?;
            tx.commit()?;
        }
        tracing::info!(backend = %self.name, image = %foreign, data = %claim.id, "adopted an RBD image");
        Ok(())
    }

    /// Removes the RBD object behind released data that nothing reads
    /// through, then its record. False when it must wait (still open).
    fn remove_released(&self, data: &Image) -> Result<bool> {
        let removed = match data.kind.as_str() {
            SNAP => match data.parent {
                Some(parent) => match self.pool.open(&image_name(parent), None, false) {
                    Ok(image) => gone_ok(image.snap_remove(&snap_name(data.id))),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                },
                None => Ok(()),
            },
            _ => gone_ok(self.pool.remove(&image_name(data.id))),
        };
        match removed {
            // Still open somewhere, or another node's collector is
            // removing it right now: the next collection finishes the job.
            Err(e) if e.is_busy() || e.is_stale() => {
                tracing::info!(backend = %self.name, data = %data.id, error = %e, "released RBD data still in use; removed later");
                self.deferred.store(true, Ordering::Relaxed);
                return Ok(false);
            }
            other => other?,
        }
        let mut tx = self.store.write()?;
        let still_released = tx
            .image(data.id)?
            .is_some_and(|i| i.owner == ImageOwner::None);
        if still_released && tx.image_children(data.id)?.is_empty() {
            tx.delete_image(data.id)?;
            tx.commit()?;
        }
        tracing::debug!(backend = %self.name, data = %data.id, kind = %data.kind, "removed released RBD data");
        Ok(true)
    }
}

/// The monitors (host, port) and the libvirt secret native attachments name.
struct NativeAttach {
    monitors: Vec<(String, u16)>,
    secret_uuid: Option<String>,
}

/// The monitors' hosts and ports in a `mon_host` value (`v2:h:p`,
/// `[v2:h:p,v1:h:p]`, `h:p`, `h`), each host once.
fn monitors(mon_host: &str) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = vec![];
    for addr in mon_host
        .split([',', ' ', ';'])
        .map(|a| a.trim_matches(|c| c == '[' || c == ']'))
        .filter(|a| !a.is_empty())
    {
        let addr = addr
            .strip_prefix("v2:")
            .or_else(|| addr.strip_prefix("v1:"))
            .unwrap_or(addr);
        let addr = addr.split('/').next().unwrap_or(addr);
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse().unwrap_or(6789)),
            _ => (addr, 6789),
        };
        if !out.iter().any(|(h, _)| h == host) {
            out.push((host.to_string(), port));
        }
    }
    out
}

/// An open RBD image (or snapshot) as block I/O.
struct RbdIo {
    image: ember_rbd::Image,
    size: u64,
}

impl RbdIo {
    fn check(&self, offset: u64, length: u64) -> ember_storage::Result<()> {
        match offset.checked_add(length) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(StorageError::OutOfRange {
                offset,
                length,
                size: self.size,
            }),
        }
    }
}

fn io_error(e: RbdError) -> StorageError {
    if e.is_no_space() {
        StorageError::NoSpace
    } else {
        StorageError::Io {
            image: e.op.to_string(),
            source: std::io::Error::from_raw_os_error(e.errno),
        }
    }
}

impl BlockIo for RbdIo {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> ember_storage::Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.image.read_at(buf, offset).map_err(io_error)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> ember_storage::Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.image.write_at(buf, offset).map_err(io_error)
    }
    fn write_zeroes(&self, offset: u64, length: u64) -> ember_storage::Result<()> {
        self.check(offset, length)?;
        self.image.write_zeroes(offset, length).map_err(io_error)
    }
    fn flush(&self) -> ember_storage::Result<()> {
        self.image.flush().map_err(io_error)
    }
    /// From librbd's allocation (`rbd_diff_iterate2` from nothing, the
    /// parent's included): data where objects hold data, holes elsewhere.
    fn extents(
        &self,
        offset: u64,
        length: u64,
    ) -> ember_storage::Result<Option<Vec<ember_storage::Extent>>> {
        self.check(offset, length)?;
        let mut allocated = self
            .image
            .changed_extents_in(None, true, offset, length)
            .map_err(io_error)?;
        allocated.sort_unstable();
        let end = offset + length;
        let mut out: Vec<ember_storage::Extent> = Vec::new();
        let mut push = |length: u64, hole: bool| {
            if length == 0 {
                return;
            }
            match out.last_mut() {
                Some(last) if last.hole == hole => last.length += length,
                _ => out.push(ember_storage::Extent {
                    length,
                    hole,
                    zero: hole,
                }),
            }
        };
        let mut at = offset;
        for (start, len) in allocated {
            let (start, stop) = (start.max(at), start.saturating_add(len).min(end));
            if stop <= start {
                continue;
            }
            push(start - at, true);
            push(stop - start, false);
            at = stop;
        }
        push(end - at, true);
        Ok(Some(out))
    }
}

impl VolumeBackend for RbdBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn pool(&self) -> &str {
        &self.pool_name
    }

    fn driver(&self) -> &'static str {
        "rbd"
    }

    fn capabilities(&self) -> Vec<(&'static str, String)> {
        let protocol = if self.native.is_some() { "ceph" } else { "nbd" };
        vec![
            ("vendor_name", "Ember".into()),
            ("storage_protocol", protocol.into()),
            ("driver_version", env!("CARGO_PKG_VERSION").into()),
            ("thin_provisioning_support", "True".into()),
            ("thick_provisioning_support", "False".into()),
            ("QoS_support", "False".into()),
            ("multiattach", "True".into()),
        ]
    }

    fn capacity(&self) -> Result<Capacity> {
        let (total_bytes, free_bytes) = self.pool.cluster().stat()?;
        Ok(Capacity {
            total_bytes,
            free_bytes,
        })
    }

    fn claim(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        data: DataRef,
        size: u64,
        from: Option<DataRef>,
    ) -> Result<()> {
        if let Some(from) = from {
            self.own_row(tx, from, SNAP)?;
        }
        let mut row = self.row(data, ImageOwner::Volume(volume), from, size, IMAGE);
        row.ready = false;
        tx.put_image(&row)?;
        Ok(())
    }

    fn make(&self, data: DataRef) -> Result<()> {
        let claim = self.own_row(self.store.read()?.as_mut(), data, IMAGE)?;
        if claim.ready && self.exists(&image_name(data))? {
            return Ok(()); // made: it may hold writes now
        }
        if let Some(foreign) = &claim.label {
            return self.adopt(&claim, foreign);
        }
        match claim.parent {
            None => match self.pool.create(&image_name(data), claim.size_bytes) {
                Err(e) if e.is_exists() => {
                    // Half-made by an earlier run; nothing wrote to it.
                    self.pool.remove(&image_name(data))?;
                    self.pool.create(&image_name(data), claim.size_bytes)?;
                }
                other => other?,
            },
            Some(snap) => {
                let snap = self.own_row(self.store.read()?.as_mut(), snap, SNAP)?;
                self.clone_of(&snap, data, claim.size_bytes)?;
            }
        }
        let mut tx = self.store.write()?;
        if let Some(mut row) = tx.image(data)? {
            row.ready = true;
            tx.put_image(&row)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn recorded(&self, tx: &mut dyn Tx, data: DataRef) -> Result<bool> {
        Ok(tx.image(data)?.is_some())
    }

    fn stage_freeze(
        &self,
        data: DataRef,
        fresh: DataRef,
        _size: u64,
        _grouped: bool,
    ) -> Result<()> {
        // An RBD snapshot is durable when the call returns: nothing to
        // group. The volume was quiesced by the caller: every write it
        // acknowledged is in the image.
        let image = self.pool.open(&image_name(data), None, false)?;
        match image.snap_create(&snap_name(fresh)) {
            Err(e) if e.is_exists() => Ok(()),
            other => Ok(other?),
        }
    }

    fn record_freeze(
        &self,
        tx: &mut dyn Tx,
        _volume: VolumeId,
        data: DataRef,
        fresh: DataRef,
        size: u64,
        snapshot: Option<SnapshotId>,
    ) -> Result<Frozen> {
        self.own_row(tx, data, IMAGE)?;
        let owner = snapshot.map_or(ImageOwner::None, ImageOwner::Snapshot);
        tx.put_image(&self.row(fresh, owner, Some(data), size, SNAP))?;
        Ok(Frozen {
            volume_data: data,
            frozen: fresh,
        })
    }

    fn abandon(&self, data: Option<DataRef>, fresh: DataRef) -> Result<()> {
        if self.store.read()?.image(fresh)?.is_some() {
            return Ok(()); // recorded after all
        }
        if let Some(data) = data {
            match self.pool.open(&image_name(data), None, false) {
                Ok(image) => gone_ok(image.snap_remove(&snap_name(fresh)))?,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        gone_ok(self.pool.remove(&image_name(fresh)))?;
        Ok(())
    }

    fn stage_revert(&self, frozen: DataRef, fresh: DataRef, size: u64) -> Result<()> {
        let snap = self.own_row(self.store.read()?.as_mut(), frozen, SNAP)?;
        self.clone_of(&snap, fresh, size)
    }

    fn record_revert(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        current: Option<DataRef>,
        frozen: DataRef,
        fresh: DataRef,
        size: u64,
    ) -> Result<DataRef> {
        if let Some(current) = current {
            self.release(tx, current)?;
        }
        tx.put_image(&self.row(fresh, ImageOwner::Volume(volume), Some(frozen), size, IMAGE))?;
        Ok(fresh)
    }

    fn grow(&self, data: DataRef, new_size: u64) -> Result<()> {
        let image = self.pool.open(&image_name(data), None, false)?;
        if image.size()? < new_size {
            image.resize(new_size)?;
        }
        let mut tx = self.store.write()?;
        if let Some(mut row) = tx.image(data)? {
            row.size_bytes = new_size;
            tx.put_image(&row)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn release(&self, tx: &mut dyn Tx, data: DataRef) -> Result<()> {
        if let Some(mut row) = tx.image(data)? {
            // A foreign image whose adoption did not finish is never
            // removed: it goes back to being manageable by its own name.
            row.owner = if row.label.is_some() && !row.ready {
                ImageOwner::Unmanaged
            } else {
                ImageOwner::None
            };
            tx.put_image(&row)?;
        }
        Ok(())
    }

    fn in_lineage(&self, tx: &mut dyn Tx, frozen: DataRef, volume_data: DataRef) -> Result<bool> {
        let Some(snap) = tx.image(frozen)?.filter(|r| r.kind == SNAP) else {
            return Ok(false);
        };
        // The volume's image, and the images it was cloned from by reverts
        // (each a clone of a snapshot of the one before).
        let mut image = Some(volume_data);
        let mut seen = 0;
        while let Some(current) = image {
            if snap.parent == Some(current) {
                return Ok(true);
            }
            seen += 1;
            if seen > 10_000 {
                return Ok(false);
            }
            image = match tx.image(current)?.and_then(|r| r.parent) {
                Some(parent_snap) => tx.image(parent_snap)?.and_then(|s| s.parent),
                None => None,
            };
        }
        Ok(false)
    }

    /// Unmanaged volumes, and RBD images in the pool (namespace) that Ember
    /// did not make: those can be adopted by their own names.
    fn manageable_volumes(&self, tx: &mut dyn Tx) -> Result<Vec<Manageable>> {
        let mut out = crate::manage::unmanaged(tx, &self.name, false)?;
        let adopting: HashSet<String> = tx
            .all_images()?
            .into_iter()
            .filter(|r| r.backend == self.name)
            .filter_map(|r| r.label)
            .collect();
        for name in self.pool.list()? {
            if name.starts_with("ember-") || adopting.contains(&name) {
                continue;
            }
            let size_bytes = match self.pool.open(&name, None, true) {
                Ok(image) => image.size()?,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            out.push(Manageable {
                reference: name,
                size_bytes,
                safe: true,
                reason_not_safe: None,
                source: None,
            });
        }
        Ok(out)
    }

    fn claim_existing(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        reference: &str,
        data: DataRef,
    ) -> Result<Claimed> {
        if let Some(row) = crate::manage::find(tx, &self.name, reference)? {
            return crate::manage::reclaim_volume(row, tx, volume);
        }
        if reference.starts_with("ember-") || reference.is_empty() {
            return Err(BackendError::Unsupported(format!(
                "Manage existing volume failed due to invalid backend reference {reference}."
            )));
        }
        let size_bytes = match self.pool.open(reference, None, true) {
            Ok(image) => image.size()?,
            Err(e) if e.is_not_found() => {
                return Err(BackendError::Unsupported(format!(
                    "Manage existing volume failed due to invalid backend reference {reference}: no such image in pool {}.",
                    self.pool_name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        // Whole GiB, as volumes are: the image grows to it when adopted.
        let size_bytes = size_bytes.div_ceil(1 << 30).max(1) << 30;
        let mut row = self.row(data, ImageOwner::Volume(volume), None, size_bytes, IMAGE);
        row.ready = false;
        row.label = Some(reference.to_string());
        tx.put_image(&row)?;
        Ok(Claimed::ToMake { size_bytes })
    }

    /// Removes released snapshots and images that nothing reads through,
    /// repeatedly: a deleted clone lets its parent snapshot go, which may
    /// let a released image go. No data is ever copied.
    fn collect(&self, _fence: &dyn IoFence) -> Result<()> {
        let _only_one = self.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.deferred.store(false, Ordering::Relaxed);
        loop {
            let released: Vec<Image> = self
                .store
                .read()?
                .unowned_images()?
                .into_iter()
                .filter(|i| i.backend == self.name)
                .collect();
            let mut progressed = false;
            for data in released {
                if self.store.read()?.image_children(data.id)?.is_empty() {
                    progressed |= self.remove_released(&data)?;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    fn collect_deferred(&self) -> bool {
        self.deferred.load(Ordering::Relaxed)
    }

    fn open(&self, data: DataRef, writable: bool) -> Result<Arc<dyn BlockIo>> {
        let row = match self.store.read()?.image(data)? {
            Some(row) if row.backend == self.name => row,
            _ => {
                return Err(BackendError::Internal(format!(
                    "data {data} is not recorded on backend {}",
                    self.name
                )));
            }
        };
        let image = match row.kind.as_str() {
            SNAP => {
                let parent = row.parent.ok_or_else(|| {
                    BackendError::Internal(format!("snapshot {data} has no image"))
                })?;
                self.pool
                    .open(&image_name(parent), Some(&snap_name(data)), true)?
            }
            _ => self.pool.open(&image_name(data), None, !writable)?,
        };
        let size = image.size()?;
        Ok(Arc::new(RbdIo { image, size }))
    }

    /// From librbd's own knowledge (`rbd_diff_iterate2`): between two
    /// snapshots of one image, what was written or discarded; otherwise
    /// everything allocated, the parent's included.
    fn changed_ranges(&self, data: DataRef, since: Option<DataRef>) -> Result<crate::Changed> {
        let (row, since_row) = {
            let mut tx = self.store.read()?;
            (
                tx.image(data)?,
                since.map(|s| tx.image(s)).transpose()?.flatten(),
            )
        };
        let Some(row) = row.filter(|r| r.backend == self.name) else {
            return Ok(crate::Changed::Unknown);
        };
        let (image, snap) = match row.kind.as_str() {
            SNAP => match row.parent {
                Some(parent) => (parent, Some(snap_name(data))),
                None => return Ok(crate::Changed::Unknown),
            },
            _ => (data, None),
        };
        // A base is usable only if it is a snapshot of the same image.
        let from = since_row
            .filter(|s| s.kind == SNAP && s.parent == Some(image))
            .map(|s| snap_name(s.id));
        let opened = self.pool.open(&image_name(image), snap.as_deref(), true)?;
        // The base must be older than the end (librbd refuses otherwise):
        // snapshot ids grow with time.
        let from = match (&from, &snap) {
            (Some(base), Some(end)) => {
                let ids = opened.snap_ids()?;
                let at = |n: &str| ids.iter().find(|(_, s)| s == n).map(|(id, _)| *id);
                match (at(base), at(end)) {
                    (Some(b), Some(e)) if b < e => from,
                    _ => None,
                }
            }
            _ => from,
        };
        let extents = crate::join_ranges(opened.changed_extents(from.as_deref(), from.is_none())?);
        Ok(match from {
            Some(_) => crate::Changed::Since(extents),
            None => crate::Changed::All(extents),
        })
    }

    fn fence_node(&self, node: &str) -> Result<()> {
        self.fence(node, &self.pool.cluster().addrs()?)
    }

    /// Removes what a crash left unrecorded: images made for a revert or a
    /// create whose record never committed, snapshots staged for a freeze
    /// that never committed. Only names Ember gives (`ember-…`, `snap-…`)
    /// are touched. RBD needs no repair after a crash.
    fn recover(&self) -> Result<usize> {
        // Another live node may be between making data and recording it
        // (a snapshot staged, not yet recorded): with a shared store,
        // unrecorded data is left alone (see docs/multi-node.md).
        if self.store.shared() {
            return Ok(0);
        }
        let known: HashSet<DataRef> = self
            .store
            .read()?
            .all_images()?
            .into_iter()
            .map(|i| i.id)
            .collect();
        for name in self.pool.list()? {
            let Some(data) = parse_suffix(&name, "ember-") else {
                continue;
            };
            if !known.contains(&data) {
                tracing::info!(backend = %self.name, image = %name, "removing unrecorded RBD image");
                match self.pool.remove(&name) {
                    Err(e) if e.is_busy() => {
                        tracing::warn!(backend = %self.name, image = %name, error = %e, "unrecorded RBD image in use; left")
                    }
                    other => gone_ok(other)?,
                }
                continue;
            }
            let image = match self.pool.open(&name, None, false) {
                Ok(image) => image,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for snap in image.snaps()? {
                if let Some(s) = parse_suffix(&snap, "snap-")
                    && !known.contains(&s)
                {
                    tracing::info!(backend = %self.name, image = %name, snap = %snap, "removing unrecorded RBD snapshot");
                    gone_ok(image.snap_remove(&snap))?;
                }
            }
        }
        Ok(0)
    }

    fn native_attach(
        &self,
        volume: VolumeId,
        data: DataRef,
    ) -> Option<(String, serde_json::Map<String, serde_json::Value>)> {
        use serde_json::json;
        let NativeAttach {
            monitors,
            secret_uuid,
        } = self.native.as_ref()?;
        let name = match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.pool_name, image_name(data)),
            None => format!("{}/{}", self.pool_name, image_name(data)),
        };
        let mut out = serde_json::Map::new();
        out.insert("name".into(), json!(name));
        out.insert(
            "hosts".into(),
            json!(monitors.iter().map(|(h, _)| h).collect::<Vec<_>>()),
        );
        out.insert(
            "ports".into(),
            json!(
                monitors
                    .iter()
                    .map(|(_, p)| p.to_string())
                    .collect::<Vec<_>>()
            ),
        );
        out.insert("cluster_name".into(), json!("ceph"));
        out.insert("auth_enabled".into(), json!(true));
        out.insert("auth_username".into(), json!(self.user));
        out.insert("secret_type".into(), json!("ceph"));
        out.insert("secret_uuid".into(), json!(secret_uuid));
        out.insert("volume_id".into(), json!(volume.to_string()));
        out.insert("discard".into(), json!(true));
        Some(("rbd".into(), out))
    }

    fn audit(&self) -> Result<Vec<String>> {
        let mut problems = vec![];
        let mut tx = self.store.read()?;
        let all = tx.all_images()?;
        let known: HashSet<DataRef> = all.iter().map(|i| i.id).collect();
        let rows: Vec<&Image> = all.iter().filter(|i| i.backend == self.name).collect();
        let images: HashSet<String> = self.pool.list()?.into_iter().collect();
        for row in &rows {
            if !row.ready {
                problems.push(format!(
                    "{} {} was claimed and never made",
                    row.kind, row.id
                ));
            }
            if row.owner == ImageOwner::None && tx.image_children(row.id)?.is_empty() {
                problems.push(format!(
                    "released {} {} left behind with nothing reading through it",
                    row.kind, row.id
                ));
            }
            match row.kind.as_str() {
                // A foreign image not adopted yet still has its own name.
                IMAGE if !row.ready && row.label.is_some() => {
                    if !row.label.as_ref().is_some_and(|l| images.contains(l)) {
                        problems.push(format!("foreign image {:?} is gone", row.label));
                    }
                }
                IMAGE => {
                    if !images.contains(&image_name(row.id)) {
                        problems.push(format!("image {} is recorded but not in the pool", row.id));
                    }
                }
                SNAP => {
                    let on = row.parent.map(image_name).unwrap_or_default();
                    let snaps = self
                        .pool
                        .open(&on, None, true)
                        .and_then(|i| i.snaps())
                        .unwrap_or_default();
                    if !snaps.contains(&snap_name(row.id)) {
                        problems.push(format!("snapshot {} is recorded but not on {on}", row.id));
                    }
                }
                other => problems.push(format!("record {} of unknown kind {other:?}", row.id)),
            }
        }
        for name in &images {
            let Some(data) = parse_suffix(name, "ember-") else {
                continue;
            };
            if !known.contains(&data) {
                problems.push(format!("RBD image {name} has no record"));
                continue;
            }
            if let Ok(image) = self.pool.open(name, None, true) {
                for snap in image.snaps()? {
                    if parse_suffix(&snap, "snap-").is_some_and(|s| !known.contains(&s)) {
                        problems.push(format!("RBD snapshot {name}@{snap} has no record"));
                    }
                }
            }
        }
        drop(tx);
        for row in rows.iter().filter(|r| r.ready) {
            if let Err(e) = self.open(row.id, false) {
                problems.push(format!("{} {} does not open: {e}", row.kind, row.id));
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::monitors;

    #[test]
    fn monitor_addresses_in_every_form_ceph_writes() {
        assert_eq!(monitors("v2:127.0.0.1:3300"), [("127.0.0.1".into(), 3300)]);
        assert_eq!(
            monitors("[v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:10.0.0.2:3300/0,v1:10.0.0.2:6789/0]"),
            [("10.0.0.1".into(), 3300), ("10.0.0.2".into(), 3300)]
        );
        assert_eq!(
            monitors("10.0.0.1:6789, 10.0.0.2"),
            [("10.0.0.1".into(), 6789), ("10.0.0.2".into(), 6789)]
        );
    }
}
