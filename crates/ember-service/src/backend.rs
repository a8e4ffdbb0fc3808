//! The admin's view of where volumes live, in Cinder's terms: Ember is one
//! host (`ember`) running the scheduler and volume roles in one process,
//! with one backend (`qcow2`) holding one pool (`qcow2`).

use crate::volumes::require_admin;
use crate::{Caller, Result, Service, ServiceError};
use ember_model::{ProjectId, ServiceSwitch, Timestamp};
use ember_store::Tx;
use std::collections::BTreeMap;

pub const HOST: &str = "ember";
pub const BACKEND: &str = "qcow2";
pub const POOL: &str = "qcow2";
/// What storage protocol clients attach with (the NBD export).
pub const STORAGE_PROTOCOL: &str = "nbd";
pub const VENDOR: &str = "Ember";

/// `host@backend`, Cinder's name of a volume service.
pub fn volume_service_host() -> String {
    format!("{HOST}@{BACKEND}")
}

/// `host@backend#pool`, the value of a volume's `os-vol-host-attr:host`.
pub fn pool_name() -> String {
    format!("{HOST}@{BACKEND}#{POOL}")
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
    /// Size and free space of the pool, in bytes. Admin only.
    pub async fn pool_capacity(&self, caller: &Caller) -> Result<ember_storage::Capacity> {
        require_admin(caller, "scheduler_extension:scheduler_stats:get_pools")?;
        let core = self.core.clone();
        self.run_blocking(move || Ok(core.driver.capacity()?)).await
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

/// Ember's services as Cinder names them: (binary, host).
pub fn services() -> [(&'static str, String); 2] {
    [
        ("cinder-scheduler", HOST.to_string()),
        ("cinder-volume", volume_service_host()),
    ]
}

/// Whether `host` names `service_host` (`ember` also names `ember@qcow2`).
pub fn host_matches(service_host: &str, host: &str) -> bool {
    service_host == host || service_host.split('@').next() == Some(host)
}

/// The pool's capabilities as the scheduler matches them against a volume
/// type's extra specs (and as `get_pools` reports them).
pub fn capabilities() -> Vec<(&'static str, String)> {
    vec![
        ("volume_backend_name", BACKEND.into()),
        ("pool_name", POOL.into()),
        ("vendor_name", VENDOR.into()),
        ("storage_protocol", STORAGE_PROTOCOL.into()),
        ("driver_version", env!("CARGO_PKG_VERSION").into()),
        ("thin_provisioning_support", "True".into()),
        ("thick_provisioning_support", "False".into()),
        ("QoS_support", "False".into()),
        ("multiattach", "True".into()),
    ]
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

/// Why no backend can hold a new volume of `volume_type`, if none can: the
/// volume service is disabled, or an extra spec asks for a capability the
/// pool does not have. Extra specs that name no capability are ignored,
/// as in Cinder, unless scoped `capabilities:`.
pub(crate) fn placement_problem(
    tx: &mut dyn Tx,
    volume_type: &ember_model::VolumeType,
) -> Result<Option<String>> {
    if let Some(s) = tx.service_switch("cinder-volume")?.filter(|s| s.disabled) {
        return Ok(Some(format!(
            "the volume service is disabled ({})",
            s.disabled_reason.as_deref().unwrap_or("no reason given")
        )));
    }
    let caps = capabilities();
    for (key, want) in &volume_type.extra_specs {
        let (scoped, name) = match key.strip_prefix("capabilities:") {
            Some(n) => (true, n),
            None if key.contains(':') => continue,
            None => (false, key.as_str()),
        };
        match caps.iter().find(|(c, _)| *c == name) {
            Some((_, have)) if !satisfies(have, want) => {
                return Ok(Some(format!(
                    "the pool's {name} is {have:?}, the volume type asks for {want:?}"
                )));
            }
            None if scoped => return Ok(Some(format!("the pool has no capability {name}"))),
            _ => {}
        }
    }
    Ok(None)
}

impl Service {
    /// Every service with its switch. Admin only.
    pub async fn list_services(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(String, String, ServiceSwitch)>> {
        require_admin(caller, "volume_extension:services:index")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let mut out = vec![];
            for (binary, host) in services() {
                let switch = tx.service_switch(binary)?.unwrap_or(ServiceSwitch {
                    binary: binary.into(),
                    ..Default::default()
                });
                out.push((binary.to_string(), host, switch));
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
        let Some((_, service_host)) = services()
            .into_iter()
            .find(|(b, h)| *b == binary && host_matches(h, &host))
        else {
            return Err(if services().iter().any(|(_, h)| host_matches(h, &host)) {
                ServiceError::NotFound(format!("Service {binary} could not be found."))
            } else {
                ServiceError::NotFound(format!("Host {host} could not be found."))
            });
        };
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let switch = ServiceSwitch {
                binary,
                disabled,
                disabled_reason: reason,
                updated_at: Some(Timestamp::now()),
            };
            tx.put_service_switch(&switch)?;
            tx.commit()?;
            Ok((service_host, switch))
        })
        .await
    }
}
