//! Configuration: defaults < file (TOML or YAML) < environment < flags.
//!
//! Every flag has an environment variable (`RMQ_EXPORTER_*`) and a file key of the same name in
//! snake case. This module holds the keys every source shares and composes the sources' own
//! settings (`source/remoting/config.rs`, `source/openapi/config.rs`). Several clusters and
//! instances at once come from the file's `[[clusters]]` and `[[apsaramq]]` tables; a table
//! inherits every top-level key it does not set. A bad value is refused at start with one line
//! naming the key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use figment::providers::{Format, Serialized, Toml, Yaml};
use figment::{Figment, Provider};
use serde::{Deserialize, Serialize};

use crate::source::openapi::config::{self as openapi, OpenApiConfig};
use crate::source::openapi::credentials::Settings as CredentialSettings;
use crate::source::remoting::config as remoting;
use crate::source::remoting::RemotingConfig;
use crate::source::Filters;

/// Command line. Every option is optional here so that unset flags do not hide file values.
#[derive(Debug, Parser, Serialize)]
#[command(
    name = "rmq-exporter",
    version,
    about = "Prometheus exporter for RocketMQ consumer backlog (ready, inflight, lag, lag latency).",
    long_about = "Reads consumer-group backlog from Apache RocketMQ 4.x/5.x name servers and brokers over the \
remoting admin protocol, and from ApsaraMQ for RocketMQ 5.x instances over the Alibaba Cloud OpenAPI, and \
serves it at /metrics as rocketmq_consumer_* gauges with the names and labels of ARMS and the RocketMQ 5 \
broker.\n\nPrecedence: defaults < --config file < RMQ_EXPORTER_* environment < flags. Several clusters and \
instances at once: [[clusters]] and [[apsaramq]] tables in the config file. ApsaraMQ credentials come from \
Alibaba Cloud's default chain: ALIBABA_CLOUD_ACCESS_KEY_ID with ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN), RRSA \
(ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE), \
~/.aliyun/config.json, ~/.alibabacloud/credentials.ini, the ECS RAM role."
)]
pub struct Cli {
    /// Address to serve /metrics, /healthz and /readyz on [default: 0.0.0.0:9877]
    #[arg(long, env = "RMQ_EXPORTER_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// TLS and basic auth for /metrics: a web config file in the Prometheus exporter-toolkit
    /// format (tls_server_config, basic_auth_users, http_server_config), re-read when it or a
    /// file it names changes, and on SIGHUP [default: plain HTTP]
    #[arg(long = "web.config.file", env = "RMQ_EXPORTER_WEB_CONFIG_FILE")]
    #[serde(rename = "web_config_file", skip_serializing_if = "Option::is_none")]
    pub web_config_file: Option<PathBuf>,
    /// Config file, TOML (.toml) or YAML (.yaml/.yml)
    #[arg(long, env = "RMQ_EXPORTER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Seconds between collection cycles [default: 10]
    #[arg(long = "interval", env = "RMQ_EXPORTER_INTERVAL_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// Seconds one cycle may take before unfinished reads count as failed [default: 9]
    #[arg(long = "deadline", env = "RMQ_EXPORTER_DEADLINE_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_seconds: Option<f64>,
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
    #[command(flatten)]
    #[serde(flatten)]
    pub remoting: remoting::Flags,
    #[command(flatten)]
    #[serde(flatten)]
    pub apsaramq: openapi::Flags,
    #[command(flatten)]
    #[serde(flatten)]
    pub keda: crate::keda::Flags,
}

/// The keys every source shares (the filters are [`Filters`]; each source has its own `File`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CommonFile {
    pub listen: String,
    pub web_config_file: Option<PathBuf>,
    pub interval_seconds: f64,
    pub deadline_seconds: f64,
    pub log_format: String,
    pub log_level: String,
}

impl Default for CommonFile {
    fn default() -> Self {
        CommonFile {
            listen: "0.0.0.0:9877".into(),
            web_config_file: None,
            interval_seconds: 10.0,
            deadline_seconds: 9.0,
            log_format: "text".into(),
            log_level: "info".into(),
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
    /// The config file it was read from (watched for changes).
    pub config_file: Option<PathBuf>,
    pub listen: SocketAddr,
    /// The exporter-toolkit web config (None: plain HTTP).
    pub web_config_file: Option<PathBuf>,
    pub interval: Duration,
    pub deadline: Duration,
    /// Apache RocketMQ clusters (remoting).
    pub clusters: Vec<RemotingConfig>,
    /// ApsaraMQ sources (OpenAPI).
    pub apsaramq: Vec<OpenApiConfig>,
    /// Where the ApsaraMQ credential providers call out.
    pub credentials: CredentialSettings,
    pub log_format: LogFormat,
    pub log_level: String,
    pub once: bool,
    /// KEDA's external scaler over gRPC (None: off).
    pub keda: Option<crate::keda::Settings>,
}

/// A configuration error: one line, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(String);

/// An error about `key`.
pub fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(one_line(&format!("key `{key}`: {why}")))
}

/// A number of seconds in (0, 1 day).
pub fn seconds(key: &str, v: f64) -> Result<Duration, ConfigError> {
    if v.is_finite() && v > 0.0 && v < 86_400.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(bad(
            key,
            format!("must be a number of seconds > 0 (got {v})"),
        ))
    }
}

/// Folds a multi-line message (regex errors draw carets under the pattern) into one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The top-level keys a serializable default has.
fn keys_of<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl Config {
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
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
        let figment = figment.merge(Serialized::defaults(&cli));
        // Each part is read on its own (a source's keys live beside its code), so unknown keys
        // are found here, against the union of every part's keys.
        let mut known = keys_of::<CommonFile>();
        known.extend(keys_of::<Filters>());
        known.extend(keys_of::<remoting::File>());
        known.extend(keys_of::<openapi::File>());
        known.extend(keys_of::<crate::keda::File>());
        let data = figment
            .data()
            .map_err(|e| ConfigError(one_line(&e.to_string())))?;
        for dict in data.values() {
            if let Some(unknown) = dict.keys().find(|k| !known.contains(k)) {
                return Err(bad(unknown, "unknown key"));
            }
        }
        fn part<T: serde::de::DeserializeOwned + Serialize + Default>(
            figment: &Figment,
        ) -> Result<T, ConfigError> {
            Figment::from(Serialized::defaults(T::default()))
                .merge(figment.clone())
                .extract()
                .map_err(|e| ConfigError(one_line(&e.to_string())))
        }
        let common: CommonFile = part(&figment)?;
        let filters: Filters = part(&figment)?;
        let remoting: remoting::File = part(&figment)?;
        let openapi: openapi::File = part(&figment)?;
        let keda: crate::keda::File = part(&figment)?;
        let mut config = Config::validate(common, &filters, remoting, openapi, cli.once)?;
        config.keda = keda.build()?;
        config.config_file = cli.config.clone();
        Ok(config)
    }

    fn validate(
        f: CommonFile,
        filters: &Filters,
        remoting: remoting::File,
        openapi: openapi::File,
        once: bool,
    ) -> Result<Config, ConfigError> {
        let listen: SocketAddr = f
            .listen
            .parse()
            .map_err(|_| bad("listen", format!("`{}` is not ADDR:PORT", f.listen)))?;
        let interval = seconds("interval_seconds", f.interval_seconds)?;
        let deadline = seconds("deadline_seconds", f.deadline_seconds)?;
        if deadline > interval {
            return Err(bad(
                "deadline_seconds",
                format!(
                    "must not exceed interval_seconds ({} > {})",
                    f.deadline_seconds, f.interval_seconds
                ),
            ));
        }
        let log_format = match f.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(bad("log_format", format!("`{other}` is not text or json"))),
        };
        tracing_subscriber::EnvFilter::try_new(&f.log_level)
            .map_err(|e| bad("log_level", format!("`{}`: {e}", f.log_level)))?;
        let apsaramq = openapi.build(filters)?;
        let clusters = remoting.build(filters, interval, !apsaramq.is_empty())?;
        Ok(Config {
            config_file: None,
            listen,
            web_config_file: f.web_config_file,
            interval,
            deadline,
            clusters,
            apsaramq,
            credentials: openapi.credential_settings()?,
            log_format,
            log_level: f.log_level,
            once,
            keda: None,
        })
    }
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
        use crate::source::remoting::config::parse_namesrv;
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

    /// Writes `text` to a file named `name` in a directory of its own: tests run in parallel
    /// threads and several use the same names (two writing `c.toml` at once read each other's).
    fn write(name: &str, text: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rmq-exporter-config-{}-{n}", std::process::id()));
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

    #[test]
    fn apsaramq_flags_build_one_source_and_no_default_name_server() {
        use crate::source::openapi::config::Instances;
        let c = Config::load(cli(&[
            "--apsaramq-instance",
            "rmq-cn-a, rmq-cn-b",
            "--region",
            "cn-hangzhou",
        ]))
        .unwrap();
        assert!(c.clusters.is_empty(), "no 127.0.0.1:9876 beside ApsaraMQ");
        assert_eq!(c.apsaramq.len(), 1);
        let a = &c.apsaramq[0];
        assert_eq!(
            a.instances,
            Instances::Listed(vec!["rmq-cn-a".into(), "rmq-cn-b".into()])
        );
        assert_eq!(a.endpoint.base, "https://rocketmq.cn-hangzhou.aliyuncs.com");
        assert_eq!(a.qps, 20.0);
        assert_eq!(a.concurrency, 4);
        assert_eq!(a.connections_refresh, Some(Duration::from_secs(60)));
        let vpc = Config::load(cli(&[
            "--apsaramq-instance",
            "rmq-cn-a",
            "--region",
            "cn-beijing",
            "--apsaramq-vpc",
        ]))
        .unwrap();
        assert_eq!(
            vpc.apsaramq[0].endpoint.base,
            "https://rocketmq-vpc.cn-beijing.aliyuncs.com"
        );
    }

    #[test]
    fn apsaramq_bad_values_name_their_key() {
        let err = |args: &[&str]| {
            let mut all = vec!["--apsaramq-instance", "rmq-cn-a", "--region", "cn-hangzhou"];
            all.extend_from_slice(args);
            Config::load(cli(&all)).unwrap_err().to_string()
        };
        for (args, key) in [
            (&["--apsaramq-qps", "0"][..], "apsaramq_qps"),
            (&["--apsaramq-qps=-1"], "apsaramq_qps"),
            (&["--apsaramq-concurrency", "0"], "apsaramq_concurrency"),
            (
                &["--apsaramq-request-timeout", "0"],
                "apsaramq_request_timeout_seconds",
            ),
            (
                &["--apsaramq-connections-refresh=-5"],
                "apsaramq_connections_refresh_seconds",
            ),
            (&["--apsaramq-endpoint", "ftp://x"], "apsaramq_endpoint"),
            (&["--apsaramq-endpoint", "not a url"], "apsaramq_endpoint"),
            (&["--apsaramq-discover"], "apsaramq_discover"),
        ] {
            let e = err(args);
            assert!(e.contains(key), "{args:?}: {e}");
        }
        let e = Config::load(cli(&["--apsaramq-instance", "rmq-cn-a"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("region"), "{e}");
        let e = Config::load(cli(&["--apsaramq-instance", "rmq cn/a", "--region", "r"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("apsaramq_instance"), "{e}");
        let e = Config::load(cli(&[
            "--apsaramq-discover",
            "--apsaramq-discover-tags",
            "env",
            "--region",
            "r",
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("apsaramq_discover_tags"), "{e}");
    }

    #[test]
    fn apsaramq_tables_inherit_the_top_level_and_refuse_unknown_keys() {
        use crate::source::openapi::config::Instances;
        let path = write(
            "a.toml",
            "apsaramq_qps = 7\ngroup_deny = \"^TOOLS\"\n\
             [[apsaramq]]\ninstance = \"rmq-cn-a\"\nregion = \"cn-hangzhou\"\n\
             [[apsaramq]]\ndiscover = true\ndiscover_tags = \"env=prod, team=pay\"\nregion = \"cn-shanghai\"\nqps = 3\nendpoint = \"http://127.0.0.1:8080\"\n\
             [[clusters]]\nnamesrv = \"10.0.0.2:9876\"\n",
        );
        let c = Config::load(cli(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.apsaramq.len(), 2);
        assert_eq!(c.apsaramq[0].qps, 7.0);
        assert!(!c.apsaramq[0].groups.keeps("TOOLS_X"));
        assert_eq!(c.apsaramq[1].qps, 3.0);
        assert_eq!(c.apsaramq[1].region, "cn-shanghai");
        assert_eq!(c.apsaramq[1].endpoint.base, "http://127.0.0.1:8080");
        assert_eq!(
            c.apsaramq[1].instances,
            Instances::Discover(vec![
                ("env".into(), "prod".into()),
                ("team".into(), "pay".into())
            ])
        );
        let path = write(
            "b.toml",
            "[[apsaramq]]\ninstance = \"rmq-cn-a\"\nregion = \"r\"\nqpss = 3\n",
        );
        let e = Config::load(cli(&["--config", path.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("qpss"), "{e}");
        let path = write(
            "c.toml",
            "[[apsaramq]]\ninstance = \"rmq-cn-a\"\nregion = \"r\"\nqps = 0\n",
        );
        let e = Config::load(cli(&["--config", path.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("qps"), "{e}");
    }
}
