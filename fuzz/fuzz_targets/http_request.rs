//! Arbitrary HTTP requests against the Cinder, Nova and EVS dialects in
//! process, over a real service (SQLite metadata, qcow2 images in a
//! temporary directory): whatever the method, path, headers and body, the
//! answer is never a 5xx and the process never panics.
//!
//! Input: byte 0 picks the method, byte 1 the listener (API or EVS); then
//! the path up to `\n` (a path not starting with `/` is put under
//! `/v3/<project>/`), header lines `name: value` up to an empty line, and
//! the body. Requests carry an admin noauth token unless they name one.
#![no_main]

use axum::body::Body;
use axum::http::Request;
use ember_api_common::NoAuth;
use ember_service::{Service, ServiceConfig};
use ember_storage::qcow2::Qcow2Driver;
use ember_store::sqlite::SqliteStore;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const PROJECT: &str = "f5d834d636c642c7bfe8af86139c6f26";
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

struct Harness {
    runtime: tokio::runtime::Runtime,
    api: axum::Router,
    evs: axum::Router,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ember-http-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (api, evs) = runtime.block_on(async {
            let store = SqliteStore::open(&dir.join("ember.db")).unwrap();
            let driver = Qcow2Driver::new(dir.join("images")).unwrap();
            let service = Service::new(Arc::new(store), Arc::new(driver), ServiceConfig::default());
            let auth: Arc<dyn ember_api_common::Authenticator> = Arc::new(NoAuth);
            let api = ember_api_nova::router(Arc::new(ember_api_nova::NovaState {
                service: service.clone(),
                auth: auth.clone(),
            }))
            .merge(ember_api_cinder::router(Arc::new(ember_api_cinder::CinderState {
                service: service.clone(),
                auth: auth.clone(),
            })));
            let evs = ember_api_evs::router(Arc::new(ember_api_evs::EvsState {
                service,
                auth,
                access_keys: None,
            }));
            (api, evs)
        });
        Harness { runtime, api, evs }
    })
}

fn request(data: &[u8]) -> Option<(bool, Request<Body>)> {
    let (&m, rest) = data.split_first()?;
    let (&which, rest) = rest.split_first()?;
    let method = METHODS[m as usize % METHODS.len()];
    let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let raw_path = std::str::from_utf8(&rest[..nl]).ok()?;
    let path = if raw_path.starts_with('/') {
        raw_path.to_string()
    } else {
        format!("/v3/{PROJECT}/{raw_path}")
    };
    let mut rest = rest.get(nl + 1..).unwrap_or_default();
    let mut builder = Request::builder().method(method).uri(path);
    let mut token = false;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        let (k, v) = text.split_once(':')?;
        token |= k.trim().eq_ignore_ascii_case("x-auth-token");
        builder = builder.header(k.trim(), v.trim());
    }
    if !token {
        builder = builder.header("X-Auth-Token", format!("admin:{PROJECT}"));
    }
    let req = builder.body(Body::from(rest.to_vec())).ok()?;
    Some((which % 2 == 1, req))
}

fuzz_target!(|data: &[u8]| {
    let Some((evs, req)) = request(data) else {
        return;
    };
    let h = harness();
    let router = if evs { h.evs.clone() } else { h.api.clone() };
    let status = h
        .runtime
        .block_on(async move { router.oneshot(req).await.unwrap().status() });
    assert!(
        status.as_u16() < 500 || status.as_u16() == 503,
        "{status} for a client request"
    );
});
