//! The background collection loop and the cache `/metrics` reads.
//!
//! Every `interval` the loop asks all sources at once, each bounded by the cycle deadline, merges
//! their reports into one [`Snapshot`], builds the Prometheus [`Page`] once and swaps it in.
//! Readers never wait on RocketMQ: they stream whatever page the last cycle left.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::expose::prometheus::{Counters, Page};
use crate::snapshot::{unix_now, Snapshot};
use crate::source::Source;

/// What the HTTP side reads.
#[derive(Default)]
pub struct Cache {
    page: RwLock<Arc<Page>>,
    /// Unix seconds at the end of the last cycle; 0 before the first.
    last_cycle: std::sync::atomic::AtomicU64,
}

impl Cache {
    pub fn page(&self) -> Arc<Page> {
        self.page.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Whether a first cycle has completed.
    pub fn ready(&self) -> bool {
        self.last_cycle.load(std::sync::atomic::Ordering::Acquire) > 0
    }
    /// Seconds since the last cycle ended (None before the first).
    pub fn age(&self) -> Option<f64> {
        let last = self.last_cycle.load(std::sync::atomic::Ordering::Acquire);
        (last > 0).then(|| unix_now() - f64::from_bits(last))
    }
    fn store(&self, taken: f64, page: Page) {
        *self.page.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(page);
        self.last_cycle
            .store(taken.to_bits(), std::sync::atomic::Ordering::Release);
    }
}

pub struct Collector {
    sources: Vec<Box<dyn Source>>,
    deadline: Duration,
    counters: Counters,
    cache: Arc<Cache>,
}

impl Collector {
    pub fn new(sources: Vec<Box<dyn Source>>, deadline: Duration, cache: Arc<Cache>) -> Self {
        Collector {
            sources,
            deadline,
            counters: Counters::default(),
            cache,
        }
    }

    /// Runs one cycle and publishes its page.
    pub async fn cycle(&mut self) {
        let started = Instant::now();
        let deadline = started + self.deadline;
        let reports = join_all(self.sources.iter().map(|s| s.collect(deadline))).await;
        let mut snapshot = Snapshot::default();
        for (source, report) in self.sources.iter().zip(reports) {
            snapshot.series.extend(report.series);
            snapshot.targets.extend(report.targets);
            snapshot.rpcs += report.rpcs;
            snapshot.latency_lookups += report.latency_lookups;
            for cause in report.errors {
                *self
                    .counters
                    .errors
                    .entry((source.name().to_string(), cause))
                    .or_default() += 1;
            }
            for (action, code) in report.api_errors {
                *self
                    .counters
                    .api_errors
                    .entry((source.name().to_string(), action, code))
                    .or_default() += 1;
            }
        }
        snapshot.cycle_seconds = started.elapsed().as_secs_f64();
        snapshot.taken_at = unix_now();
        self.counters.cycles += 1;
        self.counters.rpcs += snapshot.rpcs;
        self.counters.latency_lookups += snapshot.latency_lookups;
        let page = Page::build(&snapshot, &self.counters);
        tracing::info!(
            series = snapshot.series.len(),
            rpcs = snapshot.rpcs,
            cycle_ms = (snapshot.cycle_seconds * 1000.0) as u64,
            "collection cycle done"
        );
        self.cache.store(snapshot.taken_at, page);
    }

    /// Runs cycles every `interval` until the task is dropped.
    pub async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.cycle().await;
        }
    }
}
