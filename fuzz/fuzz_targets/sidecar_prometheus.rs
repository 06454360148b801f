//! The sidecar's readers of a metrics source's answer (sidecar/src/source.rs): the Prometheus
//! `/api/v1/query` JSON (`parse_prometheus_response`, the `prometheus` trigger) and the exporter's
//! `/metrics` text page (`exporter_backlog`, the `rocketmq-exporter` trigger). The first byte picks
//! the reader and, for the text page, one of three trigger filters; the rest is the body, decoded
//! lossily as reqwest's `Response::text` does.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rmq_sidecar::config::{ExporterSource, TopicPattern};
use rmq_sidecar::decide::Observation;
use rmq_sidecar::source::{exporter_backlog, parse_prometheus_response};

fn triggers() -> &'static [ExporterSource; 3] {
    static T: OnceLock<[ExporterSource; 3]> = OnceLock::new();
    T.get_or_init(|| {
        let t = |topic: Option<&str>, instance: Option<&str>| ExporterSource {
            url: "http://127.0.0.1:9877/metrics".into(),
            instance_id: instance.map(str::to_string),
            topic: topic.map(|t| TopicPattern::new(t).expect("valid pattern")),
            consumer_group: "G".into(),
        };
        [
            t(None, None),
            t(Some("keda"), Some("i1")),
            t(Some("%RETRY%.*|k.*"), None),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(body);
    let obs = if which & 1 == 0 {
        parse_prometheus_response(&text)
    } else {
        let e = &triggers()[usize::from(which >> 1) % 3];
        exporter_backlog(&text, e)
    };
    if let Observation::Error(e) = &obs {
        assert!(!e.is_empty());
    }
});
