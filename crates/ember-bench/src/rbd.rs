//! The `rbd` group: Ember with an RBD backend against librbd itself, in
//! the same run on the same cluster. The floor of a snapshot is librbd's
//! `rbd_snap_create` (Ember's create → available adds its API, workflow
//! and metadata commit); `rbd snap create` through the CLI is shown too.
//! Clone, revert and delete at 1 GiB and 1 TiB (thin), and librbd's own
//! `rbd_snap_rollback` (which Ember's revert does not use) at growing sizes.

use super::*;
use ember_rbd::{Cluster, ConnectOptions};

/// Waits until the namespace's image list stops changing: the removals a
/// delete or revert leaves to the collector are done, so that they do not
/// share the cluster with the next sample.
fn settle(pool: &ember_rbd::Pool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = pool.list().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut stable = 0;
    while stable < 3 {
        if Instant::now() > deadline {
            bail!("the RBD backend never settled");
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = pool.list().map_err(|e| anyhow::anyhow!("{e}"))?;
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

fn median_of(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    ms(samples[samples.len() / 2])
}

pub fn rows(args: &Args, conf: &std::path::Path) -> Result<Vec<Row>> {
    let n = if args.quick { 5 } else { 20 };
    let pid = std::process::id();
    let mut rows = vec![];

    // The floor: librbd directly, and the CLI.
    let cluster = Cluster::connect(&ConnectOptions {
        conf: Some(conf),
        options: &[("rbd_default_clone_format", "2")],
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ns = format!("bench-ref-{pid}");
    let pool = cluster
        .pool(&args.ceph_pool, Some(&ns))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    pool.create("ref", 1 << 30)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let image = pool
        .open("ref", None, false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut direct = vec![];
    for i in 0..n {
        let t = Instant::now();
        image
            .snap_create(&format!("s{i}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        direct.push(t.elapsed());
    }
    let floor = median_of(direct);
    let mut cli = vec![];
    for i in 0..n.min(5) {
        let t = Instant::now();
        let st = Command::new("rbd")
            .arg("--conf")
            .arg(conf)
            .args([
                "snap",
                "create",
                &format!("{}/{ns}/ref@c{i}", args.ceph_pool),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("rbd snap create failed");
        }
        cli.push(t.elapsed());
    }
    rows.push(Row {
        scenario: "RBD reference: librbd rbd_snap_create (median)".into(),
        value: floor,
        unit: "ms",
        reference: None,
    });
    rows.push(Row {
        scenario: "RBD reference: rbd snap create, the CLI (median)".into(),
        value: median_of(cli),
        unit: "ms",
        reference: Some(("librbd rbd_snap_create".into(), floor)),
    });

    // librbd's own create (and remove) at both sizes: what part of a
    // volume create's cost at 1 TiB is RBD's (the object map of a
    // 262 144-object image).
    let mut create_1g = None;
    for (label, gib) in [("1 GiB", 1u64), ("1 TiB", 1024)] {
        let mut samples = vec![];
        for i in 0..9 {
            let name = format!("create-{gib}-{i}");
            let t = Instant::now();
            pool.create(&name, gib << 30)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            samples.push(t.elapsed());
            pool.remove(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let took = median_of(samples);
        rows.push(Row {
            scenario: format!("RBD reference: librbd rbd_create (median of 9), {label}"),
            value: took,
            unit: "ms",
            reference: create_1g.map(|r| ("same at 1 GiB".to_string(), r)),
        });
        create_1g.get_or_insert(took);
    }

    // librbd's rollback, for the record: it writes every object.
    drop(image);
    let sizes: &[(&str, u64)] = if args.quick {
        &[("1 GiB", 1)]
    } else {
        &[("1 GiB", 1), ("16 GiB", 16)]
    };
    let mut rollback_1g = None;
    for (label, gib) in sizes {
        let name = format!("rb{gib}");
        pool.create(&name, gib << 30)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let img = pool
            .open(&name, None, false)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        img.write_at(&vec![7u8; 1 << 20], 0)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        img.snap_create("s").map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Instant::now();
        img.snap_rollback("s").map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = ms(t.elapsed());
        rows.push(Row {
            scenario: format!("RBD reference: librbd rbd_snap_rollback, {label} image"),
            value: took,
            unit: "ms",
            reference: rollback_1g.map(|b| ("same at 1 GiB".to_string(), b)),
        });
        rollback_1g.get_or_insert(took);
    }

    // Ember on RBD.
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("ember.toml");
    std::fs::write(
        &config,
        format!(
            "[[backend]]\nname = \"rbd\"\ndriver = \"rbd\"\nceph_conf = {:?}\npool = {:?}\nnamespace = \"bench-{pid}\"\n",
            conf, args.ceph_pool
        ),
    )?;
    let (server, _) = spawn_ember(
        &ember_binary(args)?,
        tempfile::tempdir()?,
        &["--config".into(), config.to_string_lossy().into_owned()],
    )?;
    let client = Client::new(&server.base)?;
    let ember_ns = cluster
        .pool(&args.ceph_pool, Some(&format!("bench-{pid}")))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (st, b) = client.call(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
    )?;
    if st != 200 {
        bail!("setting quotas: {st} {b}");
    }
    let vol = client.volume(1)?;
    let mut available = vec![];
    for _ in 0..n {
        let (_, took, _) = client.snapshot(&vol)?;
        available.push(took);
    }
    rows.push(Row {
        scenario: "RBD: snapshot create → available, p50 (sequential)".into(),
        value: median_of(available),
        unit: "ms",
        reference: Some(("librbd rbd_snap_create".into(), floor)),
    });

    let k = if args.quick { 3 } else { 9 };
    let mut base: Option<(f64, f64, f64, f64)> = None;
    for (label, gib) in [("1 GiB", 1u64), ("1 TiB", 1024)] {
        let mut creates = vec![];
        for _ in 0..k {
            settle(&ember_ns)?;
            let t = Instant::now();
            let extra = client.volume(gib)?;
            creates.push(t.elapsed());
            client.call("DELETE", &format!("/volumes/{extra}"), None)?;
            client.wait_gone("volumes", &extra)?;
        }
        settle(&ember_ns)?;
        let vol = client.volume(gib)?;
        client.write_mib(&vol, 4, 0x5a)?;
        let (_, _, snap) = client.snapshot(&vol)?;
        let (mut clones, mut reverts, mut deletes) = (vec![], vec![], vec![]);
        for _ in 0..k {
            settle(&ember_ns)?;
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
            clones.push(t.elapsed());
            let t = Instant::now();
            client.call("DELETE", &format!("/volumes/{clone}"), None)?;
            client.wait_gone("volumes", &clone)?;
            deletes.push(t.elapsed());
            settle(&ember_ns)?;
            let t = Instant::now();
            let (st, b) = client.call(
                "POST",
                &format!("/volumes/{vol}/action"),
                Some(json!({"revert": {"snapshot_id": snap}})),
            )?;
            if st != 202 {
                bail!("revert: {st} {b}");
            }
            client.wait("volumes", &vol, "available")?;
            reverts.push(t.elapsed());
        }
        let now = (
            median_of(creates),
            median_of(clones),
            median_of(reverts),
            median_of(deletes),
        );
        let first = *base.get_or_insert(now);
        let against = |v: f64| (label != "1 GiB").then(|| ("same op at 1 GiB".to_string(), v));
        for (what, value, b) in [
            (
                &format!("volume create → available (p50 of {k})") as &str,
                now.0,
                first.0,
            ),
            (
                &format!("volume from snapshot → available (p50 of {k})"),
                now.1,
                first.1,
            ),
            (&format!("revert → available (p50 of {k})"), now.2, first.2),
            (&format!("clone delete → gone (p50 of {k})"), now.3, first.3),
        ] {
            rows.push(Row {
                scenario: format!("RBD: {what}, {label}"),
                value,
                unit: "ms",
                reference: against(b),
            });
        }
        client.call("DELETE", &format!("/volumes/{vol}?cascade=true"), None)?;
        client.wait_gone("volumes", &vol)?;
    }

    // Block I/O through Ember's NBD export of an RBD volume.
    if Command::new("fio").arg("--version").output().is_ok() {
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
        let uri = body["attachment"]["connection_info"]["uri"]
            .as_str()
            .context("no NBD uri")?
            .to_string();
        for (label, rw, bs) in [
            ("sequential write 1 MiB", "write", "1M"),
            ("sequential read 1 MiB", "read", "1M"),
            ("random read 4 KiB", "randread", "4k"),
        ] {
            let (mib, iops) = fio(&uri, rw, bs, size_mib, secs)?;
            let (value, unit) = if bs == "4k" {
                (iops, "IOPS")
            } else {
                (mib, "MiB/s")
            };
            rows.push(Row {
                scenario: format!("RBD: NBD {label} (fio nbd, iodepth 16, {size_mib} MiB)"),
                value,
                unit,
                reference: None,
            });
        }
    }
    Ok(rows)
}
