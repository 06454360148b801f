//! The real KEDA chain: keda-operator and keda-adapter v2.21.0 and the HPA controller of
//! kube-controller-manager v1.34.4 (built from the Go module proxy by `tests/rig/keda.sh`), beside
//! the rig's kube-apiserver with the aggregation layer on, scaling Deployments from a real
//! Apache RocketMQ 5.3.3 broker read by the exporter:
//!
//! - the ARMS guide's ScaledObject (stock `prometheus` trigger, its query and threshold) on the
//!   rig's Prometheus: 90 messages → 3 replicas, a flood → 10, drained → 2, with the sidecar on a
//!   twin Deployment deciding the same counts, sampled every second;
//! - the exporter's own KEDA external scaler with `external` and `external-push` triggers,
//!   activating 0 → 1 → N and back to 0 after the cooldown.
//!
//! The controller manager syncs HPAs every second here (`--horizontal-pod-autoscaler-sync-period
//! 1s`) and the sidecar runs the HPA's clock at the same period, to keep the test short; the
//! defaults (15 s) are measured by `bench/keda_chain.sh`.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{bin, free_port, name, repo_root, start_prometheus, Exporter, Rig, RigOptions};

const WAIT: Duration = Duration::from_secs(120);

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

struct Chain {
    env: HashMap<String, String>,
}

fn read_env(path: PathBuf) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An API server, etcd, the controller manager (HPA sync `hpa_sync`) and KEDA.
fn start_chain(hpa_sync: &str) -> Chain {
    let dir = support::scratch().join(name("keda"));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let owner = std::process::id().to_string();
    let rig = repo_root().join("tests/rig");
    let (kube, keda) = (rig.join("kube.sh"), rig.join("keda.sh"));
    script(&[
        kube.to_str().unwrap(),
        "start",
        "--dir",
        d,
        "--owner-pid",
        &owner,
    ]);
    let t = Instant::now();
    script(&[
        keda.to_str().unwrap(),
        "start",
        "--dir",
        d,
        "--hpa-sync",
        hpa_sync,
        "--owner-pid",
        &owner,
    ]);
    println!("KEDA and the controller manager up in {:?}", t.elapsed());
    let mut env = read_env(dir.join("kube.env"));
    env.extend(read_env(dir.join("keda.env")));
    Chain { env }
}

/// One cluster for the tests of this file, HPA sync 1 s.
fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(|| start_chain("1s"))
}

impl Chain {
    fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(&self.env["KUBECTL"])
            .args(["--kubeconfig", &self.env["KUBECONFIG_ADMIN"]])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_in(args, None)
    }

    fn apply(&self, yaml: &str) {
        self.kubectl_in(&["apply", "-f", "-"], Some(yaml));
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

    /// spec.replicas of each deployment, in one call.
    fn replicas(&self, names: &[&str]) -> Vec<u32> {
        let mut args = vec!["get", "deployment"];
        args.extend_from_slice(names);
        args.extend_from_slice(&["-o", "jsonpath={range .items[*]}{.spec.replicas} {end}"]);
        self.kubectl(&args)
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    }
}

/// Samples deployments' spec.replicas about every second until `until` says stop.
struct Sampler {
    samples: Vec<(f64, Vec<u32>)>,
    start: Instant,
}

impl Sampler {
    fn new() -> Self {
        Sampler {
            samples: Vec::new(),
            start: Instant::now(),
        }
    }

    /// Samples until every deployment has `want`, or panics after `timeout`.
    fn until(&mut self, c: &Chain, names: &[&str], want: u32, timeout: Duration) -> f64 {
        let t0 = Instant::now();
        loop {
            let at = Instant::now();
            let r = c.replicas(names);
            self.samples
                .push((self.start.elapsed().as_secs_f64(), r.clone()));
            if r.iter().all(|&n| n == want) {
                return t0.elapsed().as_secs_f64();
            }
            assert!(
                t0.elapsed() < timeout,
                "replicas {r:?} of {names:?}, expected {want} within {timeout:?}; samples {:?}",
                self.samples
            );
            std::thread::sleep(Duration::from_secs(1).saturating_sub(at.elapsed()));
        }
    }

    /// The distinct values a column went through.
    fn path(&self, col: usize) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for (_, r) in &self.samples {
            if out.last() != Some(&r[col]) {
                out.push(r[col]);
            }
        }
        out
    }
}

fn exporter(groups: &[&str], keda: Option<&str>) -> Exporter {
    let allow = format!("^({})$", groups.join("|"));
    let mut args = vec![
        "--namesrv",
        rmq().namesrv(),
        "--interval",
        "1",
        "--deadline",
        "1",
        "--group-allow",
        &allow,
        "--instance-id",
        "rig",
    ];
    if let Some(k) = keda {
        args.extend_from_slice(&["--keda-listen", k]);
    }
    Exporter::start(&args)
}

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// rmq-sidecar scaling through the rig's API server, reading `yaml`, with `extra` flags.
fn sidecar(c: &Chain, yaml: &str, extra: &[&str]) -> (Sidecar, PathBuf) {
    let file = support::scratch().join(format!("{}.yaml", name("so")));
    std::fs::write(&file, yaml).unwrap();
    let log = support::scratch().join(format!("{}.log", name("sidecar")));
    let child = Command::new(bin("rmq-sidecar"))
        .args(["--config", file.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--kubeconfig",
            &c.env["KUBECONFIG_ADMIN"],
            "--no-leader-election",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Sidecar(child), log)
}

/// The ARMS guide's ScaledObject for `target`, with its query on the rig's topic and instance,
/// and the short scale-down window the issue allows.
fn guide_scaledobject(so: &str, target: &str, prom: &str, topic: &str) -> String {
    format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {so}
  namespace: default
spec:
  scaleTargetRef:
    name: {target}
  maxReplicaCount: 10
  minReplicaCount: 2
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 10
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://{prom}
      metricName: rocketmq_consumer_inflight_messages
      query: sum({{__name__=~"rocketmq_consumer_ready_messages|rocketmq_consumer_inflight_messages",instance_id="rig",topic=~"{topic}"}}) by (consumer_group)
      threshold: '30'
"#
    )
}

#[test]
fn the_guides_scaledobject_on_real_keda_and_the_sidecar_decide_the_same_replicas() {
    let c = chain();
    let rig = rmq();
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 10, 8);
    rig.consume(&g, &t, 10);
    let exp = exporter(&[&g], None);
    let (prom, _dir) = start_prometheus(&exp.addr);
    let (app, twin) = (
        name("app").to_lowercase().replace('_', "-"),
        name("twin").to_lowercase().replace('_', "-"),
    );
    c.deployment(&app, 2);
    c.deployment(&twin, 2);
    let so = format!("guide-{app}");
    c.apply(&guide_scaledobject(&so, &app, &prom, &t));
    let (_sc, sidecar_log) = sidecar(
        c,
        &guide_scaledobject(&format!("twin-{app}"), &twin, &prom, &t),
        &["--hpa-sync-period-seconds", "1"],
    );
    let hpa = format!("keda-hpa-{so}");
    // KEDA has created its HPA and the HPA reads the metric through the adapter.
    let deadline = Instant::now() + WAIT;
    loop {
        let out = c.kubectl(&[
            "get",
            "hpa",
            &hpa,
            "--ignore-not-found",
            "-o",
            "jsonpath={.status.currentMetrics[0].external.current.averageValue}",
        ]);
        if !out.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HPA {hpa} reads no metric: {}",
            c.kubectl(&["describe", "hpa", &hpa])
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let both = [app.as_str(), twin.as_str()];
    let mut s = Sampler::new();
    s.until(c, &both, 2, WAIT);

    rig.produce(&t, 90, 8);
    let up = s.until(c, &both, 3, WAIT);
    let targets = c.kubectl(&["get", "hpa", &hpa]);
    println!("90 messages → 3 replicas in {up:.1} s\n{targets}");
    let shape = regex::Regex::new(r"\s\d+(m)?/30 \(avg\)\s").unwrap();
    assert!(
        shape.is_match(&targets),
        "TARGETS is not like `30/30 (avg)`:\n{targets}"
    );

    rig.produce(&t, 1000, 8);
    let flood = s.until(c, &both, 10, WAIT);
    println!("flood → 10 in {flood:.1} s");
    rig.consume(&g, &t, 1090);
    let down = s.until(c, &both, 2, WAIT);
    println!("drained → 2 in {down:.1} s");

    let (keda_path, sidecar_path) = (s.path(0), s.path(1));
    println!("KEDA + HPA went {keda_path:?}; the sidecar went {sidecar_path:?}");
    // Every sample: the sidecar equals KEDA + HPA at that second or within one sync (1 s) and
    // one sampling step either side.
    let mut worst = 0usize;
    for (i, (at, r)) in s.samples.iter().enumerate() {
        let near = |k: usize| {
            s.samples[i.saturating_sub(k)..=(i + k).min(s.samples.len() - 1)]
                .iter()
                .any(|(_, o)| o[0] == r[1])
        };
        let k = (0..=3).find(|&k| near(k)).unwrap_or_else(|| {
            panic!(
                "at {at:.1} s the sidecar had {} replicas, KEDA + HPA never that within 3 s; samples {:?}\nsidecar log:\n{}",
                r[1],
                s.samples,
                std::fs::read_to_string(&sidecar_log).unwrap_or_default()
            )
        });
        worst = worst.max(k);
    }
    assert_eq!(keda_path.first(), Some(&2));
    assert_eq!(keda_path.last(), Some(&2));
    println!(
        "{} samples: the sidecar matched KEDA + HPA within {worst} s at every one",
        s.samples.len()
    );
}

#[test]
fn external_and_external_push_triggers_on_the_exporters_scaler_activate_and_deactivate() {
    let c = chain();
    let rig = rmq();
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 10, 8);
    rig.consume(&g, &t, 10);
    let keda = format!("127.0.0.1:{}", free_port());
    let _exp = exporter(&[&g], Some(&keda));
    let (pull, push) = (
        name("pull").to_lowercase().replace('_', "-"),
        name("push").to_lowercase().replace('_', "-"),
    );
    c.deployment(&pull, 0);
    c.deployment(&push, 0);
    for (target, kind, polling) in [(&pull, "external", 1), (&push, "external-push", 30)] {
        c.apply(&format!(
            r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: so-{target}
  namespace: default
spec:
  scaleTargetRef:
    name: {target}
  pollingInterval: {polling}
  cooldownPeriod: 5
  minReplicaCount: 0
  maxReplicaCount: 10
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 5
  triggers:
  - type: {kind}
    metadata:
      scalerAddress: {keda}
      consumerGroup: {g}
      topic: '{t}'
      instanceId: rig
      threshold: '30'
      activationThreshold: '5'
"#
        ));
    }
    let both = [pull.as_str(), push.as_str()];
    let mut s = Sampler::new();
    s.until(c, &both, 0, WAIT);
    rig.produce(&t, 90, 8);
    let up = s.until(c, &both, 3, WAIT);
    println!("0 → 3 in {up:.1} s (external, pollingInterval 1; external-push, pollingInterval 30)");
    let pushed = s
        .samples
        .iter()
        .find(|(_, r)| r[1] > 0)
        .map(|(at, _)| *at)
        .unwrap();
    rig.consume(&g, &t, 90);
    let down = s.until(c, &both, 0, WAIT);
    println!("drained → 0 in {down:.1} s (cooldownPeriod 5)");
    println!(
        "external went {:?}, external-push went {:?}; push activated at {pushed:.1} s",
        s.path(0),
        s.path(1)
    );
    for col in 0..2 {
        let path = s.path(col);
        assert_eq!(
            (path.first(), path.last()),
            (Some(&0), Some(&0)),
            "{path:?}"
        );
        assert!(path.contains(&3), "{path:?}");
    }
    // external-push polls every 30 s: activation sooner than the first poll after the
    // ScaledObject was created came from StreamIsActive.
    assert!(
        pushed < 28.0,
        "external-push activated only after {pushed:.1} s"
    );
}

#[test]
fn the_guides_trigger_authentication_reaches_a_prometheus_behind_basic_auth() {
    let c = chain();
    let rig = rmq();
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 10, 8);
    rig.consume(&g, &t, 10);
    let exp = exporter(&[&g], None);
    let (user, password) = ("keda", "s3cret-Pr0m");
    let (prom, _dir) =
        support::start_prometheus_with(&exp.addr, &["--basic-auth", &format!("{user}:{password}")]);
    let (status, _) = support::http_get(&prom, "/api/v1/query?query=up").unwrap();
    assert_eq!(
        status, 401,
        "Prometheus must refuse a request without credentials"
    );
    use base64::Engine;
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let app = name("auth").to_lowercase().replace('_', "-");
    let twin = format!("{app}-twin");
    c.deployment(&app, 2);
    c.deployment(&twin, 2);
    // The guide's Secret, TriggerAuthentication and ScaledObject (authModes custom).
    let auth = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: keda-prom-secret-{app}
  namespace: default
stringData:
  customAuthHeader: Authorization
  customAuthValue: "{value}"
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-prom-creds-{app}
  namespace: default
spec:
  secretTargetRef:
    - parameter: customAuthHeader
      name: keda-prom-secret-{app}
      key: customAuthHeader
    - parameter: customAuthValue
      name: keda-prom-secret-{app}
      key: customAuthValue
"#
    );
    let with_auth = |so: &str, target: &str| {
        guide_scaledobject(so, target, &prom, &t).replace(
            "      threshold: '30'\n",
            &format!("      threshold: '30'\n      authModes: \"custom\"\n    authenticationRef:\n      name: keda-prom-creds-{app}\n"),
        )
    };
    c.apply(&format!(
        "{auth}---\n{}",
        with_auth(&format!("guide-{app}"), &app)
    ));
    // The sidecar reads the same objects; the Secret comes as a mounted-Secret directory.
    let secrets = support::scratch().join(name("secrets"));
    let sdir = secrets.join(format!("keda-prom-secret-{app}"));
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(sdir.join("customAuthHeader"), "Authorization").unwrap();
    std::fs::write(sdir.join("customAuthValue"), &value).unwrap();
    let auth_only: String = auth.split("---\n").nth(1).unwrap().to_string();
    let (_sc, log) = sidecar(
        c,
        &format!(
            "{auth_only}---\n{}",
            with_auth(&format!("twin-{app}"), &twin)
        ),
        &[
            "--secrets-dir",
            secrets.to_str().unwrap(),
            "--hpa-sync-period-seconds",
            "1",
        ],
    );
    let both = [app.as_str(), twin.as_str()];
    let mut s = Sampler::new();
    s.until(c, &both, 2, WAIT);
    rig.produce(&t, 90, 8);
    let up = s.until(c, &both, 3, WAIT);
    let hpa = c.kubectl(&["get", "hpa", &format!("keda-hpa-guide-{app}")]);
    println!(
        "through basic auth: 90 messages → 3 replicas in {up:.1} s (KEDA and the sidecar)\n{hpa}"
    );
    let sidecar_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !sidecar_log.contains(password),
        "the password is in the sidecar's log"
    );
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// `bench/keda_chain.sh`: backlog at the broker → spec.replicas changed, at the default
/// intervals (exporter 10 s, Prometheus scrape 15 s, HPA sync 15 s, pollingInterval 30 s), for the
/// real KEDA + HPA with the guide's `prometheus` trigger, for KEDA with the `external-push`
/// trigger on the exporter's scaler, and for the sidecar's direct path, side by side.
#[test]
#[ignore = "benchmark: run by bench/keda_chain.sh"]
fn bench_backlog_to_replicas_at_default_intervals() {
    let samples: usize = std::env::var("RMQ_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let c = &start_chain("15s");
    let rig = rmq();
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 10, 8);
    rig.consume(&g, &t, 10);
    let keda = format!("127.0.0.1:{}", free_port());
    let allow = format!("^{g}$");
    let exp = Exporter::start(&[
        "--namesrv",
        rig.namesrv(),
        "--group-allow",
        &allow,
        "--instance-id",
        "rig",
        "--keda-listen",
        &keda,
    ]);
    let (prom, _dir) = support::start_prometheus_with(&exp.addr, &["--scrape-interval", "15s"]);
    let base = name("b").to_lowercase().replace('_', "-");
    let (kp, kx, sc) = (
        format!("{base}-prom"),
        format!("{base}-push"),
        format!("{base}-sidecar"),
    );
    for d in [&kp, &kx, &sc] {
        c.deployment(d, 2);
    }
    c.apply(&guide_scaledobject(&format!("so-{kp}"), &kp, &prom, &t));
    c.apply(&format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: so-{kx}
  namespace: default
spec:
  scaleTargetRef:
    name: {kx}
  minReplicaCount: 2
  maxReplicaCount: 10
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 10
  triggers:
  - type: external-push
    metadata:
      scalerAddress: {keda}
      consumerGroup: {g}
      threshold: '30'
"#
    ));
    // The sidecar at its defaults (HPA clock 15 s, pollingInterval 30 s).
    let (_sidecar, _) = sidecar(
        c,
        &format!(
            r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: so-{sc}
  namespace: default
spec:
  scaleTargetRef:
    name: {sc}
  minReplicaCount: 2
  maxReplicaCount: 10
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 10
  triggers:
  - type: rocketmq-exporter
    metadata:
      url: http://{}/metrics
      consumerGroup: {g}
      threshold: '30'
"#,
            exp.addr
        ),
        &[],
    );
    let names = [kp.as_str(), kx.as_str(), sc.as_str()];
    let labels = [
        "KEDA + HPA, prometheus trigger (guide)",
        "KEDA + HPA, external-push trigger",
        "rmq-sidecar, rocketmq-exporter trigger",
    ];
    let mut s = Sampler::new();
    s.until(c, &names, 2, WAIT);
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for i in 0..samples {
        // Start at a different phase of the 10 s / 15 s clocks each time.
        std::thread::sleep(Duration::from_millis(3_700 * i as u64 % 15_000));
        rig.produce(&t, 90, 8);
        let t0 = Instant::now();
        let mut done = [None; 3];
        while done.iter().any(Option::is_none) {
            assert!(
                t0.elapsed() < WAIT,
                "sample {i}: replicas {:?}",
                c.replicas(&names)
            );
            let r = c.replicas(&names);
            for k in 0..3 {
                if done[k].is_none() && r[k] >= 3 {
                    done[k] = Some(t0.elapsed().as_secs_f64());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for k in 0..3 {
            lat[k].push(done[k].unwrap());
        }
        println!(
            "sample {}: {:?}",
            i + 1,
            done.map(|d| format!("{:.1} s", d.unwrap()))
        );
        rig.consume(&g, &t, 90);
        s.until(c, &names, 2, Duration::from_secs(180));
    }
    let (base_median, _, _) = stats(&lat[0]);
    for k in 0..3 {
        let (md, mn, mx) = stats(&lat[k]);
        println!(
            "{:<42} median {md:5.1} s  min {mn:5.1}  max {mx:5.1}  (n={})  ratio to the guide's path {:.2}",
            labels[k],
            lat[k].len(),
            md / base_median
        );
    }
}

/// deploy/examples' KEDA objects against the CRDs of the KEDA these tests run (server-side dry
/// run: the API server validates them with KEDA v2.21.0's schemas), and a broken copy refused.
#[test]
fn the_keda_examples_pass_server_side_dry_run_on_kedas_crds() {
    let c = chain();
    let dir = repo_root().join("deploy/examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("apiVersion: keda.sh/v1alpha1") {
            continue;
        }
        let out = c.kubectl_in(
            &["apply", "--dry-run=server", "-n", "default", "-f", "-"],
            Some(&text),
        );
        assert!(
            out.contains("scaledobject.keda.sh"),
            "{}: {out}",
            path.display()
        );
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert!(checked.len() >= 3, "{checked:?}");
    let bad = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: bad}\nspec:\n  scaleTargetRef: {name: x}\n  minReplicaCount: two\n  triggers: []\n";
    let out = Command::new(&c.env["KUBECTL"])
        .args([
            "--kubeconfig",
            &c.env["KUBECONFIG_ADMIN"],
            "apply",
            "--dry-run=server",
            "-n",
            "default",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(bad.as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("minReplicaCount"),
        "{out:?}"
    );
    println!("server dry run on KEDA v2.21.0's CRDs: {checked:?} accepted; a bad minReplicaCount refused");
}
