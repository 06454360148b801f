//! The ApsaraMQ source's settings: its flags, its file keys and their validation.
//!
//! Top-level keys (`apsaramq_*`, `region`) describe one source and are what the flags and
//! `RMQ_EXPORTER_APSARAMQ_*` variables set; `[[apsaramq]]` tables describe several (other
//! instances, other regions), each inheriting the top-level keys it leaves out.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::api::Endpoint;
use super::credentials::{Settings, DEFAULT_METADATA};
use crate::config::{bad, seconds, ConfigError};
use crate::source::{Filters, NameFilter};

/// Flags of the ApsaraMQ source (the config file has the same keys in snake case).
#[derive(Debug, Default, clap::Args, Serialize)]
#[command(next_help_heading = "ApsaraMQ for RocketMQ 5.x (Alibaba Cloud OpenAPI)")]
#[group(id = "apsaramq_flags")]
pub struct Flags {
    /// ApsaraMQ 5.x instance id(s) to read, e.g. rmq-cn-xxx (comma-separated)
    #[arg(long = "apsaramq-instance", env = "RMQ_EXPORTER_APSARAMQ_INSTANCE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_instance: Option<String>,
    /// Region of the instance(s), e.g. cn-hangzhou
    #[arg(long = "region", env = "RMQ_EXPORTER_REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Read every RUNNING instance of the region (ListInstances), instead of --apsaramq-instance [default: false]
    #[arg(long = "apsaramq-discover", env = "RMQ_EXPORTER_APSARAMQ_DISCOVER", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_discover: Option<bool>,
    /// With --apsaramq-discover: only instances with these tags, KEY=VALUE[,KEY=VALUE...]
    #[arg(
        long = "apsaramq-discover-tags",
        env = "RMQ_EXPORTER_APSARAMQ_DISCOVER_TAGS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_discover_tags: Option<String>,
    /// OpenAPI endpoint URL, http(s)://HOST[:PORT] [default: https://rocketmq.REGION.aliyuncs.com]
    #[arg(long = "apsaramq-endpoint", env = "RMQ_EXPORTER_APSARAMQ_ENDPOINT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_endpoint: Option<String>,
    /// Use the VPC endpoint https://rocketmq-vpc.REGION.aliyuncs.com [default: false]
    #[arg(long = "apsaramq-vpc", env = "RMQ_EXPORTER_APSARAMQ_VPC", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_vpc: Option<bool>,
    /// OpenAPI requests per second per instance; groups beyond the budget are read in rotation [default: 20]
    #[arg(long = "apsaramq-qps", env = "RMQ_EXPORTER_APSARAMQ_QPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_qps: Option<f64>,
    /// OpenAPI requests in flight at once per instance [default: 4]
    #[arg(
        long = "apsaramq-concurrency",
        env = "RMQ_EXPORTER_APSARAMQ_CONCURRENCY"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_concurrency: Option<usize>,
    /// Seconds to wait for one OpenAPI answer [default: 5]
    #[arg(
        long = "apsaramq-request-timeout",
        env = "RMQ_EXPORTER_APSARAMQ_REQUEST_TIMEOUT_SECONDS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_request_timeout_seconds: Option<f64>,
    /// Seconds between reads of each group's online clients (ListConsumerConnections); 0 turns them off [default: 60]
    #[arg(
        long = "apsaramq-connections-refresh",
        env = "RMQ_EXPORTER_APSARAMQ_CONNECTIONS_REFRESH_SECONDS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_connections_refresh_seconds: Option<f64>,
    /// STS endpoint URL for RRSA (AssumeRoleWithOIDC) [default: from ALIBABA_CLOUD_STS_REGION, else https://sts.aliyuncs.com]
    #[arg(
        long = "apsaramq-sts-endpoint",
        env = "RMQ_EXPORTER_APSARAMQ_STS_ENDPOINT"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_sts_endpoint: Option<String>,
    /// ECS metadata service URL for the ECS RAM role [default: http://100.100.100.200]
    #[arg(
        long = "apsaramq-metadata-endpoint",
        env = "RMQ_EXPORTER_APSARAMQ_METADATA_ENDPOINT"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apsaramq_metadata_endpoint: Option<String>,
}

/// The source's top-level file keys (the flags' values land here too).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct File {
    pub apsaramq_instance: Option<String>,
    pub region: Option<String>,
    pub apsaramq_discover: bool,
    pub apsaramq_discover_tags: Option<String>,
    pub apsaramq_endpoint: Option<String>,
    pub apsaramq_vpc: bool,
    pub apsaramq_qps: f64,
    pub apsaramq_concurrency: usize,
    pub apsaramq_request_timeout_seconds: f64,
    pub apsaramq_connections_refresh_seconds: f64,
    pub apsaramq_sts_endpoint: Option<String>,
    pub apsaramq_metadata_endpoint: String,
    pub apsaramq: Vec<Table>,
}

/// Default request budget per instance. The 4.x `ons` API allows 10–50 QPS per user and
/// operation; 5.x publishes no table. 20 reads a 1,000-group instance in rotation in under a
/// minute at the default 10 s interval and leaves headroom for the console and a second reader
/// (BENCHMARKS.md).
pub const DEFAULT_QPS: f64 = 20.0;

impl Default for File {
    fn default() -> Self {
        File {
            apsaramq_instance: None,
            region: None,
            apsaramq_discover: false,
            apsaramq_discover_tags: None,
            apsaramq_endpoint: None,
            apsaramq_vpc: false,
            apsaramq_qps: DEFAULT_QPS,
            apsaramq_concurrency: 4,
            apsaramq_request_timeout_seconds: 5.0,
            apsaramq_connections_refresh_seconds: 60.0,
            apsaramq_sts_endpoint: None,
            apsaramq_metadata_endpoint: DEFAULT_METADATA.into(),
            apsaramq: Vec::new(),
        }
    }
}

/// One `[[apsaramq]]` table; unset keys inherit the top level (`instance` ← `apsaramq_instance`,
/// `qps` ← `apsaramq_qps`, …; the filters ← `group_allow`, …).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub instance: Option<String>,
    pub region: Option<String>,
    pub discover: Option<bool>,
    pub discover_tags: Option<String>,
    pub endpoint: Option<String>,
    pub vpc: Option<bool>,
    pub qps: Option<f64>,
    pub concurrency: Option<usize>,
    pub request_timeout_seconds: Option<f64>,
    pub connections_refresh_seconds: Option<f64>,
    pub group_allow: Option<String>,
    pub group_deny: Option<String>,
    pub topic_allow: Option<String>,
    pub topic_deny: Option<String>,
}

/// Which instances a source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instances {
    Listed(Vec<String>),
    /// Every RUNNING instance of the region that has all these tags.
    Discover(Vec<(String, String)>),
}

/// One ApsaraMQ source, validated.
#[derive(Debug, Clone)]
pub struct OpenApiConfig {
    pub region: String,
    pub endpoint: Endpoint,
    pub instances: Instances,
    pub qps: f64,
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// None: online clients are not read.
    pub connections_refresh: Option<Duration>,
    pub groups: NameFilter,
    pub topics: NameFilter,
}

/// `rmq-cn-…`-like ids: letters, digits, `-` and `_`.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_tags(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("`{t}` is not KEY=VALUE")),
        })
        .collect()
}

impl File {
    /// Whether any ApsaraMQ source is configured.
    pub fn configured(&self) -> bool {
        !self.apsaramq.is_empty() || self.apsaramq_instance.is_some() || self.apsaramq_discover
    }

    /// Where the credential providers that call out are served.
    pub fn credential_settings(&self) -> Result<Settings, ConfigError> {
        let check = |key: &str, v: &str| {
            Endpoint::parse(v)
                .map(|e| e.base)
                .map_err(|why| bad(key, why))
        };
        Ok(Settings {
            sts_endpoint: self
                .apsaramq_sts_endpoint
                .as_deref()
                .map(|v| check("apsaramq_sts_endpoint", v))
                .transpose()?,
            metadata_endpoint: check(
                "apsaramq_metadata_endpoint",
                &self.apsaramq_metadata_endpoint,
            )?,
        })
    }

    /// The sources this file describes (none when no instance and no discovery is configured).
    pub fn build(&self, filters: &Filters) -> Result<Vec<OpenApiConfig>, ConfigError> {
        if !self.configured() {
            for (key, set) in [
                ("region", self.region.is_some()),
                ("apsaramq_endpoint", self.apsaramq_endpoint.is_some()),
                (
                    "apsaramq_discover_tags",
                    self.apsaramq_discover_tags.is_some(),
                ),
            ] {
                if set {
                    return Err(bad(
                        key,
                        "needs apsaramq_instance (--apsaramq-instance) or apsaramq_discover",
                    ));
                }
            }
            return Ok(Vec::new());
        }
        let tables = if self.apsaramq.is_empty() {
            vec![Table::default()]
        } else {
            self.apsaramq.clone()
        };
        let mut out = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let key = |k: &str, top: &str| {
                if self.apsaramq.is_empty() {
                    top.to_string()
                } else {
                    format!("apsaramq[{i}].{k}")
                }
            };
            let region = t
                .region
                .clone()
                .or_else(|| self.region.clone())
                .ok_or_else(|| bad(&key("region", "region"), "is required (e.g. cn-hangzhou)"))?;
            if region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(bad(
                    &key("region", "region"),
                    format!("`{region}` is not a region id like cn-hangzhou"),
                ));
            }
            let discover = t.discover.unwrap_or(self.apsaramq_discover);
            let instance = t
                .instance
                .clone()
                .or_else(|| self.apsaramq_instance.clone());
            let instances =
                match (discover, instance) {
                    (true, Some(_)) => {
                        return Err(bad(
                            &key("discover", "apsaramq_discover"),
                            "reads every instance of the region; leave the instance list out",
                        ))
                    }
                    (true, None) => {
                        let tags = t
                            .discover_tags
                            .clone()
                            .or_else(|| self.apsaramq_discover_tags.clone())
                            .unwrap_or_default();
                        Instances::Discover(parse_tags(&tags).map_err(|why| {
                            bad(&key("discover_tags", "apsaramq_discover_tags"), why)
                        })?)
                    }
                    (false, Some(list)) => {
                        let ids: Vec<String> = list
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect();
                        if ids.is_empty() {
                            return Err(bad(&key("instance", "apsaramq_instance"), "is empty"));
                        }
                        if let Some(b) = ids.iter().find(|s| !valid_id(s)) {
                            return Err(bad(
                                &key("instance", "apsaramq_instance"),
                                format!("`{b}` is not an instance id (letters, digits, - and _)"),
                            ));
                        }
                        Instances::Listed(ids)
                    }
                    (false, None) => {
                        return Err(bad(
                            &key("instance", "apsaramq_instance"),
                            "is required (or discover = true)",
                        ))
                    }
                };
            let endpoint = match t
                .endpoint
                .clone()
                .or_else(|| self.apsaramq_endpoint.clone())
            {
                Some(url) => Endpoint::parse(&url)
                    .map_err(|why| bad(&key("endpoint", "apsaramq_endpoint"), why))?,
                None => Endpoint::for_region(&region, t.vpc.unwrap_or(self.apsaramq_vpc)),
            };
            let qps = t.qps.unwrap_or(self.apsaramq_qps);
            if !(qps.is_finite() && (0.1..=10_000.0).contains(&qps)) {
                return Err(bad(
                    &key("qps", "apsaramq_qps"),
                    format!("must be between 0.1 and 10000 requests per second (got {qps})"),
                ));
            }
            let concurrency = t.concurrency.unwrap_or(self.apsaramq_concurrency);
            if !(1..=256).contains(&concurrency) {
                return Err(bad(
                    &key("concurrency", "apsaramq_concurrency"),
                    format!("must be between 1 and 256 (got {concurrency})"),
                ));
            }
            let request_timeout = seconds(
                &key(
                    "request_timeout_seconds",
                    "apsaramq_request_timeout_seconds",
                ),
                t.request_timeout_seconds
                    .unwrap_or(self.apsaramq_request_timeout_seconds),
            )?;
            let refresh = t
                .connections_refresh_seconds
                .unwrap_or(self.apsaramq_connections_refresh_seconds);
            let connections_refresh = if refresh == 0.0 {
                None
            } else {
                Some(seconds(
                    &key(
                        "connections_refresh_seconds",
                        "apsaramq_connections_refresh_seconds",
                    ),
                    refresh,
                )?)
            };
            let regex = |k: &str, own: &Option<String>, top: &Option<String>| {
                own.clone()
                    .or_else(|| top.clone())
                    .map(|p| Regex::new(&p).map_err(|e| bad(&key(k, k), format!("bad regex: {e}"))))
                    .transpose()
            };
            out.push(OpenApiConfig {
                region,
                endpoint,
                instances,
                qps,
                concurrency,
                request_timeout,
                connections_refresh,
                groups: NameFilter {
                    allow: regex("group_allow", &t.group_allow, &filters.group_allow)?,
                    deny: regex("group_deny", &t.group_deny, &filters.group_deny)?,
                },
                topics: NameFilter {
                    allow: regex("topic_allow", &t.topic_allow, &filters.topic_allow)?,
                    deny: regex("topic_deny", &t.topic_deny, &filters.topic_deny)?,
                },
            });
        }
        Ok(out)
    }
}
