//! The exporter's KEDA external scaler (gRPC, `exporter/proto/externalscaler.proto`) against a real
//! Apache RocketMQ 5.3.3 broker, called by a Python grpcio client generated from the same .proto
//! (`tests/rig/keda_grpc.sh`): bad metadata is INVALID_ARGUMENT naming the key, the numbers are the
//! broker's backlog, StreamIsActive flips when the backlog appears and when it drains, capAtQueues
//! and excludePersistentLag shape the value, and the scaler serves mutual TLS.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{
    exporter_for, free_port, name, rig_script, scratch, Background, Exporter, Rig, RigOptions,
};

const WAIT: Duration = Duration::from_secs(60);

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        Rig::start(RigOptions {
            version: "5.3.3",
            brokers: 1,
            slave: false,
            acl: false,
        })
    })
}

/// One unary call; returns the client's JSON line.
fn call(addr: &str, method: &str, meta: &[(&str, &str)], extra: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new("bash");
    cmd.arg(rig_script("keda_grpc.sh")).args([addr, method]);
    for (k, v) in meta {
        cmd.args(["--meta", &format!("{k}={v}")]);
    }
    let out = cmd.args(extra).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "keda_grpc.sh {method}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ok(v: &serde_json::Value) -> &serde_json::Value {
    assert_eq!(v["code"], "OK", "{v}");
    &v["response"]
}

/// GetMetrics' value (metricValueFloat).
fn value(addr: &str, meta: &[(&str, &str)]) -> f64 {
    let r = call(addr, "GetMetrics", meta, &[]);
    let r = ok(&r);
    r["metricValues"][0]["metricValueFloat"].as_f64().unwrap()
}

fn eventually_value(addr: &str, meta: &[(&str, &str)], want: f64) {
    let deadline = Instant::now() + WAIT;
    let mut last = f64::NAN;
    while Instant::now() < deadline {
        last = value(addr, meta);
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("GetMetrics stayed {last}, wanted {want}");
}

fn scaler_exporter(groups: &[&str], extra: &[&str]) -> (Exporter, String) {
    let keda = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--keda-listen", keda.as_str(), "--instance-id", "rig"];
    args.extend_from_slice(extra);
    (exporter_for(rig().namesrv(), groups, &args), keda)
}

#[test]
fn bad_metadata_is_invalid_argument_naming_the_key_on_every_method() {
    let g = name("G");
    let (_exp, keda) = scaler_exporter(&[&g], &[]);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("threshold", "5")],
            "scalerMetadata.consumerGroup: is required",
        ),
        (
            &[("consumerGroup", "g")],
            "scalerMetadata.threshold: is required",
        ),
        (
            &[("consumerGroup", "g"), ("threshold", "abc")],
            "scalerMetadata.threshold: `abc` is not a number",
        ),
        (
            &[("consumerGroup", "g"), ("threshold", "0")],
            "scalerMetadata.threshold: must be > 0",
        ),
        (
            &[
                ("consumerGroup", "g"),
                ("threshold", "5"),
                ("activationThreshold", "x"),
            ],
            "scalerMetadata.activationThreshold",
        ),
        (
            &[("consumerGroup", "g"), ("threshold", "5"), ("topic", "(")],
            "scalerMetadata.topic: `(` is not a regular expression",
        ),
        (
            &[
                ("consumerGroup", "g"),
                ("threshold", "5"),
                ("capAtQueues", "maybe"),
            ],
            "scalerMetadata.capAtQueues: `maybe` is not a boolean",
        ),
        (
            &[
                ("consumerGroup", "g"),
                ("threshold", "5"),
                ("consumergroup", "g"),
            ],
            "scalerMetadata.consumergroup: unknown key",
        ),
    ];
    let mut checked = 0;
    for (meta, want) in cases {
        for method in ["IsActive", "GetMetricSpec", "GetMetrics", "StreamIsActive"] {
            let r = if method == "StreamIsActive" {
                let out = call(&keda, method, meta, &["--seconds", "5"]);
                serde_json::json!({"code": out["end"], "details": out["details"]})
            } else {
                call(&keda, method, meta, &[])
            };
            assert_eq!(r["code"], "INVALID_ARGUMENT", "{method} {meta:?}: {r}");
            let details = r["details"].as_str().unwrap();
            assert!(
                details.starts_with(want),
                "{method} {meta:?}: {details:?} does not start with {want:?}"
            );
            checked += 1;
        }
    }
    // KEDA's own keys are accepted.
    let meta = [
        ("consumerGroup", g.as_str()),
        ("threshold", "5"),
        ("scalerAddress", keda.as_str()),
        ("enableTLS", "false"),
    ];
    ok(&call(&keda, "IsActive", &meta, &[]));
    // A metric name the spec did not announce.
    let r = call(&keda, "GetMetrics", &meta, &["--metric", "other"]);
    assert_eq!(r["code"], "NOT_FOUND", "{r}");
    println!("{checked} bad metadata calls refused with the key named; KEDA's keys accepted");
}

#[test]
fn numbers_are_the_brokers_backlog_and_stream_is_active_flips_both_ways() {
    let rig = rig();
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 10, 8);
    rig.consume(&g, &t, 10);
    let (_exp, keda) = scaler_exporter(&[&g], &[]);
    let meta = [
        ("consumerGroup", g.as_str()),
        ("threshold", "30"),
        ("activationThreshold", "5"),
        ("topic", "T_.*"),
        ("instanceId", "rig"),
        ("scalerAddress", keda.as_str()),
    ];
    let spec = call(&keda, "GetMetricSpec", &meta, &[]);
    let spec = &ok(&spec)["metricSpecs"][0];
    assert_eq!(spec["metricName"], "rocketmq-consumer-backlog");
    assert_eq!(spec["targetSizeFloat"], 30.0);
    eventually_value(&keda, &meta, 0.0);
    assert_eq!(ok(&call(&keda, "IsActive", &meta, &[]))["result"], false);

    let mut cmd = Command::new("bash");
    cmd.arg(rig_script("keda_grpc.sh"))
        .args([keda.as_str(), "StreamIsActive", "--seconds", "180"]);
    for (k, v) in &meta {
        cmd.args(["--meta", &format!("{k}={v}")]);
    }
    let mut stream = Background {
        child: cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    stream.wait_for_line("\"result\": false", WAIT);

    rig.produce(&t, 90, 8);
    let appeared = Instant::now();
    let line = stream.wait_for_line("\"result\": true", WAIT);
    println!(
        "StreamIsActive: {line} ({:?} after the produce returned)",
        appeared.elapsed()
    );
    eventually_value(&keda, &meta, 90.0);
    assert_eq!(ok(&call(&keda, "IsActive", &meta, &[]))["result"], true);
    // Another instance or topic pattern sees nothing of it.
    let other = [
        ("consumerGroup", g.as_str()),
        ("threshold", "30"),
        ("instanceId", "elsewhere"),
    ];
    assert_eq!(value(&keda, &other), 0.0);
    let other = [
        ("consumerGroup", g.as_str()),
        ("threshold", "30"),
        ("topic", "X.*"),
    ];
    assert_eq!(value(&keda, &other), 0.0);
    // ignoreNullValues=false: a group with no series is an error, not 0.
    let missing = [
        ("consumerGroup", "no-such-group"),
        ("threshold", "30"),
        ("ignoreNullValues", "false"),
    ];
    assert_eq!(
        call(&keda, "GetMetrics", &missing, &[])["code"],
        "NOT_FOUND"
    );

    rig.consume(&g, &t, 90);
    let line = stream.wait_for_line("\"result\": false", WAIT);
    println!("StreamIsActive after draining: {line}");
    eventually_value(&keda, &meta, 0.0);
}

#[test]
fn cap_at_queues_and_exclude_persistent_lag_shape_the_value_not_the_activation() {
    let rig = rig();
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 4, 4);
    rig.consume(&g, &t, 4);
    rig.produce(&t, 40, 4);
    let (_exp, keda) = scaler_exporter(&[&g], &["--queue-metrics"]);
    let base = [("consumerGroup", g.as_str()), ("threshold", "2")];
    eventually_value(&keda, &base, 40.0);
    // 4 queues × threshold 2 = 8.
    let capped = [
        ("consumerGroup", g.as_str()),
        ("threshold", "2"),
        ("capAtQueues", "true"),
    ];
    assert_eq!(value(&keda, &capped), 8.0);
    // No consumer runs: every lagging queue's committed offset stays put, so once a later cycle
    // has seen the same offsets the whole lag is persistent (0 for scaling, still active).
    let persistent = [
        ("consumerGroup", g.as_str()),
        ("threshold", "2"),
        ("excludePersistentLag", "true"),
    ];
    assert_eq!(
        value(&keda, &persistent),
        40.0,
        "first sight of the offsets counts"
    );
    eventually_value(&keda, &persistent, 0.0);
    assert_eq!(
        ok(&call(&keda, "IsActive", &persistent, &[]))["result"],
        true
    );
    println!("capAtQueues 40 → 8; excludePersistentLag 40 → 0 while IsActive stays true");
}

#[test]
fn no_data_is_unavailable_not_zero() {
    // A name server nobody listens on: the exporter finishes cycles with nothing read.
    let keda = format!("127.0.0.1:{}", free_port());
    let dead = format!("127.0.0.1:{}", free_port());
    let _exp = Exporter::start(&[
        "--namesrv",
        &dead,
        "--interval",
        "1",
        "--deadline",
        "1",
        "--keda-listen",
        &keda,
    ]);
    let meta = [("consumerGroup", "G"), ("threshold", "5")];
    for method in ["IsActive", "GetMetrics"] {
        let r = call(&keda, method, &meta, &[]);
        assert_eq!(r["code"], "UNAVAILABLE", "{method}: {r}");
        assert!(r["details"].as_str().unwrap().contains("is down"), "{r}");
    }
    println!("a group without series while the name server is down is UNAVAILABLE");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certs(dir: &Path) {
    support::certs::ca(dir);
    support::certs::leaf(
        dir,
        "server",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:rmq-exporter\nextendedKeyUsage=serverAuth\n",
    );
    support::certs::leaf(dir, "client", "client", "extendedKeyUsage=clientAuth\n");
}

#[test]
fn the_scaler_serves_mutual_tls() {
    let dir = scratch().join(name("keda-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir);
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let g = name("G");
    let (_exp, keda) = scaler_exporter(
        &[&g],
        &[
            "--keda-tls-cert-file",
            &p("server.crt"),
            "--keda-tls-key-file",
            &p("server.key"),
            "--keda-tls-client-ca-file",
            &p("ca.crt"),
        ],
    );
    let meta = [("consumerGroup", g.as_str()), ("threshold", "5")];
    let with_cert = [
        "--ca",
        &p("ca.crt"),
        "--cert",
        &p("client.crt"),
        "--key",
        &p("client.key"),
    ];
    let deadline = Instant::now() + WAIT;
    loop {
        // The first cycle may not have ended yet.
        let r = call(&keda, "IsActive", &meta, &with_cert);
        if r["code"] == "OK" {
            assert_eq!(r["response"]["result"], false);
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let no_cert = call(&keda, "IsActive", &meta, &["--ca", &p("ca.crt")]);
    assert_eq!(
        no_cert["code"], "UNAVAILABLE",
        "no client certificate: {no_cert}"
    );
    let plain = call(&keda, "IsActive", &meta, &[]);
    assert_eq!(plain["code"], "UNAVAILABLE", "plaintext: {plain}");
    println!("mutual TLS: client certificate accepted; none, and plaintext, refused");
}
