//! The admin's view of where volumes live, in Cinder's terms: Ember is one
//! host (`ember`) running the scheduler and volume roles in one process,
//! with one backend (`qcow2`) holding one pool (`qcow2`).

use crate::volumes::require_admin;
use crate::{Caller, Result, Service};
use ember_model::ProjectId;
use std::collections::BTreeMap;

pub const HOST: &str = "ember";
pub const BACKEND: &str = "qcow2";
pub const POOL: &str = "qcow2";
/// What storage protocol clients attach with (the NBD export).
pub const STORAGE_PROTOCOL: &str = "nbd";
pub const VENDOR: &str = "Ember";

/// `host@backend`, Cinder's name of a volume service.
pub fn volume_service_host() -> String {
    format!("{HOST}@{BACKEND}")
}

/// `host@backend#pool`, the value of a volume's `os-vol-host-attr:host`.
pub fn pool_name() -> String {
    format!("{HOST}@{BACKEND}#{POOL}")
}

/// Usage of the host by one project, or in total (`project: None`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostUsage {
    pub project: Option<ProjectId>,
    pub volume_count: u64,
    pub volume_gb: u64,
    pub snapshot_count: u64,
    pub snapshot_gb: u64,
}

impl Service {
    /// Size and free space of the pool, in bytes. Admin only.
    pub async fn pool_capacity(&self, caller: &Caller) -> Result<ember_storage::Capacity> {
        require_admin(caller, "scheduler_extension:scheduler_stats:get_pools")?;
        let core = self.core.clone();
        self.run_blocking(move || Ok(core.driver.capacity()?)).await
    }

    /// What each project keeps on the host, the total first. Admin only.
    pub async fn host_usage(&self, caller: &Caller) -> Result<Vec<HostUsage>> {
        require_admin(caller, "volume_extension:hosts")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let mut total = HostUsage::default();
            let mut per: BTreeMap<String, HostUsage> = BTreeMap::new();
            for v in tx.all_volumes()? {
                for u in [&mut total, per.entry(v.project_id.0.clone()).or_default()] {
                    u.volume_count += 1;
                    u.volume_gb += v.size_gib;
                }
            }
            for s in tx.all_snapshots()? {
                for u in [&mut total, per.entry(s.project_id.0.clone()).or_default()] {
                    u.snapshot_count += 1;
                    u.snapshot_gb += s.size_gib;
                }
            }
            let mut out = vec![total];
            out.extend(per.into_iter().map(|(p, u)| HostUsage { project: Some(ProjectId(p)), ..u }));
            Ok(out)
        })
        .await
    }
}
