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

/// One service's storage: a metadata store in a temporary directory and
/// one backend per kind given (qcow2 files beside the store, or an RBD
/// namespace of its own in the test pool), named `b0`, `b1`, ... in order,
/// reopened as often as a test restarts.
pub struct Backing {
    pub kinds: Vec<Kind>,
    pub dir: tempfile::TempDir,
    namespace: String,
}

impl Backing {
    pub fn new(kind: Kind) -> Backing {
        Self::with(&[kind])
    }

    pub fn with(kinds: &[Kind]) -> Backing {
        Backing {
            kinds: kinds.to_vec(),
            dir: tempfile::tempdir().unwrap(),
            namespace: format!("t-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// A service over this storage, as a fresh process would open it.
    pub fn open(&self) -> Service {
        let store: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&self.dir.path().join("m.db")).unwrap());
        let backends = (0..self.kinds.len())
            .map(|i| self.backend(i, store.clone()))
            .collect();
        let svc = Service::new(store, Backends::new(backends), ServiceConfig::default());
        // Backups go to a directory beside the data.
        let target =
            ember_backup::Target::open(self.dir.path().join("backups").to_str().unwrap()).unwrap();
        svc.set_backup_target(Arc::new(target));
        svc
    }

    fn backend(&self, i: usize, store: Arc<dyn MetadataStore>) -> Arc<dyn VolumeBackend> {
        let name = format!("b{i}");
        match self.kinds[i] {
            Kind::Qcow2 => {
                let driver = Qcow2Driver::new(self.dir.path().join(format!("images-{i}"))).unwrap();
                Arc::new(ember_backend::qcow2::Qcow2Backend::new(
                    name,
                    Arc::new(driver),
                    store,
                ))
            }
            Kind::Rbd => {
                let settings = ember_backend::rbd::RbdSettings {
                    ceph_conf: std::env::var_os("EMBER_TEST_CEPH_CONF").map(PathBuf::from),
                    pool: std::env::var("EMBER_TEST_CEPH_POOL").unwrap_or_else(|_| "rbd".into()),
                    namespace: Some(format!("{}-{i}", self.namespace)),
                    user: None,
                    keyring: None,
                    native_attach: false,
                    secret_uuid: None,
                    node: "ember".into(),
                };
                Arc::new(
                    ember_backend::rbd::RbdBackend::connect(name, &settings, store)
                        .expect("connect to the test Ceph cluster"),
                )
            }
        }
    }

    /// The qcow2 backends' file directories.
    pub fn images_dirs(&self) -> Vec<PathBuf> {
        (0..self.kinds.len())
            .filter(|i| self.kinds[*i] == Kind::Qcow2)
            .map(|i| self.dir.path().join(format!("images-{i}")))
            .filter(|d| d.exists())
            .collect()
    }
}
