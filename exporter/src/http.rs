//! The HTTP endpoints: `/metrics` (the cached page), `/healthz` (the loop is alive) and
//! `/readyz` (a first cycle has completed).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use rmq_web::Body;

use crate::collector::Cache;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn reply(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    with_body(status, content_type, Full::new(body).boxed())
}

fn with_body(status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Routes one request. `stale_after` is how long without a finished cycle makes `/healthz` fail.
pub fn route(cache: &Cache, stale_after: Duration, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"GET only\n"),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let chunks = cache.page().chunks().map(|c| Ok::<_, Infallible>(Frame::data(c)));
            with_body(StatusCode::OK, TEXT_FORMAT, BodyExt::boxed(StreamBody::new(stream::iter(chunks))))
        }
        "/healthz" => match cache.age() {
            Some(age) if age > stale_after.as_secs_f64() => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                Bytes::from(format!("last collection cycle ended {age:.0} s ago\n")),
            ),
            _ => reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        },
        "/readyz" if cache.ready() => reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n")),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"first collection cycle not finished\n"),
        ),
        "/" => reply(
            StatusCode::OK,
            "text/html",
            Bytes::from_static(b"<html><body><h1>rmq-exporter</h1><a href=\"/metrics\">/metrics</a></body></html>\n"),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found\n")),
    }
}

/// Serves until the listener fails, with `web`'s TLS and basic auth (`rmq-web`).
pub async fn serve(
    listener: TcpListener,
    web: Arc<rmq_web::Web>,
    cache: Arc<Cache>,
    stale_after: Duration,
) -> std::io::Result<()> {
    rmq_web::serve(listener, web, move |req| route(&cache, stale_after, req)).await
}
