//! `/metrics` (Prometheus text format) and, on the metrics listener,
//! `/healthcheck`. On the API listener `/metrics` needs an admin's token
//! (quota gauges name every project); `--metrics-listen` serves both
//! without credentials, for monitoring that reaches only that address.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ember_api_common::Authenticator;
use ember_service::Service;
use std::sync::Arc;

/// Renders every metric, after refreshing the gauges read from the store
/// and storage. With `auth`, only an admin may scrape.
pub async fn scrape(
    service: Service,
    auth: Option<Arc<dyn Authenticator>>,
    headers: HeaderMap,
) -> Response {
    if let Some(auth) = auth {
        match auth.authenticate(&headers, None).await {
            Ok(caller) if caller.is_admin() => {}
            Ok(_) => return (StatusCode::FORBIDDEN, "admin only\n").into_response(),
            Err(_) => return (StatusCode::UNAUTHORIZED, "a token is required\n").into_response(),
        }
    }
    if let Err(e) = service.refresh_metrics().await {
        tracing::warn!(error = %e, "could not refresh the gauges for a scrape");
    }
    let mut r = ember_metrics::metrics().render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The metrics listener: `/metrics` and a plain `/healthcheck`, open.
pub fn router(service: Service) -> Router {
    let scrape_service = service.clone();
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(move |headers: HeaderMap| {
                scrape(scrape_service.clone(), None, headers)
            }),
        )
        .route(
            "/healthcheck",
            axum::routing::get(move || {
                let service = service.clone();
                async move {
                    let health = service.health().await;
                    let status = if health.ok() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    let body = serde_json::json!({
                        "detailed": true,
                        "reasons": health.checks.iter().map(|c| serde_json::json!({
                            "class": c.name,
                            "reason": if c.ok { "OK" } else { "FAILED" },
                            "details": c.detail,
                            "micros": c.micros,
                        })).collect::<Vec<_>>(),
                    });
                    (status, axum::Json(body))
                }
            }),
        )
}
