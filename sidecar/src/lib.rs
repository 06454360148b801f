//! rmq-sidecar library: scales a Kubernetes Deployment from RocketMQ consumer backlog with KEDA's
//! and the HorizontalPodAutoscaler's semantics, without KEDA or an HPA in the cluster.
//!
//! - [`config`] reads KEDA `ScaledObject` / `TriggerAuthentication` YAML as users already have it
//!   and validates it strictly (unknown or unsupported fields are errors).
//! - [`decide`] is the pure decision engine: observations + current replicas + history → desired
//!   replicas with a stable reason.

pub mod config;
pub mod decide;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod scale;
pub mod source;

/// `err: source: source ...`, without repeating a source whose text its parent already contains
/// (reqwest and kube wrap hyper's errors and often print them too).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
