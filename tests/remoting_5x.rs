//! The exporter against a real Apache RocketMQ 5.3.3 cluster of two brokers (broker-a, broker-b):
//! backlog exact to the message, equal to `mqadmin consumerProgress`, compared with the broker's
//! own Prometheus metrics, and summed by the ARMS guide's query (and the Grafana dashboard's) through
//! a real Prometheus.

#[path = "support/mod.rs"]
mod support;

use std::sync::OnceLock;
use std::time::Duration;

use support::{
    backlog, exporter_for, http_get, name, urlencode, Exporter, Metrics, Rig, RigOptions,
};

const WAIT: Duration = Duration::from_secs(60);

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        Rig::start(RigOptions {
            version: "5.3.3",
            brokers: 2,
            slave: false,
            acl: false,
        })
    })
}

/// An exporter reading only the given groups, every second.
fn exporter(groups: &[&str]) -> Exporter {
    exporter_for(rig().namesrv(), groups, &["--instance-id", "rig"])
}

#[test]
fn push_consumer_backlog_is_exact_and_equals_mqadmin() {
    let rig = rig();
    let (t1, t2, g) = (name("T1"), name("T2"), name("G"));
    // 60 + 40 on T1 over 8 queues per broker; the group consumes the first 60.
    rig.produce(&t1, 60, 8);
    rig.consume(&g, &t1, 60);
    rig.produce(&t1, 40, 8);
    // A second topic the group never consumed past its first 10 of 35.
    rig.produce(&t2, 10, 4);
    let g2 = name("G");
    rig.consume(&g2, &t2, 10);
    rig.produce(&t2, 25, 4);

    let exp = exporter(&[&g, &g2]);
    let (ready, inflight, lag) =
        exp.eventually(WAIT, |m| backlog(m, &t1, &g).filter(|b| b.2 == 40.0));
    assert_eq!((ready, inflight, lag), (40.0, 0.0, 40.0));
    let m = exp.eventually(WAIT, |m| {
        backlog(m, &t2, &g2)
            .filter(|b| b.2 == 25.0)
            .map(|_| m.text.clone())
    });
    let m = Metrics::parse(&m);
    assert_eq!(backlog(&m, &t2, &g2), Some((25.0, 0.0, 25.0)));
    // Both brokers' queues are summed: 8 + 8 queues.
    assert_eq!(
        m.one(
            "rocketmq_consumer_queues",
            &[("topic", &t1), ("consumer_group", &g)]
        ),
        Some(16.0)
    );
    // mqadmin's totals include the group's %RETRY% queues (when it has offsets there), which the
    // exporter reports with is_retry="true"; the sums over all of a group's series agree.
    for (group, expected) in [(&g, 40), (&g2, 25)] {
        let (diff, _) = rig.consumer_progress(group);
        assert_eq!(diff, expected, "mqadmin consumerProgress -g {group}");
        let exported: f64 = m
            .find(
                "rocketmq_consumer_lag_messages",
                &[("consumer_group", group)],
            )
            .iter()
            .sum();
        assert_eq!(exported, diff as f64);
    }
    // The labels are those of ARMS and the RocketMQ 5 broker.
    let labels = &m
        .samples
        .iter()
        .find(|(n, l, _)| n == "rocketmq_consumer_ready_messages" && l["topic"] == t1)
        .unwrap()
        .1;
    assert_eq!(
        labels.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![
            "cluster",
            "consumer_group",
            "instance_id",
            "is_retry",
            "topic"
        ]
    );
    assert_eq!(labels["instance_id"], "rig");
    assert_eq!(labels["cluster"], rig.cluster());
}

#[test]
fn held_messages_are_inflight_and_ready_plus_inflight_stays_exact() {
    let rig = rig();
    let (t, g) = (name("TH"), name("GH"));
    rig.produce(&t, 5, 4);
    rig.consume(&g, &t, 5);
    rig.produce(&t, 30, 4);
    let mut holder = rig.loadgen_spawn(&["hold", "--group", &g, "--topic", &t, "--hold-s", "120"]);
    holder.wait_for_line("HOLDING", WAIT);

    let exp = exporter(&[&g]);
    let (ready, inflight, _) = exp.eventually(WAIT, |m| {
        backlog(m, &t, &g).filter(|b| b.1 > 0.0 && b.2 == 30.0)
    });
    assert_eq!(ready + inflight, 30.0);
    assert!(inflight > 0.0);
    let (diff, mq_inflight) = rig.consumer_progress(&g);
    assert_eq!(diff, 30);
    assert!(
        mq_inflight.unwrap_or(0) > 0,
        "mqadmin shows in-flight messages too"
    );

    // The broker's own metrics agree on all three numbers while the group is online.
    let broker = broker_metrics_for(&t, &g, inflight);
    let m = exp.metrics();
    assert_eq!(
        backlog(&m, &t, &g),
        Some(broker),
        "exporter vs broker /metrics"
    );
}

/// Sums of the broker's own (ready, inflight, lag) for (topic, group) over both brokers, once
/// in-flight matches `inflight` (the broker computes on each scrape).
fn broker_metrics_for(topic: &str, group: &str, inflight: f64) -> (f64, f64, f64) {
    let rig = rig();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut sum = (0.0, 0.0, 0.0);
        for key in ["BROKER_A_PROM", "BROKER_B_PROM"] {
            let (status, body) = http_get(rig.get(key), "/metrics").unwrap();
            assert_eq!(status, 200);
            let m = Metrics::parse(&body);
            let l = [("topic", topic), ("consumer_group", group)];
            let v = |n: &str| m.find(n, &l).iter().sum::<f64>();
            sum.0 += v("rocketmq_consumer_ready_messages");
            sum.1 += v("rocketmq_consumer_inflight_messages");
            sum.2 += v("rocketmq_consumer_lag_messages");
        }
        if sum.1 == inflight || std::time::Instant::now() > deadline {
            return sum;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn broker_metrics_skip_retry_topics_and_offline_groups_but_the_exporter_does_not() {
    let rig = rig();
    let (t, g) = (name("TR"), name("GR"));
    rig.produce(&t, 10, 2);
    // Three deliveries fail and come back through %RETRY%G, which then has committed offsets.
    let out = rig.loadgen(&[
        "consume",
        "--group",
        &g,
        "--topic",
        &t,
        "--expect",
        "10",
        "--fail-first",
        "3",
    ]);
    assert!(out.contains("RESULT consumed=10"), "{out}");
    rig.produce(&t, 7, 2);
    let retry = format!("%RETRY%{g}");
    let exp = exporter(&[&g]);
    let m = exp.eventually(WAIT, |m| {
        let main = backlog(m, &t, &g).filter(|b| b.2 == 7.0);
        let retried = m.one(
            "rocketmq_consumer_lag_messages",
            &[("topic", &retry), ("is_retry", "true")],
        );
        (main.is_some() && retried == Some(0.0)).then(|| m.text.clone())
    });
    let m = Metrics::parse(&m);
    assert_eq!(
        m.one(
            "rocketmq_consumer_lag_messages",
            &[("topic", &t), ("is_retry", "false")]
        ),
        Some(7.0)
    );

    let broker_series = |topic: &str| -> usize {
        ["BROKER_A_PROM", "BROKER_B_PROM"]
            .iter()
            .map(|key| {
                let (_, body) = http_get(rig.get(key), "/metrics").unwrap();
                Metrics::parse(&body)
                    .find(
                        "rocketmq_consumer_lag_messages",
                        &[("consumer_group", &g), ("topic", topic)],
                    )
                    .len()
            })
            .sum()
    };
    // Offline, the group is absent from the broker's metrics.
    assert_eq!(broker_series(&t), 0);
    // Online, the broker reports the topic but never the group's %RETRY% topic.
    let mut holder = rig.loadgen_spawn(&["hold", "--group", &g, "--topic", &t, "--hold-s", "120"]);
    holder.wait_for_line("HOLDING", WAIT);
    let deadline = std::time::Instant::now() + WAIT;
    while broker_series(&t) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        broker_series(&t) > 0,
        "the online group shows in the broker's metrics"
    );
    assert_eq!(broker_series(&retry), 0);
    let m = exp.metrics();
    assert!(m
        .one("rocketmq_consumer_lag_messages", &[("topic", &retry)])
        .is_some());
}

#[test]
fn pop_consumption_is_counted_exactly() {
    let rig = rig();
    let (t, g) = (name("TP"), name("GP"));
    rig.produce(&t, 50, 4);
    let out = rig.loadgen(&["pop", "--group", &g, "--topic", &t, "--expect", "50"]);
    assert!(out.contains("RESULT consumed=50"), "{out}");
    rig.produce(&t, 20, 4);
    let exp = exporter(&[&g]);
    let (ready, inflight, lag) =
        exp.eventually(WAIT, |m| backlog(m, &t, &g).filter(|b| b.2 == 20.0));
    assert_eq!((ready, inflight, lag), (20.0, 0.0, 20.0));
}

#[test]
fn lag_latency_is_the_age_of_the_oldest_unconsumed_message() {
    let rig = rig();
    let (t, g) = (name("TL"), name("GL"));
    rig.produce(&t, 4, 2);
    rig.consume(&g, &t, 4);
    let produced_at = std::time::Instant::now();
    rig.produce(&t, 6, 2);
    std::thread::sleep(Duration::from_secs(3));
    let exp = exporter(&[&g]);
    let m = exp.eventually(WAIT, |m| {
        m.one(
            "rocketmq_consumer_lag_latency_milliseconds",
            &[("topic", &t), ("consumer_group", &g)],
        )
        .filter(|v| *v > 0.0)
        .map(|_| m.text.clone())
    });
    let m = Metrics::parse(&m);
    let l = [("topic", t.as_str()), ("consumer_group", g.as_str())];
    let lag_ms = m
        .one("rocketmq_consumer_lag_latency_milliseconds", &l)
        .unwrap();
    let queue_ms = m
        .one("rocketmq_consumer_queueing_latency_milliseconds", &l)
        .unwrap();
    let upper = produced_at.elapsed().as_millis() as f64 + 1000.0;
    assert!(
        lag_ms >= 3000.0 && lag_ms <= upper,
        "lag latency {lag_ms} ms, expected 3000..{upper}"
    );
    assert!(
        queue_ms >= 3000.0 && queue_ms <= upper,
        "queueing latency {queue_ms} ms"
    );
    // A group with no backlog has no age.
    let g0 = name("GL0");
    rig.consume(&g0, &t, 10);
    let exp0 = exporter(&[&g0]);
    let age = exp0.eventually(WAIT, |m| {
        let l = [("topic", t.as_str()), ("consumer_group", g0.as_str())];
        (m.one("rocketmq_consumer_lag_messages", &l) == Some(0.0))
            .then(|| m.one("rocketmq_consumer_lag_latency_milliseconds", &l))
            .flatten()
    });
    assert_eq!(age, 0.0);
}

#[test]
fn deleted_groups_stop_being_exported() {
    let rig = rig();
    let (t, g) = (name("TD"), name("GD"));
    rig.produce(&t, 3, 1);
    rig.consume(&g, &t, 3);
    rig.produce(&t, 2, 1);
    let exp = exporter(&[&g]);
    exp.eventually(WAIT, |m| backlog(m, &t, &g).filter(|b| b.2 == 2.0));
    rig.mqadmin(&[
        "deleteSubGroup",
        "-c",
        rig.cluster(),
        "-g",
        &g,
        "-r",
        "true",
    ]);
    exp.eventually(WAIT, |m| {
        m.find("rocketmq_consumer_lag_messages", &[("consumer_group", &g)])
            .is_empty()
            .then_some(())
    });
}

#[test]
fn arms_guide_query_sums_per_group_through_prometheus() {
    let rig = rig();
    let (t, ga, gb) = (name("TK"), name("GA"), name("GB"));
    rig.produce(&t, 60, 4);
    rig.consume(&ga, &t, 60);
    rig.produce(&t, 40, 4);
    rig.consume(&gb, &t, 100);
    rig.produce(&t, 15, 4);
    // GA: 100 + 15 - 60 = 55 behind; GB: 15 behind.
    let exp = exporter(&[&ga, &gb]);
    exp.eventually(WAIT, |m| backlog(m, &t, &gb).filter(|b| b.2 == 15.0));

    let (prom, prom_dir) = support::start_prometheus(&exp.addr);

    let query = format!(
        "sum({{__name__=~\"rocketmq_consumer_ready_messages|rocketmq_consumer_inflight_messages\",instance_id=\"rig\",topic=~\"{t}\"}}) by (consumer_group)"
    );
    let result = eventually_prom(&prom, &query, |rows| rows.len() == 2);
    let result: std::collections::BTreeMap<String, f64> = result
        .iter()
        .map(|(labels, v)| (labels["consumer_group"].clone(), *v))
        .collect();
    assert_eq!(result.get(&ga), Some(&55.0), "{result:?}");
    assert_eq!(result.get(&gb), Some(&15.0), "{result:?}");
    stop_prometheus(&prom_dir);
}

fn stop_prometheus(dir: &std::path::Path) {
    let _ = std::process::Command::new("bash")
        .arg(support::repo_root().join("tests/rig/prometheus.sh"))
        .args(["stop", "--dir", dir.to_str().unwrap()])
        .status();
}

type Rows = Vec<(std::collections::BTreeMap<String, String>, f64)>;

/// An instant query against Prometheus: each series' labels and value. A failed query panics.
fn prom_query(prom: &str, expr: &str) -> Rows {
    let (status, body) =
        http_get(prom, &format!("/api/v1/query?query={}", urlencode(expr))).unwrap();
    assert_eq!(status, 200, "{expr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{expr}: {body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// `prom_query` until `done` accepts the rows (or `WAIT` passes; the rows are returned either way).
fn eventually_prom(prom: &str, expr: &str, done: impl Fn(&Rows) -> bool) -> Rows {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = prom_query(prom, expr);
        if done(&rows) || std::time::Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// dashboards/rocketmq-backlog.json against a real Prometheus scraping the exporter: every
/// panel query (with the dashboard's variables set to this test's instance, group and topic)
/// is valid PromQL and returns series, the backlog panels show the exact backlog, and the
/// variables' `label_values` queries list this instance, group and topic.
#[test]
fn grafana_dashboard_queries_return_the_exporters_numbers() {
    let rig = rig();
    let (t, g) = (name("TD"), name("GD"));
    rig.produce(&t, 20, 4);
    rig.consume(&g, &t, 20);
    rig.produce(&t, 30, 4);
    let exp = exporter(&[&g]);
    exp.eventually(WAIT, |m| backlog(m, &t, &g).filter(|b| b.2 == 30.0));
    let (prom, prom_dir) = support::start_prometheus(&exp.addr);

    let path = support::repo_root().join("dashboards/rocketmq-backlog.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vars = [
        ("$instance_id", "rig"),
        ("$consumer_group", g.as_str()),
        ("$topic", t.as_str()),
        ("$__rate_interval", "1m"),
    ];
    let set = |expr: &str| {
        vars.iter()
            .fold(expr.to_string(), |e, (var, value)| e.replace(var, value))
    };

    // Variables: label_values(<selector>, <label>) lists this test's value.
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {q}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let want = match label.trim() {
            "instance_id" => "rig",
            "consumer_group" => g.as_str(),
            "topic" => t.as_str(),
            other => panic!("unexpected variable label {other}"),
        };
        let url = format!(
            "/api/v1/series?match[]={}",
            urlencode(&set(selector.trim()))
        );
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (status, body) = http_get(&prom, &url).unwrap();
            assert_eq!(status, 200, "{q}: {body}");
            if body.contains(&format!("\"{}\":\"{want}\"", label.trim())) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{q}: {want} not in {body}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // Panels: every query returns series; backlog and lag are exact; latency is an age.
    let mut queries = 0;
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = set(target["expr"].as_str().unwrap());
            let sum = |rows: &Rows| rows.iter().map(|(_, v)| v).sum::<f64>();
            let exact = |rows: &Rows| rows.len() == 1 && sum(rows) == 30.0;
            let check: &dyn Fn(&Rows) -> bool = match title {
                "Backlog (ready + inflight) by consumer group" | "Lag by topic" => &exact,
                "Lag latency" => &|rows: &Rows| sum(rows) > 0.0,
                _ => &|rows: &Rows| !rows.is_empty(),
            };
            let rows = eventually_prom(&prom, &expr, check);
            assert!(check(&rows), "{title}: {expr} gave {rows:?}");
            queries += 1;
        }
    }
    assert_eq!(queries, 13, "every panel query was evaluated");
    stop_prometheus(&prom_dir);
}

#[test]
fn queue_metrics_give_per_queue_lag_that_sums_to_the_total() {
    let rig = rig();
    let (t, g) = (name("TQ"), name("GQ"));
    rig.produce(&t, 8, 4);
    rig.consume(&g, &t, 8);
    rig.produce(&t, 21, 4);
    let exp = exporter_for(rig.namesrv(), &[&g], &["--queue-metrics"]);
    let m = exp.eventually(WAIT, |m| {
        backlog(m, &t, &g)
            .filter(|b| b.2 == 21.0)
            .map(|_| m.text.clone())
    });
    let m = Metrics::parse(&m);
    let l = [("topic", t.as_str()), ("consumer_group", g.as_str())];
    let per_queue = m.find("rocketmq_consumer_queue_lag_messages", &l);
    // 4 queues on each of 2 brokers, round-robin: every queue is behind.
    assert_eq!(per_queue.len(), 8);
    assert_eq!(per_queue.iter().sum::<f64>(), 21.0);
    let committed = m.find("rocketmq_consumer_queue_committed_offset", &l);
    assert_eq!(committed.iter().sum::<f64>(), 8.0);
}

/// 5.x brokers and name servers start with `tls.server.mode=permissive` and Netty's self-signed
/// certificate: plain and TLS clients both get in. An exporter told to speak TLS without checking
/// the certificate reads the same backlog as a plain one.
#[test]
fn permissive_default_servers_answer_tls_with_the_same_backlog() {
    let rig = rig();
    let (t, g) = (name("TP"), name("GP"));
    rig.produce(&t, 10, 2);
    rig.consume(&g, &t, 10);
    rig.produce(&t, 9, 2);
    let plain = exporter_for(rig.namesrv(), &[&g], &[]);
    let tls = exporter_for(
        rig.namesrv(),
        &[&g],
        &["--tls", "--tls-insecure-skip-verify"],
    );
    for e in [&plain, &tls] {
        let m = e.eventually(WAIT, |m| {
            backlog(m, &t, &g)
                .filter(|b| b.2 == 9.0)
                .map(|_| m.text.clone())
        });
        let m = Metrics::parse(&m);
        assert_eq!(backlog(&m, &t, &g), Some((9.0, 0.0, 9.0)));
        assert!(m.find("rocketmq_exporter_errors_total", &[]).is_empty());
        assert_eq!(m.find("rocketmq_exporter_up", &[]).iter().sum::<f64>(), 3.0);
    }
}
