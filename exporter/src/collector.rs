//! The background collection loop and the cache `/metrics` reads.
//!
//! Every `interval` the loop asks all sources at once, each bounded by the cycle deadline, merges
//! their reports into one [`Snapshot`], builds the Prometheus [`Page`] once and swaps it in.
//! Readers never wait on RocketMQ: they stream whatever page the last cycle left.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::expose::prometheus::{Counters, Page};
use crate::snapshot::{unix_now, Snapshot};
use crate::source::Source;

/// What the HTTP side and the KEDA scaler read.
pub struct Cache {
    page: RwLock<Arc<Page>>,
    /// The last cycle's rows; every receiver is woken when a cycle publishes (`crate::keda`'s
    /// StreamIsActive pushes from there).
    snapshot: tokio::sync::watch::Sender<Arc<Snapshot>>,
    /// Unix seconds at the end of the last cycle; 0 before the first.
    last_cycle: std::sync::atomic::AtomicU64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            page: RwLock::default(),
            snapshot: tokio::sync::watch::Sender::new(Arc::new(Snapshot::default())),
            last_cycle: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Cache {
    pub fn page(&self) -> Arc<Page> {
        self.page.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// The last cycle's snapshot (empty before the first).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
    /// A receiver that sees every later cycle's snapshot.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
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
    fn store(&self, snapshot: Snapshot, page: Page) {
        let taken = snapshot.taken_at;
        *self.page.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(page);
        self.last_cycle
            .store(taken.to_bits(), std::sync::atomic::Ordering::Release);
        self.snapshot.send_replace(Arc::new(snapshot));
    }
}

/// Failure lines an operator can live with: a warning when a source starts failing for a cause,
/// again at most once a minute while it goes on (saying how many failures the quiet minute
/// held), and one info line when the cause is gone. `rocketmq_exporter_errors_total` keeps every
/// failure.
#[derive(Default)]
pub struct ErrorLog {
    /// (source, cause) → when it was last logged, failures since.
    active: BTreeMap<(String, &'static str), (Instant, u64)>,
}

/// How often a failure that goes on is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

impl ErrorLog {
    /// Logs one cycle's errors of `source`; returns the lines written at warn and info.
    pub fn cycle(
        &mut self,
        source: &str,
        errors: &[(&'static str, String)],
        now: Instant,
    ) -> (usize, usize) {
        let (mut warned, mut recovered) = (0, 0);
        let mut by_cause: BTreeMap<&'static str, (u64, &str)> = BTreeMap::new();
        for (cause, message) in errors {
            by_cause.entry(cause).or_insert((0, message)).0 += 1;
        }
        self.active.retain(|(s, cause), _| {
            let gone = s == source && !by_cause.contains_key(cause);
            if gone {
                tracing::info!(source = %s, cause, "recovered: no more {cause} errors");
                recovered += 1;
            }
            !gone
        });
        for (cause, (count, first)) in by_cause {
            match self.active.get_mut(&(source.to_string(), cause)) {
                None => {
                    tracing::warn!(source, cause, count, "{first}");
                    self.active.insert((source.to_string(), cause), (now, 0));
                    warned += 1;
                }
                Some((logged, since)) if now.duration_since(*logged) >= REPEAT_EVERY => {
                    tracing::warn!(
                        source,
                        cause,
                        count,
                        "still failing ({} more since the last line): {first}",
                        *since
                    );
                    *logged = now;
                    *since = 0;
                    warned += 1;
                }
                Some((_, since)) => {
                    *since += count;
                    tracing::debug!(source, cause, count, "{first}");
                }
            }
        }
        (warned, recovered)
    }
}

/// Each source with the settings it was built from (a reload keeps the equal ones).
pub type Sources = Vec<(String, Box<dyn Source>)>;

pub struct Collector {
    /// Each source with the settings it was built from (a reload keeps equal ones).
    sources: Sources,
    deadline: Duration,
    counters: Counters,
    cache: Arc<Cache>,
    errors: ErrorLog,
    last_series: Option<usize>,
}

impl Collector {
    pub fn new(sources: Sources, deadline: Duration, cache: Arc<Cache>) -> Self {
        Collector {
            sources,
            deadline,
            counters: Counters::default(),
            cache,
            errors: ErrorLog::default(),
            last_series: None,
        }
    }

    /// Runs one cycle and publishes its page.
    pub async fn cycle(&mut self) {
        let started = Instant::now();
        let deadline = started + self.deadline;
        let reports = join_all(self.sources.iter().map(|(_, s)| s.collect(deadline))).await;
        let mut snapshot = Snapshot::default();
        for ((_, source), report) in self.sources.iter().zip(reports) {
            snapshot.series.extend(report.series);
            snapshot.targets.extend(report.targets);
            snapshot.rpcs += report.rpcs;
            snapshot.latency_lookups += report.latency_lookups;
            self.errors
                .cycle(source.name(), &report.errors, Instant::now());
            for (cause, _) in report.errors {
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
        // One line at info for the first cycle and when the number of series changes; every
        // cycle at debug.
        let series = snapshot.series.len();
        let cycle_ms = (snapshot.cycle_seconds * 1000.0) as u64;
        if self.last_series != Some(series) {
            tracing::info!(
                series,
                rpcs = snapshot.rpcs,
                cycle_ms,
                "collection cycle done"
            );
            self.last_series = Some(series);
        } else {
            tracing::debug!(
                series,
                rpcs = snapshot.rpcs,
                cycle_ms,
                "collection cycle done"
            );
        }
        self.cache.store(snapshot, page);
    }

    /// Replaces the sources with `new`, keeping each running source whose settings are equal
    /// (its connections and last values stay); logs what was added and removed.
    pub fn replace_sources(&mut self, new: Sources) {
        let mut old: Sources = std::mem::take(&mut self.sources);
        for (settings, fresh) in new {
            match old.iter().position(|(s, _)| *s == settings) {
                Some(i) => self.sources.push(old.swap_remove(i)),
                None => {
                    tracing::info!(source = fresh.name(), "source added");
                    self.sources.push((settings, fresh));
                }
            }
        }
        for (_, gone) in old {
            tracing::info!(source = gone.name(), "source removed");
        }
    }

    /// Runs cycles every `interval` until the task is dropped; new source lists from `reloads`
    /// are applied between cycles.
    pub async fn run(
        mut self,
        interval: Duration,
        mut reloads: tokio::sync::mpsc::UnboundedReceiver<Sources>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.cycle().await,
                Some(sources) = reloads.recv() => {
                    self.replace_sources(sources);
                    // The new set is read at once; the last page is served meanwhile.
                    self.cycle().await;
                    ticker.reset();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_logged_when_it_starts_once_a_minute_while_it_lasts_and_when_it_ends() {
        let mut log = ErrorLog::default();
        let t0 = Instant::now();
        let err = |cause: &'static str| vec![(cause, format!("{cause} of x"))];
        assert_eq!(log.cycle("a", &err("timeout"), t0), (1, 0));
        for s in 1..60 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(log.cycle("a", &err("timeout"), now), (0, 0), "{s}");
        }
        assert_eq!(log.cycle("a", &err("timeout"), t0 + REPEAT_EVERY), (1, 0));
        // Another source's cycle neither repeats nor clears source a's failure.
        assert_eq!(log.cycle("b", &[], t0 + REPEAT_EVERY), (0, 0));
        // A new cause is news; the old one gone is a recovery.
        assert_eq!(log.cycle("a", &err("auth"), t0 + REPEAT_EVERY * 2), (1, 1));
        assert_eq!(log.cycle("a", &[], t0 + REPEAT_EVERY * 2), (0, 1));
        assert_eq!(log.cycle("a", &[], t0 + REPEAT_EVERY * 3), (0, 0));
    }
}
