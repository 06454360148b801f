//! KEDA external scaler: the exporter answers KEDA's `external` and `external-push` triggers over
//! gRPC (`proto/externalscaler.proto`, KEDA's `externalscaler` service), so KEDA scales on the
//! backlog without a Prometheus in between.
//!
//! Every answer is computed from the last collection cycle's [`Snapshot`]; no request ever reaches
//! RocketMQ. `StreamIsActive` sends the current state when a stream opens and then once per
//! cycle whose state differs, as soon as that cycle is published.
//!
//! The trigger's metadata (KEDA passes the trigger's whole `metadata` map):
//!
//! | key | meaning |
//! |---|---|
//! | `consumerGroup` (required) | the group; its ready + inflight on every matching topic is the value, as the ARMS guide's query sums it |
//! | `threshold` (required) | the target per replica (`AverageValue`) or in all (`Value`) |
//! | `activationThreshold` | active when the value is greater (default 0) |
//! | `instanceId` | only this instance (`instance_id` label) |
//! | `topic` | only topics matching this regular expression, anchored like PromQL `=~` |
//! | `ignoreNullValues` | a group without series reads 0 (default true); false: an error, like KEDA's prometheus trigger |
//! | `capAtQueues` | the value is capped at queues × threshold, so replicas never outnumber the queues |
//! | `excludePersistentLag` | lag of a queue whose committed offset did not move since an earlier cycle does not count for scaling (activation keeps it); needs `queue_metrics` |
//!
//! The keys KEDA itself reads (`scalerAddress`, `enableTLS`, `unsafeSsl`, `caCert`,
//! `tlsClientCert`, `tlsClientKey`) are accepted and ignored; any other key is refused with
//! `INVALID_ARGUMENT` naming it, like every bad value. These are the semantics of the sidecar's
//! `rocketmq-exporter` trigger.
//!
//! When no cycle has finished yet, when the last one is older than the exporter's stale bound, or
//! when the group has no series while a name server, broker or instance it could come from is
//! down, the answer is `UNAVAILABLE`: KEDA then counts a failure and applies the ScaledObject's
//! `fallback`, instead of scaling on old numbers or on a backlog that only looks like zero.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use regex::Regex;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::collector::Cache;
use crate::config::{bad, ConfigError};
use crate::snapshot::{unix_now, Snapshot};

/// The generated messages and server of KEDA's `externalscaler` package.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("externalscaler");
}

use pb::external_scaler_server::{ExternalScaler, ExternalScalerServer};

/// The one metric this scaler serves (KEDA prefixes it with `s<trigger index>-`).
pub const METRIC_NAME: &str = "rocketmq-consumer-backlog";

/// Flags of the scaler (file keys `keda_listen`, `keda_tls_cert_file`, ...).
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct Flags {
    /// Serve KEDA's external scaler gRPC (triggers `external` / `external-push`) on this address,
    /// e.g. 0.0.0.0:9879 [default: off]
    #[arg(long, env = "RMQ_EXPORTER_KEDA_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keda_listen: Option<String>,
    /// PEM certificate (chain) for the scaler's TLS; with --keda-tls-key-file
    #[arg(long, env = "RMQ_EXPORTER_KEDA_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keda_tls_cert_file: Option<PathBuf>,
    /// PEM private key for the scaler's TLS
    #[arg(long, env = "RMQ_EXPORTER_KEDA_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keda_tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: require KEDA to present a client certificate signed by it (mutual TLS)
    #[arg(long, env = "RMQ_EXPORTER_KEDA_TLS_CLIENT_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keda_tls_client_ca_file: Option<PathBuf>,
}

/// The scaler's keys as the config file has them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct File {
    pub keda_listen: Option<String>,
    pub keda_tls_cert_file: Option<PathBuf>,
    pub keda_tls_key_file: Option<PathBuf>,
    pub keda_tls_client_ca_file: Option<PathBuf>,
}

/// Validated scaler settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl File {
    /// None when the scaler is off.
    pub fn build(self) -> Result<Option<Settings>, ConfigError> {
        let Some(listen) = self.keda_listen.filter(|l| !l.is_empty()) else {
            if self.keda_tls_cert_file.is_some() || self.keda_tls_key_file.is_some() {
                return Err(bad("keda_tls_cert_file", "is set but keda_listen is not"));
            }
            return Ok(None);
        };
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| bad("keda_listen", format!("`{listen}` is not ADDR:PORT")))?;
        let tls = match (self.keda_tls_cert_file, self.keda_tls_key_file) {
            (None, None) => {
                if self.keda_tls_client_ca_file.is_some() {
                    return Err(bad(
                        "keda_tls_client_ca_file",
                        "needs keda_tls_cert_file and keda_tls_key_file",
                    ));
                }
                None
            }
            (Some(cert), Some(key)) => {
                for (k, p) in [("keda_tls_cert_file", &cert), ("keda_tls_key_file", &key)]
                    .into_iter()
                    .chain(
                        self.keda_tls_client_ca_file
                            .as_ref()
                            .map(|p| ("keda_tls_client_ca_file", p)),
                    )
                {
                    if !p.is_file() {
                        return Err(bad(k, format!("{} is not a file", p.display())));
                    }
                }
                Some(TlsFiles {
                    cert,
                    key,
                    client_ca: self.keda_tls_client_ca_file,
                })
            }
            (Some(_), None) => {
                return Err(bad(
                    "keda_tls_key_file",
                    "is required with keda_tls_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "keda_tls_cert_file",
                    "is required with keda_tls_key_file",
                ))
            }
        };
        Ok(Some(Settings { listen, tls }))
    }
}

/// One trigger's validated metadata.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub consumer_group: String,
    pub threshold: f64,
    pub activation_threshold: f64,
    pub instance_id: Option<String>,
    pub topic: Option<Regex>,
    pub ignore_null_values: bool,
    pub cap_at_queues: bool,
    pub exclude_persistent_lag: bool,
}

/// Keys KEDA's external scaler reads itself; they arrive in the metadata and mean nothing here.
const KEDA_KEYS: &[&str] = &[
    "scalerAddress",
    "enableTLS",
    "unsafeSsl",
    "caCert",
    "tlsClientCert",
    "tlsClientKey",
];
const KEYS: &[&str] = &[
    "consumerGroup",
    "threshold",
    "activationThreshold",
    "instanceId",
    "topic",
    "ignoreNullValues",
    "capAtQueues",
    "excludePersistentLag",
];

fn invalid(key: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("scalerMetadata.{key}: {why}"))
}

/// Go's `strconv.ParseBool`, which KEDA uses for its own boolean metadata.
fn parse_bool(key: &str, v: &str) -> Result<bool, Status> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(invalid(
            key,
            format!("`{v}` is not a boolean (true or false)"),
        )),
    }
}

fn parse_number(key: &str, v: &str) -> Result<f64, Status> {
    match v.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(invalid(key, format!("`{v}` is not a number"))),
    }
}

impl Trigger {
    /// Validates KEDA's `scalerMetadata`; an error is `INVALID_ARGUMENT` naming the key.
    pub fn parse(meta: &HashMap<String, String>) -> Result<Trigger, Status> {
        let mut keys: Vec<&String> = meta.keys().collect();
        keys.sort();
        if let Some(k) = keys
            .into_iter()
            .find(|k| !KEYS.contains(&k.as_str()) && !KEDA_KEYS.contains(&k.as_str()))
        {
            return Err(invalid(
                k,
                format!("unknown key; supported: {}", KEYS.join(", ")),
            ));
        }
        let get = |k: &str| meta.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let consumer_group = get("consumerGroup")
            .ok_or_else(|| invalid("consumerGroup", "is required"))?
            .to_string();
        let threshold = parse_number(
            "threshold",
            get("threshold").ok_or_else(|| invalid("threshold", "is required"))?,
        )?;
        if threshold <= 0.0 {
            return Err(invalid(
                "threshold",
                format!("must be > 0 (got {threshold})"),
            ));
        }
        let activation_threshold = match get("activationThreshold") {
            Some(v) => parse_number("activationThreshold", v)?,
            None => 0.0,
        };
        let topic = match get("topic") {
            Some(t) => Some(Regex::new(&format!("^(?:{t})$")).map_err(|e| {
                let first = e.to_string();
                let line = first.lines().last().unwrap_or("").trim().to_string();
                invalid(
                    "topic",
                    format!("`{t}` is not a regular expression: {line}"),
                )
            })?),
            None => None,
        };
        let flag = |k: &str, default: bool| match get(k) {
            Some(v) => parse_bool(k, v),
            None => Ok(default),
        };
        Ok(Trigger {
            consumer_group,
            threshold,
            activation_threshold,
            instance_id: get("instanceId").map(str::to_string),
            topic,
            ignore_null_values: flag("ignoreNullValues", true)?,
            cap_at_queues: flag("capAtQueues", false)?,
            exclude_persistent_lag: flag("excludePersistentLag", false)?,
        })
    }
}

/// The numbers for one trigger at one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// ready + inflight of the matching series (what activation compares).
    pub total: f64,
    /// The value handed to the HPA (after excludePersistentLag and capAtQueues).
    pub scaling: f64,
}

/// Committed offsets seen per queue, and the cycle each was first seen at (for
/// excludePersistentLag: a queue is stuck when its offset is the same as at an earlier cycle).
pub type Offsets = BTreeMap<(String, Arc<str>, i32), (i64, f64)>;

/// Reads `trigger` from `snapshot`. `offsets` is this ScaledObject's memory for
/// excludePersistentLag; it is updated.
pub fn read(
    trigger: &Trigger,
    snapshot: &Snapshot,
    offsets: &mut Offsets,
) -> Result<Reading, Status> {
    let mut total = 0u64;
    let mut queues: Option<u64> = Some(0);
    let mut matched = false;
    let mut lagging = Vec::new();
    for s in &snapshot.series {
        if s.consumer_group != trigger.consumer_group
            || trigger
                .instance_id
                .as_deref()
                .is_some_and(|i| *i != *s.instance_id)
            || trigger
                .topic
                .as_ref()
                .is_some_and(|t| !t.is_match(&s.topic))
        {
            continue;
        }
        matched = true;
        total = total.saturating_add(s.lag());
        queues = match (queues, s.queues) {
            (Some(a), Some(b)) => Some(a + u64::from(b)),
            _ => None,
        };
        lagging.extend(s.lagging_queues.iter().map(|q| (&s.topic, q)));
    }
    if !matched {
        // "No series" means "no backlog" only when the exporter could read everything it reads:
        // with a name server, broker or instance down, the group's rows may just be missing.
        if let Some(t) = snapshot.targets.iter().find(|t| {
            !t.up
                && trigger
                    .instance_id
                    .as_deref()
                    .is_none_or(|i| *i == *t.instance_id)
        }) {
            return Err(Status::unavailable(format!(
                "no series for consumer group `{}` while {} {} of {} is down",
                trigger.consumer_group, t.kind, t.target, t.instance_id
            )));
        }
        if trigger.ignore_null_values {
            offsets.clear();
            return Ok(Reading {
                total: 0.0,
                scaling: 0.0,
            });
        }
        return Err(Status::not_found(format!(
            "no series for consumer group `{}` (ignoreNullValues is false)",
            trigger.consumer_group
        )));
    }
    let total = total as f64;
    let mut scaling = total;
    if trigger.exclude_persistent_lag {
        if lagging.is_empty() && total > 0.0 {
            return Err(Status::failed_precondition(
                "excludePersistentLag needs per-queue offsets: start the exporter with queue_metrics on",
            ));
        }
        let mut persistent = 0u64;
        let mut seen = Offsets::new();
        for (topic, q) in lagging {
            let key = (topic.clone(), q.broker.clone(), q.queue_id);
            let first_seen = match offsets.get(&key) {
                Some(&(committed, at)) if committed == q.committed => {
                    if at < snapshot.taken_at {
                        persistent = persistent.saturating_add(q.lag);
                    }
                    at
                }
                _ => snapshot.taken_at,
            };
            seen.insert(key, (q.committed, first_seen));
        }
        *offsets = seen;
        scaling = (total - persistent as f64).max(0.0);
    }
    if trigger.cap_at_queues {
        let Some(queues) = queues else {
            return Err(Status::failed_precondition(
                "capAtQueues needs the queue count, which this source does not report",
            ));
        };
        scaling = scaling.min(queues as f64 * trigger.threshold);
    }
    Ok(Reading { total, scaling })
}

/// `UNAVAILABLE` before the first cycle and when the last one is older than `stale_after`.
fn fresh(snapshot: &Snapshot, stale_after: Duration) -> Result<(), Status> {
    if snapshot.taken_at <= 0.0 {
        return Err(Status::unavailable(
            "the exporter has not finished its first collection cycle",
        ));
    }
    let age = unix_now() - snapshot.taken_at;
    if age > stale_after.as_secs_f64() {
        return Err(Status::unavailable(format!(
            "the last collection cycle ended {age:.0} s ago (stale after {} s)",
            stale_after.as_secs()
        )));
    }
    Ok(())
}

/// The gRPC service.
pub struct Scaler {
    cache: Arc<Cache>,
    stale_after: Duration,
    /// excludePersistentLag memory per ScaledObject (namespace/name).
    offsets: Mutex<HashMap<String, Offsets>>,
}

impl Scaler {
    pub fn new(cache: Arc<Cache>, stale_after: Duration) -> Self {
        Scaler {
            cache,
            stale_after,
            offsets: Mutex::new(HashMap::new()),
        }
    }

    fn evaluate(&self, r: &pb::ScaledObjectRef, trigger: &Trigger) -> Result<Reading, Status> {
        let snapshot = self.cache.snapshot();
        fresh(&snapshot, self.stale_after)?;
        let key = format!("{}/{}", r.namespace, r.name);
        let mut all = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let offsets = all.entry(key).or_default();
        read(trigger, &snapshot, offsets)
    }
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<pb::IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::IsActiveResponse>, Status> {
        let r = request.into_inner();
        let trigger = Trigger::parse(&r.scaler_metadata)?;
        let reading = self.evaluate(&r, &trigger)?;
        Ok(Response::new(pb::IsActiveResponse {
            result: reading.total > trigger.activation_threshold,
        }))
    }

    type StreamIsActiveStream = ActiveStream;

    async fn stream_is_active(
        &self,
        request: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let r = request.into_inner();
        let trigger = Trigger::parse(&r.scaler_metadata)?;
        let mut cycles = self.cache.subscribe();
        let stale_after = self.stale_after;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            // Its own persistent-lag memory: activation never uses it, but `read` keeps it.
            let mut offsets = Offsets::new();
            let mut last: Option<bool> = None;
            loop {
                let snapshot = cycles.borrow_and_update().clone();
                let state = fresh(&snapshot, stale_after)
                    .and_then(|()| read(&trigger, &snapshot, &mut offsets))
                    .map(|reading| reading.total > trigger.activation_threshold);
                // A cycle without an answer (no data yet, stale) sends nothing: KEDA keeps what
                // it was told and its polling loop still asks IsActive/GetMetrics.
                if let Ok(active) = state {
                    if last != Some(active) {
                        if tx
                            .send(Ok(pb::IsActiveResponse { result: active }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        last = Some(active);
                    }
                }
                tokio::select! {
                    changed = cycles.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_metric_spec(
        &self,
        request: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::GetMetricSpecResponse>, Status> {
        let trigger = Trigger::parse(&request.into_inner().scaler_metadata)?;
        Ok(Response::new(pb::GetMetricSpecResponse {
            metric_specs: vec![pb::MetricSpec {
                metric_name: METRIC_NAME.to_string(),
                target_size: trigger.threshold.ceil() as i64,
                target_size_float: trigger.threshold,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let req = request.into_inner();
        if req.metric_name != METRIC_NAME {
            return Err(Status::not_found(format!(
                "metric `{}` is not served here; GetMetricSpec names `{METRIC_NAME}`",
                req.metric_name
            )));
        }
        let r = req
            .scaled_object_ref
            .ok_or_else(|| Status::invalid_argument("scaledObjectRef: is required"))?;
        let trigger = Trigger::parse(&r.scaler_metadata)?;
        let reading = self.evaluate(&r, &trigger)?;
        Ok(Response::new(pb::GetMetricsResponse {
            metric_values: vec![pb::MetricValue {
                metric_name: METRIC_NAME.to_string(),
                metric_value: reading.scaling.round() as i64,
                metric_value_float: reading.scaling,
            }],
        }))
    }
}

/// Reads the TLS files into tonic's configuration.
pub fn tls_config(files: &TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use anyhow::Context;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("read {}", p.display()));
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(read(&files.cert)?, read(&files.key)?),
    );
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// Serves the scaler on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cache: Arc<Cache>,
    stale_after: Duration,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> anyhow::Result<()> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(ExternalScalerServer::new(Scaler::new(cache, stale_after)))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
