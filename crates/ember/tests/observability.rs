//! What an operator sees: `/metrics` after a real workload (values, not
//! only names), who may scrape it, `/healthcheck` when the store and
//! storage answer and when the storage does not, the Grafana dashboard's
//! queries against the metrics that exist, and JSON log lines.

mod common;

use common::nbd_client::NbdClient;
use common::{PROJECT, Server, free_port};
use serde_json::{Value, json};
use std::collections::HashMap;

/// `name{labels}` → value, from the Prometheus text format.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the series named `name` whose labels include all of
/// `labels` (summed over the others).
fn value(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(series, _)| {
            let base = series.split('{').next().unwrap();
            base == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

fn scrape(port: u16) -> (String, HashMap<String, f64>) {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let parsed = parse(&text);
    (text, parsed)
}

#[test]
fn metrics_after_a_workload_hold_the_right_values() {
    let metrics_port = free_port();
    let s = Server::start_with(&[
        "--auth",
        "noauth",
        "--metrics-listen",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    let volumes: Vec<String> = (0..3).map(|_| s.create_volume(1)).collect();
    let snapshot = s.create_snapshot(&volumes[0]);
    let (_, uri) = common::attach(&s, &volumes[1], "rw");
    let mut nbd = NbdClient::connect(&uri).unwrap();
    nbd.write(0, &vec![7u8; 1 << 20], true).unwrap();
    nbd.read(0, 1 << 20).unwrap();
    // A junk path: counted, but never as a label of its own.
    let (code, _) = s.admin("GET", "/no-such-thing-4e7a", None);
    assert_eq!(code, 404);

    let (text, m) = scrape(metrics_port);
    assert_eq!(
        value(
            &m,
            "ember_http_requests_total",
            &[
                ("api", "cinder"),
                ("route", "POST /v3/{}/volumes"),
                ("status", "202")
            ]
        ),
        3.0,
        "{text}"
    );
    assert!(
        !text.contains("no-such-thing"),
        "a junk path became a label"
    );
    assert!(value(&m, "ember_http_requests_total", &[("route", "unmatched")]) >= 1.0);
    assert!(
        value(
            &m,
            "ember_workflows_finished_total",
            &[("kind", "volume-create"), ("outcome", "completed")]
        ) >= 3.0
    );
    assert_eq!(value(&m, "ember_workflows_running", &[]), 0.0);
    assert!(value(&m, "ember_store_commit_seconds_count", &[]) > 0.0);
    assert!(value(&m, "ember_store_wal_fsync_seconds_count", &[]) > 0.0);
    assert_eq!(
        value(&m, "ember_nbd_bytes_total", &[("direction", "written")]),
        (1 << 20) as f64
    );
    assert_eq!(
        value(&m, "ember_nbd_bytes_total", &[("direction", "read")]),
        (1 << 20) as f64
    );
    assert_eq!(value(&m, "ember_nbd_connections", &[]), 1.0);
    nbd.disconnect();
    // Quota gauges equal what the API says.
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    for resource in ["volumes", "snapshots", "gigabytes"] {
        assert_eq!(
            value(
                &m,
                "ember_quota_in_use",
                &[("project", PROJECT), ("resource", resource)]
            ),
            q["quota_set"][resource]["in_use"].as_f64().unwrap(),
            "{resource}"
        );
        assert_eq!(
            value(
                &m,
                "ember_quota_limit",
                &[("project", PROJECT), ("resource", resource)]
            ),
            q["quota_set"][resource]["limit"].as_f64().unwrap(),
            "{resource}"
        );
    }
    assert_eq!(value(&m, "ember_pool_provisioned_gigabytes", &[]), 4.0);
    assert!(value(&m, "ember_pool_bytes", &[("kind", "free")]) > 0.0);
    let _ = snapshot;

    // On the API listener only an admin may scrape.
    let get = |token: Option<&str>| {
        let mut rb = s.http.get(s.url("/metrics"));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        rb.send().unwrap().status().as_u16()
    };
    assert_eq!(get(None), 401);
    assert_eq!(get(Some(&format!("alice:{PROJECT}"))), 403);
    assert_eq!(get(Some(&format!("admin:{PROJECT}"))), 200);

    // Every metric the Grafana dashboard queries exists.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana/ember.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (text, _) = scrape(metrics_port);
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("ember_"))
            {
                queried += 1;
                assert!(
                    text.lines().any(|l| l.starts_with(name)),
                    "the dashboard queries {name}, which /metrics does not have"
                );
            }
        }
    }
    assert!(queried > 10);
}

#[test]
fn healthcheck_reports_the_store_and_the_storage() {
    let metrics_port = free_port();
    let s = Server::start_with(&[
        "--auth",
        "noauth",
        "--metrics-listen",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    let (code, body) = s.call("GET", &s.url("/healthcheck"), "", None, None);
    assert_eq!(
        (code, body.clone()),
        (200, json!({"detailed": false, "reasons": ["OK"]}))
    );
    let (code, body) = s.call(
        "GET",
        &s.url("/healthcheck"),
        &format!("admin:{PROJECT}"),
        None,
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(body["detailed"], true);
    let classes: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["metadata store", "storage"]);

    // The storage stops answering (its directory is gone): 503, saying
    // which; then it is back.
    let images = s.images_dir();
    let aside = images.with_extension("aside");
    std::fs::rename(&images, &aside).unwrap();
    let (code, body) = s.call("GET", &s.url("/healthcheck"), "", None, None);
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["reasons"], json!(["storage is not answering"]));
    let resp =
        reqwest::blocking::get(format!("http://127.0.0.1:{metrics_port}/healthcheck")).unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    std::fs::rename(&aside, &images).unwrap();
    let (code, _) = s.call("GET", &s.url("/healthcheck"), "", None, None);
    assert_eq!(code, 200);
}

#[test]
fn json_logs_carry_the_request_fields() {
    let mut s = Server::start_with(&["--auth", "noauth", "--log-format", "json"]);
    let volume = s.create_volume(1);
    s.stop();
    let log = s.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "cinder request" && v["method"] == "POST")
        .unwrap_or_else(|| panic!("no JSON request line in:\n{log}"));
    assert_eq!(line["status"], 202);
    assert_eq!(line["project"], PROJECT);
    assert_eq!(line["user"], "admin");
    assert!(line["request_id"].as_str().unwrap().starts_with("req-"));
    assert!(line["micros"].is_number());
    assert!(line["level"].is_string() && line["timestamp"].is_string());
    let _ = volume;
    // Every line is JSON.
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
}
