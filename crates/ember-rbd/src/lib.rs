//! Ceph's librados and librbd, through their C API, with a small safe
//! wrapper: a connected cluster, a pool, an image.
//!
//! The libraries are loaded when the first cluster connects
//! (`librados.so.2`, `librbd.so.1`, as Debian's `librados2`/`librbd1`
//! install them), not linked: the `ember` binary runs where Ceph is not
//! installed, and only a configured RBD backend needs them. No crate
//! covers librbd's calls (see NOTES.md, "Crates"), and the C API is
//! stable: librbd only adds symbols under SONAME `librbd.so.1`.
//!
//! Every call blocks; callers run them off the async runtime. Cluster,
//! pool and image handles are safe to share between threads, as
//! librados and librbd document for their handles.

mod api;

use api::{Api, ImageSpec, SnapInfo};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A failed call: which one, and the errno it returned.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {}", std::io::Error::from_raw_os_error(*errno))]
pub struct RbdError {
    pub op: &'static str,
    pub errno: i32,
}

impl RbdError {
    pub fn is_not_found(&self) -> bool {
        self.errno == libc_errno::ENOENT
    }
    pub fn is_exists(&self) -> bool {
        self.errno == libc_errno::EEXIST
    }
    pub fn is_busy(&self) -> bool {
        self.errno == libc_errno::EBUSY || self.errno == libc_errno::ENOTEMPTY
    }
    /// The image changed under the call (another client removed or
    /// renamed it meanwhile).
    pub fn is_stale(&self) -> bool {
        self.errno == libc_errno::ESTALE
    }
    pub fn is_no_space(&self) -> bool {
        self.errno == libc_errno::ENOSPC || self.errno == libc_errno::EDQUOT
    }
}

/// The errno values the wrapper tells apart (Linux).
pub mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const ENOTEMPTY: i32 = 39;
    pub const ESTALE: i32 = 116;
    pub const EDQUOT: i32 = 122;
}

pub type Result<T> = std::result::Result<T, RbdError>;

fn check(op: &'static str, rc: c_int) -> Result<c_int> {
    if rc < 0 {
        Err(RbdError { op, errno: -rc })
    } else {
        Ok(rc)
    }
}

fn cstr(op: &'static str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| RbdError {
        op,
        errno: libc_errno::EINVAL,
    })
}

/// How to reach a cluster.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions<'a> {
    /// The cluster's configuration file (`None`: librados' search path).
    pub conf: Option<&'a Path>,
    /// The user, without `client.` (default `admin`).
    pub user: Option<&'a str>,
    /// The user's keyring (`None`: what the configuration says).
    pub keyring: Option<&'a Path>,
    /// Further configuration options, set after the file is read.
    pub options: &'a [(&'a str, &'a str)],
}

struct ClusterHandle {
    api: &'static Api,
    raw: api::RadosT,
}

// librados documents a cluster handle as safe to use from many threads.
unsafe impl Send for ClusterHandle {}
unsafe impl Sync for ClusterHandle {}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        unsafe { (self.api.rados_shutdown)(self.raw) }
    }
}

/// A connected cluster. Cheap to clone; the connection (and its ~20
/// librados threads) closes when the last clone, pool and image is gone.
#[derive(Clone)]
pub struct Cluster(Arc<ClusterHandle>);

impl Cluster {
    /// Loads the libraries (once per process) and connects.
    pub fn connect(options: &ConnectOptions) -> Result<Cluster> {
        let api = api::load().map_err(|op| RbdError {
            op,
            errno: libc_errno::ENOENT,
        })?;
        let user = cstr(
            "rados_create2",
            &format!("client.{}", options.user.unwrap_or("admin")),
        )?;
        let cluster_name = cstr("rados_create2", "ceph")?;
        let mut raw: api::RadosT = std::ptr::null_mut();
        check("rados_create2", unsafe {
            (api.rados_create2)(&mut raw, cluster_name.as_ptr(), user.as_ptr(), 0)
        })?;
        // From here on the handle is shut down on every error path.
        let handle = ClusterHandle { api, raw };
        let conf = options
            .conf
            .map(|p| cstr("rados_conf_read_file", &p.to_string_lossy()));
        let conf = conf.transpose()?;
        check("rados_conf_read_file", unsafe {
            (api.rados_conf_read_file)(raw, conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
        })?;
        let set = |k: &str, v: &str| -> Result<()> {
            let (k, v) = (cstr("rados_conf_set", k)?, cstr("rados_conf_set", v)?);
            check("rados_conf_set", unsafe {
                (api.rados_conf_set)(raw, k.as_ptr(), v.as_ptr())
            })?;
            Ok(())
        };
        if let Some(keyring) = options.keyring {
            set("keyring", &keyring.to_string_lossy())?;
        }
        // librbd wakes the caller of `rbd_open` and only then takes the
        // image's state lock again (`ImageState::complete_action_unlock`):
        // a caller that closes at once can have the close complete on
        // librados' *other* callback thread and free the image before that
        // lock is taken again: a use-after-free that hung `rbd_close` or
        // aborted the process under load (seen in the workflow suite). With
        // one callback thread the close's completions queue behind the
        // open's. Callbacks are short; the OSDs do the work.
        set("librados_thread_count", "1")?;
        for (k, v) in options.options {
            set(k, v)?;
        }
        check("rados_connect", unsafe { (api.rados_connect)(raw) })?;
        Ok(Cluster(Arc::new(handle)))
    }

    /// A configuration value as the connected client sees it.
    pub fn conf(&self, option: &str) -> Result<String> {
        let key = cstr("rados_conf_get", option)?;
        let mut buf = vec![0u8; 4096];
        check("rados_conf_get", unsafe {
            (self.0.api.rados_conf_get)(
                self.0.raw,
                key.as_ptr(),
                buf.as_mut_ptr() as *mut c_char,
                buf.len(),
            )
        })?;
        let text = CStr::from_bytes_until_nul(&buf).map_err(|_| RbdError {
            op: "rados_conf_get",
            errno: libc_errno::EINVAL,
        })?;
        Ok(text.to_string_lossy().into_owned())
    }

    /// This client's addresses, as the cluster would blocklist them.
    pub fn addrs(&self) -> Result<String> {
        let mut out: *mut c_char = std::ptr::null_mut();
        check("rados_getaddrs", unsafe {
            (self.0.api.rados_getaddrs)(self.0.raw, &mut out)
        })?;
        if out.is_null() {
            return Ok(String::new());
        }
        let text = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        unsafe { (self.0.api.free)(out as *mut std::ffi::c_void) };
        Ok(text)
    }

    /// Fences a client off the OSDs for `seconds`: its writes fail, its
    /// watches (and so its exclusive locks) go at once.
    pub fn blocklist(&self, addrs: &str, seconds: u32) -> Result<()> {
        let c = cstr("rados_blocklist_add", addrs)?;
        check("rados_blocklist_add", unsafe {
            (self.0.api.rados_blocklist_add)(self.0.raw, c.as_ptr() as *mut c_char, seconds)
        })?;
        Ok(())
    }

    /// Raw size and free space of the cluster, in bytes.
    pub fn stat(&self) -> Result<(u64, u64)> {
        let mut stat = api::ClusterStat::default();
        check("rados_cluster_stat", unsafe {
            (self.0.api.rados_cluster_stat)(self.0.raw, &mut stat)
        })?;
        Ok((
            stat.kb.saturating_mul(1024),
            stat.kb_avail.saturating_mul(1024),
        ))
    }

    /// Opens a pool (an I/O context) by name, in one of its RBD
    /// namespaces (created when missing) or the default one.
    pub fn pool(&self, name: &str, namespace: Option<&str>) -> Result<Pool> {
        let c = cstr("rados_ioctx_create", name)?;
        let mut raw: api::IoctxT = std::ptr::null_mut();
        check("rados_ioctx_create", unsafe {
            (self.0.api.rados_ioctx_create)(self.0.raw, c.as_ptr(), &mut raw)
        })?;
        let pool = Pool(Arc::new(PoolHandle {
            cluster: self.clone(),
            raw,
            handles: Mutex::new(Handles::default()),
        }));
        if let Some(ns) = namespace {
            let ns = cstr("rbd_namespace_create", ns)?;
            match check("rbd_namespace_create", unsafe {
                (self.0.api.rbd_namespace_create)(raw, ns.as_ptr())
            }) {
                Err(e) if e.is_exists() => {}
                other => {
                    other?;
                }
            }
            unsafe { (self.0.api.rados_ioctx_set_namespace)(raw, ns.as_ptr()) };
        }
        Ok(pool)
    }
}

struct PoolHandle {
    cluster: Cluster,
    raw: api::IoctxT,
    handles: Mutex<Handles>,
}

/// The images (`name`) and snapshots (`name@snap`) this process has open
/// in the pool, and those it is removing. librbd refuses to remove an
/// image only while it has *watchers*, and a read-only handle (every
/// snapshot reader) registers none, nor does a handle still opening; a
/// removal would pull the data from under them, and a writable handle
/// whose header vanished can hang librbd's close. So removals of what this
/// process has open are refused here (EBUSY, as librbd would), and opens
/// of what it is removing fail at once (ENOENT, as they would after).
#[derive(Default)]
struct Handles {
    open: HashMap<String, usize>,
    removing: HashSet<String>,
}

impl Handles {
    fn is_open(&self, key: &str) -> bool {
        self.open.contains_key(key)
    }

    /// Whether the image `name` or any snapshot of it is open.
    fn any_open(&self, name: &str) -> bool {
        self.open.keys().any(|k| {
            k == name
                || k.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('@'))
        })
    }
}

// An I/O context may be used from many threads (librados).
unsafe impl Send for PoolHandle {}
unsafe impl Sync for PoolHandle {}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        unsafe { (self.cluster.0.api.rados_ioctx_destroy)(self.raw) }
    }
}

/// Ceph's default image features since Octopus: layering, exclusive-lock,
/// object-map, fast-diff, deep-flatten.
pub const DEFAULT_FEATURES: u64 = 1 | 4 | 8 | 16 | 32;

/// One RADOS pool holding RBD images.
#[derive(Clone)]
pub struct Pool(Arc<PoolHandle>);

impl Pool {
    /// What this process has open or is removing in the pool (a poisoned
    /// lock still guards consistent counts: every update is one step).
    fn handles(&self) -> std::sync::MutexGuard<'_, Handles> {
        self.0.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn api(&self) -> &'static Api {
        self.0.cluster.0.api
    }

    pub fn cluster(&self) -> &Cluster {
        &self.0.cluster
    }

    /// Replaces the whole of RADOS object `oid` (in the pool's namespace).
    pub fn write_object(&self, oid: &str, data: &[u8]) -> Result<()> {
        let c = cstr("rados_write_full", oid)?;
        check("rados_write_full", unsafe {
            (self.api().rados_write_full)(
                self.0.raw,
                c.as_ptr(),
                data.as_ptr() as *const c_char,
                data.len(),
            )
        })?;
        Ok(())
    }

    /// Up to `max` bytes of RADOS object `oid`; None when it does not exist.
    pub fn read_object(&self, oid: &str, max: usize) -> Result<Option<Vec<u8>>> {
        let c = cstr("rados_read", oid)?;
        let mut buf = vec![0u8; max];
        let rc = unsafe {
            (self.api().rados_read)(
                self.0.raw,
                c.as_ptr(),
                buf.as_mut_ptr() as *mut c_char,
                buf.len(),
                0,
            )
        };
        match check("rados_read", rc) {
            Ok(n) => {
                buf.truncate(n as usize);
                Ok(Some(buf))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a thin image of `size` bytes with the default features.
    pub fn create(&self, name: &str, size: u64) -> Result<()> {
        let c = cstr("rbd_create2", name)?;
        let mut order: c_int = 0;
        check("rbd_create2", unsafe {
            (self.api().rbd_create2)(self.0.raw, c.as_ptr(), size, DEFAULT_FEATURES, &mut order)
        })?;
        Ok(())
    }

    /// Clones `parent@snap` as `child` in this pool (clone v2 when the
    /// client asks for it with `rbd_default_clone_format = 2`: no
    /// protection needed, and the snapshot may be removed while clones
    /// live, into the trash).
    pub fn clone_image(&self, parent: &str, snap: &str, child: &str) -> Result<()> {
        let (p, s, c) = (
            cstr("rbd_clone2", parent)?,
            cstr("rbd_clone2", snap)?,
            cstr("rbd_clone2", child)?,
        );
        let mut order: c_int = 0;
        check("rbd_clone2", unsafe {
            (self.api().rbd_clone2)(
                self.0.raw,
                p.as_ptr(),
                s.as_ptr(),
                self.0.raw,
                c.as_ptr(),
                DEFAULT_FEATURES,
                &mut order,
                0,
                0,
            )
        })?;
        Ok(())
    }

    /// Removes an image (it must have no snapshots, no watchers, and no
    /// handle open in this process: EBUSY otherwise).
    pub fn remove(&self, name: &str) -> Result<()> {
        let c = cstr("rbd_remove", name)?;
        let _removing = self.begin_removal("rbd_remove", name, name)?;
        check("rbd_remove", unsafe {
            (self.api().rbd_remove)(self.0.raw, c.as_ptr())
        })?;
        Ok(())
    }

    /// Marks `key` (an image, or `image@snap`) as being removed until the
    /// guard drops; EBUSY if this process has it open (for an image: it
    /// or any of its snapshots).
    fn begin_removal(&self, op: &'static str, name: &str, key: &str) -> Result<Removal> {
        let mut handles = self.handles();
        let busy = if key == name {
            handles.any_open(name)
        } else {
            handles.is_open(key)
        };
        if busy || handles.removing.contains(key) {
            return Err(RbdError {
                op,
                errno: libc_errno::EBUSY,
            });
        }
        handles.removing.insert(key.to_string());
        Ok(Removal {
            pool: self.clone(),
            key: key.to_string(),
        })
    }

    /// Renames an image within the pool (its data and snapshots stay).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (cstr("rbd_rename", from)?, cstr("rbd_rename", to)?);
        check("rbd_rename", unsafe {
            (self.api().rbd_rename)(self.0.raw, f.as_ptr(), t.as_ptr())
        })?;
        Ok(())
    }

    /// Names of every image in the pool (not those in the trash).
    pub fn list(&self) -> Result<Vec<String>> {
        let mut max: usize = 64;
        loop {
            let mut specs = vec![ImageSpec::default(); max];
            let rc = unsafe { (self.api().rbd_list2)(self.0.raw, specs.as_mut_ptr(), &mut max) };
            if rc == -34 {
                continue; // ERANGE: `max` now says how many there are
            }
            check("rbd_list2", rc)?;
            let names = specs[..max]
                .iter()
                .map(|s| {
                    unsafe { CStr::from_ptr(s.name) }
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            unsafe { (self.api().rbd_image_spec_list_cleanup)(specs.as_mut_ptr(), max) };
            return Ok(names);
        }
    }

    /// Opens an image, or one of its snapshots (read-only), for I/O.
    pub fn open(&self, name: &str, snap: Option<&str>, read_only: bool) -> Result<Image> {
        let c = cstr("rbd_open", name)?;
        let s = snap.map(|s| cstr("rbd_open", s)).transpose()?;
        let key = snap.map_or_else(|| name.to_string(), |snap| format!("{name}@{snap}"));
        // Counted before librbd opens it, so a removal starting meanwhile
        // sees it; released by `Image`'s drop, or below on failure.
        {
            let mut handles = self.handles();
            if handles.removing.contains(name) || handles.removing.contains(&key) {
                return Err(RbdError {
                    op: "rbd_open",
                    errno: libc_errno::ENOENT,
                });
            }
            *handles.open.entry(key.clone()).or_default() += 1;
        }
        let counted = Counted {
            pool: self.clone(),
            key,
        };
        let snap_ptr = s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let mut raw: api::ImageT = std::ptr::null_mut();
        let rc = unsafe {
            if read_only || snap.is_some() {
                (self.api().rbd_open_read_only)(self.0.raw, c.as_ptr(), &mut raw, snap_ptr)
            } else {
                (self.api().rbd_open)(self.0.raw, c.as_ptr(), &mut raw, snap_ptr)
            }
        };
        check("rbd_open", rc)?;
        Ok(Image {
            raw,
            name: name.to_string(),
            counted,
        })
    }
}

/// One open handle counted in the pool's `Handles`, uncounted on drop.
struct Counted {
    pool: Pool,
    key: String,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut handles = self.pool.handles();
        if let Some(n) = handles.open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                handles.open.remove(&self.key);
            }
        }
    }
}

/// A removal in progress (see `Handles`), ended on drop.
struct Removal {
    pool: Pool,
    key: String,
}

impl Drop for Removal {
    fn drop(&mut self) {
        let mut handles = self.pool.handles();
        handles.removing.remove(&self.key);
    }
}

/// An open image (or snapshot of one).
pub struct Image {
    raw: api::ImageT,
    name: String,
    // Dropped after `rbd_close` (fields drop after `Drop::drop`): the
    // handle counts as open until librbd has closed it.
    counted: Counted,
}

// librbd serializes operations on an image handle internally; I/O from
// several threads at once is supported.
unsafe impl Send for Image {}
unsafe impl Sync for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        unsafe { (self.api().rbd_close)(self.raw) };
    }
}

impl Image {
    fn api(&self) -> &'static Api {
        self.counted.pool.api()
    }

    pub fn size(&self) -> Result<u64> {
        let mut size = 0u64;
        check("rbd_get_size", unsafe {
            (self.api().rbd_get_size)(self.raw, &mut size)
        })?;
        Ok(size)
    }

    pub fn resize(&self, size: u64) -> Result<()> {
        check("rbd_resize", unsafe {
            (self.api().rbd_resize)(self.raw, size)
        })?;
        Ok(())
    }

    pub fn snap_create(&self, snap: &str) -> Result<()> {
        let c = cstr("rbd_snap_create", snap)?;
        check("rbd_snap_create", unsafe {
            (self.api().rbd_snap_create)(self.raw, c.as_ptr())
        })?;
        Ok(())
    }

    /// Removes a snapshot (EBUSY while this process reads it).
    pub fn snap_remove(&self, snap: &str) -> Result<()> {
        let c = cstr("rbd_snap_remove", snap)?;
        let _removing = self.counted.pool.begin_removal(
            "rbd_snap_remove",
            &self.name,
            &format!("{}@{snap}", self.name),
        )?;
        check("rbd_snap_remove", unsafe {
            (self.api().rbd_snap_remove)(self.raw, c.as_ptr())
        })?;
        Ok(())
    }

    /// Rolls the image back to a snapshot by copying every object: time
    /// in proportion to the image's size (measured, not used by Ember).
    pub fn snap_rollback(&self, snap: &str) -> Result<()> {
        let c = cstr("rbd_snap_rollback", snap)?;
        check("rbd_snap_rollback", unsafe {
            (self.api().rbd_snap_rollback)(self.raw, c.as_ptr())
        })?;
        Ok(())
    }

    /// Names of the image's snapshots (not those in the trash).
    pub fn snaps(&self) -> Result<Vec<String>> {
        Ok(self.snap_ids()?.into_iter().map(|(_, name)| name).collect())
    }

    /// The image's snapshots with their ids (ids grow with time).
    pub fn snap_ids(&self) -> Result<Vec<(u64, String)>> {
        let mut max: c_int = 16;
        loop {
            let mut infos = vec![SnapInfo::default(); max as usize + 1];
            let rc = unsafe { (self.api().rbd_snap_list)(self.raw, infos.as_mut_ptr(), &mut max) };
            if rc == -34 {
                continue; // ERANGE: `max` now says how many there are
            }
            let n = check("rbd_snap_list", rc)? as usize;
            let names = infos[..n]
                .iter()
                .map(|s| {
                    (
                        s.id,
                        unsafe { CStr::from_ptr(s.name) }
                            .to_string_lossy()
                            .into_owned(),
                    )
                })
                .collect();
            unsafe { (self.api().rbd_snap_list_end)(infos.as_mut_ptr()) };
            return Ok(names);
        }
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let rc = unsafe {
                (self.api().rbd_read)(
                    self.raw,
                    offset + done as u64,
                    buf.len() - done,
                    buf[done..].as_mut_ptr() as *mut c_char,
                )
            };
            if rc < 0 {
                return Err(RbdError {
                    op: "rbd_read",
                    errno: -rc as i32,
                });
            }
            if rc == 0 {
                // Past the end: librbd returns short reads only there.
                buf[done..].fill(0);
                break;
            }
            done += rc as usize;
        }
        Ok(())
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let rc = unsafe {
                (self.api().rbd_write)(
                    self.raw,
                    offset + done as u64,
                    buf.len() - done,
                    buf[done..].as_ptr() as *const c_char,
                )
            };
            if rc <= 0 {
                return Err(RbdError {
                    op: "rbd_write",
                    errno: if rc == 0 {
                        libc_errno::EINVAL
                    } else {
                        -rc as i32
                    },
                });
            }
            done += rc as usize;
        }
        Ok(())
    }

    pub fn write_zeroes(&self, offset: u64, length: u64) -> Result<()> {
        // librbd takes a size_t; chunk to stay far below any limit.
        const CHUNK: u64 = 1 << 30;
        let mut done = 0;
        while done < length {
            let n = (length - done).min(CHUNK);
            let rc =
                unsafe { (self.api().rbd_write_zeroes)(self.raw, offset + done, n as usize, 0, 0) };
            if rc < 0 {
                return Err(RbdError {
                    op: "rbd_write_zeroes",
                    errno: -rc as i32,
                });
            }
            done += n;
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        check("rbd_flush", unsafe { (self.api().rbd_flush)(self.raw) })?;
        Ok(())
    }

    /// The extents (offset, length) that differ between snapshot
    /// `from_snap` and this image (or the snapshot it was opened at),
    /// written or discarded; with no `from_snap`, every allocated extent
    /// (with `include_parent`, the parent's too). librbd may over-report
    /// (whole objects created since), never under-report.
    pub fn changed_extents(
        &self,
        from_snap: Option<&str>,
        include_parent: bool,
    ) -> Result<Vec<(u64, u64)>> {
        let size = self.size()?;
        self.changed_extents_in(from_snap, include_parent, 0, size)
    }

    /// `changed_extents` within `[offset, offset + length)`.
    pub fn changed_extents_in(
        &self,
        from_snap: Option<&str>,
        include_parent: bool,
        offset: u64,
        length: u64,
    ) -> Result<Vec<(u64, u64)>> {
        unsafe extern "C" fn collect(
            offset: u64,
            len: usize,
            _exists: std::ffi::c_int,
            arg: *mut std::ffi::c_void,
        ) -> std::ffi::c_int {
            // SAFETY: `arg` is the Vec passed below, alive for the call.
            let out = unsafe { &mut *(arg as *mut Vec<(u64, u64)>) };
            out.push((offset, len as u64));
            0
        }
        let from = from_snap
            .map(|s| cstr("rbd_diff_iterate2", s))
            .transpose()?;
        let mut out: Vec<(u64, u64)> = Vec::new();
        check("rbd_diff_iterate2", unsafe {
            (self.api().rbd_diff_iterate2)(
                self.raw,
                from.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                offset,
                length,
                u8::from(include_parent),
                0,
                collect,
                &mut out as *mut Vec<(u64, u64)> as *mut std::ffi::c_void,
            )
        })?;
        Ok(out)
    }

    /// Copies what the image reads from its parent into it, so it no
    /// longer depends on the parent's snapshot.
    pub fn flatten(&self) -> Result<()> {
        check("rbd_flatten", unsafe { (self.api().rbd_flatten)(self.raw) })?;
        Ok(())
    }
}
