//! Quotas: limits per project with Cinder's defaults, usage counted in the
//! same transaction as the resources that use it, so parallel requests can
//! never overshoot and usage never drifts from the live resources.

use crate::{Caller, Result, Service, ServiceError};
use ember_model::{ProjectId, QuotaResource};
use ember_store::Tx;

/// Limits and usage of one project.
#[derive(Clone, Debug)]
pub struct QuotaSet {
    pub project_id: ProjectId,
    /// (resource, limit, in use)
    pub entries: Vec<(QuotaResource, i64, i64)>,
}

pub(crate) fn limit(tx: &mut dyn Tx, project: &ProjectId, resource: QuotaResource) -> Result<i64> {
    Ok(tx.quota_limit(project, resource)?.unwrap_or(resource.default_limit()))
}

/// Refuses a volume larger than the project's `per_volume_gigabytes`.
pub(crate) fn check_volume_size(tx: &mut dyn Tx, project: &ProjectId, size_gib: i64) -> Result<()> {
    let limit = limit(tx, project, QuotaResource::PerVolumeGigabytes)?;
    if limit >= 0 && size_gib > limit {
        return Err(ServiceError::QuotaExceeded { resource: QuotaResource::PerVolumeGigabytes, requested: size_gib, in_use: 0, limit });
    }
    Ok(())
}

/// Reserves `deltas` for `project` or fails with the first exceeded quota.
/// Must run inside the write transaction that creates the resource.
pub(crate) fn reserve(tx: &mut dyn Tx, project: &ProjectId, deltas: &[(QuotaResource, i64)]) -> Result<()> {
    for &(resource, delta) in deltas {
        let limit = limit(tx, project, resource)?;
        let in_use = tx.quota_usage(project, resource)?;
        if limit >= 0 && delta > 0 && in_use + delta > limit {
            return Err(ServiceError::QuotaExceeded { resource, requested: delta, in_use, limit });
        }
    }
    for &(resource, delta) in deltas {
        tx.add_quota_usage(project, resource, delta)?;
    }
    Ok(())
}

impl Service {
    pub async fn quota_set(&self, caller: &Caller, project: ProjectId) -> Result<QuotaSet> {
        if !caller.sees(&project) {
            return Err(ServiceError::Forbidden("volume_extension:quotas:show".into()));
        }
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let mut entries = vec![];
            for resource in QuotaResource::ALL {
                entries.push((resource, limit(tx.as_mut(), &project, resource)?, tx.quota_usage(&project, resource)?));
            }
            Ok(QuotaSet { project_id: project, entries })
        })
        .await
    }

    pub async fn quota_defaults(&self, project: ProjectId) -> QuotaSet {
        QuotaSet {
            project_id: project,
            entries: QuotaResource::ALL.iter().map(|r| (*r, r.default_limit(), 0)).collect(),
        }
    }

    /// Quota changes are admin only. Dialects check this before they look
    /// at the request body, as Cinder does.
    pub fn authorize_quota_update(&self, caller: &Caller) -> Result<()> {
        require_quota_admin(caller, "volume_extension:quotas:update")
    }

    /// Admin only: the project's limits go back to the defaults.
    pub async fn reset_quotas(&self, caller: &Caller, project: ProjectId) -> Result<()> {
        require_quota_admin(caller, "volume_extension:quotas:delete")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            for resource in QuotaResource::ALL {
                tx.set_quota_limit(&project, resource, resource.default_limit())?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Admin only. A limit below current usage is refused, as in Cinder.
    pub async fn set_quotas(&self, caller: &Caller, project: ProjectId, limits: Vec<(QuotaResource, i64)>) -> Result<QuotaSet> {
        self.authorize_quota_update(caller)?;
        let core = self.core.clone();
        let p = project.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            for (resource, value) in &limits {
                if *value < -1 {
                    return Err(ServiceError::InvalidInput(format!("Quota limit {value} for {} must be -1 or greater.", resource.as_str())));
                }
                let in_use = tx.quota_usage(&p, *resource)?;
                if *value >= 0 && *value < in_use {
                    return Err(ServiceError::InvalidInput(format!(
                        "Quota limit {value} for {} must be greater than or equal to already used and reserved {in_use}.",
                        resource.as_str()
                    )));
                }
                tx.set_quota_limit(&p, *resource, *value)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.quota_set(caller, project).await
    }
}

fn require_quota_admin(caller: &Caller, action: &str) -> Result<()> {
    if caller.is_admin() { Ok(()) } else { Err(ServiceError::Forbidden(action.into())) }
}
