//! The embedded backend: every volume a chain of qcow2 files in one
//! directory, every snapshot a frozen layer of its volume's chain.
//!
//! ```text
//!   snapshot:  base <- top (frozen: the snapshot) <- new top (the volume)
//!   clone:     base <- top (frozen, unowned) <- source's new top
//!                                            <- clone's top
//!   revert:    snapshot's layer <- new top (the old top is released)
//! ```
//!
//! Every operation is O(1) in the volume's size: a new layer is an empty
//! file. Which layer reads through which, and who owns each, is recorded
//! in the metadata store's `images` records (this backend's only); the
//! files are never asked. Released layers are merged into their only child
//! or deleted by the garbage collector (`gc`).

mod gc;

use crate::{BackendError, DataRef, FileChains, Frozen, IoFence, Result, VolumeBackend};
use ember_model::{Image, ImageOwner, SnapshotId, Timestamp, VolumeId};
use ember_storage::{BlockIo, Capacity, Chain, StorageDriver};
use ember_store::{MetadataStore, Tx};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

pub struct Qcow2Backend {
    name: String,
    pool: String,
    driver: Arc<dyn StorageDriver>,
    store: Arc<dyn MetadataStore>,
    /// Read-held from reading a chain out of the store until its files are
    /// open; write-held by garbage collection from the commit that unlinks
    /// an image until its file is gone. Without it a reader could list an
    /// image that is deleted before it opens the file.
    chain_files: RwLock<()>,
    /// One garbage collection at a time.
    gc_lock: Mutex<()>,
}

impl Qcow2Backend {
    pub fn new(
        name: impl Into<String>,
        driver: Arc<dyn StorageDriver>,
        store: Arc<dyn MetadataStore>,
    ) -> Self {
        let name = name.into();
        Qcow2Backend {
            pool: name.clone(),
            name,
            driver,
            store,
            chain_files: RwLock::new(()),
            gc_lock: Mutex::new(()),
        }
    }

    /// The embedded default: backend and pool `qcow2`.
    pub fn embedded(driver: Arc<dyn StorageDriver>, store: Arc<dyn MetadataStore>) -> Self {
        Self::new(ember_model::DEFAULT_BACKEND, driver, store)
    }

    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    fn row(&self, image: DataRef, owner: ImageOwner, parent: Option<DataRef>, size: u64) -> Image {
        Image {
            id: image,
            parent,
            size_bytes: size,
            owner,
            created_at: Timestamp::now(),
            backend: self.name.clone(),
            ready: true,
            kind: String::new(),
            label: None,
        }
    }

    /// The recorded image `id`, which must be this backend's.
    fn own_row(&self, tx: &mut dyn Tx, id: DataRef) -> Result<Image> {
        match tx.image(id)? {
            Some(image) if image.backend == self.name => Ok(image),
            Some(image) => Err(BackendError::Internal(format!(
                "image {id} belongs to backend {}, not {}",
                image.backend, self.name
            ))),
            None => Err(BackendError::Internal(format!(
                "image {id} is missing from the metadata store"
            ))),
        }
    }

    /// The chain under `top`, as the metadata store records it. Only names:
    /// to touch the files, go through `with_chain`.
    pub(crate) fn chain_of(tx: &mut dyn Tx, top: DataRef) -> Result<Chain> {
        let mut images = vec![top];
        let mut current = top;
        while let Some(image) = tx.image(current)? {
            match image.parent {
                Some(parent) => {
                    if images.contains(&parent) || images.len() > 100_000 {
                        return Err(BackendError::Internal(format!(
                            "image chain of {top} loops"
                        )));
                    }
                    images.push(parent);
                    current = parent;
                }
                None => return Ok(Chain { images }),
            }
        }
        Err(BackendError::Internal(format!(
            "image {current} is missing from the metadata store"
        )))
    }

    /// The one way to reach a chain's files: reads the chain under `top`
    /// from the store and runs `f` on it while garbage collection can
    /// neither remove nor rewrite any of its files. A chain read without
    /// this can name a file that is gone, or half-merged, by the time it
    /// is opened.
    fn with_chain<R>(&self, top: DataRef, f: impl FnOnce(&Chain) -> Result<R>) -> Result<R> {
        let _files = self.chain_files.read().unwrap_or_else(|p| p.into_inner());
        let chain = Self::chain_of(self.store.read()?.as_mut(), top)?;
        f(&chain)
    }

    fn orphan_sweep(&self) -> Result<usize> {
        // Image ids are unique across backends: a file is an orphan only if
        // no backend's record names it.
        let known: HashSet<DataRef> = self
            .store
            .read()?
            .all_images()?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let mut removed = 0;
        for image in self.driver.list_images()? {
            if !known.contains(&image) {
                tracing::info!(backend = %self.name, image = %image, "removing orphan image file");
                self.driver.delete_image(image)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl VolumeBackend for Qcow2Backend {
    fn name(&self) -> &str {
        &self.name
    }

    fn pool(&self) -> &str {
        &self.pool
    }

    fn driver(&self) -> &'static str {
        "qcow2"
    }

    fn capabilities(&self) -> Vec<(&'static str, String)> {
        vec![
            ("vendor_name", "Ember".into()),
            ("storage_protocol", "nbd".into()),
            ("driver_version", env!("CARGO_PKG_VERSION").into()),
            ("thin_provisioning_support", "True".into()),
            ("thick_provisioning_support", "False".into()),
            ("QoS_support", "False".into()),
            ("multiattach", "True".into()),
        ]
    }

    fn capacity(&self) -> Result<Capacity> {
        Ok(self.driver.capacity()?)
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
            self.own_row(tx, from)?;
        }
        let mut row = self.row(data, ImageOwner::Volume(volume), from, size);
        row.ready = false;
        tx.put_image(&row)?;
        Ok(())
    }

    fn make(&self, data: DataRef) -> Result<()> {
        let claim = self.own_row(self.store.read()?.as_mut(), data)?;
        if claim.ready && self.driver.image_exists(data) {
            return Ok(()); // made: it may hold writes now
        }
        self.driver
            .create_image(data, claim.size_bytes, claim.parent)?;
        if !claim.ready {
            let mut tx = self.store.write()?;
            if let Some(mut row) = tx.image(data)? {
                row.ready = true;
                tx.put_image(&row)?;
                tx.commit()?;
            }
        }
        Ok(())
    }

    fn recorded(&self, tx: &mut dyn Tx, data: DataRef) -> Result<bool> {
        Ok(tx.image(data)?.is_some())
    }

    fn stage_freeze(&self, data: DataRef, fresh: DataRef, size: u64, grouped: bool) -> Result<()> {
        // Nothing references `fresh` until the record commits, so creating
        // it again on a re-run is safe.
        if grouped {
            self.driver.create_image_unsynced(fresh, size, Some(data))?;
        } else {
            self.driver.create_image(fresh, size, Some(data))?;
        }
        Ok(())
    }

    fn record_freeze(
        &self,
        tx: &mut dyn Tx,
        volume: VolumeId,
        data: DataRef,
        fresh: DataRef,
        size: u64,
        snapshot: Option<SnapshotId>,
    ) -> Result<Frozen> {
        let mut frozen = self.own_row(tx, data)?;
        frozen.owner = snapshot.map_or(ImageOwner::None, ImageOwner::Snapshot);
        tx.put_image(&frozen)?;
        tx.put_image(&self.row(fresh, ImageOwner::Volume(volume), Some(data), size))?;
        Ok(Frozen {
            volume_data: fresh,
            frozen: data,
        })
    }

    fn instant_freeze(&self) -> bool {
        true // an empty file and a directory entry
    }

    fn barrier(&self) -> Result<()> {
        Ok(self.driver.sync_created()?)
    }

    fn abandon(&self, _data: Option<DataRef>, fresh: DataRef) -> Result<()> {
        if self.store.read()?.image(fresh)?.is_none() {
            self.driver.delete_image(fresh)?;
        }
        Ok(())
    }

    fn stage_revert(&self, frozen: DataRef, fresh: DataRef, size: u64) -> Result<()> {
        Ok(self.driver.create_image(fresh, size, Some(frozen))?)
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
        tx.put_image(&self.row(fresh, ImageOwner::Volume(volume), Some(frozen), size))?;
        Ok(fresh)
    }

    fn grow(&self, data: DataRef, new_size: u64) -> Result<()> {
        self.with_chain(data, |chain| Ok(self.driver.grow(chain, new_size)?))?;
        let mut tx = self.store.write()?;
        if let Some(mut image) = tx.image(data)? {
            image.size_bytes = new_size;
            tx.put_image(&image)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn release(&self, tx: &mut dyn Tx, data: DataRef) -> Result<()> {
        if let Some(mut image) = tx.image(data)? {
            image.owner = ImageOwner::None;
            tx.put_image(&image)?;
        }
        Ok(())
    }

    fn collect(&self, fence: &dyn IoFence) -> Result<()> {
        gc::collect_garbage(self, fence)
    }

    fn open(&self, data: DataRef, writable: bool) -> Result<Arc<dyn BlockIo>> {
        self.with_chain(data, |chain| Ok(self.driver.open(chain, writable)?))
    }

    fn recover(&self) -> Result<usize> {
        self.driver.remove_temporaries()?;
        let marked = self.driver.repair_after_crash()?;
        let removed = self.orphan_sweep()?;
        if removed > 0 {
            tracing::info!(backend = %self.name, removed, "removed orphan image files");
        }
        Ok(marked.len())
    }

    fn repair_marked(&self) -> Result<usize> {
        Ok(self.driver.repair_marked()?)
    }

    fn audit(&self) -> Result<Vec<String>> {
        let mut problems = vec![];
        let mut tx = self.store.read()?;
        let all = tx.all_images()?;
        let known: HashSet<DataRef> = all.iter().map(|i| i.id).collect();
        let rows: Vec<&Image> = all.iter().filter(|i| i.backend == self.name).collect();
        let files: HashSet<DataRef> = self.driver.list_images()?.into_iter().collect();
        for image in &rows {
            if !files.contains(&image.id) {
                problems.push(format!("image {} is recorded but has no file", image.id));
            }
            if !image.ready {
                problems.push(format!("image {} was claimed and never made", image.id));
            }
            if image.owner == ImageOwner::None {
                let children = tx.image_children(image.id)?.len();
                if children < 2 {
                    problems.push(format!(
                        "released image {} left behind with {children} children",
                        image.id
                    ));
                }
            }
        }
        for file in &files {
            if !known.contains(file) {
                problems.push(format!("file of image {file} has no record"));
            }
        }
        drop(tx);
        for image in rows.iter().filter(|i| files.contains(&i.id)) {
            if let Err(e) = self.open(image.id, false) {
                problems.push(format!("image {} does not open: {e}", image.id));
            }
        }
        Ok(problems)
    }

    /// The layers above `since` are all that can differ from it: layers
    /// at and below a held point only ever receive merges of layers below
    /// them, which leave what they read unchanged.
    fn changed_ranges(&self, data: DataRef, since: Option<DataRef>) -> Result<crate::Changed> {
        self.with_chain(data, |chain| {
            // `since` must lie below `data` itself to be a base.
            let base = since.and_then(|s| chain.images.iter().skip(1).position(|i| *i == s));
            let above = base.map_or(chain.images.len(), |p| p + 1);
            let mut ranges = Vec::new();
            for depth in 0..above {
                let layer = Chain {
                    images: chain.images[depth..].to_vec(),
                };
                match self.driver.own_ranges(&layer)? {
                    Some(own) => ranges.extend(own),
                    None => return Ok(crate::Changed::Unknown),
                }
            }
            let ranges = crate::join_ranges(ranges);
            Ok(match base {
                Some(_) => crate::Changed::Since(ranges),
                None => crate::Changed::All(ranges),
            })
        })
    }

    fn in_lineage(&self, tx: &mut dyn Tx, frozen: DataRef, volume_data: DataRef) -> Result<bool> {
        Ok(Self::chain_of(tx, volume_data)?.images[1..].contains(&frozen))
    }

    fn files(&self) -> Option<&dyn FileChains> {
        Some(self)
    }
}

impl FileChains for Qcow2Backend {
    fn is_special_entry(&self, name: &str) -> bool {
        self.driver.is_special_entry(name)
    }

    fn data_named(&self, name: &str) -> Option<DataRef> {
        name.strip_suffix(".qcow2")
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .map(ember_model::ImageId)
    }

    fn chain(&self, tx: &mut dyn Tx, data: DataRef) -> Result<Vec<DataRef>> {
        Ok(Self::chain_of(tx, data)?.images)
    }

    fn exists(&self, tx: &mut dyn Tx, data: DataRef) -> Result<bool> {
        Ok(tx.image(data)?.is_some() || self.driver.image_exists(data))
    }
}
