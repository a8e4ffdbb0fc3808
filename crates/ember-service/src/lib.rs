//! The service layer: Ember's rules, once, for every API dialect.
//!
//! Dialects parse their wire format into the request types here, call one
//! method, and render the domain result back. States, quotas, policy and
//! the asynchronous workflows all live in this crate.

pub mod assisted;
pub mod attachments;
pub mod backend;
pub mod backups;
pub mod blocks;
mod context;
pub mod core;
pub mod engine;
mod error;
pub mod group_types;
pub mod groups;
pub mod health;
pub mod manage;
pub mod membership;
pub mod messages;
pub mod policies;
pub mod qos;
pub mod quotas;
mod requests;
mod snapshots;
pub mod transfers;
pub mod types;
mod volumes;
pub mod workflows;

pub use context::Caller;
pub use core::{Backends, SecretKey, ServiceConfig};
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
    /// Memory the data API's reads may hold at once, in KiB: a slow
    /// client keeps its buffer until its response is sent.
    data_budget: Arc<tokio::sync::Semaphore>,
}

/// Bytes the data API read, holding their share of the service's data
/// budget until dropped (once the response carrying them is sent).
pub struct DataBuffer {
    pub bytes: Vec<u8>,
    _budget: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for DataBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq<Vec<u8>> for DataBuffer {
    fn eq(&self, other: &Vec<u8>) -> bool {
        &self.bytes == other
    }
}

impl std::fmt::Debug for DataBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataBuffer({} bytes)", self.bytes.len())
    }
}

/// The data API's memory budget: this many bytes of reads in flight.
pub const DATA_BUDGET_BYTES: usize = 256 << 20;
/// How long a read waits for budget before answering "busy".
const DATA_BUDGET_WAIT: Duration = Duration::from_secs(10);

impl Service {
    pub fn new(
        store: Arc<dyn ember_store::MetadataStore>,
        backends: core::Backends,
        config: ServiceConfig,
    ) -> Self {
        // Every kind's counters exist from the start, at zero, so that
        // rates and alerts see them before the first event.
        let m = ember_metrics::metrics();
        for kind in workflows::KINDS {
            m.workflows_started.with_label_values(&[kind]);
            m.workflows_resumed.with_label_values(&[kind]);
            m.workflow_retries.with_label_values(&[kind]);
            for outcome in ["completed", "failed"] {
                m.workflows_finished.with_label_values(&[kind, outcome]);
            }
        }
        Service {
            core: Arc::new(Core::new(store, backends, config)),
            running: Arc::new(AtomicUsize::new(0)),
            data_budget: Arc::new(tokio::sync::Semaphore::new(DATA_BUDGET_BYTES >> 10)),
        }
    }

    /// The embedded default: one qcow2 backend (`qcow2`) over `driver`,
    /// keeping its records in `store`.
    pub fn embedded(
        store: Arc<dyn ember_store::MetadataStore>,
        driver: Arc<dyn ember_storage::StorageDriver>,
        config: ServiceConfig,
    ) -> Self {
        let backend = ember_backend::qcow2::Qcow2Backend::embedded(driver, store.clone());
        Self::new(store, Backends::single(Arc::new(backend)), config)
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.core.config
    }

    /// Start-up recovery. Before the service serves: remove half-made files
    /// and files no record knows, and mark the images a crash left open
    /// for writing (each is repaired before its next open). Then, in the
    /// background while requests are served: resume every unfinished
    /// workflow, repair the marked images, collect garbage. Resources under
    /// recovery show their transitional status (`deleting`, `creating`) and
    /// answer as they would while their operation runs. Returns how many
    /// workflows are resumed.
    pub async fn recover(&self) -> Result<usize> {
        let core = self.core.clone();
        let me = self.me();
        let records = tokio::task::spawn_blocking(move || -> Result<Vec<WorkflowRecord>> {
            for backend in core.backends.all() {
                let marked = backend.recover()?;
                if marked > 0 {
                    tracing::warn!(
                        backend = backend.name(),
                        images = marked,
                        "data left open by an unclean shutdown; each is repaired before use"
                    );
                }
            }
            Service::workflows_to_resume(&core, &me)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let n = records.len();
        self.keep_membership(self.me());
        self.keep_policies();
        let service = self.clone();
        self.running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            // Test hook: recovery that takes a while, deterministically.
            if let Some(ms) = std::env::var("EMBER_FAULT_RECOVERY_DELAY_MS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            for record in records {
                tracing::info!(workflow = %record.id, kind = %record.kind, step = record.next_step, phase = ?record.phase, "resuming workflow");
                ember_metrics::metrics()
                    .workflows_resumed
                    .with_label_values(&[&record.kind])
                    .inc();
                service.start(record);
            }
            let core = service.core.clone();
            let repaired = service
                .run_blocking(move || {
                    let mut repaired = 0;
                    for backend in core.backends.all() {
                        repaired += backend.repair_marked()?;
                    }
                    Ok(repaired)
                })
                .await;
            let core = service.core.clone();
            let collected = service.run_blocking(move || core.collect_garbage()).await;
            match (repaired, collected) {
                (Ok(repaired), Ok(())) => {
                    tracing::info!(repaired, "recovery finished")
                }
                (r, c) => tracing::error!(
                    repair = ?r.err(),
                    collect = ?c.err(),
                    "recovery left work for later (the next workflow or start retries)"
                ),
            }
            service.running.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(n)
    }

    /// Checks the snapshot and backup policies every second (the collector
    /// node only runs them: see `run_due_policies`), and collects again
    /// what a collection had to leave because something still read it,
    /// for as long as the process runs.
    fn keep_policies(&self) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = service.run_due_policies().await {
                    tracing::warn!(error = %e, "policy check failed; the next one retries");
                }
                let core = service.core.clone();
                if core.backends.all().any(|b| b.collect_deferred())
                    && let Err(e) = service.run_blocking(move || core.collect_garbage()).await
                {
                    tracing::warn!(error = %e, "garbage collection failed; the next one retries");
                }
            }
        });
    }

    /// Takes `length` bytes of the data budget, waiting a while for other
    /// reads to be sent, then answering busy.
    pub(crate) async fn data_budget(
        &self,
        length: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let units = (length.div_ceil(1024)).max(1) as u32;
        let wait = self.data_budget.clone().acquire_many_owned(units);
        match tokio::time::timeout(DATA_BUDGET_WAIT, wait).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ServiceError::Busy(
                "Too many data transfers in progress; retry later.".into(),
            )),
        }
    }

    pub(crate) fn data_buffer(
        bytes: Vec<u8>,
        budget: tokio::sync::OwnedSemaphorePermit,
    ) -> DataBuffer {
        DataBuffer {
            bytes,
            _budget: budget,
        }
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
        let kind = record.kind.clone();
        let metrics = ember_metrics::metrics();
        metrics.workflows_started.with_label_values(&[&kind]).inc();
        metrics.workflows_running.inc();
        let began = std::time::Instant::now();
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
                    Ok(Ok(outcome)) => {
                        let outcome = match outcome {
                            Some(engine::Outcome::Failed) => "failed",
                            Some(engine::Outcome::Interrupted) => "interrupted",
                            Some(engine::Outcome::TakenOver) => "taken_over",
                            _ => "completed",
                        };
                        metrics
                            .workflows_finished
                            .with_label_values(&[&kind, outcome])
                            .inc();
                        break;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(workflow = %id, error = %e, "workflow stalled; retrying");
                    }
                    Err(e) => {
                        tracing::error!(workflow = %id, error = %e, "workflow task panicked; retrying")
                    }
                }
                metrics.workflow_retries.with_label_values(&[&kind]).inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            metrics
                .workflow_duration
                .with_label_values(&[&kind])
                .observe(began.elapsed().as_secs_f64());
            metrics.workflows_running.dec();
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
