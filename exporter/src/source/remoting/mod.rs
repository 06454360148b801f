//! Apache RocketMQ 4.x/5.x through the remoting admin protocol.
//!
//! One cycle, per configured name-server list:
//!
//! 1. `GET_BROKER_CLUSTER_INFO` from the first name server that answers → broker sets; each is read
//!    on its master, or on its lowest-id slave while the master is gone. When every name server is
//!    down the last known broker list is used, so backlog keeps flowing.
//! 2. Per broker: `GET_ALL_SUBSCRIPTIONGROUP_CONFIG` → every group it knows,
//!    `GET_ALL_CONSUMER_OFFSET` → the topics each group has offsets on, then
//!    `GET_CONSUME_STATS(group, topic)` per pair (bounded concurrency). Per queue:
//!    ready = brokerOffset − pullOffset, inflight = pullOffset − consumerOffset (pullOffset exists
//!    from 5.1; before, it is the consumer offset, so inflight is 0 and ready is the whole lag).
//!    Rows are summed per (topic, group) across brokers.
//! 3. `GET_CONSUMER_CONNECTION_LIST` per group with offsets, at most every `connections_refresh`
//!    (clients heartbeat to every broker, so one broker suffices).
//! 4. Lag latency needs the store time of the message at the committed (and pull) offset. That
//!    time never changes for a given (queue, offset), so it is cached: only queues whose offset moved
//!    since the last cycle are looked up (`QUERY_CONSUME_QUEUE` → commit-log offset, then
//!    `VIEW_MESSAGE_BY_ID` → store timestamp; both read-only admin calls, unlike a pull, which would
//!    move the group's pull offset). Lookups per cycle are capped; a queue not yet looked up does not
//!    count towards the age until it is.
//!
//! A broker that fails keeps its last known rows, reported stale, until it answers again or leaves
//! the cluster. Groups and topics that are gone from a broker's answer are gone from the output.

pub mod acl;
pub mod client;
pub mod codec;
pub mod config;
pub mod fastjson;
pub mod protocol;
pub mod tls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all as futures_join_all;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use crate::snapshot::{unix_now, ConsumerSeries, QueueLag, SourceReport, TargetHealth};
use crate::source::{NameFilter, Source};
use client::{Client, ClientConfig, RpcError};
use codec::Command;
use protocol::{code, response, BrokerData};

#[derive(Debug, Clone)]
pub struct RemotingConfig {
    pub namesrv: Vec<String>,
    /// Overrides the `instance_id` label, which defaults to each broker's cluster name.
    pub instance_id: Option<String>,
    pub groups: NameFilter,
    pub topics: NameFilter,
    /// Requests in flight at once, across all brokers of this source.
    pub concurrency: usize,
    /// Store-time lookups per cycle for lag latency; 0 turns lag latency off.
    pub latency_lookups: usize,
    /// Also export per-queue lag and committed offset of queues with lag.
    pub queue_metrics: bool,
    /// How often each group's online clients are re-read.
    pub connections_refresh: std::time::Duration,
    /// How long a broker that the name server stopped listing keeps its last values (stale).
    pub forget_after: std::time::Duration,
    pub client: ClientConfig,
}

/// Where a message sits: the key of the store-time cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MessageAt {
    broker: String,
    topic: String,
    queue: i32,
    offset: i64,
}

/// One (topic, group) on one broker.
#[derive(Debug, Clone, Default)]
struct Row {
    ready: u64,
    inflight: u64,
    queues: u32,
    /// Queues with messages not yet committed: (queue, committed offset, lag).
    unconsumed: Vec<(i32, i64, u64)>,
    /// Queues with messages not yet delivered: (queue, pull offset).
    undelivered: Vec<(i32, i64)>,
    oldest_unconsumed: Option<i64>,
    oldest_undelivered: Option<i64>,
}

type RowKey = (String, String);

/// (instance_id, cluster, topic, group): one exported series.
type SeriesKey<'a> = (Arc<str>, Arc<str>, &'a str, &'a str);

struct BrokerState {
    cluster: Arc<str>,
    addr: String,
    rows: HashMap<RowKey, Row>,
    last_success: f64,
    up: bool,
    fresh: bool,
    /// Read on a slave: the name server lists no master for this broker set.
    slave: bool,
}

#[derive(Default)]
struct State {
    brokers: Vec<BrokerData>,
    namesrv_last_success: HashMap<String, f64>,
    namesrv_up: HashMap<String, bool>,
    by_broker: BTreeMap<String, BrokerState>,
    /// group → (online clients, unix seconds when read)
    connections: HashMap<String, (u64, f64)>,
    store_times: HashMap<MessageAt, i64>,
}

pub struct RemotingSource {
    name: String,
    config: RemotingConfig,
    client: Client,
    limit: Semaphore,
    state: tokio::sync::Mutex<State>,
}

/// A per-cycle context: counts RPCs and collects errors.
struct Cycle<'a> {
    source: &'a RemotingSource,
    rpcs: AtomicU64,
    errors: std::sync::Mutex<Vec<(&'static str, String)>>,
}

impl Cycle<'_> {
    async fn call(&self, addr: &str, cmd: Command) -> Result<Command, RpcError> {
        let _permit = self.source.limit.acquire().await;
        self.rpcs.fetch_add(1, Ordering::Relaxed);
        self.source.client.call(addr, cmd).await
    }
    /// Records an error; the collector logs them per cause when the cycle ends.
    fn error(&self, cause: &'static str, message: String) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((cause, message));
    }
}

impl RemotingSource {
    pub fn new(config: RemotingConfig) -> Self {
        let name = format!("remoting:{}", config.namesrv.join(";"));
        RemotingSource {
            name,
            client: Client::new(config.client.clone()),
            limit: Semaphore::new(config.concurrency.max(1)),
            config,
            state: Default::default(),
        }
    }

    /// Asks every name server; the first in configured order that answers gives the broker list.
    async fn cluster_info(&self, cycle: &Cycle<'_>, state: &mut State) -> bool {
        let asks = self.config.namesrv.iter().map(|addr| async move {
            let result = match cycle
                .call(addr, Command::request(code::GET_BROKER_CLUSTER_INFO))
                .await
            {
                Ok(resp) => protocol::cluster_info(&resp.body)
                    .map_err(|e| ("bad_body", format!("name server {addr}: {e}"))),
                Err(e) => Err((e.cause(), format!("name server: {e}"))),
            };
            (addr, result)
        });
        let mut found = None;
        let now = unix_now();
        for (addr, result) in futures_join_all(asks).await {
            match result {
                Ok(brokers) => {
                    state.namesrv_last_success.insert(addr.clone(), now);
                    state.namesrv_up.insert(addr.clone(), true);
                    found.get_or_insert(brokers);
                }
                Err((cause, message)) => {
                    state.namesrv_up.insert(addr.clone(), false);
                    cycle.error(cause, message);
                }
            }
        }
        match found {
            Some(brokers) => {
                state.brokers = brokers;
                true
            }
            None => false,
        }
    }

    async fn read_broker(
        &self,
        cycle: &Cycle<'_>,
        addr: &str,
    ) -> Result<HashMap<RowKey, Row>, (&'static str, String)> {
        let resp = cycle
            .call(
                addr,
                Command::request(code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
            )
            .await
            .map_err(|e| (e.cause(), e.to_string()))?;
        let groups = protocol::subscription_groups(&resp.body)
            .map_err(|e| ("bad_body", format!("{addr}: subscription groups: {e}")))?;
        // Which topics each group has offsets on, in one request. Asking GET_CONSUME_STATS per
        // (group, topic) spares the broker its scan of every committed offset per request
        // (ConsumerOffsetManager.whichTopicByConsumer), which is what limits a cycle with
        // thousands of groups. Without it (an error, a body over the frame cap), ask per group.
        let topics = match cycle
            .call(addr, Command::request(code::GET_ALL_CONSUMER_OFFSET))
            .await
        {
            Ok(resp) => match protocol::topics_by_group(&resp.body) {
                Ok(t) => Some(t),
                Err(e) => {
                    cycle.error("bad_body", format!("{addr}: consumer offsets: {e}"));
                    None
                }
            },
            Err(e) => {
                cycle.error(
                    e.cause(),
                    format!(
                        "{addr}: consumer offsets (falling back to one request per group): {e}"
                    ),
                );
                None
            }
        };
        let mut asks: Vec<(String, Option<String>)> = Vec::new();
        for g in groups.into_iter().filter(|g| self.config.groups.keeps(g)) {
            match &topics {
                None => asks.push((g, None)),
                Some(t) => {
                    for topic in t.get(&g).into_iter().flatten() {
                        if !topic.starts_with("%DLQ%") && self.config.topics.keeps(topic) {
                            asks.push((g.clone(), Some(topic.clone())));
                        }
                    }
                }
            }
        }
        let reads = asks.into_iter().map(|(g, topic)| async move {
            let mut cmd = Command::request(code::GET_CONSUME_STATS).with_field("consumerGroup", &g);
            if let Some(t) = &topic {
                cmd = cmd.with_field("topic", t);
            }
            let result = match cycle.call(addr, cmd).await {
                Ok(resp) => protocol::consume_stats(&resp.body)
                    .map_err(|e| ("bad_body", format!("{addr}: consume stats of {g}: {e}"))),
                Err(e) => Err((e.cause(), e.to_string())),
            };
            (g, result)
        });
        let mut rows: HashMap<RowKey, Row> = HashMap::new();
        // Futures are made as they are polled, never all at once: 10,000 groups must not mean
        // 10,000 request states in memory.
        let results: Vec<_> = stream::iter(reads)
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        for (group, result) in results {
            // One group failing (e.g. a permission it lacks) must not hide the others.
            let queues = match result {
                Ok(q) => q,
                Err((cause, message)) => {
                    cycle.error(cause, message);
                    continue;
                }
            };
            for q in queues {
                if q.topic.starts_with("%DLQ%") || !self.config.topics.keeps(&q.topic) {
                    continue;
                }
                let broker_offset = q.broker_offset.max(0);
                let committed = q.consumer_offset.clamp(0, broker_offset);
                let pull = q
                    .pull_offset
                    .unwrap_or(committed)
                    .clamp(committed, broker_offset);
                let row = rows.entry((q.topic, group.clone())).or_default();
                row.ready += (broker_offset - pull) as u64;
                row.inflight += (pull - committed) as u64;
                row.queues += 1;
                if committed < broker_offset {
                    let lag = (broker_offset - committed) as u64;
                    row.unconsumed.push((q.queue_id, committed, lag));
                }
                if pull < broker_offset {
                    row.undelivered.push((q.queue_id, pull));
                }
            }
        }
        Ok(rows)
    }

    async fn connections(&self, cycle: &Cycle<'_>, addr: &str, group: &str) -> Option<u64> {
        let cmd =
            Command::request(code::GET_CONSUMER_CONNECTION_LIST).with_field("consumerGroup", group);
        let _permit = self.limit.acquire().await;
        cycle.rpcs.fetch_add(1, Ordering::Relaxed);
        match self.client.invoke(addr, cmd).await {
            Ok(resp) if resp.code == response::CONSUMER_NOT_ONLINE => Some(0),
            Ok(resp) if resp.code == response::SUCCESS => {
                match protocol::consumer_connections(&resp.body) {
                    Ok(n) => Some(n as u64),
                    Err(e) => {
                        cycle.error("bad_body", format!("{addr}: connections of {group}: {e}"));
                        None
                    }
                }
            }
            Ok(resp) => {
                cycle.error(
                    "remote_error",
                    format!(
                        "{addr}: connections of {group}: code {}: {}",
                        resp.code,
                        resp.remark.unwrap_or_default()
                    ),
                );
                None
            }
            Err(e) => {
                cycle.error(e.cause(), e.to_string());
                None
            }
        }
    }

    async fn store_time(&self, cycle: &Cycle<'_>, addr: &str, at: &MessageAt) -> Option<i64> {
        let cmd = Command::request(code::QUERY_CONSUME_QUEUE)
            .with_field("topic", &at.topic)
            .with_field("queueId", at.queue)
            .with_field("index", at.offset)
            .with_field("count", 1);
        let resp = cycle.call(addr, cmd).await.ok()?;
        let physical = protocol::consume_queue_physical_offset(&resp.body).ok()??;
        let cmd = Command::request(code::VIEW_MESSAGE_BY_ID)
            .with_field("topic", &at.topic)
            .with_field("offset", physical);
        let resp = cycle.call(addr, cmd).await.ok()?;
        protocol::message_store_timestamp(&resp.body)
    }

    async fn run(&self, deadline: Instant) -> SourceReport {
        let cycle = Cycle {
            source: self,
            rpcs: AtomicU64::new(0),
            errors: Default::default(),
        };
        let mut state = self.state.lock().await;
        let namesrv_ok =
            tokio::time::timeout_at(deadline.into(), self.cluster_info(&cycle, &mut state))
                .await
                .unwrap_or(false);

        // Which broker sets to read, and where: those the name server lists, and those it stopped
        // listing less than `forget_after` ago (a crashed broker unregisters at once, and its
        // last known backlog must stay visible, marked stale, until it returns).
        let now = unix_now();
        let mut targets: Vec<(String, String, Arc<str>)> = state
            .brokers
            .iter()
            .filter_map(|b| {
                Some((
                    b.name.clone(),
                    b.read_addr()?.to_string(),
                    Arc::from(b.cluster.as_str()),
                ))
            })
            .collect();
        let forget_before = now - self.config.forget_after.as_secs_f64();
        state.by_broker.retain(|name, b| {
            targets.iter().any(|t| &t.0 == name) || b.last_success >= forget_before
        });
        for (name, b) in &state.by_broker {
            if !targets.iter().any(|t| &t.0 == name) {
                targets.push((name.clone(), b.addr.clone(), b.cluster.clone()));
            }
        }
        if namesrv_ok {
            let addrs: HashSet<String> = targets
                .iter()
                .map(|t| t.1.clone())
                .chain(self.config.namesrv.iter().cloned())
                .collect();
            self.client.retain(&|a| addrs.contains(a)).await;
        }

        let reads = targets.iter().map(|(name, addr, _)| {
            let cycle = &cycle;
            async move {
                let r =
                    tokio::time::timeout_at(deadline.into(), self.read_broker(cycle, addr)).await;
                let r = r.unwrap_or_else(|_| {
                    Err(("deadline", format!("{addr}: cycle deadline reached")))
                });
                (name, r)
            }
        });
        let results = futures_join_all(reads).await;
        // Read on a slave: the name server lists the set without its master (a set it no longer
        // lists at all keeps what it was).
        let slaves: Vec<bool> = targets
            .iter()
            .map(
                |(name, _, _)| match state.brokers.iter().find(|b| &b.name == name) {
                    Some(b) => !b.has_master(),
                    None => state.by_broker.get(name).is_some_and(|b| b.slave),
                },
            )
            .collect();
        for (((name, result), (_, addr, cluster)), slave) in
            results.into_iter().zip(&targets).zip(slaves)
        {
            match result {
                Ok(rows) => {
                    state.by_broker.insert(
                        name.clone(),
                        BrokerState {
                            cluster: cluster.clone(),
                            addr: addr.clone(),
                            rows,
                            last_success: now,
                            up: true,
                            fresh: true,
                            slave,
                        },
                    );
                }
                Err((cause, message)) => {
                    cycle.error(cause, format!("broker {name}: {message}"));
                    let entry =
                        state
                            .by_broker
                            .entry(name.clone())
                            .or_insert_with(|| BrokerState {
                                cluster: cluster.clone(),
                                addr: addr.clone(),
                                rows: HashMap::new(),
                                last_success: 0.0,
                                up: false,
                                fresh: false,
                                slave,
                            });
                    entry.addr = addr.clone();
                    entry.slave = slave;
                    entry.up = false;
                    entry.fresh = false;
                }
            }
        }

        self.refresh_connections(&cycle, &mut state, &targets, deadline)
            .await;
        let lookups = self
            .refresh_store_times(&cycle, &mut state, &targets, deadline)
            .await;

        let mut report = SourceReport {
            rpcs: cycle.rpcs.load(Ordering::Relaxed),
            latency_lookups: lookups,
            ..Default::default()
        };
        self.assemble(&state, now, &mut report);
        report.errors = cycle.errors.into_inner().unwrap_or_else(|p| p.into_inner());
        report
    }

    async fn refresh_connections(
        &self,
        cycle: &Cycle<'_>,
        state: &mut State,
        targets: &[(String, String, Arc<str>)],
        deadline: Instant,
    ) {
        // Ask each group's first fresh broker, for groups not read within `connections_refresh`
        // (client counts change slowly; asking every group every cycle would double the RPCs).
        let now = unix_now();
        let refresh = self.config.connections_refresh.as_secs_f64();
        let mut ask: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, addr, _) in targets {
            if let Some(b) = state.by_broker.get(name).filter(|b| b.fresh) {
                for (_, group) in b.rows.keys() {
                    let due = state
                        .connections
                        .get(group)
                        .is_none_or(|(_, read_at)| now - read_at >= refresh);
                    if due {
                        ask.entry(group.as_str()).or_insert(addr.as_str());
                    }
                }
            }
        }
        let ask: Vec<(String, String)> = ask
            .into_iter()
            .map(|(g, a)| (g.to_string(), a.to_string()))
            .collect();
        let reads = ask.into_iter().map(|(group, addr)| async move {
            let n =
                tokio::time::timeout_at(deadline.into(), self.connections(cycle, &addr, &group))
                    .await
                    .ok()
                    .flatten();
            (group, n)
        });
        let answers: Vec<_> = stream::iter(reads)
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let known: HashSet<&str> = state
            .by_broker
            .values()
            .flat_map(|b| b.rows.keys().map(|k| k.1.as_str()))
            .collect();
        let mut connections: HashMap<String, (u64, f64)> = state
            .connections
            .iter()
            .filter(|(g, _)| known.contains(g.as_str()))
            .map(|(g, n)| (g.clone(), *n))
            .collect();
        for (group, n) in answers {
            if let Some(n) = n {
                connections.insert(group, (n, now));
            }
        }
        state.connections = connections;
    }

    async fn refresh_store_times(
        &self,
        cycle: &Cycle<'_>,
        state: &mut State,
        targets: &[(String, String, Arc<str>)],
        deadline: Instant,
    ) -> u64 {
        let addr_of: HashMap<&str, &str> = targets
            .iter()
            .map(|(n, a, _)| (n.as_str(), a.as_str()))
            .collect();
        let mut wanted: HashSet<MessageAt> = HashSet::new();
        for (broker, b) in state.by_broker.iter().filter(|(_, b)| b.fresh) {
            for ((topic, _), row) in &b.rows {
                let unconsumed = row
                    .unconsumed
                    .iter()
                    .map(|&(queue, offset, _)| (queue, offset));
                for (queue, offset) in unconsumed.chain(row.undelivered.iter().copied()) {
                    wanted.insert(MessageAt {
                        broker: broker.clone(),
                        topic: topic.clone(),
                        queue,
                        offset,
                    });
                }
            }
        }
        let mut store_times: HashMap<MessageAt, i64> = HashMap::new();
        let mut missing = Vec::new();
        for at in wanted {
            match state.store_times.get(&at) {
                Some(ts) => {
                    store_times.insert(at, *ts);
                }
                None => missing.push(at),
            }
        }
        missing.truncate(self.config.latency_lookups);
        let lookups = missing.len() as u64;
        let missing: Vec<(MessageAt, String)> = missing
            .into_iter()
            .filter_map(|at| {
                let addr = addr_of.get(at.broker.as_str())?.to_string();
                Some((at, addr))
            })
            .collect();
        let reads = missing.into_iter().map(|(at, addr)| async move {
            let ts = tokio::time::timeout_at(deadline.into(), self.store_time(cycle, &addr, &at))
                .await
                .ok()
                .flatten();
            (at, ts)
        });
        let found: Vec<_> = stream::iter(reads)
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        for (at, ts) in found {
            if let Some(ts) = ts {
                store_times.insert(at, ts);
            }
        }
        for (broker, b) in state.by_broker.iter_mut().filter(|(_, b)| b.fresh) {
            for ((topic, _), row) in b.rows.iter_mut() {
                let oldest = |queues: &mut dyn Iterator<Item = (i32, i64)>| {
                    queues
                        .filter_map(|(queue, offset)| {
                            store_times
                                .get(&MessageAt {
                                    broker: broker.clone(),
                                    topic: topic.clone(),
                                    queue,
                                    offset,
                                })
                                .copied()
                        })
                        .min()
                };
                row.oldest_unconsumed = oldest(&mut row.unconsumed.iter().map(|&(q, o, _)| (q, o)));
                row.oldest_undelivered = oldest(&mut row.undelivered.iter().copied());
            }
        }
        // Keep the entries of stale brokers too, so that they need no new lookups on recovery.
        for (at, ts) in state.store_times.drain() {
            if state.by_broker.get(&at.broker).is_some_and(|b| !b.fresh) {
                store_times.entry(at).or_insert(ts);
            }
        }
        state.store_times = store_times;
        lookups
    }

    fn assemble(&self, state: &State, now: f64, report: &mut SourceReport) {
        let now_ms = (now * 1000.0) as i64;
        let instance_of = |cluster: &Arc<str>| -> Arc<str> {
            match &self.config.instance_id {
                Some(id) => Arc::from(id.as_str()),
                None => cluster.clone(),
            }
        };
        let mut merged: BTreeMap<SeriesKey<'_>, ConsumerSeries> = BTreeMap::new();
        for (broker, b) in &state.by_broker {
            let instance = instance_of(&b.cluster);
            let broker: Arc<str> = Arc::from(broker.as_str());
            for ((topic, group), row) in &b.rows {
                let s = merged
                    .entry((instance.clone(), b.cluster.clone(), topic, group))
                    .or_insert_with(|| ConsumerSeries {
                        instance_id: instance.clone(),
                        cluster: b.cluster.clone(),
                        topic: topic.clone(),
                        consumer_group: group.clone(),
                        is_retry: topic.starts_with("%RETRY%"),
                        ready: 0,
                        inflight: 0,
                        lag_latency_ms: 0,
                        queueing_latency_ms: Some(0),
                        connections: Some(state.connections.get(group).map_or(0, |c| c.0)),
                        queues: Some(0),
                        lagging_queues: Vec::new(),
                    });
                s.ready += row.ready;
                s.inflight += row.inflight;
                s.queues = Some(s.queues.unwrap_or(0) + row.queues);
                let age = |ts: Option<i64>| ts.map(|t| (now_ms - t).max(0) as u64).unwrap_or(0);
                s.lag_latency_ms = s.lag_latency_ms.max(age(row.oldest_unconsumed));
                s.queueing_latency_ms =
                    s.queueing_latency_ms.max(Some(age(row.oldest_undelivered)));
                if self.config.queue_metrics {
                    s.lagging_queues.extend(row.unconsumed.iter().map(
                        |&(queue_id, committed, lag)| QueueLag {
                            broker: broker.clone(),
                            queue_id,
                            committed,
                            lag,
                        },
                    ));
                }
            }
        }
        report.series = merged.into_values().collect();

        let default_cluster: Arc<str> = state
            .by_broker
            .values()
            .next()
            .map(|b| b.cluster.clone())
            .unwrap_or_else(|| Arc::from(""));
        for addr in &self.config.namesrv {
            let last = state.namesrv_last_success.get(addr).copied().unwrap_or(0.0);
            report.targets.push(TargetHealth {
                instance_id: instance_of(&default_cluster),
                cluster: default_cluster.clone(),
                kind: "namesrv",
                target: addr.clone(),
                up: state.namesrv_up.get(addr).copied().unwrap_or(false),
                stale: false,
                slave: false,
                last_success: last,
                oldest_value_at: None,
                unread_groups: None,
            });
        }
        for (name, b) in &state.by_broker {
            report.targets.push(TargetHealth {
                instance_id: instance_of(&b.cluster),
                cluster: b.cluster.clone(),
                kind: "broker",
                target: name.clone(),
                up: b.up,
                stale: !b.fresh,
                slave: b.slave,
                last_success: b.last_success,
                oldest_value_at: (b.last_success > 0.0).then_some(b.last_success),
                unread_groups: None,
            });
        }
    }
}

impl Source for RemotingSource {
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
