//! The `prometheus` trigger over TLS, read as KEDA reads it (`authModes: tls` with `cert` and
//! `key`, `ca`, `unsafeSsl`), against Debian's Prometheus served over HTTPS with basic auth, one
//! instance requiring a client certificate (`client_auth_type: RequireAndVerifyClientCert`) and
//! one not. The sidecar runs `--simulate` with the TriggerAuthentications' values in a mounted
//! secret directory; each ScaledObject's outcome is read from its /metrics: the value handed to
//! the HPA logic (the query is `vector(42)`), the desired replicas (42 / 10 → 5), or failed polls
//! with the reason in the log. No key or password may reach the log or /metrics.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use support::{name, scratch, start_prometheus_with, Metrics, Sidecar};

const USER: &str = "keda";
const PASSWORD: &str = "pr0m-s3cret";

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certs(dir: &Path) {
    support::certs::ca(dir);
    support::certs::leaf(
        dir,
        "server",
        "prometheus",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    support::certs::leaf(dir, "client", "keda", "extendedKeyUsage=clientAuth\n");
}

/// A mounted Secret: `<secrets>/<secret>/<key>` per entry.
fn secret(secrets: &Path, name: &str, entries: &[(&str, &str)]) {
    let dir = secrets.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (key, value) in entries {
        std::fs::write(dir.join(key), value).unwrap();
    }
}

/// A TriggerAuthentication `name` whose parameters all come from Secret `name`.
fn trigger_auth(name: &str, params: &[&str]) -> String {
    let mut out = format!(
        "---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  secretTargetRef:\n"
    );
    for p in params {
        out.push_str(&format!(
            "  - parameter: {p}\n    name: {name}\n    key: {p}\n"
        ));
    }
    out
}

/// A ScaledObject with one `prometheus` trigger on `vector(42)`, threshold 10.
fn scaled_object(name: &str, server: &str, metadata_extra: &str, auth: &str) -> String {
    format!(
        "---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: {name}\n  pollingInterval: 1\n  minReplicaCount: 1\n  maxReplicaCount: 10\n  triggers:\n  - type: prometheus\n    metadata:\n      serverAddress: https://{server}\n      query: vector(42)\n      threshold: '10'\n{metadata_extra}    authenticationRef:\n      name: {auth}\n"
    )
}

/// The sidecar in `--simulate` on `config` with its secrets in `secrets`, at debug level: every
/// poll is logged, and still no secret may show.
fn start_sidecar(config: &Path, secrets: &Path) -> Sidecar {
    Sidecar::start(&[
        "--config",
        config.to_str().unwrap(),
        "--secrets-dir",
        secrets.to_str().unwrap(),
        "--simulate",
        "--hpa-sync-period-seconds",
        "1",
        "--log-level",
        "rmq_sidecar=debug",
        "--log-format",
        "json",
    ])
}

fn so_label(so: &str) -> String {
    format!("default/{so}")
}

fn value(m: &Metrics, so: &str) -> Option<f64> {
    m.one(
        "rmq_sidecar_metric_value",
        &[("scaledobject", &so_label(so)), ("trigger", "0")],
    )
}

fn desired(m: &Metrics, so: &str) -> Option<f64> {
    m.one(
        "rmq_sidecar_desired_replicas",
        &[("scaledobject", &so_label(so))],
    )
}

fn source_errors(m: &Metrics, so: &str) -> f64 {
    m.one(
        "rmq_sidecar_source_errors_total",
        &[("scaledobject", &so_label(so)), ("trigger", "0")],
    )
    .unwrap_or(0.0)
}

/// The JSON log lines of ScaledObject `so`.
fn lines_of(log: &str, so: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["scaledobject"] == so_label(so).as_str())
        .collect()
}

#[test]
fn client_certificates_ca_and_unsafe_ssl_behave_as_in_keda_against_a_real_tls_prometheus() {
    let dir = scratch().join(name("prom-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir);
    let basic = format!("{USER}:{PASSWORD}");
    // `mtls`: HTTPS + a client certificate signed by the CA + basic auth, all required.
    let (mtls, _) = start_prometheus_with(
        "127.0.0.1:1",
        &[
            "--tls",
            dir.to_str().unwrap(),
            "--client-auth",
            "RequireAndVerifyClientCert",
            "--basic-auth",
            &basic,
        ],
    );
    // `tls`: HTTPS + basic auth, no client certificate asked for.
    let (tls, _) = start_prometheus_with(
        "127.0.0.1:1",
        &["--tls", dir.to_str().unwrap(), "--basic-auth", &basic],
    );

    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (ca, cert, key) = (read("ca.crt"), read("client.crt"), read("client.key"));
    // A client certificate from a CA the servers do not trust.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    support::certs::ca(&other);
    support::certs::leaf(&other, "client", "keda", "extendedKeyUsage=clientAuth\n");
    let read_other = |f: &str| std::fs::read_to_string(other.join(f)).unwrap();
    let (other_cert, other_key) = (read_other("client.crt"), read_other("client.key"));
    let secrets = scratch().join(name("secrets"));
    let login = [("username", USER), ("password", PASSWORD)];
    let with = |extra: &[(&'static str, &str)]| {
        let mut v: Vec<(&str, String)> = login.iter().map(|(k, v)| (*k, v.to_string())).collect();
        v.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        v
    };
    let auths: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "tls-ca",
            with(&[("cert", &cert), ("key", &key), ("ca", &ca)]),
        ),
        ("tls-no-ca", with(&[("cert", &cert), ("key", &key)])),
        (
            "tls-untrusted-cert",
            with(&[("cert", &other_cert), ("key", &other_key), ("ca", &ca)]),
        ),
        ("ca", with(&[("ca", &ca)])),
        ("login", with(&[])),
    ];
    let mut config = String::new();
    for (auth, entries) in &auths {
        let refs: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (*k, v.as_str())).collect();
        secret(&secrets, auth, &refs);
        let params: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
        config.push_str(&trigger_auth(auth, &params));
    }
    for (so, server, metadata, auth) in [
        // tls + basic with the CA: the client certificate is presented, the server verified.
        ("mtls-ok", &mtls, "      authModes: tls,basic\n", "tls-ca"),
        // A client certificate the server does not trust: refused.
        (
            "mtls-untrusted-cert",
            &mtls,
            "      authModes: tls,basic\n",
            "tls-untrusted-cert",
        ),
        // The CA without a client certificate: the server refuses the handshake.
        ("mtls-without-cert", &mtls, "      authModes: basic\n", "ca"),
        // unsafeSsl does not skip verification once a client certificate is set (KEDA's
        // CreateHTTPRoundTripper): without the CA the self-signed server is refused.
        (
            "mtls-unsafe-no-ca",
            &mtls,
            "      authModes: tls,basic\n      unsafeSsl: 'true'\n",
            "tls-no-ca",
        ),
        // unsafeSsl alone skips verification, but gives no client certificate.
        (
            "mtls-unsafe-only",
            &mtls,
            "      authModes: basic\n      unsafeSsl: 'true'\n",
            "login",
        ),
        // Where no client certificate is asked for, unsafeSsl alone works ...
        (
            "tls-unsafe-only",
            &tls,
            "      authModes: basic\n      unsafeSsl: 'true'\n",
            "login",
        ),
        // ... and so does the CA with a header mode and no tls mode.
        ("tls-ca", &tls, "      authModes: basic\n", "ca"),
        // Neither: the self-signed server is refused.
        ("tls-unverified", &tls, "      authModes: basic\n", "login"),
    ] {
        config.push_str(&scaled_object(so, server, metadata, auth));
    }
    let config_file = scratch().join(format!("{}.yaml", name("so-tls")));
    std::fs::write(&config_file, &config).unwrap();
    let mut sidecar = start_sidecar(&config_file, &secrets);

    let working = ["mtls-ok", "tls-unsafe-only", "tls-ca"];
    let failing = [
        "mtls-untrusted-cert",
        "mtls-without-cert",
        "mtls-unsafe-no-ca",
        "mtls-unsafe-only",
        "tls-unverified",
    ];
    sidecar.until(
        "the working triggers read 42 and ask for 5 replicas",
        Duration::from_secs(30),
        |m| {
            working
                .iter()
                .all(|so| value(m, so) == Some(42.0) && desired(m, so) == Some(5.0))
        },
    );
    sidecar.until(
        "the failing triggers fail their polls",
        Duration::from_secs(30),
        |m| failing.iter().all(|so| source_errors(m, so) >= 2.0),
    );
    let m = Metrics::parse(&sidecar.page());
    for so in failing {
        assert_eq!(value(&m, so), None, "{so}: a value despite failing polls");
        // A failed poll never scales: the simulated target stays at minReplicaCount.
        assert_eq!(desired(&m, so), Some(1.0), "{so}");
    }
    for so in working {
        assert_eq!(source_errors(&m, so), 0.0, "{so}: failed polls");
    }

    // Each failure says why.
    let log = sidecar.log_text();
    let why = |so: &str, needles: &[&str]| {
        let lines = lines_of(&log, so);
        let warn = lines
            .iter()
            .find(|l| l["level"] == "WARN")
            .unwrap_or_else(|| panic!("{so}: no warning among {lines:?}"));
        let metric = warn["fields"]["metric"].as_str().unwrap_or_default();
        for needle in needles {
            assert!(metric.contains(needle), "{so}: {metric}\nlacks {needle:?}");
        }
        println!("{so}: {metric}");
    };
    let wants_cert = "(the server wants a client certificate: authModes tls with cert and key in the TriggerAuthentication)";
    why(
        "mtls-without-cert",
        &[
            &format!("error: GET https://{mtls}/api/v1/query: "),
            "BadCertificate",
            wants_cert,
        ],
    );
    why(
        "mtls-unsafe-no-ca",
        &[
            "UnknownIssuer",
            "give its CA as ca; with a client certificate KEDA ignores unsafeSsl",
        ],
    );
    why("mtls-unsafe-only", &["BadCertificate", wants_cert]);
    why(
        "mtls-untrusted-cert",
        &["(the server refused the client certificate: is it signed by a CA the server trusts, and valid?)"],
    );
    why(
        "tls-unverified",
        &["UnknownIssuer", "give its CA as ca, with an authMode"],
    );
    assert!(
        log.contains("unsafeSsl is ignored: with ca or a client certificate"),
        "no warning that unsafeSsl is ignored:\n{log}"
    );

    // No secret in the log (at debug) or on /metrics.
    let key_body: Vec<&str> = [&key, &other_key]
        .into_iter()
        .flat_map(|k| k.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (what, text) in [("log", &log), ("/metrics", &sidecar.page())] {
        assert!(!text.contains(PASSWORD), "the password is in the {what}");
        for line in &key_body {
            assert!(!text.contains(line), "the client key is in the {what}");
        }
    }
}
