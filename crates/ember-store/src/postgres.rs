//! PostgreSQL backend, for several Ember nodes sharing one metadata store.
//!
//! The service composes its rules (quota check-then-add, read-modify-write
//! of whole records, "is this the latest snapshot") out of reads and writes
//! inside one write transaction and relies on write transactions being
//! serialized, as SQLite's `BEGIN IMMEDIATE` makes them. Here every write
//! transaction takes one transaction-scoped advisory lock first, so writers
//! on every node are serialized by the database and each sees everything
//! committed before it (READ COMMITTED after the lock): every rule that
//! holds for one SQLite process holds for any number of nodes, with no
//! serialization failures to retry. Reads are REPEATABLE READ, READ ONLY
//! snapshots and never wait for a writer. The cost is one writer at a time
//! across the cluster, as on SQLite; see docs/multi-node.md.
//!
//! A commit returns once PostgreSQL has made it durable
//! (`synchronous_commit`, on by default).

mod pool;
mod schema;

use crate::list::{ListQuery, Page, SnapshotFilter, SortDir, SortKey, VolumeFilter};
use crate::{ChunkState, MetadataStore, Result, StoreError, Tx, from_json, to_json};
use ember_model::{
    AccessKey, Backup, BackupId, Group, GroupSnapshot, GroupType, Image, ImageId, Metadata, Node,
    Policy, Project, ProjectId, QosSpecs, QuotaResource, Role, ServiceSwitch, Snapshot, SnapshotId,
    Transfer, User, UserMessage, Volume, VolumeId, VolumeType, WorkflowId, WorkflowRecord,
};
use pool::{Param, Pool, Pooled};

/// The advisory lock every write transaction holds (an arbitrary constant:
/// "ember" in ASCII).
const WRITER_LOCK: i64 = 0x0065_6d62_6572;
/// The advisory lock held while the schema is migrated.
const MIGRATION_LOCK: i64 = 0x0065_6d62_6573;
/// Connections per process: enough for the blocking pool's concurrent
/// transactions, well under PostgreSQL's default of 100 for three nodes.
const MAX_CONNECTIONS: usize = 24;

macro_rules! p {
    ($($x:expr),* $(,)?) => { vec![$(Box::new($x) as Param),*] };
}

pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or a
    /// key=value connection string) and brings the schema up to date.
    pub fn connect(url: &str) -> Result<Self> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("bad database URL: {e}")))?;
        let store = PostgresStore {
            pool: Pool::new(config, MAX_CONNECTIONS),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let conn = self.pool.get()?;
        conn.run(|c| {
            // Nodes starting together: one migrates, the others wait and
            // then find nothing to do.
            c.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let result = (|| {
                c.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
                let rows = c.query("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?;
                let version: i64 = rows[0].get(0);
                for (i, migration) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
                    c.batch("BEGIN")?;
                    let applied = c.batch(migration).and_then(|()| {
                        c.batch(&format!(
                            "INSERT INTO schema_version (version) VALUES ({})",
                            i + 1
                        ))
                    });
                    match applied {
                        Ok(_) => c.batch("COMMIT")?,
                        Err(e) => {
                            let _ = c.batch("ROLLBACK");
                            return Err(e);
                        }
                    }
                    tracing::info!(version = i + 1, "applied metadata schema migration");
                }
                Ok(())
            })();
            c.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
            result
        })
    }

    /// Starts a transaction without waiting for the server's answer: the
    /// `BEGIN` is queued on the connection ahead of the first statement
    /// (one round trip saved; a failed `BEGIN` fails that statement).
    fn begin(&self, sql: String) -> Result<Box<PostgresTx<'_>>> {
        let conn = self.pool.get()?;
        conn.send(move |c| c.batch(&sql));
        Ok(Box::new(PostgresTx {
            conn,
            open: true,
            writes: false,
            failed: Default::default(),
        }))
    }
}

impl MetadataStore for PostgresStore {
    fn write(&self) -> Result<Box<dyn Tx + '_>> {
        // `BEGIN` and the writers' lock in one round trip. The commit does
        // not wait for its WAL flush while it holds the lock (see
        // `commit`): the next writer goes on while this one's flush runs,
        // and PostgreSQL flushes concurrent commits together.
        let mut tx = self.begin(format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off; \
             SELECT pg_advisory_xact_lock({WRITER_LOCK})"
        ))?;
        tx.writes = true;
        Ok(tx)
    }

    fn read(&self) -> Result<Box<dyn Tx + '_>> {
        Ok(self.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".into())?)
    }

    fn shared(&self) -> bool {
        true
    }
}

struct PostgresTx<'a> {
    conn: Pooled<'a>,
    open: bool,
    /// A write transaction (its commit waits for durability).
    writes: bool,
    /// The first failure of a statement queued without waiting (`exec`).
    failed: std::sync::Arc<std::sync::Mutex<Option<StoreError>>>,
}

impl Drop for PostgresTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Queued, not waited for: the connection's next user's
            // statements run after it (a read ends this way, in no time).
            self.conn.send(|c| c.batch("ROLLBACK"));
        }
    }
}

impl PostgresTx<'_> {
    /// A statement whose answer nobody reads (an insert, an update, a
    /// delete): queued on the connection, not waited for, so a write
    /// transaction holds the writers' lock for fewer round trips. The
    /// connection runs statements in order, so what is read next sees it;
    /// a failure is kept and returned by the next read or by `commit`
    /// (which then rolls back).
    fn exec(&mut self, sql: impl Into<String>, params: Vec<Param>) -> Result<()> {
        self.failed()?;
        let sql = sql.into();
        let failed = self.failed.clone();
        self.conn.queue(move |c| {
            if let Err(e) = c.execute(&sql, &params) {
                let mut slot = failed.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
            }
        });
        Ok(())
    }

    /// The first failure of a queued statement, if any.
    fn failed(&self) -> Result<()> {
        match self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn rows(&mut self, sql: impl Into<String>, params: Vec<Param>) -> Result<Vec<postgres::Row>> {
        let sql = sql.into();
        let rows = self.conn.run(move |c| c.query(&sql, &params));
        // A queued statement that failed before this one explains its
        // failure ("transaction is aborted") better.
        self.failed()?;
        rows
    }

    fn bodies<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        sql: impl Into<String>,
        params: Vec<Param>,
    ) -> Result<Vec<T>> {
        self.rows(sql, params)?
            .iter()
            .map(|r| from_json(what, r.get::<_, &str>(0)))
            .collect()
    }

    fn body<T: serde::de::DeserializeOwned>(&mut self, table: &str, id: &str) -> Result<Option<T>> {
        let mut found = self.bodies(
            table,
            format!("SELECT body FROM {table} WHERE id = $1"),
            p![id.to_string()],
        )?;
        Ok(found.pop())
    }

    /// Inserts or replaces a row keyed by `id` in a table of
    /// `(id, <columns>…, body)`.
    fn upsert(&mut self, table: &str, columns: &[&str], params: Vec<Param>) -> Result<()> {
        let placeholders = (1..=columns.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let updates = columns[1..]
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.exec(
            format!(
                "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT ({}) DO UPDATE SET {updates}",
                columns.join(", "),
                columns[0]
            ),
            params,
        )
        .map(drop)
    }

    fn delete(&mut self, table: &str, id: String) -> Result<()> {
        self.exec(format!("DELETE FROM {table} WHERE id = $1"), p![id])
            .map(drop)
    }

    fn strings(&mut self, sql: &'static str, params: Vec<Param>) -> Result<Vec<String>> {
        Ok(self
            .rows(sql, params)?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect())
    }

    fn identity_get<T: serde::de::DeserializeOwned>(
        &mut self,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>> {
        let mut found = self.bodies(
            kind,
            "SELECT body FROM identity WHERE kind = $1 AND id = $2",
            p![kind.to_string(), id.to_string()],
        )?;
        Ok(found.pop())
    }

    fn identity_put<T: serde::Serialize>(
        &mut self,
        kind: &str,
        id: &str,
        name: &str,
        value: &T,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO identity (kind, id, name, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, id) DO UPDATE SET name = EXCLUDED.name, body = EXCLUDED.body",
            p![
                kind.to_string(),
                id.to_string(),
                name.to_string(),
                to_json(value)
            ],
        )
        .map(drop)
    }

    fn identity_delete(&mut self, kind: &str, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM identity WHERE kind = $1 AND id = $2",
            p![kind.to_string(), id.to_string()],
        )
        .map(drop)
    }

    fn identity_all<T: serde::de::DeserializeOwned>(&mut self, kind: &str) -> Result<Vec<T>> {
        self.bodies(
            kind,
            "SELECT body FROM identity WHERE kind = $1 ORDER BY name COLLATE \"C\", id COLLATE \"C\"",
            p![kind.to_string()],
        )
    }

    fn list<T: serde::de::DeserializeOwned, F>(
        &mut self,
        table: &'static str,
        query: &ListQuery<F>,
        selection: Selection,
        match_nothing: bool,
        metadata: &Metadata,
        metadata_of: impl Fn(&T) -> &Metadata,
    ) -> Result<Page<T>> {
        if match_nothing {
            return Ok(query.empty_page());
        }
        let plan = ListPlan::new(table, query, selection, metadata.is_empty());
        let with_count = query.with_count && metadata.is_empty();
        let (bodies, count, marker_found) = self.conn.run(move |c| {
            let count = if with_count {
                let rows = c.query(&plan.count_sql, &plan.base_params)?;
                Some(rows[0].get::<_, i64>(0) as u64)
            } else {
                None
            };
            if let Some(sql) = &plan.marker_sql
                && c.query(sql, &plan.marker_params)?.is_empty()
            {
                return Ok((vec![], count, false));
            }
            let rows = c.query(&plan.select_sql, &plan.select_params)?;
            Ok((
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>(),
                count,
                true,
            ))
        })?;
        if !marker_found {
            return Ok(Page {
                items: vec![],
                count,
                more: false,
                marker_not_found: true,
            });
        }
        let items = bodies
            .iter()
            .map(|b| from_json::<T>(table, b))
            .collect::<Result<Vec<_>>>()?;
        Ok(query.finish_page(items, count, metadata, metadata_of, metadata.is_empty()))
    }
}

/// The SQL expression a sort key orders by: NULLs folded below every real
/// value (so keyset pagination can compare), text compared bytewise.
fn sort_expr(key: SortKey) -> &'static str {
    match key {
        SortKey::Id => "(id COLLATE \"C\")",
        SortKey::CreatedAt => "created_at",
        SortKey::UpdatedAt => "COALESCE(updated_at, -1)",
        SortKey::Status => "(status COLLATE \"C\")",
        SortKey::Name => "(COALESCE(name, '') COLLATE \"C\")",
        SortKey::Description => "(COALESCE(description, '') COLLATE \"C\")",
        SortKey::Size => "size",
        SortKey::VolumeId => "(volume_id COLLATE \"C\")",
        SortKey::ProjectId => "(project_id COLLATE \"C\")",
        SortKey::UserId => "(user_id COLLATE \"C\")",
    }
}

/// A listing's WHERE clause and parameters, before pagination.
struct Selection {
    clauses: Vec<String>,
    params: Vec<String>,
}

impl Selection {
    fn new<F>(query: &ListQuery<F>) -> Self {
        let mut s = Selection {
            clauses: vec!["TRUE".into()],
            params: vec![],
        };
        if let Some(project) = &query.project {
            s.eq("project_id", project.0.clone());
        }
        s
    }

    /// `expression = value`, the value compared as text.
    fn eq(&mut self, expression: &str, value: String) {
        self.params.push(value);
        self.clauses
            .push(format!("{expression} = ${}", self.params.len()));
    }

    fn sql(&self) -> String {
        self.clauses.join(" AND ")
    }

    fn boxed(&self) -> Vec<Param> {
        self.params
            .iter()
            .map(|p| Box::new(p.clone()) as Param)
            .collect()
    }
}

/// Every statement of one listing, built before going to the connection.
struct ListPlan {
    count_sql: String,
    base_params: Vec<Param>,
    marker_sql: Option<String>,
    marker_params: Vec<Param>,
    select_sql: String,
    select_params: Vec<Param>,
}

impl ListPlan {
    fn new<F>(table: &str, query: &ListQuery<F>, mut selection: Selection, paged: bool) -> Self {
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
        let count_sql = format!("SELECT COUNT(*) FROM {table} WHERE {}", selection.sql());
        let base_params = selection.boxed();
        let (mut marker_sql, mut marker_params) = (None, vec![]);
        if let Some(marker) = query.marker {
            // The marker must be in the listing's scope.
            let mut in_scope = Selection {
                clauses: selection.clauses.clone(),
                params: selection.params.clone(),
            };
            in_scope.eq("id", marker.hyphenated().to_string());
            marker_sql = Some(format!("SELECT 1 FROM {table} WHERE {}", in_scope.sql()));
            marker_params = in_scope.boxed();
            // Keyset: rows strictly after the marker's row in sort order,
            // its sort values read by subqueries.
            selection.params.push(marker.hyphenated().to_string());
            let m = selection.params.len();
            let value = |expr: &str| format!("(SELECT {expr} FROM {table} WHERE id = ${m})");
            let mut alternatives = Vec::new();
            for i in 0..sort.len() {
                let mut terms = Vec::new();
                for (j, (key, dir)) in sort.iter().enumerate().take(i + 1) {
                    let expr = sort_expr(*key);
                    let op = if j < i {
                        "="
                    } else if *dir == SortDir::Asc {
                        ">"
                    } else {
                        "<"
                    };
                    terms.push(format!("{expr} {op} {}", value(expr)));
                }
                alternatives.push(format!("({})", terms.join(" AND ")));
            }
            selection
                .clauses
                .push(format!("({})", alternatives.join(" OR ")));
        }
        let mut select_sql = format!(
            "SELECT body FROM {table} WHERE {} ORDER BY {order_by}",
            selection.sql()
        );
        if paged {
            if let Some(limit) = query.limit {
                select_sql.push_str(&format!(" LIMIT {}", limit.saturating_add(1)));
            }
            select_sql.push_str(&format!(" OFFSET {}", query.offset));
        }
        ListPlan {
            count_sql,
            base_params,
            marker_sql,
            marker_params,
            select_sql,
            select_params: selection.boxed(),
        }
    }
}

fn opt_ts(t: Option<ember_model::Timestamp>) -> Option<i64> {
    t.map(|t| t.0)
}

impl Tx for PostgresTx<'_> {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let began = std::time::Instant::now();
        // A queued statement failed: the transaction is aborted, and
        // PostgreSQL would answer COMMIT with a rollback, not an error.
        self.failed()?;
        // A write transaction committed without waiting for its WAL flush
        // (and so released the writers' lock at once); the statement after
        // it, in the same round trip, commits a transaction of its own with
        // the session's `synchronous_commit` (on by default), whose flush
        // covers every earlier commit record, this one's included. So the
        // call returns once the change is durable, as on SQLite, where the
        // WAL is also synced after the writer lock is released.
        let sql = if self.writes {
            "COMMIT; SELECT txid_current()"
        } else {
            "COMMIT"
        };
        let result = self.conn.run(move |c| c.batch(sql)).map_err(|e| match e {
            // The connection died during COMMIT: the change may or may not
            // be committed, so this is not "nothing changed, retry".
            StoreError::Unavailable(e) => {
                StoreError::Backend(format!("the commit's outcome is unknown: {e}"))
            }
            other => other,
        });
        // Whatever happened, the transaction is over (a failed COMMIT
        // rolls back).
        self.open = false;
        let result = result.and_then(|()| self.failed());
        if result.is_err() {
            self.conn.mark_broken();
        }
        ember_metrics::metrics()
            .store_commit
            .observe(began.elapsed().as_secs_f64());
        result
    }

    fn volume(&mut self, id: VolumeId) -> Result<Option<Volume>> {
        self.body("volumes", &id.to_string())
    }

    fn put_volume(&mut self, v: &Volume) -> Result<()> {
        self.upsert(
            "volumes",
            &[
                "id",
                "project_id",
                "user_id",
                "status",
                "name",
                "description",
                "size",
                "created_at",
                "updated_at",
                "body",
            ],
            p![
                v.id.to_string(),
                v.project_id.0.clone(),
                v.user_id.0.clone(),
                v.status.as_str().to_string(),
                v.name.clone(),
                v.description.clone(),
                v.size_gib as i64,
                v.created_at.0,
                opt_ts(v.updated_at),
                to_json(v)
            ],
        )
    }

    fn delete_volume(&mut self, id: VolumeId) -> Result<()> {
        self.delete("volumes", id.to_string())
    }

    fn list_volumes(&mut self, query: &ListQuery<VolumeFilter>) -> Result<Page<Volume>> {
        let mut sel = Selection::new(query);
        let f = &query.filter;
        if let Some(name) = &f.name {
            sel.eq("name", name.clone());
        }
        if let Some(status) = f.status {
            sel.eq("status", status.as_str().into());
        }
        if let Some(zone) = &f.availability_zone {
            sel.eq("(body::jsonb ->> 'availability_zone')", zone.clone());
        }
        if let Some(bootable) = f.bootable {
            sel.eq("(body::jsonb ->> 'bootable')", bootable.to_string());
        }
        self.list(
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
        let mut found = self.bodies(
            "volumes",
            "SELECT body FROM volumes WHERE EXISTS (SELECT 1 FROM \
             jsonb_array_elements(body::jsonb -> 'attachments') a WHERE a ->> 'id' = $1)",
            p![attachment.to_string()],
        )?;
        Ok(found.pop())
    }

    fn attached_volumes(&mut self, project: Option<&ProjectId>) -> Result<Vec<Volume>> {
        self.bodies(
            "volumes",
            "SELECT body FROM volumes WHERE jsonb_array_length(body::jsonb -> 'attachments') > 0 \
             AND ($1::text IS NULL OR project_id = $1) ORDER BY created_at, id COLLATE \"C\"",
            p![project.map(|p| p.0.clone())],
        )
    }

    fn snapshot(&mut self, id: SnapshotId) -> Result<Option<Snapshot>> {
        self.body("snapshots", &id.to_string())
    }

    fn put_snapshot(&mut self, s: &Snapshot) -> Result<()> {
        self.upsert(
            "snapshots",
            &[
                "id",
                "project_id",
                "user_id",
                "volume_id",
                "status",
                "name",
                "description",
                "size",
                "created_at",
                "updated_at",
                "body",
            ],
            p![
                s.id.to_string(),
                s.project_id.0.clone(),
                s.user_id.0.clone(),
                s.volume_id.to_string(),
                s.status.as_str().to_string(),
                s.name.clone(),
                s.description.clone(),
                s.size_gib as i64,
                s.created_at.0,
                opt_ts(s.updated_at),
                to_json(s)
            ],
        )
    }

    fn delete_snapshot(&mut self, id: SnapshotId) -> Result<()> {
        self.delete("snapshots", id.to_string())
    }

    fn list_snapshots(&mut self, query: &ListQuery<SnapshotFilter>) -> Result<Page<Snapshot>> {
        let mut sel = Selection::new(query);
        let f = &query.filter;
        if let Some(id) = f.id {
            sel.eq("id", id.to_string());
        }
        if let Some(name) = &f.name {
            sel.eq("name", name.clone());
        }
        if let Some(status) = f.status {
            sel.eq("status", status.as_str().into());
        }
        if let Some(volume) = f.volume_id {
            sel.eq("volume_id", volume.to_string());
        }
        self.list(
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
        self.body("images", &id.to_string())
    }

    fn put_image(&mut self, image: &Image) -> Result<()> {
        self.upsert(
            "images",
            &["id", "parent", "body"],
            p![
                image.id.to_string(),
                image.parent.map(|p| p.to_string()),
                to_json(image)
            ],
        )
    }

    fn delete_image(&mut self, id: ImageId) -> Result<()> {
        self.delete("images", id.to_string())
    }

    fn image_children(&mut self, id: ImageId) -> Result<Vec<Image>> {
        self.bodies(
            "images",
            "SELECT body FROM images WHERE parent = $1 ORDER BY id COLLATE \"C\"",
            p![id.to_string()],
        )
    }

    fn all_images(&mut self) -> Result<Vec<Image>> {
        self.bodies(
            "images",
            "SELECT body FROM images ORDER BY id COLLATE \"C\"",
            p![],
        )
    }

    fn unowned_images(&mut self) -> Result<Vec<Image>> {
        // The partial index `images_unowned` answers this (same predicate).
        self.bodies(
            "images",
            "SELECT body FROM images WHERE (body::jsonb ->> 'owner') = 'None' ORDER BY id COLLATE \"C\"",
            p![],
        )
    }

    fn quota_limit(&mut self, project: &ProjectId, resource: QuotaResource) -> Result<Option<i64>> {
        self.keyed_quota_limit(project, resource.as_str())
    }

    fn set_quota_limit(
        &mut self,
        project: &ProjectId,
        resource: QuotaResource,
        limit: i64,
    ) -> Result<()> {
        self.set_keyed_quota_limit(project, resource.as_str(), limit)
    }

    fn group(&mut self, id: &str) -> Result<Option<Group>> {
        self.body("groups", id)
    }

    fn groups(&mut self) -> Result<Vec<Group>> {
        self.bodies(
            "groups",
            "SELECT body FROM groups ORDER BY created_at, id COLLATE \"C\"",
            p![],
        )
    }

    fn put_group(&mut self, g: &Group) -> Result<()> {
        self.upsert(
            "groups",
            &["id", "created_at", "body"],
            p![g.id.clone(), g.created_at.0, to_json(g)],
        )
    }

    fn delete_group(&mut self, id: &str) -> Result<()> {
        self.delete("groups", id.to_string())
    }

    fn group_snapshot(&mut self, id: &str) -> Result<Option<GroupSnapshot>> {
        self.body("group_snapshots", id)
    }

    fn group_snapshots(&mut self) -> Result<Vec<GroupSnapshot>> {
        self.bodies(
            "group_snapshots",
            "SELECT body FROM group_snapshots ORDER BY created_at, id COLLATE \"C\"",
            p![],
        )
    }

    fn put_group_snapshot(&mut self, g: &GroupSnapshot) -> Result<()> {
        self.upsert(
            "group_snapshots",
            &["id", "created_at", "body"],
            p![g.id.clone(), g.created_at.0, to_json(g)],
        )
    }

    fn delete_group_snapshot(&mut self, id: &str) -> Result<()> {
        self.delete("group_snapshots", id.to_string())
    }

    fn group_type(&mut self, id: &str) -> Result<Option<GroupType>> {
        self.body("group_types", id)
    }

    fn group_types(&mut self) -> Result<Vec<GroupType>> {
        self.bodies(
            "group_types",
            "SELECT body FROM group_types ORDER BY name COLLATE \"C\"",
            p![],
        )
    }

    fn put_group_type(&mut self, t: &GroupType) -> Result<()> {
        self.upsert(
            "group_types",
            &["id", "name", "body"],
            p![t.id.clone(), t.name.clone(), to_json(t)],
        )
    }

    fn delete_group_type(&mut self, id: &str) -> Result<()> {
        self.delete("group_types", id.to_string())
    }

    fn message(&mut self, id: &str) -> Result<Option<UserMessage>> {
        self.body("messages", id)
    }

    fn messages(&mut self, project: Option<&ProjectId>) -> Result<Vec<UserMessage>> {
        self.bodies(
            "messages",
            "SELECT body FROM messages WHERE ($1::text IS NULL OR project_id = $1) \
             ORDER BY created_at, id COLLATE \"C\"",
            p![project.map(|p| p.0.clone())],
        )
    }

    fn put_message(&mut self, m: &UserMessage) -> Result<()> {
        self.upsert(
            "messages",
            &["id", "project_id", "created_at", "body"],
            p![
                m.id.clone(),
                m.project_id.0.clone(),
                m.created_at.0,
                to_json(m)
            ],
        )
    }

    fn delete_message(&mut self, id: &str) -> Result<()> {
        self.delete("messages", id.to_string())
    }

    fn qos_specs(&mut self, id: &str) -> Result<Option<QosSpecs>> {
        self.body("qos_specs", id)
    }

    fn all_qos_specs(&mut self) -> Result<Vec<QosSpecs>> {
        self.bodies(
            "qos_specs",
            "SELECT body FROM qos_specs ORDER BY name COLLATE \"C\"",
            p![],
        )
    }

    fn put_qos_specs(&mut self, q: &QosSpecs) -> Result<()> {
        self.upsert(
            "qos_specs",
            &["id", "name", "body"],
            p![q.id.clone(), q.name.clone(), to_json(q)],
        )
    }

    fn delete_qos_specs(&mut self, id: &str) -> Result<()> {
        self.delete("qos_specs", id.to_string())
    }

    fn service_switch(&mut self, binary: &str) -> Result<Option<ServiceSwitch>> {
        self.body("service_switches", binary)
    }

    fn put_service_switch(&mut self, s: &ServiceSwitch) -> Result<()> {
        self.upsert(
            "service_switches",
            &["id", "body"],
            p![s.binary.clone(), to_json(s)],
        )
    }

    fn transfer(&mut self, id: &str) -> Result<Option<Transfer>> {
        self.body("transfers", id)
    }

    fn transfers(&mut self) -> Result<Vec<Transfer>> {
        self.bodies(
            "transfers",
            "SELECT body FROM transfers ORDER BY created_at, id COLLATE \"C\"",
            p![],
        )
    }

    fn put_transfer(&mut self, t: &Transfer) -> Result<()> {
        self.upsert(
            "transfers",
            &["id", "volume_id", "created_at", "body"],
            p![
                t.id.clone(),
                t.volume_id.to_string(),
                t.created_at.0,
                to_json(t)
            ],
        )
    }

    fn delete_transfer(&mut self, id: &str) -> Result<()> {
        self.delete("transfers", id.to_string())
    }

    fn volume_type(&mut self, id: &str) -> Result<Option<VolumeType>> {
        self.body("volume_types", id)
    }

    fn volume_types(&mut self) -> Result<Vec<VolumeType>> {
        self.bodies(
            "volume_types",
            "SELECT body FROM volume_types ORDER BY name COLLATE \"C\"",
            p![],
        )
    }

    fn put_volume_type(&mut self, t: &VolumeType) -> Result<()> {
        self.upsert(
            "volume_types",
            &["id", "name", "body"],
            p![t.id.clone(), t.name.clone(), to_json(t)],
        )
    }

    fn delete_volume_type(&mut self, id: &str) -> Result<()> {
        self.delete("volume_types", id.to_string())
    }

    fn keyed_quota_limit(&mut self, project: &ProjectId, key: &str) -> Result<Option<i64>> {
        Ok(self
            .rows(
                "SELECT hard_limit FROM quota_limits WHERE project_id = $1 AND resource = $2",
                p![project.0.clone(), key.to_string()],
            )?
            .first()
            .map(|r| r.get(0)))
    }

    fn set_keyed_quota_limit(&mut self, project: &ProjectId, key: &str, limit: i64) -> Result<()> {
        self.exec(
            "INSERT INTO quota_limits (project_id, resource, hard_limit) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = EXCLUDED.hard_limit",
            p![project.0.clone(), key.to_string(), limit],
        )
        .map(drop)
    }

    fn keyed_quota_usage(&mut self, project: &ProjectId, key: &str) -> Result<i64> {
        Ok(self
            .rows(
                "SELECT in_use FROM quota_usage WHERE project_id = $1 AND resource = $2",
                p![project.0.clone(), key.to_string()],
            )?
            .first()
            .map(|r| r.get(0))
            .unwrap_or(0))
    }

    fn add_keyed_quota_usage(&mut self, project: &ProjectId, key: &str, delta: i64) -> Result<()> {
        let in_use = self.keyed_quota_usage(project, key)?;
        let total = in_use.checked_add(delta).ok_or_else(|| {
            StoreError::Corrupt(
                format!("quota usage {key} of {}", project.0),
                format!("{in_use} + {delta} overflows"),
            )
        })?;
        self.exec(
            "INSERT INTO quota_usage (project_id, resource, in_use) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id, resource) DO UPDATE SET in_use = EXCLUDED.in_use",
            p![project.0.clone(), key.to_string(), total],
        )
        .map(drop)
    }

    fn clear_quota_limits(&mut self, project: &ProjectId) -> Result<()> {
        self.exec(
            "DELETE FROM quota_limits WHERE project_id = $1",
            p![project.0.clone()],
        )
        .map(drop)
    }

    fn quota_usage(&mut self, project: &ProjectId, resource: QuotaResource) -> Result<i64> {
        self.keyed_quota_usage(project, resource.as_str())
    }

    fn add_quota_usage(
        &mut self,
        project: &ProjectId,
        resource: QuotaResource,
        delta: i64,
    ) -> Result<()> {
        self.add_keyed_quota_usage(project, resource.as_str(), delta)
    }

    fn all_quota_usage(&mut self) -> Result<Vec<(ProjectId, QuotaResource, i64)>> {
        let rows = self.rows("SELECT project_id, resource, in_use FROM quota_usage", p![])?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let resource: &str = r.get(1);
                QuotaResource::ALL
                    .iter()
                    .find(|q| q.as_str() == resource)
                    .map(|q| (ProjectId(r.get(0)), *q, r.get(2)))
            })
            .collect())
    }

    fn workflow(&mut self, id: WorkflowId) -> Result<Option<WorkflowRecord>> {
        self.body("workflows", &id.to_string())
    }

    fn put_workflow(&mut self, w: &WorkflowRecord) -> Result<()> {
        self.upsert(
            "workflows",
            &["id", "created_at", "body"],
            p![w.id.to_string(), w.created_at.0, to_json(w)],
        )
    }

    fn delete_workflow(&mut self, id: WorkflowId) -> Result<()> {
        self.delete("workflows", id.to_string())
    }

    fn workflows(&mut self) -> Result<Vec<WorkflowRecord>> {
        self.bodies(
            "workflows",
            "SELECT body FROM workflows ORDER BY created_at, id COLLATE \"C\"",
            p![],
        )
    }

    fn project(&mut self, id: &str) -> Result<Option<Project>> {
        self.identity_get("project", id)
    }

    fn put_project(&mut self, p: &Project) -> Result<()> {
        self.identity_put("project", &p.id, &p.name, p)
    }

    fn delete_project(&mut self, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM role_assignments WHERE project_id = $1",
            p![id.to_string()],
        )?;
        self.identity_delete("project", id)
    }

    fn projects(&mut self) -> Result<Vec<Project>> {
        self.identity_all("project")
    }

    fn user(&mut self, id: &str) -> Result<Option<User>> {
        self.identity_get("user", id)
    }

    fn put_user(&mut self, u: &User) -> Result<()> {
        self.identity_put("user", &u.id, &u.name, u)
    }

    fn delete_user(&mut self, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM role_assignments WHERE user_id = $1",
            p![id.to_string()],
        )?;
        self.identity_delete("user", id)
    }

    fn users(&mut self) -> Result<Vec<User>> {
        self.identity_all("user")
    }

    fn access_key(&mut self, access: &str) -> Result<Option<AccessKey>> {
        self.identity_get("access_key", access)
    }

    fn access_keys(&mut self) -> Result<Vec<AccessKey>> {
        self.identity_all("access_key")
    }

    fn put_access_key(&mut self, key: &AccessKey) -> Result<()> {
        self.identity_put("access_key", &key.access, &key.user_id, key)
    }

    fn delete_access_key(&mut self, access: &str) -> Result<()> {
        self.identity_delete("access_key", access)
    }

    fn role(&mut self, id: &str) -> Result<Option<Role>> {
        self.identity_get("role", id)
    }

    fn put_role(&mut self, r: &Role) -> Result<()> {
        self.identity_put("role", &r.id, &r.name, r)
    }

    fn delete_role(&mut self, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM role_assignments WHERE role_id = $1",
            p![id.to_string()],
        )?;
        self.identity_delete("role", id)
    }

    fn roles(&mut self) -> Result<Vec<Role>> {
        self.identity_all("role")
    }

    fn role_assignments(&mut self, user: &str, project: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT role_id FROM role_assignments WHERE user_id = $1 AND project_id = $2 \
             ORDER BY role_id COLLATE \"C\"",
            p![user.to_string(), project.to_string()],
        )
    }

    fn all_role_assignments(&mut self) -> Result<Vec<(String, String, String)>> {
        Ok(self
            .rows(
                "SELECT user_id, project_id, role_id FROM role_assignments",
                p![],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn grant_role(&mut self, user: &str, project: &str, role: &str) -> Result<()> {
        self.exec(
            "INSERT INTO role_assignments (user_id, project_id, role_id) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            p![user.to_string(), project.to_string(), role.to_string()],
        )
        .map(drop)
    }

    fn revoke_role(&mut self, user: &str, project: &str, role: &str) -> Result<()> {
        self.exec(
            "DELETE FROM role_assignments WHERE user_id = $1 AND project_id = $2 AND role_id = $3",
            p![user.to_string(), project.to_string(), role.to_string()],
        )
        .map(drop)
    }

    fn revoke_token(&mut self, audit_id: &str, expires_at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO revoked_tokens (audit_id, expires_at) VALUES ($1, $2) \
             ON CONFLICT (audit_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
            p![audit_id.to_string(), expires_at],
        )
        .map(drop)
    }

    fn revoked_tokens(&mut self, now: i64) -> Result<Vec<String>> {
        self.strings(
            "SELECT audit_id FROM revoked_tokens WHERE expires_at >= $1",
            p![now],
        )
    }

    fn revoke_subject(&mut self, subject: &str, before_ms: i64, expires_at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO revoked_subjects (subject, before_ms, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subject) DO UPDATE SET \
             before_ms = GREATEST(revoked_subjects.before_ms, EXCLUDED.before_ms), \
             expires_at = GREATEST(revoked_subjects.expires_at, EXCLUDED.expires_at)",
            p![subject.to_string(), before_ms, expires_at],
        )
        .map(drop)
    }

    fn revoked_subjects(&mut self, now: i64) -> Result<Vec<(String, i64)>> {
        Ok(self
            .rows(
                "SELECT subject, before_ms FROM revoked_subjects WHERE expires_at >= $1",
                p![now],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn purge_revocations(&mut self, now: i64) -> Result<()> {
        self.exec("DELETE FROM revoked_tokens WHERE expires_at < $1", p![now])?;
        self.exec(
            "DELETE FROM revoked_subjects WHERE expires_at < $1",
            p![now],
        )
        .map(drop)
    }

    fn nodes(&mut self) -> Result<Vec<Node>> {
        self.bodies(
            "nodes",
            "SELECT body FROM nodes ORDER BY id COLLATE \"C\"",
            p![],
        )
    }

    fn put_node(&mut self, node: &Node) -> Result<()> {
        self.upsert("nodes", &["id", "body"], p![node.id.clone(), to_json(node)])
    }

    fn delete_node(&mut self, id: &str) -> Result<()> {
        self.delete("nodes", id.to_string())
    }

    fn secret(&mut self, name: &str) -> Result<Option<String>> {
        Ok(self
            .strings(
                "SELECT value FROM secrets WHERE name = $1",
                p![name.to_string()],
            )?
            .pop())
    }

    fn put_secret_if_absent(&mut self, name: &str, value: &str) -> Result<()> {
        self.exec(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            p![name.to_string(), value.to_string()],
        )
        .map(drop)
    }

    fn backup(&mut self, id: BackupId) -> Result<Option<Backup>> {
        self.body("backups", &id.to_string())
    }

    fn put_backup(&mut self, b: &Backup) -> Result<()> {
        self.upsert(
            "backups",
            &["id", "project_id", "volume_id", "created_at", "body"],
            p![
                b.id.to_string(),
                b.project_id.0.clone(),
                b.volume_id.to_string(),
                b.created_at.0,
                to_json(b)
            ],
        )
    }

    fn delete_backup(&mut self, id: BackupId) -> Result<()> {
        self.clear_backup_refs(id)?;
        self.delete("backups", id.to_string())
    }

    fn backups(&mut self, project: Option<&ProjectId>) -> Result<Vec<Backup>> {
        match project {
            Some(p) => self.bodies(
                "backups",
                "SELECT body FROM backups WHERE project_id = $1 ORDER BY created_at, id COLLATE \"C\"",
                p![p.0.clone()],
            ),
            None => self.bodies(
                "backups",
                "SELECT body FROM backups ORDER BY created_at, id COLLATE \"C\"",
                p![],
            ),
        }
    }

    fn put_backup_refs(
        &mut self,
        backup: BackupId,
        project: &ProjectId,
        refs: &[(u64, String)],
    ) -> Result<()> {
        // One statement for the whole batch, the arrays unnested.
        let mut indexes = Vec::with_capacity(refs.len());
        for (index, _) in refs {
            indexes.push(
                i64::try_from(*index)
                    .map_err(|_| StoreError::Backend("chunk index out of range".into()))?,
            );
        }
        let hashes: Vec<String> = refs.iter().map(|(_, h)| h.clone()).collect();
        self.exec(
            "INSERT INTO backup_refs (backup_id, idx, project_id, hash) \
             SELECT $1, i, $2, h FROM unnest($3::bigint[], $4::text[]) AS t(i, h) \
             ON CONFLICT (backup_id, idx) DO UPDATE SET hash = EXCLUDED.hash",
            p![backup.to_string(), project.0.clone(), indexes, hashes],
        )
    }

    fn backup_refs(&mut self, backup: BackupId) -> Result<Vec<(u64, String)>> {
        Ok(self
            .rows(
                "SELECT idx, hash FROM backup_refs WHERE backup_id = $1 ORDER BY idx",
                p![backup.to_string()],
            )?
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)))
            .collect())
    }

    fn clear_backup_refs(&mut self, backup: BackupId) -> Result<()> {
        self.exec(
            "DELETE FROM backup_refs WHERE backup_id = $1",
            p![backup.to_string()],
        )
    }

    fn chunk_state(&mut self, project: &ProjectId, hash: &str) -> Result<Option<ChunkState>> {
        self.rows(
            "SELECT state FROM backup_chunks WHERE project_id = $1 AND hash = $2",
            p![project.0.clone(), hash.to_string()],
        )?
        .first()
        .map(|r| ChunkState::from_code(r.get::<_, i64>(0)))
        .transpose()
    }

    fn put_chunk_state(
        &mut self,
        project: &ProjectId,
        hash: &str,
        state: ChunkState,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO backup_chunks (project_id, hash, state) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id, hash) DO UPDATE SET state = EXCLUDED.state",
            p![project.0.clone(), hash.to_string(), state.code()],
        )
    }

    fn delete_chunk_state(&mut self, project: &ProjectId, hash: &str) -> Result<()> {
        self.exec(
            "DELETE FROM backup_chunks WHERE project_id = $1 AND hash = $2",
            p![project.0.clone(), hash.to_string()],
        )
    }

    fn unreferenced_chunks(
        &mut self,
        limit: usize,
    ) -> Result<Vec<(ProjectId, String, ChunkState)>> {
        self.rows(
            "SELECT c.project_id, c.hash, c.state FROM backup_chunks c WHERE NOT EXISTS \
             (SELECT 1 FROM backup_refs r WHERE r.project_id = c.project_id AND r.hash = c.hash) LIMIT $1",
            p![limit as i64],
        )?
        .iter()
        .map(|r| {
            Ok((
                ProjectId(r.get::<_, String>(0)),
                r.get::<_, String>(1),
                ChunkState::from_code(r.get::<_, i64>(2))?,
            ))
        })
        .collect()
    }

    fn policy(&mut self, id: &str) -> Result<Option<Policy>> {
        self.body("policies", id)
    }

    fn put_policy(&mut self, p: &Policy) -> Result<()> {
        self.upsert(
            "policies",
            &["id", "project_id", "created_at", "body"],
            p![
                p.id.clone(),
                p.project_id.0.clone(),
                p.created_at.0,
                to_json(p)
            ],
        )
    }

    fn delete_policy(&mut self, id: &str) -> Result<()> {
        self.delete("policies", id.to_string())
    }

    fn policies(&mut self, project: Option<&ProjectId>) -> Result<Vec<Policy>> {
        match project {
            Some(p) => self.bodies(
                "policies",
                "SELECT body FROM policies WHERE project_id = $1 ORDER BY created_at, id COLLATE \"C\"",
                p![p.0.clone()],
            ),
            None => self.bodies(
                "policies",
                "SELECT body FROM policies ORDER BY created_at, id COLLATE \"C\"",
                p![],
            ),
        }
    }
}

/// For test suites: a new, empty database beside the one `base_url` names
/// (whose role may create databases), so that every test starts clean on
/// one shared server. Returns the new database's URL.
pub fn fresh_database(base_url: &str) -> Result<String> {
    let config: postgres::Config = base_url
        .parse()
        .map_err(|e| StoreError::Backend(format!("bad database URL: {e}")))?;
    let name = format!("ember_test_{}", uuid::Uuid::new_v4().simple());
    let create = format!("CREATE DATABASE {name}");
    // A thread of its own: the client must not run inside a Tokio runtime.
    std::thread::spawn(move || -> Result<()> {
        let mut client = config.connect(postgres::NoTls).map_err(pool::error)?;
        client.batch_execute(&create).map_err(pool::error)
    })
    .join()
    .map_err(|_| StoreError::Backend("database creation panicked".into()))??;
    let (head, _) = base_url
        .rsplit_once('/')
        .ok_or_else(|| StoreError::Backend("the test database URL has no database name".into()))?;
    Ok(format!("{head}/{name}"))
}
