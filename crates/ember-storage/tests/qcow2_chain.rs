//! The qcow2 driver against real files, checked with qemu's own tools.

use ember_storage::qcow2::Qcow2Driver;
use ember_storage::{Chain, ImageId, StorageDriver};
use std::process::Command;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn chain(images: &[ImageId]) -> Chain {
    Chain {
        images: images.to_vec(),
    }
}

fn write(driver: &Qcow2Driver, c: &Chain, byte: u8, offset: u64, len: usize) {
    let io = driver.open(c, true).unwrap();
    io.write_at(&vec![byte; len], offset).unwrap();
    io.flush().unwrap();
}

fn read(driver: &Qcow2Driver, c: &Chain, offset: u64, len: usize) -> Vec<u8> {
    let io = driver.open(c, false).unwrap();
    let mut buf = vec![0u8; len];
    io.read_at(&mut buf, offset).unwrap();
    buf
}

fn assert_filled(buf: &[u8], byte: u8) {
    assert!(
        buf.iter().all(|b| *b == byte),
        "expected all 0x{byte:02x}, got 0x{:02x}…",
        buf[0]
    );
}

fn qemu_img_check(driver: &Qcow2Driver, image: ImageId) {
    let out = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(driver.path(image))
        .output()
        .expect("qemu-img is installed");
    assert!(
        out.status.success(),
        "qemu-img check failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The chain qemu sees, top first, as file names.
fn qemu_chain(driver: &Qcow2Driver, image: ImageId) -> Vec<String> {
    let out = Command::new("qemu-img")
        .args(["info", "--backing-chain", "--output=json", "-f", "qcow2"])
        .arg(driver.path(image))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let infos: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    infos
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let f = i["filename"].as_str().unwrap();
            f.rsplit('/').next().unwrap().to_string()
        })
        .collect()
}

/// qemu-io reads the pattern through the whole chain, independently of imago.
fn qemu_io_expect(driver: &Qcow2Driver, image: ImageId, byte: u8, offset: u64, len: u64) {
    let out = Command::new("qemu-io")
        .args(["-r", "-f", "qcow2", "-c"])
        .arg(format!("read -P 0x{byte:02x} {offset} {len}"))
        .arg(driver.path(image))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("Pattern verification failed"),
        "{stdout}"
    );
}

#[test]
fn snapshot_overlay_clone_and_merge_keep_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Qcow2Driver::new(dir.path()).unwrap();
    let base = ImageId::new();
    driver.create_image(base, GIB, None).unwrap();
    write(&driver, &chain(&[base]), 0xaa, 0, 64 * 1024);
    write(&driver, &chain(&[base]), 0xa1, 512 * MIB, 4096);

    // Snapshot: base freezes, the volume continues in an overlay.
    let top = ImageId::new();
    driver.create_image(top, GIB, Some(base)).unwrap();
    let volume = chain(&[top, base]);
    write(&driver, &volume, 0xbb, 0, 4096);
    write(&driver, &volume, 0xb1, MIB, 4096);

    // Clone from the snapshot: an overlay on the frozen image.
    let clone = ImageId::new();
    driver.create_image(clone, 2 * GIB, Some(base)).unwrap();
    let cloned = chain(&[clone, base]);
    assert_filled(&read(&driver, &cloned, 0, 64 * 1024), 0xaa);
    assert_filled(&read(&driver, &volume, 0, 4096), 0xbb);
    assert_filled(&read(&driver, &volume, 4096, 60 * 1024), 0xaa);
    assert_eq!(driver.open(&cloned, false).unwrap().size(), 2 * GIB);

    for image in [base, top, clone] {
        qemu_img_check(&driver, image);
    }
    let top_name = Qcow2Driver::file_name(top);
    let base_name = Qcow2Driver::file_name(base);
    assert_eq!(
        qemu_chain(&driver, top),
        vec![top_name.clone(), base_name.clone()]
    );
    qemu_io_expect(&driver, top, 0xbb, 0, 4096);
    qemu_io_expect(&driver, top, 0xaa, 4096, 60 * 1024);
    qemu_io_expect(&driver, top, 0xa1, 512 * MIB, 4096);

    // Remove the base from under the volume: the volume keeps its bytes and
    // stands alone; the clone still has the base.
    driver.merge_into_child(&volume).unwrap();
    // Running the step again after a "crash" changes nothing.
    driver.merge_into_child(&volume).unwrap();
    let volume = chain(&[top]);
    assert_filled(&read(&driver, &volume, 0, 4096), 0xbb);
    assert_filled(&read(&driver, &volume, 4096, 60 * 1024), 0xaa);
    assert_filled(&read(&driver, &volume, 512 * MIB, 4096), 0xa1);
    assert_filled(&read(&driver, &volume, 256 * MIB, 4096), 0);
    qemu_img_check(&driver, top);
    assert_eq!(qemu_chain(&driver, top), vec![top_name]);
    qemu_io_expect(&driver, top, 0xa1, 512 * MIB, 4096);
    qemu_io_expect(&driver, top, 0x00, 256 * MIB, 4096);
}

#[test]
fn merging_a_middle_layer_repoints_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Qcow2Driver::new(dir.path()).unwrap();
    let (base, mid, top) = (ImageId::new(), ImageId::new(), ImageId::new());
    driver.create_image(base, GIB, None).unwrap();
    write(&driver, &chain(&[base]), 0x11, 0, 128 * 1024);
    driver.create_image(mid, GIB, Some(base)).unwrap();
    write(&driver, &chain(&[mid, base]), 0x22, 64 * 1024, 4096);
    let io = driver.open(&chain(&[mid, base]), true).unwrap();
    io.write_zeroes(0, 4096).unwrap();
    io.flush().unwrap();
    drop(io);
    driver.create_image(top, GIB, Some(mid)).unwrap();
    write(
        &driver,
        &chain(&[top, mid, base]),
        0x33,
        64 * 1024 + 4096,
        4096,
    );

    driver.merge_into_child(&chain(&[top, mid, base])).unwrap();
    driver.delete_image(mid).unwrap();
    let c = chain(&[top, base]);
    assert_filled(&read(&driver, &c, 0, 4096), 0x00);
    assert_filled(&read(&driver, &c, 4096, 60 * 1024), 0x11);
    assert_filled(&read(&driver, &c, 64 * 1024, 4096), 0x22);
    assert_filled(&read(&driver, &c, 64 * 1024 + 4096, 4096), 0x33);
    assert_filled(&read(&driver, &c, 64 * 1024 + 8192, 4096), 0x11);
    qemu_img_check(&driver, top);
    assert_eq!(
        qemu_chain(&driver, top),
        vec![Qcow2Driver::file_name(top), Qcow2Driver::file_name(base)]
    );
    qemu_io_expect(&driver, top, 0x22, 64 * 1024, 4096);
    qemu_io_expect(&driver, top, 0x00, 0, 4096);
}

#[test]
fn grow_extends_the_top_and_new_space_reads_zero() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Qcow2Driver::new(dir.path()).unwrap();
    let (base, top) = (ImageId::new(), ImageId::new());
    driver.create_image(base, GIB, None).unwrap();
    driver.create_image(top, GIB, Some(base)).unwrap();
    let c = chain(&[top, base]);
    driver.grow(&c, 3 * GIB).unwrap();
    write(&driver, &c, 0x44, 2 * GIB, 4096);
    assert_filled(&read(&driver, &c, 2 * GIB, 4096), 0x44);
    assert_filled(&read(&driver, &c, GIB + 4096, 4096), 0);
    qemu_img_check(&driver, top);
}

#[test]
fn out_of_range_io_is_refused_and_sweep_lists_images() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Qcow2Driver::new(dir.path()).unwrap();
    let image = ImageId::new();
    driver.create_image(image, MIB, None).unwrap();
    let io = driver.open(&chain(&[image]), true).unwrap();
    assert!(io.write_at(&[1u8; 4096], MIB - 1024).is_err());
    assert!(io.read_at(&mut [0u8; 16], u64::MAX - 4).is_err());
    drop(io);
    std::fs::write(dir.path().join("not-an-image.txt"), b"x").unwrap();
    assert_eq!(driver.list_images().unwrap(), vec![image]);
    driver.delete_image(image).unwrap();
    driver.delete_image(image).unwrap();
    assert!(driver.list_images().unwrap().is_empty());
}
