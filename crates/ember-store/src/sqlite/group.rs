//! Group commit, leader/follower style. A caller queues its job; if no
//! batch is being written it becomes the leader: it runs every queued job
//! (each inside a savepoint, so one that declines or fails rolls back
//! alone), then the batch's distinct barriers, and commits once. It then
//! hands leadership over, so the next batch is written while this one's
//! WAL fsync runs, and once the commit is durable it wakes its followers
//! together (a condition variable, not a lock convoy).

use super::{SqliteStore, SqliteTx, backend, durability::WalSync};
use crate::{Barrier, GroupJob, Result, StoreError};
use rusqlite::Connection;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a queued job's result is left for its caller.
type Outcome = Arc<Mutex<Option<Result<bool>>>>;

/// A written batch: each job's result if the commit holds, and the
/// commit's number for `WalSync::wait_durable` (none without a WAL).
type Written = (Vec<(Outcome, Result<bool>)>, Result<Option<u64>>);

pub(super) struct Queued {
    job: GroupJob,
    barrier: Option<Barrier>,
    outcome: Outcome,
}

#[derive(Default)]
pub(super) struct GroupQueue {
    pending: Vec<Queued>,
    /// Whether some caller is writing a batch now.
    leading: bool,
}

fn set(outcome: &Outcome, result: Result<bool>) {
    *outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
}

impl SqliteStore {
    fn lock_queue(&self) -> MutexGuard<'_, GroupQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn grouped(&self, barrier: Option<Barrier>, job: GroupJob) -> Result<bool> {
        let began = std::time::Instant::now();
        let done = self.grouped_inner(barrier, job);
        ember_metrics::metrics()
            .store_commit
            .observe(began.elapsed().as_secs_f64());
        done
    }

    fn grouped_inner(&self, barrier: Option<Barrier>, job: GroupJob) -> Result<bool> {
        let outcome: Outcome = Arc::default();
        let mut queue = self.lock_queue();
        queue.pending.push(Queued {
            job,
            barrier,
            outcome: outcome.clone(),
        });
        loop {
            if let Some(done) = outcome.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return done;
            }
            if queue.leading {
                queue = self
                    .group_done
                    .wait(queue)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            queue.leading = true;
            let batch = std::mem::take(&mut queue.pending);
            drop(queue);
            self.lead(batch);
            queue = self.lock_queue();
        }
    }

    fn lead(&self, batch: Vec<Queued>) {
        let mut lead = Leading {
            store: self,
            outcomes: batch.iter().map(|q| q.outcome.clone()).collect(),
            leading: true,
        };
        let mut barriers: Vec<Barrier> = vec![];
        for b in batch.iter().filter_map(|q| q.barrier.clone()) {
            if !barriers.iter().any(|seen| Arc::ptr_eq(seen, &b)) {
                barriers.push(b);
            }
        }
        ember_metrics::metrics()
            .store_group_size
            .observe(batch.len() as f64);
        let jobs = batch.into_iter().map(|q| (q.job, q.outcome)).collect();
        let (results, commit) = run_batch(self.lock(), jobs, &barriers, self.wal.as_ref());
        lead.hand_over();
        let durable = commit.and_then(|seq| match (self.wal.as_ref(), seq) {
            (Some(wal), Some(seq)) => wal.wait_durable(seq),
            _ => Ok(()),
        });
        for (outcome, result) in results {
            set(
                &outcome,
                match &durable {
                    Ok(()) => result,
                    Err(e) => Err(e.clone()),
                },
            );
        }
    }
}

/// A leader's duties that must happen even if a job panics: every job of
/// the batch gets an outcome, leadership is released, waiters are woken.
struct Leading<'a> {
    store: &'a SqliteStore,
    outcomes: Vec<Outcome>,
    leading: bool,
}

impl Leading<'_> {
    /// Lets the next batch start (this one is written, maybe not durable).
    fn hand_over(&mut self) {
        let mut queue = self.store.lock_queue();
        queue.leading = false;
        self.leading = false;
        self.store.group_done.notify_all();
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        for outcome in &self.outcomes {
            let mut slot = outcome.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(Err(StoreError::Backend(
                    "the group commit running this change failed".into(),
                )));
            }
        }
        let mut queue = self.store.lock_queue();
        if self.leading {
            queue.leading = false;
        }
        self.store.group_done.notify_all();
    }
}

/// Runs `jobs` in one transaction, then the barriers, then COMMIT.
fn run_batch(
    conn: MutexGuard<'_, Connection>,
    jobs: Vec<(GroupJob, Outcome)>,
    barriers: &[Barrier],
    wal: Option<&WalSync>,
) -> Written {
    let started = std::time::Instant::now();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE").map_err(backend) {
        let failed = jobs
            .into_iter()
            .map(|(_, outcome)| (outcome, Err(e.clone())))
            .collect();
        return (failed, Err(e));
    }
    let mut tx = SqliteTx {
        conn,
        open: true,
        wal: None,
    };
    let mut results = Vec::with_capacity(jobs.len());
    for (job, outcome) in jobs {
        let result = match tx.conn.execute_batch("SAVEPOINT grouped") {
            Ok(()) => {
                // A job that panics fails alone, like one that declines: the
                // leader may be another caller, whose own job (perhaps
                // committed in the previous group) must not be reported
                // failed by a panic unwinding through it.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut tx)));
                let keep = *ran.as_ref().unwrap_or(&false);
                let end = if keep {
                    "RELEASE grouped"
                } else {
                    "ROLLBACK TO grouped; RELEASE grouped"
                };
                match (tx.conn.execute_batch(end), ran) {
                    (Ok(()), Ok(keep)) => Ok(keep),
                    (Ok(()), Err(_)) => Err(StoreError::Backend(
                        "the change failed (a bug: it panicked)".into(),
                    )),
                    (Err(e), _) => Err(backend(e)),
                }
            }
            Err(e) => Err(backend(e)),
        };
        results.push((outcome, result));
    }
    let ran = started.elapsed();
    // A failed barrier rolls the whole group back (when `tx` drops).
    let committed = barriers
        .iter()
        .try_for_each(|barrier| barrier())
        .and_then(|()| tx.conn.execute_batch("COMMIT").map_err(backend));
    tracing::debug!(jobs = results.len(), ?ran, written = ?started.elapsed(), "group commit");
    match committed {
        Ok(()) => {
            tx.open = false;
            // Numbered while the writer is still held: numbers follow
            // commit order.
            let seq = wal.map(WalSync::committed);
            (results, Ok(seq))
        }
        Err(e) => {
            let failed = results
                .into_iter()
                .map(|(outcome, _)| (outcome, Err(e.clone())))
                .collect();
            (failed, Err(e))
        }
    }
}
