//! Configuration: defaults < file (TOML or YAML) < environment < flags.
//!
//! Every flag has an environment variable (`RMQ_EXPORTER_*`) and a file key of the same name in
//! snake case. Several clusters at once come from the file's `[[clusters]]` tables; a cluster
//! table inherits every top-level key it does not set. A bad value is refused at start with one
//! line naming the key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use figment::providers::{Format, Serialized, Toml, Yaml};
use figment::Figment;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::source::remoting::acl::Credentials;
use crate::source::remoting::client::ClientConfig;
use crate::source::remoting::{NameFilter, RemotingConfig};

/// Command line. Every option is optional here so that unset flags do not hide file values.
#[derive(Debug, Parser, Serialize)]
#[command(
    name = "rmq-exporter",
    version,
    about = "Prometheus exporter for RocketMQ consumer backlog (ready, inflight, lag, lag latency).",
    long_about = "Reads consumer-group backlog from Apache RocketMQ 4.x/5.x name servers and brokers over the \
remoting admin protocol and serves it at /metrics as rocketmq_consumer_* gauges with the names and \
labels of ARMS and the RocketMQ 5 broker.\n\nPrecedence: defaults < --config file < RMQ_EXPORTER_* \
environment < flags. Several clusters at once: [[clusters]] tables in the config file."
)]
pub struct Cli {
    /// Name server list, HOST:PORT[;HOST:PORT...] [default: 127.0.0.1:9876]
    #[arg(long, env = "RMQ_EXPORTER_NAMESRV")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namesrv: Option<String>,
    /// Address to serve /metrics, /healthz and /readyz on [default: 0.0.0.0:9877]
    #[arg(long, env = "RMQ_EXPORTER_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Config file, TOML (.toml) or YAML (.yaml/.yml)
    #[arg(long, env = "RMQ_EXPORTER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Value of the instance_id label [default: each broker's cluster name]
    #[arg(long, env = "RMQ_EXPORTER_INSTANCE_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Seconds between collection cycles [default: 10]
    #[arg(long = "interval", env = "RMQ_EXPORTER_INTERVAL_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// Seconds one cycle may take before unfinished reads count as failed [default: 9]
    #[arg(long = "deadline", env = "RMQ_EXPORTER_DEADLINE_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_seconds: Option<f64>,
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
    /// Export only consumer groups matching this regex
    #[arg(long, env = "RMQ_EXPORTER_GROUP_ALLOW")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_allow: Option<String>,
    /// Never export consumer groups matching this regex
    #[arg(long, env = "RMQ_EXPORTER_GROUP_DENY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_deny: Option<String>,
    /// Export only topics matching this regex
    #[arg(long, env = "RMQ_EXPORTER_TOPIC_ALLOW")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_allow: Option<String>,
    /// Never export topics matching this regex
    #[arg(long, env = "RMQ_EXPORTER_TOPIC_DENY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_deny: Option<String>,
    /// ACL access key (4.x ACL 1.0, or the 5.x ACL 2.0 user name)
    #[arg(long, env = "RMQ_EXPORTER_ACCESS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// ACL secret key (prefer the environment variable to the flag)
    #[arg(long, env = "RMQ_EXPORTER_SECRET_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "RMQ_EXPORTER_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or rmq_exporter=debug [default: info]
    #[arg(long, env = "RMQ_EXPORTER_LOG_LEVEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Run one collection cycle, print the metrics page to stdout and exit
    #[arg(long)]
    #[serde(skip)]
    pub once: bool,
}

/// One cluster's keys in `[[clusters]]`; unset keys inherit the top level.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub namesrv: Option<String>,
    pub instance_id: Option<String>,
    pub group_allow: Option<String>,
    pub group_deny: Option<String>,
    pub topic_allow: Option<String>,
    pub topic_deny: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub namesrv: String,
    pub listen: String,
    pub instance_id: Option<String>,
    pub interval_seconds: f64,
    pub deadline_seconds: f64,
    pub request_timeout_seconds: f64,
    pub connect_timeout_seconds: f64,
    pub concurrency: usize,
    pub latency_lookups: usize,
    pub queue_metrics: bool,
    pub broker_forget_seconds: f64,
    pub connections_refresh_seconds: f64,
    pub max_frame_bytes: usize,
    pub group_allow: Option<String>,
    pub group_deny: Option<String>,
    pub topic_allow: Option<String>,
    pub topic_deny: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub log_format: String,
    pub log_level: String,
    pub clusters: Vec<ClusterFile>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            namesrv: "127.0.0.1:9876".into(),
            listen: "0.0.0.0:9877".into(),
            instance_id: None,
            interval_seconds: 10.0,
            deadline_seconds: 9.0,
            request_timeout_seconds: 5.0,
            connect_timeout_seconds: 3.0,
            concurrency: 32,
            latency_lookups: 2000,
            queue_metrics: false,
            broker_forget_seconds: 300.0,
            connections_refresh_seconds: 30.0,
            max_frame_bytes: crate::source::remoting::codec::DEFAULT_MAX_FRAME,
            group_allow: None,
            group_deny: None,
            topic_allow: None,
            topic_deny: None,
            access_key: None,
            secret_key: None,
            log_format: "text".into(),
            log_level: "info".into(),
            clusters: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration the process runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub interval: Duration,
    pub deadline: Duration,
    pub clusters: Vec<RemotingConfig>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub once: bool,
}

/// A configuration error: one line, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(String);

fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(one_line(&format!("key `{key}`: {why}")))
}

/// Folds a multi-line message (regex errors draw carets under the pattern) into one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Config {
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(FileConfig::default()));
        if let Some(path) = &cli.config {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "file {} does not exist",
                    path.display()
                )));
            }
            figment = match path.extension().and_then(|e| e.to_str()) {
                Some("yaml" | "yml") => figment.merge(Yaml::file(path)),
                Some("toml") => figment.merge(Toml::file(path)),
                _ => {
                    return Err(ConfigError(format!(
                        "file {}: name it .toml, .yaml or .yml",
                        path.display()
                    )))
                }
            };
        }
        let once = cli.once;
        let file: FileConfig = figment
            .merge(Serialized::defaults(&cli))
            .extract()
            .map_err(|e| ConfigError(one_line(&e.to_string())))?;
        Config::validate(file, once)
    }

    fn validate(f: FileConfig, once: bool) -> Result<Config, ConfigError> {
        let listen: SocketAddr = f
            .listen
            .parse()
            .map_err(|_| bad("listen", format!("`{}` is not ADDR:PORT", f.listen)))?;
        let secs = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v < 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(bad(
                    key,
                    format!("must be a number of seconds > 0 (got {v})"),
                ))
            }
        };
        let interval = secs("interval_seconds", f.interval_seconds)?;
        let deadline = secs("deadline_seconds", f.deadline_seconds)?;
        if deadline > interval {
            return Err(bad(
                "deadline_seconds",
                format!(
                    "must not exceed interval_seconds ({} > {})",
                    f.deadline_seconds, f.interval_seconds
                ),
            ));
        }
        let request_timeout = secs("request_timeout_seconds", f.request_timeout_seconds)?;
        let connect_timeout = secs("connect_timeout_seconds", f.connect_timeout_seconds)?;
        let forget_after = secs("broker_forget_seconds", f.broker_forget_seconds)?;
        let connections_refresh =
            secs("connections_refresh_seconds", f.connections_refresh_seconds)?;
        if f.concurrency == 0 {
            return Err(bad("concurrency", "must be at least 1"));
        }
        if !(1024..=1 << 30).contains(&f.max_frame_bytes) {
            return Err(bad(
                "max_frame_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
        let log_format = match f.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(bad("log_format", format!("`{other}` is not text or json"))),
        };
        tracing_subscriber::EnvFilter::try_new(&f.log_level)
            .map_err(|e| bad("log_level", format!("`{}`: {e}", f.log_level)))?;

        let clusters = if f.clusters.is_empty() {
            vec![ClusterFile::default()]
        } else {
            f.clusters.clone()
        };
        let mut out = Vec::new();
        for (i, c) in clusters.iter().enumerate() {
            let key = |k: &str| {
                if f.clusters.is_empty() {
                    k.to_string()
                } else {
                    format!("clusters[{i}].{k}")
                }
            };
            let pick =
                |own: &Option<String>, top: &Option<String>| own.clone().or_else(|| top.clone());
            let namesrv = c.namesrv.clone().unwrap_or_else(|| f.namesrv.clone());
            let namesrv = parse_namesrv(&namesrv).map_err(|why| bad(&key("namesrv"), why))?;
            let regex = |k: &str, v: Option<String>| -> Result<Option<Regex>, ConfigError> {
                v.map(|p| Regex::new(&p).map_err(|e| bad(&key(k), format!("bad regex: {e}"))))
                    .transpose()
            };
            let credentials = match (
                pick(&c.access_key, &f.access_key),
                pick(&c.secret_key, &f.secret_key),
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
                instance_id: pick(&c.instance_id, &f.instance_id),
                groups: NameFilter {
                    allow: regex("group_allow", pick(&c.group_allow, &f.group_allow))?,
                    deny: regex("group_deny", pick(&c.group_deny, &f.group_deny))?,
                },
                topics: NameFilter {
                    allow: regex("topic_allow", pick(&c.topic_allow, &f.topic_allow))?,
                    deny: regex("topic_deny", pick(&c.topic_deny, &f.topic_deny))?,
                },
                concurrency: f.concurrency,
                latency_lookups: f.latency_lookups,
                forget_after,
                connections_refresh,
                queue_metrics: f.queue_metrics,
                client: ClientConfig {
                    connect_timeout,
                    request_timeout,
                    max_frame: f.max_frame_bytes,
                    credentials,
                    // One reconnect attempt per cycle at most, so recovery takes at most two cycles.
                    backoff_max: (interval / 2).min(Duration::from_secs(30)),
                },
            });
        }
        Ok(Config {
            listen,
            interval,
            deadline,
            clusters: out,
            log_format,
            log_level: f.log_level,
            once,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["rmq-exporter"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_read_the_local_name_server() {
        let c = Config::load(cli(&[])).unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.clusters[0].namesrv, vec!["127.0.0.1:9876"]);
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.listen.to_string(), "0.0.0.0:9877");
    }

    #[test]
    fn namesrv_lists_are_split_on_semicolons() {
        assert_eq!(
            parse_namesrv("10.0.0.5:9876; 10.0.0.6:9876").unwrap(),
            vec!["10.0.0.5:9876", "10.0.0.6:9876"]
        );
        assert!(parse_namesrv("10.0.0.5").unwrap_err().contains("10.0.0.5"));
        assert!(parse_namesrv("h:0").is_err());
        assert!(parse_namesrv("").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::load(cli(&["--namesrv", "nope"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`namesrv`") && e.contains("nope"), "{e}");
        let e = Config::load(cli(&["--interval", "0"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("interval_seconds"), "{e}");
        let e = Config::load(cli(&["--interval", "5", "--deadline", "6"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("deadline_seconds"), "{e}");
        let e = Config::load(cli(&["--group-allow", "("]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("group_allow") && e.contains("regex"), "{e}");
        let e = Config::load(cli(&["--access-key", "ak"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("secret_key"), "{e}");
        let e = Config::load(cli(&["--listen", "localhost"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
    }

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rmq-exporter-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_override_the_file_and_clusters_inherit() {
        let path = write(
            "c.toml",
            "namesrv = \"10.0.0.1:9876\"\ninterval_seconds = 30\ndeadline_seconds = 20\ngroup_deny = \"^TOOLS\"\n\
             [[clusters]]\nnamesrv = \"10.0.0.2:9876\"\ninstance_id = \"prod\"\n\
             [[clusters]]\nnamesrv = \"10.0.0.3:9876\"\ngroup_deny = \"^X\"\n",
        );
        let c = Config::load(cli(&[
            "--config",
            path.to_str().unwrap(),
            "--interval",
            "25",
        ]))
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(25));
        assert_eq!(c.deadline, Duration::from_secs(20));
        assert_eq!(c.clusters.len(), 2);
        assert_eq!(c.clusters[0].instance_id.as_deref(), Some("prod"));
        assert!(!c.clusters[0].groups.keeps("TOOLS_CONSUMER"));
        assert!(c.clusters[1].groups.keeps("TOOLS_CONSUMER"));
        assert!(!c.clusters[1].groups.keeps("X1"));
    }

    #[test]
    fn yaml_files_work_and_unknown_keys_are_refused() {
        let path = write("c.yaml", "namesrv: \"10.0.0.1:9876\"\nlatency_lookups: 0\n");
        let c = Config::load(cli(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(c.clusters[0].latency_lookups, 0);
        let path = write("bad.yaml", "namesrvv: \"10.0.0.1:9876\"\n");
        let e = Config::load(cli(&["--config", path.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("namesrvv"), "{e}");
        let path = write("bad2.toml", "concurrency = \"many\"\n");
        let e = Config::load(cli(&["--config", path.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("concurrency"), "{e}");
    }
}
