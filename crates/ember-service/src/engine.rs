//! Durable workflows: every asynchronous operation is a list of steps, each
//! with an undo, whose progress is persisted after every step.
//!
//! A workflow starts in the same metadata transaction that creates its
//! resource rows, so a request that got a 2xx always has a record here. On
//! start-up every record still present is resumed: forward from the first
//! step not known to be done, or, if a step had failed, backward through the
//! undos. Steps and undos are therefore written to be idempotent: each
//! checks what is already true and does only the rest. When a workflow
//! unwinds completely its `on_failed` hook leaves the resource in a visible
//! error state with the reason. A failing *undo* is retried with backoff
//! rather than abandoned: nothing stays half-done.
//!
//! Tests drive the same code with a [`Faults`] plan: fail step N, or run
//! every step and undo twice.

use crate::core::Core;
use crate::error::{Result, ServiceError};
use ember_model::{Timestamp, WorkflowId, WorkflowPhase, WorkflowRecord};
use serde::{Serialize, de::DeserializeOwned};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// One step of a workflow: a forward action and the action that undoes it.
pub struct Step<P> {
    pub name: &'static str,
    pub run: fn(&Core, &P) -> Result<()>,
    pub undo: fn(&Core, &P) -> Result<()>,
}

/// Forward-only steps (and undo-only ones) use this for the other half.
pub fn nothing<P>(_: &Core, _: &P) -> Result<()> {
    Ok(())
}

pub trait Workflow: 'static {
    const KIND: &'static str;
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;

    fn steps() -> Vec<Step<Self::Params>>;

    /// Called once every undo has run: record the failure on the resource.
    fn on_failed(core: &Core, params: &Self::Params, reason: &str) -> Result<()>;
}

pub fn new_record<W: Workflow>(params: &W::Params) -> WorkflowRecord {
    WorkflowRecord {
        id: WorkflowId::new(),
        kind: W::KIND.to_string(),
        params: serde_json::to_value(params).expect("workflow params serialize"),
        phase: WorkflowPhase::Forward,
        next_step: 0,
        error: None,
        created_at: Timestamp::now(),
    }
}

/// What happened to one `drive` call.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Unwound and reported failure through `on_failed`.
    Failed,
    /// Stopped on purpose (a simulated crash in tests); the record remains.
    Interrupted,
}

/// Injected faults, for tests of the unwind and idempotence guarantees.
#[derive(Default)]
pub struct Faults {
    fail_at: Mutex<Option<(String, usize)>>,
    crash_at: Mutex<Option<(String, usize)>>,
    repeat: AtomicBool,
}

impl Faults {
    /// Make step `step` of workflows of `kind` fail once.
    pub fn fail_step(&self, kind: &str, step: usize) {
        *self.fail_at.lock().unwrap() = Some((kind.into(), step));
    }
    /// Stop the workflow (as if the process died) just after step `step`
    /// completed its work but before its progress was recorded.
    pub fn crash_after_step(&self, kind: &str, step: usize) {
        *self.crash_at.lock().unwrap() = Some((kind.into(), step));
    }
    /// Run every step and undo twice in a row.
    pub fn repeat_steps(&self, on: bool) {
        self.repeat.store(on, Ordering::SeqCst);
    }

    /// Whether a fault is planned for workflows of `kind` (or steps are to
    /// repeat): the fast paths that bypass a workflow then step aside, so
    /// the workflow itself is what the test exercises.
    pub fn planned_for(&self, kind: &str) -> bool {
        let is = |slot: &Mutex<Option<(String, usize)>>| {
            slot.lock()
                .unwrap()
                .as_ref()
                .is_some_and(|(k, _)| k == kind)
        };
        self.repeat.load(Ordering::SeqCst) || is(&self.fail_at) || is(&self.crash_at)
    }

    fn take(slot: &Mutex<Option<(String, usize)>>, kind: &str, step: usize) -> bool {
        let mut slot = slot.lock().unwrap();
        if slot.as_ref().is_some_and(|(k, s)| k == kind && *s == step) {
            *slot = None;
            return true;
        }
        false
    }
}

/// Runs (or resumes) one workflow until it completes, fails cleanly, or an
/// undo fails (an `Err`: the caller retries later).
pub fn drive<W: Workflow>(core: &Core, mut record: WorkflowRecord) -> Result<Outcome> {
    let params: W::Params = serde_json::from_value(record.params.clone())
        .map_err(|e| ServiceError::Internal(format!("workflow {} params: {e}", record.id)))?;
    let steps = W::steps();
    let repeat = core.faults.repeat.load(Ordering::SeqCst);
    loop {
        match record.phase {
            WorkflowPhase::Forward => {
                let i = record.next_step as usize;
                if i >= steps.len() {
                    finish(core, &record)?;
                    return Ok(Outcome::Completed);
                }
                let step = &steps[i];
                let result = if Faults::take(&core.faults.fail_at, W::KIND, i) {
                    Err(ServiceError::Internal(format!(
                        "injected failure in step {}",
                        step.name
                    )))
                } else {
                    (step.run)(core, &params).and_then(|()| {
                        if repeat {
                            (step.run)(core, &params)
                        } else {
                            Ok(())
                        }
                    })
                };
                match result {
                    Ok(()) => {
                        if Faults::take(&core.faults.crash_at, W::KIND, i) {
                            return Ok(Outcome::Interrupted);
                        }
                        record.next_step += 1;
                    }
                    Err(e) => {
                        tracing::warn!(workflow = %record.id, kind = W::KIND, step = step.name, error = %e, "workflow step failed; unwinding");
                        record.phase = WorkflowPhase::Unwinding;
                        record.error = Some(e.to_string());
                        // The failed step may have half-happened: undo it too.
                        record.next_step = i as u32 + 1;
                    }
                }
                save(core, &record)?;
            }
            WorkflowPhase::Unwinding => {
                if record.next_step == 0 {
                    let reason = record
                        .error
                        .clone()
                        .unwrap_or_else(|| "unknown error".into());
                    W::on_failed(core, &params, &reason)?;
                    finish(core, &record)?;
                    return Ok(Outcome::Failed);
                }
                let j = record.next_step as usize - 1;
                (steps[j].undo)(core, &params)?;
                if repeat {
                    (steps[j].undo)(core, &params)?;
                }
                record.next_step = j as u32;
                save(core, &record)?;
            }
        }
    }
}

fn save(core: &Core, record: &WorkflowRecord) -> Result<()> {
    let mut tx = core.store.write()?;
    tx.put_workflow(record)?;
    tx.commit()?;
    Ok(())
}

fn finish(core: &Core, record: &WorkflowRecord) -> Result<()> {
    let mut tx = core.store.write()?;
    tx.delete_workflow(record.id)?;
    tx.commit()?;
    Ok(())
}
