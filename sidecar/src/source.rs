//! Where a trigger's number comes from: a Prometheus server (KEDA's `prometheus` scaler), or the
//! exporter's `/metrics` page read directly (the `rocketmq-exporter` trigger, no Prometheus needed).
//!
//! Both follow KEDA's `prometheus_scaler.go` on what counts as data: a non-2xx answer or a body
//! that cannot be read is an error; an empty result is [`Observation::Missing`] (the decision
//! engine reads it as 0 only when `ignoreNullValues` says so); more than one series is an error,
//! because a query must produce one number per ScaledObject.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{
    ExporterSource, PrometheusAuth, PrometheusSource, PrometheusTls, Trigger, TriggerSource,
};
use crate::decide::{Observation, QueueLag, Sample};
use rmq_web::error_chain;

/// KEDA's default HTTP timeout for scalers (`KEDA_HTTP_DEFAULT_TIMEOUT`, 3 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Distinct TLS settings whose clients are kept; past that (only reloads change settings) the
/// cache starts afresh.
const MAX_TLS_CLIENTS: usize = 64;

/// HTTP clients for all triggers: one with certificate checks, one without for `unsafeSsl`, and
/// one per distinct `ca` / client certificate, built on first use.
pub struct Sources {
    checked: reqwest::Client,
    unchecked: reqwest::Client,
    tls: Mutex<HashMap<PrometheusTls, reqwest::Client>>,
}

impl Sources {
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Sources {
            checked: reqwest::Client::builder().build()?,
            unchecked: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()?,
            tls: Mutex::new(HashMap::new()),
        })
    }

    /// The client for a `prometheus` trigger. With `ca` or a client certificate KEDA replaces
    /// the transport by one that always verifies the server (authentication_helpers.go,
    /// `CreateHTTPRoundTripper` passes `unsafeSsl` false), so `unsafeSsl` counts only without them.
    fn prometheus_client(&self, p: &PrometheusSource) -> Result<reqwest::Client, String> {
        let Some(tls) = &p.tls else {
            return Ok(if p.unsafe_ssl {
                self.unchecked.clone()
            } else {
                self.checked.clone()
            });
        };
        let mut cache = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = cache.get(tls) {
            return Ok(client.clone());
        }
        let client = tls_client(tls).map_err(|e| {
            format!(
                "TriggerAuthentication parameter {}: {}",
                e.parameter, e.message
            )
        })?;
        if p.unsafe_ssl {
            tracing::warn!(
                server = %p.server_address,
                "unsafeSsl is ignored: with ca or a client certificate the server's certificate is verified, as KEDA does"
            );
        }
        if cache.len() >= MAX_TLS_CLIENTS {
            cache.clear();
        }
        cache.insert(tls.clone(), client.clone());
        Ok(client)
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
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<String, String> {
        let request = build(client.get(url).timeout(timeout));
        let mut retries = 0;
        let resp = loop {
            let attempt = request
                .try_clone()
                .expect("a GET without a body can be cloned");
            match attempt.send().await {
                Ok(resp) => break resp,
                Err(e) if retries < NOT_SENT_RETRIES && never_sent(&e) => {
                    retries += 1;
                    tracing::debug!(url = %redact(url), error = %error_chain(&e), "the connection closed before the request was sent; trying again");
                }
                Err(e) => return Err(format!("GET {}: {}", redact(url), error_chain(&e))),
            }
        };
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
        let client = match self.prometheus_client(p) {
            Ok(c) => c,
            Err(e) => return Observation::Error(e),
        };
        let body = self
            .get(&client, &url, timeout, |mut req| {
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
            Err(e) => {
                let hint = tls_hint(p, &e);
                Observation::Error(format!("{e}{hint}"))
            }
        }
    }

    async fn exporter(&self, e: &ExporterSource) -> Observation {
        match self
            .get(&self.checked, &e.url, DEFAULT_TIMEOUT, |r| r)
            .await
        {
            Ok(body) => exporter_backlog(&body, e),
            Err(err) => Observation::Error(err),
        }
    }
}

/// How often a request that was never sent is tried again at once. A TLS 1.3 server that rejects
/// the client certificate does so after the client has finished its handshake; when the
/// connection reads the server's alert before the request is handed to it, hyper cancels the
/// request ("connection was not ready") and the alert, the only word on why, is lost. The request
/// never left, so trying again is safe; the next connection usually carries the alert back as the
/// request's error (seen 1 in 23 runs of tests/sidecar_prometheus_tls.rs with both cores busy).
const NOT_SENT_RETRIES: u32 = 3;

/// Whether hyper canceled the request before sending it (its connection closed first).
fn never_sent(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// What to do about a TLS failure, in KEDA's terms: rustls names only the alert or the check.
fn tls_hint(p: &PrometheusSource, error: &str) -> &'static str {
    let tls = p.tls.as_ref();
    let client = tls.is_some_and(|t| t.client.is_some());
    let ca = tls.is_some_and(|t| t.ca.is_some());
    if error.contains("alert: BadCertificate") || error.contains("alert: CertificateRequired") {
        if client {
            " (the server refused the client certificate: is it signed by a CA the server trusts, and valid?)"
        } else {
            " (the server wants a client certificate: authModes tls with cert and key in the TriggerAuthentication)"
        }
    } else if error.contains("UnknownIssuer") {
        if ca {
            " (the server's certificate is signed neither by ca nor by a built-in root)"
        } else if client {
            " (the server's certificate is not signed by a built-in root: give its CA as ca; with a client certificate KEDA ignores unsafeSsl)"
        } else {
            " (the server's certificate is not signed by a built-in root: give its CA as ca, with an authMode)"
        }
    } else if error.contains("connection was not ready") && p.server_address.starts_with("https:") {
        " (the server closed every connection right after the TLS handshake, as one that requires a client certificate does when it gets none or rejects it)"
    } else {
        ""
    }
}

/// Why a trigger's TLS setting cannot be used.
#[derive(Debug)]
pub struct TlsSettingError {
    /// The TriggerAuthentication parameter at fault: `ca`, `cert` or `key`.
    pub parameter: &'static str,
    pub message: String,
}

/// The client for `ca` and the client certificate, checked the way KEDA's
/// `NewTLSConfigWithPassword` (pkg/util/tls_config.go) checks them: `ca` must hold at least one
/// certificate (`AppendCertsFromPEM` finding none is an error there), `cert` + `key` must make a
/// key pair (`tls.X509KeyPair`: the CERTIFICATE blocks of `cert`, the first `… PRIVATE KEY` block
/// of `key`, the key matching the certificate). The built-in roots stay trusted besides `ca`
/// (KEDA clones the system pool before adding it).
pub fn tls_client(tls: &PrometheusTls) -> Result<reqwest::Client, TlsSettingError> {
    let err = |parameter: &'static str, message: String| TlsSettingError { parameter, message };
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = &tls.ca {
        let blocks: Vec<PemBlock> = pem_blocks(ca)
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE")
            .collect();
        if blocks.is_empty() {
            return Err(err(
                "ca",
                "has no PEM CERTIFICATE block (the value is the CA certificate's PEM text, not a file path)".into(),
            ));
        }
        let mut roots = Vec::new();
        for b in blocks {
            roots.push(
                reqwest::Certificate::from_pem(b.text.as_bytes()).map_err(|e| {
                    err(
                        "ca",
                        format!("is not a PEM certificate: {}", error_chain(&e)),
                    )
                })?,
            );
        }
        // Checked on its own first so that a bad CA is not blamed on the key.
        let mut alone = reqwest::Client::builder();
        for r in &roots {
            alone = alone.add_root_certificate(r.clone());
        }
        alone.build().map_err(|e| {
            err(
                "ca",
                format!("is not a usable CA certificate: {}", error_chain(&e)),
            )
        })?;
        for r in roots {
            builder = builder.add_root_certificate(r);
        }
    }
    if let Some(client) = &tls.client {
        let certs: Vec<&str> = pem_blocks(&client.cert)
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| b.text)
            .collect();
        if certs.is_empty() {
            return Err(err(
                "cert",
                "has no PEM CERTIFICATE block (the value is the certificate's PEM text, not a file path)".into(),
            ));
        }
        let key = pem_blocks(client.key.expose())
            .into_iter()
            .find(|b| b.label == "PRIVATE KEY" || b.label.ends_with(" PRIVATE KEY"))
            .ok_or_else(|| {
                err(
                    "key",
                    "has no PEM PRIVATE KEY block (the value is the key's PEM text, not a file path)"
                        .into(),
                )
            })?;
        if key.encrypted {
            return Err(err(
                "key",
                "is encrypted; KEDA's prometheus scaler does not decrypt keys (it reads no keyPassword): \
                 give the key unencrypted (openssl pkey -in encrypted.pem -out key.pem)"
                    .into(),
            ));
        }
        if !matches!(
            key.label,
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
        ) {
            return Err(err(
                "key",
                format!(
                    "is a {:?} block; supported: PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1), EC PRIVATE KEY (SEC1)",
                    key.label
                ),
            ));
        }
        let pem = format!("{}\n{}\n", certs.join("\n"), key.text);
        let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
            err(
                "cert",
                format!("cert and key are not valid PEM: {}", error_chain(&e)),
            )
        })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| {
        let chain = error_chain(&e);
        if chain.contains("UnsupportedCertVersion") {
            // Go's X509KeyPair takes a v1 certificate; rustls (webpki) takes only v3.
            return err(
                "cert",
                "is an X.509 v1 certificate, which rmq-sidecar's TLS library (rustls) does not accept: \
                 issue it as v3 (any extension does it, e.g. openssl x509 -req … -extfile with \
                 extendedKeyUsage=clientAuth; cert-manager and cfssl issue v3)"
                    .into(),
            );
        }
        if chain.contains("KeyMismatch") {
            return err(
                "key",
                "does not match cert (it is the key of another certificate)".into(),
            );
        }
        err(
            "key",
            format!("cannot be used with cert (an unsupported key type?): {chain}"),
        )
    })
}

/// One `-----BEGIN <label>-----` … `-----END <label>-----` block.
struct PemBlock<'a> {
    label: &'a str,
    /// The whole block, markers included.
    text: &'a str,
    /// `ENCRYPTED PRIVATE KEY`, or a legacy `Proc-Type: 4,ENCRYPTED` header.
    encrypted: bool,
}

/// The PEM blocks of `text`, in order; text around and between them is skipped, as Go's
/// `pem.Decode` does.
fn pem_blocks(text: &str) -> Vec<PemBlock<'_>> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        if label.contains('\n') {
            rest = after;
            continue;
        }
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            break;
        };
        let stop = start + BEGIN.len() + end + end_marker.len();
        let body = &after[label_end..end];
        out.push(PemBlock {
            label,
            text: &rest[start..stop],
            encrypted: label == "ENCRYPTED PRIVATE KEY" || body.contains("Proc-Type: 4,ENCRYPTED"),
        });
        rest = &rest[stop..];
    }
    out
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
            // A `}` before the first `{` is junk, not an empty label set (the slice would panic).
            let close = line.rfind('}').filter(|&close| close > open)?;
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
            tls: None,
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

    #[test]
    fn a_closing_brace_before_the_opening_one_is_junk_not_a_panic() {
        // Found by fuzz/ (sidecar_prometheus): `rfind('}')` before `find('{')` sliced backwards.
        assert!(parse_line("m} 1 {").is_none());
        assert!(parse_line("rocketmq_consumer_ready_messages} 30 {x").is_none());
        let page = "rocketmq_exporter_collections_total 1\nrocketmq_consumer_ready_messages}{ 5\n";
        assert_eq!(
            exporter_backlog(page, &exporter("G", None, None)),
            Observation::Missing
        );
    }
}
