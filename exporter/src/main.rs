//! `rmq-exporter`: wiring only (configuration, logging, collection loop, HTTP server).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rmq_exporter::collector::{Cache, Collector, Sources};
use rmq_exporter::config::{Cli, Config, LogFormat};
use rmq_exporter::source::openapi::api::Api;
use rmq_exporter::source::openapi::credentials::Credentials;
use rmq_exporter::source::openapi::OpenApiSource;
use rmq_exporter::source::remoting::RemotingSource;
use rmq_exporter::source::Source;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options: give freed pages back at once. Each cycle allocates and frees megabytes of
/// response bodies; with the default 10 s decay those pages stay resident across cycles (peak RSS
/// at 10,000 groups: 35.5 MiB with the default, 29.1 MiB with this; see BENCHMARKS.md).
/// `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 34] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rmq-exporter: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let mut builder = SourceBuilder::default();
    let sources = match builder
        .detect(&config)
        .await
        .and_then(|()| builder.build(&config))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rmq-exporter: {e}");
            return ExitCode::from(2);
        }
    };
    let cache = Arc::new(Cache::default());
    let mut collector = Collector::new(sources, config.deadline, cache.clone());

    if config.once {
        collector.cycle().await;
        print!("{}", cache.page().to_text());
        return ExitCode::SUCCESS;
    }

    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rmq-exporter: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        listen = %config.listen,
        clusters = config.clusters.len(),
        apsaramq = config.apsaramq.len(),
        web_config = ?config.web_config_file,
        "serving /metrics"
    );
    let stale_after = config.interval * 3 + config.deadline;
    let keda = match &config.keda {
        None => None,
        Some(k) => {
            let tls = match k
                .tls
                .as_ref()
                .map(rmq_exporter::keda::tls_config)
                .transpose()
            {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("rmq-exporter: keda scaler TLS: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let listener = match tokio::net::TcpListener::bind(k.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("rmq-exporter: cannot listen on {}: {e}", k.listen);
                    return ExitCode::from(2);
                }
            };
            tracing::info!(listen = %k.listen, tls = k.tls.is_some(), "serving KEDA's external scaler");
            Some(tokio::spawn(rmq_exporter::keda::serve(
                listener,
                cache.clone(),
                stale_after,
                tls,
            )))
        }
    };
    let keda = async {
        match keda {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let web = match rmq_web::Web::new(config.web_config_file.clone()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("rmq-exporter: {e}");
            return ExitCode::from(2);
        }
    };
    tokio::spawn(web.clone().watch());
    let server = tokio::spawn(rmq_exporter::http::serve(
        listener,
        web.clone(),
        cache,
        stale_after,
    ));
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let collection = tokio::spawn(collector.run(config.interval, reload_rx));
    tokio::spawn(watch_config(config, builder, reload_tx, web.clone()));
    tokio::select! {
        r = server => {
            eprintln!("rmq-exporter: HTTP server stopped: {r:?}");
            collection.abort();
            ExitCode::FAILURE
        }
        r = keda => {
            eprintln!("rmq-exporter: KEDA scaler stopped: {r:?}");
            collection.abort();
            ExitCode::FAILURE
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            ExitCode::SUCCESS
        }
    }
}

/// Builds the sources of a config, and on a reload only the ones that changed: a source whose
/// settings are the same keeps running with its state (connections, last values, rotation).
#[derive(Default)]
struct SourceBuilder {
    api: Option<Api>,
    credentials: Option<Arc<Credentials>>,
}

impl SourceBuilder {
    /// Detects the ApsaraMQ credentials when the config reads ApsaraMQ (at start only).
    async fn detect(&mut self, config: &Config) -> Result<(), String> {
        if config.apsaramq.is_empty() || self.credentials.is_some() {
            return Ok(());
        }
        let api = self
            .api
            .get_or_insert_with(|| Api::new(std::time::Duration::from_secs(3)))
            .clone();
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let env = |k: &str| std::env::var(k).ok();
        let c = Credentials::detect(&env, home, &config.credentials, api.http().clone())
            .await
            .map_err(|e| format!("apsaramq: {e}"))?;
        tracing::info!(credentials = %c.describe(), "ApsaraMQ credentials");
        self.credentials = Some(c);
        Ok(())
    }

    fn build(&self, config: &Config) -> Result<Sources, String> {
        let mut sources: Sources = config
            .clusters
            .iter()
            .map(|c| {
                (
                    format!("{c:?}"),
                    Box::new(RemotingSource::new(c.clone())) as Box<dyn Source>,
                )
            })
            .collect();
        if !config.apsaramq.is_empty() {
            let (Some(api), Some(credentials)) = (&self.api, &self.credentials) else {
                return Err("apsaramq: instances added to a config that had none need a restart (credentials are detected at start)".into());
            };
            for c in &config.apsaramq {
                let source = OpenApiSource::new(c.clone(), api.clone(), credentials.clone());
                tracing::info!(source = source.name(), endpoint = %c.endpoint.base, qps = c.qps, "reading ApsaraMQ");
                sources.push((format!("{c:?}"), Box::new(source)));
            }
        }
        Ok(sources)
    }
}

/// How often the config file is checked for changes (by content: a ConfigMap's `..data` swap is
/// seen like any edit).
const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads on a change of the config file and on SIGHUP: sources are swapped between cycles
/// (the last page keeps being served, so /metrics has no gap); the web config is re-read too.
/// Settings that need a restart (listen addresses, interval, log) are said so, once.
async fn watch_config(
    mut running: Config,
    builder: SourceBuilder,
    reloads: tokio::sync::mpsc::UnboundedSender<Sources>,
    web: std::sync::Arc<rmq_web::Web>,
) {
    let file = running.config_file.clone();
    let read =
        |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| std::fs::read(p).unwrap_or_default());
    let mut last = read(&file);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        if forced {
            tracing::info!("SIGHUP: reading the config and the web config again");
            web.reload_and_log(true);
        }
        let now = read(&file);
        if !forced && now == last {
            continue;
        }
        last = now;
        let config = match Config::load(Cli::parse()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}; keeping the previous config");
                continue;
            }
        };
        let restart: Vec<&str> = [
            ("listen", running.listen != config.listen),
            ("interval_seconds", running.interval != config.interval),
            ("deadline_seconds", running.deadline != config.deadline),
            ("keda_listen", running.keda != config.keda),
            (
                "web_config_file",
                running.web_config_file != config.web_config_file,
            ),
            ("log_level", running.log_level != config.log_level),
        ]
        .into_iter()
        .filter_map(|(k, changed)| changed.then_some(k))
        .collect();
        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "changed in the config, applied only by a restart");
        }
        match builder.build(&config) {
            Ok(sources) => {
                let _ = reloads.send(sources);
                running = config;
            }
            Err(e) => tracing::error!("{e}; keeping the previous config"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
