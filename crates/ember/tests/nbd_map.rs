//! The NBD export answers `base:allocation` (structured replies, block
//! status): `nbdinfo --map` shows the data a volume holds and the holes,
//! and what qemu and libnbd read through structured replies is the data
//! written. Run on every test backend (a backend that cannot tell reports
//! everything as data, which clients accept).

mod common;

use common::{Server, TestBackend, attach, test_backends};
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
        if backend == TestBackend::Qcow2 {
            // Exactly the two MiB written are data; the rest is holes.
            assert_eq!(
                data.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
                vec![(0, MIB), (512 * MIB, MIB)],
                "{extents:?}"
            );
            assert!(
                extents
                    .iter()
                    .filter(|e| e.2 != "data")
                    .all(|e| e.2 == "hole,zero"),
                "{extents:?}"
            );
        } else {
            // Everything data: the backend cannot tell.
            assert!(!data.is_empty(), "{extents:?}");
        }

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
