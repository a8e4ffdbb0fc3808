//! Several nodes, one service: when the metadata store is shared
//! (PostgreSQL), each `ember serve` process registers as a node and renews
//! a heartbeat; the heartbeat is its lease on the workflows it owns. A node
//! that stops renewing (killed, cut off, paused) for `LEASE` loses them:
//! another node claims each one (in a write transaction, so exactly one
//! node wins) and resumes it from its last durable step. A node that comes
//! back after losing its lease finds, at its next step, that it no longer
//! owns the workflow and stops (`engine::save`). With a private store
//! (SQLite) there is one node and none of this runs.

use crate::Caller;
use crate::volumes::require_admin;
use crate::{Core, Result, Service, ServiceError};
use ember_model::{Node, Timestamp, WorkflowRecord};
use ember_store::MetadataStore;
use std::collections::HashSet;
use std::time::Duration;

/// How often a node renews its heartbeat and looks for orphaned work.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node's heartbeat may go unrenewed before its workflows are
/// taken over (and it shows `down` in `os-services`). Ten heartbeats: a
/// slow commit or a short pause does not cost a node its work.
pub const LEASE: Duration = Duration::from_secs(10);

/// Whether `node` renewed its lease within `LEASE` of `now`.
pub fn alive(node: &Node, now: Timestamp) -> bool {
    now.0.saturating_sub(node.heartbeat.0) < LEASE.as_micros() as i64
}

/// Refuses to start a second live node under an id already in use. A
/// fresh heartbeat under `id` is a live node, or this node's previous
/// incarnation killed less than a lease ago; a live node renews within a
/// heartbeat, so this waits two and a half to tell them apart. Call it
/// before touching any backend: starting also fences the previous
/// incarnation's clients (RBD blocklist), which must never hit a live
/// node.
pub fn ensure_node_id_free(store: &dyn MetadataStore, id: &str) -> Result<()> {
    let row =
        || -> Result<Option<Node>> { Ok(store.read()?.nodes()?.into_iter().find(|n| n.id == id)) };
    let Some(first) = row()? else {
        return Ok(());
    };
    if !alive(&first, Timestamp::now()) {
        return Ok(());
    }
    std::thread::sleep(HEARTBEAT * 5 / 2);
    match row()? {
        Some(again) if again.heartbeat != first.heartbeat => Err(ServiceError::Conflict(format!(
            "node id {id:?} is in use by a live node (API at {}, started {}): give every node its own --node-id",
            again.api,
            again.started_at.to_iso_micros()
        ))),
        _ => Ok(()),
    }
}

/// Renews this node's registration (creating it on first call), and
/// decides whether it is the one live node that collects garbage: the one
/// with the smallest id. Returns whether it is.
///
/// After the first renewal the row must still be this process's: another
/// incarnation's renewal in between means two live processes share the
/// id (started together, so `ensure_node_id_free` saw neither). The newer
/// one stops (exits), the older carries on.
fn heartbeat(core: &Core, me: &Node, first: bool) -> Result<bool> {
    let now = Timestamp::now();
    let mut tx = core.store.write()?;
    if !first
        && let Some(row) = tx.nodes()?.into_iter().find(|n| n.id == me.id)
        && row.started_at != me.started_at
        && alive(&row, now)
    {
        if row.started_at.0 > me.started_at.0 {
            tracing::error!(node = %me.id, other_api = %row.api, "another process started with this node id; it stops itself");
        } else {
            tracing::error!(node = %me.id, other_api = %row.api, "a node with this id was already running: this process stops (give every node its own --node-id)");
            std::process::exit(78);
        }
    }
    tx.put_node(&Node {
        heartbeat: now,
        ..me.clone()
    })?;
    let collector = !tx.nodes()?.iter().any(|n| n.id < me.id && alive(n, now));
    tx.commit()?;
    core.collector
        .store(collector, std::sync::atomic::Ordering::Release);
    Ok(collector)
}

/// Claims, in one write transaction, every workflow this node should run
/// and does not run yet: its own from before a restart (`own_too`), those
/// written before nodes existed, and those of nodes whose lease expired.
/// Returns the claimed records, owned by this node.
fn claim_orphans(core: &Core, own_too: bool) -> Result<Vec<WorkflowRecord>> {
    let me = core.config.node_id.clone();
    let now = Timestamp::now();
    let mut tx = core.store.write()?;
    let live: HashSet<String> = tx
        .nodes()?
        .into_iter()
        .filter(|n| n.id != me && alive(n, now))
        .map(|n| n.id)
        .collect();
    let mut claimed = vec![];
    let mut fenced = HashSet::new();
    for mut record in tx.workflows()? {
        let orphan = match &record.owner {
            None => true,
            Some(owner) if *owner == me => own_too,
            Some(owner) => !live.contains(owner),
        };
        if orphan {
            if let Some(previous) = &record.owner
                && *previous != me
            {
                tracing::warn!(workflow = %record.id, kind = %record.kind, from = %previous, "taking over a workflow from a node whose lease expired");
                fenced.insert(previous.clone());
            }
            record.owner = Some(me.clone());
            tx.put_workflow(&record)?;
            claimed.push(record);
        }
    }
    if !claimed.is_empty() {
        tx.commit()?;
    }
    // Before their work runs here (and outside the transaction: a Ceph
    // blocklist takes a monitor round): the dead nodes' clients can no
    // longer write, and their locks go at once.
    for node in fenced {
        for backend in core.backends.all() {
            if let Err(e) = backend.fence_node(&node) {
                tracing::warn!(node = %node, backend = backend.name(), error = %e, "could not fence a node whose lease expired");
            }
        }
    }
    Ok(claimed)
}

/// Cuts off this node's live NBD clients whose export another node
/// withdrew (the attachment deleted or moved, the snapshot unexported or
/// deleted): a withdrawal on one node reaches every node's open
/// connections within a heartbeat. Returns how many were cut off.
fn sweep_withdrawn_exports(core: &Core) -> Result<usize> {
    let live: Vec<uuid::Uuid> = core
        .exports
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .copied()
        .collect();
    if live.is_empty() {
        return Ok(0);
    }
    let mut withdrawn = vec![];
    {
        let mut tx = core.store.read()?;
        for id in live {
            let attached = tx.volume_with_attachment(id)?.is_some_and(|v| {
                v.attachments
                    .iter()
                    .any(|a| a.id == id && a.export_secret.is_some())
            });
            let exported = tx
                .snapshot(ember_model::SnapshotId(id))?
                .is_some_and(|s| s.export_secret.is_some());
            if !attached && !exported {
                withdrawn.push(id);
            }
        }
    }
    for id in &withdrawn {
        core.revoke_export(*id);
    }
    if !withdrawn.is_empty() {
        tracing::info!(
            exports = withdrawn.len(),
            "cut off NBD clients of exports another node withdrew"
        );
    }
    Ok(withdrawn.len())
}

impl Service {
    /// This process as a node.
    pub fn me(&self) -> Node {
        let config = &self.core.config;
        Node {
            id: config.node_id.clone(),
            api: config.node_api.clone(),
            nbd: config
                .nbd
                .as_ref()
                .map(|e| format!("{}:{}", e.host, e.port)),
            started_at: self.core.started_at,
            heartbeat: Timestamp::now(),
        }
    }

    /// The workflows to resume at start-up: with a private store, every
    /// unfinished one; with a shared store, this node registers first and
    /// takes its own and the orphaned ones (the others belong to live
    /// nodes).
    pub(crate) fn workflows_to_resume(core: &Core, me: &Node) -> Result<Vec<WorkflowRecord>> {
        if !core.store.shared() {
            return Ok(core.store.read()?.workflows()?);
        }
        heartbeat(core, me, true)?;
        claim_orphans(core, true)
    }

    /// With a shared store: renews this node's lease every `HEARTBEAT` and
    /// resumes the workflows of nodes whose lease expired, until the
    /// process ends. Does nothing with a private store.
    pub fn keep_membership(&self, me: Node) {
        if !self.core.store.shared() {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let core = service.core.clone();
                let me = me.clone();
                let claimed = service
                    .run_blocking(move || {
                        let collector = heartbeat(&core, &me, false)?;
                        let claimed = claim_orphans(&core, false)?;
                        sweep_withdrawn_exports(&core)?;
                        if collector {
                            // What every node released since the last
                            // round (the others do not collect).
                            core.collect_garbage_step()?;
                        }
                        Ok(claimed)
                    })
                    .await;
                match claimed {
                    Ok(records) => {
                        for record in records {
                            ember_metrics::metrics()
                                .workflows_resumed
                                .with_label_values(&[&record.kind])
                                .inc();
                            service.start(record);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not renew this node's lease; retrying")
                    }
                }
            }
        });
    }
}

/// A registered node and whether its lease is current.
pub struct NodeState {
    pub node: Node,
    pub up: bool,
}

impl Service {
    /// Every registered node, up or down. Admin only.
    pub async fn list_nodes(&self, caller: &Caller) -> Result<Vec<NodeState>> {
        require_admin(caller, "ember:nodes:index")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let now = Timestamp::now();
            Ok(core
                .store
                .read()?
                .nodes()?
                .into_iter()
                .map(|node| NodeState {
                    up: alive(&node, now),
                    node,
                })
                .collect())
        })
        .await
    }

    /// Forgets a node that is gone for good, so that it is no longer
    /// listed (as `cinder-manage service remove` does for Cinder). A node
    /// whose lease is current is refused: stop it first. Its workflows,
    /// if any were left, are orphans and the live nodes take them over.
    /// Admin only.
    pub async fn forget_node(&self, caller: &Caller, id: String) -> Result<()> {
        require_admin(caller, "ember:nodes:delete")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let Some(node) = tx.nodes()?.into_iter().find(|n| n.id == id) else {
                return Err(ServiceError::NotFound(format!(
                    "Node {id} could not be found."
                )));
            };
            if alive(&node, Timestamp::now()) {
                return Err(ServiceError::Conflict(format!(
                    "Node {id} is up (its lease is current); stop it before forgetting it."
                )));
            }
            tx.delete_node(&id)?;
            tx.commit()?;
            tracing::info!(node = %id, "forgot a node");
            Ok(())
        })
        .await
    }
}
