//! `/metrics` and `/healthz` for the sidecar, served by `rmq-web` (TLS and basic auth from the
//! web config file).

use std::sync::Arc;

use hyper::StatusCode;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

pub async fn serve(
    listener: TcpListener,
    web: Arc<rmq_web::Web>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    rmq_web::serve(listener, web, move |req| {
        let (status, body) = match req.uri().path() {
            "/metrics" => (StatusCode::OK, metrics.render()),
            "/healthz" | "/readyz" => (StatusCode::OK, "ok\n".to_string()),
            _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
        };
        let mut resp = rmq_web::text(status, body);
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    })
    .await
}
