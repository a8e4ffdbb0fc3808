//! Several Ember nodes, one truth: three `ember serve` processes on one
//! PostgreSQL database and one Ceph pool answer any request; a node killed
//! with SIGKILL under load loses nothing (its workflows are taken over when
//! its lease expires), quotas stay exact, bytes written through one node
//! read back through another, and a token issued (or revoked) on one node
//! holds on every node.
//!
//! Needs `EMBER_TEST_DATABASE` (scripts/postgres.sh) and, for the volume
//! tests, `EMBER_TEST_CEPH_CONF` (scripts/ceph.sh); skipped without them
//! unless `EMBER_TEST_POSTGRES_REQUIRED=1` / `EMBER_TEST_CEPH_REQUIRED=1`.

mod common;

use common::nbd_client::NbdClient;
use common::{PROJECT, Server, TestBackend};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn database() -> Option<String> {
    match std::env::var("EMBER_TEST_DATABASE") {
        Ok(base) => Some(ember_store::postgres::fresh_database(&base).unwrap()),
        Err(_) => {
            assert!(
                std::env::var("EMBER_TEST_POSTGRES_REQUIRED").as_deref() != Ok("1"),
                "EMBER_TEST_POSTGRES_REQUIRED=1 but EMBER_TEST_DATABASE is not set"
            );
            eprintln!("SKIPPED: no PostgreSQL (EMBER_TEST_DATABASE)");
            None
        }
    }
}

fn rbd() -> Option<TestBackend> {
    common::test_backends()
        .into_iter()
        .find(|b| matches!(b, TestBackend::Rbd { .. }))
}

/// `n` nodes with the same database and backends; config kept in `dir`.
/// Node n1's workflow steps take `n1_step_ms` each (a test hook), so that
/// it has work in flight when it is killed.
fn nodes(
    n: usize,
    dir: &std::path::Path,
    config: &str,
    auth: &[&str],
    n1_step_ms: &str,
) -> Vec<Server> {
    let path = dir.join("ember.toml");
    std::fs::write(&path, config).unwrap();
    (0..n)
        .map(|i| {
            let id = format!("n{i}");
            let mut args = auth.to_vec();
            args.extend(["--config", path.to_str().unwrap(), "--node-id", &id]);
            let env = if i == 1 {
                vec![("EMBER_FAULT_STEP_DELAY_MS", n1_step_ms)]
            } else {
                vec![]
            };
            Server::start_with_env(&args, &env)
        })
        .collect()
}

fn admin() -> String {
    format!("admin:{PROJECT}")
}

/// GET as admin from the first node that answers.
fn get(servers: &[&Server], path: &str) -> (u16, Value) {
    for s in servers {
        let url = s.v3(path);
        let sent = s
            .http
            .get(&url)
            .header("X-Auth-Token", admin())
            .header("OpenStack-API-Version", "volume 3.71")
            .send();
        if let Ok(resp) = sent {
            let status = resp.status().as_u16();
            let text = resp.text().unwrap_or_default();
            return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
        }
    }
    panic!("no node answered")
}

/// A request that may hit a dead node: None when the connection failed.
fn try_call(s: &Server, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let mut rb = s
        .http
        .request(method.parse().unwrap(), s.v3(path))
        .header("X-Auth-Token", admin())
        .header("OpenStack-API-Version", "volume 3.71");
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = rb.send().ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

const TRANSITIONAL: &[&str] = &[
    "creating",
    "deleting",
    "extending",
    "attaching",
    "detaching",
    "reserved",
    "downloading",
    "uploading",
    "retyping",
    "maintenance",
    "reverting",
];

#[test]
fn three_nodes_on_one_database_lose_nothing_when_one_is_killed_under_load() {
    let Some(url) = database() else { return };
    let Some(TestBackend::Rbd {
        conf,
        pool,
        namespace,
    }) = rbd()
    else {
        eprintln!("SKIPPED: no Ceph (EMBER_TEST_CEPH_CONF)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "database = {url:?}\n[[backend]]\nname = \"rbd\"\ndriver = \"rbd\"\nceph_conf = {conf:?}\npool = {pool:?}\nnamespace = {namespace:?}\n"
    );
    let servers = nodes(3, dir.path(), &config, &["--auth", "noauth"], "400");

    // Every node lists every node's scheduler, up.
    let (st, body) = servers[2].admin("GET", "/os-services?binary=cinder-scheduler", None);
    assert_eq!(st, 200, "{body}");
    let hosts: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "up")
        .map(|s| s["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["n0", "n1", "n2"], "{body}");
    // os-hosts names the same hosts.
    let (st, body) = servers[1].admin("GET", "/os-hosts", None);
    assert_eq!(st, 200, "{body}");
    let hosts: Vec<&str> = body["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["service"] == "cinder-scheduler" && h["service-status"] == "available")
        .map(|h| h["host_name"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["n0", "n1", "n2"], "{body}");
    let (st, body) = servers[0].admin("GET", "/os-hosts/n2", None);
    assert_eq!(st, 200, "{body}");

    // Quota: 24 volumes, far fewer than the clients will ask for.
    const QUOTA: usize = 24;
    let (st, body) = servers[0].admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"volumes": QUOTA, "gigabytes": 1000}})),
    );
    assert_eq!(st, 200, "{body}");

    // Six clients, round-robin over the nodes; after ten acknowledged
    // creates node n1 is killed (SIGKILL) while work is in flight.
    let servers_shared = Arc::new(servers);
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let deleted = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let servers = servers_shared.clone();
            let (created, deleted, refused, acks, killed) = (
                created.clone(),
                deleted.clone(),
                refused.clone(),
                acks.clone(),
                killed.clone(),
            );
            std::thread::spawn(move || {
                let mut next = c;
                for i in 0..8 {
                    // Create on the next node that answers.
                    let mut answer = None;
                    for _ in 0..servers.len() {
                        let s = &servers[next % servers.len()];
                        next += 1;
                        answer = try_call(
                            s,
                            "POST",
                            "/volumes",
                            Some(json!({"volume": {"size": 1, "name": format!("c{c}-{i}")}})),
                        );
                        if answer.is_some() {
                            break;
                        }
                    }
                    let (st, body) = answer.expect("some node answers");
                    match st {
                        202 => {
                            let id = body["volume"]["id"].as_str().unwrap().to_string();
                            created.lock().unwrap().push(id.clone());
                            if acks.fetch_add(1, Ordering::SeqCst) + 1 == 10
                                && !killed.swap(true, Ordering::SeqCst)
                            {
                                servers[1].kill_now();
                            }
                            // Every third volume is deleted again, through
                            // another node, once it is available.
                            if i % 3 == 0 {
                                let deadline = Instant::now() + Duration::from_secs(60);
                                let mut last = None;
                                loop {
                                    let s = &servers[next % servers.len()];
                                    next += 1;
                                    let got = try_call(s, "GET", &format!("/volumes/{id}"), None);
                                    if got.is_some() {
                                        last = got.clone();
                                    }
                                    if let Some((200, v)) = got
                                        && v["volume"]["status"] == "available"
                                        && let Some((202, _)) =
                                            try_call(s, "DELETE", &format!("/volumes/{id}"), None)
                                    {
                                        deleted.lock().unwrap().push(id.clone());
                                        break;
                                    }
                                    assert!(
                                        Instant::now() < deadline,
                                        "volume {id} never became deletable: {last:?}\nn0 log:\n{}",
                                        servers[0].log()
                                    );
                                    std::thread::sleep(Duration::from_millis(20));
                                }
                            }
                        }
                        413 => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        other => panic!("create answered {other}: {body}"),
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let mut servers = Arc::try_unwrap(servers_shared).ok().unwrap();
    assert!(killed.load(Ordering::SeqCst));
    let created = created.lock().unwrap().clone();
    let deleted = deleted.lock().unwrap().clone();
    assert!(refused.load(Ordering::SeqCst) > 0, "the quota never bit");

    // Nothing stuck: once n1's lease expires, n0 and n2 finish its work.
    let live = [&servers[0], &servers[2]];
    let deadline = Instant::now() + Duration::from_secs(90);
    let volumes = loop {
        let (st, body) = get(&live, "/volumes/detail?all_tenants=1");
        assert_eq!(st, 200, "{body}");
        let volumes = body["volumes"].as_array().unwrap().clone();
        let busy: Vec<&Value> = volumes
            .iter()
            .filter(|v| TRANSITIONAL.contains(&v["status"].as_str().unwrap()))
            .collect();
        if busy.is_empty() {
            break volumes;
        }
        assert!(
            Instant::now() < deadline,
            "still transitional after n1 died: {busy:?}\nn0 log:\n{}",
            servers[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Every acknowledged create exists (unless its delete was
    // acknowledged), every acknowledged delete is gone, all available.
    let ids: Vec<&str> = volumes.iter().map(|v| v["id"].as_str().unwrap()).collect();
    for id in &created {
        let should_exist = !deleted.contains(id);
        assert_eq!(ids.contains(&id.as_str()), should_exist, "volume {id}");
    }
    for v in &volumes {
        assert_eq!(v["status"], "available", "{v}");
    }
    assert_eq!(volumes.len(), created.len() - deleted.len());
    let taken_over = servers[0].log().matches("taking over a workflow").count()
        + servers[2].log().matches("taking over a workflow").count();
    assert!(taken_over > 0, "n1 died with no work in flight");

    // Quotas equal a recount, and never went past the limit.
    assert!(created.len() - deleted.len() <= QUOTA);
    let (st, body) = get(&live, &format!("/os-quota-sets/{PROJECT}?usage=true"));
    assert_eq!(st, 200, "{body}");
    let q = &body["quota_set"];
    assert_eq!(q["volumes"]["in_use"], volumes.len(), "{body}");
    assert_eq!(q["gigabytes"]["in_use"], volumes.len(), "{body}");
    assert_eq!(q["volumes"]["reserved"], 0, "{body}");

    // n1 shows down; restarted, it is up again and serves.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get(&live, "/os-services?binary=cinder-scheduler");
        let n1 = body["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["host"] == "n1")
            .cloned()
            .unwrap();
        if n1["state"] == "down" {
            let (_, hosts) = get(&live, "/os-hosts");
            let n1 = hosts["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["host_name"] == "n1")
                .cloned()
                .unwrap();
            assert_eq!(n1["service-status"], "unavailable", "{hosts}");
            break;
        }
        assert!(Instant::now() < deadline, "n1 never shown down: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Gone for good: an admin forgets it (never a live one).
    let (st, body) = servers[0].admin("GET", "/ember/nodes", None);
    assert_eq!(st, 200, "{body}");
    let states: Vec<(&str, &str)> = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("n0", "up"), ("n1", "down"), ("n2", "up")]);
    let (st, body) = servers[2].admin("DELETE", "/ember/nodes/n0", None);
    assert_eq!(st, 409, "{body}");
    let (st, body) = servers[2].admin("DELETE", "/ember/nodes/n1", None);
    assert_eq!(st, 204, "{body}");
    let (_, body) = get(&live, "/os-services?binary=cinder-scheduler");
    let hosts: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["n0", "n2"], "{body}");
    let (st, _) = servers[2].admin("DELETE", "/ember/nodes/n1", None);
    assert_eq!(st, 404);
    // Started again, it registers again.
    servers[1].start_again();
    let (st, _) = servers[1].admin("GET", "/volumes", None);
    assert_eq!(st, 200);

    // Bytes through one node, a snapshot through another, reads through a
    // third: the snapshot holds what was acknowledged before it only.
    let (st, body) = servers[1].admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"volumes": 100}})),
    );
    assert_eq!(st, 200, "{body}");
    let volume = servers[0].create_volume(1);
    let before: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    servers[0].write(&volume, 4096, before.clone());
    let snapshot = servers[1].create_snapshot(&volume);
    servers[0].write(&volume, 4096, vec![0xAB; 65536]);
    assert_eq!(servers[2].read("snapshots", &snapshot, 4096, 65536), before);
    assert_eq!(
        servers[2].read("volumes", &volume, 4096, 65536),
        vec![0xAB; 65536]
    );
    let (st, body) = servers[2].admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "snapshot_id": snapshot}})),
    );
    assert_eq!(st, 202, "{body}");
    let clone = body["volume"]["id"].as_str().unwrap().to_string();
    servers[1].wait_status("volumes", &clone, "available");
    assert_eq!(servers[1].read("volumes", &clone, 4096, 65536), before);

    // An NBD client attached through n0 writes; n0 dies; the attachment,
    // updated through n2, names n2's export, where every acknowledged byte
    // is.
    let (attachment, uri) = common::attach(&servers[0], &clone, "rw");
    assert!(uri.contains(&servers[0].nbd_port.to_string()), "{uri}");
    let mut nbd = NbdClient::connect(&uri).unwrap();
    nbd.write(1 << 20, &[0x5A; 8192], false).unwrap();
    nbd.write(2 << 20, &[0xA5; 4096], true).unwrap();
    nbd.flush().unwrap();
    servers[0].kill();
    assert!(nbd.read(0, 4096).is_err(), "the dead node still answers");
    let (st, body) = servers[2].call(
        "PUT",
        &servers[2].v3(&format!("/attachments/{attachment}")),
        &format!("member:{PROJECT}"),
        Some("3.54"),
        Some(json!({"attachment": {"connector": common::connector("host-a")}})),
    );
    assert_eq!(st, 200, "{body}");
    let info = &body["attachment"]["connection_info"];
    assert_eq!(info["port"], servers[2].nbd_port, "{body}");
    let mut nbd = NbdClient::connect(info["uri"].as_str().unwrap()).unwrap();
    assert_eq!(nbd.read(1 << 20, 8192).unwrap(), vec![0x5A; 8192]);
    assert_eq!(nbd.read(2 << 20, 4096).unwrap(), vec![0xA5; 4096]);
    assert_eq!(nbd.read(4096, 65536).unwrap(), before);

    // The attachment deleted through n1: n2's open client is cut off
    // within a heartbeat, and cannot connect again.
    let (st, body) = servers[1].call(
        "DELETE",
        &servers[1].v3(&format!("/attachments/{attachment}")),
        &format!("member:{PROJECT}"),
        Some("3.27"),
        None,
    );
    assert_eq!(st, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while nbd.read(0, 4096).is_ok() {
        assert!(
            Instant::now() < deadline,
            "a client of n2 still reads after n1 withdrew its export"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(NbdClient::connect(info["uri"].as_str().unwrap()).is_err());
}

#[test]
fn a_token_from_one_node_works_on_every_node_and_a_revocation_reaches_them_all() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = format!("database = {url:?}\n");
    let servers = nodes(
        2,
        dir.path(),
        &config,
        &["--auth", "embedded", "--admin-password", "two-nodes"],
        "0",
    );
    let login = || {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "two-nodes"}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
        let resp = servers[0]
            .http
            .post(servers[0].url("/identity/v3/auth/tokens"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let token = resp.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = resp.json().unwrap();
        (
            token,
            body["token"]["project"]["id"].as_str().unwrap().to_string(),
        )
    };
    let (token, project) = login();
    let (other, _) = login();
    let list = |s: &Server, token: &str| {
        s.call(
            "GET",
            &s.url(&format!("/v3/{project}/volumes")),
            token,
            None,
            None,
        )
        .0
    };
    assert_eq!(list(&servers[1], &token), 200, "{}", servers[1].log());
    let revoke = servers[0]
        .http
        .delete(servers[0].url("/identity/v3/auth/tokens"))
        .header("X-Auth-Token", &other)
        .header("X-Subject-Token", &token)
        .send()
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 204);
    assert_eq!(list(&servers[0], &token), 401);
    // The other node learns it within its refresh interval (1 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    while list(&servers[1], &token) != 401 {
        assert!(
            Instant::now() < deadline,
            "node n1 still accepts a revoked token"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(list(&servers[1], &other), 200);
}

/// A second process started under a node id a live node uses refuses to
/// start (it would otherwise take the live node's workflows and fence its
/// Ceph client); the live node keeps serving.
#[test]
fn a_second_node_under_a_live_nodes_id_refuses_to_start() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = format!("database = {url:?}\n");
    let servers = nodes(1, dir.path(), &config, &["--auth", "noauth"], "0");
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["serve", "--auth", "noauth", "--listen"])
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(data.path())
        .arg("--config")
        .arg(dir.path().join("ember.toml"))
        .args(["--node-id", "n0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the duplicate started: {stderr}");
    assert!(stderr.contains("in use by a live node"), "{stderr}");
    let (st, _) = servers[0].admin("GET", "/volumes", None);
    assert_eq!(st, 200);
}
