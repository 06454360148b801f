//! The normalized result of one collection cycle, whatever the source.
//!
//! Every source (the remoting admin protocol, the ApsaraMQ OpenAPI) produces these rows; exposition
//! is written once, against this model. Counts are unsigned: a source clamps what would be
//! negative. A value a source cannot know is `None` and is not exported (a missing series says
//! "unknown"; a 0 would say "no backlog").

use std::sync::Arc;

/// Backlog of one consumer group on one topic of one instance, summed across brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSeries {
    pub instance_id: Arc<str>,
    pub cluster: Arc<str>,
    pub topic: String,
    pub consumer_group: String,
    pub is_retry: bool,
    /// Stored and not yet delivered to the group (max offset − pull offset).
    pub ready: u64,
    /// Delivered but not committed (pull offset − committed offset); 0 before Apache 5.1.
    pub inflight: u64,
    /// Age of the oldest unconsumed message, in milliseconds; 0 with no backlog or when unknown.
    pub lag_latency_ms: u64,
    /// Age of the oldest undelivered message, in milliseconds (None: the source cannot tell).
    pub queueing_latency_ms: Option<u64>,
    /// Online consumer clients of the group (None: not read).
    pub connections: Option<u64>,
    /// Queues of this topic that the group's offsets cover, a cap for scaling (None: the source
    /// has no per-queue view).
    pub queues: Option<u32>,
    /// Queues with lag, when per-queue metrics are on (for a scaler's persistent-lag exclusion).
    pub lagging_queues: Vec<QueueLag>,
}

/// One queue with lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLag {
    pub broker: Arc<str>,
    pub queue_id: i32,
    pub committed: i64,
    pub lag: u64,
}

impl ConsumerSeries {
    /// ready + inflight.
    pub fn lag(&self) -> u64 {
        self.ready.saturating_add(self.inflight)
    }
}

/// Health of one thing the exporter talks to (a name server, a broker, an ApsaraMQ instance).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetHealth {
    pub instance_id: Arc<str>,
    pub cluster: Arc<str>,
    /// "namesrv", "broker" or "apsaramq".
    pub kind: &'static str,
    /// The broker name, the name server address, or the ApsaraMQ instance id.
    pub target: String,
    pub up: bool,
    /// The values for this target are the last known ones, not this cycle's.
    pub stale: bool,
    /// A broker set read on a slave because the name server lists no master for it.
    pub slave: bool,
    /// Unix seconds of the last successful read; 0 if never.
    pub last_success: f64,
    /// Unix seconds when the oldest value still exported for this target was read (None: the
    /// target exports no values). With a request budget too small to read every group each
    /// cycle, groups are read in rotation and this says how far behind the slowest one is.
    pub oldest_value_at: Option<f64>,
    /// Groups known to exist but not read even once yet (rotation has not reached them).
    pub unread_groups: Option<u64>,
}

/// What one source returns for one cycle.
#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    pub series: Vec<ConsumerSeries>,
    pub targets: Vec<TargetHealth>,
    /// Each error of the cycle: its cause label (connect, tls, timeout, closed, bad_frame, bad_body,
    /// auth, remote_error, deadline, throttled, credentials) and a message for the log (the
    /// collector logs them, see [`crate::collector::ErrorLog`]).
    pub errors: Vec<(&'static str, String)>,
    /// (API action, error code) of each failed OpenAPI call, e.g.
    /// ("GetConsumerGroupLag", "Throttling.User"); empty for the remoting source.
    pub api_errors: Vec<(&'static str, String)>,
    pub rpcs: u64,
    pub latency_lookups: u64,
}

/// Everything `/metrics` shows, as of the end of one cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub series: Vec<ConsumerSeries>,
    pub targets: Vec<TargetHealth>,
    /// Unix seconds at the end of the cycle.
    pub taken_at: f64,
    pub cycle_seconds: f64,
    pub rpcs: u64,
    pub latency_lookups: u64,
}

/// Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
