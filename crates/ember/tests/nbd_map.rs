//! The NBD export answers `base:allocation` (structured replies, block
//! status): `nbdinfo --map` shows the data a volume holds and the holes,
//! and what qemu and libnbd read through structured replies is the data
//! written. Run on every test backend.

mod common;

use common::{Server, attach, test_backends};
use std::process::Command;

const MIB: u64 = 1 << 20;

/// (offset, length, type) of every extent `nbdinfo --map` prints.
fn map(uri: &str) -> Vec<(u64, u64, String)> {
    let out = Command::new("nbdinfo")
        .args(["--map", uri])
        .output()
        .expect("nbdinfo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3..].join(" "),
            )
        })
        .collect()
}

#[test]
fn nbdinfo_maps_data_and_holes_on_every_backend() {
    for backend in test_backends() {
        eprintln!("backend {backend:?}");
        let s = Server::start_on(&backend);
        let volume = s.create_volume(1);
        s.write(&volume, 0, vec![0xAB; MIB as usize]);
        s.write(&volume, 512 * MIB, vec![0xCD; MIB as usize]);
        let (_, uri) = attach(&s, &volume, "rw");

        let extents = map(&uri);
        let total: u64 = extents.iter().map(|e| e.1).sum();
        assert_eq!(total, 1 << 30, "{extents:?}");
        let data: Vec<_> = extents.iter().filter(|e| e.2 == "data").collect();
        // Exactly the two MiB written are data (qcow2: its mapping; RBD:
        // librbd's allocation); the rest is holes.
        assert_eq!(
            data.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
            vec![(0, MIB), (512 * MIB, MIB)],
            "{backend:?}: {extents:?}"
        );
        assert!(
            extents
                .iter()
                .filter(|e| e.2 != "data")
                .all(|e| e.2 == "hole,zero"),
            "{extents:?}"
        );

        // Reads through structured replies: qemu-io and nbdcopy.
        let out = Command::new("qemu-io")
            .args(["-r", "-f", "raw", &uri, "-c", "read -P 0xcd 536870912 1M"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success() && !text.contains("fail"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.raw");
        let st = Command::new("nbdcopy")
            .args([uri.as_str(), copy.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(bytes.len() as u64, 1 << 30);
        assert!(bytes[..MIB as usize].iter().all(|b| *b == 0xAB));
        assert!(
            bytes[(512 * MIB) as usize..(513 * MIB) as usize]
                .iter()
                .all(|b| *b == 0xCD)
        );
        assert!(
            bytes[(MIB as usize)..(512 * MIB) as usize]
                .iter()
                .all(|b| *b == 0)
        );
    }
}

/// `(offset, length, flags)` of `nbdinfo --map=<context>`.
fn map_context(uri: &str, context: &str) -> Vec<(u64, u64, u64)> {
    let out = Command::new("nbdinfo")
        .args([&format!("--map={context}"), uri])
        .output()
        .expect("nbdinfo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

fn export_snapshot(s: &Server, snapshot: &str) -> String {
    let (status, body) = s.admin(
        "POST",
        &format!("/snapshots/{snapshot}/action"),
        Some(serde_json::json!({"ember-export": {}})),
    );
    assert_eq!(status, 200, "{body}");
    body["connection_info"]["data"]["uri"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A snapshot export's `ember:changed-since:<earlier snapshot>` context
/// marks (flag 1) exactly what changed between the two, as qemu's dirty
/// bitmaps do, also after a snapshot between them was deleted.
#[test]
fn snapshot_exports_tell_what_changed_since_an_earlier_snapshot() {
    for backend in test_backends() {
        eprintln!("backend {backend:?}");
        let s = Server::start_on(&backend);
        let volume = s.create_volume(1);
        s.write(&volume, 0, vec![1; MIB as usize]);
        let first = s.create_snapshot(&volume);
        s.write(&volume, 64 * MIB, vec![2; MIB as usize]);
        let middle = s.create_snapshot(&volume);
        s.write(&volume, 700 * MIB, vec![3; MIB as usize]);
        let second = s.create_snapshot(&volume);
        let (status, _) = s.admin("DELETE", &format!("/snapshots/{middle}"), None);
        assert_eq!(status, 202);
        s.wait_gone("snapshots", &middle);

        let uri = export_snapshot(&s, &second);
        let runs = map_context(&uri, &format!("ember:changed-since:{first}"));
        assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), 1 << 30, "{runs:?}");
        let dirty: Vec<(u64, u64)> = runs
            .iter()
            .filter(|r| r.2 & 1 == 1)
            .map(|r| (r.0, r.1))
            .collect();
        assert_eq!(dirty, vec![(64 * MIB, MIB), (700 * MIB, MIB)], "{runs:?}");
        // A later snapshot is no base: the context is not offered.
        let out = Command::new("nbdinfo")
            .args([&format!("--map=ember:changed-since:{second}"), &uri])
            .output()
            .unwrap();
        assert!(!out.status.success() || String::from_utf8_lossy(&out.stdout).trim().is_empty());
    }
}
