//! Attacker-controlled image files: a header naming a backing file outside
//! the image directory, and seeded random corruption of header and
//! metadata. Ember opens chains only as the metadata store names them, so
//! a header's backing name is never followed; a corrupt image may fail to
//! open or to read, but never panics, and never changes any other file.

use ember_storage::qcow2::Qcow2Driver;
use ember_storage::{Chain, ImageId, StorageDriver};
use std::io::{Read, Seek, SeekFrom, Write};

fn digest(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn a_header_naming_an_outside_backing_file_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.raw");
    std::fs::write(&secret, vec![0x5e; 1 << 20]).unwrap();
    let d = Qcow2Driver::new(dir.path().join("images")).unwrap();
    let img = ImageId::new();
    d.create_image(img, 1 << 20, None).unwrap();
    // Point the header at the secret file, as a hostile image would.
    let out = std::process::Command::new("qemu-img")
        .args(["rebase", "-u", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&secret)
        .arg(d.path(img))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = digest(&secret);
    // Opened as the store says (a chain of one), the backing name is
    // ignored; refusing to open is fine too.
    if let Ok(io) = d.open(&Chain { images: vec![img] }, true) {
        let mut buf = vec![0u8; 4096];
        io.read_at(&mut buf, 0).unwrap();
        assert!(
            buf.iter().all(|&b| b == 0),
            "read through a header's backing name"
        );
        io.write_at(&[1; 4096], 0).unwrap();
        io.flush().unwrap();
    }
    assert_eq!(digest(&secret), before, "the outside file changed");
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn corrupt_images_fail_cleanly_and_touch_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = Qcow2Driver::new(dir.path().join("images")).unwrap();
    // A sibling image with data, which must never change.
    let sibling = ImageId::new();
    d.create_image(sibling, 1 << 30, None).unwrap();
    {
        let io = d
            .open(
                &Chain {
                    images: vec![sibling],
                },
                true,
            )
            .unwrap();
        io.write_at(&[0x77; 65536], 0).unwrap();
        io.flush().unwrap();
    }
    let sibling_bytes = digest(&d.path(sibling));
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let rounds: u64 = std::env::var("EMBER_HOSTILE_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    for round in 0..rounds {
        let victim = ImageId::new();
        d.create_image(victim, 1 << 30, Some(sibling)).unwrap();
        {
            let io = d
                .open(
                    &Chain {
                        images: vec![victim, sibling],
                    },
                    true,
                )
                .unwrap();
            io.write_at(&[0x33; 8192], (rng.next() % 1000) * 65536)
                .unwrap();
            io.flush().unwrap();
        }
        // Corrupt a few bytes of the first 3 clusters (header, L1,
        // refcount table and block live there).
        let path = d.path(victim);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let len = f.seek(SeekFrom::End(0)).unwrap().min(3 * 65536);
        for _ in 0..1 + rng.next() % 4 {
            let at = rng.next() % len.max(1);
            f.seek(SeekFrom::Start(at)).unwrap();
            let mut b = [0u8; 1];
            f.read_exact(&mut b).unwrap();
            b[0] ^= 1 << (rng.next() % 8);
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&b).unwrap();
        }
        drop(f);
        if std::env::var_os("EMBER_HOSTILE_TRACE").is_some() {
            eprintln!("round {round}");
            std::fs::copy(&path, dir.path().join("last-corrupt.qcow2")).unwrap();
        }
        let result = std::panic::catch_unwind(|| {
            if let Ok(io) = d.open(
                &Chain {
                    images: vec![victim, sibling],
                },
                true,
            ) {
                let mut buf = vec![0u8; 65536];
                for i in 0..8u64 {
                    let _ = io.read_at(&mut buf, i * 64 * 65536);
                    let _ = io.write_at(&buf[..4096], i * 64 * 65536 + 4096);
                }
                let _ = io.flush();
            }
        });
        assert!(
            result.is_ok(),
            "round {round}: a corrupt image made the driver panic"
        );
        assert_eq!(
            digest(&d.path(sibling)),
            sibling_bytes,
            "round {round}: the backing image changed"
        );
        d.delete_image(victim).unwrap();
    }
}

/// The cargo-fuzz target's driver (`fuzz/fuzz_targets/qcow2_image.rs`) on
/// stable: qemu-img's own images at several cluster sizes, then seeded
/// byte flips, truncations and extensions of them.
#[test]
fn fuzz_driver_on_seeded_mutations_of_real_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = Vec::new();
    for (i, cluster) in ["512", "4096", "65536"].iter().enumerate() {
        let path = dir.path().join(format!("seed{i}.qcow2"));
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o"])
            .arg(format!("cluster_size={cluster}"))
            .arg(&path)
            .arg("16M")
            .output()
            .unwrap();
        assert!(out.status.success());
        let out = std::process::Command::new("qemu-io")
            .args(["-c", "write -P 0x41 0 8k", "-c", "write -P 0x42 1M 4k"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        seeds.push(std::fs::read(&path).unwrap());
    }
    let rounds: u64 = std::env::var("EMBER_HOSTILE_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
        / 4;
    let mut rng = Rng(0x2545f4914f6cdd1d);
    for seed in &seeds {
        ember_storage::fuzzing::open_hostile_image(seed);
    }
    for round in 0..rounds {
        let mut image = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
        match rng.next() % 8 {
            0 => image.truncate((rng.next() % image.len() as u64) as usize),
            1 => image.extend((0..rng.next() % 4096).map(|_| rng.next() as u8)),
            _ => {
                let hot = image.len().min(8192) as u64;
                for _ in 0..1 + rng.next() % 8 {
                    let at = (rng.next() % hot) as usize;
                    image[at] ^= 1 << (rng.next() % 8);
                }
            }
        }
        let result =
            std::panic::catch_unwind(|| ember_storage::fuzzing::open_hostile_image(&image));
        assert!(result.is_ok(), "round {round}: the driver panicked");
    }
}

/// Found by the `qcow2_image` fuzz target: a refcount table with no block
/// for the clusters in use sent imago 0.2.6 into unbounded recursion (a
/// stack overflow) on the first allocation. The driver refuses it.
#[test]
fn an_image_without_refcount_blocks_for_its_clusters_is_refused() {
    let image = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/refblock-missing-for-header.qcow2"
    ))
    .unwrap();
    ember_storage::fuzzing::open_hostile_image(&image);
}
