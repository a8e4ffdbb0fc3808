//! Connections to PostgreSQL, each owned by a thread of its own.
//!
//! The `postgres` client blocks on a small Tokio runtime of its own, which
//! must not be entered from a thread that already runs Tokio (the service's
//! async workers sometimes do a point read inline). So every connection
//! lives on a dedicated thread and a transaction sends it closures: the
//! caller blocks on a channel, as it would on SQLite's mutex, whatever
//! thread it is.

use crate::{Result, StoreError};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A parameter that can travel to the connection's thread.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// A connection and the statements it has prepared (each SQL text is
/// parsed once per connection, not on every call).
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let statement = self.statement(sql).map_err(error)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.client.query(&statement, &refs).map_err(error)
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        let statement = self.statement(sql).map_err(error)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.client.execute(&statement, &refs).map_err(error)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).map_err(error)
    }
}

/// PostgreSQL's errors as the store's: a full disk is `Full` (the change
/// was not made, as with SQLite), anything else `Backend`.
pub(crate) fn error(e: postgres::Error) -> StoreError {
    use postgres::error::SqlState;
    match e.code() {
        Some(code) if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY => {
            StoreError::Full(e.to_string())
        }
        // Connection exceptions (class 08), the server shutting down or
        // refusing connections: the statement did not run; try again later.
        Some(code)
            if code.code().starts_with("08")
                || code.code().starts_with("57P")
                || *code == SqlState::TOO_MANY_CONNECTIONS =>
        {
            StoreError::Unavailable(e.to_string())
        }
        Some(code) => StoreError::Backend(format!(
            "{}: {}",
            code.code(),
            e.as_db_error().map(|d| d.message()).unwrap_or_default()
        )),
        // No SQL state: the connection itself failed (refused, reset,
        // closed).
        None => StoreError::Unavailable(e.to_string()),
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The handle of one connection's thread.
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
    broken: Arc<AtomicBool>,
}

impl Worker {
    fn connect(config: &postgres::Config) -> Result<Worker> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::channel();
        let broken = Arc::new(AtomicBool::new(false));
        let config = config.clone();
        let flag = broken.clone();
        std::thread::Builder::new()
            .name("ember-postgres".into())
            .spawn(move || {
                let client = match config.connect(NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready.send(Err(error(e)));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut conn = Conn {
                    client,
                    statements: HashMap::new(),
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut conn);
                    if conn.client.is_closed() {
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start a connection thread: {e}")))?;
        connected
            .recv()
            .map_err(|_| StoreError::Backend("connection thread ended".into()))??;
        Ok(Worker { jobs, broken })
    }

    /// Runs `f` on the connection and waits for its result.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| StoreError::Unavailable("PostgreSQL connection is gone".into()))?;
        answer
            .recv()
            .map_err(|_| StoreError::Unavailable("PostgreSQL connection is gone".into()))?
    }

    /// Queues `f` on the connection without waiting for it: jobs run in
    /// order, so what the caller sends next runs after it. A failure marks
    /// the connection broken (it is closed instead of reused).
    pub(crate) fn send(&self, f: impl FnOnce(&mut Conn) -> Result<()> + Send + 'static) {
        let broken = self.broken.clone();
        let queued = self.jobs.send(Box::new(move |conn| {
            if let Err(e) = f(conn) {
                tracing::debug!(error = %e, "a queued statement failed; closing the connection");
                broken.store(true, Ordering::SeqCst);
            }
        }));
        if queued.is_err() {
            self.mark_broken();
        }
    }

    /// Queues `f` without waiting; it reports its own failure.
    pub(crate) fn queue(&self, f: impl FnOnce(&mut Conn) + Send + 'static) {
        if self.jobs.send(Box::new(f)).is_err() {
            self.mark_broken();
        }
    }

    pub(crate) fn mark_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }
}

/// At most `max` connections, opened on demand and kept while healthy.
pub(crate) struct Pool {
    config: postgres::Config,
    state: Mutex<PoolState>,
    freed: Condvar,
    max: usize,
}

struct PoolState {
    idle: Vec<Worker>,
    open: usize,
}

/// How long a transaction waits for a connection when all are in use.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(30);

impl Pool {
    pub(crate) fn new(config: postgres::Config, max: usize) -> Pool {
        Pool {
            config,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max,
        }
    }

    pub(crate) fn get(&self) -> Result<Pooled<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + WAIT_FOR_CONNECTION;
        loop {
            if let Some(worker) = state.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    worker: Some(worker),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match Worker::connect(&self.config) {
                    Ok(worker) => Ok(Pooled {
                        pool: self,
                        worker: Some(worker),
                    }),
                    Err(e) => {
                        self.closed();
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "all {} PostgreSQL connections are busy",
                    self.max
                )));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn closed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.open -= 1;
        self.freed.notify_one();
    }
}

/// A connection taken from the pool; it goes back when dropped (or is
/// closed, if it broke).
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    worker: Option<Worker>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Worker;
    fn deref(&self) -> &Worker {
        self.worker.as_ref().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        if worker.broken.load(Ordering::SeqCst) {
            drop(worker);
            self.pool.closed();
        } else {
            let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
            state.idle.push(worker);
            self.pool.freed.notify_one();
        }
    }
}
