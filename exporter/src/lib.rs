//! rmq-exporter: RocketMQ consumer backlog as Prometheus metrics.
//!
//! Data flow: `source` (remoting admin protocol) → [`snapshot::Snapshot`] → [`collector::Cache`]
//! → `/metrics` ([`expose::prometheus`]). Collection runs in the background on a fixed interval
//! with a per-cycle deadline; the HTTP side only ever reads the last rendered page.

pub mod collector;
pub mod config;
pub mod expose;
pub mod http;
pub mod snapshot;
pub mod source;
