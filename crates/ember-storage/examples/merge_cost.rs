//! Times `merge_into_child` of a layer holding 64 MiB into an empty child:
//! `cargo run --release -p ember-storage --example merge_cost DIR`.
use ember_storage::qcow2::Qcow2Driver;
use ember_storage::{Chain, ImageId, StorageDriver};
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("a directory");
    let d = Qcow2Driver::new(&dir).unwrap();
    let (base, top) = (ImageId::new(), ImageId::new());
    d.create_image(base, 1 << 30, None).unwrap();
    let io = d.open(&Chain { images: vec![base] }, true).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    let t = Instant::now();
    for i in 0..64u64 {
        io.write_at(&chunk, i << 20).unwrap();
    }
    io.flush().unwrap();
    drop(io);
    println!("write 64 MiB + flush: {:?}", t.elapsed());
    d.create_image(top, 1 << 30, Some(base)).unwrap();
    let t = Instant::now();
    d.merge_into_child(&Chain {
        images: vec![top, base],
    })
    .unwrap();
    println!("merge 64 MiB into the child: {:?}", t.elapsed());
}
