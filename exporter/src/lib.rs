//! rmq-exporter: RocketMQ consumer backlog as Prometheus metrics.
//!
//! Data flow: `source` (remoting admin protocol) → [`snapshot::Snapshot`] →
//! [`expose::prometheus::Page`] in [`collector::Cache`] → `/metrics`. Collection runs in the
//! background on a fixed interval with a per-cycle deadline; the HTTP side only ever streams the
//! last cycle's page.

pub mod collector;
pub mod config;
pub mod expose;
pub mod http;
pub mod keda;
pub mod snapshot;
pub mod source;
