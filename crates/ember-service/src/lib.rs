//! The service layer: Ember's rules, once, for every API dialect.
//!
//! Dialects parse their wire format into the request types here, call one
//! method, and render the domain result back. States, quotas, policy and
//! the asynchronous workflows all live in this crate.

pub mod assisted;
pub mod attachments;
pub mod backend;
mod context;
pub mod core;
pub mod engine;
mod error;
pub mod gc;
pub mod group_types;
pub mod groups;
pub mod messages;
pub mod qos;
pub mod quotas;
mod requests;
mod snapshots;
pub mod transfers;
pub mod types;
mod volumes;
pub mod workflows;

pub use context::Caller;
pub use core::ServiceConfig;
pub use error::{Result, ServiceError};
pub use quotas::QuotaSet;
pub use requests::*;
pub use volumes::DEFAULT_VOLUME_TYPE_ID;

use crate::core::Core;
use ember_model::{WorkflowId, WorkflowRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone)]
pub struct Service {
    core: Arc<Core>,
    running: Arc<AtomicUsize>,
}

impl Service {
    pub fn new(
        store: Arc<dyn ember_store::MetadataStore>,
        driver: Arc<dyn ember_storage::StorageDriver>,
        config: ServiceConfig,
    ) -> Self {
        Service {
            core: Arc::new(Core::new(store, driver, config)),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.core.config
    }

    /// Start-up recovery: remove files no record knows, then resume every
    /// unfinished workflow and collect garbage. Returns how many workflows
    /// were resumed.
    pub async fn recover(&self) -> Result<usize> {
        let core = self.core.clone();
        let records = tokio::task::spawn_blocking(move || -> Result<Vec<WorkflowRecord>> {
            core.driver.remove_temporaries()?;
            let repaired = core.driver.repair_after_crash()?;
            if !repaired.is_empty() {
                tracing::warn!(
                    images = repaired.len(),
                    "repaired images left open by an unclean shutdown"
                );
            }
            let removed = gc::sweep_orphan_files(&core)?;
            if removed > 0 {
                tracing::info!(removed, "removed orphan image files");
            }
            Ok(core.store.read()?.workflows()?)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let n = records.len();
        for record in records {
            tracing::info!(workflow = %record.id, kind = %record.kind, step = record.next_step, phase = ?record.phase, "resuming workflow");
            self.start(record);
        }
        let core = self.core.clone();
        self.run_blocking(move || gc::collect_garbage(&core))
            .await?;
        Ok(n)
    }

    /// Number of workflows currently running in this process.
    pub fn running_workflows(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Waits (up to `limit`) for running workflows to finish, for shutdown.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.running_workflows() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs a workflow in the background until it completes or has failed
    /// cleanly; an error in an undo (or the store) is retried with backoff.
    pub(crate) fn start(&self, record: WorkflowRecord) {
        let core = self.core.clone();
        let running = self.running.clone();
        running.fetch_add(1, Ordering::SeqCst);
        let id: WorkflowId = record.id;
        tokio::spawn(async move {
            let mut record = Some(record);
            let mut backoff = Duration::from_millis(50);
            loop {
                let core2 = core.clone();
                let current = record.take();
                let result = tokio::task::spawn_blocking(move || {
                    let current = match current {
                        Some(r) => r,
                        None => match core2.store.read()?.workflow(id)? {
                            Some(r) => r,
                            None => return Ok(None),
                        },
                    };
                    workflows::dispatch(&core2, current).map(Some)
                })
                .await;
                match result {
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) => {
                        tracing::error!(workflow = %id, error = %e, "workflow stalled; retrying");
                    }
                    Err(e) => {
                        tracing::error!(workflow = %id, error = %e, "workflow task panicked; retrying")
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            running.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Runs a one-row read: inline when the store's reads never wait for
    /// a writer (two thread hand-offs saved on every poll), else as
    /// `run_blocking`.
    pub(crate) async fn point_read<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.core.store.point_reads_never_wait() {
            f()
        } else {
            self.run_blocking(f).await
        }
    }

    pub(crate) async fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<R> + Send + 'static,
    ) -> Result<R> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
    }
}
