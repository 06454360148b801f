//! End to end: a real Apache RocketMQ 5.3.3 broker → rmq-exporter → rmq-sidecar → a real
//! kube-apiserver, with a real Prometheus for the `prometheus` trigger. The sidecar binary is
//! given KEDA ScaledObjects as users write them, and the Deployments' spec.replicas must follow
//! KEDA + HPA semantics: 3 replicas for 90 messages at threshold 30, the max of 10 under a flood,
//! back to the min of 2 once drained and the scale-down window has passed.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use support::{bin, free_port, name, repo_root, start_prometheus, Exporter, Rig, RigOptions};

const WAIT: Duration = Duration::from_secs(90);

/// The tests share one API server. The test that restarts it takes this for writing around the
/// restart; the others hold it for reading throughout, so their own kubectl calls never meet the
/// outage (their sidecars would ride it out, a test's direct kubectl call would not).
static APISERVER: RwLock<()> = RwLock::new(());

fn apiserver_stays_up() -> RwLockReadGuard<'static, ()> {
    APISERVER.read().unwrap_or_else(|p| p.into_inner())
}

fn rmq() -> &'static Rig {
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

struct Kube {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Kube {
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.env["KUBECTL"])
            .args(["--kubeconfig", &self.env["KUBECONFIG_ADMIN"]])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn replicas(&self, deployment: &str) -> u32 {
        self.kubectl(&[
            "get",
            "deployment",
            deployment,
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .trim()
        .parse()
        .unwrap()
    }

    fn wait_replicas(&self, deployment: &str, want: u32, timeout: Duration) -> Duration {
        let start = Instant::now();
        let mut last = 0;
        while start.elapsed() < timeout {
            last = self.replicas(deployment);
            if last == want {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{deployment}: replicas {last}, expected {want} within {timeout:?}");
    }

    fn restart_apiserver(&self) {
        let _alone = APISERVER.write().unwrap_or_else(|p| p.into_inner());
        let out = Command::new("bash")
            .arg(repo_root().join("tests/rig/kube.sh"))
            .args(["restart-apiserver", "--dir", self.dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn deployment(&self, name: &str, replicas: u32) {
        self.kubectl(&[
            "create",
            "deployment",
            name,
            "--image=registry.invalid/app:1",
            &format!("--replicas={replicas}"),
        ]);
    }
}

fn kube() -> &'static Kube {
    static KUBE: OnceLock<Kube> = OnceLock::new();
    KUBE.get_or_init(|| {
        let dir = support::scratch().join(name("kube"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("bash")
            .arg(repo_root().join("tests/rig/kube.sh"))
            .args([
                "start",
                "--dir",
                dir.to_str().unwrap(),
                "--owner-pid",
                &std::process::id().to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kube.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("kube.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Kube { dir, env }
    })
}

/// The sidecar binary on a ScaledObject file; killed on drop.
struct Sidecar {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl Sidecar {
    fn start(yaml: &str, extra: &[&str]) -> Sidecar {
        let file: PathBuf = support::scratch().join(format!("{}.yaml", name("so")));
        std::fs::write(&file, yaml).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = support::scratch().join(format!("{}.log", name("sidecar")));
        let child = Command::new(bin("rmq-sidecar"))
            .args(["--config", file.to_str().unwrap(), "--listen", &addr])
            // The HPA's clock at the tests' pollingInterval (1 s), like the rig's controller manager.
            .args(["--hpa-sync-period-seconds", "1"])
            .args(["--kubeconfig", &kube().env["KUBECONFIG_ADMIN"]])
            // Each test's sidecar elects itself on its own Lease: tests run side by side.
            .args([
                "--lease-duration-seconds",
                "3",
                "--lease-name",
                &name("lease").to_lowercase().replace('_', "-"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Sidecar { child, addr, log }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scaled_object(name: &str, trigger: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {name}
  namespace: default
spec:
  scaleTargetRef:
    name: {name}
  pollingInterval: 1
  minReplicaCount: 2
  maxReplicaCount: 10
{extra_spec}  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 5
  triggers:
{trigger}"#
    )
}

fn exporter_trigger(exporter: &str, group: &str, topic: &str) -> String {
    format!(
        "  - type: rocketmq-exporter\n    metadata:\n      url: http://{exporter}/metrics\n      consumerGroup: {group}\n      topic: {topic}\n      threshold: '30'\n"
    )
}

fn exporter_for(group: &str) -> Exporter {
    support::exporter_for(rmq().namesrv(), &[group], &["--instance-id", "rig"])
}

#[test]
fn direct_and_prometheus_triggers_scale_like_keda_from_real_backlog() {
    let (rig, kube) = (rmq(), kube());
    let (t, g) = (name("TS"), name("GS"));
    rig.produce(&t, 10, 8);
    rig.consume(&g, &t, 10);
    let exporter = exporter_for(&g);
    let (prom, _) = start_prometheus(&exporter.addr);

    let (direct, via_prom) = (
        name("app-direct").to_lowercase().replace('_', "-"),
        name("app-prom").to_lowercase().replace('_', "-"),
    );
    kube.deployment(&direct, 2);
    kube.deployment(&via_prom, 2);
    // The ARMS guide's query, unchanged but for the instance and topic.
    let query = format!(
        "sum({{__name__=~\"rocketmq_consumer_ready_messages|rocketmq_consumer_inflight_messages\",instance_id=\"rig\",topic=~\"{t}\"}}) by (consumer_group)"
    );
    let prom_trigger = format!(
        "  - type: prometheus\n    metadata:\n      serverAddress: http://{prom}\n      metricName: rocketmq_consumer_inflight_messages\n      query: '{query}'\n      threshold: '30'\n"
    );
    let yaml = format!(
        "{}---\n{}",
        scaled_object(&direct, &exporter_trigger(&exporter.addr, &g, &t), ""),
        scaled_object(&via_prom, &prom_trigger, "")
    );
    let _sidecar = Sidecar::start(&yaml, &[]);

    // 90 messages at threshold 30 → 3 replicas, through either path.
    rig.produce(&t, 90, 8);
    kube.wait_replicas(&direct, 3, WAIT);
    kube.wait_replicas(&via_prom, 3, WAIT);
    // Stable: within the tolerance nothing moves.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kube.replicas(&direct), 3);
    assert_eq!(kube.replicas(&via_prom), 3);

    // The API server restarts mid-run; the sidecar carries on once it is back.
    kube.restart_apiserver();
    // A flood → the max of 10 (the default scale-up policies take a few steps).
    rig.produce(&t, 2000, 8);
    kube.wait_replicas(&direct, 10, WAIT);
    kube.wait_replicas(&via_prom, 10, WAIT);

    // Drained → the min of 2 once the 5 s scale-down window has passed.
    rig.consume(&g, &t, 2090);
    kube.wait_replicas(&direct, 2, WAIT);
    kube.wait_replicas(&via_prom, 2, WAIT);
    let events = kube.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={direct}"),
        "-o",
        "name",
    ]);
    assert!(
        !events.trim().is_empty(),
        "the sidecar records an Event per scale"
    );
}

#[test]
fn sources_down_never_scale_down_and_fallback_applies() {
    let _up = apiserver_stays_up();
    let (rig, kube) = (rmq(), kube());
    let (t, g) = (name("TF"), name("GF"));
    rig.produce(&t, 10, 4);
    rig.consume(&g, &t, 10);
    rig.produce(&t, 120, 4);
    let mut exporter = exporter_for(&g);
    let (prom, prom_dir) = start_prometheus(&exporter.addr);
    let app = |p: &str| name(p).to_lowercase().replace('_', "-");
    let (plain, fallback, via_prom) = (app("app-keep"), app("app-fb"), app("app-pd"));
    for d in [&plain, &fallback, &via_prom] {
        kube.deployment(d, 2);
    }
    let trigger = exporter_trigger(&exporter.addr, &g, &t);
    let query =
        format!("sum(rocketmq_consumer_lag_messages{{consumer_group=\"{g}\",topic=\"{t}\"}})");
    let prom_trigger = format!(
        "  - type: prometheus\n    metadata:\n      serverAddress: http://{prom}\n      query: '{query}'\n      threshold: '30'\n"
    );
    let yaml = format!(
        "{}---\n{}---\n{}",
        scaled_object(&plain, &trigger, ""),
        scaled_object(
            &fallback,
            &trigger,
            "  fallback:\n    failureThreshold: 3\n    replicas: 6\n"
        ),
        scaled_object(&via_prom, &prom_trigger, "")
    );
    let sidecar = Sidecar::start(&yaml, &[]);
    for d in [&plain, &fallback, &via_prom] {
        kube.wait_replicas(d, 4, WAIT);
    }

    // Prometheus goes away, then the exporter: no scale-down without data, however long; the
    // fallback applies where one is configured.
    let stopped = Command::new("bash")
        .arg(repo_root().join("tests/rig/prometheus.sh"))
        .args(["stop", "--dir", prom_dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let _ = exporter.child.kill();
    let _ = exporter.child.wait();
    kube.wait_replicas(&fallback, 6, WAIT);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(kube.replicas(&plain), 4, "never scale down on missing data");
    assert_eq!(
        kube.replicas(&via_prom),
        4,
        "never scale down while Prometheus is down"
    );
    let (_, page) = support::http_get(&sidecar.addr, "/metrics").unwrap();
    assert!(page.contains("rmq_sidecar_source_errors_total"), "{page}");
}

#[test]
fn a_target_managed_by_an_hpa_is_refused() {
    let _up = apiserver_stays_up();
    let kube = kube();
    let app = name("app-hpa").to_lowercase().replace('_', "-");
    kube.deployment(&app, 1);
    kube.kubectl(&[
        "autoscale",
        "deployment",
        &app,
        "--min=1",
        "--max=3",
        "--cpu-percent=80",
    ]);
    let yaml = scaled_object(&app, &exporter_trigger("127.0.0.1:1", "G", "T"), "");
    let mut sidecar = Sidecar::start(&yaml, &[]);
    let status = sidecar.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let log = std::fs::read_to_string(&sidecar.log).unwrap();
    assert!(
        log.contains("HorizontalPodAutoscaler") || log.contains("HPA"),
        "{log}"
    );
    assert!(log.contains(&app), "{log}");
}

/// The decision lines at info, without terminal colours.
fn info_lines(log: &std::path::Path) -> Vec<String> {
    let ansi = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    ansi.replace_all(&std::fs::read_to_string(log).unwrap_or_default(), "")
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("rmq_sidecar::run"))
        .map(str::to_string)
        .collect()
}

/// The sidecar's log at info over a minute of one-second polls of a steady backlog (`--simulate`):
/// nothing per poll; a change of the desired count writes one line.
#[test]
fn a_minute_of_steady_polls_writes_a_handful_of_info_lines_and_a_change_writes_one() {
    let rig = Rig::start(RigOptions {
        version: "5.3.3",
        brokers: 1,
        slave: false,
        acl: false,
    });
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 10, 4);
    rig.consume(&g, &t, 10);
    rig.produce(&t, 90, 4);
    let exp = support::exporter_for(rig.namesrv(), &[&g], &[]);
    let yaml = format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: quiet\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: app\n  pollingInterval: 1\n  minReplicaCount: 1\n  maxReplicaCount: 10\n  triggers:\n  - type: rocketmq-exporter\n    metadata:\n      url: http://{}/metrics\n      consumerGroup: {g}\n      threshold: '30'\n",
        exp.addr
    );
    let file = support::scratch().join(format!("{}.yaml", name("so")));
    std::fs::write(&file, yaml).unwrap();
    let log = support::scratch().join(format!("{}.log", name("sidecar")));
    let mut child = Command::new(bin("rmq-sidecar"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--simulate",
            "--hpa-sync-period-seconds",
            "1",
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Reach 3 replicas (90 / 30), then a steady minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !info_lines(&log).iter().any(|l| l.contains("desired=3")) {
        assert!(
            Instant::now() < deadline,
            "never desired 3:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = info_lines(&log).len();
    std::thread::sleep(Duration::from_secs(60));
    let steady = info_lines(&log).len() - before;
    let polls = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(
        steady <= 3,
        "{steady} info lines in a steady minute:\n{}",
        info_lines(&log)[before..].join("\n")
    );
    // 60 more messages: 150 / 30 = 5 replicas; one line says so.
    rig.produce(&t, 60, 4);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !info_lines(&log).iter().any(|l| l.contains("desired=5")) {
        assert!(
            Instant::now() < deadline,
            "the change to 5 was not logged:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let changes = info_lines(&log)
        .iter()
        .filter(|l| l.contains("desired=5"))
        .count();
    let _ = child.kill();
    let _ = child.wait();
    assert!(changes >= 1);
    println!("steady minute of 1 s polls: {steady} info lines ({polls} log lines in all so far); the change to 5 replicas: {changes} line(s)");
}
