//! The remoting source's settings: its flags, its file keys and their validation.
//!
//! Top-level keys describe one cluster and are what the flags and `RMQ_EXPORTER_*` variables
//! set; `[[clusters]]` tables describe several, each inheriting the top-level keys it leaves out.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::acl::Credentials;
use super::client::ClientConfig;
use super::tls::TlsSettings;
use super::RemotingConfig;
use crate::config::{bad, seconds, ConfigError};
use crate::source::{Filters, NameFilter};

/// The name server RocketMQ itself defaults to, read when nothing else is configured.
pub const DEFAULT_NAMESRV: &str = "127.0.0.1:9876";

/// Flags of the remoting source (the config file has the same keys in snake case).
#[derive(Debug, Default, clap::Args, Serialize)]
#[command(next_help_heading = "Apache RocketMQ 4.x/5.x (remoting admin protocol)")]
#[group(id = "remoting_flags")]
pub struct Flags {
    /// Name server list, HOST:PORT[;HOST:PORT...] [default: 127.0.0.1:9876 when no ApsaraMQ instance is configured]
    #[arg(long, env = "RMQ_EXPORTER_NAMESRV")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namesrv: Option<String>,
    /// Value of the instance_id label [default: each broker's cluster name]
    #[arg(long, env = "RMQ_EXPORTER_INSTANCE_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Seconds to wait for one broker or name server answer [default: 5]
    #[arg(long = "request-timeout", env = "RMQ_EXPORTER_REQUEST_TIMEOUT_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_seconds: Option<f64>,
    /// Requests in flight at once per cluster [default: 32]
    #[arg(long, env = "RMQ_EXPORTER_CONCURRENCY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Message store-time lookups per cycle for lag latency; 0 turns lag latency off [default: 2000]
    #[arg(long, env = "RMQ_EXPORTER_LATENCY_LOOKUPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_lookups: Option<usize>,
    /// Also export rocketmq_consumer_queue_lag_messages and rocketmq_consumer_queue_committed_offset per queue with lag (label broker, queue_id) [default: false]
    #[arg(long, env = "RMQ_EXPORTER_QUEUE_METRICS", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_metrics: Option<bool>,
    /// ACL access key (4.x ACL 1.0, or the 5.x ACL 2.0 user name)
    #[arg(long, env = "RMQ_EXPORTER_ACCESS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// ACL secret key (prefer the environment variable to the flag)
    #[arg(long, env = "RMQ_EXPORTER_SECRET_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Speak TLS to name servers and brokers (RocketMQ's tls.server.mode permissive or enforcing) [default: false]
    #[arg(long = "tls", env = "RMQ_EXPORTER_TLS", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_enable: Option<bool>,
    /// CA certificate(s) (PEM) that signed the name servers' and brokers' certificates
    #[arg(long, env = "RMQ_EXPORTER_TLS_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// Client certificate (PEM) for servers with tls.server.need.client.auth=require
    #[arg(long, env = "RMQ_EXPORTER_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// Client certificate's private key (PEM)
    #[arg(long, env = "RMQ_EXPORTER_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    /// Name the servers' certificates must carry [default: the host of each address]
    #[arg(long, env = "RMQ_EXPORTER_TLS_SERVER_NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Check the servers' names against their certificates; false checks the chain only (brokers registered by IP) [default: true]
    #[arg(long, env = "RMQ_EXPORTER_TLS_VERIFY_HOSTNAME", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verify_hostname: Option<bool>,
    /// Do not check the servers' certificates at all [default: false]
    #[arg(long, env = "RMQ_EXPORTER_TLS_INSECURE_SKIP_VERIFY", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_insecure_skip_verify: Option<bool>,
}

/// The source's top-level file keys (the flags' values land here too).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct File {
    pub namesrv: Option<String>,
    pub instance_id: Option<String>,
    pub request_timeout_seconds: f64,
    pub connect_timeout_seconds: f64,
    pub concurrency: usize,
    pub latency_lookups: usize,
    pub queue_metrics: bool,
    pub broker_forget_seconds: f64,
    pub connections_refresh_seconds: f64,
    pub max_frame_bytes: usize,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    #[serde(flatten)]
    pub tls: TlsTable,
    pub clusters: Vec<ClusterTable>,
}

/// The `tls_*` keys, at the top level and in each `[[clusters]]` table (a cluster's own keys
/// win, key by key).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TlsTable {
    pub tls_enable: Option<bool>,
    pub tls_ca_file: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub tls_server_name: Option<String>,
    pub tls_verify_hostname: Option<bool>,
    pub tls_insecure_skip_verify: Option<bool>,
}

impl TlsTable {
    /// This table's keys over `top`'s.
    fn over(&self, top: &TlsTable) -> TlsTable {
        fn p<T: Clone>(own: &Option<T>, top: &Option<T>) -> Option<T> {
            own.clone().or_else(|| top.clone())
        }
        TlsTable {
            tls_enable: p(&self.tls_enable, &top.tls_enable),
            tls_ca_file: p(&self.tls_ca_file, &top.tls_ca_file),
            tls_cert_file: p(&self.tls_cert_file, &top.tls_cert_file),
            tls_key_file: p(&self.tls_key_file, &top.tls_key_file),
            tls_server_name: p(&self.tls_server_name, &top.tls_server_name),
            tls_verify_hostname: p(&self.tls_verify_hostname, &top.tls_verify_hostname),
            tls_insecure_skip_verify: p(
                &self.tls_insecure_skip_verify,
                &top.tls_insecure_skip_verify,
            ),
        }
    }

    /// The settings when TLS is on; `key` names a key as the error should.
    fn settings(&self, key: &dyn Fn(&str) -> String) -> Result<Option<TlsSettings>, ConfigError> {
        if self.tls_enable != Some(true) {
            let set = [
                ("tls_ca_file", self.tls_ca_file.is_some()),
                ("tls_cert_file", self.tls_cert_file.is_some()),
                ("tls_key_file", self.tls_key_file.is_some()),
                ("tls_server_name", self.tls_server_name.is_some()),
                ("tls_verify_hostname", self.tls_verify_hostname.is_some()),
                (
                    "tls_insecure_skip_verify",
                    self.tls_insecure_skip_verify.is_some(),
                ),
            ];
            if let Some((k, _)) = set.iter().find(|(_, s)| *s) {
                return Err(bad(
                    &key(k),
                    "is set but TLS is off: set tls_enable = true (flag --tls)",
                ));
            }
            return Ok(None);
        }
        let path = |v: &Option<String>| v.as_ref().filter(|p| !p.is_empty()).map(PathBuf::from);
        let settings = TlsSettings {
            ca_file: path(&self.tls_ca_file),
            cert_file: path(&self.tls_cert_file),
            key_file: path(&self.tls_key_file),
            server_name: self.tls_server_name.clone().filter(|n| !n.is_empty()),
            verify_hostname: self.tls_verify_hostname.unwrap_or(true),
            insecure_skip_verify: self.tls_insecure_skip_verify.unwrap_or(false),
        };
        // Read the files now, so a wrong path or a broken PEM fails the start (or the reload).
        settings
            .client_config()
            .map_err(|why| bad(&key("tls_enable"), why))?;
        if let Some(name) = &settings.server_name {
            settings
                .server_name(name)
                .map_err(|why| bad(&key("tls_server_name"), why))?;
        }
        Ok(Some(settings))
    }
}

impl Default for File {
    fn default() -> Self {
        File {
            namesrv: None,
            instance_id: None,
            request_timeout_seconds: 5.0,
            connect_timeout_seconds: 3.0,
            concurrency: 32,
            latency_lookups: 2000,
            queue_metrics: false,
            broker_forget_seconds: 300.0,
            connections_refresh_seconds: 30.0,
            max_frame_bytes: super::codec::DEFAULT_MAX_FRAME,
            access_key: None,
            secret_key: None,
            tls: TlsTable::default(),
            clusters: Vec::new(),
        }
    }
}

/// One cluster's keys in `[[clusters]]`; unset keys inherit the top level.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTable {
    pub namesrv: Option<String>,
    pub instance_id: Option<String>,
    pub group_allow: Option<String>,
    pub group_deny: Option<String>,
    pub topic_allow: Option<String>,
    pub topic_deny: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    #[serde(flatten)]
    pub tls: TlsTable,
}

impl File {
    /// The clusters this file describes: its `[[clusters]]`, else the top-level `namesrv`, else
    /// RocketMQ's default name server unless another source is configured (`others`).
    pub fn build(
        &self,
        filters: &Filters,
        interval: Duration,
        others: bool,
    ) -> Result<Vec<RemotingConfig>, ConfigError> {
        let request_timeout = seconds("request_timeout_seconds", self.request_timeout_seconds)?;
        let connect_timeout = seconds("connect_timeout_seconds", self.connect_timeout_seconds)?;
        let forget_after = seconds("broker_forget_seconds", self.broker_forget_seconds)?;
        let connections_refresh = seconds(
            "connections_refresh_seconds",
            self.connections_refresh_seconds,
        )?;
        if self.concurrency == 0 {
            return Err(bad("concurrency", "must be at least 1"));
        }
        if !(1024..=1 << 30).contains(&self.max_frame_bytes) {
            return Err(bad(
                "max_frame_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
        let clusters = if !self.clusters.is_empty() {
            self.clusters.clone()
        } else if self.namesrv.is_some() || !others {
            vec![ClusterTable::default()]
        } else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, c) in clusters.iter().enumerate() {
            let key = |k: &str| {
                if self.clusters.is_empty() {
                    k.to_string()
                } else {
                    format!("clusters[{i}].{k}")
                }
            };
            let pick =
                |own: &Option<String>, top: &Option<String>| own.clone().or_else(|| top.clone());
            let namesrv = pick(&c.namesrv, &self.namesrv).unwrap_or_else(|| DEFAULT_NAMESRV.into());
            let namesrv = parse_namesrv(&namesrv).map_err(|why| bad(&key("namesrv"), why))?;
            let regex = |k: &str, v: Option<String>| -> Result<Option<Regex>, ConfigError> {
                v.map(|p| Regex::new(&p).map_err(|e| bad(&key(k), format!("bad regex: {e}"))))
                    .transpose()
            };
            let credentials = match (
                pick(&c.access_key, &self.access_key),
                pick(&c.secret_key, &self.secret_key),
            ) {
                (Some(access_key), Some(secret_key)) => Some(Credentials {
                    access_key,
                    secret_key,
                    security_token: None,
                }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(bad(&key("secret_key"), "is required with access_key"))
                }
                (None, Some(_)) => {
                    return Err(bad(&key("access_key"), "is required with secret_key"))
                }
            };
            out.push(RemotingConfig {
                namesrv,
                instance_id: pick(&c.instance_id, &self.instance_id),
                groups: NameFilter {
                    allow: regex("group_allow", pick(&c.group_allow, &filters.group_allow))?,
                    deny: regex("group_deny", pick(&c.group_deny, &filters.group_deny))?,
                },
                topics: NameFilter {
                    allow: regex("topic_allow", pick(&c.topic_allow, &filters.topic_allow))?,
                    deny: regex("topic_deny", pick(&c.topic_deny, &filters.topic_deny))?,
                },
                concurrency: self.concurrency,
                latency_lookups: self.latency_lookups,
                forget_after,
                connections_refresh,
                queue_metrics: self.queue_metrics,
                client: ClientConfig {
                    connect_timeout,
                    request_timeout,
                    max_frame: self.max_frame_bytes,
                    credentials,
                    // One reconnect attempt per cycle at most, so recovery takes at most two cycles.
                    backoff_max: (interval / 2).min(Duration::from_secs(30)),
                    tls: c.tls.over(&self.tls).settings(&key)?,
                },
            });
        }
        Ok(out)
    }
}

/// `HOST:PORT[;HOST:PORT...]`, as RocketMQ writes name-server lists (`,` is accepted too).
pub fn parse_namesrv(list: &str) -> Result<Vec<String>, String> {
    let addrs: Vec<String> = list
        .split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if addrs.is_empty() {
        return Err("is empty; give HOST:PORT[;HOST:PORT...]".into());
    }
    for a in &addrs {
        let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(format!("`{a}` is not HOST:PORT"));
        }
    }
    Ok(addrs)
}
