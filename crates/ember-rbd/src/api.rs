//! The C functions used, resolved from the shared libraries once per
//! process. Signatures as in Ceph 16's `rados/librados.h` and
//! `rbd/librbd.h`.

use libloading::Library;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

pub type RadosT = *mut c_void;
pub type IoctxT = *mut c_void;
pub type ImageT = *mut c_void;

#[repr(C)]
#[derive(Default)]
pub struct ClusterStat {
    pub kb: u64,
    pub kb_used: u64,
    pub kb_avail: u64,
    pub num_objects: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SnapInfo {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

impl Default for SnapInfo {
    fn default() -> Self {
        SnapInfo {
            id: 0,
            size: 0,
            name: std::ptr::null(),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ImageSpec {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            id: std::ptr::null_mut(),
            name: std::ptr::null_mut(),
        }
    }
}

macro_rules! api {
    ($($lib:ident : $name:ident : fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        pub struct Api {
            $(pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            _libs: (Library, Library),
        }

        fn resolve(rados: Library, rbd: Library) -> Result<Api, libloading::Error> {
            Ok(Api {
                $($name: unsafe {
                    *$lib(&rados, &rbd).get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                        concat!(stringify!($name), "\0").as_bytes(),
                    )?
                },)*
                _libs: (rados, rbd),
            })
        }
    };
}

fn rados<'a>(rados: &'a Library, _: &'a Library) -> &'a Library {
    rados
}

fn rbd<'a>(_: &'a Library, rbd: &'a Library) -> &'a Library {
    rbd
}

api! {
    rados: rados_create2: fn(*mut RadosT, *const c_char, *const c_char, u64) -> c_int;
    rados: rados_conf_read_file: fn(RadosT, *const c_char) -> c_int;
    rados: rados_conf_set: fn(RadosT, *const c_char, *const c_char) -> c_int;
    rados: rados_conf_get: fn(RadosT, *const c_char, *mut c_char, usize) -> c_int;
    rados: rados_connect: fn(RadosT) -> c_int;
    rados: rados_shutdown: fn(RadosT);
    rados: rados_ioctx_create: fn(RadosT, *const c_char, *mut IoctxT) -> c_int;
    rados: rados_ioctx_destroy: fn(IoctxT);
    rados: rados_cluster_stat: fn(RadosT, *mut ClusterStat) -> c_int;
    rados: rados_ioctx_set_namespace: fn(IoctxT, *const c_char);
    rados: rados_getaddrs: fn(RadosT, *mut *mut c_char) -> c_int;
    rados: rados_blocklist_add: fn(RadosT, *mut c_char, u32) -> c_int;
    rados: rados_write_full: fn(IoctxT, *const c_char, *const c_char, usize) -> c_int;
    rados: rados_read: fn(IoctxT, *const c_char, *mut c_char, usize, u64) -> c_int;
    // The C library's, for what librados returns with strdup.
    rados: free: fn(*mut c_void);
    rbd: rbd_namespace_create: fn(IoctxT, *const c_char) -> c_int;
    rbd: rbd_create2: fn(IoctxT, *const c_char, u64, u64, *mut c_int) -> c_int;
    rbd: rbd_clone2: fn(IoctxT, *const c_char, *const c_char, IoctxT, *const c_char, u64, *mut c_int, u64, c_int) -> c_int;
    rbd: rbd_remove: fn(IoctxT, *const c_char) -> c_int;
    rbd: rbd_rename: fn(IoctxT, *const c_char, *const c_char) -> c_int;
    rbd: rbd_list2: fn(IoctxT, *mut ImageSpec, *mut usize) -> c_int;
    rbd: rbd_image_spec_list_cleanup: fn(*mut ImageSpec, usize);
    rbd: rbd_open: fn(IoctxT, *const c_char, *mut ImageT, *const c_char) -> c_int;
    rbd: rbd_open_read_only: fn(IoctxT, *const c_char, *mut ImageT, *const c_char) -> c_int;
    rbd: rbd_close: fn(ImageT) -> c_int;
    rbd: rbd_get_size: fn(ImageT, *mut u64) -> c_int;
    rbd: rbd_resize: fn(ImageT, u64) -> c_int;
    rbd: rbd_snap_create: fn(ImageT, *const c_char) -> c_int;
    rbd: rbd_snap_remove: fn(ImageT, *const c_char) -> c_int;
    rbd: rbd_snap_rollback: fn(ImageT, *const c_char) -> c_int;
    rbd: rbd_snap_list: fn(ImageT, *mut SnapInfo, *mut c_int) -> c_int;
    rbd: rbd_snap_list_end: fn(*mut SnapInfo);
    rbd: rbd_read: fn(ImageT, u64, usize, *mut c_char) -> isize;
    rbd: rbd_write: fn(ImageT, u64, usize, *const c_char) -> isize;
    rbd: rbd_write_zeroes: fn(ImageT, u64, usize, c_int, c_int) -> isize;
    rbd: rbd_flush: fn(ImageT) -> c_int;
    rbd: rbd_flatten: fn(ImageT) -> c_int;
    rbd: rbd_diff_iterate2: fn(ImageT, *const c_char, u64, u64, u8, u8, DiffCallback, *mut c_void) -> c_int;
}

/// `int (*cb)(uint64_t offset, size_t len, int exists, void *arg)`.
pub type DiffCallback = unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int;

/// The functions, or why they could not be loaded (a library or one of
/// the symbols missing). Loaded once; kept for the life of the process.
pub fn load() -> Result<&'static Api, &'static str> {
    static API: OnceLock<Result<Api, &'static str>> = OnceLock::new();
    API.get_or_init(|| {
        unsafe { Library::new("librados.so.2") }
            .and_then(|rados| Ok((rados, unsafe { Library::new("librbd.so.1") }?)))
            .and_then(|(rados, rbd)| resolve(rados, rbd))
            .map_err(|e| {
                // Once per process: the message lives as long as it.
                &*Box::leak(
                    format!("loading Ceph's librados.so.2 and librbd.so.1 (Debian: librados2, librbd1): {e}")
                        .into_boxed_str(),
                )
            })
    })
    .as_ref()
    .map_err(|e| *e)
}
