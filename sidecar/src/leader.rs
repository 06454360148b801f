//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one of several sidecar
//! replicas scales a target.
//!
//! # Design
//!
//! The protocol is client-go's `tools/leaderelection` with a `LeaseLock`, hand-written in a few
//! hundred lines (the lease record fields and their meaning are the same, so `kubectl get lease`
//! and other tools read it as usual):
//!
//! - **Acquire or renew** ([`Leader::step`], client-go `tryAcquireOrRenew`). Read the Lease. If it
//!   does not exist, create it holding it (`create`; a concurrent creator gets 409). If this
//!   identity holds it, write a fresh `renewTime`. If another identity holds it and the lease
//!   has expired, or nobody holds it, take it over: `holderIdentity` = this identity,
//!   `acquireTime` = `renewTime` = now, `leaseTransitions` + 1. Every write is an `update` carrying
//!   the `resourceVersion` that was read, so of two candidates writing the same version the
//!   apiserver accepts exactly one and answers 409 Conflict to the other (optimistic
//!   concurrency). That is what makes two leaders impossible in the apiserver's view.
//! - **Expiry, skew-safe.** A lease held by someone else counts as expired when this candidate
//!   has seen the same record (same `resourceVersion`) for a full `leaseDurationSeconds` on its
//!   own monotonic clock (client-go's `observedTime` rule: it needs no synchronised clocks,
//!   because the holder's last renewal happened before the candidate observed it). As a fast path
//!   for leases abandoned long ago, it also counts as expired when
//!   `renewTime + leaseDurationSeconds < now − leaseDurationSeconds` on the wall clock, i.e. the
//!   rule `renewTime + leaseDurationSeconds < now` with one lease duration of allowed clock skew.
//! - **Stepping down by itself.** A leader believes it leads only until
//!   `start of its last successful write + 2/3 × leaseDuration` (client-go's `RenewDeadline`,
//!   10 s of 15 s by default), measured on the monotonic clock. [`Leader::is_leader`] checks that
//!   deadline on every call, so leadership lapses on time even while a renewal request hangs or
//!   the task driving [`Leader::run`] is stuck or gone; a candidate cannot take over before
//!   `start + leaseDuration`. The remaining third is the margin for an action the leader started
//!   just before its deadline.
//! - **Timing** ([`Leader::run`]). A leader renews every `leaseDuration / 3`; after a failed
//!   renewal it retries every `leaseDuration / 6`; a follower retries every `leaseDuration / 3`
//!   (intervals measured between the starts of attempts).
//!   Transitions (acquired, renewed after a lapse, lost to another holder, stepped down because
//!   renewals failed) are logged at `info`/`warn`.
//! - [`Leader::release`] hands the lease back on shutdown (empty holder, `leaseDurationSeconds` 1,
//!   as client-go's `ReleaseOnCancel`), so a successor does not wait for expiry.
//!
//! RBAC: `get`, `create`, `update` on `coordination.k8s.io` `leases` in the namespace.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;

use crate::scale::{Op, ScaleError};

/// The resourceVersion of the record last seen and when it was first seen.
struct Observed {
    resource_version: String,
    at: Instant,
}

/// One participant in the election for one Lease.
pub struct Leader {
    api: Api<Lease>,
    namespace: String,
    lease_name: String,
    identity: String,
    lease_duration: Duration,
    /// Whether the last step left this identity holding the lease.
    leading: AtomicBool,
    /// Leadership is believed until `epoch + valid_until_ms` (monotonic).
    valid_until_ms: AtomicU64,
    epoch: Instant,
    observed: Mutex<Option<Observed>>,
    /// For logging a lapse once.
    believed: AtomicBool,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("namespace", &self.namespace)
            .field("lease_name", &self.lease_name)
            .field("identity", &self.identity)
            .field("lease_duration", &self.lease_duration)
            .field("is_leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl Leader {
    /// A participant named `identity` (unique per replica: the pod name) competing for Lease
    /// `namespace/lease_name`. `lease_duration` is written as `leaseDurationSeconds` (rounded up to
    /// whole seconds, at least 1).
    pub fn new(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        let whole_seconds = lease_duration.as_secs() + u64::from(lease_duration.subsec_nanos() > 0);
        let lease_duration = Duration::from_secs(whole_seconds.max(1));
        Leader {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            lease_duration,
            leading: AtomicBool::new(false),
            valid_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            observed: Mutex::new(None),
            believed: AtomicBool::new(false),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The lease duration in use (whole seconds).
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long after the start of a successful write leadership is believed: 2/3 of the lease.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    /// Whether this participant leads now: it holds the lease and its last successful write started
    /// less than [`Leader::renew_deadline`] ago. Two atomic loads and a clock read.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
            && self.now_ms() < self.valid_until_ms.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ms_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a successful write that started at `started`.
    fn hold(&self, started: Instant, resource_version: Option<String>) {
        let until = self.ms_since_epoch(started + self.renew_deadline());
        self.valid_until_ms.store(until, Ordering::Release);
        self.leading.store(true, Ordering::Release);
        if let Some(rv) = resource_version {
            self.observe(&rv, Instant::now());
        }
    }

    fn not_holding(&self) {
        self.leading.store(false, Ordering::Release);
    }

    /// Notes the record version seen; returns when it was first seen.
    fn observe(&self, resource_version: &str, now: Instant) -> Instant {
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match &*observed {
            Some(o) if o.resource_version == resource_version => o.at,
            _ => {
                *observed = Some(Observed {
                    resource_version: resource_version.to_string(),
                    at: now,
                });
                now
            }
        }
    }

    fn op(&self, verb: &'static str) -> Op<'_> {
        Op {
            verb,
            group: "coordination.k8s.io",
            resource: "leases".into(),
            namespace: &self.namespace,
            name: Some(&self.lease_name),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One acquire-or-renew attempt (see the module docs). `Ok(true)`: this identity holds the
    /// lease now. `Ok(false)`: someone else does, or a concurrent write won. An error leaves the
    /// belief to expire at its deadline.
    pub async fn step(&self) -> Result<bool, ScaleError> {
        let was = self.is_leader();
        let result = self.try_acquire_or_renew().await;
        let now = self.is_leader();
        if now && !was {
            tracing::info!(lease = %self.lease_name, identity = %self.identity, "became leader");
        }
        if !now && self.believed.load(Ordering::Relaxed) {
            match &result {
                Ok(_) => {
                    tracing::info!(lease = %self.lease_name, identity = %self.identity, "lost leadership")
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease_name, identity = %self.identity, error = %e,
                    "stepped down: could not renew the lease before its renew deadline")
                }
            }
        }
        self.believed.store(now, Ordering::Relaxed);
        result.map(|_| now)
    }

    async fn try_acquire_or_renew(&self) -> Result<(), ScaleError> {
        let started = Instant::now();
        let wall = Timestamp::now();
        let current = self.api.get_opt(&self.lease_name).await.map_err(|e| {
            self.not_holding_if_expired();
            self.op("get").error(e)
        })?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(MicroTime(wall)),
                    renew_time: Some(MicroTime(wall)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.hold(started, created.metadata.resource_version);
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {
                    self.not_holding();
                    Ok(())
                }
                Err(e) => Err(self.op("create").error(e)),
            };
        };

        // First seen no earlier than the GET's answer: the record was written before that.
        let resource_version = lease.metadata.resource_version.clone().unwrap_or_default();
        let first_seen = self.observe(&resource_version, Instant::now());
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewing = holder == self.identity;
        if !renewing && !holder.is_empty() {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.lease_duration, Duration::from_secs);
            let seen_long_enough = first_seen.elapsed() >= duration;
            let stale_on_wall_clock = spec.renew_time.as_ref().is_some_and(|r| {
                let skew_allowance =
                    SignedDuration::try_from(duration * 2).unwrap_or(SignedDuration::MAX);
                r.0.checked_add(skew_allowance)
                    .is_ok_and(|deadline| deadline < wall)
            });
            if !(seen_long_enough || stale_on_wall_clock) {
                if self.leading.swap(false, Ordering::AcqRel) {
                    tracing::info!(lease = %self.lease_name, holder = %holder, "the lease is held by another identity");
                }
                return Ok(());
            }
            tracing::info!(lease = %self.lease_name, previous = %holder, identity = %self.identity, "taking over an expired lease");
        }

        spec.renew_time = Some(MicroTime(wall));
        spec.lease_duration_seconds = Some(self.duration_seconds());
        if !renewing {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(wall));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        // metadata.resourceVersion is the one read: the write is conditional on it.
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.hold(started, written.metadata.resource_version);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                // Someone else wrote first; read again next time.
                self.not_holding();
                Ok(())
            }
            Err(e) => {
                self.not_holding_if_expired();
                Err(self.op("update").error(e))
            }
        }
    }

    fn not_holding_if_expired(&self) {
        if self.now_ms() >= self.valid_until_ms.load(Ordering::Acquire) {
            self.not_holding();
        }
    }

    /// Acquire/renew loop; never returns (abort its task to stop it; leadership then lapses at the
    /// renew deadline, or call [`Leader::release`] first).
    pub async fn run(self: Arc<Self>) {
        let period = self.lease_duration / 3;
        loop {
            // Attempts are spaced from their starts, so a slow apiserver does not stretch the
            // interval between renewals (the renew deadline counts from a write's start).
            let started = tokio::time::Instant::now();
            let result = self.step().await;
            let pause = match &result {
                Ok(_) => period,
                Err(e) => {
                    tracing::warn!(lease = %self.lease_name, identity = %self.identity, error = %e, "leader election step failed");
                    if self.leading.load(Ordering::Acquire) {
                        period / 2
                    } else {
                        period
                    }
                }
            };
            tokio::time::sleep_until(started + pause).await;
        }
    }

    /// Gives the lease up if this identity holds it: stops believing first, then writes an empty
    /// holder with `leaseDurationSeconds` 1 so another participant can take it at once.
    pub async fn release(&self) -> Result<(), ScaleError> {
        self.not_holding();
        self.valid_until_ms.store(0, Ordering::Release);
        self.believed.store(false, Ordering::Relaxed);
        let Some(mut lease) = self
            .api
            .get_opt(&self.lease_name)
            .await
            .map_err(|e| self.op("get").error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.lease_name, identity = %self.identity, "released the lease");
                Ok(())
            }
            // Someone else wrote it meanwhile: it is not ours to release any more.
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(()),
            Err(e) => Err(self.op("update").error(e)),
        }
    }
}
