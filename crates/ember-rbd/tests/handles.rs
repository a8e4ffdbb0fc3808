//! Image handles against a real Ceph (`EMBER_TEST_CEPH_CONF`, as
//! scripts/ceph.sh writes it; skipped without one unless
//! `EMBER_TEST_CEPH_REQUIRED=1`).

use ember_rbd::{Cluster, ConnectOptions, Pool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pool() -> Option<Pool> {
    let Some(conf) = std::env::var_os("EMBER_TEST_CEPH_CONF").map(PathBuf::from) else {
        assert!(
            std::env::var("EMBER_TEST_CEPH_REQUIRED").as_deref() != Ok("1"),
            "EMBER_TEST_CEPH_REQUIRED=1 but EMBER_TEST_CEPH_CONF is not set"
        );
        eprintln!("SKIPPED: no Ceph (EMBER_TEST_CEPH_CONF)");
        return None;
    };
    let cluster = Cluster::connect(&ConnectOptions {
        conf: Some(&conf),
        ..Default::default()
    })
    .unwrap();
    let pool = std::env::var("EMBER_TEST_CEPH_POOL").unwrap_or_else(|_| "rbd".into());
    let namespace = format!("handles-{}", std::process::id());
    Some(cluster.pool(&pool, Some(&namespace)).unwrap())
}

/// librbd wakes the caller of `rbd_open` before its own completion handler
/// is done with the image's state; a caller that closes at once could have
/// the image freed under that handler (a use-after-free: a hang in
/// `rbd_close`, or an abort) when librados runs its callbacks on two
/// threads. Opening and closing at once, from several threads, many
/// times, must neither hang nor crash.
#[test]
fn opening_and_closing_at_once_from_many_threads_never_hangs_or_crashes() {
    let Some(pool) = pool() else { return };
    pool.create("race", 1 << 30).unwrap();
    pool.open("race", None, false)
        .unwrap()
        .snap_create("s")
        .unwrap();
    let pool = Arc::new(pool);
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    let image = match (t + i) % 3 {
                        0 => pool.open("race", None, true),
                        1 => pool.open("race", Some("s"), true),
                        _ => pool.open("race", None, false),
                    };
                    drop(image.unwrap());
                }
            })
        })
        .collect();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for w in workers {
            w.join().unwrap();
        }
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(300))
        .expect("opens and closes hung");
    eprintln!("600 opens and closes in {:?}", started.elapsed());
    let image = pool.open("race", None, false).unwrap();
    image.snap_remove("s").unwrap();
    drop(image);
    pool.remove("race").unwrap();
}

/// What this process has open is never removed under it (librbd itself
/// counts only watchers, which read-only handles do not register).
#[test]
fn open_images_and_snapshots_are_not_removed_under_their_readers() {
    let Some(pool) = pool() else { return };
    pool.create("held", 1 << 30).unwrap();
    let writer = pool.open("held", None, false).unwrap();
    writer.write_at(&[7u8; 4096], 0).unwrap();
    writer.snap_create("s").unwrap();

    let snap_reader = pool.open("held", Some("s"), true).unwrap();
    let busy = writer.snap_remove("s").unwrap_err();
    assert!(busy.is_busy(), "{busy}");
    let mut buf = [0u8; 4096];
    snap_reader.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [7u8; 4096]);
    drop(snap_reader);
    writer.snap_remove("s").unwrap();
    drop(writer);

    let reader = pool.open("held", None, true).unwrap();
    let busy = pool.remove("held").unwrap_err();
    assert!(busy.is_busy(), "{busy}");
    drop(reader);
    pool.remove("held").unwrap();
    let gone = pool.open("held", None, true).err().unwrap();
    assert!(gone.is_not_found(), "{gone}");
}
