//! ApsaraMQ for RocketMQ 5.x through the Alibaba Cloud OpenAPI (2022-08-01).
//!
//! One cycle, per instance (instances in parallel, each with its own request budget):
//!
//! 1. `ListConsumerGroups`, every page → the groups that exist. Groups that are gone from a
//!    complete listing are gone from the output; a listing that fails or runs out of budget
//!    keeps the last known set.
//! 2. `GetConsumerGroupLag` per group, oldest read first → per topic (`topicLagMap`): ready =
//!    `readyCount`, inflight = `inflightCount`, lag latency = `deliveryDuration` × 1000 (seconds
//!    → milliseconds). `%RETRY%` topics are exported with `is_retry="true"`, `%DLQ%` topics are
//!    skipped, as for the remoting source. A group deleted between the listing and its lag read
//!    (`ConsumerGroup.NotFound`) is dropped.
//! 3. `ListConsumerConnections` per group, at most every `connections_refresh`, with whatever
//!    budget the lag reads left; while groups are read in rotation, one call in four.
//!
//! Every call takes a token of the instance's budget ([`budget::Budget`], `qps` per second) and
//! none is started that could not finish before the cycle's deadline. When the budget cannot
//! cover every group in one cycle, groups are read in rotation (the oldest first; the group list
//! is then re-read once a minute instead of every cycle), and
//! `rocketmq_exporter_oldest_value_age_seconds` says how old the oldest exported number is. A
//! failed read keeps the group's last values, marked stale, and counts the failure by cause and by
//! the API's error code. The API gives no per-queue offsets, so this source exports no queue
//! counts, per-queue lag or queueing latency (unknown, not 0).
//!
//! With discovery on, `ListInstances` is read every 5 minutes: every RUNNING instance of the
//! region that has the configured tags.

pub mod api;
pub mod budget;
pub mod config;
pub mod credentials;
pub mod sign;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::snapshot::{unix_now, ConsumerSeries, SourceReport, TargetHealth};
use crate::source::Source;
use api::{Api, ApiError, TopicLag};
use budget::Budget;
use config::{Instances, OpenApiConfig};
use credentials::Credentials;
use sign::AccessKey;

/// Unix time in whole seconds.
pub fn unix_seconds() -> i64 {
    unix_now() as i64
}

/// How often the group list is read again while groups are read in rotation (else: every cycle).
const RELIST_WHILE_ROTATING: f64 = 60.0;
/// How often the instance list of a discovering source is read again.
const DISCOVER_EVERY: f64 = 300.0;
/// Page sizes: the API's maxima (ListConsumerGroups 10–100, ListInstances 10–200).
const GROUP_PAGE: &str = "100";
const INSTANCE_PAGE: &str = "100";
/// A listing of more pages than this is a server that never stops paging.
const MAX_PAGES: u32 = 10_000;

#[derive(Debug, Clone, Default)]
struct Group {
    topics: Vec<TopicLag>,
    /// Unix seconds of the last successful lag read (0: never).
    read_at: f64,
    /// The last lag read failed: `topics` are last known values.
    failed: bool,
    connections: Option<u64>,
    connections_at: f64,
}

struct InstanceState {
    budget: Arc<Budget>,
    groups: BTreeMap<String, Group>,
    up: bool,
    list_failed: bool,
    /// Unix seconds of the last complete group listing.
    listed_at: f64,
    /// The last cycle could not read every group: they are read in rotation.
    rotating: bool,
    last_success: f64,
    /// Smoothed call latency in seconds, to stop starting calls that cannot end in time.
    latency: f64,
}

impl InstanceState {
    fn new(qps: f64) -> InstanceState {
        InstanceState {
            budget: Arc::new(Budget::new(qps)),
            groups: BTreeMap::new(),
            up: false,
            list_failed: false,
            listed_at: 0.0,
            rotating: false,
            last_success: 0.0,
            latency: 0.05,
        }
    }
}

#[derive(Default)]
struct State {
    instances: BTreeMap<String, InstanceState>,
    discovered_at: f64,
    discovery_up: bool,
    discovery_budget: Option<Arc<Budget>>,
}

/// What one cycle saw: calls made, errors by cause (with a message), errors by API code.
#[derive(Default)]
struct Cycle {
    rpcs: std::sync::atomic::AtomicU64,
    errors: Mutex<Vec<(&'static str, String)>>,
    api_errors: Mutex<Vec<(&'static str, String)>>,
}

impl Cycle {
    fn error(&self, action: &'static str, what: &str, e: &ApiError) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((e.cause(), format!("{action} {what}: {e}")));
        if let Some(code) = e.code() {
            self.api_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((action, code));
        }
    }
}

pub struct OpenApiSource {
    name: String,
    config: OpenApiConfig,
    api: Api,
    credentials: Arc<Credentials>,
    state: tokio::sync::Mutex<State>,
}

/// What a call of a cycle's work list reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Lag,
    Connections,
}

/// `every` items of `first`, then one of `second`, and so on; the rest of either at the end.
fn interleave<T>(
    first: impl Iterator<Item = T>,
    second: impl Iterator<Item = T>,
    every: usize,
) -> Vec<T> {
    let mut first = first.peekable();
    let mut second = second.peekable();
    let mut out = Vec::new();
    while first.peek().is_some() || second.peek().is_some() {
        out.extend(first.by_ref().take(every));
        out.extend(second.next());
    }
    out
}

/// The outcome of one budgeted call.
enum Call<T> {
    Done(Result<T, ApiError>),
    /// No budget left before the deadline: not attempted.
    Skipped,
}

impl OpenApiSource {
    pub fn new(config: OpenApiConfig, api: Api, credentials: Arc<Credentials>) -> Self {
        let what = match &config.instances {
            Instances::Listed(ids) => ids.join(","),
            Instances::Discover(_) => "discover".into(),
        };
        let name = format!("apsaramq:{}:{what}", config.region);
        let mut state = State::default();
        if let Instances::Listed(ids) = &config.instances {
            for id in ids {
                state
                    .instances
                    .insert(id.clone(), InstanceState::new(config.qps));
            }
        }
        OpenApiSource {
            name,
            config,
            api,
            credentials,
            state: tokio::sync::Mutex::new(state),
        }
    }

    /// One budgeted, signed GET.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        cycle: &Cycle,
        budget: &Budget,
        cutoff: Instant,
        deadline: Instant,
        key: &AccessKey,
        action: &'static str,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Call<bytes::Bytes> {
        if !budget.take(cutoff.into()).await {
            return Call::Skipped;
        }
        cycle
            .rpcs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = self
            .config
            .request_timeout
            .min(left.max(Duration::from_millis(1)));
        let mut r = self
            .api
            .get(&self.config.endpoint, key, action, path, query, timeout)
            .await;
        // A timeout shortened by the cycle's deadline is the deadline's doing, not the server's.
        if timeout < self.config.request_timeout {
            if let Err(ApiError::Transport { cause, message }) = &mut r {
                if *cause == "timeout" {
                    *cause = "deadline";
                    *message = format!(
                        "no answer within the {} ms left before the cycle deadline",
                        timeout.as_millis()
                    );
                }
            }
        }
        match &r {
            Ok(_) => budget.succeeded(),
            Err(ApiError::Throttled { retry_after, .. }) => {
                budget.throttled(*retry_after);
            }
            Err(_) => {}
        }
        Call::Done(r)
    }

    /// ListInstances, every page; None when the listing could not be completed.
    async fn discover(
        &self,
        cycle: &Cycle,
        budget: &Budget,
        deadline: Instant,
        key: &AccessKey,
        tags: &[(String, String)],
    ) -> Option<Vec<String>> {
        // The SDK sends `tags` as the string it is given; the API's tag parameters take a JSON
        // array of {key, value}. Instances that list their tags are checked here as well.
        let tags_json = if tags.is_empty() {
            String::new()
        } else {
            let list: Vec<serde_json::Value> = tags
                .iter()
                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                .collect();
            serde_json::Value::Array(list).to_string()
        };
        let mut found = Vec::new();
        let mut seen = 0u64;
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let mut query = vec![("pageNumber", page.as_str()), ("pageSize", INSTANCE_PAGE)];
            if !tags_json.is_empty() {
                query.push(("tags", tags_json.as_str()));
            }
            let body = match self
                .call(
                    cycle,
                    budget,
                    deadline,
                    deadline,
                    key,
                    "ListInstances",
                    &["instances"],
                    &query,
                )
                .await
            {
                Call::Done(Ok(b)) => b,
                Call::Done(Err(e)) => {
                    cycle.error("ListInstances", &format!("in {}", self.config.region), &e);
                    return None;
                }
                Call::Skipped => return None,
            };
            let p = match api::instances(&body) {
                Ok(p) => p,
                Err(e) => {
                    cycle.error("ListInstances", &format!("in {}", self.config.region), &e);
                    return None;
                }
            };
            seen += p.items.len() as u64;
            let done = p.items.is_empty() || seen >= p.total;
            found.extend(p.items.into_iter().filter(|i| {
                i.status.eq_ignore_ascii_case("RUNNING")
                    && (i.region_id.is_empty() || i.region_id == self.config.region)
                    && (i.tags.is_empty()
                        || tags
                            .iter()
                            .all(|(k, v)| i.tags.iter().any(|t| &t.key == k && &t.value == v)))
            }));
            if done {
                return Some(found.into_iter().map(|i| i.instance_id).collect());
            }
        }
        None
    }

    /// ListConsumerGroups, every page, filtered; None when the listing is incomplete.
    async fn list_groups(
        &self,
        cycle: &Cycle,
        inst: &InstanceState,
        id: &str,
        cutoff: Instant,
        deadline: Instant,
        key: &AccessKey,
    ) -> Option<HashSet<String>> {
        let mut groups = HashSet::new();
        let mut seen = 0u64;
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let query = [("pageNumber", page.as_str()), ("pageSize", GROUP_PAGE)];
            let path = ["instances", id, "consumerGroups"];
            let body = match self
                .call(
                    cycle,
                    &inst.budget,
                    cutoff,
                    deadline,
                    key,
                    "ListConsumerGroups",
                    &path,
                    &query,
                )
                .await
            {
                Call::Done(Ok(b)) => b,
                Call::Done(Err(e)) => {
                    cycle.error("ListConsumerGroups", &format!("of {id}"), &e);
                    return None;
                }
                Call::Skipped => return None,
            };
            match api::consumer_groups(&body) {
                Ok(p) => {
                    seen += p.items.len() as u64;
                    let done = p.items.is_empty() || seen >= p.total;
                    groups.extend(p.items.into_iter().filter(|g| self.config.groups.keeps(g)));
                    if done {
                        return Some(groups);
                    }
                }
                Err(e) => {
                    cycle.error("ListConsumerGroups", &format!("of {id}"), &e);
                    return None;
                }
            }
        }
        None
    }

    /// Reads one instance as far as budget and deadline allow.
    async fn read_instance(
        &self,
        cycle: &Cycle,
        id: &str,
        inst: &mut InstanceState,
        key: &AccessKey,
        deadline: Instant,
    ) {
        let errors_before = cycle.errors.lock().unwrap_or_else(|p| p.into_inner()).len();
        let margin = Duration::from_secs_f64((2.0 * inst.latency).clamp(0.05, 1.0));
        let cutoff = deadline.checked_sub(margin).unwrap_or(deadline);
        let mut succeeded = false;

        // The group list costs a call per 100 groups: while groups are read in rotation it is
        // re-read at most every RELIST_WHILE_ROTATING seconds, leaving the budget to lag reads.
        let relist = !inst.rotating
            || inst.groups.is_empty()
            || unix_now() - inst.listed_at >= RELIST_WHILE_ROTATING;
        if relist {
            let listed = self
                .list_groups(cycle, inst, id, cutoff, deadline, key)
                .await;
            inst.list_failed = listed.is_none();
            if let Some(listed) = listed {
                succeeded = true;
                inst.listed_at = unix_now();
                inst.groups.retain(|g, _| listed.contains(g));
                for g in listed {
                    inst.groups.entry(g).or_default();
                }
            }
        }

        // Lag reads, oldest first (never read comes first of all), and the online clients of
        // the groups due for them. With budget for all, lag comes first; while groups are read
        // in rotation, every fourth call reads online clients (once every group has been read
        // once), so that they are not starved.
        let now = unix_now();
        let mut lag: Vec<(f64, &str)> = inst
            .groups
            .iter()
            .map(|(g, s)| (s.read_at, g.as_str()))
            .collect();
        lag.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut conn: Vec<(f64, &str)> = match self.config.connections_refresh {
            Some(refresh) => inst
                .groups
                .iter()
                .filter(|(_, g)| now - g.connections_at >= refresh.as_secs_f64())
                .map(|(name, g)| (g.connections_at, name.as_str()))
                .collect(),
            None => Vec::new(),
        };
        conn.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let lag = lag.into_iter().map(|(_, g)| (Work::Lag, g.to_string()));
        let conn = conn
            .into_iter()
            .map(|(_, g)| (Work::Connections, g.to_string()));
        // Until every group has a number, lag reads come first whatever the budget.
        let unread = inst.groups.values().any(|g| g.read_at == 0.0);
        let work: Vec<(Work, String)> = if inst.rotating && !unread {
            interleave(lag, conn, 3)
        } else {
            lag.chain(conn).collect()
        };

        let budget = inst.budget.clone();
        // Groups with a call in flight, to name them if the deadline cuts the cycle short.
        let in_flight = &Mutex::new(std::collections::BTreeSet::new());
        let calls = work.into_iter().map(|(what, group)| {
            let budget = budget.clone();
            async move {
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(group.clone());
                let (action, tail) = match what {
                    Work::Lag => ("GetConsumerGroupLag", "lag"),
                    Work::Connections => ("ListConsumerConnections", "connections"),
                };
                let path = ["instances", id, "consumerGroups", group.as_str(), tail];
                let started = Instant::now();
                let r = self
                    .call(cycle, &budget, cutoff, deadline, key, action, &path, &[])
                    .await;
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&group);
                (what, group, r, started.elapsed())
            }
        });
        let mut pending = stream::iter(calls).buffer_unordered(self.config.concurrency);
        let mut read_all = true;
        loop {
            let (what, group, r, took) =
                match tokio::time::timeout_at(deadline.into(), pending.next()).await {
                    Ok(Some((what, group, Call::Done(r), took))) => (what, group, r, took),
                    Ok(Some((what, _, Call::Skipped, _))) => {
                        read_all &= what != Work::Lag;
                        continue;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // Calls still in flight at the deadline: their groups keep the last values.
                        let names = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                        let first = names.iter().next().map(String::as_str).unwrap_or("");
                        cycle.error(
                            "GetConsumerGroupLag",
                            &format!("of {id}/{first}"),
                            &ApiError::Transport {
                                cause: "deadline",
                                message: format!(
                                "cycle deadline reached with {} read(s) in flight, this one first",
                                names.len()
                            ),
                            },
                        );
                        read_all = false;
                        break;
                    }
                };
            inst.latency = 0.8 * inst.latency + 0.2 * took.as_secs_f64();
            if what == Work::Connections {
                match r.and_then(|b| api::consumer_connections(&b)) {
                    Ok(n) => {
                        succeeded = true;
                        if let Some(g) = inst.groups.get_mut(&group) {
                            g.connections = Some(n);
                            g.connections_at = unix_now();
                        }
                    }
                    // The lag read drops a deleted group.
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => {
                        cycle.error("ListConsumerConnections", &format!("of {id}/{group}"), &e)
                    }
                }
                continue;
            }
            match r.and_then(|body| api::consumer_group_lag(&body)) {
                Ok(topics) => {
                    succeeded = true;
                    if let Some(g) = inst.groups.get_mut(&group) {
                        g.topics = topics
                            .into_iter()
                            .filter(|t| {
                                !t.topic.starts_with("%DLQ%") && self.config.topics.keeps(&t.topic)
                            })
                            .collect();
                        g.read_at = unix_now();
                        g.failed = false;
                    }
                }
                Err(e @ ApiError::NotFound { .. }) => {
                    succeeded = true;
                    if let Some(code) = e.code() {
                        cycle
                            .api_errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(("GetConsumerGroupLag", code));
                    }
                    if inst.groups.remove(&group).is_some() {
                        tracing::info!(
                            source = %self.name,
                            instance = id,
                            group,
                            "consumer group deleted since it was listed; no longer exported"
                        );
                    }
                }
                Err(e) => {
                    cycle.error("GetConsumerGroupLag", &format!("of {id}/{group}"), &e);
                    if let Some(g) = inst.groups.get_mut(&group) {
                        g.failed = true;
                    }
                }
            }
        }
        drop(pending);
        inst.rotating = !read_all;

        let errors_after = cycle.errors.lock().unwrap_or_else(|p| p.into_inner()).len();
        inst.up = errors_after == errors_before && !inst.list_failed;
        if succeeded {
            inst.last_success = unix_now();
        }
    }

    async fn run(&self, deadline: Instant) -> SourceReport {
        let cycle = Cycle::default();
        let mut state = self.state.lock().await;
        let key = match self.credentials.get().await {
            Ok(k) => Some(k),
            Err(e) => {
                cycle
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((e.cause(), e.to_string()));
                None
            }
        };
        if let Some(key) = &key {
            if let Instances::Discover(tags) = &self.config.instances {
                if unix_now() - state.discovered_at >= DISCOVER_EVERY {
                    let budget = state
                        .discovery_budget
                        .get_or_insert_with(|| Arc::new(Budget::new(self.config.qps)))
                        .clone();
                    match self.discover(&cycle, &budget, deadline, key, tags).await {
                        Some(ids) => {
                            state.discovered_at = unix_now();
                            state.discovery_up = true;
                            let before: Vec<String> = state.instances.keys().cloned().collect();
                            state.instances.retain(|id, _| ids.contains(id));
                            for id in &ids {
                                state
                                    .instances
                                    .entry(id.clone())
                                    .or_insert_with(|| InstanceState::new(self.config.qps));
                            }
                            let after: Vec<String> = state.instances.keys().cloned().collect();
                            if before != after {
                                tracing::info!(source = %self.name, instances = ?after, "instances discovered");
                            }
                        }
                        None => state.discovery_up = false,
                    }
                }
            }
            let reads = state
                .instances
                .iter_mut()
                .map(|(id, inst)| self.read_instance(&cycle, id, inst, key, deadline));
            futures_util::future::join_all(reads).await;
        } else {
            for inst in state.instances.values_mut() {
                inst.up = false;
                for g in inst.groups.values_mut() {
                    g.failed = true;
                }
            }
        }

        let mut report = SourceReport {
            rpcs: cycle.rpcs.into_inner(),
            errors: cycle.errors.into_inner().unwrap_or_else(|p| p.into_inner()),
            api_errors: cycle
                .api_errors
                .into_inner()
                .unwrap_or_else(|p| p.into_inner()),
            ..Default::default()
        };
        self.assemble(&state, &mut report);
        report
    }

    fn assemble(&self, state: &State, report: &mut SourceReport) {
        for (id, inst) in &state.instances {
            let label: Arc<str> = Arc::from(id.as_str());
            for (group, g) in inst.groups.iter().filter(|(_, g)| g.read_at > 0.0) {
                for t in &g.topics {
                    report.series.push(ConsumerSeries {
                        instance_id: label.clone(),
                        cluster: label.clone(),
                        topic: t.topic.clone(),
                        consumer_group: group.clone(),
                        is_retry: t.topic.starts_with("%RETRY%"),
                        ready: t.ready,
                        inflight: t.inflight,
                        lag_latency_ms: t.lag_latency_ms,
                        queueing_latency_ms: None,
                        connections: g.connections,
                        queues: None,
                        lagging_queues: Vec::new(),
                    });
                }
            }
            let read = inst.groups.values().filter(|g| g.read_at > 0.0);
            report.targets.push(TargetHealth {
                instance_id: label.clone(),
                cluster: label.clone(),
                kind: "apsaramq",
                target: id.clone(),
                up: inst.up,
                stale: inst.list_failed || inst.groups.values().any(|g| g.failed),
                slave: false,
                last_success: inst.last_success,
                oldest_value_at: read.map(|g| g.read_at).min_by(f64::total_cmp),
                unread_groups: Some(
                    inst.groups.values().filter(|g| g.read_at == 0.0).count() as u64
                ),
            });
        }
        if matches!(self.config.instances, Instances::Discover(_)) {
            let region: Arc<str> = Arc::from(self.config.region.as_str());
            report.targets.push(TargetHealth {
                instance_id: region.clone(),
                cluster: region.clone(),
                kind: "apsaramq_discovery",
                target: self.config.region.clone(),
                up: state.discovery_up,
                stale: false,
                slave: false,
                last_success: state.discovered_at,
                oldest_value_at: None,
                unread_groups: None,
            });
        }
    }
}

impl Source for OpenApiSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn collect(
        &self,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = SourceReport> + Send + '_>> {
        Box::pin(self.run(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::interleave;

    #[test]
    fn interleave_gives_every_nth_call_to_the_second_list_and_keeps_both_tails() {
        let got = interleave([1, 2, 3, 4, 5, 6, 7].into_iter(), [10, 20].into_iter(), 3);
        assert_eq!(got, vec![1, 2, 3, 10, 4, 5, 6, 20, 7]);
        let got = interleave([1].into_iter(), [10, 20, 30].into_iter(), 3);
        assert_eq!(got, vec![1, 10, 20, 30]);
        let got = interleave(std::iter::empty(), std::iter::empty::<i32>(), 3);
        assert!(got.is_empty());
    }
}
