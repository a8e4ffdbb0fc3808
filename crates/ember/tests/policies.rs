//! Snapshot and backup policies: they run on schedule over the volumes they
//! cover, keep what their retention says, protect what they made from
//! clients, and a run missed while Ember was down runs once, late, and
//! says so (never skipped, never doubled).

mod common;

use common::Server;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn create_policy(s: &Server, body: Value) -> Value {
    let (status, reply) = s.admin("POST", "/ember/policies", Some(json!({ "policy": body })));
    assert_eq!(status, 201, "{reply}");
    reply["policy"].clone()
}

fn policy(s: &Server, id: &str) -> Value {
    let (status, reply) = s.admin("GET", &format!("/ember/policies/{id}"), None);
    assert_eq!(status, 200, "{reply}");
    reply["policy"].clone()
}

/// Polls until `check` holds (at most 60 s).
fn until(s: &Server, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "{what}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Names of the volume's snapshots that a policy made.
fn policy_snapshots(s: &Server, volume: &str) -> Vec<(String, String)> {
    let (_, body) = s.admin(
        "GET",
        &format!("/snapshots/detail?volume_id={volume}"),
        None,
    );
    body["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| {
            x["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("autobk_snapshot_"))
        })
        .filter(|x| x["status"] == "available")
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_string(),
                x["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn volume_with(s: &Server, metadata: Value) -> String {
    let (status, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "metadata": metadata}})),
    );
    assert_eq!(status, 202, "{body}");
    let id = body["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &id, "available");
    id
}

#[test]
fn snapshot_policies_run_keep_and_protect() {
    let s = Server::start();
    let covered = volume_with(&s, json!({"tier": "gold"}));
    let other = volume_with(&s, json!({"tier": "bronze"}));
    let p = create_policy(
        &s,
        json!({"name": "every second", "kind": "snapshot",
               "schedule": {"interval_seconds": 1},
               "retention": {"count": 2},
               "volumes": {"metadata": {"tier": "gold"}}}),
    );
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["enabled"], true);
    assert!(p["next_run"].is_string());

    // Several runs, and the retention at work: the covered volume keeps
    // two of the policy's snapshots (three while a run is between its
    // create and its delete), the other volume none.
    until(&s, "three runs", || {
        policy(&s, &id)["last_run"]["deleted"].as_u64().unwrap_or(0) >= 1
    });
    let kept = policy_snapshots(&s, &covered);
    assert!((2..=3).contains(&kept.len()), "{kept:?}");
    assert!(policy_snapshots(&s, &other).is_empty());

    // What a policy made is protected from clients.
    let (sid, _) = &kept[0];
    let (status, body) = s.admin("DELETE", &format!("/snapshots/{sid}"), None);
    assert_eq!(status, 403, "{body}");
    let (status, body) = s.admin(
        "PUT",
        &format!("/snapshots/{sid}"),
        Some(json!({"snapshot": {"name": "mine now"}})),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = s.admin(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": other, "name": "autobk_snapshot_fake"}})),
    );
    assert_eq!(status, 400);

    // Listed; updated (disabled: no more runs); deleted.
    let (_, listed) = s.admin("GET", "/ember/policies", None);
    assert_eq!(listed["policies"].as_array().unwrap().len(), 1);
    let (status, body) = s.admin(
        "PUT",
        &format!("/ember/policies/{id}"),
        Some(json!({"policy": {"name": "off", "kind": "snapshot",
            "schedule": {"interval_seconds": 1}, "retention": {"count": 2},
            "volumes": {"metadata": {"tier": "gold"}}, "enabled": false}})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = s.admin("DELETE", &format!("/ember/policies/{id}"), None);
    assert_eq!(status, 204);
    let (status, _) = s.admin("GET", &format!("/ember/policies/{id}"), None);
    assert_eq!(status, 404);
}

#[test]
fn policy_requests_are_checked() {
    let s = Server::start();
    let bad = [
        json!({"name": "x", "kind": "snapshot", "schedule": {"interval_seconds": 1, "cron": "* * * * *"}, "volumes": {"metadata": {"a": "b"}}}),
        json!({"name": "x", "kind": "snapshot", "schedule": {"cron": "not cron"}, "volumes": {"metadata": {"a": "b"}}}),
        json!({"name": "x", "kind": "snapshot", "schedule": {"cron": "0 3 * * *", "time_zone": "Mars/Olympus"}, "volumes": {"metadata": {"a": "b"}}}),
        json!({"name": "x", "kind": "clone", "schedule": {"interval_seconds": 60}, "volumes": {"metadata": {"a": "b"}}}),
        json!({"name": "x", "kind": "snapshot", "schedule": {"interval_seconds": 60}, "volumes": {}}),
        json!({"name": "x", "kind": "snapshot", "schedule": {"interval_seconds": 0}, "volumes": {"metadata": {"a": "b"}}}),
        json!({"name": "x", "kind": "snapshot", "schedule": {"interval_seconds": 60}, "retention": {"count": 0}, "volumes": {"metadata": {"a": "b"}}}),
    ];
    for body in bad {
        let (status, reply) = s.admin("POST", "/ember/policies", Some(json!({ "policy": body })));
        assert_eq!(status, 400, "{body} -> {reply}");
    }
    // A cron schedule in a time zone: due at the next 03:00 in Paris.
    let p = create_policy(
        &s,
        json!({"name": "nightly", "kind": "backup",
               "schedule": {"cron": "0 3 * * *", "time_zone": "Europe/Paris"},
               "retention": {"count": 7, "max_age_seconds": 1209600},
               "volumes": {"volume_type": "__DEFAULT__"}}),
    );
    let next = p["next_run"].as_str().unwrap();
    assert!(
        next.contains("T01:00:00") || next.contains("T02:00:00"),
        "03:00 Paris is 01:00 or 02:00 UTC: {next}"
    );
    // Other projects see nothing.
    let (status, _) = s.call(
        "GET",
        &s.url(&format!(
            "/v3/{}/ember/policies/{}",
            common::OTHER_PROJECT,
            p["id"].as_str().unwrap()
        )),
        &format!("member:{}", common::OTHER_PROJECT),
        None,
        None,
    );
    assert_eq!(status, 404);
}

#[test]
fn a_run_missed_while_down_runs_once_late() {
    let mut s = Server::start();
    let volume = volume_with(&s, json!({"policy": "on"}));
    let p = create_policy(
        &s,
        json!({"name": "every 4 s", "kind": "snapshot",
               "schedule": {"interval_seconds": 4},
               "volumes": {"ids": [volume]}}),
    );
    let id = p["id"].as_str().unwrap().to_string();
    // Killed just after its first run finished (the next is 4 s away).
    until(&s, "a first run", || {
        policy(&s, &id)["last_run"]["made"] == 1
    });
    let at_kill = policy_snapshots(&s, &volume).len();
    s.kill();
    // Down for more than two intervals: two runs missed.
    std::thread::sleep(Duration::from_secs(10));
    s.start_again();
    until(&s, "the late run", || {
        policy(&s, &id)["last_run"]["late_seconds"]
            .as_u64()
            .unwrap_or(0)
            >= 4
    });
    let run = policy(&s, &id)["last_run"].clone();
    assert_eq!(run["made"], 1, "{run}");
    assert_eq!(
        policy_snapshots(&s, &volume).len(),
        at_kill + 1,
        "one late run, not one per missed slot"
    );
}

#[test]
fn backup_policies_keep_their_count_through_incrementals() {
    let s = Server::start();
    let volume = volume_with(&s, json!({}));
    s.write(&volume, 0, vec![7u8; 4096]);
    let p = create_policy(
        &s,
        json!({"name": "backups", "kind": "backup",
               "schedule": {"interval_seconds": 1},
               "retention": {"count": 2},
               "volumes": {"ids": [volume]}}),
    );
    let id = p["id"].as_str().unwrap().to_string();
    until(&s, "a retention delete", || {
        policy(&s, &id)["last_run"]["deleted"].as_u64().unwrap_or(0) >= 1
    });
    let (_, listed) = s.admin("GET", "/backups/detail", None);
    let ours: Vec<&Value> = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("autobk_backup_"))
        })
        .collect();
    assert!((2..=3).contains(&ours.len()), "{listed}");
    // Protected from clients; the newest restores.
    let newest = ours
        .iter()
        .filter(|b| b["status"] == "available")
        .max_by_key(|b| b["created_at"].as_str().unwrap().to_string())
        .unwrap();
    let bid = newest["id"].as_str().unwrap();
    let (status, _) = s.admin("DELETE", &format!("/backups/{bid}"), None);
    assert_eq!(status, 403);
    let (status, body) = s.admin(
        "POST",
        &format!("/backups/{bid}/restore"),
        Some(json!({"restore": {"name": "from-policy"}})),
    );
    assert_eq!(status, 202, "{body}");
    let restored = body["restore"]["volume_id"].as_str().unwrap().to_string();
    s.wait_status("volumes", &restored, "available");
    assert_eq!(s.read("volumes", &restored, 0, 4096), vec![7u8; 4096]);
}
