//! The ApsaraMQ for RocketMQ 5.x OpenAPI (version 2022-08-01) as this exporter uses it: signed
//! `GET`s (ROA style: the action in `x-acs-action`, parameters in path and query, no body) and the
//! readers of their answers. Field names are the official SDK's models
//! (`alibabacloud-rocketmq20220801` 5.1.0).
//!
//! | action | path | what is read |
//! |---|---|---|
//! | ListInstances | `/instances` | `data.list[].instanceId`, `regionId`, `status`; paged |
//! | ListConsumerGroups | `/instances/{id}/consumerGroups` | `data.list[].consumerGroupId`; paged |
//! | GetConsumerGroupLag | `/instances/{id}/consumerGroups/{gid}/lag` | `data.topicLagMap{topic: {readyCount, inflightCount, deliveryDuration (s)}}` |
//! | ListConsumerConnections | `/instances/{id}/consumerGroups/{gid}/connections` | `data.connections[]` |
//!
//! Paging: pages are asked until one is empty or the items seen reach `totalCount`. Errors are
//! HTTP 4xx/5xx with `{code, message, requestId}` (the SDK also accepts `Code`/`Message`).

use std::time::Duration;

use serde::Deserialize;

use super::budget::random_u64;
use super::sign::{format_utc, AccessKey, Request};

pub const VERSION: &str = "2022-08-01";

/// Largest answer read (a page of 100 groups is ~30 KB).
const MAX_BODY: usize = 8 << 20;

/// Where an instance's API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`
    pub base: String,
    /// `host[:port]`: the `host` header, signed.
    pub host: String,
}

impl Endpoint {
    /// The SDK's rule: `rocketmq.{region}.aliyuncs.com`, or `rocketmq-vpc.{region}…` in a VPC.
    pub fn for_region(region: &str, vpc: bool) -> Endpoint {
        let host = if vpc {
            format!("rocketmq-vpc.{region}.aliyuncs.com")
        } else {
            format!("rocketmq.{region}.aliyuncs.com")
        };
        Endpoint {
            base: format!("https://{host}"),
            host,
        }
    }

    /// `http(s)://host[:port]` (a trailing `/` is allowed; any other path is not).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{url}`: the scheme must be http or https"));
        }
        let host = rest.strip_suffix('/').unwrap_or(rest);
        let port_ok = match host.rsplit_once(':') {
            Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
            None => true,
        };
        if host.is_empty()
            || !port_ok
            || host.contains(['/', '?', '#', '@', ' '])
            || !host.is_ascii()
        {
            return Err(format!("`{url}` is not scheme://host[:port]"));
        }
        Ok(Endpoint {
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
        })
    }
}

/// Why a call failed. `cause()` is the `cause` label of `rocketmq_exporter_errors_total`;
/// `code()` the API's error code for `rocketmq_exporter_api_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Transport {
        cause: &'static str,
        message: String,
    },
    #[error("throttled (HTTP {status}, {code}){}", retry_after.map(|d| format!(", retry after {} ms", d.as_millis())).unwrap_or_default())]
    Throttled {
        status: u16,
        code: String,
        retry_after: Option<Duration>,
    },
    #[error("not found (HTTP {status}, {code}): {message}")]
    NotFound {
        status: u16,
        code: String,
        message: String,
    },
    #[error("refused (HTTP {status}, {code}): {message}")]
    Auth {
        status: u16,
        code: String,
        message: String,
    },
    #[error("failed (HTTP {status}, {code}): {message}")]
    Remote {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unreadable answer: {0}")]
    BadBody(String),
    #[error("no credentials: {0}")]
    Credentials(String),
}

impl ApiError {
    pub fn cause(&self) -> &'static str {
        match self {
            ApiError::Transport { cause, .. } => cause,
            ApiError::Throttled { .. } => "throttled",
            ApiError::NotFound { .. } | ApiError::Remote { .. } => "remote_error",
            ApiError::Auth { .. } => "auth",
            ApiError::BadBody(_) => "bad_body",
            ApiError::Credentials(_) => "credentials",
        }
    }

    pub fn code(&self) -> Option<String> {
        match self {
            ApiError::Throttled { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Auth { code, .. }
            | ApiError::Remote { code, .. } => Some(code.clone()),
            ApiError::BadBody(_) => Some("malformed_response".into()),
            ApiError::Transport { .. } | ApiError::Credentials(_) => None,
        }
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(alias = "Code")]
    code: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
    #[serde(alias = "RequestId")]
    #[serde(rename = "requestId")]
    request_id: Option<String>,
}

/// Sorts a failed answer into an [`ApiError`].
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> ApiError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = parsed
        .code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("http_{status}"));
    let mut message = parsed.message.unwrap_or_default();
    if message.is_empty() {
        message = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    }
    if let Some(id) = parsed.request_id {
        message = format!("{message} (requestId {id})");
    }
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms.min(300_000)));
    let auth_codes = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidSecurityToken",
        "SignatureNonceUsed",
        "InvalidTimeStamp",
        "Forbidden",
        "NoPermission",
        "InvalidAuthorization",
    ];
    if status == 429 || code.starts_with("Throttling") || retry_after.is_some() {
        ApiError::Throttled {
            status,
            code,
            retry_after,
        }
    } else if status == 401 || status == 403 || auth_codes.iter().any(|p| code.starts_with(p)) {
        ApiError::Auth {
            status,
            code,
            message,
        }
    } else if code == "ConsumerGroup.NotFound" || code.ends_with("ConsumerGroupNotFound") {
        ApiError::NotFound {
            status,
            code,
            message,
        }
    } else {
        ApiError::Remote {
            status,
            code,
            message,
        }
    }
}

/// A signing HTTP client for one process (connections are pooled per endpoint).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

impl Api {
    pub fn new(connect_timeout: Duration) -> Api {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("rmq-exporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Api { http }
    }

    /// The underlying client (for the credential providers' unsigned calls).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one signed `GET` and returns the body of a 2xx answer.
    pub async fn get(
        &self,
        endpoint: &Endpoint,
        key: &AccessKey,
        action: &str,
        path: &[&str],
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<bytes::Bytes, ApiError> {
        let date = format_utc(super::unix_seconds());
        let nonce = format!("{:016x}{:016x}", random_u64(), random_u64());
        let signed = Request {
            method: "GET",
            host: &endpoint.host,
            path,
            query,
            action,
            version: VERSION,
            date: &date,
            nonce: &nonce,
        }
        .sign(key);
        let url = format!("{}{}", endpoint.base, signed.path_and_query);
        let mut req = self.http.get(&url).timeout(timeout);
        for (name, value) in &signed.headers {
            req = req.header(*name, value);
        }
        req = req.header("accept", "application/json");
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("x-acs-retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_capped(resp).await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(classify(status, retry_after.as_deref(), &body))
        }
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes.
pub async fn read_capped(mut resp: reqwest::Response) -> Result<bytes::Bytes, ApiError> {
    if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(ApiError::BadBody(format!(
            "answer of {} bytes is over the {MAX_BODY}-byte cap",
            resp.content_length().unwrap_or(0)
        )));
    }
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::BadBody(format!(
                "answer over the {MAX_BODY}-byte cap"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// A transport failure, without the URL: STS's carries the OIDC token in its query.
pub fn transport(e: reqwest::Error) -> ApiError {
    let e = e.without_url();
    let cause = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "closed"
    };
    let message = rmq_web::error_chain(&e);
    ApiError::Transport { cause, message }
}

/// A count as the API writes it: an integer, but a float or a negative number must neither fail
/// the whole answer nor go negative.
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Option::<f64>::deserialize(d)?.unwrap_or(0.0);
    Ok(if v.is_finite() && v > 0.0 {
        v.min(u64::MAX as f64) as u64
    } else {
        0
    })
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: Option<bool>,
    data: Option<T>,
}

/// The `data` of a 2xx answer; `success: false` in a 2xx answer is an API error.
fn data<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let env: Envelope<T> = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadBody(format!(
            "{e} in {:?}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        ))
    })?;
    if env.success == Some(false) {
        return Err(classify(200, None, body));
    }
    env.data
        .ok_or_else(|| ApiError::BadBody("the answer has no `data`".into()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageData<T> {
    #[serde(default = "Vec::new")]
    list: Vec<T>,
    #[serde(default, deserialize_with = "count")]
    total_count: u64,
}

/// One page of a paged list: its items and the total the server reports.
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupItem {
    consumer_group_id: String,
}

/// ListConsumerGroups: the group ids of one page.
pub fn consumer_groups(body: &[u8]) -> Result<Page<String>, ApiError> {
    let d: PageData<GroupItem> = data(body)?;
    Ok(Page {
        items: d.list.into_iter().map(|g| g.consumer_group_id).collect(),
        total: d.total_count,
    })
}

/// One ApsaraMQ instance, as ListInstances describes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub instance_id: String,
    #[serde(default)]
    pub region_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A resource tag.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Tag {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// ListInstances: the instances of one page.
pub fn instances(body: &[u8]) -> Result<Page<InstanceInfo>, ApiError> {
    let d: PageData<InstanceInfo> = data(body)?;
    Ok(Page {
        items: d.list,
        total: d.total_count,
    })
}

/// Backlog of a group on one topic, as GetConsumerGroupLag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLag {
    pub topic: String,
    pub ready: u64,
    pub inflight: u64,
    /// `deliveryDuration`, seconds → milliseconds.
    pub lag_latency_ms: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LagNumbers {
    #[serde(default, deserialize_with = "count")]
    ready_count: u64,
    #[serde(default, deserialize_with = "count")]
    inflight_count: u64,
    #[serde(default, deserialize_with = "count")]
    delivery_duration: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LagData {
    #[serde(default)]
    topic_lag_map: Option<std::collections::BTreeMap<String, LagNumbers>>,
}

/// GetConsumerGroupLag: per topic, in topic order.
pub fn consumer_group_lag(body: &[u8]) -> Result<Vec<TopicLag>, ApiError> {
    let d: LagData = data(body)?;
    Ok(d.topic_lag_map
        .unwrap_or_default()
        .into_iter()
        .map(|(topic, n)| TopicLag {
            topic,
            ready: n.ready_count,
            inflight: n.inflight_count,
            lag_latency_ms: n.delivery_duration.saturating_mul(1000),
        })
        .collect())
}

#[derive(Deserialize)]
struct ConnectionsData {
    #[serde(default)]
    connections: Option<Vec<serde::de::IgnoredAny>>,
}

/// ListConsumerConnections: the number of online clients.
pub fn consumer_connections(body: &[u8]) -> Result<u64, ApiError> {
    let d: ConnectionsData = data(body)?;
    Ok(d.connections.map_or(0, |c| c.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_read_per_topic_with_seconds_as_milliseconds() {
        let body = br#"{"requestId":"r","success":true,"code":"Success","data":{"regionId":"cn-hangzhou","instanceId":"i","consumerGroupId":"G",
            "totalLag":{"readyCount":13,"inflightCount":5,"deliveryDuration":12},
            "topicLagMap":{"T1":{"readyCount":10,"inflightCount":5,"deliveryDuration":12,"lastConsumeTimestamp":1735629607846},
                           "%RETRY%G":{"readyCount":3,"inflightCount":-2,"deliveryDuration":2.5}}}}"#;
        let lag = consumer_group_lag(body).unwrap();
        assert_eq!(
            lag,
            vec![
                TopicLag {
                    topic: "%RETRY%G".into(),
                    ready: 3,
                    inflight: 0,
                    lag_latency_ms: 2000
                },
                TopicLag {
                    topic: "T1".into(),
                    ready: 10,
                    inflight: 5,
                    lag_latency_ms: 12_000
                },
            ]
        );
        let empty = br#"{"success":true,"data":{"consumerGroupId":"G"}}"#;
        assert!(consumer_group_lag(empty).unwrap().is_empty());
    }

    #[test]
    fn pages_and_connections_are_read() {
        let body = br#"{"success":true,"data":{"pageNumber":2,"pageSize":100,"totalCount":250,"list":[{"consumerGroupId":"A","status":"RUNNING"},{"consumerGroupId":"B"}]}}"#;
        let p = consumer_groups(body).unwrap();
        assert_eq!((p.items, p.total), (vec!["A".to_string(), "B".into()], 250));
        let body =
            br#"{"success":true,"data":{"connections":[{"clientId":"c1"},{"clientId":"c2"}]}}"#;
        assert_eq!(consumer_connections(body).unwrap(), 2);
        let body = br#"{"success":true,"data":{"list":[{"instanceId":"rmq-cn-1","regionId":"cn-hangzhou","status":"RUNNING"}],"totalCount":1}}"#;
        assert_eq!(instances(body).unwrap().items[0].instance_id, "rmq-cn-1");
    }

    #[test]
    fn malformed_answers_are_bad_bodies_not_zeros() {
        for body in [
            &b"{\"data\": {\"list\": ["[..],
            b"<html>proxy error</html>",
            b"{\"success\":true}",
            b"{\"success\":true,\"data\":{\"topicLagMap\":{\"T\":{\"readyCount\":\"many\"}}}}",
        ] {
            let e = consumer_group_lag(body).unwrap_err();
            assert_eq!(e.cause(), "bad_body", "{e}");
        }
    }

    #[test]
    fn errors_are_sorted_by_what_to_do_about_them() {
        let e = classify(400, None, br#"{"code":"Throttling.User","message":"Request was denied due to user flow control."}"#);
        assert!(matches!(
            e,
            ApiError::Throttled {
                retry_after: None,
                ..
            }
        ));
        let e = classify(503, Some("1500"), b"busy");
        assert!(
            matches!(e, ApiError::Throttled { retry_after: Some(d), .. } if d == Duration::from_millis(1500))
        );
        assert_eq!(classify(429, None, b"").code().unwrap(), "http_429");
        let e = classify(
            400,
            None,
            br#"{"Code":"SignatureDoesNotMatch","Message":"no","RequestId":"x"}"#,
        );
        assert_eq!(
            (e.cause(), e.code().unwrap().as_str()),
            ("auth", "SignatureDoesNotMatch")
        );
        assert!(e.to_string().contains("requestId x"));
        let e = classify(404, None, br#"{"code":"InvalidAccessKeyId.NotFound"}"#);
        assert_eq!(e.cause(), "auth");
        let e = classify(
            404,
            None,
            br#"{"code":"ConsumerGroup.NotFound","message":"gone"}"#,
        );
        assert!(matches!(e, ApiError::NotFound { .. }));
        let e = classify(500, None, b"oops");
        assert_eq!(
            (e.cause(), e.code().unwrap().as_str()),
            ("remote_error", "http_500")
        );
        let e = data::<LagData>(
            br#"{"success":false,"code":"Instance.NotFound","message":"no such instance"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.code().unwrap(), "Instance.NotFound");
    }

    #[test]
    fn endpoints_are_the_sdks_or_a_url() {
        assert_eq!(
            Endpoint::for_region("cn-hangzhou", false).base,
            "https://rocketmq.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            Endpoint::for_region("cn-hangzhou", true).host,
            "rocketmq-vpc.cn-hangzhou.aliyuncs.com"
        );
        let e = Endpoint::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (e.base.as_str(), e.host.as_str()),
            ("http://127.0.0.1:8080", "127.0.0.1:8080")
        );
        for bad in [
            "127.0.0.1:80",
            "ftp://x",
            "http://x/path",
            "http://x:0",
            "http://",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
