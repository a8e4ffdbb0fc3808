//! The admin's view of where volumes live, in Cinder's terms: Ember is one
//! host (`ember`) running the scheduler and one volume service per backend
//! (`ember@<backend>`), each backend with one pool
//! (`ember@<backend>#<pool>`), and the placement of new volumes on them.

use crate::core::Core;
use crate::volumes::require_admin;
use crate::{Caller, Result, Service, ServiceError};
use ember_backend::VolumeBackend;
use ember_model::{ProjectId, ServiceSwitch, Timestamp, Volume};
use ember_store::Tx;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const HOST: &str = "ember";

/// `host@backend`, Cinder's name of a volume service.
pub fn volume_service_host(backend: &str) -> String {
    format!("{HOST}@{backend}")
}

/// `host@backend#pool`, the value of a volume's `os-vol-host-attr:host`.
pub fn pool_name(backend: &str, pool: &str) -> String {
    format!("{HOST}@{backend}#{pool}")
}

/// Where a volume lives, as Cinder names it.
pub fn host_of(volume: &Volume) -> String {
    pool_name(&volume.backend, &volume.pool)
}

/// One pool as `get_pools` and `capabilities` report it.
#[derive(Clone, Debug)]
pub struct PoolReport {
    /// `host@backend#pool`.
    pub name: String,
    pub backend: String,
    pub pool: String,
    /// Every capability, the names first, as the scheduler matches them.
    pub capabilities: Vec<(&'static str, String)>,
    pub capacity: ember_storage::Capacity,
}

/// The key a volume service's switch is stored under: the binary's name
/// for the embedded backend (as before there were several), else the
/// binary at its host.
fn switch_key(binary: &str, host: &str) -> String {
    if binary != "cinder-volume" || host == volume_service_host(ember_model::DEFAULT_BACKEND) {
        binary.to_string()
    } else {
        format!("{binary}@{host}")
    }
}

/// Usage of the host by one project, or in total (`project: None`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostUsage {
    pub project: Option<ProjectId>,
    pub volume_count: u64,
    pub volume_gb: u64,
    pub snapshot_count: u64,
    pub snapshot_gb: u64,
}

impl Service {
    /// Every pool, with its capabilities and capacity. Admin only.
    pub async fn pools(&self, caller: &Caller) -> Result<Vec<PoolReport>> {
        require_admin(caller, "scheduler_extension:scheduler_stats:get_pools")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            core.backends
                .all()
                .map(|b| {
                    Ok(PoolReport {
                        name: pool_name(b.name(), b.pool()),
                        backend: b.name().to_string(),
                        pool: b.pool().to_string(),
                        capabilities: capabilities(b.as_ref()),
                        capacity: b.capacity()?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Names of the volume services' hosts (`ember@<backend>`), in order.
    pub fn volume_hosts(&self) -> Vec<String> {
        self.core
            .backends
            .all()
            .map(|b| volume_service_host(b.name()))
            .collect()
    }

    /// What each project keeps on the host, the total first. Admin only.
    pub async fn host_usage(&self, caller: &Caller) -> Result<Vec<HostUsage>> {
        require_admin(caller, "volume_extension:hosts")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let mut total = HostUsage::default();
            let mut per: BTreeMap<String, HostUsage> = BTreeMap::new();
            for v in tx.all_volumes()? {
                for u in [&mut total, per.entry(v.project_id.0.clone()).or_default()] {
                    u.volume_count += 1;
                    u.volume_gb += v.size_gib;
                }
            }
            for s in tx.all_snapshots()? {
                for u in [&mut total, per.entry(s.project_id.0.clone()).or_default()] {
                    u.snapshot_count += 1;
                    u.snapshot_gb += s.size_gib;
                }
            }
            let mut out = vec![total];
            out.extend(per.into_iter().map(|(p, u)| HostUsage {
                project: Some(ProjectId(p)),
                ..u
            }));
            Ok(out)
        })
        .await
    }
}

/// One row of `os-services`.
pub struct ServiceState {
    pub binary: String,
    pub host: String,
    pub switch: ServiceSwitch,
    pub up: bool,
}

/// Ember's services as Cinder names them: (binary, host).
pub fn services(core: &Core) -> Vec<(&'static str, String)> {
    let mut out = vec![("cinder-scheduler", HOST.to_string())];
    out.extend(
        core.backends
            .all()
            .map(|b| ("cinder-volume", volume_service_host(b.name()))),
    );
    out
}

/// Whether `host` names `service_host` (`ember` also names `ember@qcow2`).
pub fn host_matches(service_host: &str, host: &str) -> bool {
    service_host == host || service_host.split('@').next() == Some(host)
}

/// A pool's capabilities as the scheduler matches them against a volume
/// type's extra specs (and as `get_pools` reports them): its names, then
/// what its backend offers.
pub fn capabilities(backend: &dyn VolumeBackend) -> Vec<(&'static str, String)> {
    let mut caps = vec![
        ("volume_backend_name", backend.name().to_string()),
        ("pool_name", backend.pool().to_string()),
    ];
    caps.extend(backend.capabilities());
    caps
}

/// Whether a capability satisfies an extra spec's requirement, in the
/// forms Cinder's capabilities filter accepts: a plain value, `<is> True`,
/// `<in> text`, `<or> a <or> b`, and numeric `>=`/`<=`/`==`.
fn satisfies(have: &str, want: &str) -> bool {
    let want = want.trim();
    let words: Vec<&str> = want.split_whitespace().collect();
    match words.as_slice() {
        ["<is>", v] => have.eq_ignore_ascii_case(v),
        ["<in>", rest @ ..] => have.contains(&rest.join(" ")),
        [first, ..] if *first == "<or>" || want.contains(" <or> ") => want
            .split("<or>")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .any(|v| v == have),
        [op @ (">=" | "<=" | "==" | "!=" | "<" | ">" | "="), v] => {
            match (have.parse::<f64>(), v.parse::<f64>()) {
                (Ok(h), Ok(w)) => match *op {
                    ">=" => h >= w,
                    "<=" => h <= w,
                    "<" => h < w,
                    ">" => h > w,
                    "!=" => h != w,
                    _ => h == w,
                },
                _ => false,
            }
        }
        ["s==", v] => have == *v,
        _ => have == want,
    }
}

/// The backend a new volume of `volume_type` goes to: the first (in the
/// configured order) whose volume service is enabled and whose pool has
/// every capability the type's extra specs ask for; `only` restricts the
/// choice (a clone stays on its source's backend). When none can, why
/// not (one reason per backend). Extra specs that name no capability are
/// ignored, as in Cinder, unless scoped `capabilities:`.
pub(crate) fn place<'a>(
    core: &'a Core,
    tx: &mut dyn Tx,
    volume_type: &ember_model::VolumeType,
    only: Option<&str>,
) -> Result<std::result::Result<&'a Arc<dyn VolumeBackend>, String>> {
    let mut problems = vec![];
    for backend in core.backends.all() {
        if only.is_some_and(|name| name != backend.name()) {
            continue;
        }
        match placement_problem(tx, backend.as_ref(), volume_type)? {
            None => return Ok(Ok(backend)),
            Some(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        problems.push(format!(
            "backend {} is not configured",
            only.unwrap_or("(none)")
        ));
    }
    Ok(Err(problems.join("; ")))
}

/// Whether `backend`'s pool has every capability `volume_type` asks for
/// (whether its service is enabled or not: a volume already there stays).
pub(crate) fn can_hold(backend: &dyn VolumeBackend, volume_type: &ember_model::VolumeType) -> bool {
    capability_problem(backend, volume_type).is_none()
}

/// Why `backend` cannot hold a new volume of `volume_type`, if it cannot.
fn placement_problem(
    tx: &mut dyn Tx,
    backend: &dyn VolumeBackend,
    volume_type: &ember_model::VolumeType,
) -> Result<Option<String>> {
    let key = switch_key("cinder-volume", &volume_service_host(backend.name()));
    if let Some(s) = tx.service_switch(&key)?.filter(|s| s.disabled) {
        return Ok(Some(format!(
            "the volume service is disabled ({})",
            s.disabled_reason.as_deref().unwrap_or("no reason given")
        )));
    }
    Ok(capability_problem(backend, volume_type))
}

/// The first capability `volume_type` asks for that `backend` lacks.
fn capability_problem(
    backend: &dyn VolumeBackend,
    volume_type: &ember_model::VolumeType,
) -> Option<String> {
    let caps = capabilities(backend);
    for (key, want) in &volume_type.extra_specs {
        let (scoped, name) = match key.strip_prefix("capabilities:") {
            Some(n) => (true, n),
            None if key.contains(':') => continue,
            None => (false, key.as_str()),
        };
        match caps.iter().find(|(c, _)| *c == name) {
            Some((_, have)) if !satisfies(have, want) => {
                return Some(format!(
                    "the pool's {name} is {have:?}, the volume type asks for {want:?}"
                ));
            }
            None if scoped => return Some(format!("the pool has no capability {name}")),
            _ => {}
        }
    }
    None
}

impl Service {
    /// Every service with its switch and whether it is up. Admin only.
    /// With a shared store each node runs a scheduler (its host is the
    /// node's id; down once its lease expired); the volume services are
    /// the backends', clustered across nodes as Cinder's active-active
    /// services are.
    pub async fn list_services(&self, caller: &Caller) -> Result<Vec<ServiceState>> {
        require_admin(caller, "volume_extension:services:index")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let mut out = vec![];
            let now = Timestamp::now();
            let nodes = if core.store.shared() {
                tx.nodes()?
            } else {
                vec![]
            };
            for (binary, host) in services(&core) {
                if binary == "cinder-scheduler" && !nodes.is_empty() {
                    for node in &nodes {
                        let key = switch_key(binary, &node.id);
                        let mut switch = tx.service_switch(&key)?.unwrap_or_default();
                        switch.binary = binary.into();
                        switch.updated_at = Some(node.heartbeat);
                        out.push(ServiceState {
                            binary: binary.into(),
                            host: node.id.clone(),
                            switch,
                            up: crate::membership::alive(node, now),
                        });
                    }
                    continue;
                }
                let key = switch_key(binary, &host);
                let mut switch = tx.service_switch(&key)?.unwrap_or_default();
                switch.binary = binary.into();
                out.push(ServiceState {
                    binary: binary.into(),
                    host,
                    switch,
                    up: true,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Enables or disables the service `binary` on `host`. Admin only.
    pub async fn switch_service(
        &self,
        caller: &Caller,
        host: String,
        binary: String,
        disabled: bool,
        reason: Option<String>,
    ) -> Result<(String, ServiceSwitch)> {
        require_admin(caller, "volume_extension:services:update")?;
        let all = services(&self.core);
        let Some((_, service_host)) = all
            .iter()
            .find(|(b, h)| *b == binary && host_matches(h, &host))
            .cloned()
        else {
            return Err(if all.iter().any(|(_, h)| host_matches(h, &host)) {
                ServiceError::NotFound(format!("Service {binary} could not be found."))
            } else {
                ServiceError::NotFound(format!("Host {host} could not be found."))
            });
        };
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut switch = ServiceSwitch {
                binary: switch_key(&binary, &service_host),
                disabled,
                disabled_reason: reason,
                updated_at: Some(Timestamp::now()),
            };
            tx.put_service_switch(&switch)?;
            tx.commit()?;
            switch.binary = binary;
            Ok((service_host, switch))
        })
        .await
    }
}
