//! An attacker-controlled image file opened by the qcow2 driver, shared by
//! the cargo-fuzz target `qcow2_image` (`fuzz/`) and a stable test: the
//! bytes become the top image of a two-image chain over a known backing
//! image; the driver may refuse it or fail reads, but must not panic, must
//! not change the backing image, and must not create or touch any other
//! file in the image directory.

use crate::qcow2::Qcow2Driver;
use crate::{Chain, ImageId, StorageDriver};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

struct Fixture {
    driver: Qcow2Driver,
    dir: PathBuf,
    backing: ImageId,
    backing_bytes: Vec<u8>,
    victim: ImageId,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ember-qcow2-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let driver = Qcow2Driver::new(&dir).expect("image directory");
        let backing = ImageId::new();
        driver
            .create_image(backing, 1 << 24, None)
            .expect("backing image");
        {
            let io = driver
                .open(
                    &Chain {
                        images: vec![backing],
                    },
                    true,
                )
                .expect("open backing");
            io.write_at(&[0x5a; 65536], 0).expect("write backing");
            io.flush().expect("flush backing");
        }
        let backing_bytes = std::fs::read(driver.path(backing)).expect("read backing");
        Mutex::new(Fixture {
            driver,
            dir,
            backing,
            backing_bytes,
            victim: ImageId::new(),
        })
    })
}

fn listing(dir: &PathBuf) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Opens `image` as the top of a chain and reads and writes through it at
/// offsets taken from its own bytes. Panics only when an invariant breaks.
pub fn open_hostile_image(image: &[u8]) {
    let f = fixture().lock().unwrap_or_else(|e| e.into_inner());
    let victim_path = f.driver.path(f.victim);
    std::fs::write(&victim_path, image).expect("write the hostile image");
    let before = listing(&f.dir);
    let chain = Chain {
        images: vec![f.victim, f.backing],
    };
    let opened = f.driver.open(&chain, true);
    let refused = opened.is_err();
    if let Ok(io) = opened {
        let size = io.size().max(1);
        let mut buf = vec![0u8; 65536];
        for (i, chunk) in image.chunks(8).take(16).enumerate() {
            let mut n = [0u8; 8];
            n[..chunk.len()].copy_from_slice(chunk);
            let at = (u64::from_le_bytes(n) % size) & !511;
            let len = ((size - at) as usize).min(buf.len());
            if i % 2 == 0 {
                let _ = io.read_at(&mut buf[..len], at);
            } else {
                let _ = io.write_at(&buf[..len.min(4096)], at);
            }
        }
        let _ = io.flush();
    }
    assert_eq!(
        std::fs::read(f.driver.path(f.backing)).expect("read backing"),
        f.backing_bytes,
        "a hostile top image changed its backing image"
    );
    // The image's own dirty marker may stay (a failed flush leaves it for
    // start-up repair); nothing else may appear or go.
    let marker = format!(
        "{}.dirty",
        victim_path.file_name().unwrap().to_string_lossy()
    );
    assert!(
        !(refused && f.dir.join(&marker).exists()),
        "a refused image was left marked dirty"
    );
    let after: Vec<String> = listing(&f.dir)
        .into_iter()
        .filter(|n| *n != marker)
        .collect();
    assert_eq!(after, before, "a hostile image created or removed files");
    f.driver
        .delete_image(f.victim)
        .expect("delete the hostile image");
}
