//! `rmq-sidecar`: wiring only (flags, logging, Kubernetes client, leader election, one poll loop
//! per ScaledObject, `/metrics`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rmq_sidecar::config;
use rmq_sidecar::leader::Leader;
use rmq_sidecar::metrics::Metrics;
use rmq_sidecar::run::{Runner, Target};
use rmq_sidecar::scale::{self, ScaleTarget};
use rmq_sidecar::source::Sources;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "rmq-sidecar",
    version,
    about = "Scales a Deployment (or anything with /scale) from RocketMQ backlog with KEDA's and the HPA's semantics.",
    long_about = "Reads KEDA ScaledObjects (keda.sh/v1alpha1) as they are, polls their triggers (the stock \
`prometheus` trigger, or `rocketmq-exporter` reading the exporter's /metrics directly), decides like \
KEDA + the HPA, and writes spec.replicas through the target's /scale subresource. Every flag has an \
environment variable."
)]
struct Cli {
    /// ScaledObject YAML: a file (several documents allowed) or a directory of .yaml/.yml files
    #[arg(long, env = "RMQ_SIDECAR_CONFIG")]
    config: PathBuf,
    /// Directory of mounted Secrets (<dir>/<secret>/<key>) for TriggerAuthentication secretTargetRef
    #[arg(long, env = "RMQ_SIDECAR_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// kubeconfig file [default: in-cluster config, else ~/.kube/config]
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Decide and log, but never write spec.replicas
    #[arg(long, env = "RMQ_SIDECAR_DRY_RUN")]
    dry_run: bool,
    /// No Kubernetes at all: replicas live in memory, starting at minReplicaCount (for demos)
    #[arg(long, env = "RMQ_SIDECAR_SIMULATE")]
    simulate: bool,
    /// TLS and basic auth for /metrics: a web config file in the Prometheus exporter-toolkit
    /// format (tls_server_config, basic_auth_users, http_server_config), re-read when it or a
    /// file it names changes, and on SIGHUP [default: plain HTTP]
    #[arg(long = "web.config.file", env = "RMQ_SIDECAR_WEB_CONFIG_FILE")]
    web_config_file: Option<PathBuf>,
    /// Address for /metrics and /healthz
    #[arg(long, env = "RMQ_SIDECAR_LISTEN", default_value = "0.0.0.0:9878")]
    listen: SocketAddr,
    /// Name of the coordination.k8s.io Lease for leader election
    #[arg(long, env = "RMQ_SIDECAR_LEASE_NAME", default_value = "rmq-sidecar")]
    lease_name: String,
    /// Namespace of the Lease [default: POD_NAMESPACE, else the first ScaledObject's namespace]
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease [default: POD_NAME, else hostname-pid]
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds; a follower takes over this long after the leader stops renewing
    #[arg(long, env = "RMQ_SIDECAR_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// How often 1 <-> N is decided, in seconds: the HPA controller's
    /// --horizontal-pod-autoscaler-sync-period (15 by default), which KEDA's HPA follows;
    /// pollingInterval still drives activation 0 <-> 1. 0: both on pollingInterval
    #[arg(
        long,
        env = "RMQ_SIDECAR_HPA_SYNC_PERIOD_SECONDS",
        default_value_t = 15
    )]
    hpa_sync_period_seconds: u64,
    /// Scale without leader election (only when exactly one replica runs)
    #[arg(long, env = "RMQ_SIDECAR_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Log format: text or json
    #[arg(long, env = "RMQ_SIDECAR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log filter, e.g. info or rmq_sidecar=debug
    #[arg(long, env = "RMQ_SIDECAR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn init_logging(cli: &Cli) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log_level))
        .map_err(|e| format!("--log-level `{}`: {e}", cli.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("rmq-sidecar: {message}");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        return fail(e);
    }
    let specs = match config::load(&cli.config, cli.secrets_dir.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let sources = match Sources::new() {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(format!("HTTP client: {e}")),
    };
    let metrics = Arc::new(Metrics::default());
    let mut runners = Vec::new();
    let mut leader: Option<Arc<Leader>> = None;

    if cli.simulate {
        metrics.set_leader(true);
        for spec in specs {
            let start = spec.scaling.min_replica_count;
            runners.push(Runner::new(
                spec,
                sources.clone(),
                Target::Simulated(start),
                None,
                false,
                metrics.clone(),
            ));
        }
    } else {
        let client = match scale::client(cli.kubeconfig.as_deref()).await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        leader = if cli.no_leader_election {
            metrics.set_leader(true);
            None
        } else {
            let namespace = cli.lease_namespace.clone().unwrap_or_else(|| {
                specs
                    .first()
                    .map(|s| s.namespace.clone())
                    .unwrap_or_else(|| "default".into())
            });
            let identity = cli.identity.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
            let leader = Arc::new(Leader::new(
                client.clone(),
                &namespace,
                &cli.lease_name,
                &identity,
                Duration::from_secs(cli.lease_duration_seconds.max(1)),
            ));
            tokio::spawn(leader.clone().run());
            let (l, m) = (leader.clone(), metrics.clone());
            tokio::spawn(async move {
                loop {
                    m.set_leader(l.is_leader());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
            Some(leader)
        };
        for spec in specs {
            let target =
                match ScaleTarget::new(client.clone(), &spec.namespace, &spec.scale_target).await {
                    Ok(t) => t,
                    Err(e) => {
                        return fail(format!(
                            "ScaledObject {}/{}: {e}",
                            spec.namespace, spec.name
                        ))
                    }
                };
            if let Err(e) = target.ensure_not_managed().await {
                return fail(format!(
                    "ScaledObject {}/{}: {e}",
                    spec.namespace, spec.name
                ));
            }
            runners.push(Runner::new(
                spec,
                sources.clone(),
                Target::Kubernetes(Box::new(target)),
                leader.clone(),
                cli.dry_run,
                metrics.clone(),
            ));
        }
    }

    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {}: {e}", cli.listen)),
    };
    tracing::info!(listen = %cli.listen, scaledobjects = runners.len(), dry_run = cli.dry_run, simulate = cli.simulate, "rmq-sidecar started");
    let web = match rmq_web::Web::new(cli.web_config_file.clone()) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    tokio::spawn(web.clone().watch());
    {
        let web = web.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reading the web config again");
                web.reload_and_log(true);
            }
        });
    }
    let server = tokio::spawn(rmq_sidecar::http::serve(listener, web, metrics));
    let hpa_sync =
        (cli.hpa_sync_period_seconds > 0).then(|| Duration::from_secs(cli.hpa_sync_period_seconds));
    for mut r in runners {
        r.hpa_sync = hpa_sync;
        tokio::spawn(r.run());
    }
    let code = tokio::select! {
        r = server => fail(format!("HTTP server stopped: {r:?}")),
        _ = shutdown_signal() => ExitCode::SUCCESS,
    };
    // Hand the Lease over at once instead of making the next leader wait for it to expire.
    if let Some(leader) = leader.filter(|l| l.is_leader()) {
        if let Err(e) = leader.release().await {
            tracing::warn!("could not release the Lease: {e}");
        }
    }
    code
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return tokio::signal::ctrl_c().await.unwrap_or(()),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
