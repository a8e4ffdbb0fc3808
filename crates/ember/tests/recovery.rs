//! Start-up after a crash serves at once: recovery (resumed workflows,
//! repairs, garbage collection) runs while the API answers, and resources
//! under recovery show their transitional status until it is done.

mod common;

use common::nbd_client::NbdClient;
use common::{PROJECT, Server};
use serde_json::json;
use std::time::{Duration, Instant};

fn snapshot_status(s: &Server, id: &str) -> (u16, String) {
    let (code, body) = s.admin("GET", &format!("/snapshots/{id}"), None);
    (
        code,
        body["snapshot"]["status"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

#[test]
fn the_api_serves_while_recovery_runs() {
    let mut s = Server::start();
    let (code, body) = s.admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"gigabytes": -1}})),
    );
    assert_eq!(code, 200, "{body}");
    let volume = s.create_volume(2);
    let (attachment, uri) = common::attach(&s, &volume, "rw");
    // A layer with 512 MiB of data of its own: merging it away takes a
    // while (it is copied into the volume's new top).
    let mut nbd = NbdClient::connect(&uri).expect("connect");
    for i in 0..16u64 {
        nbd.write(i << 25, &vec![(i + 1) as u8; 32 << 20], i == 15)
            .unwrap();
    }
    nbd.disconnect();
    let (code, body) = s.call(
        "DELETE",
        &s.v3(&format!("/attachments/{attachment}")),
        &format!("member:{PROJECT}"),
        Some("3.27"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let snapshot = s.create_snapshot(&volume);
    s.write(&volume, 0, vec![0xee; 4096]);

    // The crash: while the snapshot's layer is being merged away.
    let (code, body) = s.admin("DELETE", &format!("/snapshots/{snapshot}"), None);
    assert_eq!(code, 202, "{body}");
    let (code, status) = snapshot_status(&s, &snapshot);
    assert_eq!(
        (code, status.as_str()),
        (200, "deleting"),
        "the merge finished before the crash could interrupt it"
    );
    s.kill();

    // Recovery that takes 3 s (a test hook delays it): the API answers
    // meanwhile, and the snapshot under recovery still says `deleting`.
    s.env = vec![("EMBER_FAULT_RECOVERY_DELAY_MS".into(), "3000".into())];
    s.start_again();
    let (code, body) = s.admin("GET", "/volumes/detail", None);
    assert_eq!(code, 200, "{body}");
    let (code, status) = snapshot_status(&s, &snapshot);
    assert_eq!(
        (code, status.as_str()),
        (200, "deleting"),
        "the API answered only after recovery"
    );
    // Requests on the resource under recovery get a clear answer.
    let (code, body) = s.admin("DELETE", &format!("/snapshots/{snapshot}"), None);
    assert!(code < 500, "{code} {body}");
    let (code, body) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert_eq!(code, 200, "{body}");

    // Then recovery finishes the delete, and every byte is where it was.
    let deadline = Instant::now() + Duration::from_secs(120);
    while snapshot_status(&s, &snapshot).0 != 404 {
        assert!(
            Instant::now() < deadline,
            "recovery never finished the delete"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.read("volumes", &volume, 0, 4096), vec![0xee; 4096]);
    for i in [1u64, 7, 15] {
        assert_eq!(
            s.read("volumes", &volume, i << 25, 4096),
            vec![(i + 1) as u8; 4096]
        );
    }
    s.stop();
    common::check_all_images(&s.images_dir());
}
