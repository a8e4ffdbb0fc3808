//! The `backup` group: backups to the default target (a directory on the
//! same disk) against `qemu-img convert` of the same data, in the same run.
//!
//! - Full backup of a 1 GiB volume holding 256 MiB of incompressible,
//!   distinct data (neither compression nor deduplication helps), against
//!   `qemu-img convert -O raw` of a qcow2 file holding the same bytes.
//! - Incremental backup after 16 MiB changed, on a 64 GiB volume against
//!   the same on a 1 GiB volume: the ratio shows whether the cost follows
//!   the change or the volume's size.
//! - Restore of the full backup to a new volume (MiB/s), against
//!   `qemu-img convert -O qcow2` of the raw copy (MiB/s).

use crate::{Client, Row};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Bytes that neither compress nor repeat (xorshift), `len` of them from
/// stream position `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write(client: &Client, volume: &str, offset: u64, data: &[u8]) -> Result<()> {
    let r = client.raw(
        "PUT",
        &format!(
            "/v3/{}/volumes/{volume}/data?offset={offset}",
            crate::PROJECT
        ),
        Some(("application/octet-stream", data)),
    )?;
    if r.status != 204 {
        bail!("writing: {}", r.status);
    }
    Ok(())
}

/// Writes `mib` MiB of noise from `offset`, 1 MiB at a time (the data
/// API's largest request body).
fn fill(client: &Client, volume: &str, offset: u64, mib: u64, seed: u64) -> Result<()> {
    for i in 0..mib {
        write(
            client,
            volume,
            offset + i * MIB,
            &noise(seed + i, MIB as usize),
        )?;
    }
    Ok(())
}

/// Creates a backup and waits for it: (id, seconds to available).
fn backup(client: &Client, volume: &str, incremental: bool) -> Result<(String, f64)> {
    let t = Instant::now();
    let (st, b) = client.call(
        "POST",
        "/backups",
        Some(json!({"backup": {"volume_id": volume, "incremental": incremental}})),
    )?;
    if st != 202 {
        bail!("backup create: {st} {b}");
    }
    let id = b["backup"]["id"]
        .as_str()
        .context("no backup id")?
        .to_string();
    client.wait_every("backups", &id, "available", Duration::from_millis(2))?;
    Ok((id, t.elapsed().as_secs_f64()))
}

/// Runs a qemu-img conversion and makes its output durable (`sync -f`,
/// as Ember's backups and restores are durable when they are available):
/// seconds for both.
fn qemu(args: &[&str]) -> Result<f64> {
    let t = Instant::now();
    let st = Command::new(args[0]).args(&args[1..]).status()?;
    if !st.success() {
        bail!("{} failed", args.join(" "));
    }
    let output = args.last().expect("an output file");
    if !Command::new("sync")
        .args(["-f", output])
        .status()?
        .success()
    {
        bail!("sync -f {output} failed");
    }
    Ok(t.elapsed().as_secs_f64())
}

pub fn rows(client: &Client, quick: bool) -> Result<Vec<Row>> {
    let (st, b) = client.call(
        "PUT",
        &format!("/os-quota-sets/{}", crate::PROJECT),
        Some(json!({"quota_set": {"backups": -1, "backup_gigabytes": -1}})),
    )?;
    if st != 200 {
        bail!("setting backup quotas: {st} {b}");
    }
    let data_mib: u64 = if quick { 32 } else { 256 };
    let changed_mib: u64 = if quick { 4 } else { 16 };
    let mut rows = vec![];

    // Full backup, and the same bytes through qemu-img convert.
    let vol = client.volume(1)?;
    fill(client, &vol, 0, data_mib, 1)?;
    let (full, full_s) = backup(client, &vol, false)?;
    // The same bytes as a sparse raw file, then as a qcow2 file.
    let dir = tempfile::tempdir()?;
    let raw = dir.path().join("ref.raw");
    let src = dir.path().join("ref.qcow2");
    let out = dir.path().join("out.raw");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&raw)?;
        for i in 0..data_mib {
            f.write_all(&noise(1 + i, MIB as usize))?;
        }
        f.set_len(1 << 30)?;
        f.sync_all()?;
    }
    let (raw_s, src_s, out_s) = (
        raw.to_str().unwrap(),
        src.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let to_qcow2_s = qemu(&["qemu-img", "convert", "-O", "qcow2", raw_s, src_s])?;
    let convert_s = qemu(&["qemu-img", "convert", "-O", "raw", src_s, out_s])?;
    rows.push(Row {
        scenario: format!("backup, full: 1 GiB volume with {data_mib} MiB of data → available"),
        value: full_s * 1000.0,
        unit: "ms",
        reference: Some((
            "qemu-img convert -O raw + sync (same data)".into(),
            convert_s * 1000.0,
        )),
    });

    // Restore to a new volume, and qemu-img convert back to qcow2.
    let t = Instant::now();
    let (st, b) = client.call(
        "POST",
        &format!("/backups/{full}/restore"),
        Some(json!({"restore": {"name": "bench-restore"}})),
    )?;
    if st != 202 {
        bail!("restore: {st} {b}");
    }
    let restored = b["restore"]["volume_id"]
        .as_str()
        .context("no volume")?
        .to_string();
    client.wait_every("volumes", &restored, "available", Duration::from_millis(2))?;
    let restore_s = t.elapsed().as_secs_f64();
    let back_s = to_qcow2_s;
    rows.push(Row {
        scenario: format!("restore of the full backup ({data_mib} MiB of data) to a new volume"),
        value: data_mib as f64 / restore_s,
        unit: "MiB/s",
        reference: Some((
            "qemu-img convert raw → qcow2 + sync (same data)".into(),
            data_mib as f64 / back_s,
        )),
    });

    // Incremental after `changed_mib` MiB changed: 64 GiB against 1 GiB.
    let incremental = |size_gib: u64| -> Result<f64> {
        let v = client.volume(size_gib)?;
        fill(client, &v, 0, data_mib, 100)?;
        backup(client, &v, false)?;
        fill(
            client,
            &v,
            (size_gib * 1024 - changed_mib) * MIB / 2,
            changed_mib,
            200,
        )?;
        Ok(backup(client, &v, true)?.1)
    };
    let small = incremental(1)?;
    let big = incremental(if quick { 8 } else { 64 })?;
    rows.push(Row {
        scenario: format!(
            "backup, incremental after {changed_mib} MiB changed, {} GiB volume",
            if quick { 8 } else { 64 }
        ),
        value: big * 1000.0,
        unit: "ms",
        reference: Some((
            format!("the same on a 1 GiB volume ({changed_mib} MiB changed)"),
            small * 1000.0,
        )),
    });
    Ok(rows)
}
