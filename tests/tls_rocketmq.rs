//! TLS to RocketMQ: a real Apache RocketMQ 5.3.3 name server and broker with
//! `tls.server.mode=enforcing` (certificates made here with openssl; the server's names only
//! `localhost`, as certificates usually do, while the name server hands out `127.0.0.1`), once
//! without ACL and once with ACL 2.0 and client certificates required. The exporter reads the
//! backlog over TLS, equal to `mqadmin consumerProgress` (itself over TLS), and every way of
//! getting it wrong is a clear error with its own cause, not a made-up number.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use support::{certs, name, scratch, Exporter, Metrics, Rig, RigOptions};

const WAIT: Duration = Duration::from_secs(60);

/// A CA, a server certificate for `localhost` only and a client certificate, in a fresh dir.
fn make_certs(tag: &str) -> PathBuf {
    let dir = scratch().join(format!("rmq-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certs::ca(&dir);
    certs::leaf(
        &dir,
        "server",
        "rocketmq",
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    certs::leaf(&dir, "client", "exporter", "extendedKeyUsage=clientAuth\n");
    dir
}

/// Enforcing, no client certificate asked, no ACL.
fn enforcing_rig() -> &'static (Rig, PathBuf) {
    static RIG: OnceLock<(Rig, PathBuf)> = OnceLock::new();
    RIG.get_or_init(|| {
        let certs = make_certs("enforcing");
        let rig = Rig::start_with(
            RigOptions {
                version: "5.3.3",
                brokers: 1,
                slave: false,
                acl: false,
            },
            &["--tls", "enforcing", "--tls-dir", certs.to_str().unwrap()],
        );
        (rig, certs)
    })
}

fn p(dir: &Path, file: &str) -> String {
    dir.join(file).to_str().unwrap().to_string()
}

/// An exporter reading `group` every second with `extra` flags.
fn exporter(rig: &Rig, group: &str, extra: &[&str], env: &[(&str, &str)]) -> Exporter {
    support::exporter_for_with_env(rig.namesrv(), &[group], extra, env)
}

fn lag(m: &Metrics, topic: &str, group: &str) -> Option<f64> {
    m.one(
        "rocketmq_consumer_lag_messages",
        &[("topic", topic), ("consumer_group", group)],
    )
}

/// Waits for the first error of `cause` and returns the page and the log.
fn first_error(e: &Exporter, cause: &str) -> (Metrics, String) {
    let text = e.eventually(WAIT, |m| {
        m.one("rocketmq_exporter_errors_total", &[("cause", cause)])
            .filter(|v| *v > 0.0)
            .map(|_| m.text.clone())
    });
    (Metrics::parse(&text), e.log_text())
}

#[test]
fn enforcing_tls_broker_is_read_with_its_ca_and_equals_mqadmin() {
    let (rig, certs) = enforcing_rig();
    let (t, g) = (name("TT"), name("GT"));
    // LoadGen and mqadmin speak TLS too (the rig gives every JVM tls.enable=true).
    rig.produce(&t, 30, 4);
    rig.consume(&g, &t, 30);
    rig.produce(&t, 12, 4);

    let ca = p(certs, "ca.crt");
    // The name server gives brokers as 127.0.0.1 and the certificate names localhost: either
    // the chain is checked without the name, or the name to check is given.
    let chain_only = exporter(
        rig,
        &g,
        &["--tls", "--tls-ca-file", &ca, "--tls-verify-hostname=false"],
        &[],
    );
    let config = scratch().join(format!("rmq-tls-{}.toml", name("cfg")));
    std::fs::write(
        &config,
        format!(
            "[[clusters]]\nnamesrv = \"{}\"\ninstance_id = \"tls\"\ntls_enable = true\ntls_ca_file = \"{ca}\"\ntls_server_name = \"localhost\"\n",
            rig.namesrv()
        ),
    )
    .unwrap();
    let named = exporter(rig, &g, &["--config", config.to_str().unwrap()], &[]);

    for e in [&chain_only, &named] {
        let m = e.eventually(WAIT, |m| {
            lag(m, &t, &g)
                .filter(|v| *v == 12.0)
                .map(|_| m.text.clone())
        });
        let m = Metrics::parse(&m);
        assert_eq!(
            m.one(
                "rocketmq_consumer_ready_messages",
                &[("topic", &t), ("consumer_group", &g)]
            ),
            Some(12.0)
        );
        assert_eq!(
            m.one("rocketmq_exporter_up", &[("kind", "broker")]),
            Some(1.0)
        );
        assert!(
            m.find("rocketmq_exporter_errors_total", &[]).is_empty(),
            "{}",
            m.text
        );
    }
    assert_eq!(
        named.metrics().one(
            "rocketmq_consumer_lag_messages",
            &[("instance_id", "tls"), ("consumer_group", &g)]
        ),
        Some(12.0)
    );
    let (diff, _) = rig.consumer_progress(&g);
    assert_eq!(diff, 12, "mqadmin consumerProgress over TLS");
}

#[test]
fn enforcing_tls_refuses_plain_wrong_ca_and_wrong_name_with_clear_errors() {
    let (rig, certs) = enforcing_rig();
    let g = name("GX");
    let other = make_certs("other-ca");
    let plain = exporter(rig, &g, &[], &[]);
    let wrong_ca = exporter(
        rig,
        &g,
        &[
            "--tls",
            "--tls-ca-file",
            &p(&other, "ca.crt"),
            "--tls-verify-hostname=false",
        ],
        &[],
    );
    // The name checked by default is the address's host, 127.0.0.1, which the certificate lacks.
    let wrong_name = exporter(
        rig,
        &g,
        &["--tls", "--tls-ca-file", &p(certs, "ca.crt")],
        &[],
    );

    let (m, log) = first_error(&plain, "closed");
    assert_eq!(
        m.one("rocketmq_exporter_up", &[("kind", "namesrv")]),
        Some(0.0)
    );
    assert!(
        log.contains("before any answer (if the server enforces TLS, set tls_enable)"),
        "{log}"
    );
    let (m, log) = first_error(&wrong_ca, "tls");
    assert_eq!(
        m.one("rocketmq_exporter_up", &[("kind", "namesrv")]),
        Some(0.0)
    );
    // Both CAs are "CN=test-ca": rustls finds the issuer by name and the signature fails.
    assert!(
        log.contains("handshake: invalid peer certificate: BadSignature"),
        "{log}"
    );
    let (m, log) = first_error(&wrong_name, "tls");
    assert_eq!(
        m.one("rocketmq_exporter_up", &[("kind", "namesrv")]),
        Some(0.0)
    );
    assert!(
        log.contains("certificate not valid for name \"127.0.0.1\""),
        "{log}"
    );
    for e in [&plain, &wrong_ca, &wrong_name] {
        let m = e.metrics();
        assert!(m.find("rocketmq_consumer_lag_messages", &[]).is_empty());
    }

    // A config naming a CA file that is not a certificate fails at start with the key named.
    let out = support::isolated(std::process::Command::new(support::bin("rmq-exporter")))
        .args([
            "--namesrv",
            rig.namesrv(),
            "--tls",
            "--tls-ca-file",
            &p(certs, "ca.key"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key `tls_enable`: tls_ca_file"), "{err}");
    assert!(err.contains("no certificate"), "{err}");
}

#[test]
fn client_certificate_and_acl_over_enforcing_tls() {
    let certs = make_certs("mtls");
    let rig = Rig::start_with(
        RigOptions {
            version: "5.3.3",
            brokers: 1,
            slave: false,
            acl: true,
        },
        &[
            "--tls",
            "enforcing",
            "--tls-dir",
            certs.to_str().unwrap(),
            "--tls-client-auth",
            "require",
        ],
    );
    let (t, g) = (name("TM"), name("GM"));
    rig.produce(&t, 20, 2);
    rig.consume(&g, &t, 20);
    rig.produce(&t, 7, 2);

    let (ca, cert, key) = (
        p(&certs, "ca.crt"),
        p(&certs, "client.crt"),
        p(&certs, "client.key"),
    );
    let tls = [
        "--tls",
        "--tls-ca-file",
        &ca,
        "--tls-server-name",
        "localhost",
    ];
    let mut mtls = tls.to_vec();
    mtls.extend([
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--access-key",
        "rocketmq2",
    ]);
    let good = exporter(&rig, &g, &mtls, &[("RMQ_EXPORTER_SECRET_KEY", "12345678")]);
    let wrong_secret = exporter(
        &rig,
        &g,
        &mtls,
        &[("RMQ_EXPORTER_SECRET_KEY", "wrong-secret")],
    );
    let mut no_cert = tls.to_vec();
    no_cert.extend(["--access-key", "rocketmq2"]);
    let no_cert = exporter(
        &rig,
        &g,
        &no_cert,
        &[("RMQ_EXPORTER_SECRET_KEY", "12345678")],
    );

    good.eventually(WAIT, |m| lag(m, &t, &g).filter(|v| *v == 7.0));
    let (diff, _) = rig.consumer_progress(&g);
    assert_eq!(diff, 7, "mqadmin consumerProgress over mutual TLS with ACL");

    // The ACL still judges the keys once TLS lets the connection in.
    let (m, log) = first_error(&wrong_secret, "auth");
    assert!(m.find("rocketmq_consumer_lag_messages", &[]).is_empty());
    assert!(!log.contains("wrong-secret"), "{log}");
    // Without a certificate the server ends the TLS 1.3 session at the first read.
    let (m, log) = first_error(&no_cert, "tls");
    assert_eq!(
        m.one("rocketmq_exporter_up", &[("kind", "namesrv")]),
        Some(0.0)
    );
    assert!(
        log.contains(
            "the server may require a client certificate: set tls_cert_file and tls_key_file"
        ),
        "{log}"
    );
}
