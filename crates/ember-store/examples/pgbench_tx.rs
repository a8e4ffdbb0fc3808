use ember_store::MetadataStore;
use std::time::Instant;
fn main() {
    let base = std::env::args().nth(1).unwrap();
    let threads: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let url = ember_store::postgres::fresh_database(&base).unwrap();
    let store = std::sync::Arc::new(ember_store::postgres::PostgresStore::connect(&url).unwrap());
    let n = 300;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..n {
                    let p = ember_model::ProjectId("p".into());
                    let mut tx = store.write().unwrap();
                    let _ = tx
                        .quota_usage(&p, ember_model::QuotaResource::Volumes)
                        .unwrap();
                    tx.add_quota_usage(&p, ember_model::QuotaResource::Volumes, 1)
                        .unwrap();
                    let _ = tx.volume(ember_model::VolumeId::new()).unwrap();
                    tx.commit().unwrap();
                    if i % 3 == 0 {
                        let mut r = store.read().unwrap();
                        let _ = r.volume(ember_model::VolumeId::new()).unwrap();
                    }
                }
            });
        }
    });
    let el = t.elapsed();
    println!(
        "{threads} threads: {:.0} write tx/s, {:.2} ms per tx",
        (threads * n) as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1000.0 / (threads * n) as f64
    );
}
