//! `rmq-sidecar`: wiring only (flags, logging, Kubernetes client, leader election, one poll loop
//! per ScaledObject, `/metrics`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rmq_sidecar::config;
use rmq_sidecar::config::ScaledObjectSpec;
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
    let mut leader: Option<Arc<Leader>> = None;
    let client = if cli.simulate {
        metrics.set_leader(true);
        None
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
        Some(client)
    };
    let hpa_sync =
        (cli.hpa_sync_period_seconds > 0).then(|| Duration::from_secs(cli.hpa_sync_period_seconds));
    let mut supervisor = Supervisor {
        sources,
        client,
        leader: leader.clone(),
        dry_run: cli.dry_run,
        metrics: metrics.clone(),
        hpa_sync,
        running: BTreeMap::new(),
        errors: BTreeMap::new(),
        last_load_error: None,
    };
    // At start, a ScaledObject that cannot run is fatal; later, on reload, it is logged.
    for spec in specs {
        if let Err(e) = supervisor.start(spec.clone()).await {
            return fail(format!(
                "ScaledObject {}/{}: {e}",
                spec.namespace, spec.name
            ));
        }
    }
    let scaledobjects = supervisor.running.len();

    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {}: {e}", cli.listen)),
    };
    tracing::info!(listen = %cli.listen, scaledobjects, dry_run = cli.dry_run, simulate = cli.simulate, "rmq-sidecar started");
    let web = match rmq_web::Web::new(cli.web_config_file.clone()) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    tokio::spawn(web.clone().watch());
    let server = tokio::spawn(rmq_sidecar::http::serve(listener, web.clone(), metrics));
    // Reload: the ScaledObjects (and the web config) when their files change, and on SIGHUP.
    {
        let (config_path, secrets_dir) = (cli.config.clone(), cli.secrets_dir.clone());
        tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                if forced {
                    tracing::info!("SIGHUP: reading the ScaledObjects and the web config again");
                    web.reload_and_log(true);
                }
                supervisor
                    .reload(&config_path, secrets_dir.as_deref(), forced)
                    .await;
            }
        });
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

/// How often the ScaledObject file or directory is read again (content compared, so a ConfigMap
/// volume's `..data` symlink swap is seen like any edit).
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The poll loops that run, one per ScaledObject, and what is needed to start more.
struct Supervisor {
    sources: Arc<Sources>,
    client: Option<kube::Client>,
    leader: Option<Arc<Leader>>,
    dry_run: bool,
    metrics: Arc<Metrics>,
    hpa_sync: Option<Duration>,
    running: BTreeMap<String, Running>,
    /// ScaledObjects that could not start on a reload, with the error last logged.
    errors: BTreeMap<String, String>,
    last_load_error: Option<String>,
}

struct Running {
    spec: ScaledObjectSpec,
    updates: tokio::sync::watch::Sender<ScaledObjectSpec>,
    task: tokio::task::JoinHandle<()>,
}

fn key(spec: &ScaledObjectSpec) -> String {
    format!("{}/{}", spec.namespace, spec.name)
}

impl Supervisor {
    /// Starts the poll loop of `spec`.
    async fn start(&mut self, spec: ScaledObjectSpec) -> Result<(), String> {
        let target = match &self.client {
            None => Target::Simulated(spec.scaling.min_replica_count),
            Some(client) => {
                let target = ScaleTarget::new(client.clone(), &spec.namespace, &spec.scale_target)
                    .await
                    .map_err(|e| e.to_string())?;
                target
                    .ensure_not_managed()
                    .await
                    .map_err(|e| e.to_string())?;
                Target::Kubernetes(Box::new(target))
            }
        };
        let (tx, rx) = tokio::sync::watch::channel(spec.clone());
        let mut runner = Runner::new(
            spec.clone(),
            self.sources.clone(),
            target,
            self.leader.clone(),
            self.dry_run && self.client.is_some(),
            self.metrics.clone(),
        );
        runner.hpa_sync = self.hpa_sync;
        runner.updates = Some(rx);
        let task = tokio::spawn(runner.run());
        self.running.insert(
            key(&spec),
            Running {
                spec,
                updates: tx,
                task,
            },
        );
        Ok(())
    }

    /// Reads the ScaledObjects again and applies what changed: added ones start, removed ones
    /// stop, changed ones get their new spec in place (history kept) unless their target changed.
    /// An invalid config keeps everything as it is, with one error line per distinct error.
    async fn reload(
        &mut self,
        path: &std::path::Path,
        secrets: Option<&std::path::Path>,
        forced: bool,
    ) {
        let specs = match config::load(path, secrets) {
            Ok(s) => s,
            Err(e) => {
                let e = e.to_string();
                if forced || self.last_load_error.as_deref() != Some(e.as_str()) {
                    tracing::error!("{e}; keeping the previous ScaledObjects");
                    self.last_load_error = Some(e);
                }
                return;
            }
        };
        if self.last_load_error.take().is_some() {
            tracing::info!("ScaledObjects valid again");
        }
        let wanted: BTreeMap<String, ScaledObjectSpec> =
            specs.into_iter().map(|s| (key(&s), s)).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(r) = self.running.remove(&k) {
                r.task.abort();
                self.metrics.forget(&k);
                tracing::info!(scaledobject = %k, "ScaledObject removed: no longer scaled");
            }
        }
        self.errors.retain(|k, _| wanted.contains_key(k));
        for (k, spec) in wanted {
            match self.running.get_mut(&k) {
                Some(r) if r.spec == spec => continue,
                Some(r) if r.spec.scale_target == spec.scale_target => {
                    r.spec = spec.clone();
                    let _ = r.updates.send(spec);
                    tracing::info!(scaledobject = %k, "ScaledObject changed: applied, history kept");
                    continue;
                }
                Some(_) => {
                    if let Some(r) = self.running.remove(&k) {
                        r.task.abort();
                    }
                }
                None => {}
            }
            match self.start(spec).await {
                Ok(()) => {
                    self.errors.remove(&k);
                    tracing::info!(scaledobject = %k, "ScaledObject added");
                }
                Err(e) => {
                    if self.errors.get(&k) != Some(&e) {
                        tracing::error!(scaledobject = %k, "cannot scale it: {e}");
                        self.errors.insert(k, e);
                    }
                }
            }
        }
    }
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
