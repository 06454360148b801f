//! Alibaba Cloud OpenAPI signature V3 (`ACS3-HMAC-SHA256`), and the UTC timestamps it needs.
//!
//! Why this project's own code: no crate on crates.io signs V3 publicly today (2026-12). `ali-acs`
//! 0.8 implements it but keeps the signer private and has no STS token support; `alibabacloud`
//! 0.1, `alibaba-cloud-sdk-rust` 0.1 and `aliyun-openapi-core-rust-sdk` 1.1 sign with the old
//! HMAC-SHA1 schemes. V3 is about a hundred lines on `hmac` + `sha2`, and it is checked three ways:
//! the documentation's worked example (a unit test below), requests captured from the official
//! Python SDK (`tests/openapi.rs`), and an independent verifier in the fake OpenAPI server that
//! every integration test's request passes through (`tests/rig/acs3.py`).
//!
//! The algorithm (Alibaba Cloud "Request syntax and signature method V3"):
//! canonical request = METHOD \n canonical URI \n canonical query \n canonical headers \n
//! signed header names \n hex(sha256(body)); string to sign = `ACS3-HMAC-SHA256\n` +
//! hex(sha256(canonical request)); signature = hex(hmac_sha256(AccessKeySecret, string to sign)).
//! Path segments, query names and values are RFC 3986-encoded (`A-Za-z0-9-_.~` kept, everything
//! else `%XX` upper hex of the UTF-8 bytes). [`Request::sign`] returns the URL to send with the
//! path and query exactly as signed, so what goes on the wire is what was signed.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name in the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// Hex SHA-256 of an empty body.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An AccessKey pair, with the security token of temporary (STS) credentials. `Debug` never
/// shows the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub security_token: Option<String>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Appends `s` RFC 3986-encoded to `out`.
pub fn encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

/// `s` RFC 3986-encoded.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    encode_into(&mut out, s);
    out
}

/// The canonical URI of a path given as raw segments: `/` + each segment encoded, joined by `/`.
pub fn canonical_path(segments: &[&str]) -> String {
    let mut out = String::new();
    for seg in segments {
        out.push('/');
        encode_into(&mut out, seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query of raw (name, value) pairs: encoded, sorted by encoded name (then value),
/// `name=value` joined by `&`.
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The signature of a canonical request, with the signed headers given as (name, value) pairs
/// (any case, any order). Returns (signed header names joined by `;`, hex signature).
pub fn signature(
    secret: &str,
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &[(&str, &str)],
    payload_sha256: &str,
) -> (String, String) {
    let mut hs: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .collect();
    hs.sort();
    let mut canonical_headers = String::new();
    for (k, v) in &hs {
        canonical_headers.push_str(k);
        canonical_headers.push(':');
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let signed: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload_sha256}"
    );
    let string_to_sign = format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    (signed, hex(&mac.finalize().into_bytes()))
}

/// One bodiless OpenAPI request (every ApsaraMQ 5.x read is a ROA `GET` with no body).
pub struct Request<'a> {
    pub method: &'a str,
    /// `host` or `host:port`, exactly as the `host` header will carry it.
    pub host: &'a str,
    pub path: &'a [&'a str],
    pub query: &'a [(&'a str, &'a str)],
    pub action: &'a str,
    pub version: &'a str,
    /// `x-acs-date`, `YYYY-MM-DDTHH:MM:SSZ` (see [`format_utc`]).
    pub date: &'a str,
    /// `x-acs-signature-nonce`: unique per request.
    pub nonce: &'a str,
}

/// What to send: the path and query exactly as signed, and every header (all of them signed).
#[derive(Debug)]
pub struct Signed {
    /// Path and query, e.g. `/instances/rmq-cn-x/consumerGroups?pageNumber=1&pageSize=100`.
    pub path_and_query: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Request<'_> {
    pub fn sign(&self, key: &AccessKey) -> Signed {
        let uri = canonical_path(self.path);
        let query = canonical_query(self.query);
        let mut headers: Vec<(&'static str, String)> = vec![
            ("host", self.host.to_string()),
            ("x-acs-action", self.action.to_string()),
            ("x-acs-version", self.version.to_string()),
            ("x-acs-date", self.date.to_string()),
            ("x-acs-signature-nonce", self.nonce.to_string()),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256.to_string()),
        ];
        if let Some(token) = &key.security_token {
            headers.push(("x-acs-security-token", token.clone()));
            headers.push(("x-acs-accesskey-id", key.id.clone()));
        }
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (signed, sig) = signature(
            &key.secret,
            self.method,
            &uri,
            &query,
            &pairs,
            EMPTY_BODY_SHA256,
        );
        headers.push((
            "authorization",
            format!(
                "{ALGORITHM} Credential={},SignedHeaders={signed},Signature={sig}",
                key.id
            ),
        ));
        let path_and_query = if query.is_empty() {
            uri
        } else {
            format!("{uri}?{query}")
        };
        Signed {
            path_and_query,
            headers,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (UTC).
pub fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` (fractional seconds are accepted and dropped).
pub fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documentation's worked example (ECS RunInstances, POST /, empty body).
    #[test]
    fn the_documented_example_signs_as_documented() {
        let query = canonical_query(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ];
        let (signed, sig) = signature(
            "YourAccessKeySecret",
            "POST",
            "/",
            &query,
            &headers,
            EMPTY_BODY_SHA256,
        );
        assert_eq!(
            signed,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            sig,
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn rfc3986_keeps_only_unreserved_characters() {
        assert_eq!(encode("a b+c*d~e%f/g"), "a%20b%2Bc%2Ad~e%25f%2Fg");
        assert_eq!(encode("组-ü"), "%E7%BB%84-%C3%BC");
        assert_eq!(
            canonical_path(&["instances", "rmq-cn-1", "consumerGroups", "G a*"]),
            "/instances/rmq-cn-1/consumerGroups/G%20a%2A"
        );
        assert_eq!(canonical_path(&[]), "/");
        assert_eq!(
            canonical_query(&[("pageSize", "100"), ("filter", "a b"), ("pageNumber", "2")]),
            "filter=a%20b&pageNumber=2&pageSize=100"
        );
    }

    #[test]
    fn a_signed_request_sends_what_it_signed_and_signs_the_sts_token() {
        let key = AccessKey {
            id: "STS.id".into(),
            secret: "s".into(),
            security_token: Some("tok+/=".into()),
        };
        let req = Request {
            method: "GET",
            host: "127.0.0.1:8080",
            path: &["instances", "i", "consumerGroups", "G 1", "lag"],
            query: &[("topicName", "T*")],
            action: "GetConsumerGroupLag",
            version: "2022-08-01",
            date: "2026-12-02T06:00:00Z",
            nonce: "n1",
        };
        let s = req.sign(&key);
        assert_eq!(
            s.path_and_query,
            "/instances/i/consumerGroups/G%201/lag?topicName=T%2A"
        );
        let auth = &s.headers.iter().find(|h| h.0 == "authorization").unwrap().1;
        assert!(auth.starts_with("ACS3-HMAC-SHA256 Credential=STS.id,SignedHeaders=host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature="), "{auth}");
        let pairs: Vec<(&str, &str)> = s
            .headers
            .iter()
            .filter(|h| h.0 != "authorization")
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let (_, again) = signature(
            "s",
            "GET",
            "/instances/i/consumerGroups/G%201/lag",
            "topicName=T%2A",
            &pairs,
            EMPTY_BODY_SHA256,
        );
        assert!(auth.ends_with(&again));
        assert!(!format!("{key:?}").contains("tok+/="));
        assert!(!format!("{key:?}").contains("\"s\""));
    }

    #[test]
    fn utc_timestamps_round_trip() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_698_315_752), "2023-10-26T10:22:32Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_698_315_752, 4_102_444_799] {
            assert_eq!(parse_utc(&format_utc(t)), Some(t));
        }
        assert_eq!(
            parse_utc("2026-12-02T06:00:00.123Z"),
            parse_utc("2026-12-02T06:00:00Z")
        );
        assert_eq!(parse_utc("2026-13-02T06:00:00Z"), None);
        assert_eq!(parse_utc("yesterday"), None);
    }
}
