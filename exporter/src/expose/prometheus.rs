//! Prometheus text exposition (format 0.0.4) of a [`Snapshot`].
//!
//! Consumer families carry the names and labels of the RocketMQ 5 broker's own metrics and of
//! ARMS (`instance_id`, `cluster`, `topic`, `consumer_group`, `is_retry`), so PromQL written for
//! either works unchanged.
//!
//! Each cycle builds a [`Page`]: every series' label set rendered once, its values, and the small
//! health section. A scrape streams the page out in chunks of about 64 KiB, so serving 10,000
//! groups (7 families, ~10 MB of text) never holds the whole text in memory, and the previous
//! cycle's page costs only its label strings.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::snapshot::{ConsumerSeries, Snapshot};

/// Counters that live across cycles.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub cycles: u64,
    pub rpcs: u64,
    pub latency_lookups: u64,
    /// (source, cause) → errors seen.
    pub errors: BTreeMap<(String, &'static str), u64>,
    /// (source, API action, API error code) → failed OpenAPI calls.
    pub api_errors: BTreeMap<(String, &'static str, String), u64>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    /// None: the source cannot tell, and the series is left out of this family.
    value: fn(&ConsumerSeries) -> Option<u64>,
}

/// A value slot of a family the series has no value for.
const ABSENT: u64 = u64::MAX;

const CONSUMER_FAMILIES: &[Family] = &[
    Family {
        name: "rocketmq_consumer_ready_messages",
        help: "Messages stored and not yet delivered to the consumer group (max offset - pull offset).",
        value: |s| Some(s.ready),
    },
    Family {
        name: "rocketmq_consumer_inflight_messages",
        help: "Messages delivered to the consumer group but not yet committed (pull offset - committed offset); 0 before RocketMQ 5.1.",
        value: |s| Some(s.inflight),
    },
    Family {
        name: "rocketmq_consumer_lag_messages",
        help: "Messages not yet consumed by the consumer group (ready + inflight).",
        value: |s| Some(s.lag()),
    },
    Family {
        name: "rocketmq_consumer_lag_latency_milliseconds",
        help: "Age of the oldest message not yet consumed by the consumer group.",
        value: |s| Some(s.lag_latency_ms),
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
        value: |s| s.queues.map(u64::from),
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

/// One cycle's exposition, ready to stream.
#[derive(Debug, Default)]
pub struct Page {
    /// `{instance_id="…",…,is_retry="…"} ` per series.
    labels: Vec<String>,
    /// Per series, one value per entry of [`CONSUMER_FAMILIES`].
    values: Vec<[u64; 7]>,
    /// The exporter's own metrics, rendered.
    health: String,
}

/// Size at which a chunk is handed to the HTTP body.
const CHUNK: usize = 64 * 1024;

impl Page {
    pub fn build(snapshot: &Snapshot, counters: &Counters) -> Page {
        let labels = snapshot.series.iter().map(series_labels).collect();
        let values = snapshot
            .series
            .iter()
            .map(|s| {
                let mut v = [0u64; 7];
                for (slot, f) in v.iter_mut().zip(CONSUMER_FAMILIES) {
                    *slot = (f.value)(s).map_or(ABSENT, |x| x.min(ABSENT - 1));
                }
                v
            })
            .collect();
        let mut health = String::new();
        render_queues(&mut health, snapshot);
        render_health(&mut health, snapshot, counters);
        Page {
            labels,
            values,
            health,
        }
    }

    /// The page as chunks of about 64 KiB, in order.
    pub fn chunks(self: std::sync::Arc<Self>) -> Chunks {
        Chunks {
            page: self,
            family: 0,
            series: 0,
            done: false,
        }
    }

    /// The whole page as one string (tests, `--once`).
    pub fn to_text(self: std::sync::Arc<Self>) -> String {
        self.chunks()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .collect()
    }
}

/// Iterator over a page's chunks.
pub struct Chunks {
    page: std::sync::Arc<Page>,
    family: usize,
    series: usize,
    done: bool,
}

impl Iterator for Chunks {
    type Item = bytes::Bytes;

    fn next(&mut self) -> Option<bytes::Bytes> {
        if self.done {
            return None;
        }
        let mut out = String::with_capacity(CHUNK + 512);
        while out.len() < CHUNK {
            let Some(f) = CONSUMER_FAMILIES.get(self.family) else {
                out.push_str(&self.page.health);
                self.done = true;
                break;
            };
            if self.series == 0 {
                header(&mut out, f.name, "gauge", f.help);
            }
            while self.series < self.page.labels.len() && out.len() < CHUNK {
                let value = self.page.values[self.series][self.family];
                if value != ABSENT {
                    out.push_str(f.name);
                    out.push_str(&self.page.labels[self.series]);
                    let _ = writeln!(out, "{value}");
                }
                self.series += 1;
            }
            if self.series == self.page.labels.len() {
                self.family += 1;
                self.series = 0;
            }
        }
        Some(bytes::Bytes::from(out))
    }
}

/// Per-queue families, when the source reported per-queue data (`--queue-metrics`).
fn render_queues(out: &mut String, snapshot: &Snapshot) {
    if snapshot.series.iter().all(|s| s.lagging_queues.is_empty()) {
        return;
    }
    for (name, help, committed) in [
        (
            "rocketmq_consumer_queue_lag_messages",
            "Messages not yet committed by the consumer group on one queue (queues with lag only).",
            false,
        ),
        (
            "rocketmq_consumer_queue_committed_offset",
            "The consumer group's committed offset on one queue (queues with lag only).",
            true,
        ),
    ] {
        header(out, name, "gauge", help);
        for s in &snapshot.series {
            let labels = series_labels(s);
            let labels = labels.trim_end().trim_end_matches('}');
            for q in &s.lagging_queues {
                out.push_str(name);
                out.push_str(labels);
                out.push_str(",broker=\"");
                escape(out, &q.broker);
                let value = if committed {
                    q.committed.to_string()
                } else {
                    q.lag.to_string()
                };
                let _ = writeln!(out, "\",queue_id=\"{}\"}} {value}", q.queue_id);
            }
        }
    }
}

fn series_labels(s: &ConsumerSeries) -> String {
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
        "1 if the name server, broker or ApsaraMQ instance answered every request of the last cycle.",
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
        "1 if some series from this broker or instance are last known values kept after a failed read.",
    );
    for t in snapshot.targets.iter().filter(|t| t.kind != "namesrv") {
        let _ = writeln!(
            out,
            "rocketmq_exporter_stale{} {}",
            target_labels(t),
            t.stale as u8
        );
    }
    header(
        out,
        "rocketmq_exporter_reading_slave",
        "gauge",
        "1 while the broker set is read on a slave because the name server lists no master for it.",
    );
    for t in snapshot.targets.iter().filter(|t| t.kind == "broker") {
        let _ = writeln!(
            out,
            "rocketmq_exporter_reading_slave{} {}",
            target_labels(t),
            t.slave as u8
        );
    }
    header(
        out,
        "rocketmq_exporter_oldest_value_age_seconds",
        "gauge",
        "Age at the end of the last cycle of the oldest value exported for this broker or instance (groups read in rotation when the request budget cannot cover all each cycle).",
    );
    for t in &snapshot.targets {
        if let Some(at) = t.oldest_value_at {
            let _ = writeln!(
                out,
                "rocketmq_exporter_oldest_value_age_seconds{} {:.3}",
                target_labels(t),
                (snapshot.taken_at - at).max(0.0)
            );
        }
    }
    if snapshot.targets.iter().any(|t| t.unread_groups.is_some()) {
        header(
            out,
            "rocketmq_exporter_unread_groups",
            "gauge",
            "Consumer groups listed by the instance but not read yet (rotation has not reached them).",
        );
        for t in &snapshot.targets {
            if let Some(n) = t.unread_groups {
                let _ = writeln!(
                    out,
                    "rocketmq_exporter_unread_groups{} {n}",
                    target_labels(t)
                );
            }
        }
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
        "Collection errors by source and cause (connect, tls, timeout, closed, bad_frame, bad_body, auth, remote_error, deadline, throttled, credentials).",
    );
    for ((source, cause), n) in &counters.errors {
        let mut l = String::new();
        escape(&mut l, source);
        let _ = writeln!(
            out,
            "rocketmq_exporter_errors_total{{source=\"{l}\",cause=\"{cause}\"}} {n}"
        );
    }
    if !counters.api_errors.is_empty() {
        header(
            out,
            "rocketmq_exporter_api_errors_total",
            "counter",
            "Failed ApsaraMQ OpenAPI calls by source, API action and the API's error code (or http_STATUS when the answer had none).",
        );
        for ((source, action, code), n) in &counters.api_errors {
            let mut l = String::from("{source=\"");
            escape(&mut l, source);
            l.push_str("\",action=\"");
            l.push_str(action);
            l.push_str("\",code=\"");
            escape(&mut l, code);
            let _ = writeln!(out, "rocketmq_exporter_api_errors_total{l}\"}} {n}");
        }
    }
    let scalars: [(&str, &str, &str, String); 7] = [
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
            "Requests sent in the last cycle (remoting and OpenAPI).",
            snapshot.rpcs.to_string(),
        ),
        (
            "rocketmq_exporter_rpcs_total",
            "counter",
            "Requests sent (remoting and OpenAPI).",
            counters.rpcs.to_string(),
        ),
        (
            "rocketmq_exporter_latency_lookups_total",
            "counter",
            "Message store-time lookups made for lag latency.",
            counters.latency_lookups.to_string(),
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
            queueing_latency_ms: Some(4),
            connections: Some(2),
            queues: Some(8),
            lagging_queues: Vec::new(),
        }
    }

    #[test]
    fn consumer_series_carry_the_arms_labels() {
        let snap = Snapshot {
            series: vec![series("T", "G", 30, 10), series("%RETRY%G", "G", 1, 0)],
            ..Default::default()
        };
        let text = std::sync::Arc::new(Page::build(&snap, &Counters::default())).to_text();
        assert!(text.contains(
            "rocketmq_consumer_ready_messages{instance_id=\"inst\",cluster=\"DefaultCluster\",topic=\"T\",consumer_group=\"G\",is_retry=\"false\"} 30\n"
        ));
        assert!(text.contains("rocketmq_consumer_lag_messages{instance_id=\"inst\",cluster=\"DefaultCluster\",topic=\"T\",consumer_group=\"G\",is_retry=\"false\"} 40\n"));
        assert!(text.contains("topic=\"%RETRY%G\",consumer_group=\"G\",is_retry=\"true\"} 1\n"));
        assert!(text.contains("# TYPE rocketmq_consumer_lag_latency_milliseconds gauge\n"));
    }

    #[test]
    fn a_large_page_streams_in_bounded_chunks_and_keeps_families_contiguous() {
        let snap = Snapshot {
            series: (0..5000)
                .map(|i| series("T", &format!("G{i}"), i, 1))
                .collect(),
            ..Default::default()
        };
        let page = std::sync::Arc::new(Page::build(&snap, &Counters::default()));
        let chunks: Vec<_> = page.clone().chunks().collect();
        assert!(chunks.len() > 10);
        assert!(chunks.iter().all(|c| c.len() < CHUNK + 1024));
        let text = page.to_text();
        assert_eq!(
            text.matches("# TYPE rocketmq_consumer_ready_messages gauge")
                .count(),
            1
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let first_lag = lines
            .iter()
            .position(|l| l.starts_with("rocketmq_consumer_lag_messages"))
            .unwrap();
        assert!(lines[first_lag..first_lag + 5000]
            .iter()
            .all(|l| l.starts_with("rocketmq_consumer_lag_messages")));
        assert!(text.contains("consumer_group=\"G4999\",is_retry=\"false\"} 4999\n"));
        assert!(
            text.ends_with("rocketmq_exporter_series 5000\n"),
            "{}",
            &text[text.len() - 200..]
        );
    }

    #[test]
    fn per_queue_families_appear_only_with_per_queue_data() {
        let mut s = series("T", "G", 3, 0);
        let plain = Snapshot {
            series: vec![s.clone()],
            ..Default::default()
        };
        let text = std::sync::Arc::new(Page::build(&plain, &Counters::default())).to_text();
        assert!(!text.contains("rocketmq_consumer_queue_lag_messages"));
        s.lagging_queues.push(crate::snapshot::QueueLag {
            broker: std::sync::Arc::from("broker-a"),
            queue_id: 2,
            committed: 40,
            lag: 3,
        });
        let detailed = Snapshot {
            series: vec![s],
            ..Default::default()
        };
        let text = std::sync::Arc::new(Page::build(&detailed, &Counters::default())).to_text();
        assert!(text.contains("rocketmq_consumer_queue_lag_messages{instance_id=\"inst\",cluster=\"DefaultCluster\",topic=\"T\",consumer_group=\"G\",is_retry=\"false\",broker=\"broker-a\",queue_id=\"2\"} 3\n"), "{text}");
        assert!(text.contains("rocketmq_consumer_queue_committed_offset{instance_id=\"inst\",cluster=\"DefaultCluster\",topic=\"T\",consumer_group=\"G\",is_retry=\"false\",broker=\"broker-a\",queue_id=\"2\"} 40\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let snap = Snapshot {
            series: vec![series("a\"b\\c\nd", "G", 1, 0)],
            ..Default::default()
        };
        let text = std::sync::Arc::new(Page::build(&snap, &Counters::default())).to_text();
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
                slave: true,
                last_success: 12.5,
                oldest_value_at: Some(10.0),
                unread_groups: None,
            }],
            taken_at: 40.0,
            ..Default::default()
        };
        let mut counters = Counters::default();
        counters.errors.insert(("remoting:x".into(), "timeout"), 3);
        let text = std::sync::Arc::new(Page::build(&snap, &counters)).to_text();
        assert!(text.contains("rocketmq_exporter_up{instance_id=\"i\",cluster=\"c\",kind=\"broker\",target=\"broker-a\"} 0\n"));
        assert!(text.contains("rocketmq_exporter_stale{instance_id=\"i\",cluster=\"c\",kind=\"broker\",target=\"broker-a\"} 1\n"));
        assert!(text.contains("rocketmq_exporter_reading_slave{instance_id=\"i\",cluster=\"c\",kind=\"broker\",target=\"broker-a\"} 1\n"));
        assert!(text.contains(
            "rocketmq_exporter_errors_total{source=\"remoting:x\",cause=\"timeout\"} 3\n"
        ));
    }
}
