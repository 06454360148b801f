//! The sidecar's own `/metrics`: what it saw, what it decided and why, and what failed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::decide::Decision;

#[derive(Default)]
struct Inner {
    /// (scaledobject, trigger index) → metric value handed to the HPA.
    values: BTreeMap<(String, usize), f64>,
    current: BTreeMap<String, u32>,
    desired: BTreeMap<String, u32>,
    decisions: BTreeMap<(String, &'static str), u64>,
    source_errors: BTreeMap<(String, usize), u64>,
    scale_errors: BTreeMap<(String, &'static str), u64>,
    scales: BTreeMap<String, u64>,
    leader: Option<bool>,
}

/// Shared, updated by every poll, rendered on scrape.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn record_decision(&self, so: &str, current: u32, d: &Decision) {
        self.with(|m| {
            for (i, t) in d.triggers.iter().enumerate() {
                match t.metric_value {
                    Some(v) => m.values.insert((so.to_string(), i), v),
                    None => m.values.remove(&(so.to_string(), i)),
                };
                if matches!(
                    t.outcome,
                    crate::decide::TriggerOutcome::Failed(_)
                        | crate::decide::TriggerOutcome::Fallback(_)
                ) {
                    *m.source_errors.entry((so.to_string(), i)).or_default() += 1;
                }
            }
            m.current.insert(so.to_string(), current);
            m.desired.insert(so.to_string(), d.desired);
            *m.decisions
                .entry((so.to_string(), d.reason.label()))
                .or_default() += 1;
        })
    }

    pub fn record_scale(&self, so: &str, to: u32) {
        self.with(|m| {
            m.current.insert(so.to_string(), to);
            *m.scales.entry(so.to_string()).or_default() += 1;
        })
    }

    pub fn record_scale_error(&self, so: &str, cause: &'static str) {
        self.with(|m| *m.scale_errors.entry((so.to_string(), cause)).or_default() += 1)
    }

    /// Drops every series of a ScaledObject that is no longer configured.
    pub fn forget(&self, so: &str) {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        i.values.retain(|(k, _), _| k != so);
        i.current.remove(so);
        i.desired.remove(so);
        i.decisions.retain(|(k, _), _| k != so);
        i.source_errors.retain(|(k, _), _| k != so);
        i.scale_errors.retain(|(k, _), _| k != so);
        i.scales.remove(so);
    }

    pub fn set_leader(&self, leader: bool) {
        self.with(|m| m.leader = Some(leader))
    }

    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            let so = |s: &String| format!("scaledobject=\"{}\"", esc(s));
            section(
                &mut out,
                "rmq_sidecar_metric_value",
                "gauge",
                "Metric value handed to the HPA logic, per trigger.",
                m.values
                    .iter()
                    .map(|((s, i), v)| (format!("{},trigger=\"{i}\"", so(s)), *v)),
            );
            section(
                &mut out,
                "rmq_sidecar_current_replicas",
                "gauge",
                "Replicas of the scale target as last read or set.",
                m.current.iter().map(|(s, v)| (so(s), f64::from(*v))),
            );
            section(
                &mut out,
                "rmq_sidecar_desired_replicas",
                "gauge",
                "Replicas the last decision asked for.",
                m.desired.iter().map(|(s, v)| (so(s), f64::from(*v))),
            );
            section(
                &mut out,
                "rmq_sidecar_decisions_total",
                "counter",
                "Decisions by reason.",
                m.decisions
                    .iter()
                    .map(|((s, r), v)| (format!("{},reason=\"{r}\"", so(s)), *v as f64)),
            );
            section(
                &mut out,
                "rmq_sidecar_source_errors_total",
                "counter",
                "Polls whose trigger source failed.",
                m.source_errors
                    .iter()
                    .map(|((s, i), v)| (format!("{},trigger=\"{i}\"", so(s)), *v as f64)),
            );
            section(
                &mut out,
                "rmq_sidecar_scale_errors_total",
                "counter",
                "Failed reads or writes of the scale target, by cause.",
                m.scale_errors
                    .iter()
                    .map(|((s, c), v)| (format!("{},cause=\"{c}\"", so(s)), *v as f64)),
            );
            section(
                &mut out,
                "rmq_sidecar_scales_total",
                "counter",
                "Changes of spec.replicas made.",
                m.scales.iter().map(|(s, v)| (so(s), *v as f64)),
            );
            section(
                &mut out,
                "rmq_sidecar_leader",
                "gauge",
                "1 while this replica holds the leader Lease (always 1 without leader election).",
                m.leader
                    .iter()
                    .map(|l| (String::new(), f64::from(u8::from(*l)))),
            );
            out
        })
    }
}

fn section(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (String, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_samples() {
        let m = Metrics::default();
        m.set_leader(true);
        m.record_scale("default/app", 3);
        m.record_scale_error("default/app", "forbidden");
        let text = m.render();
        assert!(
            text.contains("# TYPE rmq_sidecar_leader gauge\nrmq_sidecar_leader 1\n"),
            "{text}"
        );
        assert!(text.contains("rmq_sidecar_current_replicas{scaledobject=\"default/app\"} 3\n"));
        assert!(text.contains("rmq_sidecar_scales_total{scaledobject=\"default/app\"} 1\n"));
        assert!(text.contains(
            "rmq_sidecar_scale_errors_total{scaledobject=\"default/app\",cause=\"forbidden\"} 1\n"
        ));
    }
}
