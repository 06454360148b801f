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
