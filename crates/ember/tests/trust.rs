//! Who gets in where, and what the most is that a request can cost: sizes
//! past Cinder's cap in every form, what a reader sees of a connection,
//! exports that must not outlive a transfer, the data directory's
//! permissions and what its files hold, and settings that must not produce
//! nonsense (token lifetimes, links).

mod common;

use common::nbd_client::NbdClient;
use common::{OTHER_PROJECT, PROJECT, Server};
use serde_json::{Value, json};

fn member() -> String {
    format!("member:{PROJECT}")
}

fn quota(s: &Server) -> Value {
    let (code, body) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    assert_eq!(code, 200, "{body}");
    body["quota_set"].clone()
}

/// Sizes past 2^31 - 1 GiB, as integers, huge integers, strings and
/// floats, on create and extend: a 400 every time, nothing created, quota
/// usage unchanged and still readable, and checked arithmetic everywhere
/// (the limit cannot be bypassed by wrapping).
#[test]
fn sizes_past_the_cap_are_refused_and_quota_stays_exact() {
    let s = Server::start();
    let (code, body) = s.admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"gigabytes": 1000}})),
    );
    assert_eq!(code, 200, "{body}");
    let volume = s.create_volume(1);
    let before = quota(&s);
    let huge: Vec<Value> = vec![
        json!(2147483648u64),
        json!(17179869184u64),
        json!(17179869185u64),
        json!(1099511627776u64),
        json!(9223372036854775807u64),
        json!(9223372036854775813u64),
        json!(18446744073709551615u64),
        json!("2147483648"),
        json!("9223372036854775813"),
        json!("99999999999999999999999999"),
        json!(1e30),
        json!(-1),
        json!(0),
    ];
    for size in &huge {
        for mv in ["3.0", "3.71"] {
            let (code, body) = s.call(
                "POST",
                &s.v3("/volumes"),
                &member(),
                Some(mv),
                Some(json!({"volume": {"size": size}})),
            );
            assert_eq!(code, 400, "create size {size} at {mv}: {body}");
            assert!(body["badRequest"]["message"].is_string(), "{body}");
            let (code, body) = s.call(
                "POST",
                &s.v3(&format!("/volumes/{volume}/action")),
                &member(),
                Some(mv),
                Some(json!({"os-extend": {"new_size": size}})),
            );
            assert_eq!(code, 400, "extend to {size} at {mv}: {body}");
        }
    }
    // The largest size itself is a quota matter, not an overflow.
    let (code, body) = s.call(
        "POST",
        &s.v3("/volumes"),
        &member(),
        Some("3.71"),
        Some(json!({"volume": {"size": 2147483647u64}})),
    );
    assert_eq!(code, 413, "{body}");
    // Nothing changed, and the project still reads.
    assert_eq!(quota(&s), before);
    let (code, body) = s.admin("GET", "/volumes/detail", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["volumes"].as_array().unwrap().len(), 1);
    // Five creates below the limit each: only what fits passes.
    let mut created = 0;
    for _ in 0..5 {
        let (code, _) = s.call(
            "POST",
            &s.v3("/volumes"),
            &member(),
            Some("3.71"),
            Some(json!({"volume": {"size": 400}})),
        );
        if code == 202 {
            created += 1;
        } else {
            assert_eq!(code, 413);
        }
    }
    assert_eq!(created, 2, "1 + 2 × 400 GiB fit a 1000 GiB limit, no more");
    assert_eq!(quota(&s)["gigabytes"]["in_use"], 801);
    // Quota limits past the cap are refused too.
    let (code, body) = s.admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"gigabytes": 9223372036854775807u64}})),
    );
    assert_eq!(code, 400, "{body}");
}

/// A reader of the project sees an attachment's `connection_info` without
/// the export name (the secret); a member sees it and can use it. The
/// export's access mode is the attachment's.
#[test]
fn readers_never_see_an_export_they_could_write_through() {
    let s = Server::start();
    let volume = s.create_volume(1);
    let (attachment, uri) = common::attach(&s, &volume, "rw");
    let reader = format!("carol:{PROJECT}:reader");
    for path in [
        format!("/attachments/{attachment}"),
        format!("/attachments/detail?volume_id={volume}"),
    ] {
        let (code, body) = s.call("GET", &s.v3(&path), &reader, Some("3.54"), None);
        assert_eq!(code, 200, "{body}");
        let text = body.to_string();
        let (_, name) = common::nbd_client::parse_uri(&uri);
        assert!(
            !text.contains(&name),
            "a reader saw the export name: {text}"
        );
        let secret = name.rsplit('-').next().unwrap();
        assert!(!text.contains(secret), "a reader saw the export secret");
    }
    let (code, body) = s.call(
        "GET",
        &s.v3(&format!("/attachments/{attachment}")),
        &member(),
        Some("3.54"),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(body["attachment"]["connection_info"]["uri"], uri.as_str());
    let mut nbd = NbdClient::connect(&uri).expect("the member's export");
    nbd.write(0, &[1u8; 4096], true).unwrap();
    nbd.disconnect();
    // A read-only attachment's export refuses writes.
    let multi = {
        let (code, body) = s.admin(
            "POST",
            "/volumes",
            Some(json!({"volume": {"size": 1, "multiattach": true}})),
        );
        assert_eq!(code, 202, "{body}");
        let id = body["volume"]["id"].as_str().unwrap().to_string();
        s.wait_status("volumes", &id, "available");
        id
    };
    let (_, ro_uri) = common::attach(&s, &multi, "ro");
    let mut ro = NbdClient::connect(&ro_uri).expect("ro export");
    assert!(
        ro.read_only(),
        "a read-only attachment's export advertised writes"
    );
    assert_eq!(ro.write(0, &[9u8; 4096], true), Err(1), "EPERM");
    ro.disconnect();
}

/// A transfer withdraws every export of what it moves: the old owner's
/// snapshot export stops working (live and new connections), the new
/// owner exports anew.
#[test]
fn a_transfer_withdraws_the_exports_it_moves() {
    let s = Server::start();
    let volume = s.create_volume(1);
    s.write(&volume, 0, vec![0x42; 4096]);
    let snapshot = s.create_snapshot(&volume);
    let (code, body) = s.call(
        "POST",
        &s.v3(&format!("/snapshots/{snapshot}/action")),
        &member(),
        Some("3.71"),
        Some(json!({"ember-export": {}})),
    );
    assert_eq!(code, 200, "{body}");
    let old_uri = body["connection_info"]["data"]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let mut live = NbdClient::connect(&old_uri).expect("export before the transfer");
    assert_eq!(live.read(0, 4096).unwrap(), vec![0x42; 4096]);

    let (code, body) = s.admin(
        "POST",
        "/os-volume-transfer",
        Some(json!({"transfer": {"volume_id": volume}})),
    );
    assert_eq!(code, 202, "{body}");
    let id = body["transfer"]["id"].as_str().unwrap().to_string();
    let key = body["transfer"]["auth_key"].as_str().unwrap().to_string();
    let bob = format!("bob:{OTHER_PROJECT}");
    let (code, body) = s.call(
        "POST",
        &s.url(&format!(
            "/v3/{OTHER_PROJECT}/os-volume-transfer/{id}/accept"
        )),
        &bob,
        None,
        Some(json!({"accept": {"auth_key": key}})),
    );
    assert_eq!(code, 202, "{body}");
    // The old name opens nothing; the live client is cut off.
    assert!(
        NbdClient::connect(&old_uri).is_err(),
        "the old owner's export survived the transfer"
    );
    assert!(
        live.read(0, 4096).is_err(),
        "a live client kept reading after the transfer"
    );
    // The new owner exports it anew and reads the same bytes.
    let (code, body) = s.call(
        "POST",
        &s.url(&format!("/v3/{OTHER_PROJECT}/snapshots/{snapshot}/action")),
        &bob,
        Some("3.71"),
        Some(json!({"ember-export": {}})),
    );
    assert_eq!(code, 200, "{body}");
    let new_uri = body["connection_info"]["data"]["uri"].as_str().unwrap();
    assert_ne!(new_uri, old_uri);
    let mut nbd = NbdClient::connect(new_uri).expect("the new owner's export");
    assert_eq!(nbd.read(0, 4096).unwrap(), vec![0x42; 4096]);
    nbd.disconnect();
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The data directory is its owner's alone (0700, files 0600), also when
/// an earlier version left it open; the metadata store holds no export
/// secret (they are derived with `secrets.key`).
#[test]
fn the_data_directory_is_private_and_holds_no_export_secret() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = Server::start();
    let volume = s.create_volume(1);
    let (_, uri) = common::attach(&s, &volume, "rw");
    let dir = s.data_dir();
    let check = |dir: &std::path::Path| {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        assert_eq!(mode(&dir.join("images")), 0o700);
        for entry in std::fs::read_dir(dir)
            .unwrap()
            .chain(std::fs::read_dir(dir.join("images")).unwrap())
        {
            let path = entry.unwrap().path();
            if path.is_file() {
                assert_eq!(
                    mode(&path) & 0o077,
                    0,
                    "{} is readable by others",
                    path.display()
                );
            }
        }
    };
    check(&dir);
    let (_, name) = common::nbd_client::parse_uri(&uri);
    let secret = name.rsplit('-').next().unwrap().to_string();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds an export secret",
                path.display()
            );
        }
    }
    // An earlier version's permissions are fixed at the next start.
    s.stop();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("images"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("ember.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    for entry in std::fs::read_dir(dir.join("images")).unwrap() {
        std::fs::set_permissions(
            entry.unwrap().path(),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    s.start_again();
    check(&dir);
    // The export name still works after the restart (same key).
    let mut nbd = NbdClient::connect(&uri).expect("the export after a restart");
    nbd.read(0, 4096).unwrap();
    nbd.disconnect();
}

/// Settings that would produce nonsense are refused at start, and links
/// use the configured public endpoint, never a junk Host header.
#[test]
fn token_lifetimes_are_bounded_and_links_use_the_public_endpoint() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["serve", "--token-ttl-secs", "99999999999999", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a 3-million-year token lifetime was accepted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token-ttl-secs"), "{err}");

    let s = Server::start_with(&[
        "--auth",
        "noauth",
        "--public-endpoint",
        "https://volume.example.com:8776",
    ]);
    let resp = s
        .http
        .get(s.url("/"))
        .header("Host", "evil.example.net")
        .send()
        .unwrap();
    let text = resp.text().unwrap();
    assert!(
        text.contains("https://volume.example.com:8776/v3/"),
        "{text}"
    );
    assert!(!text.contains("evil.example.net"), "{text}");
    // Without one, a Host header that is not a host name is not echoed.
    let plain = Server::start();
    let resp = plain
        .http
        .get(plain.url("/"))
        .header("Host", "x\"><script>")
        .send()
        .unwrap();
    assert!(!resp.text().unwrap().contains("<script>"));
}
