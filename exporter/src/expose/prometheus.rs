//! Prometheus text exposition (format 0.0.4) of a [`Snapshot`].
//!
//! Consumer families carry the names and labels of the RocketMQ 5 broker's own metrics and of
//! ARMS (`instance_id`, `cluster`, `topic`, `consumer_group`, `is_retry`), so PromQL written for
//! either works unchanged. The whole page is rendered once per collection cycle; a scrape only
//! copies the bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::snapshot::{ConsumerSeries, Snapshot};

/// Counters that live across cycles.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub cycles: u64,
    pub rpcs: u64,
    pub latency_lookups: u64,
    /// Seconds the previous page took to render.
    pub last_render_seconds: f64,
    /// (source, cause) → errors seen.
    pub errors: BTreeMap<(String, &'static str), u64>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    value: fn(&ConsumerSeries) -> u64,
}

const CONSUMER_FAMILIES: &[Family] = &[
    Family {
        name: "rocketmq_consumer_ready_messages",
        help: "Messages stored and not yet delivered to the consumer group (max offset - pull offset).",
        value: |s| s.ready,
    },
    Family {
        name: "rocketmq_consumer_inflight_messages",
        help: "Messages delivered to the consumer group but not yet committed (pull offset - committed offset); 0 before RocketMQ 5.1.",
        value: |s| s.inflight,
    },
    Family {
        name: "rocketmq_consumer_lag_messages",
        help: "Messages not yet consumed by the consumer group (ready + inflight).",
        value: |s| s.lag(),
    },
    Family {
        name: "rocketmq_consumer_lag_latency_milliseconds",
        help: "Age of the oldest message not yet consumed by the consumer group.",
        value: |s| s.lag_latency_ms,
    },
    Family {
        name: "rocketmq_consumer_queueing_latency_milliseconds",
        help: "Age of the oldest message not yet delivered to the consumer group.",
        value: |s| s.queueing_latency_ms,
    },
    Family {
        name: "rocketmq_consumer_connections",
        help: "Online consumer clients of the consumer group (the same value on each of its topics).",
        value: |s| s.connections,
    },
    Family {
        name: "rocketmq_consumer_queues",
        help: "Message queues of the topic that the consumer group has offsets on, across brokers.",
        value: |s| s.queues as u64,
    },
];

/// Appends `value` to `out` escaped as a label value.
fn escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the whole page.
pub fn render(snapshot: &Snapshot, counters: &Counters) -> String {
    let mut out = String::with_capacity(256 + snapshot.series.len() * 7 * 160);
    // The label set is the same for every family: build it once per series.
    let labels: Vec<String> = snapshot
        .series
        .iter()
        .map(|s| {
            let mut l = String::with_capacity(128);
            l.push_str("{instance_id=\"");
            escape(&mut l, &s.instance_id);
            l.push_str("\",cluster=\"");
            escape(&mut l, &s.cluster);
            l.push_str("\",topic=\"");
            escape(&mut l, &s.topic);
            l.push_str("\",consumer_group=\"");
            escape(&mut l, &s.consumer_group);
            l.push_str(if s.is_retry {
                "\",is_retry=\"true\"} "
            } else {
                "\",is_retry=\"false\"} "
            });
            l
        })
        .collect();
    for f in CONSUMER_FAMILIES {
        header(&mut out, f.name, "gauge", f.help);
        for (s, l) in snapshot.series.iter().zip(&labels) {
            out.push_str(f.name);
            out.push_str(l);
            let _ = writeln!(out, "{}", (f.value)(s));
        }
    }
    render_health(&mut out, snapshot, counters);
    out
}

fn render_health(out: &mut String, snapshot: &Snapshot, counters: &Counters) {
    let target_labels = |t: &crate::snapshot::TargetHealth| {
        let mut l = String::from("{instance_id=\"");
        escape(&mut l, &t.instance_id);
        l.push_str("\",cluster=\"");
        escape(&mut l, &t.cluster);
        l.push_str("\",kind=\"");
        l.push_str(t.kind);
        l.push_str("\",target=\"");
        escape(&mut l, &t.target);
        l.push_str("\"}");
        l
    };
    header(
        out,
        "rocketmq_exporter_up",
        "gauge",
        "1 if the name server or broker answered in the last cycle.",
    );
    for t in &snapshot.targets {
        let _ = writeln!(
            out,
            "rocketmq_exporter_up{} {}",
            target_labels(t),
            t.up as u8
        );
    }
    header(
        out,
        "rocketmq_exporter_stale",
        "gauge",
        "1 if the series from this broker are its last known values, not this cycle's.",
    );
    for t in snapshot.targets.iter().filter(|t| t.kind == "broker") {
        let _ = writeln!(
            out,
            "rocketmq_exporter_stale{} {}",
            target_labels(t),
            t.stale as u8
        );
    }
    header(
        out,
        "rocketmq_exporter_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful read of the name server or broker (0: never).",
    );
    for t in &snapshot.targets {
        let _ = writeln!(
            out,
            "rocketmq_exporter_last_success_timestamp_seconds{} {:.3}",
            target_labels(t),
            t.last_success
        );
    }
    header(
        out,
        "rocketmq_exporter_errors_total",
        "counter",
        "Collection errors by source and cause (connect, timeout, closed, bad_frame, bad_body, auth, remote_error, deadline).",
    );
    for ((source, cause), n) in &counters.errors {
        let mut l = String::new();
        escape(&mut l, source);
        let _ = writeln!(
            out,
            "rocketmq_exporter_errors_total{{source=\"{l}\",cause=\"{cause}\"}} {n}"
        );
    }
    let scalars: [(&str, &str, &str, String); 8] = [
        (
            "rocketmq_exporter_collection_duration_seconds",
            "gauge",
            "Wall time of the last collection cycle.",
            format!("{:.6}", snapshot.cycle_seconds),
        ),
        (
            "rocketmq_exporter_last_collection_timestamp_seconds",
            "gauge",
            "Unix time at the end of the last collection cycle.",
            format!("{:.3}", snapshot.taken_at),
        ),
        (
            "rocketmq_exporter_collections_total",
            "counter",
            "Collection cycles run.",
            counters.cycles.to_string(),
        ),
        (
            "rocketmq_exporter_last_collection_rpcs",
            "gauge",
            "Remoting requests sent in the last cycle.",
            snapshot.rpcs.to_string(),
        ),
        (
            "rocketmq_exporter_rpcs_total",
            "counter",
            "Remoting requests sent.",
            counters.rpcs.to_string(),
        ),
        (
            "rocketmq_exporter_latency_lookups_total",
            "counter",
            "Message store-time lookups made for lag latency.",
            counters.latency_lookups.to_string(),
        ),
        (
            "rocketmq_exporter_render_duration_seconds",
            "gauge",
            "Time the previous cycle took to render this page's consumer series (scrapes only copy it).",
            format!("{:.6}", counters.last_render_seconds),
        ),
        (
            "rocketmq_exporter_series",
            "gauge",
            "Consumer (topic, group) series exported.",
            snapshot.series.len().to_string(),
        ),
    ];
    for (name, kind, help, value) in scalars {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::TargetHealth;
    use std::sync::Arc;

    fn series(topic: &str, group: &str, ready: u64, inflight: u64) -> ConsumerSeries {
        ConsumerSeries {
            instance_id: Arc::from("inst"),
            cluster: Arc::from("DefaultCluster"),
            topic: topic.into(),
            consumer_group: group.into(),
            is_retry: topic.starts_with("%RETRY%"),
            ready,
            inflight,
            lag_latency_ms: 5,
            queueing_latency_ms: 4,
            connections: 2,
            queues: 8,
        }
    }

    #[test]
    fn consumer_series_carry_the_arms_labels() {
        let snap = Snapshot {
            series: vec![series("T", "G", 30, 10), series("%RETRY%G", "G", 1, 0)],
            ..Default::default()
        };
        let text = render(&snap, &Counters::default());
        assert!(text.contains(
            "rocketmq_consumer_ready_messages{instance_id=\"inst\",cluster=\"DefaultCluster\",topic=\"T\",consumer_group=\"G\",is_retry=\"false\"} 30\n"
        ));
        assert!(text.contains("rocketmq_consumer_lag_messages{instance_id=\"inst\",cluster=\"DefaultCluster\",topic=\"T\",consumer_group=\"G\",is_retry=\"false\"} 40\n"));
        assert!(text.contains("topic=\"%RETRY%G\",consumer_group=\"G\",is_retry=\"true\"} 1\n"));
        assert!(text.contains("# TYPE rocketmq_consumer_lag_latency_milliseconds gauge\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let snap = Snapshot {
            series: vec![series("a\"b\\c\nd", "G", 1, 0)],
            ..Default::default()
        };
        let text = render(&snap, &Counters::default());
        assert!(text.contains("topic=\"a\\\"b\\\\c\\nd\""), "{text}");
    }

    #[test]
    fn health_shows_up_stale_and_errors() {
        let snap = Snapshot {
            targets: vec![TargetHealth {
                instance_id: Arc::from("i"),
                cluster: Arc::from("c"),
                kind: "broker",
                target: "broker-a".into(),
                up: false,
                stale: true,
                last_success: 12.5,
            }],
            ..Default::default()
        };
        let mut counters = Counters::default();
        counters.errors.insert(("remoting:x".into(), "timeout"), 3);
        let text = render(&snap, &counters);
        assert!(text.contains("rocketmq_exporter_up{instance_id=\"i\",cluster=\"c\",kind=\"broker\",target=\"broker-a\"} 0\n"));
        assert!(text.contains("rocketmq_exporter_stale{instance_id=\"i\",cluster=\"c\",kind=\"broker\",target=\"broker-a\"} 1\n"));
        assert!(text.contains(
            "rocketmq_exporter_errors_total{source=\"remoting:x\",cause=\"timeout\"} 3\n"
        ));
    }
}
