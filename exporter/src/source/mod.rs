//! Sources of backlog numbers. Each one turns a backend into [`SourceReport`]s with uniform health.

pub mod remoting;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use crate::snapshot::SourceReport;

/// A backend the collector reads once per cycle.
pub trait Source: Send + Sync {
    /// A short name for logs, e.g. `remoting:127.0.0.1:9876`.
    fn name(&self) -> &str;
    /// Reads everything it can before `deadline`; what it could not read is reported as errors
    /// and, where it has them, as last-known values marked stale.
    fn collect(&self, deadline: Instant)
        -> Pin<Box<dyn Future<Output = SourceReport> + Send + '_>>;
}
