//! Every metric Ember exports, defined once, in one registry, rendered in
//! the Prometheus text format by `render` (served at `/metrics`).
//!
//! Labels never carry secrets or unbounded values: routes are route
//! templates (the Cinder endpoint's name, never a raw path), NBD figures
//! are aggregated over exports, and per-project quota gauges are what an
//! admin already sees through `os-quota-sets`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;
use std::time::Duration;

/// Latency buckets from 100 µs to 30 s.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub workflows_started: IntCounterVec,
    pub workflows_finished: IntCounterVec,
    pub workflows_resumed: IntCounterVec,
    pub workflow_retries: IntCounterVec,
    pub workflow_duration: HistogramVec,
    pub workflows_running: IntGauge,
    pub store_commit: Histogram,
    pub store_group_size: Histogram,
    pub store_wal_fsync: Histogram,
    pub nbd_connections: IntGauge,
    pub nbd_requests: IntCounterVec,
    pub nbd_bytes: IntCounterVec,
    pub pool_bytes: IntGaugeVec,
    pub pool_provisioned_gigabytes: IntGaugeVec,
    pub quota_in_use: IntGaugeVec,
    pub quota_limit: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(SECONDS.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let running = IntGauge::new(
            "ember_workflows_running",
            "Workflows running in this process.",
        )
        .expect("valid metric");
        r.register(Box::new(running.clone()))
            .expect("registered once");
        let nbd_connections =
            IntGauge::new("ember_nbd_connections", "Open NBD connections.").expect("valid metric");
        r.register(Box::new(nbd_connections.clone()))
            .expect("registered once");
        Metrics {
            http_requests: counter(
                &r,
                "ember_http_requests_total",
                "HTTP requests answered, by API, route and status.",
                &["api", "route", "status"],
            ),
            http_duration: histogram_vec(
                &r,
                "ember_http_request_duration_seconds",
                "Time to answer an HTTP request, by API and route.",
                &["api", "route"],
            ),
            workflows_started: counter(
                &r,
                "ember_workflows_started_total",
                "Workflows started, by kind.",
                &["kind"],
            ),
            workflows_finished: counter(
                &r,
                "ember_workflows_finished_total",
                "Workflows finished, by kind and outcome (completed, failed).",
                &["kind", "outcome"],
            ),
            workflows_resumed: counter(
                &r,
                "ember_workflows_resumed_total",
                "Workflows resumed at start-up after an unclean stop, by kind.",
                &["kind"],
            ),
            workflow_retries: counter(
                &r,
                "ember_workflow_retries_total",
                "Times a workflow stalled (an error in an undo or the store) and was retried.",
                &["kind"],
            ),
            workflow_duration: histogram_vec(
                &r,
                "ember_workflow_duration_seconds",
                "Time from a workflow's start in this process to its end, by kind.",
                &["kind"],
            ),
            workflows_running: running,
            store_commit: histogram(
                &r,
                "ember_store_commit_seconds",
                "Time to make a metadata change durable: COMMIT and the WAL fsync (for a grouped change, from joining the group).",
                SECONDS,
            ),
            store_group_size: histogram(
                &r,
                "ember_store_group_size",
                "Changes committed together by one group commit.",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
            ),
            store_wal_fsync: histogram(
                &r,
                "ember_store_wal_fsync_seconds",
                "Time of one fsync of the metadata log.",
                SECONDS,
            ),
            nbd_connections,
            nbd_requests: counter(
                &r,
                "ember_nbd_requests_total",
                "NBD requests served, by operation and result (ok, error).",
                &["op", "result"],
            ),
            nbd_bytes: counter(
                &r,
                "ember_nbd_bytes_total",
                "Payload bytes moved over NBD, by direction (read, written).",
                &["direction"],
            ),
            pool_bytes: gauge_vec(
                &r,
                "ember_pool_bytes",
                "Capacity of a pool's storage, by pool and kind (total, free).",
                &["pool", "kind"],
            ),
            pool_provisioned_gigabytes: gauge_vec(
                &r,
                "ember_pool_provisioned_gigabytes",
                "Sum of the sizes of the volumes and snapshots a pool holds.",
                &["pool"],
            ),
            quota_in_use: gauge_vec(
                &r,
                "ember_quota_in_use",
                "Quota usage, by project and resource.",
                &["project", "resource"],
            ),
            quota_limit: gauge_vec(
                &r,
                "ember_quota_limit",
                "Quota limit (-1: unlimited), by project and resource.",
                &["project", "resource"],
            ),
            registry: r,
        }
    }

    /// The registry's metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Records one answered HTTP request.
pub fn http_request(api: &str, route: &str, status: u16, took: Duration) {
    let m = metrics();
    m.http_requests
        .with_label_values(&[api, route, &status.to_string()])
        .inc();
    m.http_duration
        .with_label_values(&[api, route])
        .observe(took.as_secs_f64());
}
