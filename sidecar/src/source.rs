//! Where a trigger's number comes from: a Prometheus server (KEDA's `prometheus` scaler), or the
//! exporter's `/metrics` page read directly (the `rocketmq-exporter` trigger, no Prometheus needed).
//!
//! Both follow KEDA's `prometheus_scaler.go` on what counts as data: a non-2xx answer or a body
//! that cannot be read is an error; an empty result is [`Observation::Missing`] (the decision
//! engine reads it as 0 only when `ignoreNullValues` says so); more than one series is an error,
//! because a query must produce one number per ScaledObject.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{ExporterSource, PrometheusAuth, PrometheusSource, Trigger, TriggerSource};
use crate::decide::{Observation, QueueLag, Sample};

/// KEDA's default HTTP timeout for scalers (`KEDA_HTTP_DEFAULT_TIMEOUT`, 3 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// HTTP clients for all triggers (one with certificate checks, one without for `unsafeSsl`).
pub struct Sources {
    checked: reqwest::Client,
    unchecked: reqwest::Client,
}

impl Sources {
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Sources {
            checked: reqwest::Client::builder().build()?,
            unchecked: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()?,
        })
    }

    /// Reads one trigger once.
    pub async fn observe(&self, trigger: &Trigger) -> Observation {
        match &trigger.source {
            TriggerSource::Prometheus(p) => self.prometheus(p).await,
            TriggerSource::RocketmqExporter(e) => self.exporter(e).await,
        }
    }

    async fn get(
        &self,
        url: &str,
        unsafe_ssl: bool,
        timeout: Duration,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<String, String> {
        let client = if unsafe_ssl {
            &self.unchecked
        } else {
            &self.checked
        };
        let resp = build(client.get(url).timeout(timeout))
            .send()
            .await
            .map_err(|e| format!("GET {}: {}", redact(url), error_chain(&e)))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("GET {}: reading the body: {e}", redact(url)))?;
        if !status.is_success() {
            let snippet: String = body.chars().take(200).collect();
            return Err(format!("GET {}: HTTP {status}: {snippet}", redact(url)));
        }
        Ok(body)
    }

    async fn prometheus(&self, p: &PrometheusSource) -> Observation {
        let url = prometheus_url(p, SystemTime::now());
        let timeout = p.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let body = self
            .get(&url, p.unsafe_ssl, timeout, |mut req| {
                for (k, v) in &p.custom_headers {
                    req = req.header(k, v);
                }
                match &p.auth {
                    PrometheusAuth::None => req,
                    PrometheusAuth::Bearer { token } => req.bearer_auth(token.expose()),
                    PrometheusAuth::Basic { username, password } => {
                        req.basic_auth(username.expose(), Some(password.expose()))
                    }
                    PrometheusAuth::Custom { header, value } => {
                        req.header(header.expose(), value.expose())
                    }
                }
            })
            .await;
        match body {
            Ok(body) => parse_prometheus_response(&body),
            Err(e) => Observation::Error(e),
        }
    }

    async fn exporter(&self, e: &ExporterSource) -> Observation {
        match self.get(&e.url, false, DEFAULT_TIMEOUT, |r| r).await {
            Ok(body) => exporter_backlog(&body, e),
            Err(err) => Observation::Error(err),
        }
    }
}

/// `{serverAddress}/api/v1/query?query=…&time=…` plus `namespace` and `queryParameters`, as KEDA
/// builds it.
pub fn prometheus_url(p: &PrometheusSource, now: SystemTime) -> String {
    let time = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut url = format!(
        "{}/api/v1/query?query={}&time={}",
        p.server_address.trim_end_matches('/'),
        encode(&p.query),
        format_time(time)
    );
    if let Some(ns) = &p.namespace {
        url.push_str(&format!("&namespace={}", encode(ns)));
    }
    for (k, v) in &p.query_parameters {
        url.push_str(&format!("&{}={}", encode(k), encode(v)));
    }
    url
}

fn format_time(t: f64) -> String {
    // RFC 3339 would do too; Prometheus accepts Unix seconds with a fraction.
    format!("{t:.3}")
}

/// Reads a Prometheus `/api/v1/query` answer the way KEDA's prometheus scaler does.
pub fn parse_prometheus_response(body: &str) -> Observation {
    let v: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Observation::Error(format!("Prometheus answered with invalid JSON: {e}")),
    };
    if v["status"] != "success" {
        return Observation::Error(format!(
            "Prometheus query failed: {} {}",
            v["errorType"].as_str().unwrap_or("unknown"),
            v["error"].as_str().unwrap_or("")
        ));
    }
    let data = &v["data"];
    let value = match data["resultType"].as_str() {
        Some("vector") => {
            let result = data["result"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            match result {
                [] => return Observation::Missing,
                [one] => &one["value"][1],
                many => {
                    return Observation::Error(format!(
                        "the query returned {} series; it must return exactly one (aggregate it, e.g. with sum)",
                        many.len()
                    ))
                }
            }
        }
        Some("scalar") => &data["result"][1],
        other => {
            return Observation::Error(format!(
                "the query returned a {} result; it must return a vector or a scalar",
                other.unwrap_or("missing")
            ))
        }
    };
    match value.as_str().map(parse_prom_float) {
        Some(Some(x)) => Observation::Ok(Sample::new(x)),
        _ => Observation::Error(format!("the query's value is not a number: {value}")),
    }
}

/// Prometheus writes `NaN`, `+Inf`, `-Inf`; Rust's parser wants `inf`.
fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Sum of ready + inflight over the exporter's series for the trigger's group (and instance and
/// topic pattern), with the number of queues those series cover.
pub fn exporter_backlog(page: &str, e: &ExporterSource) -> Observation {
    let mut value = 0.0;
    let mut queues = 0.0;
    let mut matched = false;
    let mut is_exporter_page = false;
    // topic/broker/queue_id → (committed offset, lag), from the exporter's --queue-metrics.
    let mut per_queue: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for line in page.lines() {
        if line.starts_with("rocketmq_exporter_collections_total") {
            is_exporter_page = true;
        }
        let Some((name, labels, v)) = parse_line(line) else {
            continue;
        };
        let wanted = matches!(
            name,
            "rocketmq_consumer_ready_messages"
                | "rocketmq_consumer_inflight_messages"
                | "rocketmq_consumer_queues"
                | "rocketmq_consumer_queue_lag_messages"
                | "rocketmq_consumer_queue_committed_offset"
        );
        if !wanted
            || labels.get("consumer_group").map(String::as_str) != Some(e.consumer_group.as_str())
            || e.instance_id
                .as_ref()
                .is_some_and(|id| labels.get("instance_id") != Some(id))
            || e.topic
                .as_ref()
                .is_some_and(|t| !t.is_match(labels.get("topic").map(String::as_str).unwrap_or("")))
        {
            continue;
        }
        let queue_key = || {
            let l = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
            format!("{}/{}/{}", l("topic"), l("broker"), l("queue_id"))
        };
        match name {
            "rocketmq_consumer_queues" => queues += v,
            "rocketmq_consumer_queue_lag_messages" => {
                per_queue.entry(queue_key()).or_default().1 = v
            }
            "rocketmq_consumer_queue_committed_offset" => {
                per_queue.entry(queue_key()).or_default().0 = v as i64
            }
            _ => {
                value += v;
                matched = true;
            }
        }
    }
    if page.trim().is_empty() {
        // The exporter serves an empty page until its first cycle ends: no data is not "0".
        return Observation::Error(format!(
            "{} has no data yet (its first collection cycle has not finished)",
            e.url
        ));
    }
    if !is_exporter_page {
        // A proxy's error page or another program's metrics: an error, never "no backlog".
        return Observation::Error(format!("{} is not an rmq-exporter metrics page", e.url));
    }
    if !matched {
        return Observation::Missing;
    }
    let mut sample = Sample::new(value);
    if !per_queue.is_empty() {
        sample = sample.with_queues(
            per_queue
                .into_iter()
                .map(|(queue, (committed_offset, lag))| QueueLag {
                    queue,
                    committed_offset,
                    lag,
                })
                .collect(),
        );
    }
    if queues > 0.0 {
        Observation::Ok(sample.with_queue_count(queues as u32))
    } else {
        Observation::Ok(sample)
    }
}

/// One sample line of the text format: (name, labels, value); None for comments and junk.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (n, rest) = line.split_once(' ')?;
            (n, BTreeMap::new(), rest)
        }
    };
    let value = parse_prom_float(rest.split_whitespace().next()?)?;
    Some((name.trim(), labels, value))
}

fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.insert(key.trim().trim_start_matches(',').trim().to_string(), value);
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Some(out)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URL without its query string (queries can be long; credentials never go there, but a
/// user's query parameters might).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicPattern;

    fn exporter(group: &str, topic: Option<&str>, instance: Option<&str>) -> ExporterSource {
        ExporterSource {
            url: "http://127.0.0.1:9877/metrics".into(),
            instance_id: instance.map(str::to_string),
            topic: topic.map(|t| TopicPattern::new(t).unwrap()),
            consumer_group: group.into(),
        }
    }

    const PAGE: &str = r#"# HELP rocketmq_consumer_ready_messages x
# TYPE rocketmq_consumer_ready_messages gauge
rocketmq_consumer_ready_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 60
rocketmq_consumer_ready_messages{instance_id="i1",cluster="c",topic="%RETRY%G",consumer_group="G",is_retry="true"} 5
rocketmq_consumer_ready_messages{instance_id="i2",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 1000
rocketmq_consumer_ready_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="H",is_retry="false"} 7
rocketmq_consumer_inflight_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 30
rocketmq_consumer_lag_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 90
rocketmq_consumer_queues{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 8
rocketmq_exporter_collections_total 12
"#;

    #[test]
    fn exporter_trigger_sums_ready_and_inflight_like_the_arms_query() {
        let obs = exporter_backlog(PAGE, &exporter("G", Some("keda"), Some("i1")));
        assert_eq!(obs, Observation::Ok(Sample::new(90.0).with_queue_count(8)));
    }

    #[test]
    fn exporter_topic_pattern_is_anchored_and_instance_optional() {
        let obs = exporter_backlog(PAGE, &exporter("G", Some("ked"), None));
        assert_eq!(obs, Observation::Missing);
        let obs = exporter_backlog(PAGE, &exporter("G", None, None));
        assert_eq!(
            obs,
            Observation::Ok(Sample::new(1095.0).with_queue_count(8))
        );
    }

    #[test]
    fn unknown_group_is_missing_not_zero() {
        assert_eq!(
            exporter_backlog(PAGE, &exporter("nope", None, None)),
            Observation::Missing
        );
    }

    #[test]
    fn an_exporter_without_its_first_cycle_is_an_error_not_zero() {
        let obs = exporter_backlog("", &exporter("G", None, None));
        assert!(matches!(obs, Observation::Error(e) if e.contains("first collection cycle")));
    }

    #[test]
    fn a_page_that_is_not_the_exporters_is_an_error() {
        let obs = exporter_backlog("garbage\n{{{", &exporter("G", None, None));
        assert!(matches!(obs, Observation::Error(e) if e.contains("not an rmq-exporter")));
    }

    #[test]
    fn per_queue_offsets_from_queue_metrics_feed_persistent_lag_exclusion() {
        let page = format!(
            "{PAGE}rocketmq_consumer_queue_lag_messages{{instance_id=\"i1\",cluster=\"c\",topic=\"keda\",consumer_group=\"G\",is_retry=\"false\",broker=\"b\",queue_id=\"3\"}} 90\n\
             rocketmq_consumer_queue_committed_offset{{instance_id=\"i1\",cluster=\"c\",topic=\"keda\",consumer_group=\"G\",is_retry=\"false\",broker=\"b\",queue_id=\"3\"}} 1200\n"
        );
        let Observation::Ok(sample) =
            exporter_backlog(&page, &exporter("G", Some("keda"), Some("i1")))
        else {
            panic!("expected a sample")
        };
        assert_eq!(
            sample.queues,
            vec![QueueLag {
                queue: "keda/b/3".into(),
                committed_offset: 1200,
                lag: 90.0
            }]
        );
    }

    #[test]
    fn prometheus_single_series_is_the_value() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"consumer_group":"G"},"value":[1700000000.1,"32.7"]}]}}"#;
        assert_eq!(
            parse_prometheus_response(body),
            Observation::Ok(Sample::new(32.7))
        );
    }

    #[test]
    fn prometheus_empty_result_is_missing() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_prometheus_response(body), Observation::Missing);
    }

    #[test]
    fn prometheus_several_series_is_an_error_as_in_keda() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}"#;
        assert!(
            matches!(parse_prometheus_response(body), Observation::Error(e) if e.contains("2 series"))
        );
    }

    #[test]
    fn prometheus_errors_and_garbage_are_errors() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(
            matches!(parse_prometheus_response(body), Observation::Error(e) if e.contains("parse error"))
        );
        assert!(matches!(
            parse_prometheus_response("<html>"),
            Observation::Error(_)
        ));
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            matches!(parse_prometheus_response(body), Observation::Error(e) if e.contains("matrix"))
        );
    }

    #[test]
    fn prometheus_nan_and_scalars_are_read() {
        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert!(matches!(parse_prometheus_response(body), Observation::Ok(s) if s.value.is_nan()));
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}"#;
        assert!(
            matches!(parse_prometheus_response(body), Observation::Ok(s) if s.value.is_infinite())
        );
    }

    #[test]
    fn prometheus_url_carries_query_time_namespace_and_parameters() {
        let p = PrometheusSource {
            server_address: "http://prom:9090/".into(),
            query: "sum(x{a=\"b\"})".into(),
            namespace: Some("ns".into()),
            query_parameters: [("dedup".to_string(), "true".to_string())].into(),
            custom_headers: BTreeMap::new(),
            unsafe_ssl: false,
            timeout: None,
            auth: PrometheusAuth::None,
        };
        let url = prometheus_url(&p, UNIX_EPOCH + Duration::from_millis(1_700_000_000_250));
        assert_eq!(
            url,
            "http://prom:9090/api/v1/query?query=sum%28x%7Ba%3D%22b%22%7D%29&time=1700000000.250&namespace=ns&dedup=true"
        );
    }

    #[test]
    fn text_lines_with_timestamps_and_escapes_parse() {
        let (name, labels, v) = parse_line(r#"m{a="x\"y",b="1 2",} 3.5 1700000000000"#).unwrap();
        assert_eq!(name, "m");
        assert_eq!(labels["a"], "x\"y");
        assert_eq!(labels["b"], "1 2");
        assert_eq!(v, 3.5);
        assert!(parse_line("# comment").is_none());
        assert!(parse_line("m{a=\"unterminated} 1").is_none());
    }
}
