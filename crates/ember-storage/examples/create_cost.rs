//! Times `create_image` (an overlay over a base), for profiling the
//! snapshot path: `cargo run --release -p ember-storage --example create_cost DIR`.
use ember_storage::qcow2::Qcow2Driver;
use ember_storage::{ImageId, StorageDriver};
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("a directory");
    let d = Qcow2Driver::new(&dir).unwrap();
    let base = ImageId::new();
    d.create_image(base, 1 << 30, None).unwrap();
    let mut times = vec![];
    let mut below = base;
    for _ in 0..200 {
        let img = ImageId::new();
        let t = Instant::now();
        d.create_image(img, 1 << 30, Some(below)).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        below = img;
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "create_image p50 {:.3} ms p90 {:.3} ms",
        times[100], times[180]
    );
}
