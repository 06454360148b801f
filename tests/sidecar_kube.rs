//! rmq-sidecar against a real Kubernetes API server: `scale.rs` (resolution, `/scale` reads and
//! conflict-safe writes, Events, refusal of managed targets, RBAC errors), `leader.rs` (Lease
//! election) and the manifests in `deploy/`.
//!
//! One kube-apiserver + etcd (tests/rig/kube.sh) is started per test binary; its `--owner-pid`
//! watchdog stops it when this process exits. The ServiceAccount, Role and RoleBinding come from
//! `deploy/base/rbac.yaml` unchanged, and every sidecar call runs with the rig's sidecar token
//! (`system:serviceaccount:default:rmq-sidecar`), so the tests also prove the Role is enough.
//! Set-up that needs more rights (objects, HPAs, CRDs, reduced Roles) runs as the rig's admin.
//!
//! Tests that stop the apiserver or etcd take [`OUTAGE`] for writing; all others hold it for
//! reading, so an outage never hits an unrelated test. Tests on the Lease `rmq-sidecar` (the only
//! Lease the Role lets the sidecar read and update) take [`LEASE`].

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::Client;
use rmq_sidecar::config::{self, ScaleTargetRef};
use rmq_sidecar::leader::Leader;
use rmq_sidecar::scale::{self, ScaleError, ScaleTarget};
use serde_json::json;
use support::{must, repo_root};

const NS: &str = "default";
const LEASE_NAME: &str = "rmq-sidecar";
const SIDECAR_USER: &str = "system:serviceaccount:default:rmq-sidecar";

static OUTAGE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
static LEASE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------------------------------------------
// Rig
// ------------------------------------------------------------------------------------------------

struct Kube {
    dir: PathBuf,
    env: HashMap<String, String>,
}

fn kube_sh() -> PathBuf {
    repo_root().join("tests/rig/kube.sh")
}

fn kube() -> &'static Kube {
    static KUBE: OnceLock<Kube> = OnceLock::new();
    KUBE.get_or_init(|| {
        let dir = support::scratch().join("kube");
        let t0 = Instant::now();
        must(
            Command::new("bash")
                .arg(kube_sh())
                .arg("start")
                .arg("--dir")
                .arg(&dir)
                .args(["--owner-pid", &std::process::id().to_string()])
                .output()
                .expect("run kube.sh"),
            "kube.sh start",
        );
        let env: HashMap<String, String> = std::fs::read_to_string(dir.join("kube.env"))
            .expect("kube.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let kube = Kube { dir, env };
        assert_eq!(kube.get("SIDECAR_USER"), SIDECAR_USER);
        // The sidecar's identity and permissions, exactly as shipped.
        kube.kubectl_admin(&[
            "apply",
            "-n",
            NS,
            "-f",
            &repo_root()
                .join("deploy/base/rbac.yaml")
                .display()
                .to_string(),
        ]);
        // RBAC is read from the authorizer's informer cache: wait until the grant is visible.
        eventually_sync(Duration::from_secs(15), "the Role to take effect", || {
            let out = kube.kubectl(
                "KUBECONFIG_SIDECAR",
                &[
                    "auth",
                    "can-i",
                    "update",
                    "deployments",
                    "--subresource=scale",
                ],
            );
            (String::from_utf8_lossy(&out.stdout).trim() == "yes").then_some(())
        });
        eprintln!(
            "kube rig ready in {:.1}s at {}",
            t0.elapsed().as_secs_f64(),
            kube.get("KUBE_API")
        );
        kube
    })
}

impl Kube {
    fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from kube.env"))
    }

    fn kubectl(&self, kubeconfig_key: &str, args: &[&str]) -> Output {
        Command::new(self.get("KUBECTL"))
            .arg("--kubeconfig")
            .arg(self.get(kubeconfig_key))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn kubectl_admin(&self, args: &[&str]) -> String {
        must(
            self.kubectl("KUBECONFIG_ADMIN", args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// `kubectl apply -f -` as admin with `manifest` (JSON or YAML) on stdin.
    fn apply(&self, manifest: &str) {
        use std::io::Write;
        let mut child = Command::new(self.get("KUBECTL"))
            .arg("--kubeconfig")
            .arg(self.get("KUBECONFIG_ADMIN"))
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("write manifest");
        must(
            child.wait_with_output().expect("kubectl apply"),
            "kubectl apply",
        );
    }

    fn rig(&self, sub: &str) {
        must(
            Command::new("bash")
                .arg(kube_sh())
                .arg(sub)
                .arg("--dir")
                .arg(&self.dir)
                .output()
                .expect("run kube.sh"),
            &format!("kube.sh {sub}"),
        );
    }

    async fn admin(&self) -> Client {
        scale::client(Some(Path::new(self.get("KUBECONFIG_ADMIN"))))
            .await
            .expect("admin client")
    }

    async fn sidecar(&self) -> Client {
        scale::client(Some(Path::new(self.get("KUBECONFIG_SIDECAR"))))
            .await
            .expect("sidecar client")
    }
}

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// A fresh lowercase name.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn eventually_sync<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn target(kind: &str, api_version: &str, name: &str) -> ScaleTargetRef {
    ScaleTargetRef {
        name: name.to_string(),
        kind: kind.to_string(),
        api_version: api_version.to_string(),
    }
}

fn deployment_ref(name: &str) -> ScaleTargetRef {
    target("Deployment", "apps/v1", name)
}

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/consumer:1"}]}
    })
}

async fn create_deployment(admin: &Client, ns: &str, name: &str, replicas: i32) -> Deployment {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name)
        }
    }))
    .expect("deployment json");
    Api::<Deployment>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment")
}

/// spec.replicas as the admin sees it.
async fn admin_replicas(admin: &Client, ns: &str, name: &str) -> i32 {
    Api::<Deployment>::namespaced(admin.clone(), ns)
        .get(name)
        .await
        .expect("get deployment")
        .spec
        .and_then(|s| s.replicas)
        .expect("spec.replicas")
}

async fn admin_patch_deployment(admin: &Client, name: &str, patch: serde_json::Value) {
    Api::<Deployment>::namespaced(admin.clone(), NS)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("admin patch deployment");
}

async fn delete_lease(admin: &Client) {
    let leases = Api::<Lease>::namespaced(admin.clone(), NS);
    match leases.delete(LEASE_NAME, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => panic!("delete lease: {e}"),
    }
}

async fn read_lease(admin: &Client) -> Lease {
    Api::<Lease>::namespaced(admin.clone(), NS)
        .get(LEASE_NAME)
        .await
        .expect("get lease")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

fn transitions(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, ScaleError>, what: &str) -> ScaleError {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

// ------------------------------------------------------------------------------------------------
// Manifests
// ------------------------------------------------------------------------------------------------

#[test]
fn deploy_base_passes_server_side_dry_run() {
    let _outage = OUTAGE.blocking_read();
    let kube = kube();
    let base = repo_root().join("deploy/base");
    let out = kube.kubectl_admin(&[
        "apply",
        "-n",
        NS,
        "--dry-run=server",
        "-k",
        &base.display().to_string(),
    ]);
    for object in [
        "serviceaccount/rmq-sidecar",
        "role.rbac.authorization.k8s.io/rmq-sidecar",
        "rolebinding.rbac.authorization.k8s.io/rmq-sidecar",
        "configmap/rmq-sidecar-scaledobjects-",
        "service/rmq-exporter",
        "deployment.apps/rmq-exporter",
        "deployment.apps/rmq-sidecar",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
    let built = kube.kubectl_admin(&["kustomize", &base.display().to_string()]);
    assert_containers_use_known_flags(&yaml_documents(&built));
}

/// The Helm chart, installed for real: `helm lint --strict`, `helm install` on the API server
/// (every object validated and stored), the same Role as `deploy/base` plus `extraRules`, a
/// ServiceAccount that may make exactly the sidecar's calls, a ScaledObject ConfigMap the
/// sidecar loads, and only flags and environment variables the binaries know.
#[test]
fn helm_chart_installs_with_the_base_role_and_flags_the_binaries_know() {
    let _outage = OUTAGE.blocking_read();
    let kube = kube();
    let helm = helm_bin();
    let chart = repo_root().join("deploy/helm/rmq-exporter");
    must(
        Command::new(&helm)
            .args(["lint", "--strict"])
            .arg(&chart)
            .output()
            .expect("run helm"),
        "helm lint",
    );

    let ns = unique("helm");
    kube.kubectl_admin(&["create", "namespace", &ns]);
    let values = kube.dir.join(format!("{ns}-values.yaml"));
    std::fs::write(
        &values,
        "sidecar:\n  secrets:\n    - name: keda-prom-secret\n      keys: [bearerToken]\n  extraRules:\n    - apiGroups: [apps]\n      resources: [replicasets/scale]\n      verbs: [get, update]\n",
    )
    .unwrap();
    must(
        Command::new(&helm)
            .args(["install", "rel"])
            .arg(&chart)
            .args([
                "--namespace",
                &ns,
                "--kubeconfig",
                kube.get("KUBECONFIG_ADMIN"),
            ])
            .arg("--values")
            .arg(&values)
            .output()
            .expect("run helm"),
        "helm install",
    );
    let manifest = must(
        Command::new(&helm)
            .args(["get", "manifest", "rel", "--namespace", &ns])
            .args(["--kubeconfig", kube.get("KUBECONFIG_ADMIN")])
            .output()
            .expect("run helm"),
        "helm get manifest",
    );
    let docs = yaml_documents(&manifest);
    let of_kind = |kind: &str| -> Vec<&serde_json::Value> {
        docs.iter().filter(|d| d["kind"] == kind).collect()
    };
    // Stored on the server, not just rendered.
    for d in &docs {
        let (kind, name) = (
            d["kind"].as_str().unwrap(),
            d["metadata"]["name"].as_str().unwrap(),
        );
        kube.kubectl_admin(&["get", "-n", &ns, &format!("{kind}/{name}"), "-o", "name"]);
    }

    // The Role is the base's, plus the extra rule.
    let base = yaml_documents(
        &std::fs::read_to_string(repo_root().join("deploy/base/rbac.yaml")).unwrap(),
    );
    let base_role = base
        .iter()
        .find(|d| d["kind"] == "Role")
        .expect("base Role");
    let role = of_kind("Role");
    assert_eq!(role.len(), 1, "{manifest}");
    let mut expected = base_role["rules"].as_array().unwrap().clone();
    expected.push(json!({"apiGroups": ["apps"], "resources": ["replicasets/scale"], "verbs": ["get", "update"]}));
    assert_eq!(role[0]["rules"], serde_json::Value::Array(expected));

    // The chart's ServiceAccount may do the sidecar's calls and nothing more (kubectl can-i
    // cannot ask about keda.sh here: without the CRD it drops the group; the rules above cover it).
    let sa = of_kind("ServiceAccount")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let user = format!("system:serviceaccount:{ns}:{sa}");
    for (args, allowed) in [
        (&["update", "deployments", "--subresource=scale"][..], true),
        (&["get", "statefulsets", "--subresource=scale"], true),
        (&["update", "replicasets.apps", "--subresource=scale"], true),
        (&["list", "horizontalpodautoscalers.autoscaling"], true),
        (&["create", "leases.coordination.k8s.io"], true),
        (&["update", "leases.coordination.k8s.io/rmq-sidecar"], true),
        (&["create", "events.events.k8s.io"], true),
        (&["patch", "deployments", "--subresource=scale"], false),
        (&["get", "deployments"], false),
        (
            &["update", "leases.coordination.k8s.io/someone-else"],
            false,
        ),
        (&["create", "events"], false),
        (&["get", "secrets"], false),
    ] {
        let out = kube.kubectl(
            "KUBECONFIG_ADMIN",
            &[&["auth", "can-i", "-n", &ns, "--as", &user][..], args].concat(),
        );
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(answer == "yes", allowed, "{user} can-i {args:?}: {answer}");
    }

    // The ScaledObjects ConfigMap is what the sidecar reads, with the release's exporter URL.
    let cm = of_kind("ConfigMap");
    let text = cm[0]["data"]["scaledobjects.yaml"]
        .as_str()
        .expect("scaledobjects.yaml");
    let file = kube.dir.join(format!("{ns}-scaledobjects.yaml"));
    std::fs::write(&file, text).unwrap();
    let objects = config::load(&file, None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].namespace, ns);
    match &objects[0].triggers[0].source {
        config::TriggerSource::RocketmqExporter(e) => {
            assert_eq!(e.url, "http://rel-rmq-exporter:9877/metrics")
        }
        other => panic!("chart trigger: {other:?}"),
    }
    assert_containers_use_known_flags(&docs);
    apsaramq_values_render(&helm, &chart);
    // The sidecar's Secret mount reads <dir>/<secret>/<key>, as config.rs expects.
    let sidecar = of_kind("Deployment")
        .into_iter()
        .find(|d| d["spec"]["template"]["spec"]["serviceAccountName"] == sa.as_str())
        .expect("sidecar Deployment");
    let volumes = sidecar["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains(r#""path":"keda-prom-secret/bearerToken""#),
        "{volumes}"
    );
}

/// deploy/examples/apsaramq-values.yaml: an ApsaraMQ-only exporter with its AccessKey from a
/// Secret; and a chart with no source at all is refused with a message.
fn apsaramq_values_render(helm: &Path, chart: &Path) {
    let example = repo_root().join("deploy/examples/apsaramq-values.yaml");
    let rendered = must(
        Command::new(helm)
            .args(["template", "rel"])
            .arg(chart)
            .arg("--values")
            .arg(&example)
            .output()
            .expect("run helm"),
        "helm template with apsaramq-values.yaml",
    );
    let docs = yaml_documents(&rendered);
    assert_containers_use_known_flags(&docs);
    let exporter = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "rel-rmq-exporter")
        .expect("exporter Deployment");
    let env = &exporter["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    assert!(value("RMQ_EXPORTER_NAMESRV").is_none(), "{env}");
    assert_eq!(
        value("RMQ_EXPORTER_APSARAMQ_INSTANCE").unwrap()["value"],
        "rmq-cn-uax3xxxxxx"
    );
    assert_eq!(
        value("RMQ_EXPORTER_REGION").unwrap()["value"],
        "cn-hangzhou"
    );
    assert_eq!(value("RMQ_EXPORTER_APSARAMQ_VPC").unwrap()["value"], "true");
    assert_eq!(
        value("ALIBABA_CLOUD_ACCESS_KEY_SECRET").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "rmq-exporter-aliyun", "key": "ALIBABA_CLOUD_ACCESS_KEY_SECRET"})
    );

    let out = Command::new(helm)
        .args(["template", "rel"])
        .arg(chart)
        .args(["--set", "namesrv="])
        .output()
        .expect("run helm");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("set namesrv, apsaramq.instances or both"),
        "{err}"
    );
}

fn helm_bin() -> PathBuf {
    let out = must(
        Command::new("bash")
            .arg(repo_root().join("tests/rig/helm.sh"))
            .arg("install")
            .output()
            .expect("run helm.sh"),
        "helm.sh install",
    );
    PathBuf::from(out.trim().strip_prefix("HELM=").expect("HELM=<path>"))
}

/// The documents of a multi-document YAML stream, empty ones skipped.
fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde_json::Value::deserialize(doc).expect("YAML document"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every container running one of our binaries passes only flags and environment variables
/// that the binary's `--help` lists, so a renamed flag cannot leave the manifests behind.
fn assert_containers_use_known_flags(docs: &[serde_json::Value]) {
    let mut checked = 0;
    for doc in docs.iter().filter(|d| d["kind"] == "Deployment") {
        for c in doc["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let command = c["command"][0].as_str().expect("command");
            // The images are FROM scratch with the binary at /NAME and no PATH: the command must
            // be that absolute path (what the image's ENTRYPOINT is).
            let binary = command
                .strip_prefix('/')
                .unwrap_or_else(|| panic!("command {command:?} is not the image's /{command}"));
            let help = must(
                Command::new(support::bin(binary))
                    .arg("--help")
                    .output()
                    .expect("run --help"),
                &format!("{binary} --help"),
            );
            for arg in c["args"].as_array().into_iter().flatten() {
                let arg = arg.as_str().unwrap();
                if let Some(flag) = arg.strip_prefix("--") {
                    let flag = flag.split('=').next().unwrap();
                    assert!(
                        help.contains(&format!("--{flag} "))
                            || help.contains(&format!("--{flag}\n")),
                        "{binary} has no flag --{flag}"
                    );
                }
            }
            for env in c["env"].as_array().into_iter().flatten() {
                let name = env["name"].as_str().unwrap();
                // Alibaba Cloud's own credential variables are named in the help's text.
                let known = if name.starts_with("ALIBABA_CLOUD_") {
                    help.contains(name)
                } else {
                    help.contains(&format!("[env: {name}="))
                };
                assert!(known, "{binary} reads no {name}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "exporter and sidecar containers");
}

#[test]
fn deploy_scaledobjects_load_with_the_sidecar_config() {
    let load = |path: &str| {
        config::load(&repo_root().join(path), None).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let base = load("deploy/base/scaledobjects.yaml");
    assert_eq!(base.len(), 1);
    assert_eq!(base[0].scale_target, deployment_ref("sample-app"));
    assert_eq!(base[0].scaling.min_replica_count, 2);
    assert_eq!(base[0].scaling.max_replica_count, 10);
    assert_eq!(base[0].scaling.triggers[0].threshold, 30.0);

    let demo = load("deploy/examples/demo-scaledobject.yaml");
    assert_eq!(demo.len(), 1);
    let so = &demo[0];
    assert_eq!(
        (so.namespace.as_str(), so.name.as_str()),
        ("default", "sample-app")
    );
    assert_eq!(
        (so.scaling.min_replica_count, so.scaling.max_replica_count),
        (2, 10)
    );
    assert_eq!(so.scaling.triggers[0].threshold, 30.0);
    match &so.triggers[0].source {
        config::TriggerSource::RocketmqExporter(e) => {
            assert_eq!(e.url, "http://127.0.0.1:9877/metrics");
            assert_eq!(e.consumer_group, "demo-consumer");
            assert_eq!(e.topic.as_ref().map(|t| t.as_str()), Some("demo-orders"));
        }
        other => panic!("demo trigger: {other:?}"),
    }

    // The KEDA example with the stock prometheus trigger is also a valid sidecar input.
    let prom = load("deploy/examples/keda-prometheus-scaledobject.yaml");
    match &prom[0].triggers[0].source {
        config::TriggerSource::Prometheus(p) => assert!(
            p.query.contains(r#"instance_id="rmq-cn-uax3xxxxxx""#),
            "{}",
            p.query
        ),
        other => panic!("prometheus trigger: {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Scaling
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sidecar_scales_a_deployment_and_records_an_event() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let admin = kube.admin().await;
    let name = unique("web");
    let created = create_deployment(&admin, NS, &name, 1).await;

    let t = ScaleTarget::new(kube.sidecar().await, NS, &deployment_ref(&name))
        .await
        .expect("resolve target")
        .with_reporting_instance("test-pod-0");
    assert_eq!(t.resource().plural, "deployments");
    t.ensure_not_managed().await.expect("not managed");
    assert_eq!(t.replicas().await.expect("replicas"), 1);

    let message = "backlog 95 over threshold 30 on 1 replica(s): scaling to 3";
    t.scale(1, 3, "ScaledUp", message)
        .await
        .expect("scale 1->3");
    assert_eq!(admin_replicas(&admin, NS, &name).await, 3);
    assert_eq!(t.replicas().await.expect("replicas"), 3);
    // from == to: nothing to do.
    t.scale(3, 3, "", "no-op").await.expect("no-op");

    let events = Api::<Event>::namespaced(admin.clone(), NS)
        .list(&Default::default())
        .await
        .expect("list events");
    let ours: Vec<&Event> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
        .collect();
    assert_eq!(ours.len(), 1, "one Event for one scaling: {ours:#?}");
    let ev = ours[0];
    assert_eq!(ev.reason.as_deref(), Some("ScaledUp"));
    assert_eq!(ev.note.as_deref(), Some(message));
    assert_eq!(ev.action.as_deref(), Some("Scale"));
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
    assert_eq!(ev.reporting_controller.as_deref(), Some("rmq-sidecar"));
    assert_eq!(ev.reporting_instance.as_deref(), Some("test-pod-0"));
    let regarding = ev.regarding.as_ref().expect("regarding");
    assert_eq!(regarding.kind.as_deref(), Some("Deployment"));
    assert_eq!(regarding.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(
        regarding.uid, created.metadata.uid,
        "the Event carries the target's uid"
    );

    // Scaling down with an empty reason derives it.
    t.scale(3, 2, "", "backlog gone").await.expect("scale 3->2");
    assert_eq!(admin_replicas(&admin, NS, &name).await, 2);
    let events = Api::<Event>::namespaced(admin, NS)
        .list(&Default::default())
        .await
        .expect("list events");
    assert!(events.items.iter().any(|e| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
            && e.reason.as_deref() == Some("ScaledDown")
            && e.note.as_deref() == Some("backlog gone")
    }));
}

#[tokio::test]
async fn a_write_conflict_with_unchanged_replicas_is_retried() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let admin = kube.admin().await;
    let name = unique("conflict-retry");
    create_deployment(&admin, NS, &name, 1).await;

    let mut t = ScaleTarget::new(kube.sidecar().await, NS, &deployment_ref(&name))
        .await
        .expect("resolve target");
    let attempts = Arc::new(AtomicU32::new(0));
    {
        let (admin, name, attempts) = (admin.clone(), name.clone(), attempts.clone());
        t.set_before_write_hook(move |attempt| {
            let (admin, name) = (admin.clone(), name.clone());
            attempts.store(attempt, Ordering::SeqCst);
            async move {
                if attempt == 1 {
                    // Between our read and our write: a change that bumps resourceVersion but
                    // leaves spec.replicas alone.
                    admin_patch_deployment(
                        &admin,
                        &name,
                        json!({"metadata": {"annotations": {"touched": "yes"}}}),
                    )
                    .await;
                }
            }
        });
    }
    t.scale(1, 4, "ScaledUp", "retry test")
        .await
        .expect("scale after retry");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one 409, one successful retry"
    );
    assert_eq!(admin_replicas(&admin, NS, &name).await, 4);
    let d = Api::<Deployment>::namespaced(admin, NS)
        .get(&name)
        .await
        .expect("get");
    assert_eq!(
        d.metadata
            .annotations
            .unwrap_or_default()
            .get("touched")
            .map(String::as_str),
        Some("yes"),
        "the concurrent change is kept"
    );
}

#[tokio::test]
async fn a_concurrent_replica_change_is_reported_and_not_overwritten() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let admin = kube.admin().await;
    let name = unique("conflict-changed");
    create_deployment(&admin, NS, &name, 1).await;

    let mut t = ScaleTarget::new(kube.sidecar().await, NS, &deployment_ref(&name))
        .await
        .expect("resolve target");
    {
        let (admin, name) = (admin.clone(), name.clone());
        t.set_before_write_hook(move |_| {
            let (admin, name) = (admin.clone(), name.clone());
            async move {
                // Someone scales to 7 between our read and our write.
                admin_patch_deployment(&admin, &name, json!({"spec": {"replicas": 7}})).await;
            }
        });
    }
    let err = expect_err(
        t.scale(1, 3, "ScaledUp", "stale").await,
        "scale on a stale read",
    );
    match &err {
        ScaleError::ReplicasChanged {
            expected, current, ..
        } => assert_eq!((*expected, *current), (1, 7)),
        other => panic!("expected ReplicasChanged, got {other:?}"),
    }
    assert_eq!(err.cause(), "conflict");
    assert!(
        err.to_string().contains("has 7 replicas, not the 1"),
        "{err}"
    );
    assert_eq!(
        admin_replicas(&admin, NS, &name).await,
        7,
        "7 is not overwritten"
    );

    // A decision based on a value that is already stale at the first read writes nothing either.
    let t = ScaleTarget::new(kube.sidecar().await, NS, &deployment_ref(&name))
        .await
        .expect("resolve target");
    let err = expect_err(t.scale(2, 5, "ScaledUp", "stale").await, "stale from");
    assert!(
        matches!(
            err,
            ScaleError::ReplicasChanged {
                expected: 2,
                current: 7,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(admin_replicas(&admin, NS, &name).await, 7);
}

#[tokio::test]
async fn sidecar_scales_a_statefulset() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let admin = kube.admin().await;
    let name = unique("db");
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 2,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(&name)
        }
    }))
    .expect("statefulset json");
    let sets = Api::<StatefulSet>::namespaced(admin.clone(), NS);
    sets.create(&PostParams::default(), &sts)
        .await
        .expect("create statefulset");

    let t = ScaleTarget::new(
        kube.sidecar().await,
        NS,
        &target("StatefulSet", "apps/v1", &name),
    )
    .await
    .expect("resolve statefulset");
    assert_eq!(t.resource().plural, "statefulsets");
    t.ensure_not_managed().await.expect("not managed");
    assert_eq!(t.replicas().await.expect("replicas"), 2);
    t.scale(2, 5, "ScaledUp", "statefulset up")
        .await
        .expect("scale");
    let replicas = sets
        .get(&name)
        .await
        .expect("get")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(5));
}

#[tokio::test]
async fn a_custom_resource_with_a_scale_subresource_is_resolved_by_discovery() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let admin = kube.admin().await;
    kube.apply(
        &json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.rmq-test.example.com"},
            "spec": {
                "group": "rmq-test.example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                    }}},
                    "subresources": {"scale": {
                        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"
                    }}
                }]
            }
        })
        .to_string(),
    );
    kube.kubectl_admin(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/widgets.rmq-test.example.com",
    ]);
    // A target kind outside the shipped Role needs its own grant, as the Role's comment says.
    kube.apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "rmq-sidecar-widgets", "namespace": NS},
             "rules": [{"apiGroups": ["rmq-test.example.com"], "resources": ["widgets/scale"], "verbs": ["get", "update"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "rmq-sidecar-widgets", "namespace": NS},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rmq-sidecar-widgets"},
             "subjects": [{"kind": "ServiceAccount", "name": "rmq-sidecar", "namespace": NS}]}
        ]})
        .to_string(),
    );
    let name = unique("widget");
    let widgets_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rmq-test.example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NS, &widgets_ar);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rmq-test.example.com/v1", "kind": "Widget",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1}
    }))
    .expect("widget json");
    // Discovery and the new RBAC grant may take a moment to be served.
    let sidecar = kube.sidecar().await;
    let t = eventually(
        Duration::from_secs(15),
        "the Widget kind to resolve",
        || {
            let (sidecar, widgets, widget) = (sidecar.clone(), widgets.clone(), widget.clone());
            let r = target("Widget", "rmq-test.example.com/v1", &name);
            async move {
                let _ = widgets.create(&PostParams::default(), &widget).await;
                ScaleTarget::new(sidecar, NS, &r).await.ok()
            }
        },
    )
    .await;
    assert_eq!(t.resource().plural, "widgets");
    assert_eq!(t.replicas().await.expect("replicas"), 1);
    t.scale(1, 4, "ScaledUp", "widgets")
        .await
        .expect("scale widget");
    let stored = widgets.get(&name).await.expect("get widget");
    assert_eq!(stored.data["spec"]["replicas"], json!(4));
}

#[tokio::test]
async fn unknown_or_unscalable_targets_are_refused_at_resolution() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let sidecar = kube.sidecar().await;

    let err = expect_err(
        ScaleTarget::new(sidecar.clone(), NS, &deployment_ref("does-not-exist")).await,
        "missing deployment",
    );
    assert_eq!(err.cause(), "not_found");
    assert_eq!(
        err.to_string(),
        "not found: deployment default/does-not-exist does not exist"
    );

    let err = expect_err(
        ScaleTarget::new(sidecar.clone(), NS, &target("ConfigMap", "v1", "x")).await,
        "configmap",
    );
    assert_eq!(err.cause(), "unsupported");
    assert!(
        err.to_string().contains("has no /scale subresource"),
        "{err}"
    );

    let err = expect_err(
        ScaleTarget::new(
            sidecar.clone(),
            NS,
            &target("Rollout", "argoproj.io/v1alpha1", "x"),
        )
        .await,
        "rollout without argo",
    );
    assert_eq!(err.cause(), "not_found");
    assert!(
        err.to_string().contains("Rollout in argoproj.io/v1alpha1"),
        "{err}"
    );

    let err = expect_err(
        ScaleTarget::new(sidecar, NS, &target("Namespace", "v1", "x")).await,
        "cluster-scoped",
    );
    assert_eq!(err.cause(), "unsupported");
}

// ------------------------------------------------------------------------------------------------
// Managed targets
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_target_managed_by_an_hpa_is_refused() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let admin = kube.admin().await;
    let managed = unique("hpa-managed");
    let free = unique("hpa-free");
    create_deployment(&admin, NS, &managed, 1).await;
    create_deployment(&admin, NS, &free, 1).await;
    let hpa = unique("hpa");
    kube.apply(
        &json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": hpa, "namespace": NS},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": managed},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
            }
        })
        .to_string(),
    );

    let sidecar = kube.sidecar().await;
    let t = ScaleTarget::new(sidecar.clone(), NS, &deployment_ref(&managed))
        .await
        .expect("resolve");
    let err = expect_err(t.ensure_not_managed().await, "HPA-managed target");
    assert_eq!(err.cause(), "managed");
    assert_eq!(
        err.to_string(),
        format!(
            "managed: deployment default/{managed} is already scaled by HorizontalPodAutoscaler default/{hpa} (autoscaling/v2); two autoscalers on one target overwrite each other's replicas. Remove that autoscaler or take this target out of rmq-sidecar's configuration"
        )
    );
    // Another Deployment in the same namespace is not the HPA's target.
    ScaleTarget::new(sidecar, NS, &deployment_ref(&free))
        .await
        .expect("resolve")
        .ensure_not_managed()
        .await
        .expect("an unrelated Deployment is free");
}

#[tokio::test]
async fn a_target_managed_by_a_keda_scaledobject_is_refused() {
    // Exclusive: while a new CRD's storage initializes the apiserver answers 429 to lists of it,
    // and the other tests run without the CRD (the "KEDA not installed" path); it is deleted again.
    let _outage = OUTAGE.write().await;
    let kube = kube();
    let admin = kube.admin().await;
    // KEDA's CRD, reduced to what matters here (the real one has a full schema).
    kube.apply(
        &json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "scaledobjects.keda.sh"},
            "spec": {
                "group": "keda.sh", "scope": "Namespaced",
                "names": {"kind": "ScaledObject", "plural": "scaledobjects", "singular": "scaledobject", "listKind": "ScaledObjectList"},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        })
        .to_string(),
    );
    kube.kubectl_admin(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/scaledobjects.keda.sh",
    ]);
    let managed = unique("keda-managed");
    let free = unique("keda-free");
    create_deployment(&admin, NS, &managed, 1).await;
    create_deployment(&admin, NS, &free, 1).await;
    let so = unique("so");
    kube.apply(
        &json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": so, "namespace": NS},
            // kind and apiVersion omitted: KEDA's defaults (apps/v1 Deployment) apply.
            "spec": {"scaleTargetRef": {"name": managed}, "triggers": []}
        })
        .to_string(),
    );

    let sidecar = kube.sidecar().await;
    let t = ScaleTarget::new(sidecar.clone(), NS, &deployment_ref(&managed))
        .await
        .expect("resolve");
    let err = eventually(
        Duration::from_secs(15),
        "discovery to serve keda.sh",
        || {
            let t = t.clone();
            async move { t.ensure_not_managed().await.err() }
        },
    )
    .await;
    assert_eq!(err.cause(), "managed");
    assert!(
        err.to_string().starts_with(&format!(
            "managed: deployment default/{managed} is already scaled by KEDA ScaledObject default/{so} (keda.sh/v1alpha1)"
        )),
        "{err}"
    );
    ScaleTarget::new(sidecar, NS, &deployment_ref(&free))
        .await
        .expect("resolve")
        .ensure_not_managed()
        .await
        .expect("a Deployment no ScaledObject points at is free");

    // Without the CRD (KEDA uninstalled) nothing is looked up there any more.
    kube.kubectl_admin(&["delete", "crd", "scaledobjects.keda.sh", "--wait=true"]);
    eventually(
        Duration::from_secs(30),
        "the keda.sh API to disappear",
        || {
            let t = t.clone();
            async move { t.ensure_not_managed().await.ok() }
        },
    )
    .await;
}

// ------------------------------------------------------------------------------------------------
// RBAC
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_verb_is_a_clear_forbidden_error() {
    let _outage = OUTAGE.read().await;
    let kube = kube();
    let admin = kube.admin().await;

    // Namespace with a reduced Role: /scale can be read but not written, HPAs not listed.
    let reduced = unique("rmq-reduced");
    kube.kubectl_admin(&["create", "namespace", &reduced]);
    kube.apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "rmq-sidecar", "namespace": reduced},
             "rules": [{"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "rmq-sidecar", "namespace": reduced},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rmq-sidecar"},
             "subjects": [{"kind": "ServiceAccount", "name": "rmq-sidecar", "namespace": NS}]}
        ]})
        .to_string(),
    );
    let name = unique("app");
    create_deployment(&admin, &reduced, &name, 1).await;
    let sidecar = kube.sidecar().await;
    let t = eventually(
        Duration::from_secs(15),
        "the reduced Role to take effect",
        || {
            let (sidecar, r, ns) = (sidecar.clone(), deployment_ref(&name), reduced.clone());
            async move { ScaleTarget::new(sidecar, &ns, &r).await.ok() }
        },
    )
    .await;
    assert_eq!(t.replicas().await.expect("get is granted"), 1);

    let err = expect_err(
        t.scale(1, 3, "ScaledUp", "x").await,
        "update without the verb",
    );
    assert_eq!(err.cause(), "forbidden");
    assert_eq!(
        err.to_string(),
        format!(
            "forbidden: {SIDECAR_USER} may not update deployments/scale (API group \"apps\") in namespace {reduced}; grant it in the sidecar's Role (deploy/base/rbac.yaml, or the Helm chart's templates/rbac.yaml)"
        )
    );
    assert_eq!(admin_replicas(&admin, &reduced, &name).await, 1);

    let err = expect_err(t.ensure_not_managed().await, "list HPAs without the verb");
    assert_eq!(err.cause(), "forbidden");
    assert!(
        err.to_string().starts_with(&format!(
            "forbidden: {SIDECAR_USER} may not list horizontalpodautoscalers (API group \"autoscaling\") in namespace {reduced}"
        )),
        "{err}"
    );

    // A namespace without any grant fails at resolution, naming the read.
    let bare = unique("rmq-bare");
    kube.kubectl_admin(&["create", "namespace", &bare]);
    create_deployment(&admin, &bare, &name, 1).await;
    let err = expect_err(
        ScaleTarget::new(sidecar, &bare, &deployment_ref(&name)).await,
        "no grant at all",
    );
    assert!(
        err.to_string().starts_with(&format!(
            "forbidden: {SIDECAR_USER} may not get deployments/scale (API group \"apps\") in namespace {bare}"
        )),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------------
// Leader election
// ------------------------------------------------------------------------------------------------

const LEASE_DURATION: Duration = Duration::from_secs(3);

#[tokio::test]
async fn step_takes_a_free_lease_and_leaves_a_held_one_alone() {
    let _outage = OUTAGE.read().await;
    let _lease = LEASE.lock().await;
    let kube = kube();
    let admin = kube.admin().await;
    delete_lease(&admin).await;

    let a = Leader::new(
        kube.sidecar().await,
        NS,
        LEASE_NAME,
        "pod-a",
        LEASE_DURATION,
    );
    let b = Leader::new(
        kube.sidecar().await,
        NS,
        LEASE_NAME,
        "pod-b",
        LEASE_DURATION,
    );
    assert!(!a.is_leader() && !b.is_leader());
    assert!(a.step().await.expect("a creates the lease"));
    assert!(
        !b.step().await.expect("b reads it"),
        "b must not take a held lease"
    );
    assert!(a.is_leader() && !b.is_leader());
    let lease = read_lease(&admin).await;
    assert_eq!(holder(&lease).as_deref(), Some("pod-a"));
    assert_eq!(
        lease.spec.as_ref().and_then(|s| s.lease_duration_seconds),
        Some(3)
    );
    assert_eq!(transitions(&lease), 0);

    // Renewing keeps holder and transitions, moves renewTime.
    let renewed_before = lease.spec.as_ref().and_then(|s| s.renew_time.clone());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(a.step().await.expect("renew"));
    let lease = read_lease(&admin).await;
    assert_eq!(holder(&lease).as_deref(), Some("pod-a"));
    assert_eq!(transitions(&lease), 0);
    assert!(lease.spec.as_ref().and_then(|s| s.renew_time.clone()) > renewed_before);

    // Released: taken at once, one transition.
    a.release().await.expect("release");
    assert!(!a.is_leader());
    assert!(b.step().await.expect("b takes the released lease"));
    assert!(b.is_leader() && !a.is_leader());
    let lease = read_lease(&admin).await;
    assert_eq!(holder(&lease).as_deref(), Some("pod-b"));
    assert_eq!(transitions(&lease), 1);
    b.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leaders_never_lead_together_and_a_stopped_one_is_replaced_after_expiry() {
    let _outage = OUTAGE.read().await;
    let _lease = LEASE.lock().await;
    let kube = kube();
    let admin = kube.admin().await;
    delete_lease(&admin).await;

    let a = Arc::new(Leader::new(
        kube.sidecar().await,
        NS,
        LEASE_NAME,
        "pod-a",
        LEASE_DURATION,
    ));
    let b = Arc::new(Leader::new(
        kube.sidecar().await,
        NS,
        LEASE_NAME,
        "pod-b",
        LEASE_DURATION,
    ));
    let task_a = tokio::spawn(a.clone().run());
    let task_b = tokio::spawn(b.clone().run());

    // Exactly one leads, and keeps leading across several renewals; never both.
    let first = eventually(Duration::from_secs(5), "a leader", || {
        let (a, b) = (a.clone(), b.clone());
        async move {
            match (a.is_leader(), b.is_leader()) {
                (true, true) => panic!("both lead"),
                (true, false) => Some("pod-a"),
                (false, true) => Some("pod-b"),
                (false, false) => None,
            }
        }
    })
    .await;
    let (first_leader, other) = if first == "pod-a" {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    };
    let watch_until = Instant::now() + LEASE_DURATION * 2;
    let mut samples = 0u32;
    let mut leading_samples = 0u32;
    while Instant::now() < watch_until {
        let (lf, lo) = (first_leader.is_leader(), other.is_leader());
        assert!(!(lf && lo), "both lead");
        assert!(!lo, "leadership moved while the leader was renewing");
        samples += 1;
        leading_samples += u32::from(lf);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A renewal slower than the margin would show as a gap; it must stay rare.
    assert!(
        leading_samples * 10 >= samples * 9,
        "the leader led in only {leading_samples} of {samples} samples"
    );
    // The leader stops renewing (its task is gone, as if the pod froze).
    let (old, new, old_task, new_task) = if first == "pod-a" {
        (a.clone(), b.clone(), task_a, task_b)
    } else {
        (b.clone(), a.clone(), task_b, task_a)
    };
    old_task.abort();
    let stopped = Instant::now();
    // The lease as the stopped leader left it (read once an aborted in-flight renewal has landed,
    // long before anyone may take over).
    let last_record = tokio::spawn({
        let admin = admin.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            read_lease(&admin).await
        }
    });
    let mut old_stepped_down_at = None;
    let took_over = loop {
        let (lo, ln) = (old.is_leader(), new.is_leader());
        assert!(!(lo && ln), "both lead during the takeover");
        if !lo && old_stepped_down_at.is_none() {
            old_stepped_down_at = Some(stopped.elapsed());
        }
        if ln {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < LEASE_DURATION * 3,
            "no takeover within {:?}",
            LEASE_DURATION * 3
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stepped_down = old_stepped_down_at.expect("the old leader stepped down");
    eprintln!("old leader stepped down after {stepped_down:?}, new leader after {took_over:?}");
    // The stopped leader gives up on its own within its renew deadline (2/3 of the lease) …
    assert!(
        stepped_down <= old.renew_deadline() + Duration::from_millis(200),
        "{stepped_down:?}"
    );
    // … and the other takes over once the lease has expired: after a full lease duration of not
    // seeing it renewed, plus at most two retry periods (lease/3 each).
    assert!(
        took_over <= LEASE_DURATION + LEASE_DURATION * 2 / 3 + Duration::from_secs(1),
        "takeover took {took_over:?}"
    );

    let before = last_record.await.expect("lease read");
    assert_eq!(holder(&before).as_deref(), Some(first));
    let after = read_lease(&admin).await;
    assert_eq!(holder(&after).as_deref(), Some(new.identity()));
    assert_eq!(transitions(&after), transitions(&before) + 1);
    // Never before the old lease expired.
    let old_renew = before
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .expect("renewTime")
        .0;
    let acquired = after
        .spec
        .as_ref()
        .and_then(|s| s.acquire_time.as_ref())
        .expect("acquireTime")
        .0;
    assert!(
        acquired.duration_since(old_renew)
            >= k8s_openapi::jiff::SignedDuration::try_from(LEASE_DURATION).expect("duration"),
        "taken over at {acquired}, old lease renewed at {old_renew}"
    );
    new_task.abort();
    new.release().await.expect("release");
}

// ------------------------------------------------------------------------------------------------
// Outages
// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_clearly_during_an_apiserver_restart_and_succeed_after() {
    let _outage = OUTAGE.write().await;
    let kube = kube();
    let admin = kube.admin().await;
    let name = unique("restart");
    create_deployment(&admin, NS, &name, 1).await;
    let t = ScaleTarget::new(kube.sidecar().await, NS, &deployment_ref(&name))
        .await
        .expect("resolve");

    let dir = kube.dir.clone();
    let restart = std::thread::spawn(move || {
        must(
            Command::new("bash")
                .arg(kube_sh())
                .args(["restart-apiserver", "--dir"])
                .arg(&dir)
                .output()
                .expect("run kube.sh"),
            "kube.sh restart-apiserver",
        );
    });
    let t0 = Instant::now();
    let mut failures = Vec::new();
    loop {
        match t.replicas().await {
            Err(e) => failures.push(e),
            Ok(n) if restart.is_finished() => {
                assert_eq!(n, 1);
                break;
            }
            Ok(_) => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no recovery: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    restart.join().expect("restart thread");
    // While it is down: `unavailable` (connection refused). While it starts, before its RBAC
    // cache has synced, an apiserver may also answer 403 for a granted call: `forbidden`, which
    // the caller's next attempt gets past like any transient error.
    let unavailable: Vec<&ScaleError> = failures
        .iter()
        .filter(|e| e.cause() == "unavailable")
        .collect();
    assert!(
        !unavailable.is_empty(),
        "no call failed as unavailable during the restart: {failures:?}"
    );
    for e in &failures {
        assert!(matches!(e.cause(), "unavailable" | "forbidden"), "{e}");
    }
    for e in &unavailable {
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "unavailable: get deployments.apps/scale default/{name}: "
            )),
            "{text}"
        );
    }
    eprintln!(
        "{} failed call(s) during the restart ({} unavailable), e.g.: {}",
        failures.len(),
        unavailable.len(),
        unavailable[0]
    );
    // The same client works again: read, write, event.
    t.scale(1, 2, "ScaledUp", "after restart")
        .await
        .expect("scale after restart");
    assert_eq!(admin_replicas(&kube.admin().await, NS, &name).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_steps_down_by_itself() {
    let _outage = OUTAGE.write().await;
    let _lease = LEASE.lock().await;
    let kube = kube();
    delete_lease(&kube.admin().await).await;
    let a = Arc::new(Leader::new(
        kube.sidecar().await,
        NS,
        LEASE_NAME,
        "pod-a",
        LEASE_DURATION,
    ));
    let task = tokio::spawn(a.clone().run());
    eventually(Duration::from_secs(5), "leadership", || {
        let a = a.clone();
        async move { a.is_leader().then_some(()) }
    })
    .await;

    kube.rig("kill-apiserver");
    let down = Instant::now();
    eventually(LEASE_DURATION, "the leader to step down", || {
        let a = a.clone();
        async move { (!a.is_leader()).then_some(()) }
    })
    .await;
    let stepped_down = down.elapsed();
    assert!(
        stepped_down <= a.renew_deadline() + Duration::from_millis(200),
        "{stepped_down:?}"
    );
    let err = expect_err(a.step().await, "step without apiserver");
    assert_eq!(err.cause(), "unavailable");
    assert!(
        err.to_string()
            .starts_with("unavailable: get leases.coordination.k8s.io default/rmq-sidecar: "),
        "{err}"
    );

    kube.rig("start-apiserver");
    // Nobody else took the lease: the same identity leads again once it can renew.
    eventually(
        LEASE_DURATION * 2,
        "leadership after the apiserver is back",
        || {
            let a = a.clone();
            async move { a.is_leader().then_some(()) }
        },
    )
    .await;
    task.abort();
    a.release().await.expect("release");
}

#[tokio::test]
async fn with_etcd_down_calls_time_out_instead_of_hanging() {
    let _outage = OUTAGE.write().await;
    let kube = kube();
    let admin = kube.admin().await;
    let name = unique("etcd");
    create_deployment(&admin, NS, &name, 1).await;
    let timeout = Duration::from_secs(2);
    let sidecar =
        scale::client_with_timeout(Some(Path::new(kube.get("KUBECONFIG_SIDECAR"))), timeout)
            .await
            .expect("client");
    let t = ScaleTarget::new(sidecar, NS, &deployment_ref(&name))
        .await
        .expect("resolve");

    kube.rig("kill-etcd");
    let t0 = Instant::now();
    let err = expect_err(t.replicas().await, "read with etcd down");
    let took = t0.elapsed();
    kube.rig("start-etcd");
    eprintln!("with etcd down: {err} (after {took:?})");
    assert_eq!(err.cause(), "unavailable", "{err}");
    // The apiserver would hold the request for 60 s; the client gives up after its timeout.
    assert!(took < timeout * 3, "took {took:?}");

    let n = eventually(Duration::from_secs(30), "reads after etcd is back", || {
        let t = t.clone();
        async move { t.replicas().await.ok() }
    })
    .await;
    assert_eq!(n, 1);
}
