//! The poll loop of one ScaledObject: observe every trigger, read the target's replicas, decide,
//! and (as leader, outside dry-run) write `spec.replicas` through `/scale`.
//!
//! Followers observe and decide too, so that a follower that takes over the Lease has the same
//! stabilization history as the leader it replaces. In `--simulate` mode there is no Kubernetes:
//! replicas live in memory, starting at `minReplicaCount`, and every decision is applied to them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;

use crate::config::ScaledObjectSpec;
use crate::decide::{self, Decision, History, Observation, Round, TriggerOutcome};
use crate::leader::Leader;
use crate::metrics::Metrics;
use crate::scale::{ScaleError, ScaleTarget};
use crate::source::Sources;

/// Where replicas live.
pub enum Target {
    Kubernetes(Box<ScaleTarget>),
    /// No cluster: replicas in memory.
    Simulated(u32),
}

pub struct Runner {
    pub spec: ScaledObjectSpec,
    pub sources: Arc<Sources>,
    pub target: Target,
    pub leader: Option<Arc<Leader>>,
    pub dry_run: bool,
    pub metrics: Arc<Metrics>,
    /// The HPA controller's sync period: how often 1 ↔ N is decided (KEDA's `pollingInterval`
    /// drives only 0 ↔ 1). None: both on `pollingInterval`.
    pub hpa_sync: Option<Duration>,
    /// A changed spec for this ScaledObject (a reload); taken before the next round, history kept.
    pub updates: Option<tokio::sync::watch::Receiver<ScaledObjectSpec>>,
    history: History,
    log: DecisionLog,
    /// Scale errors by cause: when each was last logged (at most once a minute each).
    scale_errors_logged: std::collections::HashMap<&'static str, std::time::Instant>,
}

/// Decision lines an operator can live with: info when the desired count or the reason changes,
/// a warning when a trigger starts failing and at most once a minute while it goes on, every
/// other poll at debug. `rmq_sidecar_decisions_total` and the other metrics keep every poll.
#[derive(Debug, Default)]
pub struct DecisionLog {
    last: Option<(u32, &'static str)>,
    warned_at: Option<std::time::Instant>,
}

/// How often a failure that goes on is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

impl DecisionLog {
    /// The level of this poll's line.
    pub fn level(
        &mut self,
        desired: u32,
        reason: &'static str,
        failing: bool,
        now: std::time::Instant,
    ) -> tracing::Level {
        // A round where only KEDA's poll was due says nothing new about 1 <-> N.
        let changed = reason != "awaiting_hpa_sync"
            && self.last.is_some_and(|(d, r)| (d, r) != (desired, reason))
            || self.last.is_none();
        if reason != "awaiting_hpa_sync" || self.last.is_none() {
            self.last = Some((desired, reason));
        }
        if failing {
            let due = self
                .warned_at
                .is_none_or(|at| now.duration_since(at) >= REPEAT_EVERY);
            if changed || due {
                self.warned_at = Some(now);
                return tracing::Level::WARN;
            }
            return tracing::Level::DEBUG;
        }
        self.warned_at = None;
        if changed {
            tracing::Level::INFO
        } else {
            tracing::Level::DEBUG
        }
    }
}

/// What one poll did.
#[derive(Debug)]
pub struct PollOutcome {
    pub current: u32,
    pub decision: Decision,
    /// `Some(to)` when spec.replicas was written.
    pub scaled_to: Option<u32>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Runner {
    pub fn new(
        spec: ScaledObjectSpec,
        sources: Arc<Sources>,
        target: Target,
        leader: Option<Arc<Leader>>,
        dry_run: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Runner {
            spec,
            sources,
            target,
            leader,
            dry_run,
            metrics,
            hpa_sync: None,
            updates: None,
            history: History::new(unix_now()),
            log: DecisionLog::default(),
            scale_errors_logged: std::collections::HashMap::new(),
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.spec.name)
    }

    fn leading(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| l.is_leader())
    }

    /// One poll where both clocks are due. An error means the target could not be read or
    /// written; the next poll retries.
    pub async fn poll(&mut self) -> Result<PollOutcome, ScaleError> {
        self.poll_round(Round::BOTH).await
    }

    /// One poll of the clocks in `round`.
    pub async fn poll_round(&mut self, round: Round) -> Result<PollOutcome, ScaleError> {
        let observations: Vec<Observation> =
            join_all(self.spec.triggers.iter().map(|t| self.sources.observe(t))).await;
        let current = match &self.target {
            Target::Kubernetes(t) => t.replicas().await?,
            Target::Simulated(n) => *n,
        };
        let decision = decide::decide_round(
            &self.spec.scaling,
            &observations,
            current,
            &mut self.history,
            unix_now(),
            round,
        )
        .map_err(|e| ScaleError::Unsupported(e.to_string()))?;
        let key = self.key();
        self.metrics.record_decision(&key, current, &decision);
        let values: Vec<String> = decision
            .triggers
            .iter()
            .map(|t| match (&t.outcome, t.metric_value) {
                (TriggerOutcome::Failed(e) | TriggerOutcome::Fallback(e), _) => {
                    format!("error: {e}")
                }
                (_, Some(v)) => format!("{v}"),
                (_, None) => "-".to_string(),
            })
            .collect();
        let leading = self.leading();
        let failing = decision.triggers.iter().any(|t| {
            matches!(
                t.outcome,
                TriggerOutcome::Failed(_) | TriggerOutcome::Fallback(_)
            )
        });
        let level = self.log.level(
            decision.desired,
            decision.reason.label(),
            failing,
            std::time::Instant::now(),
        );
        macro_rules! decision_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    scaledobject = %key,
                    current,
                    desired = decision.desired,
                    reason = decision.reason.label(),
                    metric = %values.join(";"),
                    leader = leading,
                    dry_run = self.dry_run,
                    "{}",
                    decision.reason
                )
            };
        }
        match level {
            tracing::Level::WARN => decision_line!(tracing::Level::WARN),
            tracing::Level::INFO => decision_line!(tracing::Level::INFO),
            _ => decision_line!(tracing::Level::DEBUG),
        }
        let mut scaled_to = None;
        if decision.desired != current && leading {
            match &mut self.target {
                Target::Simulated(n) => {
                    *n = decision.desired;
                    scaled_to = Some(decision.desired);
                }
                Target::Kubernetes(_) if self.dry_run => {}
                Target::Kubernetes(t) => {
                    let message = format!(
                        "{key}: {current} -> {} replicas: {} (metric {})",
                        decision.desired,
                        decision.reason,
                        values.join(";")
                    );
                    t.scale(current, decision.desired, "", &message).await?;
                    scaled_to = Some(decision.desired);
                }
            }
            if let Some(to) = scaled_to {
                self.metrics.record_scale(&key, to);
            }
        }
        Ok(PollOutcome {
            current,
            decision,
            scaled_to,
        })
    }

    /// Polls until the task is dropped: KEDA's poll every `pollingInterval` and, with
    /// `hpa_sync`, the HPA's sync on its own clock (a round where both are due does both).
    pub async fn run(mut self) {
        let intervals = |spec: &ScaledObjectSpec, hpa_sync: Option<Duration>| {
            let polling = Duration::from_secs(u64::from(spec.polling_interval_seconds.max(1)));
            (
                polling,
                hpa_sync.unwrap_or(polling).max(Duration::from_secs(1)),
            )
        };
        let (mut polling, mut hpa) = intervals(&self.spec, self.hpa_sync);
        let start = tokio::time::Instant::now();
        let (mut next_poll, mut next_hpa) = (start, start);
        let mut updates = self.updates.take();
        loop {
            let update = async {
                match updates.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let changed = tokio::select! {
                _ = tokio::time::sleep_until(next_poll.min(next_hpa)) => false,
                ok = update => ok,
            };
            if changed {
                if let Some(rx) = updates.as_mut() {
                    self.spec = rx.borrow_and_update().clone();
                    (polling, hpa) = intervals(&self.spec, self.hpa_sync);
                    // A changed ScaledObject is read at once, like a new one.
                    let now = tokio::time::Instant::now();
                    (next_poll, next_hpa) = (now, now);
                }
                continue;
            }
            let now = tokio::time::Instant::now();
            let round = Round {
                activation: now >= next_poll,
                hpa: now >= next_hpa,
            };
            // Missed ticks are skipped, not bunched (like MissedTickBehavior::Delay).
            while next_poll <= now {
                next_poll += polling;
            }
            while next_hpa <= now {
                next_hpa += hpa;
            }
            if let Err(e) = self.poll_round(round).await {
                let key = self.key();
                self.metrics.record_scale_error(&key, e.cause());
                let now = std::time::Instant::now();
                let last = self.scale_errors_logged.get(e.cause()).copied();
                if last.is_none_or(|at| now.duration_since(at) >= REPEAT_EVERY) {
                    self.scale_errors_logged.insert(e.cause(), now);
                    tracing::warn!(scaledobject = %key, cause = e.cause(), "{e}");
                } else {
                    tracing::debug!(scaledobject = %key, cause = e.cause(), "{e}");
                }
            } else if !self.scale_errors_logged.is_empty() {
                let key = self.key();
                tracing::info!(scaledobject = %key, "recovered: the target is read and written again");
                self.scale_errors_logged.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tracing::Level;

    #[test]
    fn a_decision_is_news_when_desired_or_reason_changes_and_errors_once_a_minute() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Steady: only the first poll after a change is news.
        let mut l = DecisionLog::default();
        assert_eq!(l.level(3, "at_recommendation", false, at(0)), Level::INFO);
        for s in 1..60 {
            assert_eq!(
                l.level(3, "at_recommendation", false, at(s)),
                Level::DEBUG,
                "{s}"
            );
            // KEDA-poll-only rounds in between are not a change either.
            assert_eq!(
                l.level(3, "awaiting_hpa_sync", false, at(s)),
                Level::DEBUG,
                "{s}"
            );
        }
        assert_eq!(l.level(4, "scale_up", false, at(61)), Level::INFO);
        // A failure: warned when it starts, then once a minute, and its end is news.
        assert_eq!(l.level(4, "metrics_unavailable", true, at(62)), Level::WARN);
        for s in 63..122 {
            assert_eq!(
                l.level(4, "metrics_unavailable", true, at(s)),
                Level::DEBUG,
                "{s}"
            );
        }
        assert_eq!(
            l.level(4, "metrics_unavailable", true, at(122)),
            Level::WARN
        );
        assert_eq!(l.level(4, "at_recommendation", false, at(123)), Level::INFO);
    }
}
