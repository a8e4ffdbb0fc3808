//! Opens the configured backends (`[[backend]]` tables, or the embedded
//! qcow2 one under the data directory).

use crate::config::{BackendConfig, Settings};
use anyhow::Context;
use ember_backend::VolumeBackend;
use ember_backend::qcow2::Qcow2Backend;
use ember_storage::qcow2::Qcow2Driver;
use ember_store::MetadataStore;
use std::sync::Arc;

pub fn open(
    settings: &Settings,
    store: &Arc<dyn MetadataStore>,
) -> anyhow::Result<Vec<Arc<dyn VolumeBackend>>> {
    settings
        .backends
        .iter()
        .map(|config| {
            open_one(settings, config, store)
                .with_context(|| format!("opening backend {}", config.name))
        })
        .collect()
}

fn open_one(
    settings: &Settings,
    config: &BackendConfig,
    store: &Arc<dyn MetadataStore>,
) -> anyhow::Result<Arc<dyn VolumeBackend>> {
    match config.driver.as_str() {
        "qcow2" => {
            let path = config.path.clone().context("qcow2 needs a path")?;
            let mut driver = Qcow2Driver::new(&path).context("opening the image directory")?;
            if let Some(bytes) = settings.reserved_space_bytes {
                driver = driver.with_reserve(bytes);
            }
            tracing::info!(
                backend = %config.name,
                path = %path.display(),
                reserved_mib = driver.reserve_bytes() >> 20,
                "qcow2 backend (space left to the metadata store when on its file system)"
            );
            Ok(Arc::new(Qcow2Backend::new(
                config.name.clone(),
                Arc::new(driver),
                store.clone(),
            )))
        }
        "rbd" => {
            let settings = ember_backend::rbd::RbdSettings {
                ceph_conf: config.ceph_conf.clone(),
                pool: config.pool.clone().context("rbd needs a pool")?,
                namespace: config.namespace.clone(),
                user: config.user.clone(),
                keyring: config.keyring.clone(),
                native_attach: config.attach.as_deref() == Some("rbd"),
                secret_uuid: config.secret_uuid.clone(),
                node: settings.node_id.clone(),
            };
            let backend = ember_backend::rbd::RbdBackend::connect(
                config.name.clone(),
                &settings,
                store.clone(),
            )
            .with_context(|| format!("connecting to Ceph pool {}", settings.pool))?;
            tracing::info!(backend = %config.name, pool = %settings.pool, "rbd backend");
            Ok(Arc::new(backend))
        }
        other => anyhow::bail!("unknown driver {other}"),
    }
}
