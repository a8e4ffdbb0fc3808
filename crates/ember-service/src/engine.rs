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

/// A new workflow's record, owned by this node.
pub fn new_record<W: Workflow>(core: &Core, params: &W::Params) -> WorkflowRecord {
    WorkflowRecord {
        owner: Some(core.config.node_id.clone()),
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
    /// Another node owns the workflow now (this one was thought dead) or
    /// has finished it: this node stops driving it.
    TakenOver,
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
    // Test hook: slow steps, so that a process killed under load has
    // workflows in flight (the multi-node takeover test).
    let step_delay = std::env::var("EMBER_FAULT_STEP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    loop {
        match record.phase {
            WorkflowPhase::Forward => {
                let i = record.next_step as usize;
                if i >= steps.len() {
                    if !finish(core, &record)? {
                        return Ok(Outcome::TakenOver);
                    }
                    return Ok(Outcome::Completed);
                }
                let step = &steps[i];
                if let Some(delay) = step_delay {
                    std::thread::sleep(delay);
                }
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
                if !save(core, &record)? {
                    return Ok(Outcome::TakenOver);
                }
            }
            WorkflowPhase::Unwinding => {
                if record.next_step == 0 {
                    let reason = record
                        .error
                        .clone()
                        .unwrap_or_else(|| "unknown error".into());
                    W::on_failed(core, &params, &reason)?;
                    if !finish(core, &record)? {
                        return Ok(Outcome::TakenOver);
                    }
                    return Ok(Outcome::Failed);
                }
                let j = record.next_step as usize - 1;
                (steps[j].undo)(core, &params)?;
                if repeat {
                    (steps[j].undo)(core, &params)?;
                }
                record.next_step = j as u32;
                if !save(core, &record)? {
                    return Ok(Outcome::TakenOver);
                }
            }
        }
    }
}

/// Records progress, if this node still owns the workflow: a node that was
/// thought dead (paused, cut off) and whose workflows another node took
/// over learns it here and stops, so only the owner advances a workflow.
/// (The step it had just run may run again on the new owner: every step
/// is idempotent.) Returns whether it still owned the workflow.
fn save(core: &Core, record: &WorkflowRecord) -> Result<bool> {
    let mut tx = core.store.write()?;
    if !still_owned(tx.as_mut(), record)? {
        return Ok(false);
    }
    tx.put_workflow(record)?;
    tx.commit()?;
    Ok(true)
}

fn finish(core: &Core, record: &WorkflowRecord) -> Result<bool> {
    let mut tx = core.store.write()?;
    if !still_owned(tx.as_mut(), record)? {
        return Ok(false);
    }
    tx.delete_workflow(record.id)?;
    tx.commit()?;
    Ok(true)
}

fn still_owned(tx: &mut dyn ember_store::Tx, record: &WorkflowRecord) -> Result<bool> {
    let stored = tx.workflow(record.id)?;
    let owned = stored.is_some_and(|s| s.owner == record.owner);
    if !owned {
        tracing::warn!(workflow = %record.id, kind = %record.kind, "another node owns this workflow now; stopping here");
    }
    Ok(owned)
}
