//! Reads KEDA `ScaledObject` (and `TriggerAuthentication`) documents as users already have them
//! and turns them into typed, validated structs.
//!
//! # Design
//!
//! Parsing is two layers:
//!
//! 1. **Structure** — `serde` + `serde_yaml` 0.9 into private `Raw*` structs that all carry
//!    `#[serde(deny_unknown_fields)]`, so an unknown key anywhere in the object is an error whose
//!    message names the path and the accepted keys (`spec: unknown field `foo`, expected one of
//!    ...`). serde_yaml 0.9 was chosen because it is already in this workspace's lock file
//!    (figment's `yaml` feature depends on it), so it adds no new code to the build, and because its
//!    errors carry the field path and line; it is in maintenance mode upstream but the YAML subset
//!    Kubernetes manifests use is stable.
//! 2. **Validation** — this module's own layer: value ranges, KEDA's cross-field rules, trigger
//!    `metadata` (a free-form string map in KEDA, so checked key by key against a per-type list),
//!    `authenticationRef` resolution and secret lookup. Every error names the object
//!    (`ScaledObject default/app`), the field path and what is supported, e.g.
//!    `ScaledObject default/app: spec.triggers[0].metadata.threshold: "abc" is not a number`.
//!
//! A file may hold several documents separated by `---`; a directory is read file by file (every
//! `*.yaml` / `*.yml`, sorted, hidden entries such as a ConfigMap mount's `..data` skipped).
//! Documents must be `keda.sh/v1alpha1` `ScaledObject` or `TriggerAuthentication`; any other kind
//! is an error rather than being skipped.
//!
//! # Upstream sources of each rule (kedacore/keda unless noted)
//!
//! - Field names, defaults (pollingInterval 30, cooldownPeriod 300, initialCooldownPeriod 0,
//!   minReplicaCount 0, maxReplicaCount 100) and the fallback behaviours:
//!   `apis/keda/v1alpha1/scaledobject_types.go`, `pkg/scaling/executor/scale_executor.go`.
//! - Replica bounds (`min ≤ max` with min read as `max(min, 1)` when set, `idle < min`):
//!   `CheckReplicaCountBoundsAreValid` in `apis/keda/v1alpha1/scaledobject_types.go`.
//!   `idleReplicaCount` other than 0 is rejected because KEDA's docs state only 0 works with the
//!   HPA (the HPA raises anything below its `minReplicas` straight back up).
//! - Pause annotations and their boolean parsing (`strconv.ParseBool`, an unparsable value counts
//!   as `true`): `getBoolAnnotation` / `GetPausedReplicaCount` in the same file.
//! - `scaleTargetRef` defaults (`apps/v1` `Deployment`): KEDA's scaledobject-spec reference.
//! - HPA behavior defaulting, field by field (`GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules`,
//!   kubernetes `pkg/apis/autoscaling/v2/defaults.go`); the 300 s scale-down window comes from the
//!   controller's `--horizontal-pod-autoscaler-downscale-stabilization` default
//!   (kubernetes `pkg/controller/podautoscaler/horizontal.go`, `maybeInitScaleDownStabilizationWindow`).
//!   An absent `behavior` stays `None`: KEDA then creates the HPA without one and the controller
//!   takes its legacy path (see [`crate::decide`]).
//! - Prometheus trigger metadata, defaults (`ignoreNullValues` true, `activationThreshold` 0) and
//!   `k=v,k=v` map syntax: `pkg/scalers/prometheus_scaler.go`, `pkg/scalers/scalersconfig/typed_config.go`
//!   (durations: Go duration string or integer milliseconds; booleans: `strconv.ParseBool`).
//! - `authModes` values and required parameters: `pkg/scalers/authentication/authentication_types.go`.
//! - TLS (`tls` with `cert` + `key`, `ca`, `unsafeSsl` beside them): `NewPrometheusScaler` in
//!   `pkg/scalers/prometheus_scaler.go`, `CreateHTTPRoundTripper` in
//!   `pkg/scalers/authentication/authentication_helpers.go`, `NewTLSConfigWithPassword` in
//!   `pkg/util/tls_config.go`; each rule is noted where [`prometheus`] applies it.
//! - `capAtQueues` / `excludePersistentLag` mirror the Kafka scaler's `allowIdleConsumers=false` and
//!   `excludePersistentLag` (`pkg/scalers/kafka_scaler.go`).
//!
//! # Secrets
//!
//! A `TriggerAuthentication` `secretTargetRef` entry `{parameter, name, key}` is resolved, in this
//! order, from the file `<secrets_dir>/<name>/<key>` (the layout of a Kubernetes secret volume;
//! the file content is used byte for byte, like KEDA reads the Secret) and then from the
//! environment variable [`secret_env_var`]`(name, key)`:
//! `RMQ_SIDECAR_SECRET_<NAME>_<KEY>`, upper-cased, every character other than `A-Z0-9` replaced
//! by `_` (so secret `keda-prom-secret`, key `customAuthValue` →
//! `RMQ_SIDECAR_SECRET_KEDA_PROM_SECRET_CUSTOMAUTHVALUE`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

/// The only `apiVersion` accepted for both kinds.
pub const API_VERSION: &str = "keda.sh/v1alpha1";
/// `autoscaling.keda.sh/paused`.
pub const PAUSED_ANNOTATION: &str = "autoscaling.keda.sh/paused";
/// `autoscaling.keda.sh/paused-replicas`.
pub const PAUSED_REPLICAS_ANNOTATION: &str = "autoscaling.keda.sh/paused-replicas";
/// `autoscaling.keda.sh/paused-scale-in`.
pub const PAUSED_SCALE_IN_ANNOTATION: &str = "autoscaling.keda.sh/paused-scale-in";
/// `autoscaling.keda.sh/paused-scale-out`.
pub const PAUSED_SCALE_OUT_ANNOTATION: &str = "autoscaling.keda.sh/paused-scale-out";

const KEDA_ANNOTATION_PREFIX: &str = "autoscaling.keda.sh/";
const SUPPORTED_ANNOTATIONS: [&str; 4] = [
    PAUSED_ANNOTATION,
    PAUSED_REPLICAS_ANNOTATION,
    PAUSED_SCALE_IN_ANNOTATION,
    PAUSED_SCALE_OUT_ANNOTATION,
];

/// Trigger type string of the Prometheus trigger.
pub const PROMETHEUS_TRIGGER: &str = "prometheus";
/// Trigger type string of this project's own exporter trigger.
pub const ROCKETMQ_EXPORTER_TRIGGER: &str = "rocketmq-exporter";

const DEFAULT_POLLING_INTERVAL: u32 = 30;
const DEFAULT_COOLDOWN_PERIOD: u32 = 300;
const DEFAULT_MAX_REPLICAS: u32 = 100;
/// The HPA controller's default `--horizontal-pod-autoscaler-downscale-stabilization`.
pub const DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS: u32 = 300;
/// The HPA controller's default `--horizontal-pod-autoscaler-tolerance`.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

// ---------------------------------------------------------------------------------------------
// Public, validated types
// ---------------------------------------------------------------------------------------------

/// One validated `ScaledObject`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledObjectSpec {
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    pub namespace: String,
    /// Where the object came from: `<file>, document <n>`.
    pub location: String,
    pub scale_target: ScaleTargetRef,
    /// `spec.pollingInterval` in seconds (default 30).
    pub polling_interval_seconds: u32,
    /// Everything [`crate::decide::decide`] needs.
    pub scaling: ScalingConfig,
    /// Where to read each trigger's metric; `triggers[i]` pairs with `scaling.triggers[i]`.
    pub triggers: Vec<Trigger>,
}

/// `spec.scaleTargetRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTargetRef {
    pub name: String,
    /// Default `Deployment`.
    pub kind: String,
    /// Default `apps/v1`.
    pub api_version: String,
}

/// The decision-relevant part of a ScaledObject.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingConfig {
    /// `spec.minReplicaCount` (default 0).
    pub min_replica_count: u32,
    /// `spec.maxReplicaCount` (default 100).
    pub max_replica_count: u32,
    /// `spec.idleReplicaCount` (only 0 is accepted, see the module docs).
    pub idle_replica_count: Option<u32>,
    /// `spec.cooldownPeriod` in seconds (default 300).
    pub cooldown_period_seconds: u32,
    /// `spec.initialCooldownPeriod` in seconds (default 0).
    pub initial_cooldown_period_seconds: u32,
    pub fallback: Option<Fallback>,
    /// `spec.advanced.horizontalPodAutoscalerConfig.behavior`, per-field defaulted; `None` when the
    /// ScaledObject has none (the HPA then runs its legacy, behavior-less normalisation).
    pub behavior: Option<HpaBehavior>,
    pub pause: Pause,
    pub triggers: Vec<TriggerScaling>,
}

/// The pause annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pause {
    /// `autoscaling.keda.sh/paused` is true.
    pub paused: bool,
    /// `autoscaling.keda.sh/paused-replicas` (its presence alone pauses, like KEDA).
    pub paused_replicas: Option<u32>,
    /// `autoscaling.keda.sh/paused-scale-in` is true.
    pub scale_in: bool,
    /// `autoscaling.keda.sh/paused-scale-out` is true.
    pub scale_out: bool,
}

impl Pause {
    /// Whether scaling stops entirely (KEDA's `NeedToBePausedByAnnotation`).
    pub fn is_paused(&self) -> bool {
        self.paused || self.paused_replicas.is_some()
    }
}

/// `spec.fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    pub failure_threshold: u32,
    pub replicas: u32,
    pub behavior: FallbackBehavior,
}

/// `spec.fallback.behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackBehavior {
    /// `static` (default): `fallback.replicas`.
    Static,
    /// `currentReplicas`: keep the current count.
    CurrentReplicas,
    /// `currentReplicasIfHigher`: `max(current, fallback.replicas)`.
    CurrentReplicasIfHigher,
    /// `currentReplicasIfLower`: `min(current, fallback.replicas)`.
    CurrentReplicasIfLower,
}

/// An HPA `behavior` with every field filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaBehavior {
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
}

impl HpaBehavior {
    /// What the API server fills in for `behavior: {}` (and for each absent field).
    pub fn kubernetes_default() -> Self {
        HpaBehavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: ScalingRules::default_scale_down(),
        }
    }
}

/// `behavior.scaleUp` / `behavior.scaleDown`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRules {
    pub stabilization_window_seconds: u32,
    pub select_policy: SelectPolicy,
    pub policies: Vec<ScalingPolicy>,
    /// `tolerance` (Kubernetes ≥ 1.33); `None` means the controller default 0.1.
    pub tolerance: Option<f64>,
}

impl ScalingRules {
    /// scaleUp default: window 0, `Max` of Pods 4 / 15 s and Percent 100 / 15 s.
    pub fn default_scale_up() -> Self {
        ScalingRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                ScalingPolicy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
            tolerance: None,
        }
    }

    /// scaleDown default: window 300 s, `Max` of Percent 100 / 15 s.
    pub fn default_scale_down() -> Self {
        ScalingRules {
            stabilization_window_seconds: DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
            tolerance: None,
        }
    }
}

/// `selectPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// One entry of `policies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingPolicy {
    pub kind: PolicyType,
    pub value: u32,
    pub period_seconds: u32,
}

/// `policies[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    Pods,
    Percent,
}

/// `triggers[].metricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Target per replica (default).
    AverageValue,
    /// Target for the total.
    Value,
}

/// How one trigger's value turns into replicas and activity.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerScaling {
    /// `threshold` (> 0, at least 0.001: the HPA works in milli-units).
    pub threshold: f64,
    /// `activationThreshold` (default 0); active when value > activationThreshold.
    pub activation_threshold: f64,
    pub metric_type: MetricType,
    /// `ignoreNullValues` (default true): an empty result or NaN/Inf reads as 0 instead of failing.
    pub ignore_null_values: bool,
    /// `capAtQueues` (rocketmq-exporter only).
    pub cap_at_queues: bool,
    /// `excludePersistentLag` (rocketmq-exporter only).
    pub exclude_persistent_lag: bool,
}

/// One trigger's source.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// `triggers[].name`, if given.
    pub name: Option<String>,
    pub source: TriggerSource,
}

/// Where a trigger's metric comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSource {
    Prometheus(PrometheusSource),
    RocketmqExporter(ExporterSource),
}

/// A `prometheus` trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusSource {
    pub server_address: String,
    pub query: String,
    /// `namespace` (sent as `&namespace=` for Thanos).
    pub namespace: Option<String>,
    /// `queryParameters` (`k=v,k=v`).
    pub query_parameters: BTreeMap<String, String>,
    /// `customHeaders` (`k=v,k=v`).
    pub custom_headers: BTreeMap<String, String>,
    /// `unsafeSsl` (default false). Ignored, as by KEDA, when `tls` is set: the server's
    /// certificate is then always verified.
    pub unsafe_ssl: bool,
    /// `timeout` (Go duration or milliseconds); `None` = the global default.
    pub timeout: Option<Duration>,
    /// Credentials sent in a header.
    pub auth: PrometheusAuth,
    /// `ca` and the client certificate (authModes `tls`); `None`: the shared clients, chosen by
    /// `unsafeSsl`.
    pub tls: Option<PrometheusTls>,
}

/// The TLS settings of a `prometheus` trigger, as KEDA builds them (`pkg/util/tls_config.go`,
/// `NewTLSConfigWithPassword`): the server is verified against the built-in roots plus `ca`,
/// and `client` is presented when the server asks for a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrometheusTls {
    /// `ca`: PEM certificates trusted besides the built-in roots.
    pub ca: Option<String>,
    /// `cert` + `key`.
    pub client: Option<ClientCert>,
}

/// A client certificate: `cert` (PEM, the certificate and any intermediates) and `key` (PEM,
/// unencrypted PKCS#8, PKCS#1 RSA or SEC1 EC).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert: String,
    pub key: Secret,
}

/// The credentials a `prometheus` trigger sends.
#[derive(Debug, Clone, PartialEq)]
pub enum PrometheusAuth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        token: Secret,
    },
    /// HTTP basic auth.
    Basic {
        username: Secret,
        password: Secret,
    },
    /// `<header>: <value>` (authModes `custom`, as in the ARMS guide).
    Custom {
        header: Secret,
        value: Secret,
    },
}

/// A `rocketmq-exporter` trigger: reads the project's exporter `/metrics` directly.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSource {
    /// The exporter's `/metrics` URL.
    pub url: String,
    pub instance_id: Option<String>,
    /// Topic filter, fully anchored like PromQL `=~`.
    pub topic: Option<TopicPattern>,
    pub consumer_group: String,
}

/// A topic regular expression matched against the whole topic name (PromQL `=~` semantics).
#[derive(Debug, Clone)]
pub struct TopicPattern {
    source: String,
    regex: Regex,
}

impl TopicPattern {
    /// Compiles `source` anchored at both ends.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let regex = Regex::new(&format!("^(?:{source})$"))?;
        Ok(TopicPattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `topic` matches the whole pattern.
    pub fn is_match(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }
}

impl PartialEq for TopicPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A credential; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML itself does not parse.
    #[error("{location}: invalid YAML: {message}")]
    Syntax { location: String, message: String },
    /// A document parses but is not acceptable; `object` is e.g. `ScaledObject default/app`.
    #[error("{object}: {field}: {message} ({location})")]
    Invalid {
        object: String,
        field: String,
        message: String,
        location: String,
    },
    #[error("{location}: no ScaledObject found")]
    NoScaledObjects { location: String },
}

/// Where secret values come from.
pub trait SecretSource {
    /// The value of `key` in Secret `secret`, or a description of where it was looked for.
    fn lookup(&self, secret: &str, key: &str) -> Result<String, String>;
}

/// Secrets from a mounted directory (`<dir>/<secret>/<key>`), then from the environment.
#[derive(Debug, Clone, Default)]
pub struct MountedSecrets {
    dir: Option<PathBuf>,
}

impl MountedSecrets {
    pub fn new(dir: Option<&Path>) -> Self {
        MountedSecrets {
            dir: dir.map(Path::to_path_buf),
        }
    }
}

impl SecretSource for MountedSecrets {
    fn lookup(&self, secret: &str, key: &str) -> Result<String, String> {
        for (what, name) in [("secret name", secret), ("secret key", key)] {
            let valid = !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(format!(
                    "{what} {name:?} is not a valid Kubernetes name (letters, digits, '-', '_', '.')"
                ));
            }
        }
        let mut looked = Vec::new();
        if let Some(dir) = &self.dir {
            let path = dir.join(secret).join(key);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    return String::from_utf8(bytes)
                        .map_err(|_| format!("{} is not UTF-8", path.display()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    looked.push(format!("no file {}", path.display()))
                }
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        let var = secret_env_var(secret, key);
        match std::env::var(&var) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("environment variable {var} is not UTF-8"))
            }
            Err(std::env::VarError::NotPresent) => {
                looked.push(format!("no environment variable {var}"));
                Err(looked.join(", "))
            }
        }
    }
}

/// The environment variable holding key `key` of Secret `secret`:
/// `RMQ_SIDECAR_SECRET_<SECRET>_<KEY>`, upper-cased, non-alphanumerics replaced by `_`.
pub fn secret_env_var(secret: &str, key: &str) -> String {
    let norm = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("RMQ_SIDECAR_SECRET_{}_{}", norm(secret), norm(key))
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Loads every ScaledObject from a file or a directory of `*.yaml` / `*.yml` files, resolving
/// secrets from `secrets_dir` and the environment (see the module docs).
pub fn load(path: &Path, secrets_dir: Option<&Path>) -> Result<Vec<ScaledObjectSpec>, ConfigError> {
    load_with(path, &MountedSecrets::new(secrets_dir))
}

/// [`load`] with a custom secret source.
pub fn load_with(
    path: &Path,
    secrets: &dyn SecretSource,
) -> Result<Vec<ScaledObjectSpec>, ConfigError> {
    let io_err = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    let mut files = Vec::new();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_err)? {
            let entry_path = entry.map_err(io_err)?.path();
            let name = entry_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if yaml && !name.starts_with('.') && entry_path.is_file() {
                files.push(entry_path);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut documents = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
            path: file.clone(),
            source,
        })?;
        split_documents(&text, &file.display().to_string(), &mut documents)?;
    }
    build(documents, &path.display().to_string(), secrets)
}

/// Parses YAML text (one or more documents) into ScaledObjects.
pub fn parse_str(
    text: &str,
    secrets: &dyn SecretSource,
) -> Result<Vec<ScaledObjectSpec>, ConfigError> {
    let mut documents = Vec::new();
    split_documents(text, "<input>", &mut documents)?;
    build(documents, "<input>", secrets)
}

// ---------------------------------------------------------------------------------------------
// Raw (structural) layer
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScaledObject {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: RawMetadata,
    spec: RawSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTriggerAuthentication {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    /// Checked for structure only (kind/name/namespace were read in the first pass).
    #[serde(rename = "metadata")]
    _metadata: RawMetadata,
    spec: RawTriggerAuthenticationSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    #[serde(rename = "name")]
    _name: String,
    #[serde(rename = "namespace")]
    _namespace: Option<String>,
    /// Accepted (they do not affect scaling in KEDA either).
    #[serde(default, rename = "labels")]
    _labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    scale_target_ref: RawScaleTargetRef,
    polling_interval: Option<i64>,
    initial_cooldown_period: Option<i64>,
    cooldown_period: Option<i64>,
    idle_replica_count: Option<i64>,
    min_replica_count: Option<i64>,
    max_replica_count: Option<i64>,
    advanced: Option<RawAdvanced>,
    triggers: Vec<RawTrigger>,
    fallback: Option<RawFallback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScaleTargetRef {
    name: String,
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAdvanced {
    horizontal_pod_autoscaler_config: Option<RawHpaConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHpaConfig {
    behavior: Option<RawBehavior>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBehavior {
    scale_up: Option<RawRules>,
    scale_down: Option<RawRules>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRules {
    stabilization_window_seconds: Option<i64>,
    select_policy: Option<String>,
    policies: Option<Vec<RawPolicy>>,
    tolerance: Option<RawQuantity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    #[serde(rename = "type")]
    kind: String,
    value: i64,
    period_seconds: i64,
}

/// A Kubernetes quantity written as a number (`0.05`) or a string (`"50m"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawQuantity {
    Number(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFallback {
    failure_threshold: i64,
    replicas: i64,
    behavior: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTrigger {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    authentication_ref: Option<RawAuthRef>,
    metric_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthRef {
    name: String,
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTriggerAuthenticationSpec {
    #[serde(default)]
    secret_target_ref: Vec<RawSecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    parameter: String,
    name: String,
    key: String,
}

// ---------------------------------------------------------------------------------------------
// Document splitting
// ---------------------------------------------------------------------------------------------

enum DocBody {
    ScaledObject(Box<RawScaledObject>),
    TriggerAuthentication(RawTriggerAuthentication),
}

struct Document {
    /// `ScaledObject default/app`.
    object: String,
    namespace: String,
    name: String,
    location: String,
    body: DocBody,
}

/// Splits `text` into documents, identifying each by kind and name first so that structural
/// errors can name the object.
fn split_documents(text: &str, source: &str, out: &mut Vec<Document>) -> Result<(), ConfigError> {
    // Pass 1: untyped, to learn kind/name (and to surface syntax errors). serde_yaml keeps
    // returning the same error after a syntax error, so stop at the first one.
    let mut headers = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let location = format!("{source}, document {}", index + 1);
        match serde_yaml::Value::deserialize(de) {
            Ok(value) => headers.push((location, value)),
            Err(e) => {
                return Err(ConfigError::Syntax {
                    location,
                    message: e.to_string(),
                })
            }
        }
    }
    // Pass 2: typed, document by document, in the same order.
    for ((location, value), de) in headers
        .into_iter()
        .zip(serde_yaml::Deserializer::from_str(text))
    {
        if value.is_null() {
            continue; // an empty document (`---` at the start or end of a file)
        }
        let str_at = |key: &str| -> Option<String> {
            value
                .get(key)
                .and_then(serde_yaml::Value::as_str)
                .map(str::to_string)
        };
        let kind = str_at("kind").unwrap_or_default();
        let api_version = str_at("apiVersion").unwrap_or_default();
        let meta = value.get("metadata");
        let meta_str = |key: &str| -> Option<String> {
            meta.and_then(|m| m.get(key))
                .and_then(serde_yaml::Value::as_str)
                .map(str::to_string)
        };
        let name = meta_str("name").unwrap_or_else(|| "<unnamed>".to_string());
        let namespace = meta_str("namespace").unwrap_or_else(|| "default".to_string());
        let object = format!(
            "{} {namespace}/{name}",
            if kind.is_empty() { "document" } else { &kind }
        );
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            object: object.clone(),
            field: field.to_string(),
            message,
            location: location.clone(),
        };
        if kind.is_empty() {
            return Err(invalid(
                "kind",
                "is missing; supported kinds: ScaledObject, TriggerAuthentication".to_string(),
            ));
        }
        if kind != "ScaledObject" && kind != "TriggerAuthentication" {
            return Err(invalid(
                "kind",
                format!(
                    "{kind:?} is not supported; supported kinds: ScaledObject, TriggerAuthentication (apiVersion {API_VERSION})"
                ),
            ));
        }
        if api_version != API_VERSION {
            return Err(invalid(
                "apiVersion",
                format!("{api_version:?} is not supported; expected {API_VERSION:?}"),
            ));
        }
        let structural = |e: serde_yaml::Error| invalid_structure(&object, &location, e);
        let body = if kind == "ScaledObject" {
            DocBody::ScaledObject(Box::new(
                RawScaledObject::deserialize(de).map_err(structural)?,
            ))
        } else {
            DocBody::TriggerAuthentication(
                RawTriggerAuthentication::deserialize(de).map_err(structural)?,
            )
        };
        out.push(Document {
            object,
            namespace,
            name,
            location,
            body,
        });
    }
    Ok(())
}

/// Turns a serde_yaml error (`spec.triggers[0]: unknown field ...`) into [`ConfigError::Invalid`].
fn invalid_structure(object: &str, location: &str, e: serde_yaml::Error) -> ConfigError {
    let text = e.to_string();
    let (field, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_string(), rest.to_string()),
        _ => ("(document)".to_string(), text),
    };
    ConfigError::Invalid {
        object: object.to_string(),
        field,
        message,
        location: location.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation layer
// ---------------------------------------------------------------------------------------------

struct Ctx<'a> {
    object: &'a str,
    location: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            object: self.object.to_string(),
            field: field.into(),
            message: message.into(),
            location: self.location.to_string(),
        }
    }

    /// An integer field in `[min, i32::MAX]`, or `default` when absent.
    fn int(
        &self,
        field: &str,
        value: Option<i64>,
        min: i64,
        default: u32,
    ) -> Result<u32, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) if v < min => Err(self.err(field, format!("{v} must be at least {min}"))),
            Some(v) => u32::try_from(v)
                .ok()
                .filter(|v| *v <= i32::MAX as u32)
                .ok_or_else(|| self.err(field, format!("{v} is larger than {}", i32::MAX))),
        }
    }
}

struct TriggerAuthentication<'a> {
    object: &'a str,
    location: &'a str,
    refs: &'a [RawSecretRef],
}

fn build(
    documents: Vec<Document>,
    source: &str,
    secrets: &dyn SecretSource,
) -> Result<Vec<ScaledObjectSpec>, ConfigError> {
    let mut auths: BTreeMap<(String, String), TriggerAuthentication> = BTreeMap::new();
    for doc in &documents {
        if let DocBody::TriggerAuthentication(raw) = &doc.body {
            let ctx = Ctx {
                object: &doc.object,
                location: &doc.location,
            };
            let mut seen = BTreeMap::new();
            for (i, r) in raw.spec.secret_target_ref.iter().enumerate() {
                if let Some(first) = seen.insert(r.parameter.as_str(), i) {
                    return Err(ctx.err(
                        format!("spec.secretTargetRef[{i}].parameter"),
                        format!(
                            "{:?} is already set by spec.secretTargetRef[{first}]",
                            r.parameter
                        ),
                    ));
                }
            }
            let key = (doc.namespace.clone(), doc.name.clone());
            if auths.contains_key(&key) {
                return Err(ctx.err("metadata.name", "defined more than once"));
            }
            auths.insert(
                key,
                TriggerAuthentication {
                    object: &doc.object,
                    location: &doc.location,
                    refs: &raw.spec.secret_target_ref,
                },
            );
        }
    }

    let mut out: Vec<ScaledObjectSpec> = Vec::new();
    for doc in &documents {
        let DocBody::ScaledObject(raw) = &doc.body else {
            continue;
        };
        let ctx = Ctx {
            object: &doc.object,
            location: &doc.location,
        };
        let spec = scaled_object(&ctx, doc, raw, &auths, secrets)?;
        if out
            .iter()
            .any(|o| o.namespace == spec.namespace && o.name == spec.name)
        {
            return Err(ctx.err("metadata.name", "defined more than once"));
        }
        if let Some(other) = out
            .iter()
            .find(|o| o.namespace == spec.namespace && o.scale_target == spec.scale_target)
        {
            return Err(ctx.err(
                "spec.scaleTargetRef",
                format!(
                    "{} {} is already scaled by ScaledObject {}/{}",
                    spec.scale_target.kind, spec.scale_target.name, other.namespace, other.name
                ),
            ));
        }
        out.push(spec);
    }
    if out.is_empty() {
        return Err(ConfigError::NoScaledObjects {
            location: source.to_string(),
        });
    }
    Ok(out)
}

fn scaled_object(
    ctx: &Ctx,
    doc: &Document,
    raw: &RawScaledObject,
    auths: &BTreeMap<(String, String), TriggerAuthentication>,
    secrets: &dyn SecretSource,
) -> Result<ScaledObjectSpec, ConfigError> {
    let spec = &raw.spec;
    let pause = pause_annotations(ctx, &raw.metadata.annotations)?;

    if spec.scale_target_ref.name.is_empty() {
        return Err(ctx.err("spec.scaleTargetRef.name", "must not be empty"));
    }
    let scale_target = ScaleTargetRef {
        name: spec.scale_target_ref.name.clone(),
        kind: spec
            .scale_target_ref
            .kind
            .clone()
            .unwrap_or_else(|| "Deployment".to_string()),
        api_version: spec
            .scale_target_ref
            .api_version
            .clone()
            .unwrap_or_else(|| "apps/v1".to_string()),
    };

    let polling = ctx.int(
        "spec.pollingInterval",
        spec.polling_interval,
        1,
        DEFAULT_POLLING_INTERVAL,
    )?;
    let cooldown = ctx.int(
        "spec.cooldownPeriod",
        spec.cooldown_period,
        0,
        DEFAULT_COOLDOWN_PERIOD,
    )?;
    let initial = ctx.int(
        "spec.initialCooldownPeriod",
        spec.initial_cooldown_period,
        0,
        0,
    )?;
    let min = ctx.int("spec.minReplicaCount", spec.min_replica_count, 0, 0)?;
    let max = ctx.int(
        "spec.maxReplicaCount",
        spec.max_replica_count,
        1,
        DEFAULT_MAX_REPLICAS,
    )?;
    let idle = match spec.idle_replica_count {
        None => None,
        Some(v) => Some(ctx.int("spec.idleReplicaCount", Some(v), 0, 0)?),
    };

    // CheckReplicaCountBoundsAreValid: a set minReplicaCount is read as max(min, 1).
    let bound_min = if spec.min_replica_count.is_some() {
        min.max(1)
    } else {
        0
    };
    if bound_min > max {
        return Err(ctx.err(
            "spec.minReplicaCount",
            format!("MinReplicaCount={bound_min} must be less than MaxReplicaCount={max}"),
        ));
    }
    if let Some(idle) = idle {
        if idle >= bound_min {
            return Err(ctx.err(
                "spec.idleReplicaCount",
                format!("IdleReplicaCount={idle} must be less than MinReplicaCount={bound_min}"),
            ));
        }
        if idle != 0 {
            return Err(ctx.err(
                "spec.idleReplicaCount",
                format!(
                    "{idle} is not supported: only 0 works (KEDA documents that the HPA raises any idle count above 0 back to minReplicaCount)"
                ),
            ));
        }
    }

    let fallback = match &spec.fallback {
        None => None,
        Some(f) => Some(Fallback {
            failure_threshold: ctx.int("spec.fallback.failureThreshold", Some(f.failure_threshold), 0, 0)?,
            replicas: ctx.int("spec.fallback.replicas", Some(f.replicas), 0, 0)?,
            behavior: match f.behavior.as_deref() {
                None | Some("static") => FallbackBehavior::Static,
                Some("currentReplicas") => FallbackBehavior::CurrentReplicas,
                Some("currentReplicasIfHigher") => FallbackBehavior::CurrentReplicasIfHigher,
                Some("currentReplicasIfLower") => FallbackBehavior::CurrentReplicasIfLower,
                Some(other) => {
                    return Err(ctx.err(
                        "spec.fallback.behavior",
                        format!(
                            "{other:?} is not supported; supported: static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower"
                        ),
                    ))
                }
            },
        }),
    };

    let behavior = match spec
        .advanced
        .as_ref()
        .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
        .and_then(|h| h.behavior.as_ref())
    {
        None => None,
        Some(b) => {
            let base = "spec.advanced.horizontalPodAutoscalerConfig.behavior";
            Some(HpaBehavior {
                scale_up: rules(
                    ctx,
                    &format!("{base}.scaleUp"),
                    b.scale_up.as_ref(),
                    ScalingRules::default_scale_up(),
                )?,
                scale_down: rules(
                    ctx,
                    &format!("{base}.scaleDown"),
                    b.scale_down.as_ref(),
                    ScalingRules::default_scale_down(),
                )?,
            })
        }
    };

    if spec.triggers.is_empty() {
        return Err(ctx.err("spec.triggers", "at least one trigger is required"));
    }
    let mut triggers = Vec::new();
    let mut scaling_triggers = Vec::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        let (trigger, scaling) = trigger(ctx, doc, i, t, auths, secrets)?;
        triggers.push(trigger);
        scaling_triggers.push(scaling);
    }

    Ok(ScaledObjectSpec {
        name: doc.name.clone(),
        namespace: doc.namespace.clone(),
        location: doc.location.clone(),
        scale_target,
        polling_interval_seconds: polling,
        scaling: ScalingConfig {
            min_replica_count: min,
            max_replica_count: max,
            idle_replica_count: idle,
            cooldown_period_seconds: cooldown,
            initial_cooldown_period_seconds: initial,
            fallback,
            behavior,
            pause,
            triggers: scaling_triggers,
        },
        triggers,
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn pause_annotations(
    ctx: &Ctx,
    annotations: &BTreeMap<String, String>,
) -> Result<Pause, ConfigError> {
    for key in annotations.keys() {
        if key.starts_with(KEDA_ANNOTATION_PREFIX) && !SUPPORTED_ANNOTATIONS.contains(&key.as_str())
        {
            return Err(ctx.err(
                format!("metadata.annotations.{key}"),
                format!(
                    "annotation is not supported by rmq-sidecar; supported: {}",
                    SUPPORTED_ANNOTATIONS.join(", ")
                ),
            ));
        }
    }
    // KEDA's getBoolAnnotation: present and unparsable counts as true.
    let flag = |key: &str| {
        annotations
            .get(key)
            .map(|v| parse_go_bool(v).unwrap_or(true))
            .unwrap_or(false)
    };
    let paused_replicas = match annotations.get(PAUSED_REPLICAS_ANNOTATION) {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|n| *n <= i32::MAX as u32)
                .ok_or_else(|| {
                    ctx.err(
                        format!("metadata.annotations.{PAUSED_REPLICAS_ANNOTATION}"),
                        format!("{v:?} is not a replica count (a non-negative integer)"),
                    )
                })?,
        ),
    };
    Ok(Pause {
        paused: flag(PAUSED_ANNOTATION),
        paused_replicas,
        scale_in: flag(PAUSED_SCALE_IN_ANNOTATION),
        scale_out: flag(PAUSED_SCALE_OUT_ANNOTATION),
    })
}

fn rules(
    ctx: &Ctx,
    base: &str,
    raw: Option<&RawRules>,
    mut out: ScalingRules,
) -> Result<ScalingRules, ConfigError> {
    let Some(raw) = raw else {
        return Ok(out);
    };
    if let Some(w) = raw.stabilization_window_seconds {
        if !(0..=3600).contains(&w) {
            return Err(ctx.err(
                format!("{base}.stabilizationWindowSeconds"),
                format!("{w} must be between 0 and 3600"),
            ));
        }
        out.stabilization_window_seconds = w as u32;
    }
    if let Some(p) = &raw.select_policy {
        out.select_policy = match p.as_str() {
            "Max" => SelectPolicy::Max,
            "Min" => SelectPolicy::Min,
            "Disabled" => SelectPolicy::Disabled,
            other => {
                return Err(ctx.err(
                    format!("{base}.selectPolicy"),
                    format!("{other:?} is not supported; supported: Max, Min, Disabled"),
                ))
            }
        };
    }
    if let Some(policies) = &raw.policies {
        if policies.is_empty() {
            return Err(ctx.err(
                format!("{base}.policies"),
                "must specify at least one policy",
            ));
        }
        out.policies = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            let field = format!("{base}.policies[{i}]");
            let kind = match p.kind.as_str() {
                "Pods" => PolicyType::Pods,
                "Percent" => PolicyType::Percent,
                other => {
                    return Err(ctx.err(
                        format!("{field}.type"),
                        format!("{other:?} is not supported; supported: Pods, Percent"),
                    ))
                }
            };
            if p.value <= 0 || p.value > i64::from(i32::MAX) {
                return Err(ctx.err(
                    format!("{field}.value"),
                    format!("{} must be greater than 0", p.value),
                ));
            }
            if !(1..=1800).contains(&p.period_seconds) {
                return Err(ctx.err(
                    format!("{field}.periodSeconds"),
                    format!("{} must be between 1 and 1800", p.period_seconds),
                ));
            }
            out.policies.push(ScalingPolicy {
                kind,
                value: p.value as u32,
                period_seconds: p.period_seconds as u32,
            });
        }
    }
    if let Some(t) = &raw.tolerance {
        let value = match t {
            RawQuantity::Number(n) => Some(*n),
            RawQuantity::Text(s) => parse_quantity(s),
        };
        match value {
            Some(v) if v.is_finite() && v >= 0.0 => out.tolerance = Some(v),
            _ => {
                let shown = match t {
                    RawQuantity::Number(n) => n.to_string(),
                    RawQuantity::Text(s) => format!("{s:?}"),
                };
                return Err(ctx.err(
                    format!("{base}.tolerance"),
                    format!("{shown} is not a non-negative quantity (e.g. 0.05 or \"50m\")"),
                ));
            }
        }
    }
    Ok(out)
}

/// A plain decimal or a milli-quantity (`50m`).
fn parse_quantity(s: &str) -> Option<f64> {
    match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|v| v / 1000.0),
        None => s.parse::<f64>().ok(),
    }
}

const PROMETHEUS_KEYS: [&str; 12] = [
    "serverAddress",
    "query",
    "threshold",
    "activationThreshold",
    "ignoreNullValues",
    "customHeaders",
    "queryParameters",
    "unsafeSsl",
    "timeout",
    "namespace",
    "authModes",
    "metricName",
];
const EXPORTER_KEYS: [&str; 9] = [
    "url",
    "instanceId",
    "topic",
    "consumerGroup",
    "threshold",
    "activationThreshold",
    "ignoreNullValues",
    "capAtQueues",
    "excludePersistentLag",
];
/// Prometheus parameters a TriggerAuthentication may set (`authentication.Config` in KEDA's
/// `pkg/scalers/authentication/authentication_types.go`: `BearerToken`, `BasicAuth`, `CertAuth`,
/// `CustomAuth`).
const PROMETHEUS_AUTH_PARAMS: [&str; 10] = [
    "authModes",
    "bearerToken",
    "token",
    "username",
    "password",
    "customAuthHeader",
    "customAuthValue",
    "cert",
    "key",
    "ca",
];

/// Trigger metadata with the field path for errors.
struct Metadata<'a> {
    ctx: &'a Ctx<'a>,
    base: String,
    map: &'a BTreeMap<String, String>,
}

impl Metadata<'_> {
    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.base)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    fn required(&self, key: &str) -> Result<&str, ConfigError> {
        match self.get(key) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(self.ctx.err(self.field(key), "is required")),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Some(f)),
                _ => Err(self
                    .ctx
                    .err(self.field(key), format!("{v:?} is not a number"))),
            },
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_go_bool(v.trim()).ok_or_else(|| {
                self.ctx.err(
                    self.field(key),
                    format!("{v:?} is not a boolean (true/false, 1/0, t/f)"),
                )
            }),
        }
    }

    fn pairs(&self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut out = BTreeMap::new();
        let Some(v) = self.get(key) else {
            return Ok(out);
        };
        if v.trim().is_empty() {
            return Ok(out);
        }
        for item in v.split(',') {
            let parts: Vec<&str> = item.trim().split('=').collect();
            match parts.as_slice() {
                [k, val] if !k.trim().is_empty() => {
                    out.insert(k.trim().to_string(), val.trim().to_string());
                }
                _ => {
                    return Err(self.ctx.err(
                        self.field(key),
                        format!(
                            "{:?} is not in the form key=value (entries separated by ',')",
                            item.trim()
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn url(&self, key: &str) -> Result<String, ConfigError> {
        let v = self.required(key)?;
        if v.starts_with("http://") || v.starts_with("https://") {
            Ok(v.to_string())
        } else {
            Err(self.ctx.err(
                self.field(key),
                format!("{v:?} is not an http:// or https:// URL"),
            ))
        }
    }
}

fn trigger(
    ctx: &Ctx,
    doc: &Document,
    index: usize,
    raw: &RawTrigger,
    auths: &BTreeMap<(String, String), TriggerAuthentication>,
    secrets: &dyn SecretSource,
) -> Result<(Trigger, TriggerScaling), ConfigError> {
    let base = format!("spec.triggers[{index}]");
    let allowed: &[&str] = match raw.kind.as_str() {
        PROMETHEUS_TRIGGER => &PROMETHEUS_KEYS,
        ROCKETMQ_EXPORTER_TRIGGER => &EXPORTER_KEYS,
        other => {
            return Err(ctx.err(
                format!("{base}.type"),
                format!(
                    "trigger type {other:?} is not supported; supported: {PROMETHEUS_TRIGGER}, {ROCKETMQ_EXPORTER_TRIGGER}"
                ),
            ))
        }
    };
    let meta = Metadata {
        ctx,
        base: format!("{base}.metadata"),
        map: &raw.metadata,
    };
    for key in raw.metadata.keys() {
        if !allowed.contains(&key.as_str()) {
            let hint = if PROMETHEUS_AUTH_PARAMS.contains(&key.as_str()) && key != "authModes" {
                " (credentials come from a TriggerAuthentication via authenticationRef)"
            } else {
                ""
            };
            return Err(ctx.err(
                meta.field(key),
                format!(
                    "unknown key for trigger type {:?}{hint}; supported: {}",
                    raw.kind,
                    allowed.join(", ")
                ),
            ));
        }
    }

    let metric_type = match raw.metric_type.as_deref() {
        None | Some("AverageValue") => MetricType::AverageValue,
        Some("Value") => MetricType::Value,
        Some(other) => {
            return Err(ctx.err(
                format!("{base}.metricType"),
                format!("{other:?} is not supported; supported: AverageValue, Value"),
            ))
        }
    };

    let threshold = meta
        .float("threshold")?
        .ok_or_else(|| ctx.err(meta.field("threshold"), "is required"))?;
    // The HPA compares milli-quantities; a target below 1m would be 0.
    if threshold < 0.001 {
        return Err(ctx.err(
            meta.field("threshold"),
            format!("{threshold} must be at least 0.001 (the HPA target is in milli-units)"),
        ));
    }
    let activation_threshold = meta.float("activationThreshold")?.unwrap_or(0.0);
    let ignore_null_values = meta.bool("ignoreNullValues", true)?;

    let (source, cap_at_queues, exclude_persistent_lag) = if raw.kind == PROMETHEUS_TRIGGER {
        let params = match &raw.authentication_ref {
            None => BTreeMap::new(),
            Some(r) => auth_params(ctx, doc, &base, r, auths, secrets)?,
        };
        (
            TriggerSource::Prometheus(prometheus(&meta, &base, params)?),
            false,
            false,
        )
    } else {
        if raw.authentication_ref.is_some() {
            return Err(ctx.err(
                format!("{base}.authenticationRef"),
                format!("is not supported for trigger type {ROCKETMQ_EXPORTER_TRIGGER:?}"),
            ));
        }
        let topic = match meta.get("topic") {
            None => None,
            Some(t) => Some(TopicPattern::new(t).map_err(|e| {
                ctx.err(
                    meta.field("topic"),
                    format!("{t:?} is not a valid regular expression: {e}"),
                )
            })?),
        };
        let source = ExporterSource {
            url: meta.url("url")?,
            instance_id: meta.get("instanceId").map(str::to_string),
            topic,
            consumer_group: meta.required("consumerGroup")?.to_string(),
        };
        (
            TriggerSource::RocketmqExporter(source),
            meta.bool("capAtQueues", false)?,
            meta.bool("excludePersistentLag", false)?,
        )
    };

    Ok((
        Trigger {
            name: raw.name.clone(),
            source,
        },
        TriggerScaling {
            threshold,
            activation_threshold,
            metric_type,
            ignore_null_values,
            cap_at_queues,
            exclude_persistent_lag,
        },
    ))
}

/// Resolves `authenticationRef` into parameter → value.
fn auth_params(
    ctx: &Ctx,
    doc: &Document,
    base: &str,
    r: &RawAuthRef,
    auths: &BTreeMap<(String, String), TriggerAuthentication>,
    secrets: &dyn SecretSource,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let field = format!("{base}.authenticationRef");
    match r.kind.as_deref() {
        None | Some("TriggerAuthentication") => {}
        Some(other) => {
            return Err(ctx.err(
                format!("{field}.kind"),
                format!("{other:?} is not supported; supported: TriggerAuthentication"),
            ))
        }
    }
    let ta = auths
        .get(&(doc.namespace.clone(), r.name.clone()))
        .ok_or_else(|| {
            ctx.err(
                format!("{field}.name"),
                format!(
                    "TriggerAuthentication {}/{} is not defined in the configuration",
                    doc.namespace, r.name
                ),
            )
        })?;
    let mut params = BTreeMap::new();
    for (i, s) in ta.refs.iter().enumerate() {
        let where_ = format!(
            "{} spec.secretTargetRef[{i}] ({}, {})",
            ta.object, ta.location, s.parameter
        );
        if !PROMETHEUS_AUTH_PARAMS.contains(&s.parameter.as_str()) {
            // KEDA's prometheus scaler builds its TLS config without a password
            // (`authentication.Config.NewTLSConfig` → `kedautil.NewTLSConfig`), unlike the Kafka or
            // RabbitMQ scalers, so an encrypted key fails there; say so instead of "unknown".
            let hint = if s.parameter == "keyPassword" {
                " (KEDA's prometheus scaler does not read keyPassword: give an unencrypted key)"
            } else {
                ""
            };
            return Err(ctx.err(
                &field,
                format!(
                    "{where_}: {:?} is not a parameter of trigger type {PROMETHEUS_TRIGGER:?}{hint}; supported: {}",
                    s.parameter,
                    PROMETHEUS_AUTH_PARAMS.join(", ")
                ),
            ));
        }
        let value = secrets.lookup(&s.name, &s.key).map_err(|why| {
            ctx.err(
                &field,
                format!(
                    "{where_}: secret {:?} key {:?} not found: {why}",
                    s.name, s.key
                ),
            )
        })?;
        params.insert(s.parameter.clone(), value);
    }
    Ok(params)
}

fn prometheus(
    meta: &Metadata,
    base: &str,
    params: BTreeMap<String, String>,
) -> Result<PrometheusSource, ConfigError> {
    let ctx = meta.ctx;
    let timeout = match meta.get("timeout") {
        None => None,
        Some(v) => Some(parse_go_duration(v.trim()).ok_or_else(|| {
            ctx.err(
                meta.field("timeout"),
                format!(
                    "{v:?} is not a duration (milliseconds, or a Go duration such as 5s or 500ms)"
                ),
            )
        })?),
    };
    let namespace = meta
        .get("namespace")
        .filter(|s| !s.is_empty())
        .map(str::to_string);

    // authModes: trigger metadata first, then the TriggerAuthentication (the
    // `order=triggerMetadata;authParams` of `Config.Modes` in KEDA's authentication_types.go).
    let (modes_field, modes) = match meta.get("authModes") {
        Some(m) => (meta.field("authModes"), Some(m.to_string())),
        None => (
            format!("{base}.authenticationRef (parameter authModes)"),
            params.get("authModes").cloned(),
        ),
    };
    const SUPPORTED_MODES: &str = "bearer, basic, custom, tls";
    // Header modes (at most one), and `tls`, which KEDA combines with any of them: its
    // `exclusiveSet` is bearer;basic;oauth only (authentication_types.go), and the transport
    // carrying the client certificate is independent of the header (prometheus_scaler.go
    // NewPrometheusScaler / ExecutePromQuery).
    let mut enabled = Vec::new();
    let mut tls_mode = false;
    let mut written = Vec::new();
    for mode in modes.iter().flat_map(|m| m.split(',')).map(str::trim) {
        match mode {
            "" => continue,
            "tls" => tls_mode = true,
            "bearer" | "basic" | "custom" => {
                if !enabled.contains(&mode) {
                    enabled.push(mode)
                }
            }
            "apiKey" | "oauth" => {
                return Err(ctx.err(
                    &modes_field,
                    format!("authMode {mode:?} is not supported by rmq-sidecar; supported: {SUPPORTED_MODES}"),
                ))
            }
            other => {
                return Err(ctx.err(
                    &modes_field,
                    format!("authMode {other:?} is unknown; supported: {SUPPORTED_MODES}"),
                ))
            }
        }
        if !written.contains(&mode) {
            written.push(mode);
        }
    }
    let written = written.join(",");
    if enabled.len() > 1 {
        // KEDA refuses bearer with basic, and with custom sends only the first of bearer, basic,
        // custom (the switch in ExecutePromQuery): refused here rather than half-applied.
        return Err(ctx.err(
            &modes_field,
            format!(
                "{} enables several header modes; KEDA would send only one of them, so enable at most one of bearer, basic, custom (tls combines with any of them)",
                enabled.join(",")
            ),
        ));
    }
    let auth_field = format!("{base}.authenticationRef");
    let param = |name: &str| params.get(name).filter(|v| !v.trim().is_empty()).cloned();
    let needs = |what: &str| {
        ctx.err(
            &auth_field,
            format!("authModes {written:?} needs parameter {what} from the TriggerAuthentication"),
        )
    };
    let auth = match enabled.first().copied() {
        None => PrometheusAuth::None,
        Some("bearer") => PrometheusAuth::Bearer {
            token: Secret(
                param("bearerToken")
                    .or_else(|| param("token"))
                    .ok_or_else(|| needs("bearerToken"))?,
            ),
        },
        Some("basic") => PrometheusAuth::Basic {
            username: Secret(param("username").ok_or_else(|| needs("username"))?),
            password: Secret(params.get("password").cloned().unwrap_or_default()),
        },
        Some(_) => PrometheusAuth::Custom {
            header: Secret(param("customAuthHeader").ok_or_else(|| needs("customAuthHeader"))?),
            value: Secret(param("customAuthValue").ok_or_else(|| needs("customAuthValue"))?),
        },
    };
    // TLS, as KEDA reads it:
    // - `tls` needs both `cert` and `key` (authentication_types.go, `Config.Validate`);
    // - `ca` counts only when some authMode is set: NewPrometheusScaler (prometheus_scaler.go)
    //   builds the TLS transport only when `!PrometheusAuth.Disabled()` and `CA != "" ||
    //   EnabledTLS()`; with no authModes `ca` is never read;
    // - that transport (authentication_helpers.go, `CreateHTTPRoundTripper`) loads `cert` + `key`
    //   whenever both are set, so with `ca` and a header mode they are sent even without `tls`;
    // - values are PEM text, not file paths (`tls.X509KeyPair`, `AppendCertsFromPEM` in
    //   pkg/util/tls_config.go `NewTLSConfigWithPassword`, called with no key password).
    if tls_mode {
        match (param("cert"), param("key")) {
            (Some(_), Some(_)) => {}
            (None, Some(_)) => return Err(needs("cert")),
            (Some(_), None) => return Err(needs("key")),
            (None, None) => {
                return Err(ctx.err(
                    &auth_field,
                    format!("authModes {written:?} needs parameters cert and key from the TriggerAuthentication"),
                ))
            }
        }
    }
    let any_mode = tls_mode || !enabled.is_empty();
    let ca = param("ca").filter(|_| any_mode);
    let client = match (param("cert"), param("key")) {
        (Some(cert), Some(key)) if tls_mode || ca.is_some() => Some(ClientCert {
            cert,
            key: Secret(key),
        }),
        _ => None,
    };
    // Credentials that the chosen mode would not send are a mistake, not something to ignore.
    let mut used: Vec<&str> = match &auth {
        PrometheusAuth::None => vec![],
        PrometheusAuth::Bearer { .. } => vec!["bearerToken", "token"],
        PrometheusAuth::Basic { .. } => vec!["username", "password"],
        PrometheusAuth::Custom { .. } => vec!["customAuthHeader", "customAuthValue"],
    };
    if ca.is_some() {
        used.push("ca");
    }
    if client.is_some() {
        used.extend(["cert", "key"]);
    }
    if let Some(unused) = params
        .keys()
        .find(|k| k.as_str() != "authModes" && !used.contains(&k.as_str()))
    {
        let why = match unused.as_str() {
            "ca" => " (KEDA's prometheus scaler reads ca only when authModes is set: add tls, basic, bearer or custom)",
            "cert" | "key" => " (KEDA sends a client certificate with authModes tls: add tls to authModes)",
            _ => "",
        };
        return Err(ctx.err(
            &auth_field,
            format!("parameter {unused:?} is set but authModes {written:?} does not use it{why}"),
        ));
    }
    let tls = if ca.is_some() || client.is_some() {
        let tls = PrometheusTls { ca, client };
        // Built once here so that a bad certificate or key fails at load, naming the parameter,
        // as KEDA fails the scaler's creation.
        if let Err(e) = crate::source::tls_client(&tls) {
            return Err(ctx.err(
                format!("{auth_field} (parameter {})", e.parameter),
                e.message,
            ));
        }
        Some(tls)
    } else {
        None
    };

    Ok(PrometheusSource {
        server_address: meta.url("serverAddress")?,
        query: meta.required("query")?.to_string(),
        namespace,
        query_parameters: meta.pairs("queryParameters")?,
        custom_headers: meta.pairs("customHeaders")?,
        unsafe_ssl: meta.bool("unsafeSsl", false)?,
        timeout,
        auth,
        tls,
    })
}

/// KEDA's duration rule: a Go duration string (`1.5s`, `300ms`, `1m30s`) or integer milliseconds.
fn parse_go_duration(s: &str) -> Option<Duration> {
    if let Ok(ms) = s.parse::<u64>() {
        return Some(Duration::from_millis(ms));
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0.0_f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        seconds += number * scale;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Secrets from a map, keyed `secret/key`.
    struct MapSecrets(HashMap<String, String>);

    impl MapSecrets {
        fn new(entries: &[(&str, &str)]) -> Self {
            MapSecrets(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        }
    }

    impl SecretSource for MapSecrets {
        fn lookup(&self, secret: &str, key: &str) -> Result<String, String> {
            self.0
                .get(&format!("{secret}/{key}"))
                .cloned()
                .ok_or_else(|| format!("no entry {secret}/{key}"))
        }
    }

    fn no_secrets() -> MapSecrets {
        MapSecrets::new(&[])
    }

    const ARMS_GUIDE: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: prometheus-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: sample-app
  maxReplicaCount: 10
  minReplicaCount: 2
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://cn-hangzhou.arms.aliyuncs.com:9090/api/v1/prometheus/abc/cloud-product-rocketmq/cn-hangzhou
      metricName: rocketmq_consumer_inflight_messages
      query: sum({__name__=~"rocketmq_consumer_ready_messages|rocketmq_consumer_inflight_messages",instance_id="rmq-cn-uax3xxxxxx",topic=~"keda"}) by (consumer_group)
      threshold: '30'
      authModes: "custom"
    authenticationRef:
      name: keda-prom-creds
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-prom-creds
  namespace: default
spec:
  secretTargetRef:
    - parameter: customAuthHeader
      name: keda-prom-secret
      key: customAuthHeader
    - parameter: customAuthValue
      name: keda-prom-secret
      key: customAuthValue
"#;

    fn arms_secrets() -> MapSecrets {
        MapSecrets::new(&[
            ("keda-prom-secret/customAuthHeader", "Authorization"),
            ("keda-prom-secret/customAuthValue", "Basic abc=="),
        ])
    }

    /// A minimal ScaledObject with `spec_extra` appended to spec and `trigger` as the only trigger.
    fn object(spec_extra: &str, trigger: &str) -> String {
        format!(
            "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: app\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: app\n{spec_extra}  triggers:\n{trigger}"
        )
    }

    const EXPORTER_TRIGGER: &str = "  - type: rocketmq-exporter\n    metadata:\n      url: http://127.0.0.1:9876/metrics\n      consumerGroup: GID_app\n      threshold: '30'\n";

    fn parse_one(text: &str) -> ScaledObjectSpec {
        match parse_str(text, &no_secrets()) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            other => panic!("expected one ScaledObject, got {other:?}"),
        }
    }

    fn error_of(text: &str) -> String {
        match parse_str(text, &no_secrets()) {
            Ok(v) => panic!("expected an error, parsed {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn arms_guide_objects_parse_as_written() {
        let specs = parse_str(ARMS_GUIDE, &arms_secrets()).expect("parses");
        assert_eq!(specs.len(), 1);
        let so = &specs[0];
        assert_eq!(
            (so.namespace.as_str(), so.name.as_str()),
            ("default", "prometheus-scaledobject")
        );
        assert_eq!(
            so.scale_target,
            ScaleTargetRef {
                name: "sample-app".into(),
                kind: "Deployment".into(),
                api_version: "apps/v1".into()
            }
        );
        assert_eq!(so.scaling.min_replica_count, 2);
        assert_eq!(so.scaling.max_replica_count, 10);
        assert_eq!(so.scaling.triggers[0].threshold, 30.0);
        assert_eq!(so.scaling.triggers[0].metric_type, MetricType::AverageValue);
        let TriggerSource::Prometheus(p) = &so.triggers[0].source else {
            panic!("prometheus trigger expected");
        };
        assert!(p.query.starts_with("sum({__name__=~"));
        assert_eq!(
            p.auth,
            PrometheusAuth::Custom {
                header: Secret::new("Authorization"),
                value: Secret::new("Basic abc==")
            }
        );
        assert!(so.location.contains("document 1"));
    }

    #[test]
    fn absent_fields_take_keda_defaults() {
        let so = parse_one(&object("", EXPORTER_TRIGGER));
        assert_eq!(so.polling_interval_seconds, 30);
        let s = &so.scaling;
        assert_eq!(s.cooldown_period_seconds, 300);
        assert_eq!(s.initial_cooldown_period_seconds, 0);
        assert_eq!(s.min_replica_count, 0);
        assert_eq!(s.max_replica_count, 100);
        assert_eq!(s.idle_replica_count, None);
        assert_eq!(s.fallback, None);
        assert_eq!(s.behavior, None, "no behavior: the HPA's legacy path");
        assert_eq!(s.pause, Pause::default());
        let t = &s.triggers[0];
        assert_eq!(t.activation_threshold, 0.0);
        assert!(t.ignore_null_values);
        assert!(!t.cap_at_queues && !t.exclude_persistent_lag);
    }

    #[test]
    fn behavior_fields_default_one_by_one_like_the_api_server() {
        type Check = fn(&HpaBehavior) -> bool;
        let cases: [(&str, Check); 4] = [
            ("behavior: {}", |b| *b == HpaBehavior::kubernetes_default()),
            (
                "behavior:\n          scaleDown:\n            policies:\n            - type: Pods\n              value: 1\n              periodSeconds: 60",
                |b| {
                    b.scale_up == ScalingRules::default_scale_up()
                        && b.scale_down.stabilization_window_seconds == 300
                        && b.scale_down.select_policy == SelectPolicy::Max
                        && b.scale_down.policies
                            == vec![ScalingPolicy { kind: PolicyType::Pods, value: 1, period_seconds: 60 }]
                },
            ),
            (
                "behavior:\n          scaleUp:\n            stabilizationWindowSeconds: 60\n            selectPolicy: Min",
                |b| {
                    b.scale_up.stabilization_window_seconds == 60
                        && b.scale_up.select_policy == SelectPolicy::Min
                        && b.scale_up.policies == ScalingRules::default_scale_up().policies
                },
            ),
            (
                "behavior:\n          scaleUp:\n            tolerance: 50m\n          scaleDown:\n            tolerance: 0.2\n            selectPolicy: Disabled",
                |b| {
                    b.scale_up.tolerance == Some(0.05)
                        && b.scale_down.tolerance == Some(0.2)
                        && b.scale_down.select_policy == SelectPolicy::Disabled
                },
            ),
        ];
        for (yaml, check) in cases {
            let extra =
                format!("  advanced:\n    horizontalPodAutoscalerConfig:\n        {yaml}\n");
            let so = parse_one(&object(&extra, EXPORTER_TRIGGER));
            let b = so.scaling.behavior.expect("behavior present");
            assert!(check(&b), "{yaml}: {b:?}");
        }
    }

    #[test]
    fn spec_fields_are_read() {
        let extra = "  pollingInterval: 15\n  cooldownPeriod: 60\n  initialCooldownPeriod: 120\n  idleReplicaCount: 0\n  minReplicaCount: 1\n  maxReplicaCount: 20\n  fallback:\n    failureThreshold: 3\n    replicas: 6\n    behavior: currentReplicasIfHigher\n";
        let so = parse_one(&object(extra, EXPORTER_TRIGGER));
        assert_eq!(so.polling_interval_seconds, 15);
        let s = &so.scaling;
        assert_eq!(
            (
                s.cooldown_period_seconds,
                s.initial_cooldown_period_seconds,
                s.idle_replica_count,
                s.min_replica_count,
                s.max_replica_count
            ),
            (60, 120, Some(0), 1, 20)
        );
        assert_eq!(
            s.fallback,
            Some(Fallback {
                failure_threshold: 3,
                replicas: 6,
                behavior: FallbackBehavior::CurrentReplicasIfHigher
            })
        );
    }

    #[test]
    fn fallback_behaviors_parse() {
        let cases = [
            (None, FallbackBehavior::Static),
            (Some("static"), FallbackBehavior::Static),
            (Some("currentReplicas"), FallbackBehavior::CurrentReplicas),
            (
                Some("currentReplicasIfHigher"),
                FallbackBehavior::CurrentReplicasIfHigher,
            ),
            (
                Some("currentReplicasIfLower"),
                FallbackBehavior::CurrentReplicasIfLower,
            ),
        ];
        for (written, expected) in cases {
            let behavior = written
                .map(|b| format!("    behavior: {b}\n"))
                .unwrap_or_default();
            let extra =
                format!("  fallback:\n    failureThreshold: 2\n    replicas: 4\n{behavior}");
            let so = parse_one(&object(&extra, EXPORTER_TRIGGER));
            assert_eq!(
                so.scaling.fallback.map(|f| f.behavior),
                Some(expected),
                "{written:?}"
            );
        }
    }

    #[test]
    fn pause_annotations_follow_keda_bool_parsing() {
        let cases: [(&str, Pause); 6] = [
            (
                "autoscaling.keda.sh/paused: \"true\"",
                Pause {
                    paused: true,
                    ..Pause::default()
                },
            ),
            ("autoscaling.keda.sh/paused: \"false\"", Pause::default()),
            // KEDA's getBoolAnnotation: an unparsable value counts as true.
            (
                "autoscaling.keda.sh/paused: \"yes\"",
                Pause {
                    paused: true,
                    ..Pause::default()
                },
            ),
            (
                "autoscaling.keda.sh/paused-replicas: \"3\"",
                Pause {
                    paused_replicas: Some(3),
                    ..Pause::default()
                },
            ),
            (
                "autoscaling.keda.sh/paused-scale-in: \"1\"",
                Pause {
                    scale_in: true,
                    ..Pause::default()
                },
            ),
            (
                "autoscaling.keda.sh/paused-scale-out: \"T\"",
                Pause {
                    scale_out: true,
                    ..Pause::default()
                },
            ),
        ];
        for (annotation, expected) in cases {
            let text = object("", EXPORTER_TRIGGER).replace(
                "  namespace: default\n",
                &format!("  namespace: default\n  annotations:\n    {annotation}\n    other.example.com/x: y\n"),
            );
            let so = parse_one(&text);
            assert_eq!(so.scaling.pause, expected, "{annotation}");
        }
        assert!(Pause {
            paused_replicas: Some(0),
            ..Pause::default()
        }
        .is_paused());
        assert!(!Pause {
            scale_in: true,
            scale_out: true,
            ..Pause::default()
        }
        .is_paused());
    }

    #[test]
    fn exporter_trigger_reads_its_metadata() {
        let trigger = "  - type: rocketmq-exporter\n    name: backlog\n    metricType: Value\n    metadata:\n      url: https://exporter:9999/metrics\n      instanceId: rmq-cn-1\n      topic: 'orders|payments'\n      consumerGroup: GID_app\n      threshold: '12.5'\n      activationThreshold: '5'\n      ignoreNullValues: 'false'\n      capAtQueues: 'true'\n      excludePersistentLag: 'true'\n";
        let so = parse_one(&object("", trigger));
        let t = &so.scaling.triggers[0];
        assert_eq!(
            *t,
            TriggerScaling {
                threshold: 12.5,
                activation_threshold: 5.0,
                metric_type: MetricType::Value,
                ignore_null_values: false,
                cap_at_queues: true,
                exclude_persistent_lag: true
            }
        );
        assert_eq!(so.triggers[0].name.as_deref(), Some("backlog"));
        let TriggerSource::RocketmqExporter(e) = &so.triggers[0].source else {
            panic!("exporter trigger expected");
        };
        assert_eq!(e.url, "https://exporter:9999/metrics");
        assert_eq!(e.instance_id.as_deref(), Some("rmq-cn-1"));
        assert_eq!(e.consumer_group, "GID_app");
        let topic = e.topic.as_ref().expect("topic");
        assert_eq!(topic.as_str(), "orders|payments");
        for (name, matches) in [
            ("orders", true),
            ("payments", true),
            ("orders-dlq", false),
            ("xorders", false),
        ] {
            assert_eq!(
                topic.is_match(name),
                matches,
                "{name}: PromQL =~ is fully anchored"
            );
        }
    }

    #[test]
    fn prometheus_trigger_reads_its_metadata() {
        let trigger = "  - type: prometheus\n    metadata:\n      serverAddress: http://prom:9090\n      query: sum(x)\n      threshold: '30'\n      namespace: team-a\n      customHeaders: 'X-Scope-OrgID=tenant, X-Other = v'\n      queryParameters: 'dedup=false,partial_response=true'\n      unsafeSsl: 'true'\n      timeout: '2500'\n";
        let so = parse_one(&object("", trigger));
        let TriggerSource::Prometheus(p) = &so.triggers[0].source else {
            panic!("prometheus trigger expected");
        };
        assert_eq!(p.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            p.custom_headers.get("X-Scope-OrgID").map(String::as_str),
            Some("tenant")
        );
        assert_eq!(
            p.custom_headers.get("X-Other").map(String::as_str),
            Some("v")
        );
        assert_eq!(p.query_parameters.len(), 2);
        assert!(p.unsafe_ssl);
        assert_eq!(p.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(p.auth, PrometheusAuth::None);
    }

    #[test]
    fn timeouts_accept_milliseconds_and_go_durations() {
        let cases = [
            ("1000", Some(Duration::from_secs(1))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("300ms", Some(Duration::from_millis(300))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("0", Some(Duration::ZERO)),
            ("-5", None),
            ("5 s", None),
            ("soon", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_duration(text), expected, "{text}");
        }
    }

    #[test]
    fn bearer_and_basic_auth_resolve_from_trigger_authentication() {
        let auth_doc = |params: &str| {
            format!(
                "---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: creds\n  namespace: default\nspec:\n  secretTargetRef:\n{params}"
            )
        };
        let entry = |p: &str| format!("  - parameter: {p}\n    name: s\n    key: {p}\n");
        let trigger = |modes: &str| {
            format!("  - type: prometheus\n    metadata:\n      serverAddress: http://prom\n      query: q\n      threshold: '1'\n{modes}    authenticationRef:\n      name: creds\n")
        };
        let secrets = MapSecrets::new(&[
            ("s/bearerToken", "tok"),
            ("s/username", "u"),
            ("s/password", "p"),
            ("s/authModes", "basic"),
        ]);
        let cases = [
            (
                trigger("      authModes: bearer\n") + &auth_doc(&entry("bearerToken")),
                PrometheusAuth::Bearer {
                    token: Secret::new("tok"),
                },
            ),
            (
                // authModes may come from the TriggerAuthentication, as in KEDA.
                trigger("")
                    + &auth_doc(&(entry("authModes") + &entry("username") + &entry("password"))),
                PrometheusAuth::Basic {
                    username: Secret::new("u"),
                    password: Secret::new("p"),
                },
            ),
        ];
        for (text, expected) in cases {
            let so = parse_str(&object("", &text), &secrets).expect("parses");
            let TriggerSource::Prometheus(p) = &so[0].triggers[0].source else {
                panic!("prometheus trigger expected");
            };
            assert_eq!(p.auth, expected);
        }
    }

    #[test]
    fn secrets_come_from_the_mounted_directory_then_the_environment() {
        let dir =
            std::env::temp_dir().join(format!("rmq-sidecar-config-test-{}", std::process::id()));
        let secret_dir = dir.join("keda-prom-secret");
        std::fs::create_dir_all(&secret_dir).expect("mkdir");
        std::fs::write(secret_dir.join("customAuthHeader"), "Authorization").expect("write");
        // customAuthValue is not in the directory: it comes from the environment.
        let var = secret_env_var("keda-prom-secret", "customAuthValue");
        assert_eq!(var, "RMQ_SIDECAR_SECRET_KEDA_PROM_SECRET_CUSTOMAUTHVALUE");
        std::env::set_var(&var, "Bearer from-env");
        let config = dir.join("so.yaml");
        std::fs::write(&config, ARMS_GUIDE).expect("write config");

        let specs = load(&config, Some(&dir)).expect("loads");
        let TriggerSource::Prometheus(p) = &specs[0].triggers[0].source else {
            panic!("prometheus trigger expected");
        };
        assert_eq!(
            p.auth,
            PrometheusAuth::Custom {
                header: Secret::new("Authorization"),
                value: Secret::new("Bearer from-env")
            }
        );
        std::env::remove_var(&var);
        let err = load(&config, Some(&dir))
            .expect_err("value now missing")
            .to_string();
        assert!(err.contains("no file") && err.contains(&var), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn secret_names_cannot_escape_the_secrets_directory() {
        let secrets = MountedSecrets::new(Some(Path::new("/nonexistent")));
        for (name, key) in [("..", "k"), ("a/b", "k"), ("s", "../etc/passwd"), ("", "k")] {
            let err = secrets.lookup(name, key).expect_err("rejected");
            assert!(
                err.contains("not a valid Kubernetes name"),
                "{name}/{key}: {err}"
            );
        }
    }

    #[test]
    fn secret_values_are_not_printed_by_debug() {
        let so = parse_str(ARMS_GUIDE, &arms_secrets()).expect("parses");
        let printed = format!("{so:?}");
        assert!(!printed.contains("Basic abc=="), "{printed}");
        assert!(printed.contains("Secret(***)"));
    }

    #[test]
    fn documents_split_on_separators_and_empty_documents_are_skipped() {
        let second = object("", EXPORTER_TRIGGER)
            .replace("name: app\n  namespace", "name: other\n  namespace")
            .replace("    name: app\n", "    name: other-app\n");
        let text = format!(
            "---\n{}\n---\n---\n{second}\n---\n",
            object("", EXPORTER_TRIGGER)
        );
        let specs = parse_str(&text, &no_secrets()).expect("parses");
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["app", "other"]);
        assert!(
            specs[1].location.ends_with("document 3"),
            "{}",
            specs[1].location
        );
    }

    #[test]
    fn a_directory_is_read_file_by_file_including_cross_file_references() {
        let dir =
            std::env::temp_dir().join(format!("rmq-sidecar-config-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (so, ta) = ARMS_GUIDE.split_once("---").expect("two documents");
        std::fs::write(dir.join("a-scaledobject.yaml"), so).expect("write");
        std::fs::write(dir.join("b-auth.yml"), ta).expect("write");
        std::fs::write(dir.join("README.md"), "not yaml").expect("write");
        std::fs::write(dir.join(".hidden.yaml"), "not: [valid").expect("write");
        let specs = load_with(&dir, &arms_secrets()).expect("loads");
        assert_eq!(specs.len(), 1);
        assert!(specs[0].location.contains("a-scaledobject.yaml"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn missing_path_is_an_io_error() {
        let err = load(Path::new("/nonexistent/rmq-sidecar.yaml"), None).expect_err("missing");
        assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    }

    #[test]
    fn invalid_configurations_are_rejected_with_object_field_and_alternatives() {
        let prom = |extra: &str| {
            format!("  - type: prometheus\n    metadata:\n      serverAddress: http://prom\n      query: q\n      threshold: '30'\n{extra}")
        };
        let exporter = |extra: &str| format!("{EXPORTER_TRIGGER}{extra}");
        let with_annotation = |a: &str| {
            object("", EXPORTER_TRIGGER).replace(
                "  namespace: default\n",
                &format!("  namespace: default\n  annotations:\n    {a}\n"),
            )
        };
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "threshold not a number",
                object("", &EXPORTER_TRIGGER.replace("'30'", "abc")),
                vec![r#"ScaledObject default/app: spec.triggers[0].metadata.threshold: "abc" is not a number"#],
            ),
            ("threshold missing", object("", &prom("").replace("      threshold: '30'\n", "")), vec!["spec.triggers[0].metadata.threshold: is required"]),
            ("threshold zero", object("", &EXPORTER_TRIGGER.replace("'30'", "'0'")), vec!["threshold", "at least 0.001"]),
            ("unknown spec key", object("  replicas: 3\n", EXPORTER_TRIGGER), vec!["ScaledObject default/app: spec: unknown field `replicas`", "scaleTargetRef"]),
            ("unknown nested key", object("  fallback:\n    failureThreshold: 1\n    replicas: 1\n    mode: x\n", EXPORTER_TRIGGER), vec!["spec.fallback: unknown field `mode`"]),
            ("scalingModifiers unsupported", object("  advanced:\n    scalingModifiers:\n      formula: x\n", EXPORTER_TRIGGER), vec!["spec.advanced: unknown field `scalingModifiers`", "horizontalPodAutoscalerConfig"]),
            ("status is not accepted", object("", EXPORTER_TRIGGER) + "status:\n  hpaName: x\n", vec!["unknown field `status`"]),
            ("unknown trigger metadata", object("", &exporter("      lagThreshold: '5'\n")), vec!["spec.triggers[0].metadata.lagThreshold: unknown key for trigger type \"rocketmq-exporter\"; supported: url, instanceId"]),
            ("capAtQueues only for the exporter", object("", &prom("      capAtQueues: 'true'\n")), vec!["metadata.capAtQueues: unknown key for trigger type \"prometheus\""]),
            ("credentials in metadata", object("", &prom("      bearerToken: x\n")), vec!["metadata.bearerToken", "TriggerAuthentication"]),
            ("unsupported trigger type", object("", "  - type: kafka\n    metadata:\n      lagThreshold: '5'\n"), vec!["spec.triggers[0].type: trigger type \"kafka\" is not supported; supported: prometheus, rocketmq-exporter"]),
            ("authModes apiKey", object("", &prom("      authModes: apiKey\n")), vec!["spec.triggers[0].metadata.authModes: authMode \"apiKey\" is not supported by rmq-sidecar; supported: bearer, basic, custom, tls"]),
            ("authModes oauth", object("", &prom("      authModes: tls,oauth\n")), vec!["authMode \"oauth\" is not supported by rmq-sidecar"]),
            ("authModes tls without cert and key", object("", &prom("      authModes: tls\n")), vec!["spec.triggers[0].authenticationRef: authModes \"tls\" needs parameters cert and key from the TriggerAuthentication"]),
            ("authModes unknown", object("", &prom("      authModes: magic\n")), vec!["authMode \"magic\" is unknown; supported: bearer, basic, custom, tls"]),
            ("two authModes", object("", &prom("      authModes: bearer,custom\n")), vec!["bearer,custom enables several header modes", "enable at most one of bearer, basic, custom (tls combines with any of them)"]),
            ("two authModes beside tls", object("", &prom("      authModes: tls, basic, bearer\n")), vec!["basic,bearer enables several header modes"]),
            ("bearer without token", object("", &prom("      authModes: bearer\n")), vec!["needs parameter bearerToken"]),
            ("metricType Utilization", object("", &format!("{EXPORTER_TRIGGER}    metricType: Utilization\n")), vec!["spec.triggers[0].metricType: \"Utilization\" is not supported; supported: AverageValue, Value"]),
            ("bad bool", object("", &exporter("      capAtQueues: 'sure'\n")), vec!["metadata.capAtQueues: \"sure\" is not a boolean"]),
            ("bad regex", object("", &exporter("      topic: '(orders'\n")), vec!["metadata.topic: \"(orders\" is not a valid regular expression"]),
            ("bad url", object("", &EXPORTER_TRIGGER.replace("http://127.0.0.1:9876/metrics", "127.0.0.1:9876")), vec!["metadata.url: \"127.0.0.1:9876\" is not an http:// or https:// URL"]),
            ("consumerGroup missing", object("", &EXPORTER_TRIGGER.replace("      consumerGroup: GID_app\n", "")), vec!["metadata.consumerGroup: is required"]),
            ("authenticationRef on exporter", object("", &exporter("    authenticationRef:\n      name: x\n")), vec!["spec.triggers[0].authenticationRef: is not supported for trigger type \"rocketmq-exporter\""]),
            ("undefined TriggerAuthentication", object("", &prom("      authModes: bearer\n    authenticationRef:\n      name: nope\n")), vec!["spec.triggers[0].authenticationRef.name: TriggerAuthentication default/nope is not defined"]),
            ("ClusterTriggerAuthentication", object("", &prom("    authenticationRef:\n      name: x\n      kind: ClusterTriggerAuthentication\n")), vec!["authenticationRef.kind: \"ClusterTriggerAuthentication\" is not supported"]),
            ("bad timeout", object("", &prom("      timeout: soon\n")), vec!["metadata.timeout: \"soon\" is not a duration"]),
            ("bad header list", object("", &prom("      customHeaders: 'a=b,c'\n")), vec!["metadata.customHeaders: \"c\" is not in the form key=value"]),
            ("negative min", object("  minReplicaCount: -1\n", EXPORTER_TRIGGER), vec!["spec.minReplicaCount: -1 must be at least 0"]),
            ("max zero", object("  maxReplicaCount: 0\n", EXPORTER_TRIGGER), vec!["spec.maxReplicaCount: 0 must be at least 1"]),
            ("pollingInterval zero", object("  pollingInterval: 0\n", EXPORTER_TRIGGER), vec!["spec.pollingInterval: 0 must be at least 1"]),
            ("min above max", object("  minReplicaCount: 5\n  maxReplicaCount: 3\n", EXPORTER_TRIGGER), vec!["spec.minReplicaCount: MinReplicaCount=5 must be less than MaxReplicaCount=3"]),
            ("idle not below min", object("  idleReplicaCount: 0\n", EXPORTER_TRIGGER), vec!["spec.idleReplicaCount: IdleReplicaCount=0 must be less than MinReplicaCount=0"]),
            ("idle above zero", object("  idleReplicaCount: 1\n  minReplicaCount: 3\n", EXPORTER_TRIGGER), vec!["spec.idleReplicaCount: 1 is not supported: only 0 works"]),
            ("fallback behavior scalingModifiers", object("  fallback:\n    failureThreshold: 1\n    replicas: 1\n    behavior: scalingModifiers\n", EXPORTER_TRIGGER), vec!["spec.fallback.behavior: \"scalingModifiers\" is not supported"]),
            ("fallback missing replicas", object("  fallback:\n    failureThreshold: 1\n", EXPORTER_TRIGGER), vec!["spec.fallback: missing field `replicas`"]),
            ("select policy", object("  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleUp:\n          selectPolicy: Fastest\n", EXPORTER_TRIGGER), vec!["behavior.scaleUp.selectPolicy: \"Fastest\" is not supported; supported: Max, Min, Disabled"]),
            ("policy type", object("  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleDown:\n          policies:\n          - type: Replicas\n            value: 1\n            periodSeconds: 15\n", EXPORTER_TRIGGER), vec!["behavior.scaleDown.policies[0].type: \"Replicas\" is not supported; supported: Pods, Percent"]),
            ("empty policies", object("  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleDown:\n          policies: []\n", EXPORTER_TRIGGER), vec!["behavior.scaleDown.policies: must specify at least one policy"]),
            ("policy period", object("  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleUp:\n          policies:\n          - type: Pods\n            value: 1\n            periodSeconds: 0\n", EXPORTER_TRIGGER), vec!["policies[0].periodSeconds: 0 must be between 1 and 1800"]),
            ("window too long", object("  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleDown:\n          stabilizationWindowSeconds: 3601\n", EXPORTER_TRIGGER), vec!["scaleDown.stabilizationWindowSeconds: 3601 must be between 0 and 3600"]),
            ("bad tolerance", object("  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleUp:\n          tolerance: lots\n", EXPORTER_TRIGGER), vec!["scaleUp.tolerance: \"lots\" is not a non-negative quantity"]),
            ("hpa name unsupported", object("  advanced:\n    horizontalPodAutoscalerConfig:\n      name: my-hpa\n", EXPORTER_TRIGGER), vec!["horizontalPodAutoscalerConfig: unknown field `name`"]),
            ("unknown keda annotation", with_annotation("autoscaling.keda.sh/force-activation: \"true\""), vec!["metadata.annotations.autoscaling.keda.sh/force-activation: annotation is not supported by rmq-sidecar; supported: autoscaling.keda.sh/paused"]),
            ("bad paused-replicas", with_annotation("autoscaling.keda.sh/paused-replicas: \"-1\""), vec!["paused-replicas: \"-1\" is not a replica count"]),
            ("no triggers", object("", "  []\n").replace("triggers:\n  []", "triggers: []"), vec!["spec.triggers: at least one trigger is required"]),
            ("empty target name", object("", EXPORTER_TRIGGER).replace("    name: app\n", "    name: ''\n"), vec!["spec.scaleTargetRef.name: must not be empty"]),
            ("other kinds are not skipped", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n".to_string(), vec!["Deployment default/app: kind: \"Deployment\" is not supported; supported kinds: ScaledObject, TriggerAuthentication"]),
            ("wrong apiVersion", object("", EXPORTER_TRIGGER).replace("keda.sh/v1alpha1", "keda.k8s.io/v1alpha1"), vec!["apiVersion: \"keda.k8s.io/v1alpha1\" is not supported"]),
            ("duplicate object", format!("{}---\n{}", object("", EXPORTER_TRIGGER), object("", EXPORTER_TRIGGER)), vec!["metadata.name: defined more than once"]),
            ("two objects, one target", format!("{}---\n{}", object("", EXPORTER_TRIGGER), object("", EXPORTER_TRIGGER).replace("  name: app\n  namespace", "  name: app2\n  namespace")), vec!["ScaledObject default/app2: spec.scaleTargetRef: Deployment app is already scaled by ScaledObject default/app"]),
            ("yaml syntax", "spec: [unclosed\n".to_string(), vec!["<input>, document 1: invalid YAML"]),
            ("nothing to scale", "---\n".to_string(), vec!["<input>: no ScaledObject found"]),
            ("kind missing", "metadata:\n  name: x\n".to_string(), vec!["document default/x: kind: is missing"]),
            ("unsupported TriggerAuthentication source", object("", EXPORTER_TRIGGER) + "---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: creds\nspec:\n  env:\n  - parameter: x\n    name: Y\n", vec!["TriggerAuthentication default/creds: spec: unknown field `env`, expected `secretTargetRef`"]),
        ];
        for (what, text, needles) in cases {
            let err = error_of(&text);
            for needle in needles {
                assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn trigger_authentication_problems_name_both_objects() {
        let trigger = "  - type: prometheus\n    metadata:\n      serverAddress: http://prom\n      query: q\n      threshold: '1'\n      authModes: bearer\n    authenticationRef:\n      name: creds\n";
        let ta = |entries: &str| {
            format!("---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: creds\nspec:\n  secretTargetRef:\n{entries}")
        };
        let secrets = MapSecrets::new(&[("s/token", "t"), ("s/user", "u")]);
        let cases = [
            ("unknown parameter", ta("  - parameter: apiKey\n    name: s\n    key: token\n"), "\"apiKey\" is not a parameter of trigger type \"prometheus\"; supported: authModes, bearerToken, token, username, password, customAuthHeader, customAuthValue, cert, key, ca"),
            ("keyPassword", ta("  - parameter: keyPassword\n    name: s\n    key: token\n"), "\"keyPassword\" is not a parameter of trigger type \"prometheus\" (KEDA's prometheus scaler does not read keyPassword: give an unencrypted key)"),
            ("missing secret", ta("  - parameter: bearerToken\n    name: s\n    key: nope\n"), "secret \"s\" key \"nope\" not found: no entry s/nope"),
            ("unused credential", ta("  - parameter: bearerToken\n    name: s\n    key: token\n  - parameter: username\n    name: s\n    key: user\n"), "parameter \"username\" is set but authModes \"bearer\" does not use it"),
            ("duplicate parameter", ta("  - parameter: bearerToken\n    name: s\n    key: token\n  - parameter: bearerToken\n    name: s\n    key: token\n"), "TriggerAuthentication default/creds: spec.secretTargetRef[1].parameter: \"bearerToken\" is already set"),
        ];
        for (what, doc, needle) in cases {
            let err = parse_str(&(object("", trigger) + &doc), &secrets)
                .expect_err(what)
                .to_string();
            assert!(err.contains(needle), "{what}: {err}");
        }
    }

    /// PEM text made once with `openssl`: a CA, a client certificate it signed (v3, and the same
    /// as v1) with its P-256 key as PKCS#8 and as SEC1, an RSA certificate with a PKCS#1 key, an unrelated key and the
    /// client key encrypted (PKCS#8 and legacy PEM).
    struct Pems {
        ca: String,
        cert: String,
        cert_v1: String,
        key: String,
        key_sec1: String,
        rsa_cert: String,
        rsa_key_pkcs1: String,
        other_key: String,
        key_encrypted: String,
        key_legacy_encrypted: String,
    }

    fn pems() -> &'static Pems {
        static PEMS: std::sync::OnceLock<Pems> = std::sync::OnceLock::new();
        PEMS.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("rmq-sidecar-pems-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let openssl = |args: &str| {
                let out = std::process::Command::new("openssl")
                    .current_dir(&dir)
                    .args(args.split_whitespace())
                    .output()
                    .expect("openssl runs");
                assert!(
                    out.status.success(),
                    "openssl {args}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
            openssl(&format!("req -x509 {p256} -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca"));
            openssl(&format!("req {p256} -keyout client.key -out client.csr -subj /CN=client"));
            std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write");
            openssl("x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.crt");
            // Without extensions openssl makes a v1 certificate.
            openssl("x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client-v1.crt");
            openssl("ec -in client.key -out client-sec1.key");
            openssl("req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.crt -days 2 -subj /CN=rsa");
            openssl("rsa -in rsa.key -traditional -out rsa-pkcs1.key");
            openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out other.key");
            openssl("pkcs8 -topk8 -in client.key -out client-enc.key -passout pass:pw");
            openssl("ec -in client.key -aes128 -passout pass:pw -out client-legacy-enc.key");
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
            let pems = Pems {
                ca: read("ca.crt"),
                cert: read("client.crt"),
                cert_v1: read("client-v1.crt"),
                key: read("client.key"),
                key_sec1: read("client-sec1.key"),
                rsa_cert: read("rsa.crt"),
                rsa_key_pkcs1: read("rsa-pkcs1.key"),
                other_key: read("other.key"),
                key_encrypted: read("client-enc.key"),
                key_legacy_encrypted: read("client-legacy-enc.key"),
            };
            let _ = std::fs::remove_dir_all(&dir);
            pems
        })
    }

    /// A prometheus trigger with `metadata_extra` and a TriggerAuthentication giving `params`
    /// (parameter → value, through secret `s`).
    fn with_auth(
        metadata_extra: &str,
        params: &[(&str, &str)],
    ) -> Result<ScaledObjectSpec, String> {
        let trigger = format!(
            "  - type: prometheus\n    metadata:\n      serverAddress: https://prom:9090\n      query: q\n      threshold: '1'\n{metadata_extra}    authenticationRef:\n      name: creds\n"
        );
        let mut doc = object("", &trigger);
        doc.push_str("---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: creds\n  namespace: default\nspec:\n  secretTargetRef:\n");
        let mut entries = Vec::new();
        for (param, value) in params {
            doc.push_str(&format!(
                "  - parameter: {param}\n    name: s\n    key: {param}\n"
            ));
            entries.push((format!("s/{param}"), value.to_string()));
        }
        let secrets = MapSecrets(entries.into_iter().collect());
        match parse_str(&doc, &secrets) {
            Ok(mut v) => Ok(v.remove(0)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn prometheus_of(spec: &ScaledObjectSpec) -> &PrometheusSource {
        match &spec.triggers[0].source {
            TriggerSource::Prometheus(p) => p,
            other => panic!("not a prometheus trigger: {other:?}"),
        }
    }

    #[test]
    fn tls_ca_and_header_modes_are_read_as_keda_reads_them() {
        let p = pems();
        let client = || ClientCert {
            cert: p.cert.clone(),
            key: Secret::new(p.key.clone()),
        };
        // tls alone, authModes from the trigger metadata.
        let spec = with_auth(
            "      authModes: tls\n",
            &[("cert", &p.cert), ("key", &p.key), ("ca", &p.ca)],
        )
        .expect("tls parses");
        let prom = prometheus_of(&spec);
        assert_eq!(prom.auth, PrometheusAuth::None);
        assert_eq!(
            prom.tls,
            Some(PrometheusTls {
                ca: Some(p.ca.clone()),
                client: Some(client())
            })
        );
        // tls with basic, authModes from the TriggerAuthentication, no ca (built-in roots).
        let spec = with_auth(
            "",
            &[
                ("authModes", "tls,basic"),
                ("cert", &p.cert),
                ("key", &p.key),
                ("username", "u"),
                ("password", "pw"),
            ],
        )
        .expect("tls,basic parses");
        let prom = prometheus_of(&spec);
        assert_eq!(
            prom.auth,
            PrometheusAuth::Basic {
                username: Secret::new("u"),
                password: Secret::new("pw")
            }
        );
        assert_eq!(
            prom.tls,
            Some(PrometheusTls {
                ca: None,
                client: Some(client())
            })
        );
        // ca with a header mode and no tls: the CA only.
        let spec = with_auth(
            "      authModes: bearer\n      unsafeSsl: 'true'\n",
            &[("bearerToken", "t"), ("ca", &p.ca)],
        )
        .expect("bearer + ca parses");
        let prom = prometheus_of(&spec);
        assert!(
            prom.unsafe_ssl,
            "kept as written; the client ignores it with ca"
        );
        assert_eq!(
            prom.tls,
            Some(PrometheusTls {
                ca: Some(p.ca.clone()),
                client: None
            })
        );
        // KEDA's transport loads cert + key whenever both are set once ca makes it build one.
        let spec = with_auth(
            "      authModes: basic\n",
            &[
                ("username", "u"),
                ("ca", &p.ca),
                ("cert", &p.cert),
                ("key", &p.key),
            ],
        )
        .expect("basic + ca + cert + key parses");
        assert_eq!(
            prometheus_of(&spec)
                .tls
                .as_ref()
                .and_then(|t| t.client.clone()),
            Some(client())
        );
        // No TLS parameters: no TLS setting, the shared clients.
        let spec = with_auth("      authModes: basic\n", &[("username", "u")]).expect("basic");
        assert_eq!(prometheus_of(&spec).tls, None);
        // SEC1 EC and PKCS#1 RSA keys work as well as PKCS#8.
        for (cert, key) in [(&p.cert, &p.key_sec1), (&p.rsa_cert, &p.rsa_key_pkcs1)] {
            with_auth("      authModes: tls\n", &[("cert", cert), ("key", key)])
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn tls_mistakes_name_the_parameter_and_what_keda_would_do() {
        let p = pems();
        let field = "ScaledObject default/app: spec.triggers[0].authenticationRef";
        /// (what, trigger metadata, TriggerAuthentication parameters, expected error).
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String);
        let cases: Vec<Case> = vec![
            ("tls without key", "      authModes: tls\n", vec![("cert", &p.cert)], format!("{field}: authModes \"tls\" needs parameter key from the TriggerAuthentication")),
            ("tls without cert", "      authModes: tls\n", vec![("key", &p.key)], format!("{field}: authModes \"tls\" needs parameter cert")),
            ("ca without any authMode", "", vec![("ca", &p.ca)], format!("{field}: parameter \"ca\" is set but authModes \"\" does not use it (KEDA's prometheus scaler reads ca only when authModes is set: add tls, basic, bearer or custom)")),
            ("cert and key without tls or ca", "      authModes: basic\n", vec![("username", "u"), ("cert", &p.cert), ("key", &p.key)], format!("{field}: parameter \"cert\" is set but authModes \"basic\" does not use it (KEDA sends a client certificate with authModes tls: add tls to authModes)")),
            ("a file path instead of PEM", "      authModes: tls\n", vec![("cert", "/etc/tls/tls.crt"), ("key", &p.key)], format!("{field} (parameter cert): has no PEM CERTIFICATE block (the value is the certificate's PEM text, not a file path)")),
            ("a certificate as the key", "      authModes: tls\n", vec![("cert", &p.cert), ("key", &p.cert)], format!("{field} (parameter key): has no PEM PRIVATE KEY block")),
            ("ca not PEM", "      authModes: tls\n", vec![("cert", &p.cert), ("key", &p.key), ("ca", "/etc/tls/ca.crt")], format!("{field} (parameter ca): has no PEM CERTIFICATE block")),
            ("ca corrupt", "      authModes: tls\n", vec![("cert", &p.cert), ("key", &p.key), ("ca", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")], format!("{field} (parameter ca): is not a usable CA certificate")),
            ("encrypted PKCS#8 key", "      authModes: tls\n", vec![("cert", &p.cert), ("key", &p.key_encrypted)], format!("{field} (parameter key): is encrypted; KEDA's prometheus scaler does not decrypt keys (it reads no keyPassword)")),
            ("encrypted legacy key", "      authModes: tls\n", vec![("cert", &p.cert), ("key", &p.key_legacy_encrypted)], format!("{field} (parameter key): is encrypted")),
            ("key of another certificate", "      authModes: tls\n", vec![("cert", &p.cert), ("key", &p.other_key)], format!("{field} (parameter key): does not match cert (it is the key of another certificate)")),
            ("v1 certificate", "      authModes: tls\n", vec![("cert", &p.cert_v1), ("key", &p.key)], format!("{field} (parameter cert): is an X.509 v1 certificate")),
        ];
        for (what, metadata, params, needle) in cases {
            let err = with_auth(metadata, &params).expect_err(what);
            assert!(err.contains(&needle), "{what}: {err}\nlacks {needle}");
            // No key material in any message.
            assert!(!err.contains("BEGIN"), "{what}: {err}");
        }
    }

    #[test]
    fn client_keys_are_not_printed_by_debug() {
        let p = pems();
        let spec = with_auth(
            "      authModes: tls\n",
            &[("cert", &p.cert), ("key", &p.key), ("ca", &p.ca)],
        )
        .expect("parses");
        let printed = format!("{spec:?}");
        let key_body = p.key.lines().nth(1).expect("a base64 line");
        assert!(!printed.contains(key_body), "{printed}");
        assert!(printed.contains("key: Secret(***)"), "{printed}");
    }
}
