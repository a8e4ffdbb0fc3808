//! Opens one image file alone (no backing) and reads and writes a little,
//! to reproduce driver behaviour on a given (possibly corrupt) file:
//! `cargo run -p ember-storage --example open_image FILE`.
use ember_storage::qcow2::Qcow2Driver;
use ember_storage::{Chain, ImageId, StorageDriver};

fn main() {
    let file = std::path::PathBuf::from(std::env::args().nth(1).expect("a qcow2 file"));
    let dir = tempfile::tempdir().unwrap();
    let d = Qcow2Driver::new(dir.path()).unwrap();
    let img = ImageId::new();
    std::fs::copy(&file, d.path(img)).unwrap();
    eprintln!("opening");
    let io = match d.open(&Chain { images: vec![img] }, true) {
        Ok(io) => io,
        Err(e) => return eprintln!("open failed: {e}"),
    };
    let mut buf = vec![0u8; 65536];
    for i in 0..8u64 {
        eprintln!("read {i}: {:?}", io.read_at(&mut buf, i * 64 * 65536).err());
        eprintln!(
            "write {i}: {:?}",
            io.write_at(&buf[..4096], i * 64 * 65536 + 4096).err()
        );
    }
    eprintln!("flush: {:?}", io.flush().err());
}
