//! The ApsaraMQ for RocketMQ 5.x OpenAPI answer readers (exporter/src/source/openapi/api.rs): the
//! four 2xx body readers and `classify` for failed answers. The first byte picks the reader; for
//! `classify` the next two bytes are the HTTP status and, when the fourth byte is odd, the body's
//! first line is the `x-acs-retry-after` header value.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rmq_exporter::source::openapi::api::{self, ApiError};

fn check(e: &ApiError) {
    let _ = (e.cause(), e.code(), e.to_string());
    if let ApiError::Throttled {
        retry_after: Some(d),
        ..
    } = e
    {
        assert!(*d > Duration::ZERO && *d <= Duration::from_secs(300));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => match api::instances(body) {
            Ok(page) => {
                let _ = (page.items.len(), page.total);
            }
            Err(e) => check(&e),
        },
        1 => match api::consumer_groups(body) {
            Ok(page) => {
                let _ = (page.items.len(), page.total);
            }
            Err(e) => check(&e),
        },
        2 => match api::consumer_group_lag(body) {
            Ok(lag) => {
                assert!(lag.windows(2).all(|w| w[0].topic < w[1].topic));
                for t in &lag {
                    assert_eq!(t.lag_latency_ms % 1000, 0);
                }
            }
            Err(e) => check(&e),
        },
        3 => match api::consumer_connections(body) {
            Ok(_) => {}
            Err(e) => check(&e),
        },
        _ => {
            let [hi, lo, flags, rest @ ..] = body else {
                return;
            };
            let status = u16::from_be_bytes([*hi, *lo]);
            let (retry_after, body) = if flags & 1 == 1 {
                let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                (
                    Some(String::from_utf8_lossy(&rest[..end]).into_owned()),
                    rest.get(end + 1..).unwrap_or_default(),
                )
            } else {
                (None, rest)
            };
            check(&api::classify(status, retry_after.as_deref(), body));
        }
    }
});
