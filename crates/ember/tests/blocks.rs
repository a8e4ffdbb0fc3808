//! Ember's changed-blocks API on every backend: the blocks of a snapshot
//! that hold data, the blocks that changed between two snapshots (also
//! after a snapshot between them was deleted and its layer merged), pages,
//! and one block's bytes with their SHA-256.

mod common;

use common::{Server, test_backends};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 512 * 1024;

fn indices(body: &Value, key: &str) -> Vec<u64> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|b| b["block_index"].as_u64().unwrap())
        .collect()
}

/// Every page of a listing, following `next_token`.
fn all_pages(s: &Server, path: &str, key: &str, max: u64) -> (Vec<u64>, usize) {
    let (mut out, mut pages, mut token) = (vec![], 0, None::<String>);
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}max_results={max}");
        if let Some(t) = &token {
            url.push_str(&format!("&next_token={t}"));
        }
        let (status, body) = s.admin("GET", &url, None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["block_size"], BLOCK);
        out.extend(indices(&body, key));
        pages += 1;
        match body["next_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return (out, pages),
        }
    }
}

#[test]
fn blocks_and_changed_blocks_on_every_backend() {
    for backend in test_backends() {
        eprintln!("backend {backend:?}");
        let s = Server::start_on(&backend);
        let volume = s.create_volume(1);
        s.write(&volume, 0, vec![0xA1; 4096]);
        s.write(&volume, 100 * MIB, vec![0xB2; 4096]);
        let s1 = s.create_snapshot(&volume);
        s.write(&volume, 300 * MIB, vec![0xC3; 4096]);
        let middle = s.create_snapshot(&volume);
        s.write(&volume, 500 * MIB, vec![0xD4; 4096]);
        // 101 blocks, for two pages of 100.
        for i in 0..51 {
            s.write(&volume, 600 * MIB + i * MIB, vec![0xE5; MIB as usize]);
        }
        let s2 = s.create_snapshot(&volume);
        // The snapshot between them goes; what changed after s1 stays known.
        let (status, _) = s.admin("DELETE", &format!("/snapshots/{middle}"), None);
        assert_eq!(status, 202);
        s.wait_gone("snapshots", &middle);

        let (s1_blocks, _) = all_pages(
            &s,
            &format!("/ember/snapshots/{s1}/blocks"),
            "blocks",
            10000,
        );
        assert_eq!(s1_blocks, vec![0, 200]);
        let wide: Vec<u64> = (1200..1302).collect();
        let (s2_blocks, _) = all_pages(
            &s,
            &format!("/ember/snapshots/{s2}/blocks"),
            "blocks",
            10000,
        );
        assert_eq!(s2_blocks, [vec![0, 200, 600, 1000], wide.clone()].concat());
        let (changed, pages) = all_pages(
            &s,
            &format!("/ember/snapshots/{s2}/changed-blocks?first_snapshot_id={s1}"),
            "changed_blocks",
            100,
        );
        assert_eq!(changed, [vec![600, 1000], wide].concat());
        assert_eq!(pages, 2);

        // One block, and its checksum.
        let resp = reqwest::blocking::Client::new()
            .get(s.v3(&format!("/ember/snapshots/{s2}/blocks/600")))
            .header("X-Auth-Token", format!("admin:{}", common::PROJECT))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let sum = resp.headers()["x-ember-checksum"]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = resp.bytes().unwrap();
        assert_eq!(bytes.len() as u64, BLOCK);
        assert_eq!(&bytes[..4096], &[0xC3; 4096][..]);
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sum, hex);

        // Refused: a later snapshot as the base, bad paging, a block past
        // the end, another project's snapshot.
        let (status, body) = s.admin(
            "GET",
            &format!("/ember/snapshots/{s1}/changed-blocks?first_snapshot_id={s2}"),
            None,
        );
        assert_eq!(status, 400, "{body}\n{}", s.log());
        let (status, _) = s.admin(
            "GET",
            &format!("/ember/snapshots/{s1}/blocks?max_results=5"),
            None,
        );
        assert_eq!(status, 400);
        let (status, _) = s.admin("GET", &format!("/ember/snapshots/{s1}/blocks/2048"), None);
        assert_eq!(status, 400);
        let (status, _) = s.call(
            "GET",
            &s.url(&format!(
                "/v3/{}/ember/snapshots/{s1}/blocks",
                common::OTHER_PROJECT
            )),
            &format!("member:{}", common::OTHER_PROJECT),
            None,
            None,
        );
        assert_eq!(status, 404);
    }
}
