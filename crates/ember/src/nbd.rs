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
