//! `rmq-exporter`: wiring only (configuration, logging, collection loop, HTTP server).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rmq_exporter::collector::{Cache, Collector};
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
    let mut sources: Vec<Box<dyn Source>> = config
        .clusters
        .iter()
        .map(|c| Box::new(RemotingSource::new(c.clone())) as Box<dyn Source>)
        .collect();
    if !config.apsaramq.is_empty() {
        let api = Api::new(std::time::Duration::from_secs(3));
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let env = |k: &str| std::env::var(k).ok();
        let credentials =
            match Credentials::detect(&env, home, &config.credentials, api.http().clone()).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("rmq-exporter: apsaramq: {e}");
                    return ExitCode::from(2);
                }
            };
        tracing::info!(credentials = %credentials.describe(), "ApsaraMQ credentials");
        for c in &config.apsaramq {
            let source = OpenApiSource::new(c.clone(), api.clone(), credentials.clone());
            tracing::info!(source = source.name(), endpoint = %c.endpoint.base, qps = c.qps, "reading ApsaraMQ");
            sources.push(Box::new(source));
        }
    }
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
    tokio::spawn(reload_on_sighup(web.clone()));
    let server = tokio::spawn(rmq_exporter::http::serve(
        listener,
        web.clone(),
        cache,
        stale_after,
    ));
    let collection = tokio::spawn(collector.run(config.interval));
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

/// SIGHUP: read the web config again now.
async fn reload_on_sighup(web: std::sync::Arc<rmq_web::Web>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reading the web config again");
            web.reload_and_log(true);
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
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
