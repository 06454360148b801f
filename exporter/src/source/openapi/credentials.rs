//! Alibaba Cloud credentials, found the way the official default chain (`alibabacloud-credentials`)
//! finds them, in its order:
//!
//! 1. environment AccessKey: `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//!    optional `ALIBABA_CLOUD_SECURITY_TOKEN`;
//! 2. RRSA on ACK (OIDC): `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (all three), optional `ALIBABA_CLOUD_ROLE_SESSION_NAME` →
//!    STS `AssumeRoleWithOIDC` (`sts.aliyuncs.com`; `sts.{ALIBABA_CLOUD_STS_REGION}.aliyuncs.com`;
//!    `sts-vpc.…` with `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`); the token file is re-read on
//!    every refresh, since the kubelet rotates it;
//! 3. the CLI's profile file `~/.aliyun/config.json` (modes `AK`, `StsToken` and `EcsRamRole`;
//!    skipped with `ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true`), then
//!    `~/.alibabacloud/credentials.ini` (or `ALIBABA_CLOUD_CREDENTIALS_FILE`; types `access_key`,
//!    `sts`, `ecs_ram_role`), profile `ALIBABA_CLOUD_PROFILE` or the file's current/default one;
//! 4. the ECS RAM role: an IMDSv2 token first (`PUT /latest/api/token`), then
//!    `/latest/meta-data/ram/security-credentials/[role]`; without a token only when
//!    `ALIBABA_CLOUD_IMDSV1_DISABLED` is not `true`; skipped with
//!    `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`; `ALIBABA_CLOUD_ECS_METADATA` names the role.
//!
//! Temporary credentials are refreshed before they expire: 15 minutes before, as the official
//! SDK does, or a third of their lifetime before when they live less than 45 minutes. A refresh
//! that fails while the held credentials are still valid keeps them (and says so); only expired
//! credentials fail a call. Secrets never reach a log line, an error or `/metrics`: `AccessKey`'s
//! `Debug` redacts them and errors name only the source and the failure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::api::{read_capped, transport, ApiError};
use super::sign::{encode, format_utc, parse_utc, AccessKey};

/// Where the providers that call out are served (the defaults are Alibaba Cloud's; tests point
/// them at loopback).
#[derive(Debug, Clone)]
pub struct Settings {
    /// STS base URL for RRSA; None: from the official environment variables.
    pub sts_endpoint: Option<String>,
    /// ECS metadata service base URL.
    pub metadata_endpoint: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sts_endpoint: None,
            metadata_endpoint: DEFAULT_METADATA.into(),
        }
    }
}

pub const DEFAULT_METADATA: &str = "http://100.100.100.200";

#[derive(Debug, Clone)]
enum Provider {
    Static {
        key: AccessKey,
        from: String,
    },
    Oidc {
        sts: String,
        role_arn: String,
        provider_arn: String,
        token_file: PathBuf,
        session_name: String,
    },
    Ecs {
        metadata: String,
        role: Option<String>,
        imdsv1: bool,
    },
}

struct Held {
    key: AccessKey,
    /// Unix seconds; None for long-term keys.
    expires: Option<i64>,
    refresh_at: Option<i64>,
}

/// The process's credentials: one provider, the key it last gave, refreshed before expiry.
pub struct Credentials {
    provider: Provider,
    http: reqwest::Client,
    held: tokio::sync::Mutex<Option<Held>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The environment, as a lookup (tests pass their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn sts_base(env: Env<'_>, settings: &Settings) -> String {
    if let Some(s) = &settings.sts_endpoint {
        return s.trim_end_matches('/').to_string();
    }
    match env("ALIBABA_CLOUD_STS_REGION").filter(|r| !r.is_empty()) {
        Some(r) if truthy(env("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED")) => {
            format!("https://sts-vpc.{r}.aliyuncs.com")
        }
        Some(r) => format!("https://sts.{r}.aliyuncs.com"),
        None => "https://sts.aliyuncs.com".into(),
    }
}

impl Credentials {
    /// Finds the first provider of the chain that is configured. The ECS metadata service is
    /// asked (with a short timeout) only when nothing before it is configured. Errors are one
    /// line saying what was looked for.
    pub async fn detect(
        env: Env<'_>,
        home: Option<PathBuf>,
        settings: &Settings,
        http: reqwest::Client,
    ) -> Result<Arc<Credentials>, String> {
        let provider = Self::find(env, home, settings, &http).await?;
        Ok(Arc::new(Credentials {
            provider,
            http,
            held: tokio::sync::Mutex::new(None),
        }))
    }

    async fn find(
        env: Env<'_>,
        home: Option<PathBuf>,
        settings: &Settings,
        http: &reqwest::Client,
    ) -> Result<Provider, String> {
        let id = env("ALIBABA_CLOUD_ACCESS_KEY_ID").filter(|v| !v.is_empty());
        let secret = env("ALIBABA_CLOUD_ACCESS_KEY_SECRET").filter(|v| !v.is_empty());
        match (id, secret) {
            (Some(id), Some(secret)) => {
                return Ok(Provider::Static {
                    key: AccessKey {
                        id,
                        secret,
                        security_token: env("ALIBABA_CLOUD_SECURITY_TOKEN")
                            .filter(|v| !v.is_empty()),
                    },
                    from: "environment AccessKey (ALIBABA_CLOUD_ACCESS_KEY_ID)".into(),
                })
            }
            (Some(_), None) => {
                return Err(
                    "ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"
                        .into(),
                )
            }
            (None, Some(_)) => {
                return Err(
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not"
                        .into(),
                )
            }
            (None, None) => {}
        }
        let oidc = (
            env("ALIBABA_CLOUD_ROLE_ARN").filter(|v| !v.is_empty()),
            env("ALIBABA_CLOUD_OIDC_PROVIDER_ARN").filter(|v| !v.is_empty()),
            env("ALIBABA_CLOUD_OIDC_TOKEN_FILE").filter(|v| !v.is_empty()),
        );
        if let (Some(role_arn), Some(provider_arn), Some(token_file)) = oidc {
            return Ok(Provider::Oidc {
                sts: sts_base(env, settings),
                role_arn,
                provider_arn,
                token_file: PathBuf::from(token_file),
                session_name: env("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "rmq-exporter".into()),
            });
        }
        let profile = env("ALIBABA_CLOUD_PROFILE").filter(|v| !v.is_empty());
        if let Some(home) = home
            .as_ref()
            .filter(|_| !truthy(env("ALIBABA_CLOUD_CLI_PROFILE_DISABLED")))
        {
            let cli = home.join(".aliyun/config.json");
            if cli.is_file() {
                return cli_profile(&cli, profile.as_deref(), settings);
            }
        }
        let ini = env("ALIBABA_CLOUD_CREDENTIALS_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".alibabacloud/credentials.ini")));
        if let Some(ini) = ini.filter(|p| p.is_file()) {
            return ini_profile(&ini, profile.as_deref(), env, settings);
        }
        if truthy(env("ALIBABA_CLOUD_ECS_METADATA_DISABLED")) {
            return Err(no_credentials(
                "ECS metadata disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED",
            ));
        }
        let provider = Provider::Ecs {
            metadata: settings.metadata_endpoint.trim_end_matches('/').to_string(),
            role: env("ALIBABA_CLOUD_ECS_METADATA").filter(|v| !v.is_empty()),
            imdsv1: !truthy(env("ALIBABA_CLOUD_IMDSV1_DISABLED")),
        };
        // Only an answering metadata service with a RAM role makes this the chain's choice.
        match ecs_role(http, &provider, Duration::from_secs(2)).await {
            Ok(_) => Ok(provider),
            Err(e) => Err(no_credentials(&format!(
                "no ECS RAM role at {}: {e}",
                settings.metadata_endpoint
            ))),
        }
    }

    /// Where the credentials come from, for the start-up log line (no secret in it).
    pub fn describe(&self) -> String {
        match &self.provider {
            Provider::Static { from, .. } => from.clone(),
            Provider::Oidc { role_arn, sts, .. } => {
                format!("RRSA: AssumeRoleWithOIDC of {role_arn} at {sts}")
            }
            Provider::Ecs { metadata, role, .. } => format!(
                "ECS RAM role {} at {metadata}",
                role.as_deref().unwrap_or("(from the metadata service)")
            ),
        }
    }

    /// A key valid now, refreshed first when it is due.
    pub async fn get(&self) -> Result<AccessKey, ApiError> {
        let mut held = self.held.lock().await;
        let now = super::unix_seconds();
        if let Some(h) = held.as_ref() {
            if h.refresh_at.is_none_or(|at| now < at) {
                return Ok(h.key.clone());
            }
        }
        match self.fetch().await {
            Ok((key, expires)) => {
                let refresh_at = expires.map(|e| {
                    let lifetime = (e - now).max(0);
                    e - (lifetime / 3).min(900)
                });
                if let Some(e) = expires {
                    tracing::debug!(
                        source = %self.describe(),
                        expires = %format_utc(e),
                        "temporary credentials obtained"
                    );
                }
                *held = Some(Held {
                    key: key.clone(),
                    expires,
                    refresh_at,
                });
                Ok(key)
            }
            Err(e) => match held.as_mut() {
                // Still valid: keep them, try again on the next call (at most one line per try
                // of a refresh, which happens once a cycle at most).
                Some(h) if h.expires.is_some_and(|x| now + 5 < x) => {
                    tracing::warn!(
                        source = %self.describe(),
                        "refreshing credentials failed, keeping the current ones until {}: {e}",
                        format_utc(h.expires.unwrap_or(0))
                    );
                    h.refresh_at = Some(now + 5);
                    Ok(h.key.clone())
                }
                _ => Err(ApiError::Credentials(format!("{}: {e}", self.describe()))),
            },
        }
    }

    async fn fetch(&self) -> Result<(AccessKey, Option<i64>), String> {
        match &self.provider {
            Provider::Static { key, .. } => Ok((key.clone(), None)),
            Provider::Oidc {
                sts,
                role_arn,
                provider_arn,
                token_file,
                session_name,
            } => {
                let token = std::fs::read_to_string(token_file)
                    .map_err(|e| format!("OIDC token file {}: {e}", token_file.display()))?;
                let params = [
                    ("Action", "AssumeRoleWithOIDC"),
                    ("Format", "JSON"),
                    ("Version", "2015-04-01"),
                    ("DurationSeconds", "3600"),
                    ("RoleArn", role_arn),
                    ("OIDCProviderArn", provider_arn),
                    ("OIDCToken", token.trim()),
                    ("RoleSessionName", session_name),
                    ("Timestamp", &format_utc(super::unix_seconds())),
                ];
                let query: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", encode(v)))
                    .collect();
                let url = format!("{sts}/?{}", query.join("&"));
                let body = self.call(self.http.get(url)).await?;
                #[derive(Deserialize)]
                struct StsAnswer {
                    #[serde(rename = "Credentials")]
                    credentials: Option<Temporary>,
                    #[serde(rename = "Code")]
                    code: Option<String>,
                    #[serde(rename = "Message")]
                    message: Option<String>,
                }
                let a: StsAnswer = serde_json::from_slice(&body)
                    .map_err(|e| format!("AssumeRoleWithOIDC: unreadable answer: {e}"))?;
                match a.credentials {
                    Some(t) => t.into_key("AssumeRoleWithOIDC"),
                    None => Err(format!(
                        "AssumeRoleWithOIDC: {}: {}",
                        a.code.unwrap_or_default(),
                        a.message.unwrap_or_default()
                    )),
                }
            }
            ecs @ Provider::Ecs { .. } => {
                let (role, token) = ecs_role(&self.http, ecs, Duration::from_secs(5)).await?;
                let Provider::Ecs { metadata, .. } = ecs else {
                    unreachable!()
                };
                let url = format!("{metadata}/latest/meta-data/ram/security-credentials/{role}");
                let mut req = self.http.get(url).timeout(Duration::from_secs(5));
                if let Some(t) = &token {
                    req = req.header("X-aliyun-ecs-metadata-token", t);
                }
                let body = self.call(req).await?;
                let t: Temporary = serde_json::from_slice(&body)
                    .map_err(|e| format!("ECS RAM role {role}: unreadable answer: {e}"))?;
                if t.code.as_deref().is_some_and(|c| c != "Success") {
                    return Err(format!(
                        "ECS RAM role {role}: code {}",
                        t.code.unwrap_or_default()
                    ));
                }
                t.into_key(&format!("ECS RAM role {role}"))
            }
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<bytes::Bytes, String> {
        let resp = req
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| transport(e).to_string())?;
        let status = resp.status();
        let body = read_capped(resp).await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(body)
        } else {
            let e = super::api::classify(status.as_u16(), None, &body);
            Err(e.to_string())
        }
    }
}

fn no_credentials(last: &str) -> String {
    format!(
        "no Alibaba Cloud credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
         or RRSA's ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE, \
         or write ~/.alibabacloud/credentials.ini, or run on ECS with a RAM role ({last})"
    )
}

#[derive(Deserialize)]
struct Temporary {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "AccessKeySecret")]
    access_key_secret: String,
    #[serde(rename = "SecurityToken")]
    security_token: String,
    #[serde(rename = "Expiration")]
    expiration: String,
}

impl Temporary {
    fn into_key(self, what: &str) -> Result<(AccessKey, Option<i64>), String> {
        let expires = parse_utc(&self.expiration).ok_or_else(|| {
            format!(
                "{what}: Expiration `{}` is not YYYY-MM-DDTHH:MM:SSZ",
                self.expiration
            )
        })?;
        Ok((
            AccessKey {
                id: self.access_key_id,
                secret: self.access_key_secret,
                security_token: Some(self.security_token),
            },
            Some(expires),
        ))
    }
}

/// The RAM role name (configured or read) and the IMDSv2 token to read it with (None: IMDSv1).
async fn ecs_role(
    http: &reqwest::Client,
    ecs: &Provider,
    timeout: Duration,
) -> Result<(String, Option<String>), String> {
    let Provider::Ecs {
        metadata,
        role,
        imdsv1,
    } = ecs
    else {
        return Err("not an ECS provider".into());
    };
    let token = match http
        .put(format!("{metadata}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
        .timeout(timeout)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Some(r.text().await.map_err(|e| e.to_string())?),
        Ok(r) if !imdsv1 => {
            return Err(format!(
                "IMDSv2 token: HTTP {} (IMDSv1 is disabled by ALIBABA_CLOUD_IMDSV1_DISABLED)",
                r.status()
            ))
        }
        Err(e) if !imdsv1 => return Err(format!("IMDSv2 token: {}", transport(e))),
        _ => None,
    };
    if let Some(r) = role {
        return Ok((r.clone(), token));
    }
    let mut req = http
        .get(format!(
            "{metadata}/latest/meta-data/ram/security-credentials/"
        ))
        .timeout(timeout);
    if let Some(t) = &token {
        req = req.header("X-aliyun-ecs-metadata-token", t);
    }
    let resp = req.send().await.map_err(|e| transport(e).to_string())?;
    if !resp.status().is_success() {
        return Err(format!("RAM role name: HTTP {}", resp.status()));
    }
    let name = resp.text().await.map_err(|e| e.to_string())?;
    let name = name.lines().next().unwrap_or("").trim().to_string();
    if name.is_empty() {
        return Err("the instance has no RAM role".into());
    }
    Ok((name, token))
}

fn cli_profile(
    path: &std::path::Path,
    profile: Option<&str>,
    settings: &Settings,
) -> Result<Provider, String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        current: Option<String>,
        #[serde(default)]
        profiles: Vec<Profile>,
    }
    #[derive(Deserialize)]
    struct Profile {
        name: String,
        #[serde(default)]
        mode: String,
        #[serde(default)]
        access_key_id: String,
        #[serde(default)]
        access_key_secret: String,
        #[serde(default)]
        sts_token: String,
        #[serde(default)]
        ram_role_name: String,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: File = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not the CLI's config.json: {e}", path.display()))?;
    let want = profile
        .map(str::to_string)
        .or(f.current)
        .unwrap_or_else(|| "default".into());
    let p = f
        .profiles
        .into_iter()
        .find(|p| p.name == want)
        .ok_or_else(|| format!("{}: no profile `{want}`", path.display()))?;
    let from = format!("{} profile {want}", path.display());
    match p.mode.as_str() {
        "AK" | "StsToken" if !p.access_key_id.is_empty() && !p.access_key_secret.is_empty() => {
            Ok(Provider::Static {
                key: AccessKey {
                    id: p.access_key_id,
                    secret: p.access_key_secret,
                    security_token: (p.mode == "StsToken" && !p.sts_token.is_empty())
                        .then_some(p.sts_token),
                },
                from,
            })
        }
        "EcsRamRole" => Ok(Provider::Ecs {
            metadata: settings.metadata_endpoint.trim_end_matches('/').to_string(),
            role: (!p.ram_role_name.is_empty()).then_some(p.ram_role_name),
            imdsv1: true,
        }),
        "AK" | "StsToken" => Err(format!(
            "{from}: access_key_id or access_key_secret is empty"
        )),
        other => Err(format!(
            "{from}: mode `{other}` is not supported (use AK, StsToken or EcsRamRole, or RRSA)"
        )),
    }
}

fn ini_profile(
    path: &std::path::Path,
    profile: Option<&str>,
    env: Env<'_>,
    settings: &Settings,
) -> Result<Provider, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let want = profile.unwrap_or("default");
    let mut section = None::<String>;
    let mut keys = std::collections::HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        if section.as_deref() == Some(want) {
            if let Some((k, v)) = line.split_once('=') {
                keys.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
    }
    let from = format!("{} [{want}]", path.display());
    if keys.is_empty() {
        return Err(format!("{from}: no such profile, or it is empty"));
    }
    let get = |k: &str| keys.get(k).filter(|v| !v.is_empty()).cloned();
    match get("type").as_deref().unwrap_or("access_key") {
        t @ ("access_key" | "sts") => match (get("access_key_id"), get("access_key_secret")) {
            (Some(id), Some(secret)) => Ok(Provider::Static {
                key: AccessKey {
                    id,
                    secret,
                    security_token: if t == "sts" {
                        get("security_token")
                    } else {
                        None
                    },
                },
                from,
            }),
            _ => Err(format!(
                "{from}: access_key_id and access_key_secret are required"
            )),
        },
        "ecs_ram_role" => Ok(Provider::Ecs {
            metadata: settings.metadata_endpoint.trim_end_matches('/').to_string(),
            role: get("role_name"),
            imdsv1: !truthy(env("ALIBABA_CLOUD_IMDSV1_DISABLED")),
        }),
        other => Err(format!(
            "{from}: type `{other}` is not supported (use access_key, sts or ecs_ram_role, or RRSA)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rmq-cred-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    async fn detect(
        pairs: &[(&str, &str)],
        home: Option<PathBuf>,
    ) -> Result<Arc<Credentials>, String> {
        let env = env_of(pairs);
        Credentials::detect(&env, home, &Settings::default(), reqwest::Client::new()).await
    }

    #[tokio::test]
    async fn the_environment_comes_first_and_needs_both_halves() {
        let c = detect(
            &[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK"),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "SK-secret"),
                ("ALIBABA_CLOUD_SECURITY_TOKEN", "TOK-secret"),
                ("ALIBABA_CLOUD_ROLE_ARN", "r"),
            ],
            None,
        )
        .await
        .unwrap();
        let key = c.get().await.unwrap();
        assert_eq!(
            (key.id.as_str(), key.security_token.as_deref()),
            ("AK", Some("TOK-secret"))
        );
        assert!(!format!("{c:?} {key:?}").contains("secret\""));
        assert!(
            !format!("{key:?}").contains("SK-secret") && !format!("{key:?}").contains("TOK-secret")
        );
        let e = detect(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK")], None)
            .await
            .unwrap_err();
        assert!(e.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"), "{e}");
    }

    #[tokio::test]
    async fn rrsa_needs_all_three_variables_and_uses_the_regional_sts() {
        let c = detect(
            &[
                ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
                (
                    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                    "acs:ram::1:oidc-provider/p",
                ),
                ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/var/run/token"),
                ("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou"),
                ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
            ],
            None,
        )
        .await
        .unwrap();
        assert!(
            c.describe()
                .contains("https://sts-vpc.cn-hangzhou.aliyuncs.com"),
            "{}",
            c.describe()
        );
        let e = detect(
            &[
                ("ALIBABA_CLOUD_ROLE_ARN", "r"),
                ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
            ],
            None,
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("no Alibaba Cloud credentials found"), "{e}");
    }

    #[tokio::test]
    async fn profile_files_are_read_in_the_official_order() {
        let home = dir("files");
        std::fs::create_dir_all(home.join(".alibabacloud")).unwrap();
        std::fs::write(
            home.join(".alibabacloud/credentials.ini"),
            "[default]\ntype = access_key\naccess_key_id = INI_AK\naccess_key_secret = INI_SK\n\n[other]\ntype = sts\naccess_key_id = O\naccess_key_secret = OS\nsecurity_token = OT\n\n[bad]\ntype = rsa_key_pair\n",
        )
        .unwrap();
        let c = detect(&[], Some(home.clone())).await.unwrap();
        assert_eq!(c.get().await.unwrap().id, "INI_AK");
        let c = detect(&[("ALIBABA_CLOUD_PROFILE", "other")], Some(home.clone()))
            .await
            .unwrap();
        assert_eq!(c.get().await.unwrap().security_token.as_deref(), Some("OT"));
        let e = detect(&[("ALIBABA_CLOUD_PROFILE", "bad")], Some(home.clone()))
            .await
            .unwrap_err();
        assert!(e.contains("rsa_key_pair"), "{e}");
        // The CLI's config.json comes before credentials.ini.
        std::fs::create_dir_all(home.join(".aliyun")).unwrap();
        std::fs::write(
            home.join(".aliyun/config.json"),
            r#"{"current":"p1","profiles":[{"name":"p1","mode":"AK","access_key_id":"CLI_AK","access_key_secret":"CLI_SK"}]}"#,
        )
        .unwrap();
        let c = detect(&[], Some(home.clone())).await.unwrap();
        assert_eq!(c.get().await.unwrap().id, "CLI_AK");
        assert!(!c.describe().contains("CLI_SK"));
    }
}
