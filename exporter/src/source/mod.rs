//! Sources of backlog numbers. Each one turns a backend into [`SourceReport`]s with uniform health:
//! [`remoting`] (Apache RocketMQ's admin protocol) and [`openapi`] (ApsaraMQ's OpenAPI). Each
//! owns its settings (`config.rs` beside its code); the top-level config only composes them.

pub mod openapi;
pub mod remoting;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::snapshot::SourceReport;

/// A backend the collector reads once per cycle.
pub trait Source: Send + Sync {
    /// A short name for logs and the `source` label, e.g. `remoting:127.0.0.1:9876`.
    fn name(&self) -> &str;
    /// Reads everything it can before `deadline`; what it could not read is reported as errors
    /// and, where it has them, as last-known values marked stale.
    fn collect(&self, deadline: Instant)
        -> Pin<Box<dyn Future<Output = SourceReport> + Send + '_>>;
}

/// Which groups and topics to export. A name is kept when it matches `allow` (if set) and does
/// not match `deny` (if set).
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    pub allow: Option<Regex>,
    pub deny: Option<Regex>,
}

impl NameFilter {
    pub fn keeps(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|r| r.is_match(name))
            && !self.deny.as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// The top-level filter patterns, which every source's tables inherit.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Filters {
    pub group_allow: Option<String>,
    pub group_deny: Option<String>,
    pub topic_allow: Option<String>,
    pub topic_deny: Option<String>,
}
