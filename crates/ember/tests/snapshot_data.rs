//! Snapshots keep their bytes: written-before reads back forever,
//! written-after never does — through clones, reverts, deletions in any
//! order, and restarts. Every image file passes `qemu-img check`.

mod common;

use common::{Server, check_all_images, image_files};
use serde_json::json;

const MIB: u64 = 1 << 20;

fn pattern(byte: u8, len: usize) -> Vec<u8> {
    vec![byte; len]
}

/// What one generation of writes leaves: byte `k` at offset 0 and at
/// `k` MiB, 64 KiB each.
fn write_generation(s: &Server, volume: &str, k: u8) {
    s.write(volume, 0, pattern(k, 64 * 1024));
    s.write(volume, k as u64 * MIB, pattern(k, 64 * 1024));
}

/// Checks that `id` shows exactly generations 1..=k.
fn assert_generations(s: &Server, collection: &str, id: &str, k: u8, max: u8) {
    assert_eq!(
        s.read(collection, id, 0, 4096),
        pattern(k, 4096),
        "{collection} {id}: offset 0 should hold generation {k}"
    );
    for j in 1..=max {
        let want = if j <= k { j } else { 0 };
        assert_eq!(
            s.read(collection, id, j as u64 * MIB, 4096),
            pattern(want, 4096),
            "{collection} {id}: {j} MiB should hold {want}"
        );
    }
}

#[test]
fn pattern_a_then_b_clone_revert_and_restart() {
    let mut s = Server::start();
    let vol = s.create_volume(1);
    s.write(&vol, 0, pattern(0xaa, 1 << 20));
    s.write(&vol, 512 * MIB, pattern(0xaa, 4096));
    let snap = s.create_snapshot(&vol);
    s.write(&vol, 0, pattern(0xbb, 1 << 20));

    let (status, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 2, "snapshot_id": snap}})),
    );
    assert_eq!(status, 202, "{body}");
    let clone = body["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &clone, "available");
    assert_eq!(
        s.read("volumes", &clone, 0, 1 << 20),
        pattern(0xaa, 1 << 20)
    );
    assert_eq!(
        s.read("volumes", &clone, 512 * MIB, 4096),
        pattern(0xaa, 4096)
    );
    assert_eq!(
        s.read("volumes", &clone, GIB_PLUS, 4096),
        pattern(0, 4096),
        "the grown part of a clone reads zero"
    );
    assert_eq!(s.read("volumes", &vol, 0, 1 << 20), pattern(0xbb, 1 << 20));
    assert_eq!(
        s.read("snapshots", &snap, 0, 1 << 20),
        pattern(0xaa, 1 << 20)
    );

    // The clone is independent of the original in both directions.
    s.write(&clone, 0, pattern(0xcc, 4096));
    assert_eq!(s.read("volumes", &vol, 0, 4096), pattern(0xbb, 4096));
    assert_eq!(s.read("snapshots", &snap, 0, 4096), pattern(0xaa, 4096));

    // Revert (3.40) brings A back.
    let (status, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"revert": {"snapshot_id": snap}})),
    );
    assert_eq!(status, 202, "{body}");
    s.wait_status("volumes", &vol, "available");
    s.wait_status("snapshots", &snap, "available");
    assert_eq!(s.read("volumes", &vol, 0, 1 << 20), pattern(0xaa, 1 << 20));

    check_all_images(&s.images_dir());
    s.restart();
    assert_eq!(s.read("volumes", &vol, 0, 4096), pattern(0xaa, 4096));
    assert_eq!(s.read("volumes", &clone, 0, 4096), pattern(0xcc, 4096));
    assert_eq!(s.read("volumes", &clone, 4096, 4096), pattern(0xaa, 4096));
    assert_eq!(s.read("snapshots", &snap, 0, 4096), pattern(0xaa, 4096));
}

const GIB_PLUS: u64 = (1 << 30) + 4096;

#[test]
fn deleting_snapshots_in_any_order_keeps_every_byte() {
    // Orders of deleting three snapshots: middle first, oldest first,
    // newest first.
    for order in [[1usize, 0, 2], [0, 1, 2], [2, 1, 0]] {
        let mut s = Server::start();
        let vol = s.create_volume(1);
        let mut snaps = vec![];
        for k in 1..=3u8 {
            write_generation(&s, &vol, k);
            snaps.push(s.create_snapshot(&vol));
        }
        write_generation(&s, &vol, 4);
        // A clone of the middle snapshot depends on its image.
        let (status, body) = s.admin(
            "POST",
            "/volumes",
            Some(json!({"volume": {"snapshot_id": snaps[1]}})),
        );
        assert_eq!(status, 202, "{body}");
        let clone = body["volume"]["id"].as_str().unwrap().to_string();
        s.wait_status("volumes", &clone, "available");

        let mut alive: Vec<(usize, String)> = snaps.iter().cloned().enumerate().collect();
        for index in order {
            let id = snaps[index].clone();
            let (status, body) = s.admin("DELETE", &format!("/snapshots/{id}"), None);
            assert_eq!(status, 202, "{body}");
            s.wait_gone("snapshots", &id);
            alive.retain(|(i, _)| *i != index);
            assert_generations(&s, "volumes", &vol, 4, 4);
            assert_generations(&s, "volumes", &clone, 2, 4);
            for (i, sid) in &alive {
                assert_generations(&s, "snapshots", sid, *i as u8 + 1, 4);
            }
            check_all_images(&s.images_dir());
        }
        s.restart();
        assert_generations(&s, "volumes", &vol, 4, 4);
        assert_generations(&s, "volumes", &clone, 2, 4);

        // Deleting everything leaves no image behind.
        for v in [&clone, &vol] {
            let (status, body) = s.admin("DELETE", &format!("/volumes/{v}"), None);
            assert_eq!(status, 202, "{body}");
            s.wait_gone("volumes", v);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !image_files(&s.images_dir()).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            image_files(&s.images_dir()),
            Vec::<String>::new(),
            "orphan files after deleting everything"
        );
    }
}

#[test]
fn clone_of_a_volume_is_a_point_in_time_copy() {
    let s = Server::start();
    let vol = s.create_volume(1);
    s.write(&vol, 0, pattern(1, 4096));
    let (status, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"source_volid": vol}})),
    );
    assert_eq!(status, 202, "{body}");
    let clone = body["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &clone, "available");
    s.write(&vol, 0, pattern(2, 4096));
    s.write(&clone, 4096, pattern(3, 4096));
    assert_eq!(s.read("volumes", &clone, 0, 4096), pattern(1, 4096));
    assert_eq!(s.read("volumes", &vol, 0, 4096), pattern(2, 4096));
    assert_eq!(s.read("volumes", &vol, 4096, 4096), pattern(0, 4096));
    check_all_images(&s.images_dir());
}

#[test]
fn extend_keeps_data_and_grows_the_volume() {
    let s = Server::start();
    let vol = s.create_volume(1);
    s.write(&vol, 0, pattern(7, 4096));
    let snap = s.create_snapshot(&vol);
    let (status, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-extend": {"new_size": 3}})),
    );
    assert_eq!(status, 202, "{body}");
    let v = s.wait_status("volumes", &vol, "available");
    assert_eq!(v["size"], 3);
    s.write(&vol, 2 * (1 << 30), pattern(8, 4096));
    assert_eq!(
        s.read("volumes", &vol, 2 * (1 << 30), 4096),
        pattern(8, 4096)
    );
    assert_eq!(s.read("volumes", &vol, 0, 4096), pattern(7, 4096));
    assert_eq!(s.read("snapshots", &snap, 0, 4096), pattern(7, 4096));
    check_all_images(&s.images_dir());
}
