//! The decision engine: a pure, deterministic function from (configuration, this poll's
//! observations, current replicas, history, time) to the desired replica count and a reason.
//!
//! # Design
//!
//! One call of [`decide`] stands for one polling round of KEDA's scale loop *and* one sync of the
//! HPA that KEDA would have created, in that order:
//!
//! 1. **Observations → metrics** (KEDA scaler + metrics adapter). Each trigger yields an
//!    [`Observation`]. A value reads as 0 when it is missing or NaN/Inf and `ignoreNullValues`
//!    is true, otherwise the poll has *failed* for that trigger. `excludePersistentLag` and
//!    `capAtQueues` then shape the value used for scaling (activation keeps the raw total).
//! 2. **Fallback** (KEDA). Consecutive failures are counted per trigger; once the count is
//!    *greater than* `failureThreshold`, the trigger reports a synthetic metric worth
//!    `fallback replicas × target` and counts as active, exactly like KEDA feeds the HPA.
//! 3. **Activation** (KEDA's scale executor): 0/idle ↔ active is decided here, with
//!    `cooldownPeriod`, `initialCooldownPeriod` and the pause annotations. When this step changes
//!    the replica count the round ends there, as KEDA writes the scale directly.
//! 4. **HPA** (1 ↔ N): per-metric proposals (AverageValue / Value, tolerance), max across
//!    metrics, "never scale down while a metric is failing", then the HPA's normalisation:
//!    the legacy one when the ScaledObject has no `behavior` (what KEDA creates in that case),
//!    otherwise stabilization windows and Pods/Percent rate policies over the recorded scale
//!    events.
//!
//! Times are whole seconds on a monotonic clock chosen by the caller. [`History`] holds what KEDA
//! keeps in the ScaledObject status and what the HPA controller keeps in memory; [`decide`]
//! assumes the returned count is applied (scale events are recorded for it).
//!
//! # Upstream sources (kedacore/keda, kubernetes/kubernetes)
//!
//! - Activation, cooldown, initial cooldown, idle, "active with a partial error does not refresh
//!   the last active time", "an error never deactivates unless `fallback.replicas` is 0", scale
//!   from zero to `max(minReplicaCount, 1)`, pause-scale-in/-out around activation:
//!   keda `pkg/scaling/executor/scale_scaledobjects.go` (`RequestScale`, `scaleToZeroOrIdle`,
//!   `scaleFromZeroOrIdle`).
//! - Trigger activity is any trigger active, a trigger in fallback counts as active and not in
//!   error: keda `pkg/scaling/scale_handler.go` (`getScaledObjectState`, `getScalerState`).
//! - Fallback counting (`failures > failureThreshold`), the four behaviours and the synthetic
//!   metric `target × replicas` (divided by ready replicas for `Value`):
//!   keda `pkg/fallback/fallback.go` (`GetMetricsWithFallback`, `doFallback`).
//! - Empty result / NaN / Inf handling and `value > activationThreshold`:
//!   keda `pkg/scalers/prometheus_scaler.go` (`ExecutePromQuery`, `GetMetricsAndActivity`).
//! - `capAtQueues` (metric clamped to `queues × threshold`) and `excludePersistentLag` (a
//!   partition whose committed offset did not move since the previous poll counts 0 for scaling
//!   but still for activation): keda `pkg/scalers/kafka_scaler.go` (`getTotalLag`,
//!   `getLagForPartition`). The cap compares in floating point, so it really caps (Kafka's
//!   integer division can let the count exceed the partitions by one).
//! - Pause (`paused` keeps replicas, `paused-replicas` sets them; the HPA is deleted, so its
//!   memory is lost), pause-scale-in/-out as `selectPolicy: Disabled` on the HPA:
//!   keda `controllers/keda/scaledobject_controller.go` (`handlePause`), `controllers/keda/hpa.go`.
//! - HPA min = `max(minReplicaCount, 1)`: keda `apis/keda/v1alpha1/scaledobject_types.go`
//!   (`GetHPAMinReplicas`).
//! - Replica calculation for external metrics in milli-units, tolerance `[1 − down, 1 + up]`:
//!   kubernetes `pkg/controller/podautoscaler/replica_calculator.go`
//!   (`GetExternalPerPodMetricReplicas`, `GetExternalMetricReplicas`, `Tolerances.isWithin`);
//!   KEDA converts values and thresholds with `int64(v * 1000)` (`GenerateMetricInMili`,
//!   `GetMetricTargetMili`).
//! - Max across metrics, "invalid metrics and a scale-down → do nothing", the `current == 0`,
//!   `> max`, `< min` branches, the initial recommendation, legacy normalisation
//!   (`stabilizeRecommendation` with the 300 s window, scale-up limit `max(2 × current, 4)`),
//!   behavior normalisation (`stabilizeRecommendationWithBehaviors`,
//!   `convertDesiredReplicasWithBehaviorRate`, `calculateScaleUpLimitWithScalingRules`,
//!   `calculateScaleDownLimitWithBehaviors`, `getReplicasChangePerPeriod`, `storeScaleEvent`):
//!   kubernetes `pkg/controller/podautoscaler/horizontal.go`.
//!
//! # Approximations
//!
//! The HPA reads `status.replicas` and, for `Value` targets, the ready pod count; both are taken
//! to be `current_replicas`. KEDA counts fallback failures per metric request (scale loop and HPA
//! both ask); here it is once per [`decide`] call. A fresh [`History`] is a freshly created
//! ScaledObject and HPA (no last active time; the HPA's initial recommendation is recorded).

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{
    Fallback, FallbackBehavior, HpaBehavior, MetricType, PolicyType, ScalingConfig, ScalingRules,
    SelectPolicy, TriggerScaling, DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS, DEFAULT_TOLERANCE,
};

/// What one trigger's source returned this poll.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A value (the total over the trigger, e.g. the summed backlog).
    Ok(Sample),
    /// The source answered with no data (an empty Prometheus result, no matching series).
    Missing,
    /// The source failed (unreachable, non-2xx, several series where one was expected, ...).
    Error(String),
}

/// A successful reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Total over the trigger; NaN/Inf are handled per `ignoreNullValues`.
    pub value: f64,
    /// Number of queues the consumer group reads (for `capAtQueues`); when absent the number of
    /// `queues` entries is used, if any.
    pub queue_count: Option<u32>,
    /// Per-queue data (for `excludePersistentLag`).
    pub queues: Vec<QueueLag>,
}

impl Sample {
    /// A sample with only a total.
    pub fn new(value: f64) -> Self {
        Sample {
            value,
            queue_count: None,
            queues: Vec::new(),
        }
    }

    /// Sets the queue count.
    pub fn with_queue_count(mut self, count: u32) -> Self {
        self.queue_count = Some(count);
        self
    }

    /// Sets the per-queue data.
    pub fn with_queues(mut self, queues: Vec<QueueLag>) -> Self {
        self.queues = queues;
        self
    }
}

/// One queue's state this poll.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueLag {
    /// Stable identity of the queue (e.g. `topic/broker/queueId`).
    pub queue: String,
    /// The consumer group's committed offset.
    pub committed_offset: i64,
    /// This queue's share of the sample's value.
    pub lag: f64,
}

/// State carried from one call to the next: KEDA's status fields and the HPA controller's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    started_at: u64,
    last_active: Option<u64>,
    failures: Vec<u32>,
    committed_offsets: Vec<BTreeMap<String, i64>>,
    hpa: HpaMemory,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct HpaMemory {
    /// The initial recommendation (current replicas) has been recorded; once per HPA lifetime.
    initialized: bool,
    /// Unstabilized recommendations `(time, replicas)`.
    recommendations: Vec<(u64, i64)>,
    /// Scale-up events `(time, replicas added)`.
    scale_up_events: Vec<(u64, i64)>,
    /// Scale-down events `(time, replicas removed)`.
    scale_down_events: Vec<(u64, i64)>,
}

impl History {
    /// A fresh history, as for a ScaledObject created at `started_at` (drives
    /// `initialCooldownPeriod`).
    pub fn new(started_at: u64) -> Self {
        History {
            started_at,
            last_active: None,
            failures: Vec::new(),
            committed_offsets: Vec::new(),
            hpa: HpaMemory::default(),
        }
    }

    /// When a trigger was last seen active (KEDA's `status.lastActiveTime`).
    pub fn last_active(&self) -> Option<u64> {
        self.last_active
    }

    /// Consecutive failed polls of trigger `index`.
    pub fn consecutive_failures(&self, index: usize) -> u32 {
        self.failures.get(index).copied().unwrap_or(0)
    }
}

/// The outcome of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas the target should have.
    pub desired: u32,
    pub reason: Reason,
    /// KEDA's activity: some trigger above its activation threshold or in fallback.
    pub active: bool,
    /// Some trigger is reporting its fallback value.
    pub fallback_active: bool,
    /// Per trigger, in configuration order (empty while paused: nothing is polled).
    pub triggers: Vec<TriggerReport>,
}

/// What happened to one trigger this poll.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerReport {
    pub outcome: TriggerOutcome,
    /// Value compared with `activationThreshold`.
    pub activation_value: Option<f64>,
    /// Value handed to the HPA (after excludePersistentLag/capAtQueues, or the fallback value).
    pub metric_value: Option<f64>,
    pub active: bool,
    pub consecutive_failures: u32,
}

/// How a trigger's observation was read.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerOutcome {
    /// A usable value.
    Value,
    /// Missing or NaN/Inf, read as 0 because `ignoreNullValues` is true.
    NullAsZero,
    /// The poll failed; the HPA gets no metric from this trigger.
    Failed(String),
    /// The poll failed past `failureThreshold`; the fallback value stands in.
    Fallback(String),
}

/// Why the desired count is what it is. [`Reason::label`] is a stable snake_case name for logs and
/// metrics; `Display` explains it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// `autoscaling.keda.sh/paused`: replicas are left alone.
    Paused,
    /// `autoscaling.keda.sh/paused-replicas`: replicas are pinned.
    PausedReplicas {
        replicas: u32,
    },
    /// A trigger became active while at zero/idle: KEDA scales to `max(minReplicaCount, 1)`.
    Activated {
        to: u32,
    },
    /// Scaling out is blocked by `autoscaling.keda.sh/paused-scale-out`.
    ScaleOutPaused,
    /// No trigger active for the cooldown period: KEDA scales to idle/zero.
    Deactivated {
        to: u32,
    },
    /// Scaling in is blocked by `autoscaling.keda.sh/paused-scale-in`.
    ScaleInPaused,
    /// No trigger active, waiting for the cooldown before scaling to idle/zero.
    CoolingDown {
        remaining_seconds: u64,
    },
    /// At zero/idle with no active trigger: nothing to do (the HPA is disabled at zero).
    Idle,
    /// KEDA's poll changed nothing and no HPA sync is due this round.
    AwaitingHpaSync,
    /// Below `minReplicaCount`: raised to it.
    BelowMinReplicas {
        min: u32,
    },
    /// Above `maxReplicaCount`: lowered to it.
    AboveMaxReplicas {
        max: u32,
    },
    /// Metrics failed; replicas are kept (never scale down on missing data).
    MetricsUnavailable {
        failed: usize,
    },
    /// The usage ratio is within the tolerance of 1: replicas kept.
    WithinTolerance,
    /// The metrics recommend exactly the current count.
    AtRecommendation,
    ScaleUp,
    ScaleDown,
    /// A lower recommendation within the scale-up stabilization window holds replicas.
    ScaleUpStabilized,
    /// A higher recommendation within the scale-down stabilization window holds replicas.
    ScaleDownStabilized,
    /// A scale-up policy limits the rate.
    ScaleUpLimited,
    /// A scale-down policy limits the rate.
    ScaleDownLimited,
    /// The recommendation exceeds `maxReplicaCount`.
    TooManyReplicas {
        max: u32,
    },
    /// The recommendation is below the minimum (`max(minReplicaCount, 1)` for the HPA).
    TooFewReplicas {
        min: u32,
    },
}

impl Reason {
    /// Stable snake_case name.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Paused => "paused",
            Reason::PausedReplicas { .. } => "paused_replicas",
            Reason::Activated { .. } => "activated",
            Reason::ScaleOutPaused => "scale_out_paused",
            Reason::Deactivated { .. } => "deactivated",
            Reason::ScaleInPaused => "scale_in_paused",
            Reason::CoolingDown { .. } => "cooling_down",
            Reason::Idle => "idle",
            Reason::AwaitingHpaSync => "awaiting_hpa_sync",
            Reason::BelowMinReplicas { .. } => "below_min_replicas",
            Reason::AboveMaxReplicas { .. } => "above_max_replicas",
            Reason::MetricsUnavailable { .. } => "metrics_unavailable",
            Reason::WithinTolerance => "within_tolerance",
            Reason::AtRecommendation => "at_recommendation",
            Reason::ScaleUp => "scale_up",
            Reason::ScaleDown => "scale_down",
            Reason::ScaleUpStabilized => "scale_up_stabilized",
            Reason::ScaleDownStabilized => "scale_down_stabilized",
            Reason::ScaleUpLimited => "scale_up_limited",
            Reason::ScaleDownLimited => "scale_down_limited",
            Reason::TooManyReplicas { .. } => "too_many_replicas",
            Reason::TooFewReplicas { .. } => "too_few_replicas",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Paused => write!(f, "scaling is paused by annotation; replicas are left as they are"),
            Reason::PausedReplicas { replicas } => {
                write!(f, "scaling is paused by annotation at {replicas} replicas")
            }
            Reason::Activated { to } => {
                write!(f, "a trigger became active; scaling from zero/idle to {to}")
            }
            Reason::ScaleOutPaused => write!(f, "scaling out is paused by annotation"),
            Reason::Deactivated { to } => write!(
                f,
                "no trigger has been active for the cooldown period; scaling to {to}"
            ),
            Reason::ScaleInPaused => write!(f, "scaling in is paused by annotation"),
            Reason::CoolingDown { remaining_seconds } => write!(
                f,
                "no trigger is active; scaling to idle/zero in {remaining_seconds} s unless one becomes active"
            ),
            Reason::Idle => write!(f, "at zero/idle replicas and no trigger is active"),
            Reason::AwaitingHpaSync => {
                write!(f, "no change from activation and no HPA sync is due")
            }
            Reason::BelowMinReplicas { min } => {
                write!(f, "replicas are below the minimum; raising to {min}")
            }
            Reason::AboveMaxReplicas { max } => {
                write!(f, "replicas are above maxReplicaCount; lowering to {max}")
            }
            Reason::MetricsUnavailable { failed } => write!(
                f,
                "{failed} trigger(s) failed to report; keeping replicas (never scale down on missing data)"
            ),
            Reason::WithinTolerance => {
                write!(f, "the metric is within the tolerance of its target; keeping replicas")
            }
            Reason::AtRecommendation => write!(f, "the metrics recommend the current replica count"),
            Reason::ScaleUp => write!(f, "the metrics are above target; scaling up"),
            Reason::ScaleDown => write!(f, "all metrics are below target; scaling down"),
            Reason::ScaleUpStabilized => write!(
                f,
                "a lower recommendation within the scale-up stabilization window holds replicas"
            ),
            Reason::ScaleDownStabilized => write!(
                f,
                "a higher recommendation within the scale-down stabilization window holds replicas"
            ),
            Reason::ScaleUpLimited => {
                write!(f, "scaling up is limited by the scale-up policies")
            }
            Reason::ScaleDownLimited => {
                write!(f, "scaling down is limited by the scale-down policies")
            }
            Reason::TooManyReplicas { max } => {
                write!(f, "the recommendation is above maxReplicaCount {max}")
            }
            Reason::TooFewReplicas { min } => {
                write!(f, "the recommendation is below the minimum {min}")
            }
        }
    }
}

/// A call that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("{got} observations given for {expected} triggers")]
    ObservationCount { expected: usize, got: usize },
}

/// Which clocks are due in a round. KEDA polls its triggers for activation (0 ↔ 1) every
/// `pollingInterval`; the HPA controller queries the metric and decides 1 ↔ N every sync period
/// (`--horizontal-pod-autoscaler-sync-period`, 15 s by default). A round where both are due is
/// what [`decide`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// KEDA's poll: activation, deactivation after the cooldown, raising to `minReplicaCount`.
    pub activation: bool,
    /// An HPA sync: the replica calculation, its stabilization and rate policies.
    pub hpa: bool,
}

impl Round {
    pub const BOTH: Round = Round {
        activation: true,
        hpa: true,
    };
}

/// Decides the desired replica count. `observations[i]` belongs to `cfg.triggers[i]`; `now` is in
/// seconds on the caller's monotonic clock (the same clock as [`History::new`]).
pub fn decide(
    cfg: &ScalingConfig,
    observations: &[Observation],
    current_replicas: u32,
    history: &mut History,
    now: u64,
) -> Result<Decision, DecideError> {
    decide_round(
        cfg,
        observations,
        current_replicas,
        history,
        now,
        Round::BOTH,
    )
}

/// [`decide`] for a round where only some clocks are due: without `activation` nothing goes
/// 0 ↔ 1 and the cooldown is not refreshed; without `hpa` replicas stay unless activation moves
/// them. Both still count trigger failures (the HPA's metric query reaches the scaler, and
/// KEDA's fallback, too).
pub fn decide_round(
    cfg: &ScalingConfig,
    observations: &[Observation],
    current_replicas: u32,
    history: &mut History,
    now: u64,
    round: Round,
) -> Result<Decision, DecideError> {
    let n = cfg.triggers.len();
    if observations.len() != n {
        return Err(DecideError::ObservationCount {
            expected: n,
            got: observations.len(),
        });
    }
    history.failures.resize(n, 0);
    history.committed_offsets.resize(n, BTreeMap::new());
    let current = current_replicas;

    if cfg.pause.is_paused() {
        // KEDA stops the scale loop and deletes the HPA: the HPA's memory goes with it.
        history.hpa = HpaMemory::default();
        let (desired, reason) = match cfg.pause.paused_replicas {
            Some(replicas) => (replicas, Reason::PausedReplicas { replicas }),
            None => (current, Reason::Paused),
        };
        return Ok(Decision {
            desired,
            reason,
            active: false,
            fallback_active: false,
            triggers: Vec::new(),
        });
    }

    // 1–2: observations → metrics, with fallback.
    let mut metrics = Vec::with_capacity(n);
    let mut reports = Vec::with_capacity(n);
    for (i, (trigger, observation)) in cfg.triggers.iter().zip(observations).enumerate() {
        let (metric, report) = evaluate_trigger(
            trigger,
            cfg.fallback.as_ref(),
            observation,
            current,
            &mut history.failures[i],
            &mut history.committed_offsets[i],
        );
        metrics.push(metric);
        reports.push(report);
    }
    let is_active = reports.iter().any(|r| r.active);
    let is_error = reports
        .iter()
        .any(|r| matches!(r.outcome, TriggerOutcome::Failed(_)));
    let fallback_active = reports
        .iter()
        .any(|r| matches!(r.outcome, TriggerOutcome::Fallback(_)));
    let finish = |desired: u32, reason: Reason, reports: Vec<TriggerReport>| {
        Ok(Decision {
            desired,
            reason,
            active: is_active,
            fallback_active,
            triggers: reports,
        })
    };

    // 3: KEDA's scale executor.
    let min = cfg.min_replica_count;
    let hpa_min = min.max(1);
    let mut note = None;
    if !round.activation {
        // An HPA sync alone: at zero the HPA is disabled; above, it decides 1 ↔ N.
        if current == 0 {
            return finish(current, Reason::Idle, reports);
        }
    } else if is_active {
        if (cfg.idle_replica_count.is_some() && current < min) || current == 0 {
            if cfg.pause.scale_out {
                note = Some(Reason::ScaleOutPaused);
            } else {
                history.last_active = Some(now);
                return finish(hpa_min, Reason::Activated { to: hpa_min }, reports);
            }
        } else if !is_error {
            history.last_active = Some(now);
        }
    } else {
        let fallback_replicas = cfg.fallback.map(|f| f.replicas);
        let error_held = is_error && fallback_replicas != Some(0);
        let above_idle =
            cfg.idle_replica_count.is_some_and(|idle| current > idle) || (current > 0 && min == 0);
        if error_held {
            // An error never deactivates (KEDA's executor keeps replicas; the HPA lacks metrics).
        } else if above_idle {
            if cfg.pause.scale_in {
                note = Some(Reason::ScaleInPaused);
            } else {
                let deadline = match history.last_active {
                    None => history
                        .started_at
                        .saturating_add(u64::from(cfg.initial_cooldown_period_seconds)),
                    Some(at) => at.saturating_add(u64::from(cfg.cooldown_period_seconds)),
                };
                if deadline < now {
                    let to = cfg.idle_replica_count.unwrap_or(min);
                    return finish(to, Reason::Deactivated { to }, reports);
                }
                note = Some(Reason::CoolingDown {
                    remaining_seconds: deadline.saturating_add(1).saturating_sub(now),
                });
            }
        } else if cfg.idle_replica_count.is_none() && current < min {
            return finish(min, Reason::BelowMinReplicas { min }, reports);
        }
    }

    // 4: the HPA.
    if !round.hpa {
        return finish(current, note.unwrap_or(Reason::AwaitingHpaSync), reports);
    }
    let (desired, reason) = hpa(cfg, &metrics, current, &mut history.hpa, now);
    let reason = match note {
        Some(note) if desired == current => note,
        _ => reason,
    };
    finish(desired, reason, reports)
}

/// A metric as the HPA sees it, in milli-units.
#[derive(Debug, Clone, Copy)]
struct Metric {
    usage_milli: i64,
    target_milli: i64,
    metric_type: MetricType,
}

/// KEDA's `int64(v * 1000)` (saturating, like a checked conversion would).
fn to_milli(v: f64) -> i64 {
    (v * 1000.0) as i64
}

/// The values a successful observation yields.
struct Reading {
    activation: f64,
    scaling: f64,
    null_as_zero: bool,
}

fn evaluate_trigger(
    trigger: &TriggerScaling,
    fallback: Option<&Fallback>,
    observation: &Observation,
    current: u32,
    failures: &mut u32,
    offsets: &mut BTreeMap<String, i64>,
) -> (Option<Metric>, TriggerReport) {
    let target_milli = to_milli(trigger.threshold);
    match read(trigger, observation, offsets) {
        Ok(reading) => {
            *failures = 0;
            let active = reading.activation > trigger.activation_threshold;
            let metric = Metric {
                usage_milli: to_milli(reading.scaling),
                target_milli,
                metric_type: trigger.metric_type,
            };
            let report = TriggerReport {
                outcome: if reading.null_as_zero {
                    TriggerOutcome::NullAsZero
                } else {
                    TriggerOutcome::Value
                },
                activation_value: Some(reading.activation),
                metric_value: Some(reading.scaling),
                active,
                consecutive_failures: 0,
            };
            (Some(metric), report)
        }
        Err(why) => {
            *failures = failures.saturating_add(1);
            let substitute = fallback
                .filter(|f| *failures > f.failure_threshold)
                .and_then(|f| fallback_usage_milli(f, trigger, target_milli, current));
            match substitute {
                Some(usage_milli) => {
                    let report = TriggerReport {
                        outcome: TriggerOutcome::Fallback(why),
                        activation_value: None,
                        metric_value: Some(usage_milli as f64 / 1000.0),
                        active: true,
                        consecutive_failures: *failures,
                    };
                    let metric = Metric {
                        usage_milli,
                        target_milli,
                        metric_type: trigger.metric_type,
                    };
                    (Some(metric), report)
                }
                None => {
                    let report = TriggerReport {
                        outcome: TriggerOutcome::Failed(why),
                        activation_value: None,
                        metric_value: None,
                        active: false,
                        consecutive_failures: *failures,
                    };
                    (None, report)
                }
            }
        }
    }
}

/// Turns an observation into activation and scaling values, or says why the poll failed.
fn read(
    trigger: &TriggerScaling,
    observation: &Observation,
    offsets: &mut BTreeMap<String, i64>,
) -> Result<Reading, String> {
    let sample = match observation {
        Observation::Error(why) => return Err(why.clone()),
        Observation::Missing if trigger.ignore_null_values => {
            return Ok(Reading {
                activation: 0.0,
                scaling: 0.0,
                null_as_zero: true,
            })
        }
        Observation::Missing => {
            return Err("the source returned no data and ignoreNullValues is false".to_string())
        }
        Observation::Ok(sample) => sample,
    };
    if !sample.value.is_finite() {
        if trigger.ignore_null_values {
            return Ok(Reading {
                activation: 0.0,
                scaling: 0.0,
                null_as_zero: true,
            });
        }
        return Err(format!(
            "the source returned {} and ignoreNullValues is false",
            sample.value
        ));
    }
    let queue_count = sample.queue_count.or_else(|| {
        (!sample.queues.is_empty())
            .then_some(u32::try_from(sample.queues.len()).unwrap_or(u32::MAX))
    });
    if trigger.cap_at_queues && queue_count.is_none() {
        return Err(
            "capAtQueues needs the queue count, which the source did not report".to_string(),
        );
    }
    if trigger.exclude_persistent_lag && sample.queues.is_empty() && sample.value > 0.0 {
        return Err(
            "excludePersistentLag needs per-queue offsets, which the source did not report"
                .to_string(),
        );
    }
    if let Some(q) = sample.queues.iter().find(|q| !q.lag.is_finite()) {
        return Err(format!("queue {} reported lag {}", q.queue, q.lag));
    }

    let mut scaling = sample.value;
    if trigger.exclude_persistent_lag {
        let mut persistent = 0.0;
        for q in &sample.queues {
            match offsets.get(&q.queue) {
                Some(previous) if *previous == q.committed_offset => persistent += q.lag,
                _ => {
                    offsets.insert(q.queue.clone(), q.committed_offset);
                }
            }
        }
        scaling = (scaling - persistent).max(0.0);
    }
    if let (true, Some(queues)) = (trigger.cap_at_queues, queue_count) {
        let cap = f64::from(queues) * trigger.threshold;
        if scaling > cap {
            scaling = cap;
        }
    }
    Ok(Reading {
        activation: sample.value,
        scaling,
        null_as_zero: false,
    })
}

/// KEDA's `doFallback`: the metric that makes the HPA compute the fallback replica count.
fn fallback_usage_milli(
    fallback: &Fallback,
    trigger: &TriggerScaling,
    target_milli: i64,
    current: u32,
) -> Option<i64> {
    let mut replicas = f64::from(match fallback.behavior {
        FallbackBehavior::Static => fallback.replicas,
        FallbackBehavior::CurrentReplicas => current,
        FallbackBehavior::CurrentReplicasIfHigher => current.max(fallback.replicas),
        FallbackBehavior::CurrentReplicasIfLower => current.min(fallback.replicas),
    });
    if trigger.metric_type == MetricType::Value {
        // Divided by the ready replicas; KEDA fails the fallback when there are none.
        if current == 0 {
            return None;
        }
        replicas /= f64::from(current);
    }
    let target = target_milli as f64 / 1000.0;
    Some((target * 1000.0 * replicas) as i64)
}

/// Scale-up and scale-down tolerances.
#[derive(Clone, Copy)]
struct Tolerances {
    down: f64,
    up: f64,
}

impl Tolerances {
    fn is_within(self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// One metric's replica proposal and whether the tolerance kept the current count.
fn proposal(metric: &Metric, current: u32, tolerances: Tolerances) -> (i64, bool) {
    let usage = metric.usage_milli as f64;
    let target = metric.target_milli as f64;
    let current_f = f64::from(current);
    let (ratio, scaled) = match metric.metric_type {
        MetricType::AverageValue => (usage / (target * current_f), usage / target),
        MetricType::Value => (usage / target, usage / target * current_f),
    };
    if tolerances.is_within(ratio) {
        return (i64::from(current), true);
    }
    (scaled.ceil().clamp(0.0, f64::from(i32::MAX)) as i64, false)
}

/// The behavior the HPA runs with: the configured one, with KEDA's pause-scale-in/-out turning
/// the corresponding `selectPolicy` to `Disabled` (and creating a defaulted behavior if none).
fn effective_behavior(cfg: &ScalingConfig) -> Option<HpaBehavior> {
    let mut behavior = cfg.behavior.clone();
    if cfg.pause.scale_in {
        behavior
            .get_or_insert_with(HpaBehavior::kubernetes_default)
            .scale_down
            .select_policy = SelectPolicy::Disabled;
    }
    if cfg.pause.scale_out {
        behavior
            .get_or_insert_with(HpaBehavior::kubernetes_default)
            .scale_up
            .select_policy = SelectPolicy::Disabled;
    }
    behavior
}

/// Which bound clamped the stabilized recommendation.
#[derive(Clone, Copy)]
enum Limit {
    ScaleUpRate,
    Max,
    ScaleDownRate,
    Min,
}

/// The HPA controller's reconcile for this target.
fn hpa(
    cfg: &ScalingConfig,
    metrics: &[Option<Metric>],
    current: u32,
    memory: &mut HpaMemory,
    now: u64,
) -> (u32, Reason) {
    let behavior = effective_behavior(cfg);
    let max = cfg.max_replica_count;
    let hpa_min = cfg.min_replica_count.max(1);
    let current_i = i64::from(current);
    if let Some(b) = &behavior {
        prune_events(memory, b, now);
    }
    if !memory.initialized {
        memory.initialized = true;
        memory.recommendations.push((now, current_i));
    }

    if current == 0 {
        return (0, Reason::Idle);
    }
    if current > max {
        store_scale_event(memory, behavior.as_ref(), current, max, now);
        return (max, Reason::AboveMaxReplicas { max });
    }
    if current < hpa_min {
        store_scale_event(memory, behavior.as_ref(), current, hpa_min, now);
        return (hpa_min, Reason::BelowMinReplicas { min: hpa_min });
    }

    let tolerances = match &behavior {
        None => Tolerances {
            down: DEFAULT_TOLERANCE,
            up: DEFAULT_TOLERANCE,
        },
        Some(b) => Tolerances {
            down: b.scale_down.tolerance.unwrap_or(DEFAULT_TOLERANCE),
            up: b.scale_up.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        },
    };
    let failed = metrics.iter().filter(|m| m.is_none()).count();
    let mut recommendation: Option<(i64, bool)> = None;
    for metric in metrics.iter().flatten() {
        let p = proposal(metric, current, tolerances);
        if recommendation.is_none_or(|(best, _)| p.0 > best) {
            recommendation = Some(p);
        }
    }
    let Some((raw, within_tolerance)) = recommendation else {
        return (current, Reason::MetricsUnavailable { failed });
    };
    if failed > 0 && raw < current_i {
        return (current, Reason::MetricsUnavailable { failed });
    }

    let (stabilized, desired, limit) = match &behavior {
        None => normalize_legacy(
            memory,
            current_i,
            raw,
            i64::from(hpa_min),
            i64::from(max),
            now,
        ),
        Some(b) => normalize_with_behavior(
            memory,
            b,
            current_i,
            raw,
            i64::from(hpa_min),
            i64::from(max),
            now,
        ),
    };
    let desired_u = u32::try_from(desired.max(0)).unwrap_or(u32::MAX);
    if desired_u != current {
        store_scale_event(memory, behavior.as_ref(), current, desired_u, now);
    }

    let limit_reason = |limit: Option<Limit>| match limit {
        Some(Limit::Max) => Reason::TooManyReplicas { max },
        Some(Limit::Min) => Reason::TooFewReplicas { min: hpa_min },
        Some(Limit::ScaleUpRate) if cfg.pause.scale_out => Reason::ScaleOutPaused,
        Some(Limit::ScaleUpRate) => Reason::ScaleUpLimited,
        Some(Limit::ScaleDownRate) if cfg.pause.scale_in => Reason::ScaleInPaused,
        Some(Limit::ScaleDownRate) => Reason::ScaleDownLimited,
        None if desired > current_i => Reason::ScaleUp,
        None => Reason::ScaleDown,
    };
    let reason = if desired != current_i {
        limit_reason(limit)
    } else if raw < current_i && stabilized >= current_i {
        Reason::ScaleDownStabilized
    } else if raw > current_i && stabilized <= current_i {
        Reason::ScaleUpStabilized
    } else if raw != current_i {
        limit_reason(limit)
    } else if within_tolerance {
        Reason::WithinTolerance
    } else {
        Reason::AtRecommendation
    };
    (desired_u, reason)
}

/// `normalizeDesiredReplicas`: the HPA without `behavior`. Returns (stabilized, desired, limit).
fn normalize_legacy(
    memory: &mut HpaMemory,
    current: i64,
    raw: i64,
    min: i64,
    max: i64,
    now: u64,
) -> (i64, i64, Option<Limit>) {
    let window = u64::from(DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS);
    // A recommendation counts unless it is before the cutoff (`now - window`).
    memory
        .recommendations
        .retain(|(at, _)| at.saturating_add(window) >= now);
    let stabilized = memory
        .recommendations
        .iter()
        .map(|(_, r)| *r)
        .fold(raw, i64::max);
    memory.recommendations.push((now, raw));

    let scale_up_limit = (2 * current).max(4);
    let (max_allowed, up_limit) = if max > scale_up_limit {
        (scale_up_limit, Limit::ScaleUpRate)
    } else {
        (max, Limit::Max)
    };
    if stabilized < min {
        (stabilized, min, Some(Limit::Min))
    } else if stabilized > max_allowed {
        (stabilized, max_allowed, Some(up_limit))
    } else {
        (stabilized, stabilized, None)
    }
}

/// `normalizeDesiredReplicasWithBehaviors`. Returns (stabilized, desired, limit).
fn normalize_with_behavior(
    memory: &mut HpaMemory,
    behavior: &HpaBehavior,
    current: i64,
    raw: i64,
    min: i64,
    max: i64,
    now: u64,
) -> (i64, i64, Option<Limit>) {
    let up_window = u64::from(behavior.scale_up.stabilization_window_seconds);
    let down_window = u64::from(behavior.scale_down.stabilization_window_seconds);
    // A recommendation counts when it is after the cutoff (`now - window`).
    let mut up_recommendation = raw;
    let mut down_recommendation = raw;
    for (at, r) in &memory.recommendations {
        if at.saturating_add(up_window) > now {
            up_recommendation = up_recommendation.min(*r);
        }
        if at.saturating_add(down_window) > now {
            down_recommendation = down_recommendation.max(*r);
        }
    }
    let longest = up_window.max(down_window);
    memory
        .recommendations
        .retain(|(at, _)| at.saturating_add(longest) > now);
    memory.recommendations.push((now, raw));
    let stabilized = current.max(up_recommendation).min(down_recommendation);

    if stabilized > current {
        let limit = scale_up_limit(memory, &behavior.scale_up, current, now).max(current);
        let (max_allowed, reason) = if max > limit {
            (limit, Limit::ScaleUpRate)
        } else {
            (max, Limit::Max)
        };
        if stabilized > max_allowed {
            return (stabilized, max_allowed, Some(reason));
        }
    } else if stabilized < current {
        let limit = scale_down_limit(memory, &behavior.scale_down, current, now).min(current);
        let (min_allowed, reason) = if min < limit {
            (limit, Limit::ScaleDownRate)
        } else {
            (min, Limit::Min)
        };
        if stabilized < min_allowed {
            return (stabilized, min_allowed, Some(reason));
        }
    }
    (stabilized, stabilized, None)
}

/// `getReplicasChangePerPeriod`: the change recorded after `now - period`.
fn change_in_period(events: &[(u64, i64)], period: u32, now: u64) -> i64 {
    events
        .iter()
        .filter(|(at, _)| at.saturating_add(u64::from(period)) > now)
        .map(|(_, change)| *change)
        .sum()
}

/// `calculateScaleUpLimitWithScalingRules`.
fn scale_up_limit(memory: &HpaMemory, rules: &ScalingRules, current: i64, now: u64) -> i64 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current - change_in_period(&memory.scale_up_events, p.period_seconds, now)
            + change_in_period(&memory.scale_down_events, p.period_seconds, now);
        match p.kind {
            PolicyType::Pods => start + i64::from(p.value),
            // Rounded up so that a small count can always grow.
            PolicyType::Percent => {
                (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Disabled => current,
        SelectPolicy::Max => proposals.fold(i64::MIN, i64::max),
        SelectPolicy::Min => proposals.fold(i64::MAX, i64::min),
    }
}

/// `calculateScaleDownLimitWithBehaviors`.
fn scale_down_limit(memory: &HpaMemory, rules: &ScalingRules, current: i64, now: u64) -> i64 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current - change_in_period(&memory.scale_up_events, p.period_seconds, now)
            + change_in_period(&memory.scale_down_events, p.period_seconds, now);
        match p.kind {
            PolicyType::Pods => start - i64::from(p.value),
            // Go's int32(float64) truncates.
            PolicyType::Percent => (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64,
        }
    });
    match rules.select_policy {
        SelectPolicy::Disabled => current,
        // Max picks the policy allowing the largest change, i.e. the lowest count.
        SelectPolicy::Max => proposals.fold(i64::MAX, i64::min),
        SelectPolicy::Min => proposals.fold(i64::MIN, i64::max),
    }
}

/// `storeScaleEvent`: only kept when the HPA has a behavior (the legacy path never reads them).
fn store_scale_event(
    memory: &mut HpaMemory,
    behavior: Option<&HpaBehavior>,
    from: u32,
    to: u32,
    now: u64,
) {
    if behavior.is_none() {
        return;
    }
    let (from, to) = (i64::from(from), i64::from(to));
    if to > from {
        memory.scale_up_events.push((now, to - from));
    } else if to < from {
        memory.scale_down_events.push((now, from - to));
    }
}

/// Drops events no policy period can reach any more (the HPA marks them outdated and reuses them).
fn prune_events(memory: &mut HpaMemory, behavior: &HpaBehavior, now: u64) {
    let longest = |rules: &ScalingRules| {
        u64::from(
            rules
                .policies
                .iter()
                .map(|p| p.period_seconds)
                .max()
                .unwrap_or(0),
        )
    };
    let up = longest(&behavior.scale_up);
    let down = longest(&behavior.scale_down);
    memory
        .scale_up_events
        .retain(|(at, _)| at.saturating_add(up) > now);
    memory
        .scale_down_events
        .retain(|(at, _)| at.saturating_add(down) > now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Pause, ScalingPolicy};

    fn trigger(threshold: f64) -> TriggerScaling {
        TriggerScaling {
            threshold,
            activation_threshold: 0.0,
            metric_type: MetricType::AverageValue,
            ignore_null_values: true,
            cap_at_queues: false,
            exclude_persistent_lag: false,
        }
    }

    /// One trigger with threshold 30, no behavior (KEDA's default: the HPA's legacy path).
    fn cfg(min: u32, max: u32) -> ScalingConfig {
        ScalingConfig {
            min_replica_count: min,
            max_replica_count: max,
            idle_replica_count: None,
            cooldown_period_seconds: 300,
            initial_cooldown_period_seconds: 0,
            fallback: None,
            behavior: None,
            pause: Pause::default(),
            triggers: vec![trigger(30.0)],
        }
    }

    fn with_behavior(mut c: ScalingConfig, b: HpaBehavior) -> ScalingConfig {
        c.behavior = Some(b);
        c
    }

    fn default_behavior() -> HpaBehavior {
        HpaBehavior::kubernetes_default()
    }

    fn ok(v: f64) -> Observation {
        Observation::Ok(Sample::new(v))
    }

    fn err(why: &str) -> Observation {
        Observation::Error(why.to_string())
    }

    /// One poll: at `at` seconds, observe `obs`, expect `desired` with reason `label`.
    struct Step {
        at: u64,
        obs: Vec<Observation>,
        desired: u32,
        label: &'static str,
    }

    fn step(at: u64, obs: Observation, desired: u32, label: &'static str) -> Step {
        Step {
            at,
            obs: vec![obs],
            desired,
            label,
        }
    }

    /// Runs `steps` from `start` replicas, applying each decision before the next poll.
    fn run(name: &str, c: &ScalingConfig, start: u32, steps: &[Step]) -> (History, Vec<Decision>) {
        let mut history = History::new(0);
        let mut current = start;
        let mut decisions = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let d = decide(c, &s.obs, current, &mut history, s.at)
                .unwrap_or_else(|e| panic!("{name}: step {i}: {e}"));
            assert_eq!(
                (d.desired, d.reason.label()),
                (s.desired, s.label),
                "{name}: step {i} at t={} from {current}: {d:?}",
                s.at
            );
            current = d.desired;
            decisions.push(d);
        }
        (history, decisions)
    }

    #[test]
    fn arms_guide_ninety_messages_make_three_replicas() {
        run(
            "arms 90",
            &cfg(2, 10),
            2,
            &[step(15, ok(90.0), 3, "scale_up")],
        );
    }

    #[test]
    fn arms_guide_flood_without_behavior_follows_the_legacy_hpa_limit() {
        // No behavior in the ScaledObject → KEDA's HPA has none → max(2 × current, 4) per sync.
        run(
            "arms flood, legacy",
            &cfg(2, 10),
            2,
            &[
                step(15, ok(100_000.0), 4, "scale_up_limited"),
                step(30, ok(100_000.0), 8, "scale_up_limited"),
                step(45, ok(100_000.0), 10, "too_many_replicas"),
                step(60, ok(100_000.0), 10, "too_many_replicas"),
            ],
        );
    }

    #[test]
    fn arms_guide_flood_with_default_behavior_uses_percent_and_pods_policies() {
        // behavior: {} → scaleUp max(Percent 100, Pods 4) per 15 s: 2 → 6 → 10.
        let c = with_behavior(cfg(2, 10), default_behavior());
        run(
            "arms flood, behavior",
            &c,
            2,
            &[
                step(15, ok(100_000.0), 6, "scale_up_limited"),
                step(30, ok(100_000.0), 10, "too_many_replicas"),
            ],
        );
        // Within the same 15 s period the +4 already made counts against the limit.
        run(
            "arms flood, same period",
            &c,
            2,
            &[
                step(15, ok(100_000.0), 6, "scale_up_limited"),
                step(20, ok(100_000.0), 6, "scale_up_limited"),
                step(30, ok(100_000.0), 10, "too_many_replicas"),
            ],
        );
    }

    #[test]
    fn arms_guide_drained_backlog_waits_for_the_scale_down_window_then_returns_to_min() {
        let mut steps = vec![
            step(15, ok(100_000.0), 4, "scale_up_limited"),
            step(30, ok(100_000.0), 8, "scale_up_limited"),
            step(45, ok(100_000.0), 10, "too_many_replicas"),
            step(60, ok(100_000.0), 10, "too_many_replicas"),
        ];
        // Drained: the 300 s window still holds the flood's recommendation (recorded at t=60,
        // still counted at exactly t=360 by the legacy path).
        for at in (75..=360).step_by(15) {
            steps.push(step(at, ok(0.0), 10, "scale_down_stabilized"));
        }
        steps.push(step(375, ok(0.0), 2, "too_few_replicas"));
        steps.push(step(390, ok(0.0), 2, "too_few_replicas"));
        run("arms drained", &cfg(2, 10), 2, &steps);
    }

    #[test]
    fn the_initial_recommendation_is_recorded_once_per_hpa_lifetime() {
        // A poll gap longer than the window leaves no recommendation in it; the HPA does not
        // record the current count again, so the scale-down is not held.
        run(
            "gap",
            &cfg(1, 10),
            5,
            &[
                step(10, ok(60.0), 5, "scale_down_stabilized"),
                step(1000, ok(60.0), 2, "scale_down"),
            ],
        );
    }

    #[test]
    fn drained_backlog_with_behavior_scales_down_right_after_the_window() {
        let c = with_behavior(cfg(2, 10), default_behavior());
        run(
            "behavior drained",
            &c,
            10,
            &[
                step(0, ok(300.0), 10, "within_tolerance"),
                step(299, ok(0.0), 10, "scale_down_stabilized"),
                // The window is (now - 300, now]: the t=0 recommendation no longer counts.
                step(300, ok(0.0), 2, "too_few_replicas"),
            ],
        );
    }

    #[test]
    fn tolerance_of_ten_percent_keeps_replicas() {
        // From 3 replicas at threshold 30 (target total 90).
        let cases = [
            (95.0, 3, "within_tolerance"),
            (99.0, 3, "within_tolerance"), // ratio exactly 1.1
            (100.0, 4, "scale_up"),
            (82.0, 3, "within_tolerance"),
            (80.0, 3, "at_recommendation"), // ratio 0.89, but ceil(80 / 30) = 3
            (60.0, 3, "scale_down_stabilized"),
        ];
        for (value, desired, label) in cases {
            run(
                &format!("tolerance {value}"),
                &cfg(1, 10),
                3,
                &[step(10, ok(value), desired, label)],
            );
        }
    }

    #[test]
    fn behavior_tolerance_overrides_the_default() {
        let mut b = default_behavior();
        b.scale_up.tolerance = Some(0.2);
        run(
            "tolerance 0.2",
            &with_behavior(cfg(1, 10), b),
            3,
            &[step(10, ok(105.0), 3, "within_tolerance")],
        );
        run(
            "tolerance 0.1",
            &cfg(1, 10),
            3,
            &[step(10, ok(105.0), 4, "scale_up")],
        );
    }

    #[test]
    fn value_metric_type_scales_the_current_count_by_the_ratio() {
        let mut c = cfg(1, 20);
        c.triggers[0].metric_type = MetricType::Value;
        let cases = [
            (60.0, 8, "scale_up"),
            (33.0, 4, "within_tolerance"),
            (15.0, 4, "scale_down_stabilized"),
        ];
        for (value, desired, label) in cases {
            run(
                &format!("Value {value}"),
                &c,
                4,
                &[step(10, ok(value), desired, label)],
            );
        }
    }

    #[test]
    fn activation_from_zero_needs_a_value_above_the_activation_threshold() {
        struct Case {
            min: u32,
            activation: f64,
            value: f64,
            scale_out_paused: bool,
            desired: u32,
            label: &'static str,
        }
        let cases = [
            Case {
                min: 0,
                activation: 0.0,
                value: 5.0,
                scale_out_paused: false,
                desired: 1,
                label: "activated",
            },
            Case {
                min: 0,
                activation: 0.0,
                value: 0.0,
                scale_out_paused: false,
                desired: 0,
                label: "idle",
            },
            Case {
                min: 0,
                activation: 10.0,
                value: 10.0,
                scale_out_paused: false,
                desired: 0,
                label: "idle",
            },
            Case {
                min: 0,
                activation: 10.0,
                value: 10.5,
                scale_out_paused: false,
                desired: 1,
                label: "activated",
            },
            Case {
                min: 3,
                activation: 0.0,
                value: 5.0,
                scale_out_paused: false,
                desired: 3,
                label: "activated",
            },
            Case {
                min: 0,
                activation: 0.0,
                value: 5.0,
                scale_out_paused: true,
                desired: 0,
                label: "scale_out_paused",
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut c = cfg(case.min, 10);
            c.triggers[0].activation_threshold = case.activation;
            c.pause.scale_out = case.scale_out_paused;
            let (history, decisions) = run(
                &format!("activation {i}"),
                &c,
                0,
                &[step(10, ok(case.value), case.desired, case.label)],
            );
            assert_eq!(
                decisions[0].active,
                case.value > case.activation,
                "case {i}"
            );
            assert_eq!(
                history.last_active().is_some(),
                case.desired > 0,
                "case {i}"
            );
        }
    }

    #[test]
    fn scale_to_zero_waits_for_the_cooldown_after_the_last_active_poll() {
        run(
            "cooldown",
            &cfg(0, 10),
            2,
            &[
                step(10, ok(50.0), 2, "at_recommendation"),
                step(20, ok(0.0), 2, "cooling_down"),
                step(310, ok(0.0), 2, "cooling_down"), // 10 + 300 is not before 310
                step(311, ok(0.0), 0, "deactivated"),
                step(320, ok(0.0), 0, "idle"),
                step(330, ok(40.0), 1, "activated"),
            ],
        );
    }

    #[test]
    fn cooling_down_reports_the_remaining_seconds() {
        let c = cfg(0, 10);
        let mut h = History::new(0);
        decide(&c, &[ok(50.0)], 2, &mut h, 10).expect("decides");
        let d = decide(&c, &[ok(0.0)], 2, &mut h, 20).expect("decides");
        assert_eq!(
            d.reason,
            Reason::CoolingDown {
                remaining_seconds: 291
            }
        );
    }

    #[test]
    fn a_never_active_target_scales_to_zero_after_the_initial_cooldown() {
        let mut c = cfg(0, 10);
        c.initial_cooldown_period_seconds = 120;
        run(
            "initial cooldown",
            &c,
            3,
            &[
                step(100, ok(0.0), 3, "cooling_down"),
                step(121, ok(0.0), 0, "deactivated"),
            ],
        );
        run(
            "no initial cooldown",
            &cfg(0, 10),
            3,
            &[step(1, ok(0.0), 0, "deactivated")],
        );
    }

    #[test]
    fn idle_replica_count_is_used_below_min_replicas() {
        let mut c = cfg(2, 10);
        c.idle_replica_count = Some(0);
        run(
            "idle",
            &c,
            0,
            &[
                step(10, ok(5.0), 2, "activated"),
                step(20, ok(0.0), 2, "cooling_down"),
                step(311, ok(0.0), 0, "deactivated"),
                step(320, ok(0.0), 0, "idle"),
                step(330, ok(90.0), 2, "activated"),
            ],
        );
    }

    #[test]
    fn a_partial_trigger_error_does_not_refresh_the_last_active_time() {
        let mut c = cfg(0, 10);
        c.triggers.push(trigger(30.0));
        let (history, _) = run(
            "partial error",
            &c,
            1,
            &[
                Step {
                    at: 10,
                    obs: vec![ok(20.0), ok(20.0)],
                    desired: 1,
                    label: "at_recommendation",
                },
                Step {
                    at: 100,
                    obs: vec![ok(20.0), err("down")],
                    desired: 1,
                    label: "at_recommendation",
                },
                Step {
                    at: 311,
                    obs: vec![ok(0.0), ok(0.0)],
                    desired: 0,
                    label: "deactivated",
                },
            ],
        );
        assert_eq!(history.last_active(), Some(10));
    }

    #[test]
    fn failed_polls_keep_replicas_and_never_deactivate() {
        let cases = [
            ("error", err("connection refused")),
            ("missing, ignoreNullValues=false", Observation::Missing),
            ("NaN, ignoreNullValues=false", ok(f64::NAN)),
        ];
        for (name, obs) in cases {
            let mut c = cfg(0, 10);
            c.triggers[0].ignore_null_values = false;
            let (_, d) = run(
                name,
                &c,
                3,
                &[
                    step(400, obs.clone(), 3, "metrics_unavailable"),
                    step(800, obs, 3, "metrics_unavailable"),
                ],
            );
            assert!(
                matches!(d[1].triggers[0].outcome, TriggerOutcome::Failed(_)),
                "{name}"
            );
            assert_eq!(d[1].triggers[0].consecutive_failures, 2, "{name}");
        }
    }

    #[test]
    fn null_values_read_as_zero_when_ignored() {
        let cases = [
            ("missing", Observation::Missing),
            ("NaN", ok(f64::NAN)),
            ("+Inf", ok(f64::INFINITY)),
            ("-Inf", ok(f64::NEG_INFINITY)),
        ];
        for (name, obs) in cases {
            // min 0, never active: a zero reading deactivates at once (no initial cooldown).
            let (_, d) = run(name, &cfg(0, 10), 3, &[step(10, obs, 0, "deactivated")]);
            assert_eq!(
                d[0].triggers[0].outcome,
                TriggerOutcome::NullAsZero,
                "{name}"
            );
            assert_eq!(d[0].triggers[0].metric_value, Some(0.0), "{name}");
        }
    }

    fn with_fallback(
        mut c: ScalingConfig,
        failure_threshold: u32,
        replicas: u32,
        behavior: FallbackBehavior,
    ) -> ScalingConfig {
        c.fallback = Some(Fallback {
            failure_threshold,
            replicas,
            behavior,
        });
        c
    }

    #[test]
    fn fallback_starts_after_more_than_failure_threshold_consecutive_failures() {
        // The multiple-series error of a prometheus trigger is such a failure.
        let c = with_fallback(cfg(1, 10), 3, 6, FallbackBehavior::Static);
        let multiple = || err("prometheus query returned multiple elements");
        let (history, d) = run(
            "fallback",
            &c,
            4,
            &[
                step(15, multiple(), 4, "metrics_unavailable"),
                step(30, multiple(), 4, "metrics_unavailable"),
                step(45, multiple(), 4, "metrics_unavailable"),
                step(60, multiple(), 6, "scale_up"),
                step(75, ok(120.0), 6, "scale_down_stabilized"),
            ],
        );
        assert!(!d[2].fallback_active && d[3].fallback_active && !d[4].fallback_active);
        assert!(matches!(
            d[3].triggers[0].outcome,
            TriggerOutcome::Fallback(_)
        ));
        assert_eq!(d[3].triggers[0].metric_value, Some(180.0));
        assert_eq!(
            history.consecutive_failures(0),
            0,
            "a success resets the count"
        );
    }

    #[test]
    fn fallback_behaviors_pick_the_replica_count() {
        // Scale-down window 0 so the fallback count shows immediately; fallback.replicas = 6.
        let mut b = default_behavior();
        b.scale_down.stabilization_window_seconds = 0;
        let cases = [
            (FallbackBehavior::Static, 4, 6, "scale_up"),
            (FallbackBehavior::Static, 8, 6, "scale_down"),
            (FallbackBehavior::CurrentReplicas, 4, 4, "within_tolerance"),
            (FallbackBehavior::CurrentReplicasIfHigher, 4, 6, "scale_up"),
            (
                FallbackBehavior::CurrentReplicasIfHigher,
                8,
                8,
                "within_tolerance",
            ),
            (
                FallbackBehavior::CurrentReplicasIfLower,
                4,
                4,
                "within_tolerance",
            ),
            (FallbackBehavior::CurrentReplicasIfLower, 8, 6, "scale_down"),
        ];
        for (behavior, current, desired, label) in cases {
            let c = with_fallback(with_behavior(cfg(1, 10), b.clone()), 0, 6, behavior);
            let (_, d) = run(
                &format!("{behavior:?} from {current}"),
                &c,
                current,
                &[step(10, err("down"), desired, label)],
            );
            assert!(d[0].fallback_active && d[0].active);
        }
    }

    #[test]
    fn fallback_activates_a_target_at_zero() {
        let c = with_fallback(cfg(0, 10), 0, 6, FallbackBehavior::Static);
        run(
            "fallback from zero",
            &c,
            0,
            &[
                step(10, err("down"), 1, "activated"),
                step(25, err("down"), 4, "scale_up_limited"),
                step(40, err("down"), 6, "scale_up"),
            ],
        );
    }

    #[test]
    fn value_fallback_fails_without_ready_replicas() {
        let mut c = with_fallback(cfg(0, 10), 0, 6, FallbackBehavior::Static);
        c.triggers[0].metric_type = MetricType::Value;
        let (_, d) = run(
            "Value fallback at zero",
            &c,
            0,
            &[step(10, err("down"), 0, "idle")],
        );
        assert!(
            !d[0].fallback_active && matches!(d[0].triggers[0].outcome, TriggerOutcome::Failed(_))
        );
        // With replicas the fallback metric is divided by them: the HPA lands on 6.
        run(
            "Value fallback at 3",
            &c,
            3,
            &[step(10, err("down"), 6, "scale_up")],
        );
    }

    #[test]
    fn fallback_with_zero_replicas_does_not_hold_off_deactivation() {
        // KEDA's executor only holds replicas on error when fallback.replicas != 0.
        let c = with_fallback(cfg(0, 10), 5, 0, FallbackBehavior::Static);
        run(
            "fallback 0",
            &c,
            3,
            &[step(10, err("down"), 0, "deactivated")],
        );
    }

    #[test]
    fn missing_data_with_ignore_null_values_false_takes_the_fallback_path() {
        let mut c = with_fallback(cfg(1, 10), 0, 5, FallbackBehavior::Static);
        c.triggers[0].ignore_null_values = false;
        let (_, d) = run(
            "missing → fallback",
            &c,
            2,
            &[step(10, Observation::Missing, 4, "scale_up_limited")],
        );
        assert!(d[0].fallback_active);
        c.triggers[0].ignore_null_values = true;
        let (_, d) = run(
            "missing → zero",
            &c,
            2,
            &[step(10, Observation::Missing, 2, "scale_down_stabilized")],
        );
        assert!(!d[0].fallback_active);
    }

    #[test]
    fn paused_annotations_keep_or_pin_replicas() {
        let mut c = cfg(1, 10);
        c.pause.paused = true;
        let (_, d) = run("paused", &c, 5, &[step(10, ok(1000.0), 5, "paused")]);
        assert!(d[0].triggers.is_empty());
        c.pause.paused_replicas = Some(2);
        run(
            "paused-replicas",
            &c,
            5,
            &[step(10, ok(1000.0), 2, "paused_replicas")],
        );
        c.pause.paused = false;
        run(
            "paused-replicas alone",
            &c,
            5,
            &[step(10, ok(1000.0), 2, "paused_replicas")],
        );
    }

    #[test]
    fn unpausing_starts_a_fresh_hpa() {
        let c = cfg(1, 10);
        let mut paused = c.clone();
        paused.pause.paused_replicas = Some(4);
        let mut h = History::new(0);
        let mut current = 2;
        for at in [15, 30, 45] {
            current = decide(&c, &[ok(100_000.0)], current, &mut h, at)
                .expect("decides")
                .desired;
        }
        assert_eq!(current, 10);
        let d = decide(&paused, &[ok(100_000.0)], current, &mut h, 60).expect("decides");
        assert_eq!(d.desired, 4);
        // The flood's recommendations went with the deleted HPA: only the initial one counts.
        let d = decide(&c, &[ok(0.0)], 4, &mut h, 75).expect("decides");
        assert_eq!((d.desired, d.reason.label()), (4, "scale_down_stabilized"));
    }

    #[test]
    fn paused_scale_in_blocks_hpa_scale_down_and_deactivation() {
        let mut c = cfg(1, 10);
        c.pause.scale_in = true;
        run(
            "paused-scale-in, HPA",
            &c,
            5,
            &[
                step(10, ok(0.0), 5, "scale_down_stabilized"),
                step(400, ok(0.0), 5, "scale_in_paused"),
                step(410, ok(300.0), 10, "scale_up"),
            ],
        );
        let mut c = cfg(0, 10);
        c.pause.scale_in = true;
        run(
            "paused-scale-in, KEDA",
            &c,
            3,
            &[step(400, ok(0.0), 3, "scale_in_paused")],
        );
    }

    #[test]
    fn paused_scale_out_blocks_hpa_scale_up_but_not_scale_down() {
        let mut c = cfg(1, 10);
        c.pause.scale_out = true;
        c.behavior = Some({
            let mut b = default_behavior();
            b.scale_down.stabilization_window_seconds = 0;
            b
        });
        run(
            "paused-scale-out",
            &c,
            2,
            &[
                step(10, ok(1000.0), 2, "scale_out_paused"),
                step(20, ok(30.0), 1, "scale_down"),
            ],
        );
    }

    fn queue(name: &str, committed_offset: i64, lag: f64) -> QueueLag {
        QueueLag {
            queue: name.to_string(),
            committed_offset,
            lag,
        }
    }

    #[test]
    fn cap_at_queues_caps_replicas_at_the_queue_count() {
        let mut c = cfg(1, 20);
        c.triggers[0].threshold = 10.0;
        let flood = Sample::new(1000.0).with_queue_count(4);
        run(
            "uncapped",
            &c,
            3,
            &[step(
                10,
                Observation::Ok(flood.clone()),
                6,
                "scale_up_limited",
            )],
        );
        c.triggers[0].cap_at_queues = true;
        let (_, d) = run(
            "capped",
            &c,
            3,
            &[step(10, Observation::Ok(flood), 4, "scale_up")],
        );
        assert_eq!(d[0].triggers[0].metric_value, Some(40.0));
        assert_eq!(d[0].triggers[0].activation_value, Some(1000.0));
        // The per-queue entries give the count when queue_count is absent.
        let per_queue =
            Sample::new(1000.0).with_queues(vec![queue("q1", 1, 500.0), queue("q2", 1, 500.0)]);
        let (_, d) = run(
            "capped by entries",
            &c,
            3,
            &[step(
                10,
                Observation::Ok(per_queue),
                3,
                "scale_down_stabilized",
            )],
        );
        assert_eq!(d[0].triggers[0].metric_value, Some(20.0));
        let (_, d) = run(
            "no queue count",
            &c,
            3,
            &[step(10, ok(1000.0), 3, "metrics_unavailable")],
        );
        assert!(
            matches!(&d[0].triggers[0].outcome, TriggerOutcome::Failed(why) if why.contains("capAtQueues"))
        );
    }

    #[test]
    fn exclude_persistent_lag_ignores_stuck_queues_for_scaling_only() {
        let mut c = cfg(0, 10);
        c.triggers[0].threshold = 10.0;
        c.triggers[0].exclude_persistent_lag = true;
        // Scale-down window 0 so each poll's scaling value shows in the decision.
        let mut b = default_behavior();
        b.scale_down.stabilization_window_seconds = 0;
        c.behavior = Some(b);
        let poll = |q1: (i64, f64), q2: (i64, f64)| {
            Observation::Ok(
                Sample::new(q1.1 + q2.1)
                    .with_queues(vec![queue("t/b/0", q1.0, q1.1), queue("t/b/1", q2.0, q2.1)]),
            )
        };
        let (history, d) = run(
            "persistent lag",
            &c,
            2,
            &[
                // First sighting: everything counts (80 → 8, limited to 6).
                step(10, poll((100, 50.0), (200, 30.0)), 6, "scale_up_limited"),
                // q1 did not move: its 60 is excluded from scaling (20 left → 2).
                step(20, poll((100, 60.0), (210, 20.0)), 2, "scale_down"),
                // Both stuck: scaling value 0, but the trigger is still active.
                step(30, poll((100, 60.0), (210, 20.0)), 1, "too_few_replicas"),
            ],
        );
        assert_eq!(d[1].triggers[0].metric_value, Some(20.0));
        assert_eq!(d[1].triggers[0].activation_value, Some(80.0));
        assert_eq!(d[2].triggers[0].metric_value, Some(0.0));
        assert!(d[2].active);
        assert_eq!(history.last_active(), Some(30));
        let (_, d) = run(
            "no per-queue data",
            &c,
            2,
            &[step(10, ok(80.0), 2, "metrics_unavailable")],
        );
        assert!(
            matches!(&d[0].triggers[0].outcome, TriggerOutcome::Failed(why) if why.contains("excludePersistentLag"))
        );
    }

    #[test]
    fn a_stuck_queue_still_activates_from_zero() {
        let mut c = cfg(0, 10);
        c.triggers[0].exclude_persistent_lag = true;
        let stuck = || Observation::Ok(Sample::new(5.0).with_queues(vec![queue("q", 7, 5.0)]));
        let (history, d) = run(
            "stuck",
            &c,
            0,
            &[
                step(10, stuck(), 1, "activated"),
                step(400, stuck(), 1, "scale_down_stabilized"),
            ],
        );
        assert_eq!(d[1].triggers[0].metric_value, Some(0.0));
        assert_eq!(history.last_active(), Some(400));
    }

    fn rules(
        select: SelectPolicy,
        window: u32,
        policies: &[(PolicyType, u32, u32)],
    ) -> ScalingRules {
        ScalingRules {
            stabilization_window_seconds: window,
            select_policy: select,
            policies: policies
                .iter()
                .map(|&(kind, value, period_seconds)| ScalingPolicy {
                    kind,
                    value,
                    period_seconds,
                })
                .collect(),
            tolerance: None,
        }
    }

    #[test]
    fn scale_down_policies_limit_the_rate_per_period() {
        let pods_per_minute = HpaBehavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: rules(SelectPolicy::Max, 0, &[(PolicyType::Pods, 1, 60)]),
        };
        run(
            "Pods 1 / 60 s",
            &with_behavior(cfg(1, 10), pods_per_minute),
            10,
            &[
                step(100, ok(0.0), 9, "scale_down_limited"),
                step(130, ok(0.0), 9, "scale_down_limited"),
                step(160, ok(0.0), 8, "scale_down_limited"),
            ],
        );
        let half_per_minute = HpaBehavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: rules(SelectPolicy::Max, 0, &[(PolicyType::Percent, 50, 60)]),
        };
        run(
            "Percent 50 / 60 s (truncated)",
            &with_behavior(cfg(1, 10), half_per_minute),
            10,
            &[
                step(100, ok(0.0), 5, "scale_down_limited"),
                step(130, ok(0.0), 5, "scale_down_limited"),
                step(160, ok(0.0), 2, "scale_down_limited"),
                step(220, ok(0.0), 1, "too_few_replicas"),
            ],
        );
    }

    #[test]
    fn select_policy_chooses_between_policies() {
        let up = |select| HpaBehavior {
            scale_up: rules(
                select,
                0,
                &[(PolicyType::Pods, 4, 15), (PolicyType::Percent, 100, 15)],
            ),
            scale_down: ScalingRules::default_scale_down(),
        };
        let cases = [
            (SelectPolicy::Max, 20, "scale_up_limited"),
            (SelectPolicy::Min, 14, "scale_up_limited"),
            (SelectPolicy::Disabled, 10, "scale_up_limited"),
        ];
        for (select, desired, label) in cases {
            run(
                &format!("{select:?}"),
                &with_behavior(cfg(1, 100), up(select)),
                10,
                &[step(10, ok(3000.0), desired, label)],
            );
        }
        let down = |select| HpaBehavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: rules(
                select,
                0,
                &[(PolicyType::Pods, 2, 60), (PolicyType::Percent, 50, 60)],
            ),
        };
        let cases = [
            (SelectPolicy::Max, 5, "scale_down_limited"),
            (SelectPolicy::Min, 8, "scale_down_limited"),
            (SelectPolicy::Disabled, 10, "scale_down_limited"),
        ];
        for (select, desired, label) in cases {
            run(
                &format!("down {select:?}"),
                &with_behavior(cfg(1, 100), down(select)),
                10,
                &[step(10, ok(0.0), desired, label)],
            );
        }
    }

    #[test]
    fn scale_up_stabilization_takes_the_lowest_recent_recommendation() {
        let b = HpaBehavior {
            scale_up: rules(
                SelectPolicy::Max,
                60,
                &[(PolicyType::Pods, 4, 15), (PolicyType::Percent, 100, 15)],
            ),
            scale_down: ScalingRules::default_scale_down(),
        };
        run(
            "scale-up window",
            &with_behavior(cfg(1, 10), b),
            2,
            &[
                step(10, ok(300.0), 2, "scale_up_stabilized"),
                step(40, ok(300.0), 2, "scale_up_stabilized"),
                step(70, ok(300.0), 6, "scale_up_limited"),
            ],
        );
    }

    #[test]
    fn scale_down_stabilization_takes_the_highest_recent_recommendation() {
        let b = HpaBehavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: rules(SelectPolicy::Max, 60, &[(PolicyType::Percent, 100, 15)]),
        };
        run(
            "scale-down window",
            &with_behavior(cfg(1, 10), b),
            5,
            &[
                step(10, ok(150.0), 5, "within_tolerance"),
                step(40, ok(60.0), 5, "scale_down_stabilized"),
                step(69, ok(60.0), 5, "scale_down_stabilized"),
                // The window is (now - 60, now]: the t=10 recommendation of 5 drops out at t=70.
                step(70, ok(60.0), 2, "scale_down"),
            ],
        );
    }

    #[test]
    fn several_triggers_take_the_highest_proposal() {
        let mut c = cfg(1, 10);
        c.triggers.push(trigger(30.0));
        let two = |a: Observation, b: Observation| vec![a, b];
        let cases = [
            (
                "max of proposals",
                3,
                two(ok(60.0), ok(150.0)),
                5,
                "scale_up",
            ),
            (
                "failing trigger blocks scale-down",
                5,
                two(ok(0.0), err("down")),
                5,
                "metrics_unavailable",
            ),
            (
                "failing trigger does not block scale-up",
                3,
                two(ok(150.0), err("down")),
                5,
                "scale_up",
            ),
            (
                "all failing",
                3,
                two(err("a"), err("b")),
                3,
                "metrics_unavailable",
            ),
        ];
        for (name, start, obs, desired, label) in cases {
            run(
                name,
                &c,
                start,
                &[Step {
                    at: 400,
                    obs,
                    desired,
                    label,
                }],
            );
        }
    }

    #[test]
    fn replicas_outside_the_bounds_are_brought_back() {
        let inactive_below_min = cfg(3, 10);
        let cases = [
            (
                "above max",
                cfg(1, 10),
                12,
                ok(10_000.0),
                10,
                "above_max_replicas",
            ),
            (
                "below min, active",
                cfg(3, 10),
                1,
                ok(200.0),
                3,
                "below_min_replicas",
            ),
            (
                "below min, inactive",
                inactive_below_min.clone(),
                1,
                ok(0.0),
                3,
                "below_min_replicas",
            ),
            (
                "zero with min, inactive",
                inactive_below_min,
                0,
                ok(0.0),
                3,
                "below_min_replicas",
            ),
        ];
        for (name, c, start, obs, desired, label) in cases {
            run(name, &c, start, &[step(10, obs, desired, label)]);
        }
    }

    #[test]
    fn observations_must_match_the_triggers() {
        let mut h = History::new(0);
        let e = decide(&cfg(1, 10), &[ok(1.0), ok(2.0)], 1, &mut h, 10).expect_err("mismatch");
        assert_eq!(
            e,
            DecideError::ObservationCount {
                expected: 1,
                got: 2
            }
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_decisions() {
        let c = with_behavior(
            with_fallback(cfg(0, 10), 1, 3, FallbackBehavior::Static),
            default_behavior(),
        );
        let polls = [
            ok(0.0),
            ok(500.0),
            err("x"),
            err("x"),
            ok(f64::NAN),
            ok(40.0),
            Observation::Missing,
            ok(0.0),
        ];
        let replay = || {
            let mut h = History::new(0);
            let mut current = 1;
            let mut out = Vec::new();
            for (i, o) in polls.iter().enumerate() {
                let d = decide(
                    &c,
                    std::slice::from_ref(o),
                    current,
                    &mut h,
                    15 * i as u64 + 7,
                )
                .expect("decides");
                current = d.desired;
                out.push(d);
            }
            (out, h)
        };
        assert_eq!(replay(), replay());
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let c = with_behavior(cfg(0, 10), default_behavior());
        let mut h = History::new(1000);
        for (at, v) in [(1000, 100.0), (10, 0.0), (0, 500.0), (u64::MAX, 0.0)] {
            decide(&c, &[ok(v)], 3, &mut h, at).expect("decides");
        }
    }

    #[test]
    fn the_hpa_clock_decides_one_to_n_and_the_polling_clock_zero_to_one() {
        // min 0: activation is KEDA's; threshold 30 (AverageValue).
        let mut c = cfg(0, 10);
        let hpa_only = Round {
            activation: false,
            hpa: true,
        };
        let poll_only = Round {
            activation: true,
            hpa: false,
        };
        let mut h = History::new(0);
        // At zero, an HPA sync alone does nothing, however large the backlog.
        let d = decide_round(&c, &[ok(900.0)], 0, &mut h, 1, hpa_only).unwrap();
        assert_eq!((d.desired, d.reason), (0, Reason::Idle));
        // KEDA's poll activates to 1 and nothing more.
        let d = decide_round(&c, &[ok(900.0)], 0, &mut h, 2, poll_only).unwrap();
        assert_eq!((d.desired, d.reason), (1, Reason::Activated { to: 1 }));
        // A poll with no HPA sync due changes nothing at 1..N.
        let d = decide_round(&c, &[ok(90.0)], 1, &mut h, 3, poll_only).unwrap();
        assert_eq!((d.desired, d.reason), (1, Reason::AwaitingHpaSync));
        // The HPA's sync scales 1 → 3 without KEDA's poll.
        let d = decide_round(&c, &[ok(90.0)], 1, &mut h, 4, hpa_only).unwrap();
        assert_eq!(d.desired, 3);
        // An HPA sync never deactivates: inactive at 3, it goes to the HPA minimum (1), not 0.
        c.cooldown_period_seconds = 0;
        let d = decide_round(&c, &[ok(0.0)], 3, &mut h, 100, hpa_only).unwrap();
        assert!(d.desired >= 1, "{d:?}");
        // KEDA's poll after the cooldown does.
        let d = decide_round(&c, &[ok(0.0)], 1, &mut h, 200, poll_only).unwrap();
        assert_eq!((d.desired, d.reason), (0, Reason::Deactivated { to: 0 }));
        // Both due: what decide() does.
        let (mut h1, mut h2) = (History::new(0), History::new(0));
        for (t, v, cur) in [(1, 90.0, 1), (2, 300.0, 3), (3, 0.0, 10)] {
            let a = decide(&c, &[ok(v)], cur, &mut h1, t).unwrap();
            let b = decide_round(&c, &[ok(v)], cur, &mut h2, t, Round::BOTH).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn reason_labels_are_stable_snake_case_and_explained() {
        let all = [
            (Reason::Paused, "paused"),
            (Reason::PausedReplicas { replicas: 2 }, "paused_replicas"),
            (Reason::Activated { to: 1 }, "activated"),
            (Reason::ScaleOutPaused, "scale_out_paused"),
            (Reason::Deactivated { to: 0 }, "deactivated"),
            (Reason::ScaleInPaused, "scale_in_paused"),
            (
                Reason::CoolingDown {
                    remaining_seconds: 5,
                },
                "cooling_down",
            ),
            (Reason::Idle, "idle"),
            (Reason::AwaitingHpaSync, "awaiting_hpa_sync"),
            (Reason::BelowMinReplicas { min: 2 }, "below_min_replicas"),
            (Reason::AboveMaxReplicas { max: 10 }, "above_max_replicas"),
            (
                Reason::MetricsUnavailable { failed: 1 },
                "metrics_unavailable",
            ),
            (Reason::WithinTolerance, "within_tolerance"),
            (Reason::AtRecommendation, "at_recommendation"),
            (Reason::ScaleUp, "scale_up"),
            (Reason::ScaleDown, "scale_down"),
            (Reason::ScaleUpStabilized, "scale_up_stabilized"),
            (Reason::ScaleDownStabilized, "scale_down_stabilized"),
            (Reason::ScaleUpLimited, "scale_up_limited"),
            (Reason::ScaleDownLimited, "scale_down_limited"),
            (Reason::TooManyReplicas { max: 10 }, "too_many_replicas"),
            (Reason::TooFewReplicas { min: 1 }, "too_few_replicas"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (reason, label) in &all {
            assert_eq!(reason.label(), *label);
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
            assert!(seen.insert(*label), "{label} is used twice");
            assert!(
                reason.to_string().len() > 10,
                "{label} needs an explanation"
            );
        }
    }
}
