//! What operators see of the service from outside: its health (the store
//! and the storage answer) and the gauges a metrics scrape reads now.

use crate::{Result, Service};
use ember_model::QuotaResource;

/// One check of `Service::health`.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was seen (for admins: no secrets, but paths and figures).
    pub detail: String,
    pub micros: u64,
}

/// The service's health: every check passed, or which did not.
#[derive(Clone, Debug)]
pub struct Health {
    pub checks: Vec<Check>,
}

impl Health {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl Service {
    /// Asks the metadata store for a read and the storage for its
    /// capacity, each timed; a failure names what failed.
    pub async fn health(&self) -> Health {
        let core = self.core.clone();
        let outcome = self
            .run_blocking(move || {
                let mut checks = vec![];
                let t = std::time::Instant::now();
                let store = core
                    .store
                    .read()
                    .and_then(|mut tx| tx.workflow(ember_model::WorkflowId::new()).map(drop));
                checks.push(Check {
                    name: "metadata store",
                    ok: store.is_ok(),
                    detail: match store {
                        Ok(()) => "answers reads".into(),
                        Err(e) => e.to_string(),
                    },
                    micros: t.elapsed().as_micros() as u64,
                });
                for backend in core.backends.all() {
                    let t = std::time::Instant::now();
                    let storage = backend.capacity();
                    checks.push(Check {
                        name: "storage",
                        ok: storage.is_ok(),
                        detail: match storage {
                            Ok(c) => format!(
                                "{}: {} of {} bytes free",
                                backend.name(),
                                c.free_bytes,
                                c.total_bytes
                            ),
                            Err(e) => format!("{}: {e}", backend.name()),
                        },
                        micros: t.elapsed().as_micros() as u64,
                    });
                }
                Ok(checks)
            })
            .await;
        Health {
            checks: outcome.unwrap_or_else(|e| {
                vec![Check {
                    name: "service",
                    ok: false,
                    detail: e.to_string(),
                    micros: 0,
                }]
            }),
        }
    }

    /// Sets the gauges that describe the state now (a scrape calls it):
    /// the pool's capacity and provisioned gigabytes, and every project's
    /// quota usage and limits.
    pub async fn refresh_metrics(&self) -> Result<()> {
        let core = self.core.clone();
        self.run_blocking(move || {
            let m = ember_metrics::metrics();
            let mut provisioned = std::collections::BTreeMap::new();
            for backend in core.backends.all() {
                let pool = crate::backend::pool_name(backend.name(), backend.pool());
                if let Ok(c) = backend.capacity() {
                    m.pool_bytes
                        .with_label_values(&[&pool, "total"])
                        .set(c.total_bytes as i64);
                    m.pool_bytes
                        .with_label_values(&[&pool, "free"])
                        .set(c.free_bytes as i64);
                }
                provisioned.insert(pool, 0u64);
            }
            let mut tx = core.store.read()?;
            let volumes = tx.all_volumes()?;
            let pool_of: std::collections::HashMap<_, _> = volumes
                .iter()
                .map(|v| (v.id, crate::backend::host_of(v)))
                .collect();
            for v in &volumes {
                *provisioned.entry(pool_of[&v.id].clone()).or_default() += v.size_gib;
            }
            for s in tx.all_snapshots()? {
                if let Some(pool) = pool_of.get(&s.volume_id) {
                    *provisioned.entry(pool.clone()).or_default() += s.size_gib;
                }
            }
            for (pool, gib) in provisioned {
                m.pool_provisioned_gigabytes
                    .with_label_values(&[&pool])
                    .set(gib as i64);
            }
            let usage = tx.all_quota_usage()?;
            m.quota_in_use.reset();
            m.quota_limit.reset();
            let mut projects = std::collections::BTreeSet::new();
            for (project, resource, in_use) in usage {
                m.quota_in_use
                    .with_label_values(&[&project.0, resource.as_str()])
                    .set(in_use);
                projects.insert(project);
            }
            for project in projects {
                for resource in QuotaResource::ALL {
                    let limit = crate::quotas::limit(tx.as_mut(), &project, resource)?;
                    m.quota_limit
                        .with_label_values(&[&project.0, resource.as_str()])
                        .set(limit);
                }
            }
            Ok(())
        })
        .await
    }
}
