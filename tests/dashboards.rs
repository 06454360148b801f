//! The Grafana dashboards (dashboards/*.json):
//!
//! - both pass the structural check against Grafana's dashboard model (tests/rig/grafana_schema.sh:
//!   grafana-foundation-sdk from PyPI), and that check does reject what Grafana would not load;
//! - every query of dashboards/rocketmq-scaling.json, with its variables set as Grafana sets them,
//!   returns the sidecar's numbers from a real Prometheus scraping a real `rmq-sidecar --dry-run`
//!   (on a real kube-apiserver) fed by a real exporter reading a real RocketMQ 5.3.3 broker with a
//!   backlog; the panels for KEDA's and kube-state-metrics' series, which nothing here exports, must
//!   say they are optional ("where present" in their description) and still be valid PromQL. The
//!   backlog dashboard's collapsed "Exporter freshness" row (which tests/remoting_5x.rs does not
//!   reach) is checked the same way.

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    backlog, bin, free_port, http_get, must, name, repo_root, start_prometheus, urlencode, Rig,
    RigOptions,
};

const WAIT: Duration = Duration::from_secs(90);

/// Per (panel, query) a check of its rows.
type Checks<'a> = HashMap<(&'a str, &'a str), Box<dyn Fn(&Rows) -> bool>>;

fn dashboard_path(file: &str) -> PathBuf {
    repo_root().join("dashboards").join(file)
}

fn dashboard(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dashboard_path(file)).unwrap()).unwrap()
}

/// Runs tests/rig/grafana_schema.sh on `files`: (exit success, stdout).
fn schema_check(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/rig/grafana_schema.sh"))
        .args(files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "grafana_schema.sh did not run ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), stdout)
}

/// The lines the check printed for one file (from `FILE: OK|FAIL` to the next file).
fn section<'a>(stdout: &'a str, file: &Path) -> &'a str {
    let head = format!("{}: ", file.display());
    let start = stdout
        .find(&head)
        .unwrap_or_else(|| panic!("no section for {}:\n{stdout}", file.display()));
    let rest = &stdout[start..];
    let end = rest[1..]
        .find("\n/")
        .or_else(|| rest[1..].find("\ngrafana_schema:"))
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

#[test]
fn dashboards_pass_the_grafana_schema_check() {
    let files = [
        dashboard_path("rocketmq-backlog.json"),
        dashboard_path("rocketmq-scaling.json"),
    ];
    let (ok, stdout) = schema_check(&files);
    assert!(ok, "{stdout}");
    for f in &files {
        let s = section(&stdout, f);
        assert!(s.starts_with(&format!("{}: OK", f.display())), "{s}");
        for checked in [
            "decoded by grafana_foundation_sdk Dashboard.from_json",
            "no unknown fields",
            "field types match the model",
            "panel ids unique, gridPos inside 24 columns without overlaps",
        ] {
            assert!(s.contains(checked), "{checked:?} not in:\n{s}");
        }
        assert!(!s.contains("problem:"), "{s}");
    }
    assert!(
        stdout.contains("grafana_schema: 2 of 2 dashboards pass"),
        "{stdout}"
    );
}

#[test]
fn the_schema_check_rejects_what_grafana_would_not_load() {
    type Break = fn(&mut Value);
    let cases: [(&str, Break, &str); 12] = [
        (
            "unknown-field",
            |d| d["panels"][1]["gridpos"] = serde_json::json!({}),
            "panels[1].gridpos: unknown field",
        ),
        (
            "unknown-query-field",
            |d| d["panels"][1]["targets"][0]["exp"] = "up".into(),
            "targets[0].exp: unknown field",
        ),
        (
            "unknown-option",
            |d| d["panels"][1]["options"]["legend"]["mode"] = "table".into(),
            "options.legend.mode: unknown field",
        ),
        (
            "mistyped-field",
            |d| d["panels"][1]["gridPos"]["w"] = "12".into(),
            "grid_pos.w: \"12\" is not int",
        ),
        (
            "bad-enum",
            |d| d["panels"][1]["options"]["legend"]["displayMode"] = "tabel".into(),
            "display_mode: \"tabel\" is not LegendDisplayMode",
        ),
        (
            "bad-panel-type",
            |d| d["panels"][1]["type"] = "graph".into(),
            "panel type 'graph' is not one Grafana ships",
        ),
        (
            "no-datasource",
            |d| {
                let p = d["panels"][1].as_object_mut().unwrap();
                p.remove("datasource");
                for t in p["targets"].as_array_mut().unwrap() {
                    t.as_object_mut().unwrap().remove("datasource");
                }
            },
            "no datasource",
        ),
        (
            "no-targets",
            |d| d["panels"][1]["targets"] = serde_json::json!([]),
            "no queries (targets)",
        ),
        (
            "duplicate-id",
            |d| d["panels"][2]["id"] = d["panels"][1]["id"].clone(),
            "used 2 times",
        ),
        (
            "overlap",
            |d| d["panels"][2]["gridPos"]["x"] = 6.into(),
            "overlaps",
        ),
        (
            "outside-grid",
            |d| d["panels"][2]["gridPos"]["w"] = 20.into(),
            "outside the 24-column grid",
        ),
        (
            "undefined-variable",
            |d| {
                let e = d["panels"][1]["targets"][0]["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$topic", "$topics");
                d["panels"][1]["targets"][0]["expr"] = e.into();
            },
            "$topics is not a variable of this dashboard",
        ),
    ];
    let good = dashboard("rocketmq-scaling.json");
    let dir = support::scratch().join(name("broken-dashboards"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (case, break_it, _) in &cases {
        let mut d = good.clone();
        break_it(&mut d);
        let f = dir.join(format!("{case}.json"));
        std::fs::write(&f, serde_json::to_string_pretty(&d).unwrap()).unwrap();
        files.push(f);
    }
    let (ok, stdout) = schema_check(&files);
    assert!(!ok, "{stdout}");
    for ((case, _, problem), f) in cases.iter().zip(&files) {
        let s = section(&stdout, f);
        assert!(
            s.starts_with(&format!("{}: FAIL", f.display())),
            "{case}: {s}"
        );
        assert!(s.contains(problem), "{case}: {problem:?} not in:\n{s}");
    }
    assert!(stdout.contains(&format!(
        "grafana_schema: 0 of {} dashboards pass",
        cases.len()
    )));
}

// ---------------------------------------------------------------------------------------------
// The scaling dashboard against the real chain.

/// kube.sh's API server (no controllers: a Deployment's spec.replicas is what the sidecar reads).
struct Kube {
    env: HashMap<String, String>,
}

impl Kube {
    fn start() -> Kube {
        let dir = support::scratch().join(name("kube"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("bash")
            .arg(repo_root().join("tests/rig/kube.sh"))
            .args(["start", "--dir", dir.to_str().unwrap()])
            .args(["--owner-pid", &std::process::id().to_string()])
            .output()
            .unwrap();
        must(out, "kube.sh start");
        let env = std::fs::read_to_string(dir.join("kube.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Kube { env }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.env["KUBECTL"])
            .args(["--kubeconfig", &self.env["KUBECONFIG_ADMIN"]])
            .args(args)
            .output()
            .unwrap();
        must(out, &format!("kubectl {}", args.join(" ")))
    }
}

/// `rmq-sidecar --dry-run` on a ScaledObject file; killed on drop.
struct Sidecar {
    child: Child,
    addr: String,
}

impl Sidecar {
    fn start(kube: &Kube, yaml: &str) -> Sidecar {
        let file = support::scratch().join(format!("{}.yaml", name("so")));
        std::fs::write(&file, yaml).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = support::scratch().join(format!("{}.log", name("sidecar")));
        let child = Command::new(bin("rmq-sidecar"))
            .args(["--config", file.to_str().unwrap(), "--listen", &addr])
            .args(["--kubeconfig", &kube.env["KUBECONFIG_ADMIN"], "--dry-run"])
            .args(["--hpa-sync-period-seconds", "1"])
            .args(["--lease-duration-seconds", "3", "--lease-name"])
            .arg(name("lease").to_lowercase().replace('_', "-"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Sidecar { child, addr }
    }

    /// Polls its /metrics until the page contains `needle`.
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok((200, page)) = http_get(&self.addr, "/metrics") {
                if page.contains(needle) {
                    return;
                }
                last = page;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("sidecar /metrics has no {needle:?} within {WAIT:?}:\n{last}");
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scaled_object(name: &str, exporter: &str, group: &str, topic: &str) -> String {
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
  triggers:
  - type: rocketmq-exporter
    metadata:
      url: http://{exporter}/metrics
      consumerGroup: {group}
      topic: {topic}
      threshold: '30'
"#
    )
}

/// tests/rig/prometheus.sh scrapes one target; this adds a second job to its config and reloads.
fn add_scrape_job(prom: &str, prom_dir: &Path, job: &str, target: &str) {
    let conf = prom_dir.join("prometheus.yml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
    ));
    std::fs::write(&conf, text).unwrap();
    let pid = std::fs::read_to_string(prom_dir.join("prometheus.pid")).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success(), "reload Prometheus");
    let up = format!("up{{job=\"{job}\"}}");
    let rows = eventually_prom(prom, &up, |r| r.iter().any(|(_, v)| *v == 1.0));
    assert!(rows.iter().any(|(_, v)| *v == 1.0), "{up}: {rows:?}");
}

fn stop_prometheus(dir: &Path) {
    let _ = Command::new("bash")
        .arg(repo_root().join("tests/rig/prometheus.sh"))
        .args(["stop", "--dir", dir.to_str().unwrap()])
        .status();
}

type Rows = Vec<(BTreeMap<String, String>, f64)>;

/// An instant query: each series' labels and value. A query Prometheus rejects panics.
fn prom_query(prom: &str, expr: &str) -> Rows {
    let (status, body) =
        http_get(prom, &format!("/api/v1/query?query={}", urlencode(expr))).unwrap();
    assert_eq!(status, 200, "{expr}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
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

fn eventually_prom(prom: &str, expr: &str, done: impl Fn(&Rows) -> bool) -> Rows {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = prom_query(prom, expr);
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sets Grafana variables the way Grafana renders them into PromQL (a multi-value selection is
/// `(a|b|c)`); longer names first, so `$scaledobject` does not eat `$scaledobject_name`.
fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut vars: Vec<_> = vars.iter().collect();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    vars.iter()
        .fold(expr.to_string(), |e, (k, v)| e.replace(&format!("${k}"), v))
}

/// Every panel, those inside collapsed rows included, except rows.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// Families nothing in this test exports: KEDA's, kube-state-metrics', and the ApsaraMQ-only
/// unread-groups gauge. A panel may be exempt from returning data only for these.
fn absent_here(expr: &str) -> bool {
    expr.contains("keda_")
        || expr.contains("kube_")
        || expr.contains("rocketmq_exporter_unread_groups")
}

fn label<'a>(row: &'a (BTreeMap<String, String>, f64), key: &str) -> &'a str {
    row.0.get(key).map_or("", String::as_str)
}

/// For each panel of `dash`: optional ("where present") exactly when it only queries families
/// absent here; optional queries must be valid PromQL; every other query must satisfy the check
/// `checks` has for (title, refId), or return series. Returns the titles that were evaluated.
fn evaluate(
    prom: &str,
    dash: &Value,
    vars: &[(String, String)],
    checks: &Checks<'_>,
) -> Vec<String> {
    let mut seen = Vec::new();
    for panel in panels(dash) {
        let title = panel["title"].as_str().unwrap();
        let description = panel["description"].as_str().unwrap_or("");
        let targets = panel["targets"].as_array().unwrap();
        let optional = description.to_lowercase().contains("where present");
        let exprs: Vec<&str> = targets
            .iter()
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        assert_eq!(
            optional,
            exprs.iter().all(|e| absent_here(e)),
            "{title}: a panel says \"where present\" in its description exactly when its series \
             may be absent (KEDA, kube-state-metrics, ApsaraMQ-only): {exprs:?}"
        );
        for t in targets {
            let refid = t["refId"].as_str().unwrap();
            let expr = substitute(t["expr"].as_str().unwrap(), vars);
            assert!(
                !expr.contains('$'),
                "{title} {refid}: variable left in {expr}"
            );
            if optional {
                prom_query(prom, &expr); // valid PromQL; data only where the series exist
                continue;
            }
            let non_empty: Box<dyn Fn(&Rows) -> bool> = Box::new(|r: &Rows| !r.is_empty());
            let check = checks.get(&(title, refid)).unwrap_or(&non_empty);
            let rows = eventually_prom(prom, &expr, check);
            assert!(check(&rows), "{title} {refid}: {expr} gave {rows:?}");
        }
        seen.push(title.to_string());
    }
    seen
}

/// label_values(<selector>, <label>) of every query variable lists `want[label]` (after the
/// variable's regex, if it has one).
fn check_variables(
    prom: &str,
    dash: &Value,
    vars: &[(String, String)],
    want: &HashMap<&str, Vec<String>>,
) {
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        let var = v["name"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {q}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let (selector, label) = (substitute(selector.trim(), vars), label.trim());
        let regex = v["regex"].as_str().map(|r| {
            // Grafana's /pattern/ form.
            regex::Regex::new(
                r.strip_prefix('/')
                    .and_then(|r| r.strip_suffix('/'))
                    .unwrap(),
            )
            .unwrap()
        });
        let url = format!("/api/v1/series?match[]={}", urlencode(&selector));
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = http_get(prom, &url).unwrap();
            assert_eq!(status, 200, "{q}: {body}");
            let series: Value = serde_json::from_str(&body).unwrap();
            let values: Vec<String> = series["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s[label].as_str())
                .map(|value| match &regex {
                    Some(re) => re
                        .captures(value)
                        .and_then(|c| c.get(1))
                        .map_or(String::new(), |m| m.as_str().to_string()),
                    None => value.to_string(),
                })
                .collect();
            let expected = &want[var];
            if expected.iter().all(|w| values.contains(w)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "variable {var}: {q} lists {values:?}, not all of {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn scaling_dashboard_queries_return_the_sidecars_numbers() {
    let rig = Rig::start(RigOptions {
        version: "5.3.3",
        brokers: 1,
        slave: false,
        acl: false,
    });
    let kube = Kube::start();
    let (t, g) = (name("TDS"), name("GDS"));
    rig.produce(&t, 10, 4);
    rig.consume(&g, &t, 10);
    rig.produce(&t, 90, 4);
    let exporter = support::exporter_for(rig.namesrv(), &[&g], &["--instance-id", "rig"]);
    exporter.eventually(WAIT, |m| backlog(m, &t, &g).filter(|b| b.2 == 90.0));

    // good: 90 messages at threshold 30 → 3 replicas wanted, 2 stay (dry run).
    // bad_source: its trigger's exporter does not answer → source errors.
    // bad_target: its Deployment is deleted once the sidecar runs → scale errors (not_found).
    let k8s_name = |p: &str| name(p).to_lowercase().replace('_', "-");
    let (good, bad_source, bad_target) = (
        k8s_name("dash-good"),
        k8s_name("dash-src"),
        k8s_name("dash-tgt"),
    );
    for d in [&good, &bad_source, &bad_target] {
        kube.kubectl(&[
            "create",
            "deployment",
            d,
            "--image=registry.invalid/app:1",
            "--replicas=2",
        ]);
    }
    let yaml = [
        scaled_object(&good, &exporter.addr, &g, &t),
        scaled_object(&bad_source, "127.0.0.1:1", &g, &t),
        scaled_object(&bad_target, &exporter.addr, &g, &t),
    ]
    .join("---\n");
    let sidecar = Sidecar::start(&kube, &yaml);
    sidecar.wait_for(&format!(
        "rmq_sidecar_current_replicas{{scaledobject=\"default/{bad_target}\"}} 2"
    ));
    kube.kubectl(&["delete", "deployment", &bad_target]);
    sidecar.wait_for(&format!("rmq_sidecar_scale_errors_total{{scaledobject=\"default/{bad_target}\",cause=\"not_found\"}}"));

    let (prom, prom_dir) = start_prometheus(&exporter.addr);
    add_scrape_job(&prom, &prom_dir, "rmq-sidecar", &sidecar.addr);

    let so = |n: &str| format!("default/{n}");
    let vars: Vec<(String, String)> = [
        ("instance_id", "rig".to_string()),
        ("consumer_group", g.clone()),
        ("topic", t.clone()),
        (
            "scaledobject",
            format!("({}|{}|{})", so(&good), so(&bad_source), so(&bad_target)),
        ),
        (
            "scaledobject_name",
            format!("({good}|{bad_source}|{bad_target})"),
        ),
        ("__rate_interval", "1m".to_string()),
        ("__range", "5m".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let dash = dashboard("rocketmq-scaling.json");
    let want: HashMap<&str, Vec<String>> = HashMap::from([
        ("instance_id", vec!["rig".to_string()]),
        ("consumer_group", vec![g.clone()]),
        ("topic", vec![t.clone()]),
        (
            "scaledobject",
            vec![so(&good), so(&bad_source), so(&bad_target)],
        ),
        (
            "scaledobject_name",
            vec![good.clone(), bad_source.clone(), bad_target.clone()],
        ),
    ]);
    check_variables(&prom, &dash, &vars, &want);

    let (good_so, src_so, tgt_so) = (so(&good), so(&bad_source), so(&bad_target));
    let is = |row: &(BTreeMap<String, String>, f64), so: &str| label(row, "scaledobject") == so;
    let value_of = move |rows: &Rows, so: &str| rows.iter().find(|r| is(r, so)).map(|r| r.1);
    let mut checks: Checks<'_> = HashMap::new();
    checks.insert(
        ("Backlog (ready + inflight) by consumer group", "A"),
        Box::new(|r: &Rows| r.len() == 1 && r[0].1 == 90.0),
    );
    let gs = good_so.clone();
    checks.insert(
        ("Desired and current replicas", "A"),
        Box::new(move |r: &Rows| value_of(r, &gs) == Some(3.0)),
    );
    let (gs, ss) = (good_so.clone(), src_so.clone());
    checks.insert(
        ("Desired and current replicas", "B"),
        // --dry-run: nothing is written, current stays at the Deployment's 2.
        Box::new(move |r: &Rows| value_of(r, &gs) == Some(2.0) && value_of(r, &ss) == Some(2.0)),
    );
    let gs = good_so.clone();
    checks.insert(
        ("Trigger metric value", "A"),
        Box::new(move |r: &Rows| {
            r.iter()
                .any(|x| is(x, &gs) && label(x, "trigger") == "0" && x.1 == 90.0)
        }),
    );
    let gs = good_so.clone();
    checks.insert(
        ("Trigger metric value", "B"),
        Box::new(move |r: &Rows| r.iter().any(|x| is(x, &gs) && x.1 == 45.0)),
    );
    let (gs, ss) = (good_so.clone(), src_so.clone());
    checks.insert(
        ("Decisions by reason", "A"),
        Box::new(move |r: &Rows| {
            r.iter()
                .any(|x| is(x, &gs) && label(x, "reason") == "scale_up" && x.1 > 0.0)
                && r.iter()
                    .any(|x| is(x, &ss) && label(x, "reason") == "metrics_unavailable" && x.1 > 0.0)
        }),
    );
    let ss = src_so.clone();
    checks.insert(
        ("Trigger source errors", "A"),
        Box::new(move |r: &Rows| {
            r.iter()
                .any(|x| is(x, &ss) && label(x, "trigger") == "0" && x.1 > 0.0)
        }),
    );
    let ts = tgt_so.clone();
    checks.insert(
        ("Scale target errors", "A"),
        Box::new(move |r: &Rows| {
            r.iter()
                .any(|x| is(x, &ts) && label(x, "cause") == "not_found" && x.1 > 0.0)
        }),
    );
    checks.insert(
        ("Scale writes", "A"),
        // --dry-run never writes: the family has no series and the panel shows its 0.
        Box::new(|r: &Rows| r.len() == 1 && r[0].0.is_empty() && r[0].1 == 0.0),
    );
    checks.insert(
        ("Leader", "A"),
        Box::new(|r: &Rows| r.len() == 1 && r[0].1 == 1.0),
    );
    let seen = evaluate(&prom, &dash, &vars, &checks);
    for (title, _) in checks.keys() {
        assert!(
            seen.iter().any(|s| s == title),
            "no panel {title:?} in rocketmq-scaling.json"
        );
    }
    for optional in [
        "KEDA scaler metric value (where present)",
        "HPA replicas (kube-state-metrics, where present)",
        "HPA target (kube-state-metrics, where present)",
    ] {
        assert!(seen.iter().any(|s| s == optional), "no panel {optional:?}");
    }

    // The backlog dashboard's collapsed freshness row (the 13-query test does not reach it).
    let dash = dashboard("rocketmq-backlog.json");
    let row = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Exporter freshness")
        .expect("the backlog dashboard has an Exporter freshness row");
    let freshness = serde_json::json!({ "panels": [row] });
    let mut checks: Checks<'_> = HashMap::new();
    checks.insert(
        ("Oldest value age", "A"),
        // A broker read every second: its values are at most a few seconds old.
        Box::new(|r: &Rows| !r.is_empty() && r.iter().all(|x| (0.0..30.0).contains(&x.1))),
    );
    let seen = evaluate(&prom, &freshness, &vars, &checks);
    assert_eq!(
        seen,
        [
            "Oldest value age",
            "Unread groups (ApsaraMQ, where present)"
        ]
    );
    stop_prometheus(&prom_dir);
}
