//! Quotas: limits per project with Cinder's defaults, usage counted in the
//! same transaction as the resources that use it, so parallel requests can
//! never overshoot and usage never drifts from the live resources.

use crate::{Caller, DEFAULT_VOLUME_TYPE_ID, Result, Service, ServiceError};
use ember_model::{ProjectId, QuotaResource};
use ember_store::Tx;

/// Limits and usage of one project.
#[derive(Clone, Debug)]
pub struct QuotaSet {
    pub project_id: ProjectId,
    /// (resource, limit, in use)
    pub entries: Vec<(QuotaResource, i64, i64)>,
    /// Per volume type, under Cinder's names (`volumes_<type name>` …):
    /// (key, limit, in use).
    pub typed: Vec<(String, i64, i64)>,
}

/// The resources counted per volume type.
const TYPED: [QuotaResource; 3] = [
    QuotaResource::Volumes,
    QuotaResource::Snapshots,
    QuotaResource::Gigabytes,
];

/// Where a per-type limit or usage is kept: by type id, so a renamed type
/// keeps both.
pub fn type_key(resource: QuotaResource, type_id: &str) -> String {
    format!("{}:type:{type_id}", resource.as_str())
}

/// The type a volume's (or snapshot's) usage is counted under.
pub(crate) fn type_of(type_id: &Option<String>) -> String {
    type_id
        .clone()
        .unwrap_or_else(|| DEFAULT_VOLUME_TYPE_ID.into())
}

/// A project's per-type limit, else the default class's, else unlimited.
fn typed_limit(tx: &mut dyn Tx, project: &ProjectId, key: &str) -> Result<i64> {
    if let Some(l) = tx.keyed_quota_limit(project, key)? {
        return Ok(l);
    }
    Ok(tx.keyed_quota_limit(&default_class(), key)?.unwrap_or(-1))
}

/// Reserves per-type usage (after the global [`reserve`]), or fails the
/// way the global quotas do.
pub(crate) fn reserve_typed(
    tx: &mut dyn Tx,
    project: &ProjectId,
    type_id: &str,
    deltas: &[(QuotaResource, i64)],
) -> Result<()> {
    for &(resource, delta) in deltas {
        let key = type_key(resource, type_id);
        let limit = typed_limit(tx, project, &key)?;
        let in_use = tx.keyed_quota_usage(project, &key)?;
        if limit >= 0 && delta > 0 && exceeds(in_use, delta, limit) {
            return Err(ServiceError::QuotaExceeded {
                resource,
                requested: delta,
                in_use,
                limit,
            });
        }
    }
    for &(resource, delta) in deltas {
        tx.add_keyed_quota_usage(project, &type_key(resource, type_id), delta)?;
    }
    Ok(())
}

/// Returns per-type usage.
pub(crate) fn release_typed(
    tx: &mut dyn Tx,
    project: &ProjectId,
    type_id: &str,
    deltas: &[(QuotaResource, i64)],
) -> Result<()> {
    for &(resource, delta) in deltas {
        tx.add_keyed_quota_usage(project, &type_key(resource, type_id), -delta)?;
    }
    Ok(())
}

/// Every type's per-type entries for `project` (`usage: false` reports 0).
fn typed_entries(
    tx: &mut dyn Tx,
    project: &ProjectId,
    default_name: &str,
    class_only: bool,
) -> Result<Vec<(String, i64, i64)>> {
    let mut types = vec![(DEFAULT_VOLUME_TYPE_ID.to_string(), default_name.to_string())];
    types.extend(tx.volume_types()?.into_iter().map(|t| (t.id, t.name)));
    let mut out = vec![];
    for (id, name) in types {
        for resource in TYPED {
            let key = type_key(resource, &id);
            let (limit, in_use) = if class_only {
                (
                    tx.keyed_quota_limit(&default_class(), &key)?.unwrap_or(-1),
                    0,
                )
            } else {
                (
                    typed_limit(tx, project, &key)?,
                    tx.keyed_quota_usage(project, &key)?,
                )
            };
            out.push((format!("{}_{name}", resource.as_str()), limit, in_use));
        }
    }
    Ok(out)
}

/// Resolves Cinder's `volumes_<type name>` keys to storage keys.
fn typed_keys(
    tx: &mut dyn Tx,
    default_name: &str,
    asked: &[(String, i64)],
) -> Result<Vec<(String, i64)>> {
    let mut types = vec![(DEFAULT_VOLUME_TYPE_ID.to_string(), default_name.to_string())];
    types.extend(tx.volume_types()?.into_iter().map(|t| (t.id, t.name)));
    let mut out = vec![];
    for (key, value) in asked {
        let found = TYPED.iter().find_map(|r| {
            let name = key.strip_prefix(r.as_str())?.strip_prefix('_')?;
            types
                .iter()
                .find(|(_, n)| n == name)
                .map(|(id, _)| type_key(*r, id))
        });
        match found {
            Some(k) => out.push((k, *value)),
            None => {
                return Err(ServiceError::InvalidInput(format!(
                    "Bad key(s) in quota set: {key}"
                )));
            }
        }
    }
    Ok(out)
}

/// The `default` quota class (Cinder's `os-quota-class-sets/default`) is
/// stored as the limits of this pseudo project; no Keystone project id can
/// look like it.
fn default_class() -> ProjectId {
    ProjectId("quota-class:default".into())
}

/// A project's own limit, else the default class's, else Cinder's default.
pub(crate) fn limit(tx: &mut dyn Tx, project: &ProjectId, resource: QuotaResource) -> Result<i64> {
    if let Some(l) = tx.quota_limit(project, resource)? {
        return Ok(l);
    }
    class_limit(tx, resource)
}

fn class_limit(tx: &mut dyn Tx, resource: QuotaResource) -> Result<i64> {
    Ok(tx
        .quota_limit(&default_class(), resource)?
        .unwrap_or(resource.default_limit()))
}

/// Whether `in_use + delta` passes `limit` (a sum that would not even fit
/// an `i64` passes every limit).
fn exceeds(in_use: i64, delta: i64, limit: i64) -> bool {
    in_use.checked_add(delta).is_none_or(|total| total > limit)
}

/// A quota limit as Cinder accepts it: -1 (unlimited) up to `db.MAX_INT`.
fn check_limit(key: &str, value: i64) -> Result<()> {
    if value < -1 {
        return Err(ServiceError::InvalidInput(format!(
            "Quota limit {value} for {key} must be -1 or greater."
        )));
    }
    if value > ember_model::MAX_QUOTA_LIMIT {
        return Err(ServiceError::InvalidInput(format!(
            "{key} must be <= {}",
            ember_model::MAX_QUOTA_LIMIT
        )));
    }
    Ok(())
}

/// Refuses a volume larger than the project's `per_volume_gigabytes`.
pub(crate) fn check_volume_size(tx: &mut dyn Tx, project: &ProjectId, size_gib: i64) -> Result<()> {
    let limit = limit(tx, project, QuotaResource::PerVolumeGigabytes)?;
    if limit >= 0 && size_gib > limit {
        return Err(ServiceError::QuotaExceeded {
            resource: QuotaResource::PerVolumeGigabytes,
            requested: size_gib,
            in_use: 0,
            limit,
        });
    }
    Ok(())
}

/// Reserves `deltas` for `project` or fails with the first exceeded quota.
/// Must run inside the write transaction that creates the resource.
pub(crate) fn reserve(
    tx: &mut dyn Tx,
    project: &ProjectId,
    deltas: &[(QuotaResource, i64)],
) -> Result<()> {
    for &(resource, delta) in deltas {
        let limit = limit(tx, project, resource)?;
        let in_use = tx.quota_usage(project, resource)?;
        if limit >= 0 && delta > 0 && exceeds(in_use, delta, limit) {
            return Err(ServiceError::QuotaExceeded {
                resource,
                requested: delta,
                in_use,
                limit,
            });
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
            return Err(ServiceError::Forbidden(
                "volume_extension:quotas:show".into(),
            ));
        }
        let core = self.core.clone();
        let default_name = self.core.config.default_volume_type.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let mut entries = vec![];
            for resource in QuotaResource::ALL {
                entries.push((
                    resource,
                    limit(tx.as_mut(), &project, resource)?,
                    tx.quota_usage(&project, resource)?,
                ));
            }
            let typed = typed_entries(tx.as_mut(), &project, &default_name, false)?;
            Ok(QuotaSet {
                project_id: project,
                entries,
                typed,
            })
        })
        .await
    }

    /// The limits a project without its own gets (the default class).
    pub async fn quota_defaults(&self, project: ProjectId) -> Result<QuotaSet> {
        let core = self.core.clone();
        let default_name = self.core.config.default_volume_type.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let mut entries = vec![];
            for resource in QuotaResource::ALL {
                entries.push((resource, class_limit(tx.as_mut(), resource)?, 0));
            }
            let typed = typed_entries(tx.as_mut(), &project, &default_name, true)?;
            Ok(QuotaSet {
                project_id: project,
                entries,
                typed,
            })
        })
        .await
    }

    /// The `default` quota class. Admin only.
    pub async fn quota_class(&self, caller: &Caller) -> Result<QuotaSet> {
        require_quota_admin(caller, "volume_extension:quota_classes")?;
        self.quota_defaults(ProjectId("default".into())).await
    }

    /// Changes the `default` class: every project without its own limit
    /// follows. Admin only.
    pub async fn set_quota_class(
        &self,
        caller: &Caller,
        limits: Vec<(QuotaResource, i64)>,
        typed: Vec<(String, i64)>,
    ) -> Result<QuotaSet> {
        require_quota_admin(caller, "volume_extension:quota_classes:update")?;
        let core = self.core.clone();
        let default_name = self.core.config.default_volume_type.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            for (key, value) in typed_keys(tx.as_mut(), &default_name, &typed)? {
                check_limit(&key, value)?;
                tx.set_keyed_quota_limit(&default_class(), &key, value)?;
            }
            for (resource, value) in &limits {
                check_limit(resource.as_str(), *value)?;
                tx.set_quota_limit(&default_class(), *resource, *value)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.quota_defaults(ProjectId("default".into())).await
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
            tx.clear_quota_limits(&project)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Admin only. A limit below current usage is refused, as in Cinder.
    pub async fn set_quotas(
        &self,
        caller: &Caller,
        project: ProjectId,
        limits: Vec<(QuotaResource, i64)>,
        typed: Vec<(String, i64)>,
    ) -> Result<QuotaSet> {
        self.authorize_quota_update(caller)?;
        let core = self.core.clone();
        let p = project.clone();
        let default_name = self.core.config.default_volume_type.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            for (key, value) in typed_keys(tx.as_mut(), &default_name, &typed)? {
                check_limit(&key, value)?;
                let in_use = tx.keyed_quota_usage(&p, &key)?;
                if value >= 0 && value < in_use {
                    return Err(ServiceError::InvalidInput(format!(
                        "Quota limit {value} must be -1 or at least the {in_use} already used."
                    )));
                }
                tx.set_keyed_quota_limit(&p, &key, value)?;
            }
            for (resource, value) in &limits {
                check_limit(resource.as_str(), *value)?;
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
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(action.into()))
    }
}
