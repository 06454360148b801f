//! The ApsaraMQ source against a fake OpenAPI server on loopback (tests/rig/openapi_fake.py),
//! which checks every request's V3 signature with its own implementation (tests/rig/acs3.py), and
//! the signer against requests captured from the official Python SDK (tests/rig/openapi_sdk.sh).
//! Then the ARMS guide end to end: a real Prometheus scraping the exporter, the guide's exact
//! query, and the sidecar's `prometheus` trigger on it.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmq_exporter::source::openapi::sign;
use serde_json::{json, Value};
use support::{
    bin, free_port, http_get, start_prometheus, urlencode, Exporter, FakeOpenApi, Metrics,
};

const WAIT: Duration = Duration::from_secs(60);
const AK: &str = "LTAI5tTestKey";
const SK: &str = "SK-very-secret-1";

/// An exporter reading `instance` on the fake (every second unless `extra` says otherwise) with
/// static credentials.
fn exporter(fake: &FakeOpenApi, instance: &str, extra: &[&str]) -> Exporter {
    let mut args = vec!["--apsaramq-instance", instance, "--region", "cn-hangzhou"];
    for flag in ["--interval", "--deadline"] {
        if !extra.contains(&flag) {
            args.extend([flag, "1"]);
        }
    }
    let url = fake.url();
    args.extend(["--apsaramq-endpoint", url.as_str()]);
    args.extend_from_slice(extra);
    Exporter::start_with_env(
        &args,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK),
        ],
    )
}

fn world(instance: &str, groups: Value) -> Value {
    json!({
        "access_keys": {AK: SK},
        "instances": {instance: {"region": "cn-hangzhou", "status": "RUNNING", "groups": groups}},
    })
}

/// `n` groups named G000, G001, …, each as `group(i)` gives it.
fn numbered(n: u64, group: impl Fn(u64) -> Value) -> Value {
    Value::Object((0..n).map(|i| (format!("G{i:03}"), group(i))).collect())
}

fn lag(m: &Metrics, family: &str, topic: &str, group: &str) -> Option<f64> {
    m.one(
        &format!("rocketmq_consumer_{family}"),
        &[("topic", topic), ("consumer_group", group)],
    )
}

fn health(m: &Metrics, family: &str, instance: &str) -> Option<f64> {
    m.one(
        &format!("rocketmq_exporter_{family}"),
        &[("kind", "apsaramq"), ("target", instance)],
    )
}

fn counter(m: &Metrics, family: &str, labels: &[(&str, &str)]) -> f64 {
    m.find(family, labels).iter().sum()
}

/// The fake saw only requests whose signature it could verify, sent exactly as signed.
fn assert_clean(fake: &FakeOpenApi) {
    let s = fake.stats();
    assert_eq!(s["signature_failures"], 0, "{s}");
    assert_eq!(s["wire_mismatch"], 0, "{s}");
}

#[test]
fn metrics_equal_the_served_numbers_over_a_thousand_groups_and_vanished_ones_go() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-many";
    let mut groups = serde_json::Map::new();
    for i in 0..1050u64 {
        groups.insert(
            format!("GID_{i:04}"),
            json!({"topics": {
                format!("T{}", i % 7): {"ready": i, "inflight": i % 5, "delivery_duration": i % 60},
                format!("%RETRY%GID_{i:04}"): {"ready": i % 3, "inflight": 0, "delivery_duration": 1},
                format!("%DLQ%GID_{i:04}"): {"ready": 9, "inflight": 0, "delivery_duration": 1},
            }, "connections": i % 4}),
        );
    }
    // Names that need percent-encoding in the path.
    groups.insert(
        "GID a%b*c~d+e-组".into(),
        json!({"topics": {"T x+y": {"ready": 42, "inflight": 8, "delivery_duration": 7}}, "connections": 1}),
    );
    fake.state(world(inst, Value::Object(groups)));
    let e = exporter(
        &fake,
        inst,
        &[
            "--apsaramq-qps",
            "5000",
            "--apsaramq-concurrency",
            "16",
            "--interval",
            "5",
            "--deadline",
            "5",
        ],
    );
    // A page from a whole cycle: every group read at least once is not enough, since the cycle
    // that read the last of them may have been cut by its deadline (up 0), which happened with
    // a 3 s deadline on a loaded machine (the cold CI run).
    let m = e.eventually(WAIT, |m| {
        (health(m, "unread_groups", inst) == Some(0.0)
            && health(m, "up", inst) == Some(1.0)
            && m.find("rocketmq_consumer_connections", &[]).len() == 2 * 1050 + 1)
            .then(|| m.text.clone())
    });
    let m = Metrics::parse(&m);
    for i in [0u64, 1, 99, 100, 101, 777, 1049] {
        let g = format!("GID_{i:04}");
        let t = format!("T{}", i % 7);
        assert_eq!(lag(&m, "ready_messages", &t, &g), Some(i as f64), "{g}");
        assert_eq!(lag(&m, "inflight_messages", &t, &g), Some((i % 5) as f64));
        assert_eq!(lag(&m, "lag_messages", &t, &g), Some((i + i % 5) as f64));
        assert_eq!(
            lag(&m, "lag_latency_milliseconds", &t, &g),
            Some((i % 60 * 1000) as f64)
        );
        assert_eq!(lag(&m, "connections", &t, &g), Some((i % 4) as f64));
        let retry = format!("%RETRY%{g}");
        assert_eq!(
            m.one(
                "rocketmq_consumer_ready_messages",
                &[
                    ("topic", &retry),
                    ("consumer_group", &g),
                    ("is_retry", "true")
                ]
            ),
            Some((i % 3) as f64)
        );
        assert_eq!(lag(&m, "ready_messages", &format!("%DLQ%{g}"), &g), None);
    }
    assert_eq!(
        lag(&m, "lag_messages", "T x+y", "GID a%b*c~d+e-组"),
        Some(50.0)
    );
    let labels = [("instance_id", inst), ("cluster", inst)];
    assert_eq!(
        m.find("rocketmq_consumer_ready_messages", &labels).len(),
        2101
    );
    // The API has no per-queue view: unknown, not 0.
    assert!(m.find("rocketmq_consumer_queues", &[]).is_empty());
    assert!(m
        .find("rocketmq_consumer_queueing_latency_milliseconds", &[])
        .is_empty());
    assert_eq!(health(&m, "up", inst), Some(1.0));
    assert_eq!(health(&m, "stale", inst), Some(0.0));
    assert_clean(&fake);
    let s = fake.stats();
    assert!(s["ok"]["ListConsumerGroups"].as_u64().unwrap() >= 11, "{s}");

    // A group deleted and a topic unsubscribed are gone from the next cycle.
    fake.patch(json!({"groups": {inst: {
        "GID_0005": null,
        "GID_0006": {"topics": {"T6": {"ready": 6, "inflight": 1, "delivery_duration": 6}}, "connections": 2},
    }}}));
    e.eventually(WAIT, |m| {
        (m.find(
            "rocketmq_consumer_ready_messages",
            &[("consumer_group", "GID_0005")],
        )
        .is_empty()
            && lag(m, "ready_messages", "%RETRY%GID_0006", "GID_0006").is_none()
            && lag(m, "ready_messages", "T6", "GID_0006") == Some(6.0))
        .then_some(())
    });
    assert_clean(&fake);
}

#[test]
fn failures_keep_the_last_values_marked_stale_and_name_their_cause() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-faults";
    let g = |ready: u64| json!({"topics": {"T1": {"ready": ready, "inflight": 5, "delivery_duration": 2}}, "connections": 1});
    fake.state(world(inst, json!({"G1": g(10), "G2": g(3)})));
    let e = exporter(&fake, inst, &["--apsaramq-request-timeout", "5"]);
    e.eventually(WAIT, |m| {
        (lag(m, "ready_messages", "T1", "G1") == Some(10.0)).then_some(())
    });

    // Each persistent failure of G1's lag read: its old value stays, marked stale, while G2 stays
    // fresh; the failure is counted by cause and API code and logged; once the fault is gone the
    // served value comes through.
    let mut served = 10;
    for (mode, extra, cause, code) in [
        ("http_500", json!({}), "remote_error", Some("InternalError")),
        (
            "http_503",
            json!({}),
            "remote_error",
            Some("ServiceUnavailable"),
        ),
        (
            "bad_signature",
            json!({}),
            "auth",
            Some("SignatureDoesNotMatch"),
        ),
        (
            "malformed",
            json!({}),
            "bad_body",
            Some("malformed_response"),
        ),
        ("slow", json!({"delay_seconds": 2.5}), "deadline", None),
        ("throttle", json!({}), "throttled", Some("Throttling.User")),
        ("http_429", json!({}), "throttled", Some("Throttling.Api")),
    ] {
        let mut rule =
            json!({"action": "GetConsumerGroupLag", "group": "G1", "mode": mode, "count": -1});
        rule.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        fake.fault(rule);
        served += 1;
        fake.patch(json!({"groups": {inst: {"G1": g(served), "G2": g(served)}}}));
        e.eventually(WAIT, |m| {
            let counted = counter(m, "rocketmq_exporter_errors_total", &[("cause", cause)]) > 0.0;
            let coded = code.is_none_or(|c| {
                counter(
                    m,
                    "rocketmq_exporter_api_errors_total",
                    &[("action", "GetConsumerGroupLag"), ("code", c)],
                ) > 0.0
            });
            (counted
                && coded
                && health(m, "stale", inst) == Some(1.0)
                && lag(m, "ready_messages", "T1", "G1") == Some((served - 1) as f64)
                && lag(m, "ready_messages", "T1", "G2") == Some(served as f64))
            .then_some(())
        });
        let log = e.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains(cause) && l.contains("GetConsumerGroupLag of rmq-cn-faults/G1")),
            "{mode}: no log line naming the cause {cause}:\n{log}"
        );
        // The log names the API's error code; a malformed body has none and says so in words.
        let needle = match code {
            Some("malformed_response") => "unreadable answer",
            Some(c) => c,
            None => "deadline",
        };
        assert!(
            log.contains(needle),
            "{mode}: the log does not say {needle}"
        );
        fake.clear_faults();
        e.eventually(Duration::from_secs(45), |m| {
            (health(m, "stale", inst) == Some(0.0)
                && health(m, "up", inst) == Some(1.0)
                && lag(m, "ready_messages", "T1", "G1") == Some(served as f64))
            .then_some(())
        });
    }
    assert_eq!(fake.stats()["wire_mismatch"], 0);
}

#[test]
fn a_lasting_failure_is_one_log_line_and_its_end_another_not_one_per_cycle() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-quiet";
    let g = json!({"topics": {"T1": {"ready": 1, "inflight": 0, "delivery_duration": 1}}});
    fake.state(world(inst, json!({"G1": g})));
    let e = exporter(&fake, inst, &[]);
    fake.fault(
        json!({"action": "GetConsumerGroupLag", "group": "G1", "mode": "http_500", "count": -1}),
    );
    // Eight one-second cycles, each failing.
    let cycles = |m: &Metrics| {
        counter(
            m,
            "rocketmq_exporter_errors_total",
            &[("cause", "remote_error")],
        )
    };
    e.eventually(WAIT, |m| (cycles(m) >= 8.0).then_some(()));
    fake.clear_faults();
    e.eventually(WAIT, |m| {
        (health(m, "stale", inst) == Some(0.0)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = e.log_text();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("InternalError"), 1, "{log}");
    assert_eq!(lines("recovered: no more remote_error errors"), 1, "{log}");
    // The cycle line: at info when the series count changes (first cycle), not every cycle.
    assert!(lines("collection cycle done") <= 2, "{log}");
}

#[test]
fn a_throttled_answer_with_retry_after_pauses_every_call_for_that_long() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-retry";
    fake.state(world(
        inst,
        numbered(
            20,
            |i| json!({"topics": {"T": {"ready": i, "inflight": 0, "delivery_duration": 1}}}),
        ),
    ));
    let e = exporter(&fake, inst, &["--apsaramq-connections-refresh", "0"]);
    e.eventually(WAIT, |m| {
        (health(m, "unread_groups", inst) == Some(0.0)).then_some(())
    });
    fake.fault(json!({"action": "GetConsumerGroupLag", "group": "G003", "mode": "throttle", "count": 1, "retry_after_ms": 3000}));
    let total = |s: &Value| -> u64 {
        s["requests"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    let start = Instant::now();
    let at_hit = loop {
        let s = fake.stats();
        if s["fault_hits"].as_object().is_some_and(|h| !h.is_empty()) {
            break total(&s);
        }
        assert!(start.elapsed() < WAIT, "the fault was never hit: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Without the pause the exporter sends ~21 requests a second. The pause is 3 s ± 20 %, and the
    // hit was seen at most ~60 ms after it happened; at most the calls already in flight land.
    std::thread::sleep(Duration::from_millis(2200));
    let after = total(&fake.stats());
    assert!(
        after - at_hit <= 4,
        "{} requests during the server's retry-after",
        after - at_hit
    );
    e.eventually(WAIT, |m| {
        (counter(
            m,
            "rocketmq_exporter_api_errors_total",
            &[("code", "Throttling.User")],
        ) == 1.0
            && health(m, "stale", inst) == Some(0.0))
        .then_some(())
    });
    assert!(
        total(&fake.stats()) > after + 10,
        "the exporter did not resume"
    );
}

#[test]
fn a_group_deleted_between_listing_and_lag_read_is_dropped_without_failing() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-race";
    let g = json!({"topics": {"T": {"ready": 4, "inflight": 0, "delivery_duration": 1}}});
    fake.state(world(inst, json!({"G1": g.clone(), "G2": g.clone()})));
    let e = exporter(&fake, inst, &[]);
    e.eventually(WAIT, |m| {
        (lag(m, "ready_messages", "T", "G2") == Some(4.0)).then_some(())
    });
    // Listed, but its lag read says it is gone: every time, until the fault is cleared.
    fake.fault(
        json!({"action": "GetConsumerGroupLag", "group": "G2", "mode": "not_found", "count": -1}),
    );
    e.eventually(WAIT, |m| {
        (lag(m, "ready_messages", "T", "G2").is_none()
            && counter(
                m,
                "rocketmq_exporter_api_errors_total",
                &[("code", "ConsumerGroup.NotFound")],
            ) > 0.0)
            .then_some(())
    });
    for _ in 0..3 {
        let m = e.metrics();
        assert_eq!(lag(&m, "ready_messages", "T", "G1"), Some(4.0));
        assert_eq!(
            health(&m, "up", inst),
            Some(1.0),
            "a vanished group is no failure"
        );
        assert_eq!(health(&m, "stale", inst), Some(0.0));
        assert!(
            m.find("rocketmq_exporter_errors_total", &[]).is_empty(),
            "{}",
            m.text
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    fake.clear_faults();
    e.eventually(WAIT, |m| {
        (lag(m, "ready_messages", "T", "G2") == Some(4.0)).then_some(())
    });
}

#[test]
fn a_small_budget_reads_every_group_in_rotation_and_says_how_old_the_oldest_is() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-budget";
    fake.state(world(
        inst,
        numbered(
            120,
            |i| json!({"topics": {"T": {"ready": i, "inflight": 1, "delivery_duration": 1}}}),
        ),
    ));
    // 30 requests a second with a 1 s cycle: about 30 lag reads per cycle for 120 groups.
    let e = exporter(
        &fake,
        inst,
        &[
            "--apsaramq-qps",
            "30",
            "--apsaramq-connections-refresh",
            "0",
        ],
    );
    let first = e.eventually(WAIT, |m| {
        health(m, "unread_groups", inst).filter(|n| *n > 0.0)
    });
    assert!(first < 120.0, "no group read in the first cycle");
    let m = e.eventually(WAIT, |m| {
        (health(m, "unread_groups", inst) == Some(0.0)).then(|| m.text.clone())
    });
    let m = Metrics::parse(&m);
    for i in [0, 59, 119] {
        assert_eq!(
            lag(&m, "ready_messages", "T", &format!("G{i:03}")),
            Some(i as f64)
        );
    }
    // Steady state: every group is re-read about every 4–5 s; the oldest number says so.
    std::thread::sleep(Duration::from_secs(6));
    let m = e.metrics();
    let age = health(&m, "oldest_value_age_seconds", inst).unwrap();
    assert!((2.0..9.0).contains(&age), "oldest value age {age}");
    assert_eq!(health(&m, "up", inst), Some(1.0));
    let s = fake.stats();
    let peak = s["max_requests_in_any_1s"].as_u64().unwrap();
    // A full bucket (30) plus a second's refill (30) is the most any second can see.
    assert!(
        peak <= 61,
        "{peak} requests in one second with a budget of 30/s"
    );
    assert_eq!(s["throttled"], 0);
    assert_clean(&fake);

    // Served at a QPS limit below the budget: throttled answers make it back off, and it still
    // gets through every group.
    fake.patch(json!({"qps_limit": 12}));
    std::thread::sleep(Duration::from_secs(8));
    let m = e.metrics();
    assert!(
        counter(
            &m,
            "rocketmq_exporter_errors_total",
            &[("cause", "throttled")]
        ) > 0.0
    );
    fake.patch(json!({"groups": {inst: {"G000": {"topics": {"T": {"ready": 500, "inflight": 1, "delivery_duration": 1}}}}}}));
    e.eventually(Duration::from_secs(90), |m| {
        (lag(m, "ready_messages", "T", "G000") == Some(500.0)).then_some(())
    });
    // The budget settles under the server's limit instead of collapsing under ever longer
    // pauses: at least 60 % of the 12/s limit gets through.
    let answered = || {
        let s = fake.stats();
        s["ok"]
            .as_object()
            .map(|o| o.values().filter_map(Value::as_u64).sum::<u64>())
            .unwrap_or(0)
    };
    let (t0, n0) = (Instant::now(), answered());
    std::thread::sleep(Duration::from_secs(20));
    let rate = (answered() - n0) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        rate >= 0.6 * 12.0,
        "{rate:.1} answered requests/s against a limit of 12/s"
    );
}

#[test]
fn in_rotation_online_clients_are_still_read_and_the_group_list_is_read_once_a_minute() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-rotate";
    fake.state(world(inst, numbered(120, |i| json!({"topics": {"T": {"ready": i, "inflight": 0, "delivery_duration": 1}}, "connections": i % 4 + 1}))));
    // 30 requests a second, 1 s cycles, 120 groups: lag reads alone need 4 cycles.
    let e = exporter(
        &fake,
        inst,
        &[
            "--apsaramq-qps",
            "30",
            "--apsaramq-connections-refresh",
            "5",
        ],
    );
    let m = e.eventually(Duration::from_secs(90), |m| {
        (m.find("rocketmq_consumer_connections", &[]).len() == 120).then(|| m.text.clone())
    });
    let m = Metrics::parse(&m);
    for i in [0, 1, 2, 3, 77, 119] {
        assert_eq!(
            lag(&m, "connections", "T", &format!("G{i:03}")),
            Some((i % 4 + 1) as f64)
        );
    }
    let cycles = |m: &Metrics| counter(m, "rocketmq_exporter_collections_total", &[]);
    let lists = || {
        fake.stats()["ok"]["ListConsumerGroups"]
            .as_u64()
            .unwrap_or(0)
    };
    let (c0, l0) = (cycles(&e.metrics()), lists());
    std::thread::sleep(Duration::from_secs(20));
    let (c1, l1) = (cycles(&e.metrics()), lists());
    assert!(c1 - c0 >= 15.0, "{c0} -> {c1} cycles");
    assert!(
        l1 - l0 <= 2,
        "{} group listings in {} rotating cycles",
        l1 - l0,
        c1 - c0
    );
    // Online clients keep being refreshed while lag rotates.
    fake.patch(json!({"groups": {inst: {"G007": {"topics": {"T": {"ready": 7, "inflight": 0, "delivery_duration": 1}}, "connections": 9}}}}));
    e.eventually(Duration::from_secs(60), |m| {
        (lag(m, "connections", "T", "G007") == Some(9.0)).then_some(())
    });
    assert_clean(&fake);
}

#[test]
fn one_process_reads_instances_of_two_regions_by_list_and_by_tag_beside_an_apache_cluster() {
    // Region cn-hangzhou: instances found by tag (env=prod and RUNNING); cn-shanghai: one listed.
    let east = FakeOpenApi::start();
    let west = FakeOpenApi::start();
    let g = |ready: u64| json!({"topics": {"T": {"ready": ready, "inflight": 1, "delivery_duration": 2}}, "connections": 1});
    east.state(json!({"access_keys": {AK: SK}, "instances": {
        "rmq-cn-prod1": {"region": "cn-hangzhou", "status": "RUNNING", "tags": {"env": "prod"}, "groups": {"G1": g(11)}},
        "rmq-cn-prod2": {"region": "cn-hangzhou", "status": "RUNNING", "tags": {"env": "prod", "team": "pay"}, "groups": {"G2": g(22)}},
        "rmq-cn-dev1": {"region": "cn-hangzhou", "status": "RUNNING", "tags": {"env": "dev"}, "groups": {"G3": g(33)}},
        "rmq-cn-prod3": {"region": "cn-hangzhou", "status": "DELETING", "tags": {"env": "prod"}, "groups": {"G4": g(44)}},
    }}));
    west.state(json!({"access_keys": {AK: SK}, "instances": {
        "rmq-cn-west1": {"region": "cn-shanghai", "status": "RUNNING", "groups": {"G5": g(55), "GID_skip": g(1)}},
    }}));
    // A real Apache RocketMQ 5.3.3 broker with one group 4 messages behind.
    let rig = support::Rig::start(support::RigOptions {
        version: "5.3.3",
        brokers: 1,
        slave: false,
        acl: false,
    });
    rig.produce("APACHE_T", 8, 4);
    rig.loadgen(&[
        "groups", "--count", "1", "--prefix", "APACHE_G", "--topic", "APACHE_T", "--lag", "1",
    ]);

    let file = support::scratch().join(format!("{}.toml", support::name("several")));
    std::fs::write(
        &file,
        format!(
            r#"interval_seconds = 1
deadline_seconds = 1

[[apsaramq]]
discover = true
discover_tags = "env=prod"
region = "cn-hangzhou"
endpoint = "{}"

[[apsaramq]]
instance = "rmq-cn-west1"
region = "cn-shanghai"
endpoint = "{}"
group_deny = "^GID_skip$"

[[clusters]]
namesrv = "{}"
instance_id = "apache-a"
"#,
            east.url(),
            west.url(),
            rig.namesrv()
        ),
    )
    .unwrap();
    let e = Exporter::start_with_env(
        &["--config", file.to_str().unwrap()],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK),
        ],
    );
    let ready = |m: &Metrics, inst: &str, group: &str| {
        m.one(
            "rocketmq_consumer_ready_messages",
            &[("instance_id", inst), ("consumer_group", group)],
        )
    };
    let m = e.eventually(WAIT, |m| {
        (ready(m, "apache-a", "APACHE_G0") == Some(4.0)
            && ready(m, "rmq-cn-prod1", "G1").is_some()
            && ready(m, "rmq-cn-prod2", "G2").is_some()
            && ready(m, "rmq-cn-west1", "G5").is_some())
        .then(|| m.text.clone())
    });
    let m = Metrics::parse(&m);
    assert_eq!(ready(&m, "rmq-cn-prod1", "G1"), Some(11.0));
    assert_eq!(ready(&m, "rmq-cn-prod2", "G2"), Some(22.0));
    assert_eq!(ready(&m, "rmq-cn-west1", "G5"), Some(55.0));
    // Not tagged env=prod, not RUNNING, denied by its table's filter.
    assert!(m
        .find(
            "rocketmq_consumer_ready_messages",
            &[("instance_id", "rmq-cn-dev1")]
        )
        .is_empty());
    assert!(m
        .find(
            "rocketmq_consumer_ready_messages",
            &[("instance_id", "rmq-cn-prod3")]
        )
        .is_empty());
    assert_eq!(ready(&m, "rmq-cn-west1", "GID_skip"), None);
    for inst in ["rmq-cn-prod1", "rmq-cn-prod2", "rmq-cn-west1"] {
        assert_eq!(health(&m, "up", inst), Some(1.0), "{inst}");
    }
    assert_eq!(
        m.one("rocketmq_exporter_up", &[("kind", "apsaramq_discovery")]),
        Some(1.0)
    );
    assert_eq!(
        m.one("rocketmq_exporter_up", &[("kind", "namesrv")]),
        Some(1.0)
    );
    assert_clean(&east);
    assert_clean(&west);
    assert!(east.stats()["ok"]["ListInstances"].as_u64().unwrap() >= 1);
    assert!(west.stats()["requests"].get("ListInstances").is_none());
}

fn oidc_world(inst: &str, token: &str, lifetime: u64) -> Value {
    let mut w = world(
        inst,
        json!({"G": {"topics": {"T": {"ready": 7, "inflight": 2, "delivery_duration": 1}}, "connections": 1}}),
    );
    w["access_keys"] = json!({});
    w["sts"] = json!({"role_arn": "acs:ram::1:role/exporter", "oidc_provider_arn": "acs:ram::1:oidc-provider/ack", "oidc_token": token, "lifetime_seconds": lifetime});
    w["ecs"] = json!({"role": "exporter-role", "imdsv2_only": true, "lifetime_seconds": lifetime});
    w
}

/// Polls for `how_long`: every cycle must be up, and no error may be counted.
fn assert_no_failed_cycle(e: &Exporter, inst: &str, how_long: Duration) {
    let start = Instant::now();
    while start.elapsed() < how_long {
        let m = e.metrics();
        assert_eq!(
            health(&m, "up", inst),
            Some(1.0),
            "a failed cycle:\n{}",
            m.text
        );
        assert!(
            m.find("rocketmq_exporter_errors_total", &[]).is_empty(),
            "{}",
            m.text
        );
        assert_eq!(lag(&m, "lag_messages", "T", "G"), Some(9.0));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rrsa_credentials_are_refreshed_before_they_expire_with_no_failed_cycle() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-rrsa";
    fake.state(oidc_world(inst, "oidc-token-secret-1", 9));
    let token = support::scratch().join(support::name("oidc-token"));
    std::fs::write(&token, "oidc-token-secret-1\n").unwrap();
    let url = fake.url();
    let e = Exporter::start_with_env(
        &[
            "--apsaramq-instance",
            inst,
            "--region",
            "cn-hangzhou",
            "--interval",
            "1",
            "--deadline",
            "1",
            "--apsaramq-endpoint",
            &url,
            "--apsaramq-sts-endpoint",
            &url,
            "--log-level",
            "debug",
        ],
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/exporter"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/ack",
            ),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.to_str().unwrap()),
        ],
    );
    e.eventually(WAIT, |m| {
        (lag(m, "lag_messages", "T", "G") == Some(9.0)).then_some(())
    });
    // 9 s credentials are refreshed 3 s before they expire: three or four times in 25 s, and
    // the kubelet's rotation of the token file is picked up by the next refresh.
    assert_no_failed_cycle(&e, inst, Duration::from_secs(10));
    std::fs::write(&token, "oidc-token-secret-2\n").unwrap();
    fake.patch(json!({"sts": {"oidc_token": "oidc-token-secret-2"}}));
    assert_no_failed_cycle(&e, inst, Duration::from_secs(15));
    let s = fake.stats();
    assert!(s["sts_calls"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["expired_token_rejections"], 0, "{s}");
    assert!(s["oidc_tokens_seen"]
        .as_array()
        .unwrap()
        .contains(&json!("oidc-token-secret-2")));
    assert!(s["security_tokens_seen"].as_u64().unwrap() >= 3, "{s}");
    assert_clean(&fake);
    // The OIDC token is a secret too: not in a debug log, not on /metrics.
    let (log, page) = (e.log_text(), e.metrics().text);
    for secret in ["oidc-token-secret-1", "oidc-token-secret-2"] {
        assert!(
            !log.contains(secret) && !page.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn the_ecs_ram_role_works_with_a_metadata_service_that_requires_imdsv2() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-ecs";
    fake.state(oidc_world(inst, "unused", 9));
    let url = fake.url();
    let e = Exporter::start_with_env(
        &[
            "--apsaramq-instance",
            inst,
            "--region",
            "cn-hangzhou",
            "--interval",
            "1",
            "--deadline",
            "1",
            "--apsaramq-endpoint",
            &url,
            "--apsaramq-metadata-endpoint",
            &url,
        ],
        &[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "false")],
    );
    e.eventually(WAIT, |m| {
        (lag(m, "lag_messages", "T", "G") == Some(9.0)).then_some(())
    });
    assert_no_failed_cycle(&e, inst, Duration::from_secs(12));
    let s = fake.stats();
    assert!(s["ecs_token_requests"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["ecs_requests_without_token"], 0, "{s}");
    assert!(s["security_tokens_seen"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["expired_token_rejections"], 0, "{s}");
    assert!(e.log_text().contains("ECS RAM role"), "{}", e.log_text());
}

#[test]
fn missing_credentials_are_one_clear_line_at_start() {
    let out = support::isolated(Command::new(bin("rmq-exporter")))
        .args([
            "--apsaramq-instance",
            "rmq-cn-x",
            "--region",
            "cn-hangzhou",
            "--once",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no Alibaba Cloud credentials found")
            && err.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{err}"
    );
}

#[test]
fn secrets_appear_in_no_log_line_and_not_on_metrics() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-secret";
    fake.state(world(
        inst,
        json!({"G": {"topics": {"T": {"ready": 1, "inflight": 0, "delivery_duration": 1}}}}),
    ));
    // A signature failure and a throttle on top, so error paths are logged too.
    fake.fault(json!({"action": "GetConsumerGroupLag", "mode": "bad_signature", "count": 2}));
    let url = fake.url();
    let e = Exporter::start_with_env(
        &[
            "--apsaramq-instance",
            inst,
            "--region",
            "cn-hangzhou",
            "--interval",
            "1",
            "--deadline",
            "1",
            "--apsaramq-endpoint",
            &url,
            "--log-level",
            "debug",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "STS-TOKEN-very-secret"),
        ],
    );
    e.eventually(WAIT, |m| {
        (counter(m, "rocketmq_exporter_errors_total", &[("cause", "auth")]) > 0.0).then_some(())
    });
    let (log, page) = (e.log_text(), e.metrics().text);
    assert!(log.contains("SignatureDoesNotMatch"), "{log}");
    for secret in [SK, "STS-TOKEN-very-secret"] {
        assert!(!log.contains(secret), "{secret} is in the log");
        assert!(!page.contains(secret), "{secret} is on /metrics");
    }
}

/// Percent-decoding of a path segment or a form-encoded query part (`+` is a space there).
fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn signatures_equal_the_official_python_sdks() {
    let out = Command::new("bash")
        .arg(support::repo_root().join("tests/rig/openapi_sdk.sh"))
        .output()
        .unwrap();
    let vectors = support::must(out, "tests/rig/openapi_sdk.sh");
    let mut checked = BTreeMap::<String, usize>::new();
    for line in vectors.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let raw_path = v["raw_path"].as_str().unwrap();
        // The path: our encoding of the decoded segments is the SDK's, byte for byte.
        let segments: Vec<String> = raw_path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| decode(s, false))
            .collect();
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        assert_eq!(sign::canonical_path(&refs), raw_path);
        // The query: the SDK sends it form-encoded in its own order and signs the sorted RFC 3986 form.
        let raw_query = v["raw_query"].as_str().unwrap();
        let pairs: Vec<(String, String)> = raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k, true), decode(v, true))
            })
            .collect();
        let pair_refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let query = sign::canonical_query(&pair_refs);
        let headers = v["headers"].as_object().unwrap();
        let signed: Vec<(&str, &str)> = v["signed_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let h = h.as_str().unwrap();
                (h, headers[h].as_str().unwrap())
            })
            .collect();
        let (names, signature) = sign::signature(
            v["access_key_secret"].as_str().unwrap(),
            v["method"].as_str().unwrap(),
            raw_path,
            &query,
            &signed,
            v["body_sha256"].as_str().unwrap(),
        );
        assert_eq!(signature, v["signature"].as_str().unwrap(), "{line}");
        assert!(v["authorization"]
            .as_str()
            .unwrap()
            .contains(&format!("SignedHeaders={names},")));
        *checked
            .entry(format!(
                "{}/{}",
                v["action"].as_str().unwrap(),
                v["credentials"].as_str().unwrap()
            ))
            .or_default() += 1;
    }
    // Every action with plain and STS credentials, names that need encoding among them.
    for action in [
        "GetConsumerGroupLag",
        "ListConsumerGroups",
        "ListConsumerConnections",
        "ListInstances",
    ] {
        for creds in ["plain", "sts"] {
            assert!(
                checked.contains_key(&format!("{action}/{creds}")),
                "{checked:?}"
            );
        }
    }
    assert!(checked["GetConsumerGroupLag/sts"] >= 7, "{checked:?}");
}

#[test]
fn the_arms_guide_end_to_end_prometheus_query_and_sidecar_scaling() {
    let fake = FakeOpenApi::start();
    let inst = "rmq-cn-guide1";
    let keda = |ready: u64, inflight: u64| json!({"topics": {"keda": {"ready": ready, "inflight": inflight, "delivery_duration": 4}}, "connections": 2});
    fake.state(world(inst, json!({
        "GID_keda": keda(60, 30),
        "GID_other": {"topics": {"orders": {"ready": 1000, "inflight": 0, "delivery_duration": 9}}},
    })));
    let e = exporter(&fake, inst, &[]);
    e.eventually(WAIT, |m| {
        (lag(m, "lag_messages", "keda", "GID_keda") == Some(90.0)).then_some(())
    });
    let (prom, _) = start_prometheus(&e.addr);
    // The guide's query, exactly, with its instance id and topic.
    let query = format!(
        "sum({{__name__=~\"rocketmq_consumer_ready_messages|rocketmq_consumer_inflight_messages\",instance_id=\"{inst}\",topic=~\"keda\"}}) by (consumer_group)"
    );
    let start = Instant::now();
    loop {
        let (status, body) =
            http_get(&prom, &format!("/api/v1/query?query={}", urlencode(&query))).unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array().unwrap();
        if result.len() == 1 {
            assert_eq!(result[0]["metric"]["consumer_group"], "GID_keda");
            assert_eq!(result[0]["value"][1], "90");
            break;
        }
        assert!(start.elapsed() < WAIT, "{body}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The guide's ScaledObject with the sidecar (no Kubernetes: --simulate), short windows.
    let yaml = format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: prometheus-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: sample-app
  pollingInterval: 1
  maxReplicaCount: 10
  minReplicaCount: 2
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 5
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://{prom}
      metricName: rocketmq_consumer_inflight_messages
      query: '{query}'
      threshold: '30'
"#
    );
    let file = support::scratch().join(support::name("guide.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = support::scratch().join(support::name("sidecar.log"));
    let mut sidecar = Command::new(bin("rmq-sidecar"))
        .args(["--hpa-sync-period-seconds", "1"])
        .args([
            "--config",
            file.to_str().unwrap(),
            "--simulate",
            "--listen",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let replicas = |want: f64| {
        let start = Instant::now();
        loop {
            if let Ok((200, body)) = http_get(&addr, "/metrics") {
                let m = Metrics::parse(&body);
                if m.one("rmq_sidecar_current_replicas", &[]) == Some(want) {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "replicas never {want}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    replicas(3.0);
    fake.patch(json!({"groups": {inst: {"GID_keda": keda(5000, 100)}}}));
    replicas(10.0);
    fake.patch(json!({"groups": {inst: {"GID_keda": keda(0, 0)}}}));
    replicas(2.0);
    let _ = sidecar.kill();
    let _ = sidecar.wait();
    assert_clean(&fake);
}
