//! When a commit is durable, and who pays for it.
//!
//! The writer runs with `synchronous = NORMAL`: a COMMIT appends its frames
//! to the WAL and returns without an fsync. A committer then waits in
//! [`WalSync::wait_durable`], outside the writer lock, for an fsync of the
//! WAL that started after its COMMIT; concurrent committers share one. So
//! the next transaction (or group) runs while this one's fsync is in
//! flight, where `synchronous = FULL` would hold the writer lock across it.
//!
//! Why this is as durable as FULL: in WAL mode the two differ only in that
//! FULL fsyncs the WAL at each commit (SQLite still syncs the WAL before a
//! checkpoint and the database after one, and the WAL header when the log
//! restarts). The WAL is append-only between checkpoints, so an fsync that
//! starts after a COMMIT returned covers its frames and every earlier one.
//! Nothing is acknowledged before that fsync has returned. What differs:
//! other connections may *see* a commit a fraction of a millisecond before
//! it is durable. Ember never acts irreversibly on such a view without a
//! commit of its own (which is durable only after the earlier frames are),
//! and the volume a snapshot switches stays quiesced until the switch is
//! durable.
//!
//! Checkpoints (copying the WAL back into the database file) run on a
//! background thread with a connection of their own, so no committer pays
//! for one; the writer checkpoints itself only if the WAL grows far past
//! the background threshold.

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Shares WAL fsyncs between committers.
pub(super) struct WalSync {
    wal: PathBuf,
    state: Mutex<SyncState>,
    synced: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Commits so far, numbered in commit order.
    committed: u64,
    /// Every commit numbered up to this is durable.
    durable: u64,
    /// Whether some committer is running an fsync now.
    syncing: bool,
    /// Set by a failed fsync and never cleared: after an fsync error the
    /// kernel may have dropped the dirty pages, so no later fsync can
    /// vouch for them (the process must restart and recover from disk).
    failed: Option<String>,
}

impl WalSync {
    pub(super) fn new(database: &Path) -> WalSync {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        WalSync {
            wal: wal.into(),
            state: Mutex::default(),
            synced: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers a COMMIT that has just returned; call it while still holding
    /// the writer connection, so numbers follow commit order.
    pub(super) fn committed(&self) -> u64 {
        let mut state = self.lock();
        state.committed += 1;
        state.committed
    }

    /// Returns once commit `seq` is durable.
    pub(super) fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut state = self.lock();
        loop {
            if let Some(why) = &state.failed {
                return Err(StoreError::Backend(format!(
                    "the metadata log failed: {why}"
                )));
            }
            if state.durable >= seq {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.syncing = true;
            // Every commit numbered so far has returned, so its frames are
            // in the file this fsync flushes.
            let covers = state.committed;
            drop(state);
            let began = std::time::Instant::now();
            let result = sync_file(&self.wal);
            ember_metrics::metrics()
                .store_wal_fsync
                .observe(began.elapsed().as_secs_f64());
            state = self.lock();
            state.syncing = false;
            match result {
                Ok(()) => state.durable = state.durable.max(covers),
                Err(e) => state.failed = Some(e.to_string()),
            }
            self.synced.notify_all();
        }
    }
}

/// fsyncs `path`. A missing WAL means SQLite checkpointed it into the
/// database (synced) and removed it: nothing is left to flush.
fn sync_file(path: &Path) -> std::io::Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// WAL pages after which the background thread checkpoints.
const CHECKPOINT_PAGES: i32 = 4000;
/// WAL pages after which the writer checkpoints itself (the background
/// thread is behind: a burst, or long readers pinning the log).
pub(super) const WRITER_CHECKPOINT_PAGES: i32 = 4 * CHECKPOINT_PAGES;

/// The background checkpoint thread.
pub(super) struct Checkpointer {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Signal {
    wanted: bool,
    stop: bool,
}

impl Checkpointer {
    /// Starts the thread and hooks `writer` so that its commits wake it.
    pub(super) fn start(database: &Path, writer: &mut Connection) -> Result<Checkpointer> {
        let backend = super::backend;
        let conn = Connection::open(database).map_err(backend)?;
        super::persist_wal(&conn)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(backend)?;
        // A connection opens the WAL on its first read; until then a
        // checkpoint through it does nothing.
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "journal mode is {mode}, not WAL"
            )));
        }
        let signal: Arc<(Mutex<Signal>, Condvar)> = Arc::default();
        let hook_signal = signal.clone();
        // Replaces SQLite's own auto-checkpoint hook (also a WAL hook).
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
                // The commit has happened: whatever the hook returns would
                // be reported as the COMMIT's result, so it reports nothing
                // (a busy checkpoint means the background thread is on it).
                if pages >= WRITER_CHECKPOINT_PAGES {
                    let _ = wal.checkpoint();
                } else if pages >= CHECKPOINT_PAGES {
                    let (lock, cv) = &*hook_signal;
                    lock.lock().unwrap_or_else(|p| p.into_inner()).wanted = true;
                    cv.notify_one();
                }
                Ok(())
            }))
            .map_err(backend)?;
        let thread_signal = signal.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, &thread_signal))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Checkpointer {
            signal,
            thread: Some(thread),
        })
    }
}

fn run(conn: Connection, signal: &(Mutex<Signal>, Condvar)) {
    let (lock, cv) = signal;
    loop {
        {
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !s.wanted && !s.stop {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.wanted = false;
        }
        // PASSIVE: copies what no reader still needs, never waits for the
        // writer or readers. A failure is retried at the next signal.
        if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)
        {
            tracing::warn!(error = %e, "background checkpoint failed");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.signal;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cv.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
