//! `ember-bench`: measures Ember's speed claims against a reference run in
//! the same process on the same machine, and prints one table.
//!
//! It starts a real `ember serve` on a free port with a fresh data
//! directory (or targets `--url`), then runs:
//! - snapshot create over the Cinder v3 API: latency to the 202 and to
//!   `available` (p50/p99), sequentially and with 8 and 32 concurrent
//!   clients, and durable creates per second sustained for 30 s at 32;
//! - cost against size: snapshot create, volume-from-snapshot and snapshot
//!   delete (64 MiB written in the layer being merged) on 1 GiB, 64 GiB and
//!   1 TiB sparse volumes;
//! - the reference: `qemu-img create -f qcow2 -b … -F qcow2`, the command
//!   line way to take an external snapshot, timed in the same run;
//! - the data path: sequential 1 MiB and random 4 KiB reads and writes
//!   with `fio` (its libnbd engine) through Ember's NBD export of an
//!   attached volume, next to `qemu-nbd` serving a qcow2 file of the same
//!   size in the same run (skipped when fio or qemu-nbd is missing).
//!
//! `--quick` keeps the whole run under two minutes for CI smoke runs.

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod backup;
mod nodes;
mod rbd;
mod wire;

#[derive(Parser)]
#[command(about = "Benchmarks a running or freshly started Ember")]
struct Args {
    /// Target an already running Ember instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// Path of the `ember` binary (default: next to this one).
    #[arg(long)]
    ember: Option<std::path::PathBuf>,
    /// Short run for CI.
    #[arg(long)]
    quick: bool,
    /// Also write the table as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Run only these scenario groups (comma-separated: create, size,
    /// chain, scale, data, backup, rbd, nodes); all when absent.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A Ceph cluster's configuration (with an admin keyring): adds the
    /// `rbd` group, Ember on an RBD backend against librbd itself.
    #[arg(long, env = "EMBER_BENCH_CEPH_CONF")]
    ceph_conf: Option<std::path::PathBuf>,
    /// The RADOS pool for the `rbd` group (it works in namespaces of its own).
    #[arg(long, default_value = "rbd")]
    ceph_pool: String,
    /// A PostgreSQL URL whose role may create databases: adds the `nodes`
    /// group (PostgreSQL against SQLite, 1 to 3 nodes on one database).
    #[arg(long, env = "EMBER_BENCH_DATABASE", hide_env_values = true)]
    database: Option<String>,
}

impl Args {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

/// Samples per figure in the cost-against-size group.
const SIZE_SAMPLES: usize = 9;

const PROJECT: &str = "b0000000000000000000000000000001";

struct Row {
    scenario: String,
    value: f64,
    unit: &'static str,
    reference: Option<(String, f64)>,
}

struct Client {
    base: String,
    conn: std::cell::RefCell<wire::Conn>,
}

impl Client {
    fn new(base: &str) -> Result<Client> {
        Ok(Client {
            base: base.to_string(),
            conn: std::cell::RefCell::new(wire::Conn::new(base)?),
        })
    }

    /// Another client of the same server, on a connection of its own.
    fn another(&self) -> Result<Client> {
        Client::new(&self.base)
    }

    /// One request as an admin of `PROJECT`; `path` from the root.
    fn raw(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<wire::Response> {
        let token = format!("admin:{PROJECT}");
        let mut headers = vec![
            ("X-Auth-Token", token.as_str()),
            ("OpenStack-API-Version", "volume 3.71"),
        ];
        let bytes = match body {
            Some((content_type, bytes)) => {
                headers.push(("Content-Type", content_type));
                bytes
            }
            None => &[],
        };
        self.conn
            .borrow_mut()
            .request(method, path, &headers, bytes)
    }

    /// A Cinder v3 call in `PROJECT`, with a JSON body and answer.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let body = body.map(|b| b.to_string());
        let resp = self.raw(
            method,
            &format!("/v3/{PROJECT}{path}"),
            body.as_deref().map(|b| ("application/json", b.as_bytes())),
        )?;
        Ok((
            resp.status,
            serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
        ))
    }

    fn wait(&self, collection: &str, id: &str, status: &str) -> Result<()> {
        self.wait_every(collection, id, status, Duration::from_micros(200))
    }

    /// `wait`, asking every `every`.
    fn wait_every(&self, collection: &str, id: &str, status: &str, every: Duration) -> Result<()> {
        let key = &collection[..collection.len() - 1];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (code, body) = self.call("GET", &format!("/{collection}/{id}"), None)?;
            if code == 200 && body[key]["status"] == status {
                return Ok(());
            }
            if code == 200 && body[key]["status"] == "error" {
                bail!("{key} {id} went to error");
            }
            if Instant::now() > deadline {
                bail!("{key} {id} never reached {status}");
            }
            std::thread::sleep(every);
        }
    }

    fn wait_gone(&self, collection: &str, id: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.call("GET", &format!("/{collection}/{id}"), None)?.0 != 404 {
            if Instant::now() > deadline {
                bail!("{collection}/{id} never went away");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    fn volume(&self, size_gib: u64) -> Result<String> {
        self.volume_every(size_gib, Duration::from_micros(200))
    }

    /// `volume`, asking for its status every `every`.
    fn volume_every(&self, size_gib: u64, every: Duration) -> Result<String> {
        let (st, b) = self.call(
            "POST",
            "/volumes",
            Some(json!({"volume": {"size": size_gib}})),
        )?;
        if st != 202 {
            bail!("volume create: {st} {b}");
        }
        let id = b["volume"]["id"].as_str().context("volume id")?.to_string();
        self.wait_every("volumes", &id, "available", every)?;
        Ok(id)
    }

    /// Returns (time to 202, time to available).
    fn snapshot(&self, volume: &str) -> Result<(Duration, Duration, String)> {
        let t = Instant::now();
        let (st, b) = self.call(
            "POST",
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": volume}})),
        )?;
        let accepted = t.elapsed();
        if st != 202 {
            bail!("snapshot create: {st} {b}");
        }
        let id = b["snapshot"]["id"]
            .as_str()
            .context("snapshot id")?
            .to_string();
        self.wait("snapshots", &id, "available")?;
        Ok((accepted, t.elapsed(), id))
    }

    fn write_mib(&self, volume: &str, mib: u64, byte: u8) -> Result<()> {
        let chunk = vec![byte; 1 << 20];
        for i in 0..mib {
            let resp = self.raw(
                "PUT",
                &format!("/v3/{PROJECT}/volumes/{volume}/data?offset={}", i << 20),
                Some(("application/octet-stream", &chunk)),
            )?;
            if resp.status != 204 {
                bail!("write: {}", resp.status);
            }
        }
        Ok(())
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx].as_secs_f64() * 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `qemu-img create -f qcow2 -b BASE -F qcow2 TOP` over `n` runs (median).
fn qemu_img_overlay_ms(size: &str, n: usize) -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let base = dir.path().join("base.qcow2");
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg(size)
        .status()
        .ok()?;
    if !ok.success() {
        return None;
    }
    let mut samples = vec![];
    for i in 0..n {
        let top = dir.path().join(format!("top{i}.qcow2"));
        let t = Instant::now();
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&base)
            .arg(&top)
            .status()
            .ok()?;
        if !st.success() {
            return None;
        }
        samples.push(t.elapsed());
    }
    Some(percentile(&mut samples, 0.5))
}

struct Server {
    child: Option<Child>,
    data: Option<tempfile::TempDir>,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(args: &Args) -> Result<Server> {
    if let Some(url) = &args.url {
        return Ok(Server {
            child: None,
            data: None,
            base: url.trim_end_matches('/').to_string(),
        });
    }
    let ember = ember_binary(args)?;
    spawn_ember(&ember, tempfile::tempdir()?, &[]).map(|(s, _)| s)
}

fn ember_binary(args: &Args) -> Result<std::path::PathBuf> {
    Ok(match &args.ember {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("ember"),
    })
}

/// Starts `ember serve` on `data`; returns it and the time until it first
/// answered a request.
fn spawn_ember(
    ember: &std::path::Path,
    data: tempfile::TempDir,
    extra: &[String],
) -> Result<(Server, Duration)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let child = Command::new(ember)
        // noauth: the figures are of the block storage API, not of token checks
        // (an embedded-identity token check is one HMAC, microseconds).
        .args([
            "serve",
            "--auth",
            "noauth",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--nbd-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .args(extra)
        .env("EMBER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", ember.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let probe = Client::new(&base)?;
    let t = Instant::now();
    while probe.raw("GET", "/", None).is_err() {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("ember did not start");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = started.elapsed();
    Ok((
        Server {
            child: Some(child),
            data: Some(data),
            base,
        },
        ready,
    ))
}

impl Server {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// Resident memory (MiB) and open file descriptors of a process.
fn resources(pid: u32) -> Option<(f64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss_kib / 1024.0, fds))
}

/// Image files in the server's data directory, when this tool started it.
fn image_count(server: &Server) -> Option<usize> {
    let dir = server.data.as_ref()?.path().join("images");
    Some(
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".qcow2"))
            .count(),
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    let server = start(&args)?;
    let client = Client::new(&server.base)?;
    let (st, b) = client.call(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
    )?;
    if st != 200 {
        bail!("setting quotas: {st} {b}");
    }
    let mut rows: Vec<Row> = vec![];
    if let Some((rss, fds)) = server.pid().and_then(resources) {
        rows.push(Row {
            scenario: "resident memory, idle after start".into(),
            value: rss,
            unit: "MiB",
            reference: None,
        });
        rows.push(Row {
            scenario: "open file descriptors, idle".into(),
            value: fds as f64,
            unit: "fds",
            reference: None,
        });
    }
    let sequential = if args.quick { 50 } else { 500 };
    let qemu_ref = qemu_img_overlay_ms("1G", if args.quick { 10 } else { 50 });

    if args.wants("create") {
        // Sequential snapshot creates of one volume.
        let vol = client.volume(1)?;
        let (mut accepted, mut available) = (vec![], vec![]);
        for _ in 0..sequential {
            let (a, b, _) = client.snapshot(&vol)?;
            accepted.push(a);
            available.push(b);
        }
        let reference = qemu_ref.map(|r| ("qemu-img create -b (median)".to_string(), r));
        rows.push(Row {
            scenario: "snapshot create → 202, p50 (sequential)".into(),
            value: percentile(&mut accepted, 0.5),
            unit: "ms",
            reference: None,
        });
        rows.push(Row {
            scenario: "snapshot create → 202, p99 (sequential)".into(),
            value: percentile(&mut accepted, 0.99),
            unit: "ms",
            reference: None,
        });
        rows.push(Row {
            scenario: "snapshot create → available, p50 (sequential)".into(),
            value: percentile(&mut available, 0.5),
            unit: "ms",
            reference: reference.clone(),
        });
        rows.push(Row {
            scenario: "snapshot create → available, p99 (sequential)".into(),
            value: percentile(&mut available, 0.99),
            unit: "ms",
            reference: None,
        });

        // Concurrent clients, each on its own volume: latencies over a fixed
        // number of creates, then throughput sustained for a fixed time.
        let per_client = if args.quick { 10 } else { 50 };
        for clients in [8usize, 32] {
            let run = concurrent_creates(&client, &server, clients, Load::Creates(per_client))?;
            let mut accepted = run.accepted;
            for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
                rows.push(Row {
                    scenario: format!("snapshot create → 202, {label} ({clients} clients)"),
                    value: percentile(&mut accepted, p),
                    unit: "ms",
                    reference: None,
                });
            }
            let mut all = run.latencies;
            rows.push(Row {
                scenario: format!("snapshot create → available, p50 ({clients} clients)"),
                value: percentile(&mut all, 0.5),
                unit: "ms",
                reference: None,
            });
            rows.push(Row {
                scenario: format!("snapshot create → available, p99 ({clients} clients)"),
                value: percentile(&mut all, 0.99),
                unit: "ms",
                reference: None,
            });
            rows.push(Row {
                scenario: format!("snapshots completed per second ({clients} clients)"),
                value: run.per_second,
                unit: "/s",
                reference: None,
            });
        }
        // The disk's own limit, measured now on the data directory's file
        // system: what Ember's durable creates are compared with.
        let disk_dir = server
            .data
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_else(std::env::temp_dir);
        let disk_secs = if args.quick { 1 } else { 5 };
        let mut disk64 = None;
        for threads in [1usize, 8, 64] {
            let rate = disk_sync_rate(&disk_dir, threads, Duration::from_secs(disk_secs))?;
            if threads == 64 {
                disk64 = Some(rate);
            }
            rows.push(Row {
                scenario: format!("disk limit: file create + fsync per second ({threads} threads)"),
                value: rate,
                unit: "/s",
                reference: None,
            });
        }
        let disk_ref = disk64.map(|r| ("disk create + fsync, 64 threads".to_string(), r));
        let secs = if args.quick { 3 } else { 30 };
        let run = concurrent_creates(&client, &server, 32, Load::For(Duration::from_secs(secs)))?;
        rows.push(Row {
            scenario: format!("durable creates per second, sustained {secs} s (32 clients)"),
            value: run.per_second,
            unit: "/s",
            reference: disk_ref.clone(),
        });
        let secs128 = if args.quick { 3 } else { 15 };
        let run128 = concurrent_creates(
            &client,
            &server,
            128,
            Load::For(Duration::from_secs(secs128)),
        )?;
        rows.push(Row {
            scenario: format!("durable creates per second, sustained {secs128} s (128 clients)"),
            value: run128.per_second,
            unit: "/s",
            reference: disk_ref,
        });
        if let Some((rss, fds)) = run.peak {
            rows.push(Row {
                scenario: "resident memory, peak under 32 clients".into(),
                value: rss,
                unit: "MiB",
                reference: None,
            });
            rows.push(Row {
                scenario: "open file descriptors, peak under 32 clients".into(),
                value: fds as f64,
                unit: "fds",
                reference: None,
            });
        }
    }
    if args.wants("size") {
        // Cost against size, 64 MiB of data in each volume.
        let data_mib = if args.quick { 16 } else { 64 };
        let mut first: Option<(f64, f64, f64)> = None;
        for (label, gib) in [("1 GiB", 1u64), ("64 GiB", 64), ("1 TiB", 1024)] {
            let vol = client.volume(gib)?;
            client.write_mib(&vol, data_mib, 0xa5)?;
            let (_, snap_time, snap) = client.snapshot(&vol)?;
            // Data written after the snapshot sits in the volume's new layer;
            // the snapshot's own layer holds the first write.
            // Nine clones; the median (a few-millisecond sample is at the
            // mercy of the shared disk's jitter).
            let mut clone_times = vec![];
            for _ in 0..SIZE_SAMPLES {
                let t = Instant::now();
                let (st, b) = client.call(
                    "POST",
                    "/volumes",
                    Some(json!({"volume": {"snapshot_id": snap}})),
                )?;
                if st != 202 {
                    bail!("clone: {st} {b}");
                }
                let clone = b["volume"]["id"].as_str().context("clone id")?.to_string();
                client.wait("volumes", &clone, "available")?;
                clone_times.push(t.elapsed());
                // Delete the clone, so deleting the snapshot later merges its
                // layer (holding the data) into the volume's top.
                client.call("DELETE", &format!("/volumes/{clone}"), None)?;
                client.wait_gone("volumes", &clone)?;
            }
            let clone_time = Duration::from_secs_f64(median_ms(clone_times) / 1000.0);
            // Let the clone's own clean-up finish before counting files.
            let mut images_before = image_count(&server);
            if images_before.is_some() {
                let mut stable = 0;
                while stable < 5 {
                    std::thread::sleep(Duration::from_millis(5));
                    let now = image_count(&server);
                    stable = if now == images_before { stable + 1 } else { 0 };
                    images_before = now;
                }
            }
            let t = Instant::now();
            client.call("DELETE", &format!("/snapshots/{snap}"), None)?;
            client.wait_gone("snapshots", &snap)?;
            // The record goes first; the merge of the layer follows in the same
            // workflow. With our own data directory, wait for the file to go.
            if let Some(before) = images_before {
                let deadline = Instant::now() + Duration::from_secs(120);
                while image_count(&server).is_some_and(|n| n >= before) && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            let delete_time = t.elapsed();
            // More snapshots of the same volume: the create figure is the
            // median of nine.
            let mut snap_times = vec![snap_time];
            for _ in 1..SIZE_SAMPLES {
                let (_, took, extra) = client.snapshot(&vol)?;
                snap_times.push(took);
                client.call("DELETE", &format!("/snapshots/{extra}"), None)?;
                client.wait_gone("snapshots", &extra)?;
            }
            let snap_time = Duration::from_secs_f64(median_ms(snap_times) / 1000.0);
            let now = (ms(snap_time), ms(clone_time), ms(delete_time));
            let base = *first.get_or_insert(now);
            let ratio_ref = |v: f64, b: f64| {
                if label == "1 GiB" {
                    None
                } else {
                    Some(("same op at 1 GiB".to_string(), b)).filter(|_| v >= 0.0)
                }
            };
            rows.push(Row {
                scenario: format!(
                    "snapshot create → available, {label} volume, {data_mib} MiB data (p50 of {SIZE_SAMPLES})"
                ),
                value: now.0,
                unit: "ms",
                reference: ratio_ref(now.0, base.0),
            });
            rows.push(Row {
                scenario: format!(
                    "volume from snapshot → available, {label} (p50 of {SIZE_SAMPLES})"
                ),
                value: now.1,
                unit: "ms",
                reference: ratio_ref(now.1, base.1),
            });
            rows.push(Row {
                scenario: format!("snapshot delete, {data_mib} MiB merged → done, {label}"),
                value: now.2,
                unit: "ms",
                reference: ratio_ref(now.2, base.2),
            });
            client.call("DELETE", &format!("/volumes/{vol}"), None)?;
        }
        if let Some(r) = qemu_img_overlay_ms("1T", if args.quick { 10 } else { 50 }) {
            rows.push(Row {
                scenario: "reference: qemu-img create -b, 1 TiB base (median)".into(),
                value: r,
                unit: "ms",
                reference: None,
            });
        }
    }
    if args.wants("chain") {
        match chain_depth_rows(&client, args.quick) {
            Ok(more) => rows.extend(more),
            Err(e) => eprintln!("chain depth scenarios failed: {e:#}"),
        }
    }
    if args.url.is_none() && args.wants("scale") {
        match scale_rows(&args) {
            Ok(more) => rows.extend(more),
            Err(e) => eprintln!("scale scenarios failed: {e:#}"),
        }
    }
    if args.wants("data") {
        match data_path_rows(&client, &args) {
            Ok(more) => rows.extend(more),
            Err(e) => eprintln!("data path scenarios skipped: {e:#}"),
        }
    }
    if args.wants("backup") {
        match backup::rows(&client, args.quick) {
            Ok(more) => rows.extend(more),
            Err(e) => eprintln!("backup scenarios failed: {e:#}"),
        }
    }
    if args.url.is_none() && args.wants("rbd") {
        match &args.ceph_conf {
            Some(conf) => match rbd::rows(&args, conf) {
                Ok(more) => rows.extend(more),
                Err(e) => eprintln!("rbd scenarios failed: {e:#}"),
            },
            None if !args.only.is_empty() => {
                eprintln!("rbd scenarios need --ceph-conf (or EMBER_BENCH_CEPH_CONF)")
            }
            None => {}
        }
    }

    if args.url.is_none() && args.wants("nodes") {
        match &args.database {
            Some(url) => match nodes::rows(&args, url) {
                Ok(more) => rows.extend(more),
                Err(e) => eprintln!("nodes scenarios failed: {e:#}"),
            },
            None if !args.only.is_empty() => {
                eprintln!("nodes scenarios need --database (or EMBER_BENCH_DATABASE)")
            }
            None => {}
        }
    }

    print_table(&rows);
    if let Some(path) = &args.json {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario, "value": r.value, "unit": r.unit,
                    "reference": r.reference.as_ref().map(|(n, v)| json!({"name": n, "value": v})),
                    "ratio": r.reference.as_ref().map(|(_, v)| r.value / v),
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}

/// How long each concurrent client keeps creating snapshots.
#[derive(Clone, Copy)]
enum Load {
    Creates(usize),
    For(Duration),
}

struct ConcurrentRun {
    /// Create → 202, every snapshot.
    accepted: Vec<Duration>,
    /// Create → available, every snapshot.
    latencies: Vec<Duration>,
    per_second: f64,
    /// Peak resident memory (MiB) and open fds of the server, when known.
    peak: Option<(f64, usize)>,
}

/// The file system's rate of durable small-file creates: `threads`
/// threads, each creating a new file, writing 576 bytes (an empty qcow2
/// overlay's size on disk), `fdatasync`ing it, for `secs`; then the
/// directory is synced and the files removed (not counted).
fn disk_sync_rate(dir: &std::path::Path, threads: usize, secs: Duration) -> Result<f64> {
    use std::io::Write;
    let scratch = tempfile::tempdir_in(dir)?;
    let t = Instant::now();
    let counts: Vec<Result<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let path = scratch.path().to_path_buf();
                s.spawn(move || -> Result<usize> {
                    let mut n = 0;
                    let data = [0x51u8; 576];
                    while t.elapsed() < secs {
                        let mut f = std::fs::File::create(path.join(format!("{i}-{n}")))?;
                        f.write_all(&data)?;
                        f.sync_data()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = t.elapsed();
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    std::fs::File::open(scratch.path())?.sync_all()?;
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// `clients` threads, each creating snapshots of its own volume.
fn concurrent_creates(
    client: &Client,
    server: &Server,
    clients: usize,
    load: Load,
) -> Result<ConcurrentRun> {
    let vols: Vec<String> = (0..clients)
        .map(|_| client.volume(1))
        .collect::<Result<_>>()?;
    let t = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let peak = std::sync::Mutex::new(None::<(f64, usize)>);
    // Per create: (time to the 202, time to `available`).
    let results: Vec<Result<Vec<(Duration, Duration)>>> = std::thread::scope(|s| {
        if let Some(pid) = server.pid() {
            let (done, peak) = (&done, &peak);
            s.spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some((rss, fds)) = resources(pid) {
                        let mut p = peak.lock().unwrap();
                        let (r, f) = p.unwrap_or_default();
                        *p = Some((r.max(rss), f.max(fds)));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        let handles: Vec<_> = vols
            .iter()
            .map(|v| {
                let c = client.another();
                s.spawn(move || {
                    let c = c?;
                    let mut out = vec![];
                    loop {
                        match load {
                            Load::Creates(n) if out.len() >= n => break,
                            Load::For(d) if t.elapsed() >= d => break,
                            _ => {
                                let (accepted, available, _) = c.snapshot(v)?;
                                out.push((accepted, available));
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        let out = handles.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    });
    let elapsed = t.elapsed();
    let (mut accepted, mut latencies) = (vec![], vec![]);
    for r in results {
        for (a, l) in r? {
            accepted.push(a);
            latencies.push(l);
        }
    }
    let peak = *peak.lock().unwrap();
    Ok(ConcurrentRun {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        accepted,
        latencies,
        peak,
    })
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    percentile(&mut samples, 0.5)
}

/// Reads 4 KiB written below a chain of N snapshots, and times a snapshot
/// create at that depth, for N in 1, 16, 128, 1024 (quick: up to 128).
fn chain_depth_rows(client: &Client, quick: bool) -> Result<Vec<Row>> {
    let depths: &[usize] = if quick {
        &[1, 16, 128]
    } else {
        &[1, 16, 128, 1024]
    };
    let vol = client.volume(1)?;
    client.write_mib(&vol, 1, 0x5a)?;
    let read = |n: usize| -> Result<Vec<Duration>> {
        let path = format!("/v3/{PROJECT}/volumes/{vol}/data?offset=0&length=4096");
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let body = client.raw("GET", &path, None)?.body;
                if body.len() != 4096 || body[0] != 0x5a {
                    bail!("wrong bytes at the bottom of the chain");
                }
                Ok(t.elapsed())
            })
            .collect()
    };
    let mut rows = vec![];
    let mut depth = 0;
    let mut base: Option<(f64, f64)> = None;
    for &target in depths {
        let mut last_create = Duration::ZERO;
        while depth < target {
            last_create = client.snapshot(&vol)?.1;
            depth += 1;
        }
        read(3)?; // the chain reopens after the last switch
        let read_ms = median_ms(read(50)?);
        let create_ms = {
            let mut times = vec![last_create];
            for _ in 0..4 {
                times.push(client.snapshot(&vol)?.1);
                depth += 1;
            }
            median_ms(times)
        };
        let (read_ref, create_ref) = *base.get_or_insert((read_ms, create_ms));
        let r = |v: f64, b: f64| {
            (target > 1)
                .then(|| ("same at depth 1".to_string(), b))
                .filter(|_| v.is_finite())
        };
        rows.push(Row {
            scenario: format!(
                "read 4 KiB at the bottom of {target} snapshots (HTTP data API, p50)"
            ),
            value: read_ms,
            unit: "ms",
            reference: r(read_ms, read_ref),
        });
        rows.push(Row {
            scenario: format!("snapshot create → available at depth {target} (p50 of 5)"),
            value: create_ms,
            unit: "ms",
            reference: r(create_ms, create_ref),
        });
    }
    Ok(rows)
}

/// A store of N snapshots (100 000; quick: 10 000) over 1000 volumes,
/// written straight into a fresh data directory's SQLite before Ember
/// starts: start-up time, a detail page of 1000, a filtered page and a show.
/// Metadata only: the snapshots have no image files.
fn scale_rows(args: &Args) -> Result<Vec<Row>> {
    use ember_model::*;
    use ember_store::MetadataStore;
    let n: usize = if args.quick { 10_000 } else { 100_000 };
    let data = tempfile::tempdir()?;
    let project = ProjectId(PROJECT.into());
    let user = UserId("bench".into());
    let seeded = Instant::now();
    let mut some_volume = None;
    let mut some_snapshot = None;
    {
        let store = ember_store::sqlite::SqliteStore::open(&data.path().join("ember.db"))?;
        let mut tx = store.write()?;
        let volumes: Vec<VolumeId> = (0..1000).map(|_| VolumeId::new()).collect();
        for (i, v) in volumes.iter().enumerate() {
            tx.put_volume(&Volume {
                id: *v,
                project_id: project.clone(),
                user_id: user.clone(),
                name: Some(format!("scale-{i}")),
                description: None,
                size_gib: 1,
                status: VolumeStatus::Available,
                availability_zone: "nova".into(),
                volume_type: "__DEFAULT__".into(),
                volume_type_id: None,
                group_id: None,
                snapshot_id: None,
                source_volid: None,
                metadata: Metadata::new(),
                bootable: false,
                multiattach: false,
                read_only: None,
                attachments: vec![],
                backend: DEFAULT_BACKEND.into(),
                pool: DEFAULT_BACKEND.into(),
                migration_status: None,
                image: None,
                error_reason: None,
                created_at: Timestamp::now(),
                updated_at: None,
            })?;
        }
        for i in 0..n {
            let id = SnapshotId::new();
            let volume = volumes[i % volumes.len()];
            some_volume.get_or_insert(volume);
            some_snapshot = Some(id);
            tx.put_snapshot(&Snapshot {
                id,
                project_id: project.clone(),
                user_id: user.clone(),
                volume_id: volume,
                name: Some(format!("snap-{i}")),
                description: None,
                size_gib: 1,
                status: if i % 10 == 0 {
                    SnapshotStatus::Error
                } else {
                    SnapshotStatus::Available
                },
                metadata: Metadata::new(),
                group_snapshot_id: None,
                volume_type_id: None,
                image: None,
                export_secret: None,
                progress: "100%".into(),
                error_reason: None,
                created_at: Timestamp::now(),
                updated_at: None,
            })?;
        }
        tx.commit()?;
    }
    eprintln!(
        "seeded {n} snapshots in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let (server, ready) = spawn_ember(&ember_binary(args)?, data, &[])?;
    let client = Client::new(&server.base)?;
    let time = |path: &str, reps: usize| -> Result<f64> {
        let mut samples = vec![];
        for _ in 0..reps {
            let t = Instant::now();
            let (st, body) = client.call("GET", path, None)?;
            if st != 200 {
                bail!("{path}: {st} {body}");
            }
            samples.push(t.elapsed());
        }
        Ok(median_ms(samples))
    };
    let label = if n >= 100_000 {
        "100 000".to_string()
    } else {
        n.to_string()
    };
    let volume = some_volume.context("a volume")?;
    let snapshot = some_snapshot.context("a snapshot")?;
    let mut rows = vec![Row {
        scenario: format!("start-up to first answer, {label} snapshots in store"),
        value: ms(ready),
        unit: "ms",
        reference: None,
    }];
    rows.push(Row {
        scenario: format!("GET snapshots/detail, page of 1000 of {label} (p50)"),
        value: time("/snapshots/detail?limit=1000", 20)?,
        unit: "ms",
        reference: None,
    });
    rows.push(Row {
        scenario: format!("GET snapshots/detail?status=available&volume_id=…, of {label} (p50)"),
        value: time(
            &format!("/snapshots/detail?status=available&volume_id={volume}&limit=1000"),
            20,
        )?,
        unit: "ms",
        reference: None,
    });
    rows.push(Row {
        scenario: format!("GET snapshots/detail, page of 1000 sorted by name, of {label} (p50)"),
        value: time("/snapshots/detail?limit=1000&sort=display_name:asc", 10)?,
        unit: "ms",
        reference: None,
    });
    rows.push(Row {
        scenario: format!("GET snapshots/{{id}}, of {label} (p50)"),
        value: time(&format!("/snapshots/{snapshot}"), 200)?,
        unit: "ms",
        reference: None,
    });
    if let Some((rss, _)) = server.pid().and_then(resources) {
        rows.push(Row {
            scenario: format!("resident memory after these, {label} snapshots"),
            value: rss,
            unit: "MiB",
            reference: None,
        });
    }
    Ok(rows)
}

/// One fio run against an NBD URI: (MiB/s, IOPS).
fn fio(uri: &str, rw: &str, bs: &str, size_mib: u64, secs: u64) -> Result<(f64, f64)> {
    let out = Command::new("fio")
        .args([
            "--name=ember-bench",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            &format!("--rw={rw}"),
            &format!("--bs={bs}"),
            &format!("--size={size_mib}M"),
            "--iodepth=16",
            "--time_based",
            &format!("--runtime={secs}"),
            "--output-format=json",
        ])
        .output()
        .context("running fio")?;
    if !out.status.success() {
        bail!("fio failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&text[text.find('{').unwrap_or(0)..])?;
    let job = &json["jobs"][0];
    let side = if rw.contains("read") { "read" } else { "write" };
    let bw_kib = job[side]["bw"].as_f64().unwrap_or(0.0);
    let iops = job[side]["iops"].as_f64().unwrap_or(0.0);
    Ok((bw_kib / 1024.0, iops))
}

/// Sequential 1 MiB and random 4 KiB I/O through Ember's NBD export, and
/// through qemu-nbd serving a qcow2 file of the same size.
fn data_path_rows(client: &Client, args: &Args) -> Result<Vec<Row>> {
    Command::new("fio")
        .arg("--version")
        .output()
        .context("fio is not installed")?;
    Command::new("qemu-nbd")
        .arg("--version")
        .output()
        .context("qemu-nbd is not installed")?;
    let (size_mib, secs): (u64, u64) = if args.quick { (64, 2) } else { (1024, 10) };
    let vol = client.volume(size_mib.div_ceil(1024))?;
    let (st, body) = client.call(
        "POST",
        "/attachments",
        Some(json!({"attachment": {"volume_uuid": vol, "connector": {"host": "bench"}, "mode": "rw"}})),
    )?;
    if st != 200 {
        bail!("attaching: {st} {body}");
    }
    let ember_uri = body["attachment"]["connection_info"]["uri"]
        .as_str()
        .context("no NBD uri (is the NBD server off?)")?
        .to_string();

    let dir = tempfile::tempdir()?;
    let image = dir.path().join("reference.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg(format!("{}G", size_mib.div_ceil(1024)))
        .status()?;
    if !st.success() {
        bail!("qemu-img create failed");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut qemu_nbd = Command::new("qemu-nbd")
        .args([
            "-f",
            "qcow2",
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-x",
            "reference",
            "--persistent",
        ])
        .arg(&image)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let ref_uri = format!("nbd://127.0.0.1:{port}/reference");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = qemu_nbd.kill();
            bail!("qemu-nbd did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rows = vec![];
    let result = (|| -> Result<()> {
        for (label, rw, bs) in [
            ("sequential write 1 MiB", "write", "1M"),
            ("sequential read 1 MiB", "read", "1M"),
            ("random write 4 KiB", "randwrite", "4k"),
            ("random read 4 KiB", "randread", "4k"),
        ] {
            let (ember_mib, ember_iops) = fio(&ember_uri, rw, bs, size_mib, secs)?;
            let (ref_mib, ref_iops) = fio(&ref_uri, rw, bs, size_mib, secs)?;
            let (value, reference, unit) = if bs == "4k" {
                (ember_iops, ref_iops, "IOPS")
            } else {
                (ember_mib, ref_mib, "MiB/s")
            };
            rows.push(Row {
                scenario: format!("NBD {label} (fio nbd, iodepth 16, {size_mib} MiB)"),
                value,
                unit,
                reference: Some(("qemu-nbd, same qcow2 size".into(), reference)),
            });
        }
        Ok(())
    })();
    let _ = qemu_nbd.kill();
    let _ = qemu_nbd.wait();
    result?;
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<62} {:>10} {:>5}  {:<34} {:>10} {:>7}",
        "scenario", "value", "unit", "reference", "ref", "ratio"
    );
    println!("{}", "-".repeat(136));
    for r in rows {
        let (rn, rv, ratio) = match &r.reference {
            Some((n, v)) => (n.as_str(), format!("{v:.3}"), format!("{:.2}", r.value / v)),
            None => ("", String::new(), String::new()),
        };
        println!(
            "{:<62} {:>10.3} {:>5}  {:<34} {:>10} {:>7}",
            r.scenario, r.value, r.unit, rn, rv, ratio
        );
    }
}
