//! Monitoring in `deploy/`: the alert rules (`deploy/rules/rmq-alerts.yaml`, checked and unit-tested
//! with Debian's `promtool`), their copies for Helm and kustomize, the chart's ServiceMonitor,
//! PodMonitor, PrometheusRule and KEDA scaler port, the kustomize component
//! `deploy/components/monitoring`, the KEDA examples, the endpoints' TLS and basic auth and the
//! exporter's TLS to RocketMQ (chart values `web`, `rocketmqTls`; components `web-tls`,
//! `rocketmq-tls`), and a server-side dry run of every rendered object on the rig's real
//! kube-apiserver with the Prometheus Operator's CRDs (`tests/rig/crds.sh`, from the published Go
//! module).

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{json, Value};
use support::{must, repo_root};

const RULES: &str = "deploy/rules/rmq-alerts.yaml";
const RULES_TEST: &str = "deploy/rules/rmq-alerts.test.yaml";
const HELM_COPY: &str = "deploy/helm/rmq-exporter/files/rmq-alerts.yaml";
const COMPONENT: &str = "deploy/components/monitoring";
const CHART: &str = "deploy/helm/rmq-exporter";

// ------------------------------------------------------------------------------------------------
// Tools and helpers
// ------------------------------------------------------------------------------------------------

fn promtool() -> PathBuf {
    let out = Command::new("bash")
        .args(["-c", "command -v promtool"])
        .output()
        .expect("run bash");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "promtool not found: it comes with Debian's prometheus package (tests/run.sh installs it; \
         or apt-get install prometheus)"
    );
    PathBuf::from(path)
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = must(
            Command::new("bash")
                .arg(repo_root().join("tests/rig/helm.sh"))
                .arg("install")
                .output()
                .expect("run helm.sh"),
            "helm.sh install",
        );
        PathBuf::from(out.trim().strip_prefix("HELM=").expect("HELM=<path>"))
    })
}

/// The rig's cached kubectl (`kube.sh install` is a no-op once the binaries are cached).
fn kubectl() -> &'static Path {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL.get_or_init(|| {
        let out = must(
            Command::new("bash")
                .arg(repo_root().join("tests/rig/kube.sh"))
                .arg("install")
                .output()
                .expect("run kube.sh"),
            "kube.sh install",
        );
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("KUBECTL="))
            .unwrap_or_else(|| panic!("kube.sh install printed no KUBECTL=:\n{out}"));
        PathBuf::from(line)
    })
}

/// The documents of a multi-document YAML stream, empty ones skipped.
fn yaml_documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn read_yaml(rel: &str) -> Value {
    let text =
        std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The groups of the rules file: what every copy must hold.
fn rule_groups() -> Value {
    let file = read_yaml(RULES);
    let groups = file["groups"].clone();
    assert!(
        groups.as_array().is_some_and(|g| !g.is_empty()),
        "{RULES} has no groups"
    );
    groups
}

fn alerts_of(groups: &Value) -> Vec<&Value> {
    groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn alert<'a>(groups: &'a Value, name: &str) -> Option<&'a Value> {
    alerts_of(groups).into_iter().find(|r| r["alert"] == name)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one_of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

/// `labels` contains every (key, value) of `selector`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

fn helm_template(args: &[&str], values: Option<&str>) -> Output {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "rel"])
        .arg(repo_root().join(CHART))
        .args(args);
    if let Some(values) = values {
        let file = support::scratch().join(format!("values-{}.yaml", support::name("v")));
        std::fs::write(&file, values).unwrap();
        cmd.arg("--values").arg(file);
    }
    cmd.output().expect("run helm")
}

/// Values that switch everything on and set every monitor knob.
const ALL_ON: &str = r#"
serviceMonitor:
  enabled: true
  labels: {release: prom}
  interval: 20s
  scrapeTimeout: 5s
  relabelings:
    - action: replace
      sourceLabels: [__meta_kubernetes_pod_node_name]
      targetLabel: node
  metricRelabelings:
    - action: drop
      sourceLabels: [__name__]
      regex: rocketmq_exporter_rpcs_total
prometheusRule:
  enabled: true
  labels: {release: prom}
exporter:
  keda:
    enabled: true
"#;

/// The pod template labels of the Deployment whose pods are `app.kubernetes.io/name: name`.
fn pod_labels<'a>(deployments: &[&'a Value], name: &str) -> &'a Value {
    &deployments
        .iter()
        .find(|d| d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name)
        .unwrap_or_else(|| panic!("no Deployment with pods named {name}"))["spec"]["template"]
        ["metadata"]["labels"]
}

/// The ServiceMonitor scrapes the exporter's Service on its metrics port, the PodMonitor the
/// sidecar's pods (and not the exporter's), and both name their job so that the exporter-down
/// alert matches the exporter's and not the sidecar's. Returns what it checked, for the log.
fn check_monitors(docs: &[Value], extra_label: Option<(&str, &str)>) -> Vec<String> {
    let mut checked = Vec::new();
    let exporter_job = regex::Regex::new(r"^(?:.*rmq-exporter.*)$").unwrap();
    let sidecar_job = regex::Regex::new(r"^(?:.*rmq-sidecar.*)$").unwrap();
    let deployments = of_kind(docs, "Deployment");
    let pod_labels = |name_label: &str| pod_labels(&deployments, name_label);

    let sm = one_of_kind(docs, "ServiceMonitor");
    let services = of_kind(docs, "Service");
    let selected: Vec<&&Value> = services
        .iter()
        .filter(|s| {
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &s["metadata"]["labels"],
            )
        })
        .collect();
    assert_eq!(
        selected.len(),
        1,
        "ServiceMonitor must select exactly the exporter's Service"
    );
    let svc = selected[0];
    assert_eq!(
        svc["metadata"]["labels"]["app.kubernetes.io/name"],
        "rmq-exporter"
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    let port = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoint["port"])
        .unwrap_or_else(|| panic!("Service has no port {}", endpoint["port"]));
    // The Service port leads to the exporter container's metrics port.
    let exporter_pod = pod_labels("rmq-exporter");
    assert!(selects(&svc["spec"]["selector"], exporter_pod));
    let exporter_container = &deployments
        .iter()
        .find(|d| d["spec"]["template"]["metadata"]["labels"] == *exporter_pod)
        .unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert!(
        exporter_container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port["targetPort"] && p["containerPort"] == port["port"]),
        "Service port {port} does not reach the exporter container"
    );
    assert_eq!(endpoint["path"], "/metrics");
    let job = svc["metadata"]["labels"][sm["spec"]["jobLabel"].as_str().expect("jobLabel")]
        .as_str()
        .expect("the Service carries the jobLabel label");
    assert!(
        exporter_job.is_match(job) && !sidecar_job.is_match(job),
        "exporter job {job}"
    );
    checked.push(format!(
        "ServiceMonitor {} -> Service {} port {} -> container port {} (job={job})",
        sm["metadata"]["name"], svc["metadata"]["name"], endpoint["port"], port["targetPort"]
    ));

    if let Some(pm) = of_kind(docs, "PodMonitor").first() {
        let sidecar_pod = pod_labels("rmq-sidecar");
        assert!(selects(&pm["spec"]["selector"]["matchLabels"], sidecar_pod));
        assert!(!selects(
            &pm["spec"]["selector"]["matchLabels"],
            exporter_pod
        ));
        let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
        let container = &deployments
            .iter()
            .find(|d| d["spec"]["template"]["metadata"]["labels"] == *sidecar_pod)
            .unwrap()["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == endpoint["port"]),
            "sidecar container has no port {}",
            endpoint["port"]
        );
        let job = sidecar_pod[pm["spec"]["jobLabel"].as_str().expect("jobLabel")]
            .as_str()
            .expect("the sidecar pods carry the jobLabel label");
        assert!(
            sidecar_job.is_match(job) && !exporter_job.is_match(job),
            "sidecar job {job}"
        );
        checked.push(format!(
            "PodMonitor {} -> sidecar pods port {} (job={job})",
            pm["metadata"]["name"], endpoint["port"]
        ));
    }
    if let Some((k, v)) = extra_label {
        for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
            for d in of_kind(docs, kind) {
                assert_eq!(d["metadata"]["labels"][k], v, "{kind} label {k}");
            }
        }
        checked.push(format!("label {k}={v} on every monitoring object"));
    }
    checked
}

// ------------------------------------------------------------------------------------------------
// Rules
// ------------------------------------------------------------------------------------------------

/// `promtool check rules` and `promtool test rules` pass; every alert has a severity, a summary, a
/// description and a runbook hint, reads only metrics that the exporter or the sidecar export,
/// and is unit-tested both firing and not firing.
#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = promtool();
    let groups = rule_groups();
    let rules: usize = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    let out = must(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(repo_root().join(RULES))
            .output()
            .unwrap(),
        "promtool check rules",
    );
    assert!(
        out.contains(&format!("SUCCESS: {rules} rules found")),
        "{out}"
    );
    eprintln!("promtool check rules {RULES}: {rules} rules");

    let out = must(
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(repo_root().join(RULES_TEST))
            .output()
            .unwrap(),
        "promtool test rules",
    );
    assert!(out.contains("SUCCESS"), "{out}");

    // What the unit tests cover: each alert fires somewhere and stays quiet somewhere.
    let tests = read_yaml(RULES_TEST);
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut cases = 0;
    for t in tests["tests"].as_array().unwrap() {
        for case in t["alert_rule_test"].as_array().into_iter().flatten() {
            cases += 1;
            let name = case["alertname"].as_str().unwrap().to_string();
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    eprintln!("promtool test rules {RULES_TEST}: {cases} cases passed");

    // Metric names the rules read must be ones the binaries serve.
    let served = [
        std::fs::read_to_string(repo_root().join("exporter/src/expose/prometheus.rs")).unwrap(),
        std::fs::read_to_string(repo_root().join("sidecar/src/metrics.rs")).unwrap(),
    ]
    .concat();
    let metric = regex::Regex::new(r"\b(rocketmq_[a-z_]+|rmq_sidecar_[a-z_]+)\b").unwrap();
    let mut names = BTreeSet::new();
    for a in alerts_of(&groups) {
        let name = a["alert"].as_str().unwrap();
        assert!(
            matches!(
                a["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name}: severity"
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                a["annotations"][key].as_str().is_some_and(|s| s.len() > 20),
                "{name}: annotation {key}"
            );
        }
        assert!(a["for"].as_str().is_some(), "{name}: for");
        assert!(
            fires.contains(name),
            "{name} is never tested firing in {RULES_TEST}"
        );
        assert!(
            quiet.contains(name),
            "{name} is never tested not firing in {RULES_TEST}"
        );
        for m in metric.find_iter(a["expr"].as_str().unwrap()) {
            assert!(
                served.contains(&format!("\"{}", m.as_str())),
                "{name} reads {}, which neither exporter/src/expose/prometheus.rs nor sidecar/src/metrics.rs serves",
                m.as_str()
            );
            names.insert(m.as_str().to_string());
        }
    }
    eprintln!(
        "{} alerts, each firing and quiet in the unit tests, with severity/summary/description/runbook; metrics read: {}",
        alerts_of(&groups).len(),
        names.into_iter().collect::<Vec<_>>().join(", ")
    );
}

/// The copies for Helm and kustomize hold exactly the rules file (sync.sh writes them).
#[test]
fn rule_copies_for_helm_and_kustomize_equal_the_rules_file() {
    let source = std::fs::read(repo_root().join(RULES)).unwrap();
    let copy = std::fs::read(repo_root().join(HELM_COPY)).unwrap();
    assert!(
        source == copy,
        "{HELM_COPY} differs from {RULES}: run bash deploy/rules/sync.sh"
    );
    eprintln!(
        "{HELM_COPY}: byte-identical to {RULES} ({} bytes)",
        source.len()
    );

    let component = read_yaml(&format!("{COMPONENT}/prometheusrule.yaml"));
    assert_eq!(component["kind"], "PrometheusRule");
    assert_eq!(component["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        component["spec"]["groups"],
        rule_groups(),
        "{COMPONENT}/prometheusrule.yaml: run bash deploy/rules/sync.sh"
    );
    eprintln!("{COMPONENT}/prometheusrule.yaml: spec.groups equal {RULES}'s groups");

    must(
        Command::new("bash")
            .arg(repo_root().join("deploy/rules/sync.sh"))
            .arg("--check")
            .output()
            .unwrap(),
        "deploy/rules/sync.sh --check",
    );
    eprintln!("deploy/rules/sync.sh --check: both copies are what it would write");
}

/// The README's and the example's point: the ARMS guide's query returns one series per consumer
/// group of the topic, which KEDA's prometheus scaler refuses; the example's query, filtered on the
/// workload's group, returns one. Evaluated by promtool on a topic with two groups.
#[test]
fn keda_prometheus_example_query_returns_one_series() {
    let example = yaml_documents(
        &std::fs::read_to_string(
            repo_root().join("deploy/examples/keda-prometheus-scaledobject.yaml"),
        )
        .unwrap(),
    );
    let meta = &example[0]["spec"]["triggers"][0]["metadata"];
    assert_eq!(example[0]["spec"]["triggers"][0]["type"], "prometheus");
    let query = meta["query"].as_str().unwrap();
    let group = regex::Regex::new(r#"consumer_group="([^"]+)""#)
        .unwrap()
        .captures(query)
        .unwrap_or_else(|| {
            panic!("the example's query does not filter on consumer_group: {query}")
        })[1]
        .to_string();
    let arms = query.replace(&format!(",consumer_group=\"{group}\""), "");
    assert_ne!(arms, query);

    let labels = |g: &str| {
        format!(
            r#"instance_id="rmq-cn-uax3xxxxxx",cluster="c",topic="keda",consumer_group="{g}",is_retry="false""#
        )
    };
    let test = json!({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": format!("rocketmq_consumer_ready_messages{{{}}}", labels(&group)), "values": "40x5"},
                {"series": format!("rocketmq_consumer_inflight_messages{{{}}}", labels(&group)), "values": "2x5"},
                {"series": format!("rocketmq_consumer_ready_messages{{{}}}", labels("audit-consumer")), "values": "7x5"},
                {"series": format!("rocketmq_consumer_inflight_messages{{{}}}", labels("audit-consumer")), "values": "0x5"},
            ],
            "promql_expr_test": [
                {"expr": query, "eval_time": "3m",
                 "exp_samples": [{"labels": format!("{{consumer_group=\"{group}\"}}"), "value": 42}]},
                {"expr": arms, "eval_time": "3m",
                 "exp_samples": [
                    {"labels": format!("{{consumer_group=\"{group}\"}}"), "value": 42},
                    {"labels": "{consumer_group=\"audit-consumer\"}", "value": 7}]},
            ],
        }],
    });
    let file = support::scratch().join("keda-query.test.yaml");
    std::fs::write(&file, serde_yaml::to_string(&test).unwrap()).unwrap();
    let out = must(
        Command::new(promtool())
            .args(["test", "rules"])
            .arg(&file)
            .output()
            .unwrap(),
        "promtool test rules (KEDA example query)",
    );
    assert!(out.contains("SUCCESS"), "{out}");
    eprintln!(
        "example query -> 1 series (consumer_group={group}, 42); without the consumer_group matcher (the ARMS guide's) -> 2 series"
    );
}

/// The external / external-push examples point at the exporter's KEDA scaler port with the
/// metadata its scaler reads, and the chart's KEDA port is that port.
#[test]
fn keda_external_examples_name_the_scaler_service_and_keys() {
    let chart_values = read_yaml(&format!("{CHART}/values.yaml"));
    let port = chart_values["exporter"]["keda"]["port"]
        .as_u64()
        .expect("exporter.keda.port");
    for (file, kind) in [
        (
            "deploy/examples/keda-external-scaledobject.yaml",
            "external",
        ),
        (
            "deploy/examples/keda-external-push-scaledobject.yaml",
            "external-push",
        ),
    ] {
        let docs = yaml_documents(&std::fs::read_to_string(repo_root().join(file)).unwrap());
        assert_eq!(docs.len(), 1, "{file}");
        let so = &docs[0];
        assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
        assert_eq!(so["kind"], "ScaledObject");
        let trigger = &so["spec"]["triggers"][0];
        assert_eq!(trigger["type"], kind, "{file}");
        let meta = trigger["metadata"].as_object().unwrap();
        let address = meta["scalerAddress"].as_str().unwrap();
        assert_eq!(
            address,
            format!(
                "rmq-exporter.{}.svc:{port}",
                so["metadata"]["namespace"].as_str().unwrap()
            ),
            "{file}"
        );
        let known = [
            "scalerAddress",
            "instanceId",
            "topic",
            "consumerGroup",
            "threshold",
            "activationThreshold",
            "capAtQueues",
            "excludePersistentLag",
        ];
        for (k, v) in meta {
            assert!(
                known.contains(&k.as_str()),
                "{file}: unknown metadata key {k}"
            );
            assert!(
                v.is_string(),
                "{file}: {k} must be a string (KEDA metadata is map[string]string)"
            );
        }
        for required in ["consumerGroup", "threshold"] {
            assert!(meta.contains_key(required), "{file}: {required} missing");
        }
        assert!(meta["threshold"].as_str().unwrap().parse::<f64>().is_ok());
        for flag in ["capAtQueues", "excludePersistentLag"] {
            if let Some(v) = meta.get(flag) {
                assert!(v == "true" || v == "false", "{file}: {flag}={v}");
            }
        }
        eprintln!(
            "{file}: type {kind}, scalerAddress {address}, keys {:?}",
            meta.keys().collect::<Vec<_>>()
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Helm
// ------------------------------------------------------------------------------------------------

/// Off by default; with the toggles on, the chart renders a ServiceMonitor and a PodMonitor that
/// scrape the right ports with the given interval, timeout and relabelings, a PrometheusRule
/// whose groups are the rules file's, and the exporter's KEDA scaler port and flag.
#[test]
fn helm_chart_renders_monitors_rules_and_keda_port() {
    let defaults = yaml_documents(&must(helm_template(&[], None), "helm template (defaults)"));
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
        assert!(
            of_kind(&defaults, kind).is_empty(),
            "{kind} rendered by default"
        );
    }
    let exporter = |docs: &[Value]| -> Value {
        docs.iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "rel-rmq-exporter")
            .expect("exporter Deployment")["spec"]["template"]["spec"]["containers"][0]
            .clone()
    };
    let service = |docs: &[Value]| -> Value {
        docs.iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "rel-rmq-exporter")
            .expect("exporter Service")
            .clone()
    };
    assert!(exporter(&defaults).get("args").is_none());
    assert_eq!(exporter(&defaults)["ports"].as_array().unwrap().len(), 1);
    assert_eq!(
        service(&defaults)["spec"]["ports"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    eprintln!("defaults: no ServiceMonitor, PodMonitor, PrometheusRule; no KEDA port or flag");

    let docs = yaml_documents(&must(
        helm_template(&[], Some(ALL_ON)),
        "helm template (all on)",
    ));
    for line in check_monitors(&docs, Some(("release", "prom"))) {
        eprintln!("helm: {line}");
    }
    for (kind, key) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let endpoint = &one_of_kind(&docs, kind)["spec"][key][0];
        assert_eq!(endpoint["interval"], "20s");
        assert_eq!(endpoint["scrapeTimeout"], "5s");
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "node");
        assert_eq!(
            endpoint["metricRelabelings"][0]["regex"],
            "rocketmq_exporter_rpcs_total"
        );
    }
    eprintln!(
        "helm: interval, scrapeTimeout, relabelings and metricRelabelings passed to both monitors"
    );
    let rule = one_of_kind(&docs, "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"],
        rule_groups(),
        "chart PrometheusRule vs {RULES}"
    );
    eprintln!(
        "helm: PrometheusRule {} holds {RULES}'s groups unchanged ({} alerts)",
        rule["metadata"]["name"],
        alerts_of(&rule_groups()).len()
    );

    let container = exporter(&docs);
    assert_eq!(container["args"], json!(["--keda-listen=0.0.0.0:9879"]));
    assert!(container["ports"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "keda-grpc", "containerPort": 9879})));
    let svc = service(&docs);
    let keda = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keda-grpc")
        .expect("Service port keda-grpc");
    assert_eq!(
        (keda["port"].as_u64(), keda["targetPort"].as_str()),
        (Some(9879), Some("keda-grpc"))
    );
    eprintln!("helm: exporter.keda.enabled -> --keda-listen=0.0.0.0:9879, container and Service port keda-grpc 9879");

    // Without the sidecar there is nothing for a PodMonitor to scrape.
    let no_sidecar = yaml_documents(&must(
        helm_template(&["--set", "sidecar.enabled=false"], Some(ALL_ON)),
        "helm template (no sidecar)",
    ));
    assert!(of_kind(&no_sidecar, "PodMonitor").is_empty());
    assert_eq!(of_kind(&no_sidecar, "ServiceMonitor").len(), 1);
    eprintln!("helm: sidecar.enabled=false -> ServiceMonitor only");
}

/// prometheusRule.alerts tunes thresholds, `for`, severity and labels, drops alerts, and refuses
/// names the rules file does not have; the result is still valid for promtool.
#[test]
fn helm_chart_rule_overrides_apply_and_stay_valid() {
    let values = r#"
prometheusRule:
  enabled: true
  ruleLabels: {team: pay}
  alerts:
    RocketMQConsumerLagLatencyHigh: {threshold: 600, for: 20m, severity: critical}
    RocketMQConsumerBacklogGrowing: {threshold: 2500000}
    RmqSidecarScaleErrors: {threshold: 0.5}
    RocketMQExporterErrors: {enabled: false}
    RocketMQExporterAbsent:
      expr: absent(up{job="my-exporter"})
exporter:
  keda: {enabled: true, port: 9191}
"#;
    let docs = yaml_documents(&must(
        helm_template(&[], Some(values)),
        "helm template (overrides)",
    ));
    let groups = &one_of_kind(&docs, "PrometheusRule")["spec"]["groups"];
    let file = rule_groups();
    let expr = |name: &str| {
        alert(groups, name).unwrap()["expr"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let lag = alert(groups, "RocketMQConsumerLagLatencyHigh").unwrap();
    assert!(
        expr("RocketMQConsumerLagLatencyHigh").ends_with("/ 1000 > 600"),
        "{}",
        lag["expr"]
    );
    assert_eq!(lag["for"], "20m");
    assert_eq!(
        lag["labels"],
        json!({"severity": "critical", "team": "pay"})
    );
    assert!(expr("RocketMQConsumerBacklogGrowing").ends_with(") > 2500000"));
    assert!(expr("RmqSidecarScaleErrors").ends_with("[5m])) > 0.5"));
    assert_eq!(
        expr("RocketMQExporterAbsent"),
        r#"absent(up{job="my-exporter"})"#
    );
    assert!(alert(groups, "RocketMQExporterErrors").is_none());
    // Everything not overridden is the file's, plus the extra label.
    let mut untouched = 0;
    for a in alerts_of(&file) {
        let name = a["alert"].as_str().unwrap();
        if [
            "RocketMQConsumerLagLatencyHigh",
            "RocketMQConsumerBacklogGrowing",
            "RmqSidecarScaleErrors",
            "RocketMQExporterErrors",
            "RocketMQExporterAbsent",
        ]
        .contains(&name)
        {
            continue;
        }
        let mut want = a.clone();
        want["labels"]["team"] = json!("pay");
        assert_eq!(alert(groups, name).unwrap(), &want, "{name}");
        untouched += 1;
    }
    eprintln!(
        "helm overrides: threshold 600/2500000/0.5, for 20m, severity critical, expr, enabled=false applied; {untouched} other alerts unchanged but for team=pay"
    );

    // Still valid rules.
    let file_out = support::scratch().join("overridden-rules.yaml");
    std::fs::write(
        &file_out,
        serde_yaml::to_string(&json!({"groups": groups})).unwrap(),
    )
    .unwrap();
    let out = must(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(&file_out)
            .output()
            .unwrap(),
        "promtool check rules (overridden)",
    );
    assert!(
        out.contains(&format!(
            "SUCCESS: {} rules found",
            alerts_of(&file).len() - 1
        )),
        "{out}"
    );
    eprintln!(
        "promtool check rules on the overridden groups: {}",
        out.lines()
            .find(|l| l.contains("SUCCESS"))
            .unwrap_or("")
            .trim()
    );

    let container = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "rel-rmq-exporter")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]
        .clone();
    assert_eq!(container["args"], json!(["--keda-listen=0.0.0.0:9191"]));

    for (values, message) in [
        (
            "prometheusRule: {enabled: true, alerts: {NoSuchAlert: {for: 1m}}}",
            "prometheusRule.alerts.NoSuchAlert: no such alert",
        ),
        (
            "prometheusRule: {enabled: true, alerts: {RocketMQExporterAbsent: {threshold: 3}}}",
            "prometheusRule.alerts.RocketMQExporterAbsent.threshold: its expression does not end with a comparison",
        ),
    ] {
        let out = helm_template(&[], Some(values));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(message), "{values}: {err}");
        eprintln!("helm refuses {values}: {message}");
    }
}

// ------------------------------------------------------------------------------------------------
// Kustomize
// ------------------------------------------------------------------------------------------------

/// `../` up to `/` from the absolute directory `dir` (kustomize takes relative paths only).
fn up_to_root(dir: &Path) -> PathBuf {
    assert!(dir.is_absolute(), "{}", dir.display());
    dir.components().skip(1).map(|_| "..").collect()
}

/// An overlay of deploy/base with the component, a namespace and a label, in the scratch dir.
fn overlay() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = support::scratch().join("overlay-monitoring");
        std::fs::create_dir_all(&dir).unwrap();
        let root = repo_root();
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop\n\
                 resources:\n  - {}\ncomponents:\n  - {}\nlabels:\n  - pairs: {{release: prom}}\n    includeSelectors: false\n",
                up_to_root(&dir).join(root.join("deploy/base").strip_prefix("/").unwrap()).display(),
                up_to_root(&dir).join(root.join(COMPONENT).strip_prefix("/").unwrap()).display()
            ),
        )
        .unwrap();
        dir
    })
    .clone()
}

/// `kubectl kustomize` of base + component: the base's objects, and the component's monitors and
/// PrometheusRule in the overlay's namespace, selecting the base's Service and pods, with the
/// rules file's groups. deploy/base alone renders no monitoring objects.
#[test]
fn kustomize_component_adds_monitoring_to_the_base() {
    let base = yaml_documents(&must(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(repo_root().join("deploy/base"))
            .output()
            .unwrap(),
        "kubectl kustomize deploy/base",
    ));
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
        assert!(
            of_kind(&base, kind).is_empty(),
            "deploy/base renders a {kind}"
        );
    }
    let docs = yaml_documents(&must(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(overlay())
            .output()
            .unwrap(),
        "kubectl kustomize overlay",
    ));
    assert_eq!(
        docs.len(),
        base.len() + 3,
        "base objects + ServiceMonitor, PodMonitor, PrometheusRule"
    );
    for d in &docs {
        assert_eq!(
            d["metadata"]["namespace"], "shop",
            "{}",
            d["metadata"]["name"]
        );
    }
    for line in check_monitors(&docs, Some(("release", "prom"))) {
        eprintln!("kustomize: {line}");
    }
    let rule = one_of_kind(&docs, "PrometheusRule");
    assert_eq!(rule["spec"]["groups"], rule_groups());
    eprintln!(
        "kustomize: base ({} objects) + component -> ServiceMonitor, PodMonitor, PrometheusRule with {RULES}'s groups, all in namespace shop",
        base.len()
    );
}

// ------------------------------------------------------------------------------------------------
// Server-side dry run
// ------------------------------------------------------------------------------------------------

struct Kube {
    env: std::collections::HashMap<String, String>,
}

impl Kube {
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.env["KUBECTL"])
            .arg("--kubeconfig")
            .arg(&self.env["KUBECONFIG_ADMIN"])
            .args(args)
            .output()
            .expect("run kubectl")
    }
}

/// kube-apiserver + etcd from tests/rig/kube.sh, with the Prometheus Operator's CRDs.
fn kube() -> &'static Kube {
    static KUBE: OnceLock<Kube> = OnceLock::new();
    KUBE.get_or_init(|| {
        let dir = support::scratch().join("kube");
        must(
            Command::new("bash")
                .arg(repo_root().join("tests/rig/kube.sh"))
                .arg("start")
                .arg("--dir")
                .arg(&dir)
                .args(["--owner-pid", &std::process::id().to_string()])
                .output()
                .expect("run kube.sh"),
            "kube.sh start",
        );
        let env = std::fs::read_to_string(dir.join("kube.env"))
            .expect("kube.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let kube = Kube { env };
        let crds = must(
            Command::new("bash")
                .arg(repo_root().join("tests/rig/crds.sh"))
                .arg("prometheus-operator")
                .output()
                .expect("run crds.sh"),
            "crds.sh prometheus-operator",
        );
        let crds = PathBuf::from(crds.trim());
        for plural in ["servicemonitors", "podmonitors", "prometheusrules"] {
            let file = crds.join(format!("monitoring.coreos.com_{plural}.yaml"));
            must(
                kube.kubectl(&["apply", "--server-side", "-f", file.to_str().unwrap()]),
                &format!("kubectl apply --server-side {}", file.display()),
            );
        }
        must(
            kube.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/podmonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
            ]),
            "kubectl wait for the CRDs",
        );
        eprintln!(
            "kube rig at {} with the CRDs of {}",
            kube.env["KUBE_API"],
            crds.display()
        );
        kube
    })
}

/// `kubectl apply --dry-run=server` of `manifest` in `ns`: every object must be accepted (the
/// API server validates custom resources against the CRD's schema, unknown fields included).
fn dry_run(kube: &Kube, ns: &str, manifest: &str, what: &str) -> usize {
    let file = support::scratch().join(format!("{}.yaml", support::name("dry-run")));
    std::fs::write(&file, manifest).unwrap();
    let out = must(
        kube.kubectl(&[
            "apply",
            "--dry-run=server",
            "-n",
            ns,
            "-f",
            file.to_str().unwrap(),
        ]),
        &format!("kubectl apply --dry-run=server ({what})"),
    );
    let docs = yaml_documents(manifest);
    for d in &docs {
        let kind = d["kind"].as_str().unwrap().to_lowercase();
        let name = d["metadata"]["name"].as_str().unwrap();
        let group = d["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .map(|(g, _)| g);
        let id = match group {
            Some(g) => format!("{kind}.{g}/{name} created (server dry run)"),
            None => format!("{kind}/{name} created (server dry run)"),
        };
        assert!(out.contains(&id), "{what}: {id} missing from:\n{out}");
    }
    for kind in ["servicemonitor", "podmonitor", "prometheusrule"] {
        assert!(
            out.contains(&format!("{kind}.monitoring.coreos.com/")),
            "{what}: no {kind} in:\n{out}"
        );
    }
    docs.len()
}

/// The chart with every toggle on and the base + component are accepted by a real API server
/// with the Prometheus Operator's CRDs; an invalid `for` and an unknown field are refused (the
/// dry run does validate against the CRDs' schemas).
#[test]
fn monitoring_objects_pass_server_side_dry_run() {
    let kube = kube();
    for ns in ["mon-helm", "shop"] {
        must(
            kube.kubectl(&["create", "namespace", ns]),
            "create namespace",
        );
    }
    let chart = must(
        helm_template(&["--namespace", "mon-helm"], Some(ALL_ON)),
        "helm template (all on)",
    );
    let n = dry_run(kube, "mon-helm", &chart, "helm chart, all toggles on");
    eprintln!("server dry run: {n} objects of the chart (ServiceMonitor, PodMonitor, PrometheusRule, KEDA port) accepted");

    let built = must(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(overlay())
            .output()
            .unwrap(),
        "kubectl kustomize overlay",
    );
    let n = dry_run(kube, "shop", &built, "deploy/base + components/monitoring");
    eprintln!("server dry run: {n} objects of deploy/base + components/monitoring accepted");

    let component_rule =
        std::fs::read_to_string(repo_root().join(COMPONENT).join("prometheusrule.yaml")).unwrap();
    let servicemonitor =
        std::fs::read_to_string(repo_root().join(COMPONENT).join("servicemonitor.yaml")).unwrap();
    for (good, bad, needle) in [
        (
            &component_rule,
            component_rule.replacen("for: 15m", "for: soon", 1),
            "spec.groups[0].rules[0].for",
        ),
        (
            &servicemonitor,
            servicemonitor.replacen("interval: 15s", "intervall: 15s", 1),
            "intervall",
        ),
    ] {
        assert_ne!(good, &bad, "the broken copy must differ");
        let file = support::scratch().join(format!("{}.yaml", support::name("bad")));
        std::fs::write(&file, &bad).unwrap();
        let out = kube.kubectl(&[
            "apply",
            "--dry-run=server",
            "-n",
            "shop",
            "-f",
            file.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "not refused ({needle}): {err}"
        );
        eprintln!(
            "server dry run refuses {needle}: {}",
            err.lines().next().unwrap_or("")
        );
    }
}

// ------------------------------------------------------------------------------------------------
// TLS and basic auth of the HTTP endpoints (web config), TLS to RocketMQ
// ------------------------------------------------------------------------------------------------

/// The chart's values with everything of `web`, `rocketmqTls` and the monitors' TLS and basic auth
/// on; `hash` is the bcrypt hash of user prometheus.
fn web_values(hash: &str) -> String {
    format!(
        r#"
web:
  tls:
    enabled: true
    secretName: rmq-web-tls
    clientAuthType: RequireAndVerifyClientCert
    minVersion: TLS13
  basicAuthUsers:
    prometheus: "{hash}"
  headers:
    X-Frame-Options: deny
rocketmqTls:
  enabled: true
  secretName: rmq-client-tls
  serverName: broker.rocketmq.svc
  verifyHostname: false
serviceMonitor:
  enabled: true
  tlsConfig:
    certSecretName: prom-client-tls
  basicAuth:
    secretName: prom-basic-auth
    usernameKey: user
prometheusRule:
  enabled: true
"#
    )
}

/// The pod spec of the Deployment whose pods are `app.kubernetes.io/name: name`.
fn pod_spec<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    &docs
        .iter()
        .find(|d| {
            d["kind"] == "Deployment"
                && d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name
        })
        .unwrap_or_else(|| panic!("no Deployment with pods named {name}"))["spec"]["template"]
        ["spec"]
}

/// The container's environment as name -> value (valueFrom entries left out).
fn env_of(container: &Value) -> std::collections::BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

/// Where the file `path` of the pod's first container comes from: the (Secret, key) of the
/// secret volume mounted (whole, no subPath or items, so that updates arrive) at its directory.
fn mounted_file(pod: &Value, path: &str) -> (String, String) {
    let (dir, key) = path
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{path}: no directory"));
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("{path}: nothing mounted at {dir}"));
    assert!(mount.get("subPath").is_none(), "{path}: subPath mount");
    assert_eq!(mount["readOnly"], true, "{path}: mount not read-only");
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{path}: no volume {}", mount["name"]));
    let secret = &volume["secret"];
    assert!(
        secret.get("items").is_none(),
        "{path}: volume {} maps items",
        mount["name"]
    );
    (
        secret["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: volume {} is not a Secret", mount["name"]))
            .to_string(),
        key.to_string(),
    )
}

/// `(secret, key)` pairs for assertions.
fn sk(secret: &str, key: &str) -> (String, String) {
    (secret.to_string(), key.to_string())
}

/// Loads `web_config` (a rendered web config file naming TLS files under the mount `tls_mount`)
/// with the binaries' own loader, those files replaced by a test CA's: returns (TLS on, basic auth
/// on).
fn load_web_config(web_config: &str, tls_mount: &str, what: &str) -> (bool, bool) {
    let dir = support::scratch().join(support::name("web-config"));
    std::fs::create_dir_all(&dir).unwrap();
    support::certs::ca(&dir);
    support::certs::leaf(
        &dir,
        "tls",
        "rmq-exporter",
        "subjectAltName=DNS:rmq-exporter\nextendedKeyUsage=serverAuth\n",
    );
    let file = dir.join("web-config.yml");
    std::fs::write(
        &file,
        web_config.replace(&format!("{tls_mount}/"), &format!("{}/", dir.display())),
    )
    .unwrap();
    let config =
        rmq_web::Config::load(&file).unwrap_or_else(|e| panic!("{what}: the binaries refuse: {e}"));
    (config.tls(), config.basic_auth())
}

/// web.tls + web.basicAuthUsers + rocketmqTls + the monitors' tlsConfig and basicAuth: the web
/// config Secret holds the exporter-toolkit file (loaded by the binaries' own loader), both pods
/// mount it and the TLS Secret and are pointed at it, the exporter mounts the RocketMQ client
/// Secret and gets its env, probes are tcpSocket (basic auth; HTTPS with TLS alone), the
/// monitors scrape https with the CA, server name, client certificate and credentials. Wrong
/// combinations are refused; a real API server accepts every object.
#[test]
fn helm_chart_web_tls_basic_auth_and_rocketmq_tls() {
    let hash = support::bcrypt("scrape-me");
    let values = web_values(&hash);
    let chart = must(
        helm_template(&["--namespace", "mon-web"], Some(&values)),
        "helm template (web TLS, basic auth, RocketMQ TLS)",
    );
    let docs = yaml_documents(&chart);

    // The web config Secret.
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "rel-rmq-exporter-web-config")
        .expect("Secret rel-rmq-exporter-web-config");
    let text = secret["stringData"]["web-config.yml"]
        .as_str()
        .expect("stringData web-config.yml");
    let web: Value = serde_yaml::from_str(text).expect("web-config.yml is YAML");
    assert_eq!(
        web,
        json!({
            "tls_server_config": {
                "cert_file": "/etc/rmq-web/tls/tls.crt",
                "key_file": "/etc/rmq-web/tls/tls.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "/etc/rmq-web/tls/ca.crt",
                "min_version": "TLS13",
            },
            "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
            "basic_auth_users": {"prometheus": hash},
        }),
        "{text}"
    );
    assert_eq!(
        load_web_config(text, "/etc/rmq-web/tls", "helm"),
        (true, true)
    );
    eprintln!("helm: Secret rel-rmq-exporter-web-config holds tls_server_config (mutual TLS, TLS13), http_server_config.headers, basic_auth_users; rmq_web::Config::load accepts it (TLS and basic auth on)");

    // Both pods: the config file and the files it names come from the right Secrets.
    let exporter = pod_spec(&docs, "rmq-exporter");
    let sidecar = pod_spec(&docs, "rmq-sidecar");
    let env = env_of(&exporter["containers"][0]);
    let exporter_file = &env["RMQ_EXPORTER_WEB_CONFIG_FILE"];
    let args: Vec<&str> = sidecar["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "--web.config.file")
        .expect("sidecar --web.config.file");
    let sidecar_file = args[at + 1];
    for (pod, file, who) in [
        (exporter, exporter_file.as_str(), "exporter"),
        (sidecar, sidecar_file, "sidecar"),
    ] {
        assert_eq!(
            mounted_file(pod, file),
            sk("rel-rmq-exporter-web-config", "web-config.yml"),
            "{who}"
        );
        for (setting, key) in [
            ("cert_file", "tls.crt"),
            ("key_file", "tls.key"),
            ("client_ca_file", "ca.crt"),
        ] {
            assert_eq!(
                mounted_file(pod, web["tls_server_config"][setting].as_str().unwrap()),
                sk("rmq-web-tls", key),
                "{who} {setting}"
            );
        }
        eprintln!("helm: {who} reads {file} from Secret rel-rmq-exporter-web-config, cert_file/key_file/client_ca_file from Secret rmq-web-tls");
    }

    // TLS to RocketMQ: exporter only.
    assert_eq!(env["RMQ_EXPORTER_TLS"], "true");
    for (var, key) in [
        ("RMQ_EXPORTER_TLS_CA_FILE", "ca.crt"),
        ("RMQ_EXPORTER_TLS_CERT_FILE", "tls.crt"),
        ("RMQ_EXPORTER_TLS_KEY_FILE", "tls.key"),
    ] {
        assert_eq!(
            mounted_file(exporter, &env[var]),
            sk("rmq-client-tls", key),
            "{var}"
        );
    }
    assert_eq!(env["RMQ_EXPORTER_TLS_SERVER_NAME"], "broker.rocketmq.svc");
    assert_eq!(env["RMQ_EXPORTER_TLS_VERIFY_HOSTNAME"], "false");
    assert_eq!(env["RMQ_EXPORTER_TLS_INSECURE_SKIP_VERIFY"], "false");
    assert!(!sidecar["volumes"].to_string().contains("rmq-client-tls"));
    eprintln!("helm: rocketmqTls -> RMQ_EXPORTER_TLS=true, CA/cert/key files from Secret rmq-client-tls, server name, verify hostname false");

    // Probes: the kubelet sends no credentials, so tcpSocket.
    for (pod, probe) in [
        (exporter, "readinessProbe"),
        (exporter, "livenessProbe"),
        (sidecar, "livenessProbe"),
    ] {
        let p = &pod["containers"][0][probe];
        assert_eq!(
            p["tcpSocket"],
            json!({"port": "http-metrics"}),
            "{probe}: {p}"
        );
        assert!(p.get("httpGet").is_none(), "{probe}: {p}");
    }
    // Scrape annotations and the monitors.
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "rel-rmq-exporter")
        .unwrap();
    for annotations in [
        &service["metadata"]["annotations"],
        &docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "rel-rmq-exporter")
            .unwrap()["spec"]["template"]["metadata"]["annotations"],
        &docs
            .iter()
            .find(|d| {
                d["kind"] == "Deployment" && d["metadata"]["name"] == "rel-rmq-exporter-sidecar"
            })
            .unwrap()["spec"]["template"]["metadata"]["annotations"],
    ] {
        assert_eq!(annotations["prometheus.io/scheme"], "https");
    }
    for line in check_monitors(&docs, None) {
        eprintln!("helm: {line}");
    }
    for (kind, key) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let endpoint = &one_of_kind(&docs, kind)["spec"][key][0];
        assert_eq!(endpoint["scheme"], "https", "{kind}");
        assert_eq!(
            endpoint["tlsConfig"],
            json!({
                "ca": {"secret": {"name": "rmq-web-tls", "key": "ca.crt"}},
                "serverName": "rel-rmq-exporter.mon-web.svc",
                "cert": {"secret": {"name": "prom-client-tls", "key": "tls.crt"}},
                "keySecret": {"name": "prom-client-tls", "key": "tls.key"},
            }),
            "{kind}"
        );
        assert_eq!(
            endpoint["basicAuth"],
            json!({
                "username": {"name": "prom-basic-auth", "key": "user"},
                "password": {"name": "prom-basic-auth", "key": "password"},
            }),
            "{kind}"
        );
    }
    eprintln!("helm: probes tcpSocket; prometheus.io/scheme https; ServiceMonitor and PodMonitor scheme https, tlsConfig (ca rmq-web-tls/ca.crt, serverName rel-rmq-exporter.mon-web.svc, client cert prom-client-tls), basicAuth prom-basic-auth");

    // TLS alone: HTTPS probes, no users, no client certificate; the defaults: none of it.
    let tls_only = yaml_documents(&must(
        helm_template(
            &[],
            Some("web: {tls: {enabled: true, secretName: rmq-web-tls}}\nserviceMonitor: {enabled: true, tlsConfig: {insecureSkipVerify: true}}\n"),
        ),
        "helm template (TLS only)",
    ));
    for (pod, probe, path) in [
        ("rmq-exporter", "readinessProbe", "/readyz"),
        ("rmq-exporter", "livenessProbe", "/healthz"),
        ("rmq-sidecar", "livenessProbe", "/healthz"),
    ] {
        assert_eq!(
            pod_spec(&tls_only, pod)["containers"][0][probe]["httpGet"],
            json!({"path": path, "port": "http-metrics", "scheme": "HTTPS"}),
            "{pod} {probe}"
        );
    }
    let text = of_kind(&tls_only, "Secret")[0]["stringData"]["web-config.yml"]
        .as_str()
        .unwrap()
        .to_string();
    let web: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        web,
        json!({"tls_server_config": {"cert_file": "/etc/rmq-web/tls/tls.crt", "key_file": "/etc/rmq-web/tls/tls.key"}})
    );
    assert_eq!(
        load_web_config(&text, "/etc/rmq-web/tls", "helm, TLS only"),
        (true, false)
    );
    let endpoint = &one_of_kind(&tls_only, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["tlsConfig"], json!({"insecureSkipVerify": true}));
    assert!(endpoint.get("basicAuth").is_none());
    let defaults = yaml_documents(&must(helm_template(&[], None), "helm template (defaults)"));
    assert!(of_kind(&defaults, "Secret").is_empty());
    let exporter = pod_spec(&defaults, "rmq-exporter");
    assert!(exporter.get("volumes").is_none());
    assert!(env_of(&exporter["containers"][0])
        .keys()
        .all(|k| !k.contains("TLS") && !k.contains("WEB_CONFIG")));
    assert!(exporter["containers"][0]["readinessProbe"]["httpGet"]
        .get("scheme")
        .is_none());
    eprintln!("helm: TLS alone -> httpGet probes with scheme HTTPS, no basic_auth_users, tlsConfig insecureSkipVerify; defaults -> no web config Secret, no volumes, no TLS env");

    for (values, message) in [
        (
            "web: {tls: {enabled: true}}",
            "web.tls.secretName is required",
        ),
        (
            "web: {tls: {enabled: true, secretName: x, clientAuthType: RequireAnyClientCert}}",
            "web.tls.clientAuthType \"RequireAnyClientCert\": supported are",
        ),
        (
            "web: {tls: {clientAuthType: RequireAndVerifyClientCert}}",
            "need web.tls.enabled",
        ),
        (
            "web: {basicAuthUsers: {p: x}}\nserviceMonitor: {enabled: true}",
            "serviceMonitor.basicAuth.secretName is required",
        ),
        (
            "web: {tls: {enabled: true, secretName: x, clientAuthType: RequireAndVerifyClientCert}}\nserviceMonitor: {enabled: true}",
            "serviceMonitor.tlsConfig.certSecretName is required",
        ),
        (
            "rocketmqTls: {enabled: true}",
            "rocketmqTls.secretName is required",
        ),
    ] {
        let out = helm_template(&[], Some(values));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(message), "{values}: {err}");
        eprintln!("helm refuses {values:?}: {message}");
    }

    let kube = kube();
    must(
        kube.kubectl(&["create", "namespace", "mon-web"]),
        "create namespace",
    );
    let n = dry_run(
        kube,
        "mon-web",
        &chart,
        "helm chart, web TLS + basic auth + RocketMQ TLS",
    );
    eprintln!("server dry run: {n} objects of the chart with web TLS, basic auth and RocketMQ TLS accepted");
}

/// deploy/base + components monitoring, web-tls and rocketmq-tls: both pods mount the generated
/// web config Secret (a file the binaries load) and the TLS Secret, probe over HTTPS, the
/// monitors scrape https trusting the Secret's CA, the exporter gets the RocketMQ client Secret
/// and env. deploy/README.md's web-auth component on top replaces the web config with one with
/// basic auth, makes the probes tcpSocket and gives the monitors credentials. web-tls alone (no
/// monitors to patch) builds too; a real API server accepts the objects.
#[test]
fn kustomize_components_add_web_tls_and_rocketmq_tls() {
    let root = repo_root();
    let dir = support::scratch().join("overlay-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let rel = |p: &str| {
        up_to_root(&dir)
            .join(root.join(p).strip_prefix("/").unwrap())
            .display()
            .to_string()
    };
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop-tls\n\
             resources:\n  - {}\ncomponents:\n  - {}\n  - {}\n  - {}\n",
            rel("deploy/base"),
            rel(COMPONENT),
            rel("deploy/components/web-tls"),
            rel("deploy/components/rocketmq-tls"),
        ),
    )
    .unwrap();
    let built = must(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap(),
        "kubectl kustomize overlay (TLS components)",
    );
    let docs = yaml_documents(&built);
    for line in check_monitors(&docs, None) {
        eprintln!("kustomize: {line}");
    }

    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "rmq-web-config")
        .expect("Secret rmq-web-config");
    use base64::Engine;
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(
                secret["data"]["web-config.yml"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .collect::<String>(),
            )
            .unwrap(),
    )
    .unwrap();
    let web: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        load_web_config(&text, "/etc/rmq-web/tls", "kustomize"),
        (true, false)
    );
    let exporter = pod_spec(&docs, "rmq-exporter");
    let sidecar = pod_spec(&docs, "rmq-sidecar");
    let env = env_of(&exporter["containers"][0]);
    for (pod, var, who) in [
        (exporter, "RMQ_EXPORTER_WEB_CONFIG_FILE", "exporter"),
        (sidecar, "RMQ_SIDECAR_WEB_CONFIG_FILE", "sidecar"),
    ] {
        let file = &env_of(&pod["containers"][0])[var];
        assert_eq!(
            mounted_file(pod, file),
            sk("rmq-web-config", "web-config.yml"),
            "{who}"
        );
        for (setting, key) in [("cert_file", "tls.crt"), ("key_file", "tls.key")] {
            assert_eq!(
                mounted_file(pod, web["tls_server_config"][setting].as_str().unwrap()),
                sk("rmq-exporter-web-tls", key),
                "{who} {setting}"
            );
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            let p = &pod["containers"][0][probe];
            if !p.is_null() {
                assert_eq!(p["httpGet"]["scheme"], "HTTPS", "{who} {probe}");
            }
        }
        assert_eq!(
            docs.iter()
                .find(|d| d["kind"] == "Deployment" && d["spec"]["template"]["spec"] == *pod)
                .unwrap()["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"],
            "https"
        );
        eprintln!("kustomize: {who} reads {file} from Secret rmq-web-config (loads: TLS on), certificate from rmq-exporter-web-tls, probes HTTPS");
    }
    for (var, key) in [
        ("RMQ_EXPORTER_TLS_CA_FILE", "ca.crt"),
        ("RMQ_EXPORTER_TLS_CERT_FILE", "tls.crt"),
        ("RMQ_EXPORTER_TLS_KEY_FILE", "tls.key"),
    ] {
        assert_eq!(
            mounted_file(exporter, &env[var]),
            sk("rmq-exporter-rocketmq-tls", key),
            "{var}"
        );
    }
    assert_eq!(env["RMQ_EXPORTER_TLS"], "true");
    for (kind, key) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let endpoint = &one_of_kind(&docs, kind)["spec"][key][0];
        assert_eq!(endpoint["scheme"], "https", "{kind}");
        assert_eq!(
            endpoint["tlsConfig"],
            json!({"ca": {"secret": {"name": "rmq-exporter-web-tls", "key": "ca.crt"}}, "serverName": "rmq-exporter"}),
            "{kind}"
        );
    }
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "rmq-exporter")
        .unwrap();
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/scheme"],
        "https"
    );
    eprintln!("kustomize: RocketMQ TLS files from Secret rmq-exporter-rocketmq-tls; monitors scheme https, ca rmq-exporter-web-tls/ca.crt, serverName rmq-exporter");

    // Basic auth: deploy/README.md's web-auth component, listed after web-tls, with its own
    // web-config.yml.
    let readme = std::fs::read_to_string(root.join("deploy/README.md")).unwrap();
    let marker = "# overlays/prod/web-auth/kustomization.yaml\n";
    let start = readme
        .find(marker)
        .expect("deploy/README.md: the web-auth component")
        + marker.len();
    let component = &readme[start..start + readme[start..].find("```").unwrap()];
    let auth_dir = support::scratch().join("overlay-web-auth");
    std::fs::create_dir_all(auth_dir.join("web-auth")).unwrap();
    std::fs::write(auth_dir.join("web-auth/kustomization.yaml"), component).unwrap();
    let hash = support::bcrypt("scrape-me");
    std::fs::write(
        auth_dir.join("web-auth/web-config.yml"),
        format!(
            "tls_server_config:\n  cert_file: /etc/rmq-web/tls/tls.crt\n  key_file: /etc/rmq-web/tls/tls.key\n\
             basic_auth_users:\n  prometheus: \"{hash}\"\n"
        ),
    )
    .unwrap();
    let rel_auth = |p: &str| {
        up_to_root(&auth_dir)
            .join(root.join(p).strip_prefix("/").unwrap())
            .display()
            .to_string()
    };
    std::fs::write(
        auth_dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop-tls\n\
             resources:\n  - {}\ncomponents:\n  - {}\n  - {}\n  - web-auth\n",
            rel_auth("deploy/base"),
            rel_auth(COMPONENT),
            rel_auth("deploy/components/web-tls"),
        ),
    )
    .unwrap();
    let auth_built = must(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(&auth_dir)
            .output()
            .unwrap(),
        "kubectl kustomize overlay (web-tls + README's web-auth)",
    );
    let auth_docs = yaml_documents(&auth_built);
    let secrets = of_kind(&auth_docs, "Secret");
    assert_eq!(secrets.len(), 1, "rmq-web-config replaced, not added");
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(
                secrets[0]["data"]["web-config.yml"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .collect::<String>(),
            )
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        load_web_config(&text, "/etc/rmq-web/tls", "kustomize web-auth"),
        (true, true)
    );
    for (pod, probe) in [
        ("rmq-exporter", "readinessProbe"),
        ("rmq-exporter", "livenessProbe"),
        ("rmq-sidecar", "livenessProbe"),
    ] {
        let p = &pod_spec(&auth_docs, pod)["containers"][0][probe];
        assert_eq!(
            p["tcpSocket"],
            json!({"port": "http-metrics"}),
            "{pod} {probe}: {p}"
        );
        assert!(p.get("httpGet").is_none(), "{pod} {probe}: {p}");
    }
    for (kind, key) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let endpoint = &one_of_kind(&auth_docs, kind)["spec"][key][0];
        assert_eq!(endpoint["scheme"], "https", "{kind}");
        assert_eq!(
            endpoint["basicAuth"],
            json!({
                "username": {"name": "prom-basic-auth", "key": "username"},
                "password": {"name": "prom-basic-auth", "key": "password"},
            }),
            "{kind}"
        );
    }
    eprintln!("kustomize: deploy/README.md's web-auth component replaces rmq-web-config (loads: TLS and basic auth on), probes tcpSocket, monitors basicAuth prom-basic-auth");

    // web-tls without components/monitoring: its monitor patches match nothing.
    let alone = support::scratch().join("overlay-web-tls-alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::write(
        alone.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {}\ncomponents:\n  - {}\n",
            up_to_root(&alone)
                .join(root.join("deploy/base").strip_prefix("/").unwrap())
                .display(),
            up_to_root(&alone)
                .join(
                    root.join("deploy/components/web-tls")
                        .strip_prefix("/")
                        .unwrap()
                )
                .display(),
        ),
    )
    .unwrap();
    let alone_docs = yaml_documents(&must(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(&alone)
            .output()
            .unwrap(),
        "kubectl kustomize base + web-tls",
    ));
    assert!(of_kind(&alone_docs, "ServiceMonitor").is_empty());
    assert_eq!(of_kind(&alone_docs, "Secret").len(), 1);
    eprintln!(
        "kustomize: base + web-tls alone builds ({} objects, no monitors)",
        alone_docs.len()
    );

    let kube = kube();
    must(
        kube.kubectl(&["create", "namespace", "shop-tls"]),
        "create namespace",
    );
    let n = dry_run(
        kube,
        "shop-tls",
        &built,
        "deploy/base + components monitoring, web-tls, rocketmq-tls",
    );
    eprintln!(
        "server dry run: {n} objects of deploy/base + monitoring + web-tls + rocketmq-tls accepted"
    );
    let n = dry_run(
        kube,
        "shop-tls",
        &auth_built,
        "deploy/base + components monitoring, web-tls, README's web-auth",
    );
    eprintln!(
        "server dry run: {n} objects of deploy/base + monitoring + web-tls + web-auth accepted"
    );
}
