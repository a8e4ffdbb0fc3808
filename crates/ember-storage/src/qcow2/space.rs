//! Free space kept for the metadata store.
//!
//! Image writes, image creations, growth and merges fail with `NoSpace`
//! once the file system holding the images has less than a reserve free,
//! as a Ceph OSD stops client writes at its full ratio while deletes still
//! work. The metadata store usually shares that file system: the reserve is
//! what lets it commit the deletes that are the way out of a full disk, and
//! start up, on a disk the volumes filled.

use crate::{Result, StorageError};
use std::ffi::CString;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// While far from the reserve, free space is re-read at most this often
/// (a `statvfs` per 4 KiB write would show in the NBD figures).
const RECHECK: Duration = Duration::from_millis(20);

pub(crate) struct SpaceReserve {
    dir: CString,
    bytes: u64,
    /// (when free space was last read, what was free then minus what
    /// passed since).
    estimate: Mutex<(Instant, u64)>,
}

impl SpaceReserve {
    /// The default reserve for the file system of `dir`: 1/64 of it,
    /// between 4 MiB and 256 MiB.
    pub(crate) fn for_dir(dir: &Path) -> Result<SpaceReserve> {
        use std::os::unix::ffi::OsStrExt;
        let dir = CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| StorageError::io(dir.display(), std::io::Error::other(e)))?;
        let mut reserve = SpaceReserve {
            dir,
            bytes: 0,
            estimate: Mutex::new((Instant::now(), 0)),
        };
        let (total, _) = reserve.statvfs()?;
        reserve.bytes = (total / 64).clamp(4 * MIB, 256 * MIB);
        Ok(reserve)
    }

    pub(crate) fn with_bytes(&self, bytes: u64) -> SpaceReserve {
        SpaceReserve {
            dir: self.dir.clone(),
            bytes,
            estimate: Mutex::new((Instant::now(), 0)),
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// (total, free to unprivileged writers) bytes.
    fn statvfs(&self) -> Result<(u64, u64)> {
        // SAFETY: a valid C string and a zeroed statvfs for the kernel to fill.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(self.dir.as_ptr(), &mut st) } != 0 {
            return Err(StorageError::io(
                self.dir.to_string_lossy(),
                std::io::Error::last_os_error(),
            ));
        }
        let unit = st.f_frsize as u64;
        Ok((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
    }

    /// `Ok` when `length` more bytes may be written without eating into
    /// the reserve.
    pub(crate) fn check(&self, length: u64) -> Result<()> {
        if self.bytes == 0 {
            return Ok(());
        }
        let mut estimate = self.estimate.lock().unwrap_or_else(|p| p.into_inner());
        let (at, free) = *estimate;
        // Far from the reserve and read recently: count down instead of
        // asking the kernel again.
        let margin = self.bytes.saturating_mul(4).saturating_add(length);
        if at.elapsed() < RECHECK && free > margin {
            estimate.1 = free - length;
            return Ok(());
        }
        let (_, free) = self.statvfs()?;
        *estimate = (Instant::now(), free.saturating_sub(length));
        if free < self.bytes.saturating_add(length) {
            return Err(StorageError::NoSpace);
        }
        Ok(())
    }
}
