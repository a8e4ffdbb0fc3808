//! `ember`: the one binary. `ember serve` runs the block storage service
//! with embedded defaults: SQLite metadata and qcow2 images under
//! `./ember-data`, the Cinder API on 127.0.0.1:8776.

mod backends;
mod config;
mod http;
mod keys;
mod metrics;
mod nbd;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::ServeArgs;
use ember_api_cinder::CinderState;
use ember_service::{Service, ServiceConfig};
use ember_store::postgres::PostgresStore;
use ember_store::sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Block storage that speaks Cinder, fast."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(ServeArgs),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EMBER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        // One object per line (timestamp, level, message, and the event's
        // fields: request id, project, user, route, status, duration,
        // workflow id), for Loki or Elasticsearch.
        builder.json().flatten_event(true).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = args.resolve()?;
            init_logging(settings.json_logs);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(serve(settings));
            // Blocking work still running (an NBD request held by a stalled
            // client, a repair) must not keep the process from exiting.
            runtime.shutdown_timeout(Duration::from_secs(5));
            result
        }
    }
}

async fn serve(mut settings: config::Settings) -> anyhow::Result<()> {
    let shutdown = shutdown_watch()?;
    let open_files = raise_open_file_limit();
    settings.fit_connection_limits(open_files);
    if let Some(url) = &settings.public_endpoint {
        ember_api_common::set_public_endpoint(url);
    }
    make_private(&settings.data_dir)
        .with_context(|| format!("securing data directory {}", settings.data_dir.display()))?;
    let store: Arc<dyn ember_store::MetadataStore> = match settings.database.clone() {
        None => Arc::new(
            SqliteStore::open(&settings.data_dir.join("ember.db"))
                .context("opening the metadata store")?,
        ),
        Some(url) => Arc::new(
            tokio::task::spawn_blocking(move || PostgresStore::connect(&url))
                .await?
                .context("connecting to the PostgreSQL metadata store")?,
        ),
    };
    if store.shared() {
        let (store, id) = (store.clone(), settings.node_id.clone());
        tokio::task::spawn_blocking(move || {
            ember_service::membership::ensure_node_id_free(store.as_ref(), &id)
        })
        .await?
        .context("checking the node id")?;
    }
    let backends = backends::open(&settings, &store)?;
    // The NBD listener is bound first: connection_info names its port.
    let nbd_listener = match &settings.nbd_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the NBD listener {addr}"))?,
        ),
        None => None,
    };
    // Export and EC2 secrets are derived from this key, never stored.
    // Keys: files in the data directory, or, when nodes share the store,
    // rows in it (the first node to start creates them).
    let shared = store.shared();
    let (secrets_key, token_key) = if shared {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            Ok((
                keys::shared(store.as_ref(), "secrets")?,
                Some(keys::shared(store.as_ref(), "token")?.to_vec()),
            ))
        })
        .await??
    } else {
        let secrets = ember_identity::load_or_create_key(&settings.data_dir.join("secrets.key"))
            .context("reading the secrets key")?;
        (secrets, None)
    };
    let mut config = ServiceConfig {
        secrets_key: ember_service::SecretKey(secrets_key),
        node_id: settings.node_id.clone(),
        node_api: settings.listen.clone(),
        ..ServiceConfig::default()
    };
    if let Some(l) = &nbd_listener {
        let local = l.local_addr()?;
        config.nbd = Some(ember_service::attachments::NbdEndpoint {
            host: settings
                .nbd_host
                .clone()
                .unwrap_or_else(|| local.ip().to_string()),
            port: local.port(),
        });
    }
    let service = Service::new(store, ember_service::Backends::new(backends), config);
    let target =
        ember_backup::Target::open(&settings.backup_target).context("opening the backup target")?;
    tracing::info!(target = target.describe(), "backups go to");
    service.set_backup_target(std::sync::Arc::new(target));
    let resumed = service
        .recover()
        .await
        .context("recovering unfinished work")?;
    if let Some(l) = nbd_listener {
        tracing::info!(listen = %l.local_addr()?, "serving NBD exports");
        let exports = Arc::new(nbd::ServiceExports(service.clone()));
        let limits = ember_nbd::Limits {
            max_connections: settings.nbd_max_connections,
            reply_timeout: settings.nbd_reply_timeout,
            ..Default::default()
        };
        tokio::spawn(ember_nbd::serve(l, exports, limits));
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let local = listener.local_addr()?;
    let mut app = axum::Router::new();
    let mut access_keys: Option<Arc<dyn ember_api_common::auth::AccessKeys>> = None;
    let auth: Arc<dyn ember_api_common::Authenticator> = match settings.auth.as_str() {
        "noauth" => Arc::new(ember_api_common::NoAuth),
        "embedded" => {
            let store = service.core().store.clone();
            let identity = Arc::new(match &token_key {
                Some(key) => ember_identity::IdentityService::open_with_token_key(
                    store,
                    key.clone(),
                    settings.token_ttl_secs,
                    secrets_key,
                )?,
                None => ember_identity::IdentityService::open(
                    store,
                    &settings.data_dir,
                    settings.token_ttl_secs,
                    secrets_key,
                )?,
            });
            if shared {
                keys::refresh_revocations(identity.clone());
            }
            let auth_url = match &settings.public_endpoint {
                Some(url) => format!("{}/identity/v3", url.trim_end_matches('/')),
                None => format!("http://{local}/identity/v3"),
            };
            let boot = identity.bootstrap(
                settings.admin_password.as_deref(),
                &settings.data_dir,
                &auth_url,
            )?;
            if boot.password_generated {
                tracing::info!(openrc = %settings.data_dir.join("openrc").display(), "generated the admin password");
            }
            app = app.merge(ember_identity::router(identity.clone()));
            access_keys = Some(Arc::new(ember_identity::IdentityAccessKeys(
                identity.clone(),
            )));
            Arc::new(ember_identity::TokenAuthenticator(identity))
        }
        "keystone" => {
            let keystone = settings
                .keystone
                .clone()
                .context("--auth keystone needs --keystone-url and service credentials")?;
            tracing::info!(url = %keystone.url, user = %keystone.username, "validating tokens with Keystone");
            Arc::new(ember_identity::KeystoneAuthenticator::new(keystone))
        }
        other => anyhow::bail!(
            "unknown --auth strategy {other:?} (supported: embedded, keystone, noauth)"
        ),
    };
    // EVS (seed 004) on its own listener: Cinder v2 owns the same paths.
    if let Some(addr) = &settings.evs_listen {
        let evs_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the EVS listener {addr}"))?;
        tracing::info!(listen = %evs_listener.local_addr()?, "serving the EVS API");
        let evs = ember_api_evs::router(Arc::new(ember_api_evs::EvsState {
            service: service.clone(),
            auth: auth.clone(),
            access_keys,
        }));
        tokio::spawn(http::serve(
            "evs",
            evs_listener,
            evs,
            settings.http.clone(),
            shutdown.clone(),
        ));
    }
    // One OpenAPI document for everything on this listener.
    let with_identity = settings.auth == "embedded";
    let app = app
        .route(
            "/openapi.json",
            ember_api_common::openapi::route(move || {
                let mut operations = ember_api_cinder::openapi_operations();
                operations.extend(ember_api_nova::openapi_operations());
                if with_identity {
                    operations.extend(ember_identity::openapi_operations());
                }
                ember_api_common::openapi::document(
                    "Ember",
                    "Ember's Cinder v2/v3, Nova snapshot and (with --auth embedded) identity APIs. The EVS API has its own document on the EVS listener.",
                    Some("X-Auth-Token"),
                    &operations,
                )
            }),
        )
        .merge(ember_api_nova::router(Arc::new(
            ember_api_nova::NovaState {
                service: service.clone(),
                auth: auth.clone(),
            },
        )))
        .route(
            "/metrics",
            axum::routing::get({
                let service = service.clone();
                let auth = auth.clone();
                move |headers: axum::http::HeaderMap| {
                    metrics::scrape(service.clone(), Some(auth.clone()), headers)
                }
            }),
        )
        .merge(ember_api_cinder::router(Arc::new(CinderState {
            service: service.clone(),
            auth,
        })));
    if let Some(addr) = &settings.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener {addr}"))?;
        tracing::info!(listen = %listener.local_addr()?, "serving /metrics and /healthcheck");
        tokio::spawn(http::serve(
            "metrics",
            listener,
            metrics::router(service.clone()),
            settings.http.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(
        listen = %local,
        data_dir = %settings.data_dir.display(),
        auth = %settings.auth,
        resumed_workflows = resumed,
        "ember is serving the Cinder API"
    );
    http::serve(
        "api",
        listener,
        app,
        settings.http.clone(),
        shutdown.clone(),
    )
    .await;
    tracing::info!("shutting down: waiting for running workflows");
    service.drain(Duration::from_secs(10)).await;
    Ok(())
}

/// Registers the SIGTERM/SIGINT handlers at once (a signal that arrives
/// before a handler exists would kill the process without a graceful
/// shutdown) and returns a receiver that turns true when one arrives.
fn shutdown_watch() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// The data directory is its owner's alone: it holds every volume's
/// blocks, password hashes and the keys that derive export and EC2
/// secrets. New files and directories are made 0600/0700 (umask 077);
/// existing ones from an earlier version are fixed: the directories always
/// (a 0700 directory already keeps others out of everything below it),
/// the files of a directory that was not private yet.
fn make_private(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(dir)?;
    fn fix(dir: &std::path::Path) -> std::io::Result<()> {
        let private = |m: &std::fs::Metadata| m.permissions().mode() & 0o077 == 0;
        let was_private = private(&std::fs::metadata(dir)?);
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // The entry's type comes with the listing: a private directory
            // of 100 000 images costs no stat per image.
            let kind = entry.file_type()?;
            if kind.is_dir() {
                fix(&entry.path())?;
            } else if kind.is_file() && !was_private {
                let meta = entry.metadata()?;
                if !private(&meta) {
                    let mode = meta.permissions().mode() & 0o700;
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
                }
            }
        }
        Ok(())
    }
    fix(dir)?;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every client
/// connection, image and database handle is a descriptor, and the default
/// soft limit (often 1024) is what an idle-connection flood exhausts first.
fn raise_open_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid, initialised rlimit.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}
