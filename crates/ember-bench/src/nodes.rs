//! The `nodes` group: Ember on PostgreSQL against Ember on SQLite, in the
//! same run. Snapshot create → available on one node with each store, and
//! volume creates per second by 16 clients spread round-robin over 1, 2
//! and 3 nodes sharing one PostgreSQL database (each node keeps its
//! volumes in qcow2 files of its own: the figure is of the shared metadata
//! store and the nodes, not of a data backend). PostgreSQL should run with
//! its durable defaults (`fsync`, `synchronous_commit`) for the figures to
//! compare with SQLite's fsync'd commits.

use super::*;

/// A fresh database beside `base` (whose role may create databases).
fn fresh_database(base: &str) -> Result<String> {
    ember_store::postgres::fresh_database(base).map_err(|e| anyhow::anyhow!("{e}"))
}

fn node(ember: &std::path::Path, database: Option<&str>, id: usize) -> Result<Server> {
    let mut extra = vec!["--node-id".to_string(), format!("bench{id}")];
    if let Some(url) = database {
        extra.extend(["--database".to_string(), url.to_string()]);
    }
    spawn_ember(ember, tempfile::tempdir()?, &extra).map(|(s, _)| s)
}

fn unlimited(client: &Client) -> Result<()> {
    let (st, b) = client.call(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
    )?;
    if st != 200 {
        bail!("setting quotas: {st} {b}");
    }
    Ok(())
}

/// Median snapshot create → available, sequential, on a fresh node.
fn snapshot_latency(ember: &std::path::Path, database: Option<&str>, n: usize) -> Result<f64> {
    let server = node(ember, database, 0)?;
    let client = Client::new(&server.base)?;
    unlimited(&client)?;
    let volume = client.volume(1)?;
    let mut samples = vec![];
    for _ in 0..n {
        samples.push(client.snapshot(&volume)?.1);
    }
    Ok(percentile(&mut samples, 0.5))
}

/// How often a client asks whether its volume is available. Clients poll
/// (openstacksdk every 2 s by default); polling every 200 µs, as the
/// latency figures do, would measure 16 clients' reads rather than the
/// creates, and on two cores a read through PostgreSQL costs a round trip
/// that SQLite, in process, does not.
const POLL: Duration = Duration::from_millis(5);

/// Volume creates (to `available`) per second by `clients` clients spread
/// over `servers`, for `secs`, each client polling every `POLL`.
fn creates_per_second(servers: &[Server], clients: usize, secs: Duration) -> Result<f64> {
    let t = Instant::now();
    let counts: Vec<Result<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let base = servers[i % servers.len()].base.clone();
                s.spawn(move || {
                    let c = Client::new(&base)?;
                    let mut done = 0;
                    while t.elapsed() < secs {
                        c.volume_every(1, POLL)?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: usize = counts.into_iter().sum::<Result<usize>>()?;
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

pub fn rows(args: &Args, base: &str) -> Result<Vec<Row>> {
    let ember = ember_binary(args)?;
    let n = if args.quick { 20 } else { 200 };
    let secs = Duration::from_secs(if args.quick { 1 } else { 10 });
    let clients = 16;
    let mut rows = vec![];

    let sqlite = snapshot_latency(&ember, None, n)?;
    let postgres = snapshot_latency(&ember, Some(&fresh_database(base)?), n)?;
    rows.push(Row {
        scenario: "snapshot create → available, p50, on PostgreSQL (sequential)".into(),
        value: postgres,
        unit: "ms",
        reference: Some(("the same on SQLite".into(), sqlite)),
    });

    let single = {
        let server = node(&ember, None, 0)?;
        unlimited(&Client::new(&server.base)?)?;
        creates_per_second(std::slice::from_ref(&server), clients, secs)?
    };
    for nodes in 1..=3 {
        let url = fresh_database(base)?;
        let servers: Vec<Server> = (0..nodes)
            .map(|i| node(&ember, Some(&url), i))
            .collect::<Result<_>>()?;
        unlimited(&Client::new(&servers[0].base)?)?;
        let rate = creates_per_second(&servers, clients, secs)?;
        rows.push(Row {
            scenario: format!(
                "volume creates → available per second, {nodes} node(s) on one PostgreSQL ({clients} clients)"
            ),
            value: rate,
            unit: "/s",
            reference: Some(("one node on SQLite".into(), single)),
        });
    }
    Ok(rows)
}
