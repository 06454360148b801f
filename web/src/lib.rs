//! The HTTP server of both binaries (`/metrics`, health): plain HTTP, or TLS and basic auth from a
//! web config file in the format of the Prometheus exporter-toolkit (`--web.config.file`), which
//! operators already write for node_exporter and friends:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths: against the config file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: ca.crt
//!   min_version: TLS12             # TLS12 or TLS13
//!   max_version: TLS13
//!   cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]   # TLS 1.2 suites, Go's names
//! http_server_config:
//!   headers: {X-Frame-Options: deny}
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hashes (htpasswd -nBC 10)
//! ```
//!
//! The file and every file it names are read again when any of them changes (checked every
//! [`WATCH_EVERY`], by content, so a Kubernetes Secret or ConfigMap volume's `..data` symlink swap
//! and cert-manager's rotation are picked up), and on [`Web::reload`] (SIGHUP). A config that does
//! not load keeps the previous one, with one error line. New connections use the current config;
//! open ones keep theirs.
//!
//! Own code rather than a crate: no crate on crates.io reads the exporter-toolkit format (searched
//! "exporter-toolkit", "web.config.file", "web-config"); this is the format, on rustls (the TLS
//! stack reqwest and kube already bring), hyper and the `bcrypt` crate. Client auth types
//! `RequestClientCert` and `RequireAnyClientCert` (a certificate taken unverified) are refused at
//! load: rustls verifies what it accepts.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

/// How often the config file and the files it names are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// A bad web config: one line, naming the key or file.
#[derive(Debug, thiserror::Error)]
#[error("web config {path}: {message}")]
pub struct ConfigError {
    path: String,
    message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A loaded web config.
pub struct Config {
    tls: Option<Arc<rustls::ServerConfig>>,
    /// user → bcrypt hash.
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Every file read, for change detection.
    files: Vec<PathBuf>,
}

impl Config {
    /// No TLS, no auth.
    pub fn plain() -> Config {
        Config {
            tls: None,
            users: BTreeMap::new(),
            headers: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn basic_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Reads `path` and the files it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut files = vec![path.to_path_buf()];
        let mut resolve = |key: &str, p: &Option<String>| -> Result<Option<PathBuf>, ConfigError> {
            match p.as_deref().filter(|p| !p.is_empty()) {
                None => Ok(None),
                Some(p) => {
                    let full = base.join(p);
                    if !full.is_file() {
                        return Err(err(format!("{key}: {} is not a file", full.display())));
                    }
                    files.push(full.clone());
                    Ok(Some(full))
                }
            }
        };
        let tls = match &file.tls_server_config {
            None => None,
            Some(t) => {
                let cert = resolve("tls_server_config.cert_file", &t.cert_file)?;
                let key = resolve("tls_server_config.key_file", &t.key_file)?;
                let ca = resolve("tls_server_config.client_ca_file", &t.client_ca_file)?;
                let (Some(cert), Some(key)) = (cert, key) else {
                    return Err(err(
                        "tls_server_config: cert_file and key_file are both required".into(),
                    ));
                };
                Some(Arc::new(
                    server_config(t, &cert, &key, ca.as_deref()).map_err(err)?,
                ))
            }
        };
        for (user, hash) in &file.basic_auth_users {
            if !hash.starts_with("$2") {
                return Err(err(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
                )));
            }
        }
        let mut headers = Vec::new();
        if let Some(h) = &file.http_server_config {
            if h.http2 == Some(true) {
                tracing::debug!("http_server_config.http2: HTTP/1.1 is served");
            }
            for (k, v) in &h.headers {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    err(format!(
                        "http_server_config.headers: `{k}` is not a header name"
                    ))
                })?;
                let value = HeaderValue::from_str(v).map_err(|_| {
                    err(format!(
                        "http_server_config.headers.{k}: not a header value"
                    ))
                })?;
                headers.push((name, value));
            }
        }
        Ok(Config {
            tls,
            users: file.basic_auth_users,
            headers,
            files,
        })
    }
}

/// PEM files for rustls, with errors that name the setting and the file (shared by the HTTP
/// server here and the exporter's TLS client to RocketMQ).
pub mod pem {
    use std::path::Path;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// Every certificate in `path`; none is an error.
    pub fn certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{setting} {}: no certificate", path.display()));
        }
        Ok(certs)
    }

    /// The first private key in `path` (PKCS#8, PKCS#1 or SEC1).
    pub fn key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{setting} {}: {e}", path.display()))
    }

    /// A root store of every certificate in `path`.
    pub fn roots(setting: &str, path: &Path) -> Result<rustls::RootCertStore, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(setting, path)? {
            roots
                .add(c)
                .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
        }
        Ok(roots)
    }
}

fn server_config(
    t: &TlsFile,
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
) -> Result<rustls::ServerConfig, String> {
    let provider = rustls::crypto::ring::default_provider();
    let certs = pem::certs("cert_file", cert)?;
    let key = pem::key("key_file", key)?;
    let version = |key: &str, v: &Option<String>, default| match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(format!(
            "{key}: `{other}` (TLS12 or TLS13 here; rustls has no TLS 1.0/1.1)"
        )),
    };
    let min = version("min_version", &t.min_version, 12)?;
    let max = version("max_version", &t.max_version, 13)?;
    if min > max {
        return Err("min_version is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let mut suites = provider.cipher_suites.clone();
    if !t.cipher_suites.is_empty() {
        // Go applies cipher_suites to TLS 1.2 only; TLS 1.3 suites stay.
        for name in &t.cipher_suites {
            if !suites
                .iter()
                .any(|s| s.suite().as_str() == Some(name.as_str()))
            {
                let known: Vec<&str> = suites.iter().filter_map(|s| s.suite().as_str()).collect();
                return Err(format!(
                    "cipher_suites: `{name}` is not supported; supported: {}",
                    known.join(", ")
                ));
            }
        }
        suites.retain(|s| {
            s.version() == &rustls::version::TLS13
                || t.cipher_suites
                    .iter()
                    .any(|n| s.suite().as_str() == Some(n.as_str()))
        });
    }
    if !t.curve_preferences.is_empty() {
        tracing::debug!("tls_server_config.curve_preferences: rustls' defaults are used");
    }
    let _ = t.prefer_server_cipher_suites;
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..provider
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider.clone()))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("min_version/max_version/cipher_suites: {e}"))?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match (auth, ca) {
        ("NoClientCert" | "", _) => builder.with_no_client_auth(),
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", Some(ca)) => {
            let roots = pem::roots("client_ca_file", ca)?;
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider));
            let v = if auth == "VerifyClientCertIfGiven" {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("client_ca_file: {e}"))?)
        }
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", None) => {
            return Err(format!("client_auth_type {auth} needs client_ca_file"))
        }
        (other, _) => {
            return Err(format!(
                "client_auth_type `{other}`: supported are NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file/key_file: {e}"))
}

/// The server's current config, reloaded when its files change.
pub struct Web {
    path: Option<PathBuf>,
    current: RwLock<Arc<Config>>,
    /// Hash of every file the current config was read from.
    fingerprint: Mutex<Option<[u8; 32]>>,
    /// Passwords already checked against a hash: sha256(user, password, hash) → ok. bcrypt costs
    /// tens of milliseconds on purpose; a scraper sends the same credentials every time.
    verified: Mutex<HashMap<[u8; 32], bool>>,
}

fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().into()
}

impl Web {
    /// Loads `path` (None: plain HTTP, no auth). An error here is a start-up error.
    pub fn new(path: Option<PathBuf>) -> Result<Arc<Web>, ConfigError> {
        let config = match &path {
            Some(p) => Config::load(p)?,
            None => Config::plain(),
        };
        let fp = path.as_ref().map(|_| fingerprint(&config.files));
        Ok(Arc::new(Web {
            path,
            current: RwLock::new(Arc::new(config)),
            fingerprint: Mutex::new(fp),
            verified: Mutex::new(HashMap::new()),
        }))
    }

    pub fn config(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the config again if any of its files changed (or always, with `force`). A config that
    /// does not load keeps the current one; the error is returned.
    pub fn reload(&self, force: bool) -> Result<bool, ConfigError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let files = self.config().files.clone();
        let fp = fingerprint(&files);
        let mut last = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
        if !force && *last == Some(fp) {
            return Ok(false);
        }
        // The set of files may change with the config: fingerprint what was read.
        match Config::load(path) {
            Ok(c) => {
                *last = Some(fingerprint(&c.files));
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
                self.verified
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                Ok(true)
            }
            Err(e) => {
                // Do not retry the same broken content every tick.
                *last = Some(fp);
                Err(e)
            }
        }
    }

    /// Checks for changes every [`WATCH_EVERY`] until the task is dropped; logs each reload.
    pub async fn watch(self: Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.reload_and_log(false);
        }
    }

    /// [`Web::reload`] with one log line for a change or an error.
    pub fn reload_and_log(&self, force: bool) {
        match self.reload(force) {
            Ok(true) => {
                let c = self.config();
                tracing::info!(
                    tls = c.tls(),
                    basic_auth = c.basic_auth(),
                    "web config reloaded"
                );
            }
            Ok(false) => {}
            Err(e) => tracing::error!("{e}; keeping the previous web config"),
        }
    }

    /// Whether `req` may pass (no users configured, or valid basic credentials).
    fn authorized(&self, config: &Config, req: &Request<Incoming>) -> bool {
        if config.users.is_empty() {
            return true;
        }
        let Some((user, password)) = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
        else {
            return false;
        };
        let Some(hash) = config.users.get(&user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if let Some(&ok) = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return ok;
        }
        let ok = bcrypt::verify(&password, hash).unwrap_or(false);
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }
}

/// `err: source: source ...` for a log line or a status message, without repeating a source whose
/// text its parent already contains (reqwest, kube and rustls wrap hyper's and io's errors and
/// often print them too). Both binaries use it, so it lives here with the rest they share.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves `handler` on `listener` until the listener fails, with `web`'s TLS, basic auth and
/// headers as they are when each connection is accepted.
pub async fn serve<H>(listener: TcpListener, web: Arc<Web>, handler: H) -> std::io::Result<()>
where
    H: Fn(&Request<Incoming>) -> Response<Body> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let (stream, _peer) = listener.accept().await?;
        let (web, handler) = (web.clone(), handler.clone());
        tokio::spawn(async move {
            let config = web.config();
            let service = {
                let config = config.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let mut resp = if web.authorized(&config, &req) {
                        handler(&req)
                    } else {
                        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                        r.headers_mut().insert(
                            hyper::header::WWW_AUTHENTICATE,
                            HeaderValue::from_static("Basic realm=\"rmq\""),
                        );
                        r
                    };
                    for (k, v) in &config.headers {
                        resp.headers_mut().insert(k.clone(), v.clone());
                    }
                    async move { Ok::<_, Infallible>(resp) }
                })
            };
            let http = hyper::server::conn::http1::Builder::new();
            match &config.tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    match accepted {
                        Ok(Ok(stream)) => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_names_every_cause_once() {
        #[derive(Debug)]
        struct Wrap(&'static str, Option<Box<Wrap>>);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|w| w as _)
            }
        }
        let inner = Wrap("connection refused", None);
        let middle = Wrap("connect: connection refused", Some(Box::new(inner)));
        let outer = Wrap("GET /api/v1/query", Some(Box::new(middle)));
        assert_eq!(
            error_chain(&outer),
            "GET /api/v1/query: connect: connection refused"
        );
        assert_eq!(error_chain(&Wrap("alone", None)), "alone");
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "rmq-web-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bad_configs_are_one_line_naming_the_key() {
        let d = tmp();
        for (text, want) in [
            (
                "basic_auth_users:\n  u: plain\n",
                "basic_auth_users.u: not a bcrypt hash",
            ),
            (
                "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
                "tls_server_config.cert_file",
            ),
            (
                "tls_srever_config: {}\n",
                "unknown field `tls_srever_config`",
            ),
            (
                "http_server_config:\n  headers:\n    \"bad header\": x\n",
                "is not a header name",
            ),
        ] {
            let p = write(&d, "web.yml", text);
            let e = Config::load(&p).err().unwrap().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn an_empty_file_is_plain_http_and_a_broken_edit_keeps_the_previous_config() {
        let d = tmp();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let p = write(
            &d,
            "web2.yml",
            &format!("basic_auth_users:\n  u: '{hash}'\n"),
        );
        let web = Web::new(Some(p.clone())).unwrap();
        assert!(web.config().basic_auth());
        assert!(
            !web.reload(false).unwrap(),
            "unchanged files are not reloaded"
        );
        write(&d, "web2.yml", "basic_auth_users: [oops\n");
        assert!(web.reload(false).is_err());
        assert!(web.config().basic_auth(), "the previous config stays");
        write(&d, "web2.yml", "");
        assert!(web.reload(false).unwrap());
        assert!(!web.config().basic_auth() && !web.config().tls());
    }
}
