//! The NBD server's view of the service: export names resolve to attached
//! volumes (see `ember_service::attachments`).

use ember_nbd::{Device, Exports};
use ember_service::attachments::VolumeExport;
use ember_service::{Service, ServiceError};
use std::io;
use std::sync::Arc;

pub struct ServiceExports(pub Service);

impl Exports for ServiceExports {
    fn open(&self, name: &str) -> Option<Arc<dyn Device>> {
        let export = self.0.open_export(name)?;
        Some(Arc::new(Export(export)))
    }
}

struct Export(VolumeExport);

fn io_error(e: ServiceError) -> io::Error {
    match e {
        ServiceError::StorageFull => io::Error::from(io::ErrorKind::StorageFull),
        ServiceError::InvalidInput(m) => io::Error::new(io::ErrorKind::InvalidInput, m),
        ServiceError::Forbidden(m) => io::Error::new(io::ErrorKind::PermissionDenied, m),
        other => io::Error::other(other.to_string()),
    }
}

impl Device for Export {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read(buf, offset).map_err(io_error)
    }
    fn write(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write(buf, offset).map_err(io_error)
    }
    fn write_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        self.0.write_zeroes(offset, length).map_err(io_error)
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush().map_err(io_error)
    }
    fn is_live(&self) -> bool {
        self.0.is_live()
    }
    fn meta_contexts(&self, query: &str) -> Vec<String> {
        self.0.meta_contexts(query)
    }

    /// `ember:changed-since:<snapshot>`: flag 1 where the export may differ
    /// from that earlier snapshot, 0 where it reads the same.
    fn context_status(
        &self,
        context: &str,
        offset: u64,
        length: u64,
    ) -> io::Result<Vec<(u64, u32)>> {
        let base = context
            .strip_prefix(ember_service::attachments::CHANGED_SINCE)
            .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
        let ranges = self
            .0
            .changed_since(base)
            .map_err(io_error)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
        Ok(window(&ranges, offset, length))
    }

    fn extents(&self, offset: u64, length: u64) -> io::Result<Option<Vec<(u64, u32)>>> {
        use ember_nbd::proto::{STATE_HOLE, STATE_ZERO};
        Ok(self
            .0
            .extents(offset, length)
            .map_err(io_error)?
            .map(|runs| {
                runs.iter()
                    .map(|e| {
                        let hole = if e.hole { STATE_HOLE } else { 0 };
                        let zero = if e.zero { STATE_ZERO } else { 0 };
                        (e.length, hole | zero)
                    })
                    .collect()
            }))
    }
}

/// `[offset, offset + length)` as runs flagged 1 inside `ranges` (sorted,
/// disjoint) and 0 outside.
fn window(ranges: &[(u64, u64)], offset: u64, length: u64) -> Vec<(u64, u32)> {
    let end = offset + length;
    let mut runs: Vec<(u64, u32)> = Vec::new();
    let mut at = offset;
    let push = |len: u64, flag: u32, runs: &mut Vec<(u64, u32)>| {
        if len == 0 {
            return;
        }
        match runs.last_mut() {
            Some((l, f)) if *f == flag => *l += len,
            _ => runs.push((len, flag)),
        }
    };
    for &(start, len) in ranges {
        let (start, stop) = (start.max(at), (start + len).min(end));
        if stop <= at || start >= end {
            continue;
        }
        push(start - at, 0, &mut runs);
        push(stop - start, 1, &mut runs);
        at = stop;
    }
    push(end.saturating_sub(at), 0, &mut runs);
    runs
}

#[cfg(test)]
mod tests {
    #[test]
    fn changed_ranges_become_flagged_runs_of_the_window() {
        let ranges = [(10, 10), (30, 5), (100, 50)];
        assert_eq!(
            super::window(&ranges, 15, 100),
            vec![(5, 1), (10, 0), (5, 1), (65, 0), (15, 1)]
        );
        assert_eq!(super::window(&[], 0, 8), vec![(8, 0)]);
    }
}
