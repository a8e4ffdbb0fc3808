//! SQLite backend: one writer connection in WAL mode, whose commits are
//! acknowledged only once the WAL is fsync'd (`durability`), so a
//! committed transaction survives power loss; concurrent small writes
//! share commits (`group`). Writers use `BEGIN
//! IMMEDIATE`, which serializes them and makes check-then-write rules (quota)
//! race-free. Records are stored as JSON bodies next to the columns that
//! queries filter and sort on.

use crate::list::{ListQuery, Page, SnapshotFilter, SortDir, SortKey, VolumeFilter};
use crate::{ChunkState, MetadataStore, Result, StoreError, Tx, from_json, to_json};
use ember_model::{
    AccessKey, Backup, BackupId, Group, GroupSnapshot, GroupType, Image, ImageId, Metadata, Node,
    Policy, Project, ProjectId, QosSpecs, QuotaResource, Role, ServiceSwitch, Snapshot, SnapshotId,
    Transfer, User, UserMessage, Volume, VolumeId, VolumeType, WorkflowId, WorkflowRecord,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

mod durability;
mod group;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Schema migrations, applied in order at start-up; the index is the version.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE volumes (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, user_id TEXT NOT NULL,
    status TEXT NOT NULL, name TEXT, description TEXT, size INTEGER NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER, body TEXT NOT NULL);
CREATE INDEX volumes_by_project ON volumes (project_id, created_at);
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, user_id TEXT NOT NULL,
    volume_id TEXT NOT NULL, status TEXT NOT NULL, name TEXT, description TEXT,
    size INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER,
    body TEXT NOT NULL);
CREATE INDEX snapshots_by_project ON snapshots (project_id, created_at);
CREATE INDEX snapshots_by_created ON snapshots (created_at);
CREATE INDEX snapshots_by_volume ON snapshots (volume_id);
CREATE TABLE images (id TEXT PRIMARY KEY, parent TEXT, body TEXT NOT NULL);
CREATE INDEX images_by_parent ON images (parent);
CREATE TABLE quota_limits (
    project_id TEXT NOT NULL, resource TEXT NOT NULL, hard_limit INTEGER NOT NULL,
    PRIMARY KEY (project_id, resource));
CREATE TABLE quota_usage (
    project_id TEXT NOT NULL, resource TEXT NOT NULL, in_use INTEGER NOT NULL,
    PRIMARY KEY (project_id, resource));
CREATE TABLE workflows (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE identity (kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE role_assignments (user_id TEXT NOT NULL, project_id TEXT NOT NULL, role_id TEXT NOT NULL,
    PRIMARY KEY (user_id, project_id, role_id));
CREATE TABLE revoked_tokens (audit_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
"#,
    r#"
CREATE TABLE volume_types (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE transfers (id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE service_switches (id TEXT PRIMARY KEY, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE qos_specs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE messages (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX messages_by_project ON messages (project_id, created_at);
"#,
    r#"
CREATE TABLE group_types (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE groups (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE group_snapshots (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, body TEXT NOT NULL);
"#,
    // Listing filters and sorts that must not scan every snapshot (the
    // scale benchmark: 100 000 snapshots). An equality column first, then
    // the default order, so the index also yields the order.
    r#"
DROP INDEX snapshots_by_volume;
CREATE INDEX snapshots_by_volume ON snapshots (volume_id, created_at);
CREATE INDEX snapshots_by_project_status ON snapshots (project_id, status, created_at);
CREATE INDEX snapshots_by_project_name ON snapshots (project_id, COALESCE(name, ''), id);
CREATE INDEX volumes_by_project_status ON volumes (project_id, status, created_at);
CREATE INDEX volumes_by_project_name ON volumes (project_id, COALESCE(name, ''), id);
"#,
    // Garbage collection looks at unowned images only; with 100 000
    // snapshots a scan of every image made each snapshot delete cost ~1 s.
    r#"
CREATE INDEX images_unowned ON images (id) WHERE json_extract(body, '$.owner') = 'None';
"#,
    // Revocations of every token of a user, project, grant or role issued
    // before a moment (Keystone's revocation events): deleting or
    // disabling one, or changing a password, ends its tokens at once.
    r#"
CREATE TABLE revoked_subjects (subject TEXT PRIMARY KEY, before_ms INTEGER NOT NULL, expires_at INTEGER NOT NULL);
"#,
    // Quota usage that SQL arithmetic overflowed into a REAL (before sizes
    // were capped): back to an integer, so the project can be read again
    // (an admin then resets the usage or deletes the oversized volume).
    r#"
UPDATE quota_usage SET in_use = CAST(MIN(MAX(in_use, -9223372036854775808), 9223372036854775807) AS INTEGER)
    WHERE typeof(in_use) != 'integer';
"#,
    // Nodes sharing a store, and the keys they share.
    r#"
CREATE TABLE nodes (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    // Backups, their chunk references, and the chunks on the target.
    r#"
CREATE TABLE backups (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, volume_id TEXT NOT NULL,
    created_at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX backups_by_project ON backups (project_id, created_at);
CREATE TABLE backup_refs (backup_id TEXT NOT NULL, idx INTEGER NOT NULL, project_id TEXT NOT NULL,
    hash TEXT NOT NULL, PRIMARY KEY (backup_id, idx));
CREATE INDEX backup_refs_by_chunk ON backup_refs (project_id, hash);
CREATE TABLE backup_chunks (project_id TEXT NOT NULL, hash TEXT NOT NULL, state INTEGER NOT NULL,
    PRIMARY KEY (project_id, hash));
"#,
    // Snapshot and backup policies.
    r#"
CREATE TABLE policies (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, created_at INTEGER NOT NULL,
    body TEXT NOT NULL);
"#,
];

/// The writer keeps a page cache sized (16 MiB, taken only as pages are
/// used) for the hot index pages of a few hundred thousand rows. Readers
/// keep SQLite's default: a reader's cache is dropped whenever another
/// connection has committed, so a bigger one would not stay warm. (Mapping
/// the database for readers measured no faster and counted the mapped
/// pages as the server's resident memory.)
fn tune_cache(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "cache_size", -(16i64 << 10))
        .map_err(backend)
}

/// Writes one row keyed by `id`: `update_in_place` when the row exists
/// with the same indexed columns (it sets only the others, so no index page
/// is rewritten: a snapshot commit writes about half the pages), otherwise
/// `upsert`. Both statements take the same numbered parameters.
fn put_row(
    conn: &Connection,
    update_in_place: &str,
    upsert: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<()> {
    let updated = conn
        .prepare_cached(update_in_place)
        .and_then(|mut s| s.execute(params))
        .map_err(backend)?;
    if updated == 0 {
        conn.prepare_cached(upsert)
            .and_then(|mut s| s.execute(params))
            .map_err(backend)?;
    }
    Ok(())
}

pub struct SqliteStore {
    /// The one connection that writes (and reads, for in-memory stores).
    conn: Mutex<Connection>,
    /// Read-only connections: in WAL mode readers neither wait for the
    /// writer nor block it, so listings and polls do not queue behind
    /// commits. Empty for in-memory stores (a second connection would be a
    /// different database).
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    /// Jobs waiting for a group commit (see `group`).
    queue: Mutex<group::GroupQueue>,
    /// Signalled when a group's leader hands over or finishes.
    group_done: std::sync::Condvar,
    /// Makes commits durable (file databases; in memory there is nothing
    /// to sync).
    wal: Option<durability::WalSync>,
    _checkpointer: Option<durability::Checkpointer>,
}

const READERS: usize = 4;

fn backend(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return StoreError::Full(e.to_string());
    }
    StoreError::Backend(e.to_string())
}

/// Keeps the WAL (and its index) when the last connection closes, at the
/// size it reached: after a restart on a full file system the log's blocks
/// are still allocated, so the commits that free space (deletes, status
/// changes) can be written where a new log file could not be created.
fn persist_wal(conn: &Connection) -> Result<()> {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: a valid open connection, the main schema's name as a C
    // string, and a pointer to an int as SQLITE_FCNTL_PERSIST_WAL expects.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::os::raw::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(StoreError::Backend(format!(
            "could not keep the WAL persistent (SQLite error {rc})"
        )));
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        persist_wal(&conn)?;
        tune_cache(&conn)?;
        let mut store = Self::init(conn)?;
        // From here on a commit is durable once `WalSync` says so.
        let checkpointer = {
            let mut writer = store.lock();
            writer
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(backend)?;
            durability::Checkpointer::start(path, &mut writer)?
        };
        store.wal = Some(durability::WalSync::new(path));
        store._checkpointer = Some(checkpointer);
        for _ in 0..READERS {
            let reader = Connection::open(path).map_err(backend)?;
            persist_wal(&reader)?;
            reader
                .busy_timeout(std::time::Duration::from_secs(30))
                .map_err(backend)?;
            // A write through a read transaction is a bug; make it loud.
            reader
                .pragma_update(None, "query_only", "ON")
                .map_err(backend)?;
            store.readers.push(Mutex::new(reader));
        }
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        // Savepoint journals (one per job of a group commit) stay in memory
        // instead of spilling to a temporary file once they pass 64 KiB.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(backend)?;
        migrate(&mut conn)?;
        // Statistics from a bounded sample (milliseconds even for 100 000
        // rows), so the planner picks the most selective index, e.g. the
        // volume's rather than the project's when listing one volume's
        // snapshots. On a full disk the old statistics serve: start-up must
        // not need space.
        match conn
            .execute_batch("PRAGMA analysis_limit = 1000; ANALYZE;")
            .map_err(backend)
        {
            Err(StoreError::Full(e)) => {
                tracing::warn!(error = %e, "no space to refresh the query planner's statistics")
            }
            other => other?,
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            readers: Vec::new(),
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            queue: Mutex::default(),
            group_done: std::sync::Condvar::new(),
            wal: None,
            _checkpointer: None,
        })
    }

    /// A free read connection (or the round-robin one if all are busy).
    fn lock_reader(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return self.lock();
        }
        let start = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(guard) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return guard;
            }
        }
        self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the open
        // transaction is rolled back when `SqliteTx` drops), so a poisoned
        // mutex is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(backend)?;
    let version: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(migration).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [i as i64 + 1],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = i + 1, "applied metadata schema migration");
    }
    Ok(())
}

impl MetadataStore for SqliteStore {
    fn write(&self) -> Result<Box<dyn Tx + '_>> {
        let conn = self.lock();
        conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
        Ok(Box::new(SqliteTx {
            conn,
            open: true,
            wal: self.wal.as_ref(),
        }))
    }

    /// See `group`.
    fn write_grouped(&self, job: crate::GroupJob) -> Result<bool> {
        self.grouped(None, job)
    }

    fn write_grouped_after(&self, barrier: crate::Barrier, job: crate::GroupJob) -> Result<bool> {
        self.grouped(Some(barrier), job)
    }

    fn point_reads_never_wait(&self) -> bool {
        !self.readers.is_empty()
    }

    fn read(&self) -> Result<Box<dyn Tx + '_>> {
        let conn = self.lock_reader();
        conn.execute_batch("BEGIN").map_err(backend)?;
        Ok(Box::new(SqliteTx {
            conn,
            open: true,
            wal: None,
        }))
    }
}

struct SqliteTx<'a> {
    conn: MutexGuard<'a, Connection>,
    open: bool,
    /// Set on write transactions of a file database.
    wal: Option<&'a durability::WalSync>,
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The SQL expression a sort key orders by. NULLs are folded into a value
/// below every real one so that keyset pagination can compare tuples.
fn sort_expr(key: SortKey) -> &'static str {
    match key {
        SortKey::Id => "id",
        SortKey::CreatedAt => "created_at",
        SortKey::UpdatedAt => "COALESCE(updated_at, -1)",
        SortKey::Status => "status",
        SortKey::Name => "COALESCE(name, '')",
        SortKey::Description => "COALESCE(description, '')",
        SortKey::Size => "size",
        SortKey::VolumeId => "volume_id",
        SortKey::ProjectId => "project_id",
        SortKey::UserId => "user_id",
    }
}

/// The WHERE clause and parameters of a listing, before pagination.
struct Selection {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Selection {
    fn new<F>(query: &ListQuery<F>) -> Self {
        let mut s = Selection {
            clauses: vec!["1 = 1".into()],
            params: vec![],
        };
        if let Some(project) = &query.project {
            s.eq("project_id", Value::Text(project.0.clone()));
        }
        s
    }

    fn eq(&mut self, column: &str, value: Value) {
        self.params.push(value);
        self.clauses
            .push(format!("{column} = ?{}", self.params.len()));
    }

    fn sql(&self) -> String {
        self.clauses.join(" AND ")
    }
}

fn list_rows<T: serde::de::DeserializeOwned, F>(
    conn: &Connection,
    table: &str,
    query: &ListQuery<F>,
    mut selection: Selection,
    match_nothing: bool,
    metadata: &Metadata,
    metadata_of: impl Fn(&T) -> &Metadata,
) -> Result<Page<T>> {
    if match_nothing {
        return Ok(query.empty_page());
    }
    let sort = query.total_sort();
    let order_by = sort
        .iter()
        .map(|(k, d)| {
            format!(
                "{} {}",
                sort_expr(*k),
                if *d == SortDir::Asc { "ASC" } else { "DESC" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");

    let count = if query.with_count && metadata.is_empty() {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {}", selection.sql());
        let n: i64 = conn
            .query_row(
                &sql,
                rusqlite::params_from_iter(selection.params.iter()),
                |r| r.get(0),
            )
            .map_err(backend)?;
        Some(n as u64)
    } else {
        None
    };

    if let Some(marker) = query.marker {
        // Keyset: rows strictly after the marker in sort order.
        let cols = sort
            .iter()
            .map(|(k, _)| sort_expr(*k))
            .collect::<Vec<_>>()
            .join(", ");
        let mut marker_sel = Selection {
            clauses: selection.clauses.clone(),
            params: selection.params.clone(),
        };
        marker_sel.eq("id", Value::Text(marker.hyphenated().to_string()));
        let sql = format!("SELECT {cols} FROM {table} WHERE {}", marker_sel.sql());
        let values: Option<Vec<Value>> = conn
            .query_row(
                &sql,
                rusqlite::params_from_iter(marker_sel.params.iter()),
                |row| (0..sort.len()).map(|i| row.get::<_, Value>(i)).collect(),
            )
            .optional()
            .map_err(backend)?;
        let Some(values) = values else {
            return Ok(Page {
                items: vec![],
                count,
                more: false,
                marker_not_found: true,
            });
        };
        let mut alternatives = Vec::new();
        for i in 0..sort.len() {
            let mut terms = Vec::new();
            for (j, value) in values.iter().enumerate().take(i + 1) {
                selection.params.push(value.clone());
                let p = selection.params.len();
                let expr = sort_expr(sort[j].0);
                if j < i {
                    terms.push(format!("{expr} = ?{p}"));
                } else {
                    let op = if sort[j].1 == SortDir::Asc { ">" } else { "<" };
                    terms.push(format!("{expr} {op} ?{p}"));
                }
            }
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        selection
            .clauses
            .push(format!("({})", alternatives.join(" OR ")));
    }

    let in_sql_paging = metadata.is_empty();
    let mut sql = format!(
        "SELECT body FROM {table} WHERE {} ORDER BY {order_by}",
        selection.sql()
    );
    if in_sql_paging {
        let limit = query.limit.map(|l| l as i64 + 1).unwrap_or(-1);
        sql.push_str(&format!(" LIMIT {limit} OFFSET {}", query.offset));
    }
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let bodies = stmt
        .query_map(rusqlite::params_from_iter(selection.params.iter()), |r| {
            r.get::<_, String>(0)
        })
        .map_err(backend)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(backend)?;
    let items = bodies
        .iter()
        .map(|b| from_json::<T>(table, b))
        .collect::<Result<Vec<_>>>()?;
    Ok(query.finish_page(items, count, metadata, metadata_of, in_sql_paging))
}

/// One record's JSON body by id.
fn get_body<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &str,
    id: &str,
) -> Result<Option<T>> {
    let body: Option<String> = conn
        .prepare_cached(&format!("SELECT body FROM {table} WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(backend)?;
    body.map(|b| from_json(table, &b)).transpose()
}

/// Every body a `SELECT body …` query returns.
fn bodies<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &str,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let rows = stmt
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(backend)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(backend)?;
    rows.iter().map(|b| from_json(table, b)).collect()
}

fn identity_get<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    kind: &str,
    id: &str,
) -> Result<Option<T>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM identity WHERE kind = ?1 AND id = ?2")
        .and_then(|mut s| s.query_row([kind, id], |r| r.get(0)).optional())
        .map_err(backend)?;
    body.map(|b| from_json(kind, &b)).transpose()
}

fn identity_put<T: serde::Serialize>(
    conn: &Connection,
    kind: &str,
    id: &str,
    name: &str,
    value: &T,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO identity (kind, id, name, body) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![kind, id, name, to_json(value)]))
    .map(drop)
    .map_err(backend)
}

fn identity_delete(conn: &Connection, kind: &str, id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM identity WHERE kind = ?1 AND id = ?2",
        [kind, id],
    )
    .map(drop)
    .map_err(backend)
}

fn identity_all<T: serde::de::DeserializeOwned>(conn: &Connection, kind: &str) -> Result<Vec<T>> {
    bodies(
        conn,
        kind,
        "SELECT body FROM identity WHERE kind = ?1 ORDER BY name, id",
        &[&kind],
    )
}

fn opt_ts(t: Option<ember_model::Timestamp>) -> Option<i64> {
    t.map(|t| t.0)
}

impl Tx for SqliteTx<'_> {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let began = std::time::Instant::now();
        self.conn.execute_batch("COMMIT").map_err(backend)?;
        self.open = false;
        let numbered = self.wal.map(|wal| (wal, wal.committed()));
        // Let the next writer in before waiting for the fsync.
        drop(self);
        match numbered {
            Some((wal, seq)) => {
                let durable = wal.wait_durable(seq);
                ember_metrics::metrics()
                    .store_commit
                    .observe(began.elapsed().as_secs_f64());
                durable
            }
            None => Ok(()),
        }
    }

    fn volume(&mut self, id: VolumeId) -> Result<Option<Volume>> {
        get_body(&self.conn, "volumes", &id.to_string())
    }

    fn put_volume(&mut self, v: &Volume) -> Result<()> {
        put_row(
            &self.conn,
            "UPDATE volumes SET user_id = ?3, description = ?6, size = ?7, updated_at = ?9, body = ?10
             WHERE id = ?1 AND project_id = ?2 AND status = ?4 AND name IS ?5 AND created_at = ?8",
            "INSERT INTO volumes (id, project_id, user_id, status, name, description, size, created_at, updated_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO UPDATE SET project_id = ?2, user_id = ?3, status = ?4, name = ?5,
                 description = ?6, size = ?7, created_at = ?8, updated_at = ?9, body = ?10",
            params![
                v.id.to_string(),
                v.project_id.0,
                v.user_id.0,
                v.status.as_str(),
                v.name,
                v.description,
                v.size_gib as i64,
                v.created_at.0,
                opt_ts(v.updated_at),
                to_json(v)
            ],
        )
    }

    fn delete_volume(&mut self, id: VolumeId) -> Result<()> {
        self.conn
            .execute("DELETE FROM volumes WHERE id = ?1", [id.to_string()])
            .map(drop)
            .map_err(backend)
    }

    fn list_volumes(&mut self, query: &ListQuery<VolumeFilter>) -> Result<Page<Volume>> {
        let mut sel = Selection::new(query);
        let f = &query.filter;
        if let Some(name) = &f.name {
            sel.eq("name", Value::Text(name.clone()));
        }
        if let Some(status) = f.status {
            sel.eq("status", Value::Text(status.as_str().into()));
        }
        if let Some(zone) = &f.availability_zone {
            sel.eq(
                "json_extract(body, '$.availability_zone')",
                Value::Text(zone.clone()),
            );
        }
        if let Some(bootable) = f.bootable {
            sel.eq(
                "json_extract(body, '$.bootable')",
                Value::Integer(bootable as i64),
            );
        }
        list_rows(
            &self.conn,
            "volumes",
            query,
            sel,
            f.match_nothing,
            &f.metadata,
            |v: &Volume| &v.metadata,
        )
    }

    fn all_volumes(&mut self) -> Result<Vec<Volume>> {
        self.list_volumes(&ListQuery::default()).map(|p| p.items)
    }

    fn volume_with_attachment(&mut self, attachment: uuid::Uuid) -> Result<Option<Volume>> {
        let id = attachment.to_string();
        let mut found = bodies(
            &self.conn,
            "volumes",
            "SELECT body FROM volumes WHERE EXISTS (SELECT 1 FROM json_each(body, '$.attachments') \
             WHERE json_extract(value, '$.id') = ?1)",
            &[&id],
        )?;
        Ok(found.pop())
    }

    fn attached_volumes(&mut self, project: Option<&ProjectId>) -> Result<Vec<Volume>> {
        let project = project.map(|p| p.0.clone());
        bodies(
            &self.conn,
            "volumes",
            "SELECT body FROM volumes WHERE json_array_length(body, '$.attachments') > 0 \
             AND (?1 IS NULL OR project_id = ?1) ORDER BY created_at, id",
            &[&project],
        )
    }

    fn snapshot(&mut self, id: SnapshotId) -> Result<Option<Snapshot>> {
        get_body(&self.conn, "snapshots", &id.to_string())
    }

    fn put_snapshot(&mut self, s: &Snapshot) -> Result<()> {
        put_row(
            &self.conn,
            "UPDATE snapshots SET user_id = ?3, description = ?7, size = ?8, updated_at = ?10, body = ?11
             WHERE id = ?1 AND project_id = ?2 AND volume_id = ?4 AND status = ?5 AND name IS ?6
                 AND created_at = ?9",
            "INSERT INTO snapshots (id, project_id, user_id, volume_id, status, name, description, size, created_at, updated_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET project_id = ?2, user_id = ?3, volume_id = ?4, status = ?5,
                 name = ?6, description = ?7, size = ?8, created_at = ?9, updated_at = ?10, body = ?11",
            params![
                s.id.to_string(),
                s.project_id.0,
                s.user_id.0,
                s.volume_id.to_string(),
                s.status.as_str(),
                s.name,
                s.description,
                s.size_gib as i64,
                s.created_at.0,
                opt_ts(s.updated_at),
                to_json(s)
            ],
        )
    }

    fn delete_snapshot(&mut self, id: SnapshotId) -> Result<()> {
        self.conn
            .execute("DELETE FROM snapshots WHERE id = ?1", [id.to_string()])
            .map(drop)
            .map_err(backend)
    }

    fn list_snapshots(&mut self, query: &ListQuery<SnapshotFilter>) -> Result<Page<Snapshot>> {
        let mut sel = Selection::new(query);
        let f = &query.filter;
        if let Some(id) = f.id {
            sel.eq("id", Value::Text(id.to_string()));
        }
        if let Some(name) = &f.name {
            sel.eq("name", Value::Text(name.clone()));
        }
        if let Some(status) = f.status {
            sel.eq("status", Value::Text(status.as_str().into()));
        }
        if let Some(volume) = f.volume_id {
            sel.eq("volume_id", Value::Text(volume.to_string()));
        }
        list_rows(
            &self.conn,
            "snapshots",
            query,
            sel,
            f.match_nothing,
            &f.metadata,
            |s: &Snapshot| &s.metadata,
        )
    }

    fn snapshots_of_volume(&mut self, volume: VolumeId) -> Result<Vec<Snapshot>> {
        let query = ListQuery {
            filter: SnapshotFilter {
                volume_id: Some(volume),
                ..Default::default()
            },
            ..Default::default()
        };
        self.list_snapshots(&query).map(|p| p.items)
    }

    fn all_snapshots(&mut self) -> Result<Vec<Snapshot>> {
        self.list_snapshots(&ListQuery::default()).map(|p| p.items)
    }

    fn image(&mut self, id: ImageId) -> Result<Option<Image>> {
        get_body(&self.conn, "images", &id.to_string())
    }

    fn put_image(&mut self, image: &Image) -> Result<()> {
        put_row(
            &self.conn,
            "UPDATE images SET body = ?3 WHERE id = ?1 AND parent IS ?2",
            "INSERT INTO images (id, parent, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET parent = ?2, body = ?3",
            params![
                image.id.to_string(),
                image.parent.map(|p| p.to_string()),
                to_json(image)
            ],
        )
    }

    fn delete_image(&mut self, id: ImageId) -> Result<()> {
        self.conn
            .execute("DELETE FROM images WHERE id = ?1", [id.to_string()])
            .map(drop)
            .map_err(backend)
    }

    fn image_children(&mut self, id: ImageId) -> Result<Vec<Image>> {
        bodies(
            &self.conn,
            "images",
            "SELECT body FROM images WHERE parent = ?1 ORDER BY id",
            &[&id.to_string()],
        )
    }

    fn all_images(&mut self) -> Result<Vec<Image>> {
        bodies(
            &self.conn,
            "images",
            "SELECT body FROM images ORDER BY id",
            &[],
        )
    }

    fn unowned_images(&mut self) -> Result<Vec<Image>> {
        // The partial index `images_unowned` answers this (same predicate).
        bodies(
            &self.conn,
            "images",
            "SELECT body FROM images WHERE json_extract(body, '$.owner') = 'None' ORDER BY id",
            &[],
        )
    }

    fn quota_limit(&mut self, project: &ProjectId, resource: QuotaResource) -> Result<Option<i64>> {
        self.keyed_quota_limit(project, resource.as_str())
    }

    fn keyed_quota_limit(&mut self, project: &ProjectId, key: &str) -> Result<Option<i64>> {
        self.conn
            .prepare_cached(
                "SELECT hard_limit FROM quota_limits WHERE project_id = ?1 AND resource = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![project.0, key], |r| r.get(0))
                    .optional()
            })
            .map_err(backend)
    }

    fn set_quota_limit(
        &mut self,
        project: &ProjectId,
        resource: QuotaResource,
        limit: i64,
    ) -> Result<()> {
        self.set_keyed_quota_limit(project, resource.as_str(), limit)
    }

    fn set_keyed_quota_limit(&mut self, project: &ProjectId, key: &str, limit: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO quota_limits (project_id, resource, hard_limit) VALUES (?1, ?2, ?3)",
                params![project.0, key, limit],
            )
            .map(drop)
            .map_err(backend)
    }

    fn group(&mut self, id: &str) -> Result<Option<Group>> {
        get_body(&self.conn, "groups", id)
    }

    fn groups(&mut self) -> Result<Vec<Group>> {
        bodies(
            &self.conn,
            "groups",
            "SELECT body FROM groups ORDER BY created_at, id",
            &[],
        )
    }

    fn put_group(&mut self, g: &Group) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO groups (id, created_at, body) VALUES (?1, ?2, ?3)",
                params![g.id, g.created_at.0, to_json(g)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_group(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM groups WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn group_snapshot(&mut self, id: &str) -> Result<Option<GroupSnapshot>> {
        get_body(&self.conn, "group_snapshots", id)
    }

    fn group_snapshots(&mut self) -> Result<Vec<GroupSnapshot>> {
        bodies(
            &self.conn,
            "group_snapshots",
            "SELECT body FROM group_snapshots ORDER BY created_at, id",
            &[],
        )
    }

    fn put_group_snapshot(&mut self, g: &GroupSnapshot) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO group_snapshots (id, created_at, body) VALUES (?1, ?2, ?3)",
                params![g.id, g.created_at.0, to_json(g)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_group_snapshot(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM group_snapshots WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn group_type(&mut self, id: &str) -> Result<Option<GroupType>> {
        get_body(&self.conn, "group_types", id)
    }

    fn group_types(&mut self) -> Result<Vec<GroupType>> {
        bodies(
            &self.conn,
            "group_types",
            "SELECT body FROM group_types ORDER BY name",
            &[],
        )
    }

    fn put_group_type(&mut self, t: &GroupType) -> Result<()> {
        self.conn
            .execute(
                // On the id only: a second record with another's name is an
                // error (the UNIQUE name), never a silent replacement.
                "INSERT INTO group_types (id, name, body) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, body = excluded.body",
                params![t.id, t.name, to_json(t)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_group_type(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM group_types WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn message(&mut self, id: &str) -> Result<Option<UserMessage>> {
        get_body(&self.conn, "messages", id)
    }

    fn messages(&mut self, project: Option<&ProjectId>) -> Result<Vec<UserMessage>> {
        match project {
            Some(p) => bodies(
                &self.conn,
                "messages",
                "SELECT body FROM messages WHERE project_id = ?1 ORDER BY created_at, id",
                &[&p.0],
            ),
            None => bodies(
                &self.conn,
                "messages",
                "SELECT body FROM messages ORDER BY created_at, id",
                &[],
            ),
        }
    }

    fn put_message(&mut self, m: &UserMessage) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO messages (id, project_id, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![m.id, m.project_id.0, m.created_at.0, to_json(m)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_message(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM messages WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn qos_specs(&mut self, id: &str) -> Result<Option<QosSpecs>> {
        get_body(&self.conn, "qos_specs", id)
    }

    fn all_qos_specs(&mut self) -> Result<Vec<QosSpecs>> {
        bodies(
            &self.conn,
            "qos_specs",
            "SELECT body FROM qos_specs ORDER BY name",
            &[],
        )
    }

    fn put_qos_specs(&mut self, q: &QosSpecs) -> Result<()> {
        self.conn
            .execute(
                // On the id only: a second record with another's name is an
                // error (the UNIQUE name), never a silent replacement.
                "INSERT INTO qos_specs (id, name, body) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, body = excluded.body",
                params![q.id, q.name, to_json(q)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_qos_specs(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM qos_specs WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn service_switch(&mut self, binary: &str) -> Result<Option<ServiceSwitch>> {
        get_body(&self.conn, "service_switches", binary)
    }

    fn put_service_switch(&mut self, s: &ServiceSwitch) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO service_switches (id, body) VALUES (?1, ?2)",
                params![s.binary, to_json(s)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn transfer(&mut self, id: &str) -> Result<Option<Transfer>> {
        get_body(&self.conn, "transfers", id)
    }

    fn transfers(&mut self) -> Result<Vec<Transfer>> {
        bodies(
            &self.conn,
            "transfers",
            "SELECT body FROM transfers ORDER BY created_at, id",
            &[],
        )
    }

    fn put_transfer(&mut self, t: &Transfer) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO transfers (id, volume_id, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![t.id, t.volume_id.to_string(), t.created_at.0, to_json(t)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_transfer(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM transfers WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn volume_type(&mut self, id: &str) -> Result<Option<VolumeType>> {
        get_body(&self.conn, "volume_types", id)
    }

    fn volume_types(&mut self) -> Result<Vec<VolumeType>> {
        bodies(
            &self.conn,
            "volume_types",
            "SELECT body FROM volume_types ORDER BY name",
            &[],
        )
    }

    fn put_volume_type(&mut self, t: &VolumeType) -> Result<()> {
        self.conn
            .execute(
                // On the id only: a second record with another's name is an
                // error (the UNIQUE name), never a silent replacement.
                "INSERT INTO volume_types (id, name, body) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, body = excluded.body",
                params![t.id, t.name, to_json(t)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_volume_type(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM volume_types WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn clear_quota_limits(&mut self, project: &ProjectId) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM quota_limits WHERE project_id = ?1",
                [&project.0],
            )
            .map(drop)
            .map_err(backend)
    }

    fn quota_usage(&mut self, project: &ProjectId, resource: QuotaResource) -> Result<i64> {
        self.keyed_quota_usage(project, resource.as_str())
    }

    fn keyed_quota_usage(&mut self, project: &ProjectId, key: &str) -> Result<i64> {
        self.conn
            .prepare_cached(
                "SELECT in_use FROM quota_usage WHERE project_id = ?1 AND resource = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![project.0, key], |r| r.get(0))
                    .optional()
            })
            .map(|v| v.unwrap_or(0))
            .map_err(backend)
    }

    fn add_quota_usage(
        &mut self,
        project: &ProjectId,
        resource: QuotaResource,
        delta: i64,
    ) -> Result<()> {
        self.add_keyed_quota_usage(project, resource.as_str(), delta)
    }

    fn add_keyed_quota_usage(&mut self, project: &ProjectId, key: &str, delta: i64) -> Result<()> {
        // Added here, checked, rather than by SQL `+`, which turns an
        // overflowing integer into a REAL that no later read accepts.
        let in_use = self.keyed_quota_usage(project, key)?;
        let total = in_use.checked_add(delta).ok_or_else(|| {
            StoreError::Corrupt(
                format!("quota usage {key} of {}", project.0),
                format!("{in_use} + {delta} overflows"),
            )
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO quota_usage (project_id, resource, in_use) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, resource) DO UPDATE SET in_use = excluded.in_use",
            )
            .and_then(|mut s| s.execute(params![project.0, key, total]))
            .map(drop)
            .map_err(backend)
    }

    fn all_quota_usage(&mut self) -> Result<Vec<(ProjectId, QuotaResource, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT project_id, resource, in_use FROM quota_usage")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(backend)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .filter_map(|(p, r, n)| {
                QuotaResource::ALL
                    .iter()
                    .find(|q| q.as_str() == r)
                    .map(|q| (ProjectId(p), *q, n))
            })
            .collect())
    }

    fn workflow(&mut self, id: WorkflowId) -> Result<Option<WorkflowRecord>> {
        get_body(&self.conn, "workflows", &id.to_string())
    }

    fn put_workflow(&mut self, w: &WorkflowRecord) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO workflows (id, created_at, body) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![w.id.to_string(), w.created_at.0, to_json(w)]))
            .map(drop)
            .map_err(backend)
    }

    fn delete_workflow(&mut self, id: WorkflowId) -> Result<()> {
        self.conn
            .execute("DELETE FROM workflows WHERE id = ?1", [id.to_string()])
            .map(drop)
            .map_err(backend)
    }

    fn workflows(&mut self) -> Result<Vec<WorkflowRecord>> {
        bodies(
            &self.conn,
            "workflows",
            "SELECT body FROM workflows ORDER BY created_at, id",
            &[],
        )
    }

    fn project(&mut self, id: &str) -> Result<Option<Project>> {
        identity_get(&self.conn, "project", id)
    }

    fn put_project(&mut self, p: &Project) -> Result<()> {
        identity_put(&self.conn, "project", &p.id, &p.name, p)
    }

    fn delete_project(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM role_assignments WHERE project_id = ?1", [id])
            .map_err(backend)?;
        identity_delete(&self.conn, "project", id)
    }

    fn projects(&mut self) -> Result<Vec<Project>> {
        identity_all(&self.conn, "project")
    }

    fn user(&mut self, id: &str) -> Result<Option<User>> {
        identity_get(&self.conn, "user", id)
    }

    fn put_user(&mut self, u: &User) -> Result<()> {
        identity_put(&self.conn, "user", &u.id, &u.name, u)
    }

    fn delete_user(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM role_assignments WHERE user_id = ?1", [id])
            .map_err(backend)?;
        identity_delete(&self.conn, "user", id)
    }

    fn users(&mut self) -> Result<Vec<User>> {
        identity_all(&self.conn, "user")
    }

    fn access_key(&mut self, access: &str) -> Result<Option<AccessKey>> {
        identity_get(&self.conn, "access_key", access)
    }

    fn access_keys(&mut self) -> Result<Vec<AccessKey>> {
        identity_all(&self.conn, "access_key")
    }

    fn put_access_key(&mut self, key: &AccessKey) -> Result<()> {
        identity_put(&self.conn, "access_key", &key.access, &key.user_id, key)
    }

    fn delete_access_key(&mut self, access: &str) -> Result<()> {
        identity_delete(&self.conn, "access_key", access)
    }

    fn role(&mut self, id: &str) -> Result<Option<Role>> {
        identity_get(&self.conn, "role", id)
    }

    fn put_role(&mut self, r: &Role) -> Result<()> {
        identity_put(&self.conn, "role", &r.id, &r.name, r)
    }

    fn delete_role(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM role_assignments WHERE role_id = ?1", [id])
            .map_err(backend)?;
        identity_delete(&self.conn, "role", id)
    }

    fn roles(&mut self) -> Result<Vec<Role>> {
        identity_all(&self.conn, "role")
    }

    fn role_assignments(&mut self, user: &str, project: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT role_id FROM role_assignments WHERE user_id = ?1 AND project_id = ?2 ORDER BY role_id")
            .map_err(backend)?;
        let rows = stmt
            .query_map([user, project], |r| r.get::<_, String>(0))
            .map_err(backend)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(rows)
    }

    fn all_role_assignments(&mut self) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id, project_id, role_id FROM role_assignments")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(backend)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(rows)
    }

    fn grant_role(&mut self, user: &str, project: &str, role: &str) -> Result<()> {
        self.conn
            .execute("INSERT OR IGNORE INTO role_assignments (user_id, project_id, role_id) VALUES (?1, ?2, ?3)", [user, project, role])
            .map(drop)
            .map_err(backend)
    }

    fn revoke_role(&mut self, user: &str, project: &str, role: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM role_assignments WHERE user_id = ?1 AND project_id = ?2 AND role_id = ?3", [user, project, role])
            .map(drop)
            .map_err(backend)
    }

    fn revoke_token(&mut self, audit_id: &str, expires_at: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO revoked_tokens (audit_id, expires_at) VALUES (?1, ?2)",
                params![audit_id, expires_at],
            )
            .map(drop)
            .map_err(backend)
    }

    fn revoked_tokens(&mut self, now: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT audit_id FROM revoked_tokens WHERE expires_at >= ?1")
            .map_err(backend)?;
        let rows = stmt
            .query_map([now], |r| r.get::<_, String>(0))
            .map_err(backend)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(rows)
    }

    fn revoke_subject(&mut self, subject: &str, before_ms: i64, expires_at: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO revoked_subjects (subject, before_ms, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (subject) DO UPDATE SET before_ms = MAX(before_ms, excluded.before_ms), \
                 expires_at = MAX(expires_at, excluded.expires_at)",
                params![subject, before_ms, expires_at],
            )
            .map(drop)
            .map_err(backend)
    }

    fn revoked_subjects(&mut self, now: i64) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT subject, before_ms FROM revoked_subjects WHERE expires_at >= ?1",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(backend)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(rows)
    }

    fn purge_revocations(&mut self, now: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM revoked_tokens WHERE expires_at < ?1", [now])
            .map_err(backend)?;
        self.conn
            .execute("DELETE FROM revoked_subjects WHERE expires_at < ?1", [now])
            .map(drop)
            .map_err(backend)
    }

    fn nodes(&mut self) -> Result<Vec<Node>> {
        bodies(
            &self.conn,
            "nodes",
            "SELECT body FROM nodes ORDER BY id",
            &[],
        )
    }

    fn put_node(&mut self, node: &Node) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO nodes (id, body) VALUES (?1, ?2)",
                params![node.id, to_json(node)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_node(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM nodes WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn secret(&mut self, name: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(backend)
    }

    fn put_secret_if_absent(&mut self, name: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                [name, value],
            )
            .map(drop)
            .map_err(backend)
    }

    fn backup(&mut self, id: BackupId) -> Result<Option<Backup>> {
        get_body(&self.conn, "backups", &id.to_string())
    }

    fn put_backup(&mut self, b: &Backup) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO backups (id, project_id, volume_id, created_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    b.id.to_string(),
                    b.project_id.0,
                    b.volume_id.to_string(),
                    b.created_at.0,
                    to_json(b)
                ],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_backup(&mut self, id: BackupId) -> Result<()> {
        self.clear_backup_refs(id)?;
        self.conn
            .execute("DELETE FROM backups WHERE id = ?1", [id.to_string()])
            .map(drop)
            .map_err(backend)
    }

    fn backups(&mut self, project: Option<&ProjectId>) -> Result<Vec<Backup>> {
        match project {
            Some(p) => bodies(
                &self.conn,
                "backups",
                "SELECT body FROM backups WHERE project_id = ?1 ORDER BY created_at, id",
                &[&p.0],
            ),
            None => bodies(
                &self.conn,
                "backups",
                "SELECT body FROM backups ORDER BY created_at, id",
                &[],
            ),
        }
    }

    fn put_backup_refs(
        &mut self,
        backup: BackupId,
        project: &ProjectId,
        refs: &[(u64, String)],
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO backup_refs (backup_id, idx, project_id, hash) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(backend)?;
        let backup = backup.to_string();
        for (index, hash) in refs {
            let index = i64::try_from(*index)
                .map_err(|_| StoreError::Backend("chunk index out of range".into()))?;
            stmt.execute(params![backup, index, project.0, hash])
                .map_err(backend)?;
        }
        Ok(())
    }

    fn backup_refs(&mut self, backup: BackupId) -> Result<Vec<(u64, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT idx, hash FROM backup_refs WHERE backup_id = ?1 ORDER BY idx")
            .map_err(backend)?;
        stmt.query_map([backup.to_string()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })
        .map_err(backend)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(backend)
    }

    fn clear_backup_refs(&mut self, backup: BackupId) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM backup_refs WHERE backup_id = ?1",
                [backup.to_string()],
            )
            .map(drop)
            .map_err(backend)
    }

    fn chunk_state(&mut self, project: &ProjectId, hash: &str) -> Result<Option<ChunkState>> {
        let code: Option<i64> = self
            .conn
            .prepare_cached("SELECT state FROM backup_chunks WHERE project_id = ?1 AND hash = ?2")
            .and_then(|mut s| s.query_row([&project.0, hash], |r| r.get(0)).optional())
            .map_err(backend)?;
        code.map(ChunkState::from_code).transpose()
    }

    fn put_chunk_state(
        &mut self,
        project: &ProjectId,
        hash: &str,
        state: ChunkState,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO backup_chunks (project_id, hash, state) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![project.0, hash, state.code()]))
            .map(drop)
            .map_err(backend)
    }

    fn delete_chunk_state(&mut self, project: &ProjectId, hash: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM backup_chunks WHERE project_id = ?1 AND hash = ?2",
                [&project.0, hash],
            )
            .map(drop)
            .map_err(backend)
    }

    fn unreferenced_chunks(
        &mut self,
        limit: usize,
    ) -> Result<Vec<(ProjectId, String, ChunkState)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.project_id, c.hash, c.state FROM backup_chunks c WHERE NOT EXISTS \
                 (SELECT 1 FROM backup_refs r WHERE r.project_id = c.project_id AND r.hash = c.hash) LIMIT ?1",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(backend)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(backend)?;
        rows.into_iter()
            .map(|(p, h, c)| Ok((ProjectId(p), h, ChunkState::from_code(c)?)))
            .collect()
    }

    fn policy(&mut self, id: &str) -> Result<Option<Policy>> {
        get_body(&self.conn, "policies", id)
    }

    fn put_policy(&mut self, p: &Policy) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO policies (id, project_id, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![p.id, p.project_id.0, p.created_at.0, to_json(p)],
            )
            .map(drop)
            .map_err(backend)
    }

    fn delete_policy(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM policies WHERE id = ?1", [id])
            .map(drop)
            .map_err(backend)
    }

    fn policies(&mut self, project: Option<&ProjectId>) -> Result<Vec<Policy>> {
        match project {
            Some(p) => bodies(
                &self.conn,
                "policies",
                "SELECT body FROM policies WHERE project_id = ?1 ORDER BY created_at, id",
                &[&p.0],
            ),
            None => bodies(
                &self.conn,
                "policies",
                "SELECT body FROM policies ORDER BY created_at, id",
                &[],
            ),
        }
    }
}
