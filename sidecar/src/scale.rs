//! Reads and writes a workload's replica count through its `/scale` subresource, the way the
//! HorizontalPodAutoscaler controller and KEDA do, and records a Kubernetes Event for every change.
//!
//! # Design
//!
//! - **Target resolution** ([`ScaleTarget::new`]). `apps/v1` `Deployment` and `StatefulSet` are
//!   known statically; any other `kind`/`apiVersion` (an Argo Rollout, a custom resource with
//!   `subresources.scale`) is resolved with API discovery (`GET /apis/<group>/<version>`), and is
//!   refused unless it is namespaced and lists a `<plural>/scale` subresource. This is what the
//!   HPA controller needs too: it only ever talks to `/scale` (kubernetes
//!   `pkg/controller/podautoscaler/horizontal.go`, `scaleNamespacer`), and so does KEDA
//!   (`pkg/scaling/executor/scale_executor.go`, `updateScaleOnScaleTarget`). `new` then reads the
//!   scale once, so a missing target or a missing `get` permission fails at start-up.
//! - **Exclusive ownership** ([`ScaleTarget::ensure_not_managed`]). Two autoscalers on one target
//!   overwrite each other's `spec.replicas` every sync. The sidecar therefore refuses a target that
//!   an `autoscaling/v2` HorizontalPodAutoscaler in the namespace points at (its
//!   `spec.scaleTargetRef`: kind, name and API group), or that a KEDA `ScaledObject`
//!   (`keda.sh/v1alpha1`, looked for only when discovery shows that CRD) points at, with KEDA's
//!   `scaleTargetRef` defaults (`apps/v1`, `Deployment`). An HPA that KEDA owns is reported as
//!   KEDA's.
//! - **Conflict-safe writes** ([`ScaleTarget::scale`]). Read `/scale`, check that `spec.replicas`
//!   is still the `from` the caller decided on, then `PUT` (verb `update`) the Scale with the
//!   `metadata.resourceVersion` that was read: the apiserver answers 409 Conflict when the object
//!   changed in between (optimistic concurrency, as `kubectl scale --resource-version` and
//!   client-go's `RetryOnConflict` rely on). On 409 the scale is read again; if `spec.replicas`
//!   is still `from` (something else changed, e.g. an annotation or the Deployment's status) the
//!   write is retried, up to [`MAX_WRITE_ATTEMPTS`] times; if `spec.replicas` changed, someone
//!   else scaled the target and the decision is stale: [`ScaleError::ReplicasChanged`] carries
//!   the new value and re-deciding is the caller's job. Nothing is ever written over a replica
//!   count the caller did not see.
//! - **Events**. After a successful write an `events.k8s.io/v1` Event is created on the target
//!   (`regarding` = the target with its uid, so `kubectl describe` shows it; `reportingController`
//!   `rmq-sidecar`, `action` `Scale`, `reason` e.g. `ScaledUp`/`ScaledDown`, `note` = the message).
//!   It is a plain `create` with a unique name (`<target>.<unix-nanos hex>`, the naming of
//!   client-go's recorder) rather than kube-runtime's `Recorder`: the Recorder merges events with
//!   the same reason into a series by `patch` and keeps the *first* note, so the second "ScaledUp"
//!   would show the first one's numbers. Only `create` is needed. An Event that cannot be written
//!   is logged (warn) and does not fail `scale`: the replicas did change.
//! - **Errors** are classified per call with the verb, resource and namespace that was used, so a
//!   403 reads `forbidden: system:serviceaccount:default:rmq-sidecar may not update
//!   deployments/scale (API group "apps") in namespace default; ...`. [`ScaleError::cause`] gives
//!   a short stable label for metrics. 429 and 5xx answers and transport failures (refused,
//!   reset, timed out) are [`ScaleError::Unavailable`]. Observed on the test rig: an apiserver
//!   that is still starting may answer 403 for a granted call until its RBAC cache has synced, so
//!   a caller should treat `forbidden` at runtime like any failed tick (log, retry next period)
//!   and only fail hard on it at start-up.
//! - **Client** ([`client`]). An explicit kubeconfig file, or the usual inference (`$KUBECONFIG`,
//!   `~/.kube/config`, then the in-cluster ServiceAccount). Connect, read and write timeouts are
//!   set (with etcd down the apiserver holds requests for its 60 s request timeout) and the
//!   client's built-in retry of 429/503/504 (up to 15 attempts with backoff) is turned off: every
//!   caller here runs on a short period and retries on its next tick, and a leader must see a
//!   failed renewal quickly.
//!
//! RBAC used by this module (see `deploy/base/rbac.yaml`): `get`, `update` on `<plural>/scale`;
//! `list` on `autoscaling` `horizontalpodautoscalers`; `list` on `keda.sh` `scaledobjects` (only
//! when that CRD exists); `create` on `events.k8s.io` `events`. Discovery needs no grant
//! (`system:discovery` is bound to every authenticated user).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::discovery::Scope;
use kube::core::GroupVersionKind;
use kube::{Client, Config};

use crate::config::ScaleTargetRef;
use rmq_web::error_chain;

/// How often [`ScaleTarget::scale`] writes before giving up on 409 Conflicts that leave
/// `spec.replicas` unchanged.
pub const MAX_WRITE_ATTEMPTS: u32 = 5;

/// Default per-request timeout of [`client`] (connect, and each read/write on the connection).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `reportingController` of the Events this crate writes.
pub const REPORTING_CONTROLLER: &str = "rmq-sidecar";

/// Where the Role is defined, for error messages.
const RBAC_HINT: &str =
    "grant it in the sidecar's Role (deploy/base/rbac.yaml, or the Helm chart's templates/rbac.yaml)";

/// events.k8s.io/v1 limits (`ValidateEventCreate`).
const MAX_NOTE_BYTES: usize = 1024;
const MAX_REASON_CHARS: usize = 128;

/// Any failure of a Kubernetes call made by this crate (scaling, ownership checks, leader
/// election). `Display` is a complete sentence meant for logs; [`ScaleError::cause`] is the label
/// for metrics.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// 403 from the apiserver: the RBAC rule for `verb` on `resource` is missing.
    #[error("forbidden: {identity} may not {verb} {resource} (API group {group:?}) in namespace {namespace}; {RBAC_HINT}")]
    Forbidden {
        /// The user the apiserver named (`system:serviceaccount:<ns>:<name>`), or "the sidecar".
        identity: String,
        verb: &'static str,
        /// `<plural>` or `<plural>/<subresource>`, as in a Role rule.
        resource: String,
        /// API group, "" for core.
        group: String,
        namespace: String,
    },
    /// The target (or its kind) does not exist.
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The kind exists but cannot be scaled by this sidecar (no `/scale` subresource, cluster-scoped,
    /// a replica count out of range).
    #[error("unsupported target: {0}")]
    Unsupported(String),
    /// Another autoscaler already manages the target.
    #[error("managed: {target} is already scaled by {manager}; two autoscalers on one target overwrite each other's replicas. Remove that autoscaler or take this target out of rmq-sidecar's configuration")]
    Managed {
        /// `<kind> <namespace>/<name>` of the target.
        target: String,
        /// e.g. `HorizontalPodAutoscaler default/web (autoscaling/v2)`.
        manager: String,
    },
    /// `spec.replicas` is no longer the `from` the caller decided on: someone else scaled the
    /// target. Nothing was written; decide again from `current`.
    #[error("conflict: {target} has {current} replicas, not the {expected} this decision was based on (changed by someone else); nothing written, decide again")]
    ReplicasChanged {
        target: String,
        expected: u32,
        current: u32,
    },
    /// Every write attempt got 409 Conflict although `spec.replicas` stayed the same.
    #[error("conflict: {target} kept changing; {attempts} writes of /scale were rejected with 409 Conflict")]
    Conflict { target: String, attempts: u32 },
    /// The apiserver could not be reached or answered 429/5xx (down, restarting, etcd down,
    /// timeout).
    #[error("unavailable: {op}: {detail}")]
    Unavailable { op: String, detail: String },
    /// The client configuration could not be loaded.
    #[error("config: {0}")]
    Config(String),
    /// Any other API error.
    #[error("api: {op}: {detail}")]
    Api { op: String, detail: String },
}

impl ScaleError {
    /// Short stable label for metrics: `forbidden`, `not_found`, `unsupported`, `managed`,
    /// `conflict` (both [`ScaleError::ReplicasChanged`] and [`ScaleError::Conflict`]),
    /// `unavailable`, `config`, `api`.
    pub fn cause(&self) -> &'static str {
        match self {
            ScaleError::Forbidden { .. } => "forbidden",
            ScaleError::NotFound { .. } => "not_found",
            ScaleError::Unsupported(_) => "unsupported",
            ScaleError::Managed { .. } => "managed",
            ScaleError::ReplicasChanged { .. } | ScaleError::Conflict { .. } => "conflict",
            ScaleError::Unavailable { .. } => "unavailable",
            ScaleError::Config(_) => "config",
            ScaleError::Api { .. } => "api",
        }
    }
}

/// One Kubernetes call, for error messages.
pub(crate) struct Op<'a> {
    pub verb: &'static str,
    pub group: &'a str,
    /// `<plural>` or `<plural>/<subresource>`.
    pub resource: String,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

/// kubectl's notation: `get deployments.apps/scale default/web`,
/// `list horizontalpodautoscalers.autoscaling in namespace default`.
impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (plural, sub) = match self.resource.split_once('/') {
            Some((plural, sub)) => (plural, Some(sub)),
            None => (self.resource.as_str(), None),
        };
        write!(f, "{} {plural}", self.verb)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(sub) = sub {
            write!(f, "/{sub}")?;
        }
        match self.name {
            Some(name) => write!(f, " {}/{}", self.namespace, name),
            None => write!(f, " in namespace {}", self.namespace),
        }
    }
}

impl Op<'_> {
    /// Turns a client error of this call into a [`ScaleError`].
    pub(crate) fn error(&self, err: kube::Error) -> ScaleError {
        match err {
            kube::Error::Api(status) => {
                let code = status.code;
                if status.is_forbidden() {
                    tracing::debug!(op = %self, message = %status.message, "403 Forbidden");
                    ScaleError::Forbidden {
                        identity: user_in_message(&status.message)
                            .unwrap_or_else(|| "the sidecar".to_string()),
                        verb: self.verb,
                        resource: self.resource.clone(),
                        group: self.group.to_string(),
                        namespace: self.namespace.to_string(),
                    }
                } else if status.is_not_found() {
                    ScaleError::NotFound {
                        what: format!("{self}: {}", status.message),
                    }
                } else if code == 429 || code >= 500 {
                    ScaleError::Unavailable {
                        op: self.to_string(),
                        detail: format!("HTTP {code} {}: {}", status.reason, status.message),
                    }
                } else {
                    ScaleError::Api {
                        op: self.to_string(),
                        detail: format!("HTTP {code} {}: {}", status.reason, status.message),
                    }
                }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => ScaleError::Unavailable {
                op: self.to_string(),
                detail: error_chain(&err),
            },
            other => ScaleError::Api {
                op: self.to_string(),
                detail: error_chain(&other),
            },
        }
    }
}

/// `User "system:serviceaccount:default:rmq-sidecar" cannot ...` → the user.
fn user_in_message(message: &str) -> Option<String> {
    let rest = message.split_once("User \"")?.1;
    let user = rest.split_once('"')?.0;
    (!user.is_empty()).then(|| user.to_string())
}

/// Builds a client from `kubeconfig` (its current context), or, without one, from `$KUBECONFIG`
/// / `~/.kube/config` and then the in-cluster ServiceAccount, with [`DEFAULT_REQUEST_TIMEOUT`].
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ScaleError> {
    client_with_timeout(kubeconfig, DEFAULT_REQUEST_TIMEOUT).await
}

/// [`client`] with an explicit timeout for connecting and for each read and write. A request to
/// an apiserver that does not answer fails after about `timeout` with
/// [`ScaleError::Unavailable`].
pub async fn client_with_timeout(
    kubeconfig: Option<&Path>,
    timeout: Duration,
) -> Result<Client, ScaleError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                ScaleError::Config(format!(
                    "kubeconfig {}: {}",
                    path.display(),
                    error_chain(&e)
                ))
            })?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    ScaleError::Config(format!(
                        "kubeconfig {}: {}",
                        path.display(),
                        error_chain(&e)
                    ))
                })?
        }
        None => Config::infer().await.map_err(|e| {
            ScaleError::Config(format!(
                "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a cluster: {}",
                error_chain(&e)
            ))
        })?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // Count the read timeout from when the request was written, not from when a pooled
    // connection went idle.
    config.reset_reader_on_write = true;
    config.default_retry = false;
    Client::try_from(config)
        .map_err(|e| ScaleError::Config(format!("building the client: {}", error_chain(&e))))
}

/// The Event `reason` for a change from `from` to `to` replicas: `ScaledUp`, `ScaledDown` or
/// `Scaled`.
pub fn event_reason(from: u32, to: u32) -> &'static str {
    match to.cmp(&from) {
        std::cmp::Ordering::Greater => "ScaledUp",
        std::cmp::Ordering::Less => "ScaledDown",
        std::cmp::Ordering::Equal => "Scaled",
    }
}

/// A hook run between reading and writing `/scale` (argument: the attempt, from 1).
type BeforeWrite = Arc<dyn Fn(u32) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A namespaced workload whose replicas are read and written through `/scale`.
#[derive(Clone)]
pub struct ScaleTarget {
    client: Client,
    namespace: String,
    resource: ApiResource,
    name: String,
    api: Api<DynamicObject>,
    reporting_instance: String,
    before_write: Option<BeforeWrite>,
}

impl fmt::Debug for ScaleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScaleTarget")
            .field("namespace", &self.namespace)
            .field("resource", &self.resource)
            .field("name", &self.name)
            .field("reporting_instance", &self.reporting_instance)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ScaleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.resource.kind.to_ascii_lowercase(),
            self.namespace,
            self.name
        )
    }
}

impl ScaleTarget {
    /// Resolves `target.kind`/`target.api_version` (`apps/v1` Deployment and StatefulSet
    /// directly, anything else through discovery, which must show a namespaced resource with a
    /// `/scale` subresource) in `namespace`, then reads its scale once.
    ///
    /// Errors: [`ScaleError::NotFound`] for an unknown kind or a missing object,
    /// [`ScaleError::Unsupported`] for a kind without `/scale`, [`ScaleError::Forbidden`] when
    /// `get` on `<plural>/scale` is not granted.
    pub async fn new(
        client: Client,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> Result<Self, ScaleError> {
        let resource = resolve(&client, target).await?;
        let api = Api::namespaced_with(client.clone(), namespace, &resource);
        let this = ScaleTarget {
            client,
            namespace: namespace.to_string(),
            resource,
            name: target.name.clone(),
            api,
            reporting_instance: default_reporting_instance(),
            before_write: None,
        };
        this.read_scale().await?;
        Ok(this)
    }

    /// Sets the Events' `reportingInstance` (default: `$POD_NAME`, else `$HOSTNAME`, else
    /// `rmq-sidecar`).
    pub fn with_reporting_instance(mut self, instance: &str) -> Self {
        self.reporting_instance = instance.chars().take(128).collect();
        self
    }

    /// Test seam: runs `hook(attempt)` after each read of `/scale` and before the write that
    /// depends on it, so a test can change the object in between.
    #[doc(hidden)]
    pub fn set_before_write_hook<F, Fut>(&mut self, hook: F)
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.before_write = Some(Arc::new(move |attempt| Box::pin(hook(attempt))));
    }

    /// The resolved API resource (group, version, kind, plural).
    pub fn resource(&self) -> &ApiResource {
        &self.resource
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn scale_op(&self, verb: &'static str) -> Op<'_> {
        Op {
            verb,
            group: &self.resource.group,
            resource: format!("{}/scale", self.resource.plural),
            namespace: &self.namespace,
            name: Some(&self.name),
        }
    }

    async fn read_scale(&self) -> Result<Scale, ScaleError> {
        self.api.get_scale(&self.name).await.map_err(|e| {
            let op = self.scale_op("get");
            match op.error(e) {
                ScaleError::NotFound { .. } => ScaleError::NotFound {
                    what: format!("{self} does not exist"),
                },
                other => other,
            }
        })
    }

    fn replicas_of(&self, scale: &Scale) -> Result<u32, ScaleError> {
        let replicas = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        u32::try_from(replicas).map_err(|_| {
            ScaleError::Unsupported(format!("{self}: /scale reports spec.replicas {replicas}"))
        })
    }

    /// `spec.replicas` from the `/scale` subresource.
    pub async fn replicas(&self) -> Result<u32, ScaleError> {
        let scale = self.read_scale().await?;
        self.replicas_of(&scale)
    }

    /// Refuses a target that a HorizontalPodAutoscaler (`autoscaling/v2`) or, when the CRD is
    /// installed, a KEDA ScaledObject (`keda.sh/v1alpha1`) in the same namespace points at:
    /// [`ScaleError::Managed`] names it.
    pub async fn ensure_not_managed(&self) -> Result<(), ScaleError> {
        if let Some(manager) = self.keda_manager().await? {
            return Err(self.managed(manager));
        }
        let hpas: Api<HorizontalPodAutoscaler> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let list = hpas.list(&ListParams::default()).await.map_err(|e| {
            Op {
                verb: "list",
                group: "autoscaling",
                resource: "horizontalpodautoscalers".into(),
                namespace: &self.namespace,
                name: None,
            }
            .error(e)
        })?;
        for hpa in list {
            let Some(reference) = hpa.spec.as_ref().map(|s| &s.scale_target_ref) else {
                continue;
            };
            if !self.is_target(
                reference.api_version.as_deref(),
                &reference.kind,
                &reference.name,
            ) {
                continue;
            }
            let name = hpa.metadata.name.clone().unwrap_or_default();
            let keda_owner = hpa
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "ScaledObject" && o.api_version.starts_with("keda.sh/"));
            let manager = match keda_owner {
                Some(o) => format!(
                    "HorizontalPodAutoscaler {}/{name} of KEDA ScaledObject {}/{}",
                    self.namespace, self.namespace, o.name
                ),
                None => format!(
                    "HorizontalPodAutoscaler {}/{name} (autoscaling/v2)",
                    self.namespace
                ),
            };
            return Err(self.managed(manager));
        }
        Ok(())
    }

    fn managed(&self, manager: String) -> ScaleError {
        ScaleError::Managed {
            target: self.to_string(),
            manager,
        }
    }

    /// Whether a `scaleTargetRef` (`apiVersion` optional) designates this target.
    fn is_target(&self, api_version: Option<&str>, kind: &str, name: &str) -> bool {
        name == self.name
            && kind == self.resource.kind
            && api_version.is_none_or(|v| group_of(v) == self.resource.group)
    }

    /// The KEDA ScaledObject that targets this object, if the CRD exists and one does.
    async fn keda_manager(&self) -> Result<Option<String>, ScaleError> {
        let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
        let resource = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, _)) => resource,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(kube::Error::Discovery(_)) => return Ok(None),
            Err(e) => {
                return Err(Op {
                    verb: "discover",
                    group: "keda.sh",
                    resource: "scaledobjects".into(),
                    namespace: &self.namespace,
                    name: None,
                }
                .error(e))
            }
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            Op {
                verb: "list",
                group: "keda.sh",
                resource: "scaledobjects".into(),
                namespace: &self.namespace,
                name: None,
            }
            .error(e)
        })?;
        for so in list {
            let reference = &so.data["spec"]["scaleTargetRef"];
            let Some(name) = reference["name"].as_str() else {
                continue;
            };
            // KEDA's defaults for an omitted kind/apiVersion.
            let kind = reference["kind"].as_str().unwrap_or("Deployment");
            let api_version = reference["apiVersion"].as_str().unwrap_or("apps/v1");
            if self.is_target(Some(api_version), kind, name) {
                return Ok(Some(format!(
                    "KEDA ScaledObject {}/{} (keda.sh/v1alpha1)",
                    self.namespace,
                    so.metadata.name.as_deref().unwrap_or("")
                )));
            }
        }
        Ok(None)
    }

    /// Sets `spec.replicas` from `from` to `to` through `/scale`, then records an Event with
    /// `reason` (empty: [`event_reason`]`(from, to)`) and `message` as its note.
    ///
    /// Conflict safety: the Scale is read and written back with its `resourceVersion` (verb
    /// `update`), so a change in between makes the apiserver answer 409. Then:
    /// - if the current `spec.replicas` is not `from` (on the first read or after a 409), nothing
    ///   is written and [`ScaleError::ReplicasChanged`] carries the current value: someone else
    ///   scaled, the caller must decide again;
    /// - otherwise the write is retried with the new `resourceVersion`, up to
    ///   [`MAX_WRITE_ATTEMPTS`] writes, then [`ScaleError::Conflict`].
    ///
    /// `from == to` does nothing (no request, no Event). A failed Event is logged, not returned.
    pub async fn scale(
        &self,
        from: u32,
        to: u32,
        reason: &str,
        message: &str,
    ) -> Result<(), ScaleError> {
        if from == to {
            return Ok(());
        }
        let replicas = i32::try_from(to).map_err(|_| {
            ScaleError::Unsupported(format!("{self}: {to} replicas is out of range"))
        })?;
        for attempt in 1..=MAX_WRITE_ATTEMPTS {
            let mut scale = self.read_scale().await?;
            let current = self.replicas_of(&scale)?;
            if current != from {
                return Err(ScaleError::ReplicasChanged {
                    target: self.to_string(),
                    expected: from,
                    current,
                });
            }
            if let Some(hook) = &self.before_write {
                hook(attempt).await;
            }
            // `scale.metadata.resourceVersion` stays as read: the precondition.
            scale.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            match self
                .api
                .replace_scale(&self.name, &PostParams::default(), &scale)
                .await
            {
                Ok(written) => {
                    tracing::info!(target = %self, from, to, reason, message, "scaled");
                    let uid = written.metadata.uid.or(scale.metadata.uid);
                    let reason = if reason.is_empty() {
                        event_reason(from, to)
                    } else {
                        reason
                    };
                    if let Err(e) = self.record_event(uid, reason, message).await {
                        tracing::warn!(target = %self, error = %e, "could not record the scaling Event");
                    }
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    tracing::debug!(target = %self, attempt, "409 Conflict writing /scale; reading again");
                }
                Err(e) => return Err(self.scale_op("update").error(e)),
            }
        }
        Err(ScaleError::Conflict {
            target: self.to_string(),
            attempts: MAX_WRITE_ATTEMPTS,
        })
    }

    /// Creates an `events.k8s.io/v1` Event (type Normal, action `Scale`) regarding the target.
    pub async fn record_event(
        &self,
        uid: Option<String>,
        reason: &str,
        note: &str,
    ) -> Result<(), ScaleError> {
        let now = Timestamp::now();
        // client-go's recorder names events `<object>.<unix nanos in hex>`; keep it a valid
        // DNS subdomain (≤ 253 characters).
        let prefix: String = self.name.chars().take(200).collect();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Scale".to_string()),
            reason: Some(reason.chars().take(MAX_REASON_CHARS).collect()),
            note: Some(truncate_bytes(note, MAX_NOTE_BYTES).to_string()),
            type_: Some("Normal".to_string()),
            reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
            reporting_instance: Some(self.reporting_instance.clone()),
            regarding: Some(ObjectReference {
                api_version: Some(self.resource.api_version.clone()),
                kind: Some(self.resource.kind.clone()),
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid,
                ..Default::default()
            }),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        events
            .create(&PostParams::default(), &event)
            .await
            .map_err(|e| {
                Op {
                    verb: "create",
                    group: "events.k8s.io",
                    resource: "events".into(),
                    namespace: &self.namespace,
                    name: None,
                }
                .error(e)
            })?;
        Ok(())
    }
}

/// `kind`/`apiVersion` → API resource with a `/scale` subresource.
async fn resolve(client: &Client, target: &ScaleTargetRef) -> Result<ApiResource, ScaleError> {
    let (group, version) = match target.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", target.api_version.as_str()),
    };
    if group.is_empty() && version.is_empty() || version.contains('/') {
        return Err(ScaleError::Unsupported(format!(
            "scaleTargetRef.apiVersion {:?} is not <group>/<version> or <version>",
            target.api_version
        )));
    }
    if group == "apps" && version == "v1" {
        match target.kind.as_str() {
            "Deployment" => return Ok(ApiResource::erase::<Deployment>(&())),
            "StatefulSet" => return Ok(ApiResource::erase::<StatefulSet>(&())),
            _ => {}
        }
    }
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    let what = format!("kind {} in {}", target.kind, target.api_version);
    let (resource, caps) = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(ScaleError::NotFound {
                what: format!("{what}: the API group/version is not served"),
            })
        }
        Err(kube::Error::Discovery(e)) => {
            return Err(ScaleError::NotFound {
                what: format!("{what}: {e}"),
            })
        }
        Err(e) => {
            return Err(Op {
                verb: "discover",
                group,
                resource: target.kind.clone(),
                namespace: "(cluster)",
                name: None,
            }
            .error(e))
        }
    };
    if caps.scope != Scope::Namespaced {
        return Err(ScaleError::Unsupported(format!(
            "{what} is cluster-scoped; only namespaced workloads can be scaled"
        )));
    }
    if !caps
        .subresources
        .iter()
        .any(|(sub, _)| sub.plural == "scale")
    {
        return Err(ScaleError::Unsupported(format!(
            "{what} ({}) has no /scale subresource",
            resource.plural
        )));
    }
    Ok(resource)
}

/// `apps/v1` → `apps`, `v1` → "".
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn default_reporting_instance() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| REPORTING_CONTROLLER.to_string())
        .chars()
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_verb_resource_namespace_and_user() {
        let status = kube::core::Status::failure(
            "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:default:rmq-sidecar\" cannot update resource \"deployments/scale\" in API group \"apps\" in the namespace \"shop\"",
            "Forbidden",
        )
        .with_code(403);
        let op = Op {
            verb: "update",
            group: "apps",
            resource: "deployments/scale".into(),
            namespace: "shop",
            name: Some("web"),
        };
        let err = op.error(kube::Error::Api(status.boxed()));
        assert_eq!(err.cause(), "forbidden");
        assert_eq!(
            err.to_string(),
            "forbidden: system:serviceaccount:default:rmq-sidecar may not update deployments/scale (API group \"apps\") in namespace shop; grant it in the sidecar's Role (deploy/base/rbac.yaml, or the Helm chart's templates/rbac.yaml)"
        );
    }

    #[test]
    fn status_codes_map_to_causes() {
        let op = || Op {
            verb: "get",
            group: "apps",
            resource: "deployments/scale".into(),
            namespace: "ns",
            name: Some("x"),
        };
        let api = |code: u16, reason: &str| {
            kube::Error::Api(
                kube::core::Status::failure("m", reason)
                    .with_code(code)
                    .boxed(),
            )
        };
        assert_eq!(op().error(api(404, "NotFound")).cause(), "not_found");
        assert_eq!(
            op().error(api(503, "ServiceUnavailable")).cause(),
            "unavailable"
        );
        assert_eq!(op().error(api(504, "Timeout")).cause(), "unavailable");
        assert_eq!(
            op().error(api(429, "TooManyRequests")).cause(),
            "unavailable"
        );
        assert_eq!(op().error(api(422, "Invalid")).cause(), "api");
        assert_eq!(
            op().error(api(403, "Forbidden")).to_string(),
            "forbidden: the sidecar may not get deployments/scale (API group \"apps\") in namespace ns; grant it in the sidecar's Role (deploy/base/rbac.yaml, or the Helm chart's templates/rbac.yaml)"
        );
    }

    #[test]
    fn operations_read_like_kubectl() {
        let op = |verb, group, resource: &str, name| Op {
            verb,
            group,
            resource: resource.to_string(),
            namespace: "default",
            name,
        };
        assert_eq!(
            op("get", "apps", "deployments/scale", Some("web")).to_string(),
            "get deployments.apps/scale default/web"
        );
        assert_eq!(
            op("list", "autoscaling", "horizontalpodautoscalers", None).to_string(),
            "list horizontalpodautoscalers.autoscaling in namespace default"
        );
        assert_eq!(
            op("create", "", "events", None).to_string(),
            "create events in namespace default"
        );
    }

    #[test]
    fn event_reason_follows_direction() {
        assert_eq!(event_reason(1, 3), "ScaledUp");
        assert_eq!(event_reason(3, 1), "ScaledDown");
        assert_eq!(event_reason(2, 2), "Scaled");
    }

    #[test]
    fn group_of_core_and_named_groups() {
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("argoproj.io/v1alpha1"), "argoproj.io");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_bytes("abc", 10), "abc");
        assert_eq!(truncate_bytes("aé", 2), "a");
        assert_eq!(truncate_bytes("aéb", 3), "aé");
    }

    #[test]
    fn user_is_read_from_the_forbidden_message() {
        assert_eq!(
            user_in_message("x is forbidden: User \"u:1\" cannot get").as_deref(),
            Some("u:1")
        );
        assert_eq!(user_in_message("no user here"), None);
    }
}
