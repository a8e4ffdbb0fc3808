//! Settings from flags, environment and an optional TOML file; flags win
//! over the file, the file over built-in defaults.

use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where metadata and images live.
    #[arg(long, env = "EMBER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the Cinder API.
    #[arg(long, env = "EMBER_LISTEN")]
    listen: Option<String>,
    /// Optional TOML file with the same keys (data_dir, listen, auth).
    #[arg(long, env = "EMBER_CONFIG")]
    config: Option<PathBuf>,
    /// Authentication: `embedded` (Ember's own Keystone-compatible
    /// identity service, the default), `keystone` (tokens validated by the
    /// Keystone at --keystone-url) or `noauth` (development: the token is
    /// `user:project`).
    #[arg(long, env = "EMBER_AUTH")]
    auth: Option<String>,
    /// Password of the bootstrap `admin` user (generated on first start when
    /// absent, and written to `<data-dir>/openrc`).
    #[arg(long, env = "EMBER_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Address of the Huawei Cloud EVS API (seed 004), off when absent. It
    /// needs its own listener: Cinder v2 owns the same paths.
    #[arg(long, env = "EMBER_EVS_LISTEN")]
    evs_listen: Option<String>,
    /// Address of the NBD export server (default 127.0.0.1:10809; `off`
    /// disables it). Port 0 picks a free port.
    #[arg(long, env = "EMBER_NBD_LISTEN")]
    nbd_listen: Option<String>,
    /// Host name or address that `connection_info` tells clients to reach
    /// the NBD server at (default: the address it listens on).
    #[arg(long, env = "EMBER_NBD_HOST")]
    nbd_host: Option<String>,
    /// With `--auth embedded`: how long issued tokens live (default 3600,
    /// as Keystone's `[token] expiration`).
    #[arg(long, env = "EMBER_TOKEN_TTL_SECS")]
    token_ttl_secs: Option<i64>,
    /// Free space (MiB) that volume writes leave on the data directory's
    /// file system for the metadata store, so that deletes can always be
    /// recorded (default: 1/64 of the file system, 4 to 256 MiB; 0: none).
    /// The metadata store: a `postgres://user:password@host:port/db` URL
    /// for PostgreSQL (several nodes may share it); default: SQLite in the
    /// data directory.
    #[arg(long, env = "EMBER_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// This node's name among the nodes sharing a PostgreSQL store (unique
    /// per process; default: the host name).
    #[arg(long, env = "EMBER_NODE_ID")]
    node_id: Option<String>,
    #[arg(long, env = "EMBER_RESERVED_SPACE_MIB")]
    reserved_space_mib: Option<u64>,
    /// Open connections each HTTP listener accepts (default 1024); more
    /// get a 503 and are closed.
    #[arg(long, env = "EMBER_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's header, also how long an
    /// idle keep-alive connection stays open (default 30).
    #[arg(long, env = "EMBER_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// NBD connections the export server accepts (default 1024).
    #[arg(long, env = "EMBER_NBD_MAX_CONNECTIONS")]
    nbd_max_connections: Option<usize>,
    /// Seconds an NBD client may leave a reply (each MiB of it) unread
    /// before its connection is closed (default 30).
    #[arg(long, env = "EMBER_NBD_REPLY_TIMEOUT_SECS")]
    nbd_reply_timeout_secs: Option<u64>,
    /// The URL clients reach this service at (Cinder's `public_endpoint`),
    /// used in links and the identity catalog; default: the request's
    /// Host header.
    #[arg(long, env = "EMBER_PUBLIC_ENDPOINT")]
    public_endpoint: Option<String>,
    /// An address serving `/metrics` and `/healthcheck` without credentials
    /// (bind it where only your monitoring reaches). Without it, `/metrics`
    /// on the API listener needs an admin's token.
    #[arg(long, env = "EMBER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Where backups go: a directory (`/path` or `file:///path`) or an
    /// S3-compatible bucket (`s3://bucket/prefix?endpoint=…&region=…`,
    /// credentials in `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
    /// Default: `<data-dir>/backups`.
    #[arg(long, env = "EMBER_BACKUP_TARGET")]
    backup_target: Option<String>,
    /// Log format: `text` (default) or `json` (one JSON object per line).
    #[arg(long, env = "EMBER_LOG_FORMAT")]
    log_format: Option<String>,
    /// With `--auth keystone`: Keystone's identity v3 URL.
    #[arg(long, env = "EMBER_KEYSTONE_URL")]
    keystone_url: Option<String>,
    /// With `--auth keystone`: Ember's service user (needs the `service` or
    /// `admin` role to validate tokens).
    #[arg(long, env = "EMBER_KEYSTONE_USER")]
    keystone_user: Option<String>,
    #[arg(long, env = "EMBER_KEYSTONE_PASSWORD", hide_env_values = true)]
    keystone_password: Option<String>,
    /// The service user's project (default `service`).
    #[arg(long, env = "EMBER_KEYSTONE_PROJECT")]
    keystone_project: Option<String>,
    /// Seconds a validation answer is reused (default 300, as
    /// keystonemiddleware's token_cache_time; 0 asks every time).
    #[arg(long, env = "EMBER_KEYSTONE_CACHE_SECS")]
    keystone_cache_secs: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    node_id: Option<String>,
    listen: Option<String>,
    auth: Option<String>,
    admin_password: Option<String>,
    keystone_url: Option<String>,
    keystone_user: Option<String>,
    keystone_password: Option<String>,
    keystone_project: Option<String>,
    keystone_cache_secs: Option<u64>,
    token_ttl_secs: Option<i64>,
    evs_listen: Option<String>,
    nbd_listen: Option<String>,
    nbd_host: Option<String>,
    reserved_space_mib: Option<u64>,
    public_endpoint: Option<String>,
    metrics_listen: Option<String>,
    backup_target: Option<String>,
    log_format: Option<String>,
    max_connections: Option<usize>,
    header_timeout_secs: Option<u64>,
    nbd_max_connections: Option<usize>,
    nbd_reply_timeout_secs: Option<u64>,
    /// `[[backend]]` tables; none: the embedded qcow2 backend.
    #[serde(default, rename = "backend")]
    backends: Vec<BackendConfig>,
}

/// One `[[backend]]` table: where volumes of the types that name it
/// (`volume_backend_name`) live.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The backend's name: `volume_backend_name` in volume types, and the
    /// `backend` of its hosts (`ember@<name>#<pool>`).
    pub name: String,
    /// `qcow2` or `rbd`.
    pub driver: String,
    /// qcow2: the directory holding the image files.
    pub path: Option<PathBuf>,
    /// rbd: the cluster's configuration file (default
    /// `/etc/ceph/ceph.conf`).
    pub ceph_conf: Option<PathBuf>,
    /// rbd: the RADOS pool holding the images.
    pub pool: Option<String>,
    /// rbd: the RBD namespace of the pool that this backend owns (created
    /// when missing); default: the pool's own. Ember removes unrecorded
    /// images named `ember-…` in it, so nothing else may share it.
    pub namespace: Option<String>,
    /// rbd: the Ceph user, without `client.` (default `admin`).
    pub user: Option<String>,
    /// rbd: the user's keyring (default: what the configuration says).
    pub keyring: Option<PathBuf>,
    /// rbd: how hypervisors attach volumes: `nbd` (default, through
    /// Ember's NBD export, like every backend) or `rbd` (natively with
    /// librbd, as Cinder's RBD driver: `driver_volume_type: rbd`, the
    /// hypervisor using `user` and the libvirt secret `secret_uuid`).
    pub attach: Option<String>,
    /// rbd: the libvirt secret holding `user`'s key on the hypervisors.
    pub secret_uuid: Option<String>,
}

impl BackendConfig {
    /// The embedded default: qcow2 files under the data directory.
    pub fn embedded(data_dir: &std::path::Path) -> Self {
        BackendConfig {
            name: ember_model::DEFAULT_BACKEND.into(),
            driver: "qcow2".into(),
            path: Some(data_dir.join("images")),
            ceph_conf: None,
            pool: None,
            namespace: None,
            user: None,
            keyring: None,
            attach: None,
            secret_uuid: None,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        if !plain(&self.name) {
            anyhow::bail!(
                "backend name {:?}: 1 to 64 letters, digits, '-', '_' or '.' (it is part of host names like ember@<name>#<pool>)",
                self.name
            );
        }
        let rbd_keys = self.ceph_conf.is_some()
            || self.pool.is_some()
            || self.namespace.is_some()
            || self.attach.is_some()
            || self.secret_uuid.is_some()
            || self.user.is_some()
            || self.keyring.is_some();
        match self.driver.as_str() {
            "qcow2" => {
                if self.path.is_none() {
                    anyhow::bail!("backend {}: driver qcow2 needs `path`", self.name);
                }
                if rbd_keys {
                    anyhow::bail!(
                        "backend {}: ceph_conf, pool, namespace, user, keyring, attach and secret_uuid are rbd keys",
                        self.name
                    );
                }
            }
            "rbd" => {
                if self.path.is_some() {
                    anyhow::bail!("backend {}: `path` is a qcow2 key", self.name);
                }
                match &self.pool {
                    Some(pool) if plain(pool) => {}
                    _ => anyhow::bail!("backend {}: driver rbd needs a `pool` name", self.name),
                }
                if !matches!(self.attach.as_deref(), None | Some("nbd" | "rbd")) {
                    anyhow::bail!("backend {}: attach must be nbd or rbd", self.name);
                }
                if self.namespace.as_deref().is_some_and(|ns| !plain(ns)) {
                    anyhow::bail!(
                        "backend {}: namespace: letters, digits, '-', '_', '.'",
                        self.name
                    );
                }
            }
            other => anyhow::bail!(
                "backend {}: unknown driver {other:?} (supported: qcow2, rbd)",
                self.name
            ),
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// A PostgreSQL URL; None: SQLite in the data directory.
    pub database: Option<String>,
    pub node_id: String,
    pub listen: String,
    pub auth: String,
    pub admin_password: Option<String>,
    pub keystone: Option<ember_identity::KeystoneSettings>,
    pub token_ttl_secs: i64,
    pub evs_listen: Option<String>,
    /// None when the NBD server is off.
    pub nbd_listen: Option<String>,
    pub nbd_host: Option<String>,
    /// None: the driver's default.
    pub reserved_space_bytes: Option<u64>,
    pub http: crate::http::Limits,
    pub nbd_max_connections: usize,
    pub nbd_reply_timeout: std::time::Duration,
    pub public_endpoint: Option<String>,
    pub metrics_listen: Option<String>,
    /// The backup target's URL (see `--backup-target`).
    pub backup_target: String,
    /// One JSON object per log line instead of text.
    pub json_logs: bool,
    /// The backends, in placement order; never empty.
    pub backends: Vec<BackendConfig>,
}

impl Settings {
    /// Keeps the connection caps below the open-file limit, with room for
    /// the database, images and the other listener: a cap the process
    /// cannot honour would fail at EMFILE instead of refusing cleanly.
    pub fn fit_connection_limits(&mut self, open_files: u64) {
        let budget = (open_files.saturating_sub(256) / 3).max(16) as usize;
        for (what, cap) in [
            ("HTTP", &mut self.http.max_connections),
            ("NBD", &mut self.nbd_max_connections),
        ] {
            if *cap > budget {
                tracing::warn!(
                    what,
                    asked = *cap,
                    allowed = budget,
                    open_files,
                    "connection limit lowered to fit the open-file limit"
                );
                *cap = budget;
            }
        }
    }
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file: FileConfig = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("parsing config {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let auth = self.auth.or(file.auth).unwrap_or_else(|| "embedded".into());
        let keystone = if auth == "keystone" {
            let need = |v: Option<String>, flag: &str| {
                v.ok_or_else(|| anyhow::anyhow!("--auth keystone needs {flag}"))
            };
            Some(ember_identity::KeystoneSettings {
                url: need(self.keystone_url.or(file.keystone_url), "--keystone-url")?,
                username: need(self.keystone_user.or(file.keystone_user), "--keystone-user")?,
                password: need(
                    self.keystone_password.or(file.keystone_password),
                    "--keystone-password",
                )?,
                project: self
                    .keystone_project
                    .or(file.keystone_project)
                    .unwrap_or_else(|| "service".into()),
                domain: "Default".into(),
                cache_for: std::time::Duration::from_secs(
                    self.keystone_cache_secs
                        .or(file.keystone_cache_secs)
                        .unwrap_or(300),
                ),
            })
        } else {
            None
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("ember-data"));
        let backends = if file.backends.is_empty() {
            vec![BackendConfig::embedded(&data_dir)]
        } else {
            let mut names = std::collections::HashSet::new();
            for b in &file.backends {
                b.check()?;
                if !names.insert(b.name.clone()) {
                    anyhow::bail!("backend {} is declared twice", b.name);
                }
            }
            file.backends.clone()
        };
        let database = self.database.or(file.database);
        if let Some(url) = &database
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            anyhow::bail!("--database must be a postgres:// URL (SQLite needs none)");
        }
        let node_id = match self.node_id.or(file.node_id) {
            Some(id) => id,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "ember".into()),
        };
        if node_id.is_empty()
            || node_id.len() > 255
            || !node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            anyhow::bail!("--node-id must be 1-255 letters, digits, '-', '_' or '.'");
        }
        let backup_target = match self.backup_target.or(file.backup_target) {
            Some(url) => url,
            None => format!(
                "file://{}",
                std::path::absolute(&data_dir)?.join("backups").display()
            ),
        };
        Ok(Settings {
            data_dir,
            database,
            node_id,
            backends,
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8776".into()),
            auth,
            admin_password: self.admin_password.or(file.admin_password),
            keystone,
            token_ttl_secs: {
                let ttl = self.token_ttl_secs.or(file.token_ttl_secs).unwrap_or(3600);
                let max = ember_identity::MAX_TOKEN_TTL_SECS;
                if !(1..=max).contains(&ttl) {
                    anyhow::bail!(
                        "--token-ttl-secs must be between 1 and {max} (30 days), not {ttl}"
                    );
                }
                ttl
            },
            evs_listen: self.evs_listen.or(file.evs_listen),
            nbd_listen: Some(
                self.nbd_listen
                    .or(file.nbd_listen)
                    .unwrap_or_else(|| "127.0.0.1:10809".into()),
            )
            .filter(|l| l != "off"),
            nbd_host: self.nbd_host.or(file.nbd_host),
            reserved_space_bytes: self
                .reserved_space_mib
                .or(file.reserved_space_mib)
                .map(|mib| {
                    mib.checked_mul(1 << 20)
                        .ok_or_else(|| anyhow::anyhow!("--reserved-space-mib {mib} is too large"))
                })
                .transpose()?,
            http: {
                let defaults = crate::http::Limits::default();
                let max_connections = self
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(defaults.max_connections);
                let header_timeout_secs = self
                    .header_timeout_secs
                    .or(file.header_timeout_secs)
                    .unwrap_or(defaults.header_timeout.as_secs());
                if max_connections == 0 || header_timeout_secs == 0 {
                    anyhow::bail!("--max-connections and --header-timeout-secs must be at least 1");
                }
                crate::http::Limits {
                    max_connections,
                    header_timeout: std::time::Duration::from_secs(header_timeout_secs),
                    ..defaults
                }
            },
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            backup_target,
            json_logs: match self.log_format.or(file.log_format).as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => anyhow::bail!("--log-format must be text or json, not {other:?}"),
            },
            public_endpoint: match self.public_endpoint.or(file.public_endpoint) {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => Some(url),
                Some(url) => anyhow::bail!(
                    "--public-endpoint must be an http:// or https:// URL, not {url:?}"
                ),
                None => None,
            },
            nbd_reply_timeout: std::time::Duration::from_secs(
                self.nbd_reply_timeout_secs
                    .or(file.nbd_reply_timeout_secs)
                    .unwrap_or(30)
                    .max(1),
            ),
            nbd_max_connections: self
                .nbd_max_connections
                .or(file.nbd_max_connections)
                .unwrap_or(1024)
                .max(1),
        })
    }
}
