//! The backends every service suite runs against: qcow2 files always, and
//! Ceph RBD when a test cluster is configured (`EMBER_TEST_CEPH_CONF`, the
//! cluster's ceph.conf with an admin keyring beside it as
//! `scripts/ceph.sh` writes it; `EMBER_TEST_CEPH_POOL`, default `rbd`).
//! With `EMBER_TEST_CEPH_REQUIRED=1` (CI) a missing cluster fails the
//! suite instead of narrowing it to qcow2.
#![allow(dead_code)]

use ember_backend::VolumeBackend;
use ember_service::{Backends, Service, ServiceConfig};
use ember_storage::qcow2::Qcow2Driver;
use ember_store::MetadataStore;
use ember_store::sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Qcow2,
    Rbd,
}

/// The backends to run against here.
pub fn kinds() -> Vec<Kind> {
    let mut out = vec![Kind::Qcow2];
    if std::env::var_os("EMBER_TEST_CEPH_CONF").is_some() {
        out.push(Kind::Rbd);
    } else if std::env::var("EMBER_TEST_CEPH_REQUIRED").as_deref() == Ok("1") {
        panic!("EMBER_TEST_CEPH_REQUIRED=1 but EMBER_TEST_CEPH_CONF is not set");
    }
    out
}

/// One service's storage: a metadata store in a temporary directory and a
/// backend of `kind` (qcow2 files beside the store, or an RBD namespace of
/// its own in the test pool), reopened as often as a test restarts.
pub struct Backing {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    namespace: String,
}

impl Backing {
    pub fn new(kind: Kind) -> Backing {
        Backing {
            kind,
            dir: tempfile::tempdir().unwrap(),
            namespace: format!("t-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// A service over this storage, as a fresh process would open it.
    pub fn open(&self) -> Service {
        let store: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&self.dir.path().join("m.db")).unwrap());
        let backend = self.backend(store.clone());
        Service::new(store, Backends::single(backend), ServiceConfig::default())
    }

    pub fn backend(&self, store: Arc<dyn MetadataStore>) -> Arc<dyn VolumeBackend> {
        match self.kind {
            Kind::Qcow2 => {
                let driver = Qcow2Driver::new(self.dir.path().join("images")).unwrap();
                Arc::new(ember_backend::qcow2::Qcow2Backend::embedded(
                    Arc::new(driver),
                    store,
                ))
            }
            Kind::Rbd => {
                let settings = ember_backend::rbd::RbdSettings {
                    ceph_conf: std::env::var_os("EMBER_TEST_CEPH_CONF").map(PathBuf::from),
                    pool: std::env::var("EMBER_TEST_CEPH_POOL").unwrap_or_else(|_| "rbd".into()),
                    namespace: Some(self.namespace.clone()),
                    user: None,
                    keyring: None,
                };
                Arc::new(
                    ember_backend::rbd::RbdBackend::connect("rbd", &settings, store)
                        .expect("connect to the test Ceph cluster"),
                )
            }
        }
    }

    /// The qcow2 files' directory (None on RBD).
    pub fn images_dir(&self) -> Option<PathBuf> {
        (self.kind == Kind::Qcow2).then(|| self.dir.path().join("images"))
    }
}
