//! No secret reaches a log line or a /metrics page, with every process at `--log-level debug`
//! and every credential used both right and wrong (the error paths are where secrets leak):
//! - the exporter's ACL secret key against a real RocketMQ 5.3.3 with ACL 2.0 (right: backlog
//!   read; wrong: `cause="auth"`), once from the flag and once from the environment;
//! - the exporter's ApsaraMQ AccessKey secret and STS token against the fake OpenAPI (right, and a
//!   wrong secret the fake refuses);
//! - the password of the exporter's own basic auth (web config), sent right and wrong;
//! - the sidecar's Prometheus credentials from TriggerAuthentications: the basic-auth password
//!   (right and wrong), a bearer token and a custom header value (both refused by a Prometheus
//!   behind basic auth).
//!
//! Every secret is a distinct string that nothing else in a log could contain by chance.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{
    bcrypt, http_request_with, name, scratch, start_prometheus_with, Exporter, FakeOpenApi,
    Metrics, Rig, RigOptions, Sidecar,
};

const WAIT: Duration = Duration::from_secs(60);
const ACL_SECRET: &str = "acl-S3cret-q7Zx";
const ACL_WRONG: &str = "acl-Wr0ng-k2Vb";
const AK_ID: &str = "LTAI5tSecretsTest";
const AK_SECRET: &str = "ak-S3cret-Hn4w";
const AK_WRONG: &str = "ak-Wr0ng-Jd8p";
const STS_TOKEN: &str = "sts-T0ken-Rq3m";
const WEB_PASSWORD: &str = "web-P4ss-m9Lt";
const WEB_WRONG: &str = "web-Wr0ng-c5Ny";
const PROM_PASSWORD: &str = "prom-P4ss-w8Ke";
const PROM_WRONG: &str = "prom-Wr0ng-t6Gh";
const BEARER: &str = "bearer-T0ken-x5Qa";
const CUSTOM: &str = "custom-V4lue-z3Pf";

const ALL: &[&str] = &[
    ACL_SECRET,
    ACL_WRONG,
    AK_SECRET,
    AK_WRONG,
    STS_TOKEN,
    WEB_PASSWORD,
    WEB_WRONG,
    PROM_PASSWORD,
    PROM_WRONG,
    BEARER,
    CUSTOM,
];

/// Asserts that none of the secrets is in `text` (`what` names it in the failure).
fn clean(what: &str, text: &str) {
    assert!(!text.is_empty(), "{what}: nothing to check");
    for s in ALL {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A mounted Secret `<secrets>/<name>/<key>`.
fn secret(secrets: &Path, name: &str, entries: &[(&str, &str)]) {
    let dir = secrets.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (k, v) in entries {
        std::fs::write(dir.join(k), v).unwrap();
    }
}

fn scaled_object(name: &str, prom: &str, modes: &str, params: &[&str]) -> String {
    let mut auth = format!(
        "---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  secretTargetRef:\n"
    );
    for p in params {
        auth.push_str(&format!(
            "  - parameter: {p}\n    name: {name}\n    key: {p}\n"
        ));
    }
    format!(
        "---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: {name}\n  pollingInterval: 1\n  minReplicaCount: 1\n  maxReplicaCount: 10\n  triggers:\n  - type: prometheus\n    metadata:\n      serverAddress: http://{prom}\n      query: vector(42)\n      threshold: '10'\n      authModes: {modes}\n    authenticationRef:\n      name: {name}\n{auth}"
    )
}

#[test]
fn no_secret_in_any_debug_log_line_or_metrics_page() {
    let debug = ["--log-level", "debug"];

    // 1. ACL secret key, right (flag) and wrong (environment).
    let rig = Rig::start_with(
        RigOptions {
            version: "5.3.3",
            brokers: 1,
            slave: false,
            acl: true,
        },
        &["--acl-secret", ACL_SECRET],
    );
    let (t, g) = (name("TS"), name("GS"));
    rig.produce(&t, 6, 2);
    rig.consume(&g, &t, 6);
    rig.produce(&t, 4, 2);
    let acl = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["--access-key", "rocketmq2"];
        args.extend_from_slice(&debug);
        args.extend_from_slice(extra);
        support::exporter_for_with_env(rig.namesrv(), &[g.as_str()], &args, env)
    };
    let acl_right = acl(&["--secret-key", ACL_SECRET], &[]);
    let acl_wrong = acl(&[], &[("RMQ_EXPORTER_SECRET_KEY", ACL_WRONG)]);

    // 2. ApsaraMQ keys: right, with an STS token, and a wrong secret.
    let fake = FakeOpenApi::start();
    fake.state(json!({
        "access_keys": {AK_ID: AK_SECRET},
        "instances": {"rmq-cn-secrets": {"region": "cn-hangzhou", "status": "RUNNING", "groups": {
            "GID_S": {"topics": {"T": {"ready": 5, "inflight": 1, "delivery_duration": 1}}, "connections": 1}
        }}},
    }));
    let url = fake.url();
    let openapi = |secret: &str| {
        let mut args = vec![
            "--apsaramq-instance",
            "rmq-cn-secrets",
            "--region",
            "cn-hangzhou",
            "--apsaramq-endpoint",
            url.as_str(),
            "--interval",
            "1",
            "--deadline",
            "1",
        ];
        args.extend_from_slice(&debug);
        Exporter::start_with_env(
            &args,
            &[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret),
                ("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN),
            ],
        )
    };
    let ak_right = openapi(AK_SECRET);
    let ak_wrong = openapi(AK_WRONG);

    // 3. The exporter's own basic auth.
    let web = scratch().join(format!("{}.yml", name("web")));
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  prom: '{}'\n", bcrypt(WEB_PASSWORD)),
    )
    .unwrap();
    let mut args = vec![
        "--namesrv",
        rig.namesrv(),
        "--interval",
        "1",
        "--deadline",
        "1",
    ];
    args.extend(["--web.config.file", web.to_str().unwrap()]);
    args.extend_from_slice(&debug);
    // Not ready without credentials: start it by hand and wait on the authorized page.
    let web_addr = format!("127.0.0.1:{}", support::free_port());
    let web_log = scratch().join(format!("{}.log", name("rmq-exporter-web")));
    let mut web_child = support::isolated(std::process::Command::new(support::bin("rmq-exporter")))
        .args(["--listen", &web_addr])
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&web_log).unwrap())
        .spawn()
        .unwrap();
    let get = |password: &str| {
        http_request_with(
            &web_addr,
            "GET",
            "/metrics",
            &[("Authorization", &basic("prom", password))],
            "",
        )
    };
    let t0 = std::time::Instant::now();
    let page = loop {
        match get(WEB_PASSWORD) {
            Ok((200, body)) if body.contains("rocketmq_exporter_up") => break body,
            _ if t0.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("the guarded exporter never served /metrics: {other:?}"),
        }
    };
    for _ in 0..3 {
        assert_eq!(get(WEB_WRONG).unwrap().0, 401);
    }

    // 4. The sidecar's Prometheus credentials.
    let (prom, _prom_dir) = start_prometheus_with(
        &acl_right.addr,
        &["--basic-auth", &format!("keda:{PROM_PASSWORD}")],
    );
    let dir = scratch().join(name("secrets-sidecar"));
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    secret(
        &secrets,
        "right",
        &[("username", "keda"), ("password", PROM_PASSWORD)],
    );
    secret(
        &secrets,
        "wrong",
        &[("username", "keda"), ("password", PROM_WRONG)],
    );
    secret(&secrets, "bearer", &[("bearerToken", BEARER)]);
    secret(
        &secrets,
        "custom",
        &[
            ("customAuthHeader", "X-Api-Key"),
            ("customAuthValue", CUSTOM),
        ],
    );
    let config = dir.join("so.yaml");
    std::fs::write(
        &config,
        [
            scaled_object("right", &prom, "basic", &["username", "password"]),
            scaled_object("wrong", &prom, "basic", &["username", "password"]),
            scaled_object("bearer", &prom, "bearer", &["bearerToken"]),
            scaled_object(
                "custom",
                &prom,
                "custom",
                &["customAuthHeader", "customAuthValue"],
            ),
        ]
        .concat(),
    )
    .unwrap();
    let mut sidecar = Sidecar::start(&[
        "--config",
        config.to_str().unwrap(),
        "--secrets-dir",
        secrets.to_str().unwrap(),
        "--simulate",
        "--log-level",
        "debug",
    ]);

    // Each credential did its job, right or wrong.
    acl_right.eventually(WAIT, |m| {
        m.one(
            "rocketmq_consumer_lag_messages",
            &[("topic", &t), ("consumer_group", &g)],
        )
        .filter(|v| *v == 4.0)
    });
    acl_wrong.eventually(WAIT, |m| {
        m.one("rocketmq_exporter_errors_total", &[("cause", "auth")])
            .filter(|v| *v >= 3.0)
    });
    ak_right.eventually(WAIT, |m| {
        m.one(
            "rocketmq_consumer_lag_messages",
            &[("consumer_group", "GID_S")],
        )
        .filter(|v| *v == 6.0)
    });
    ak_wrong.eventually(WAIT, |m| {
        let errors: f64 = m.find("rocketmq_exporter_errors_total", &[]).iter().sum();
        (errors >= 3.0).then_some(())
    });
    let so = |n: &str| format!("default/{n}");
    sidecar.until("every ScaledObject polled", WAIT, |m| {
        m.one(
            "rmq_sidecar_metric_value",
            &[("scaledobject", &so("right"))],
        ) == Some(42.0)
            && ["wrong", "bearer", "custom"].iter().all(|n| {
                m.one(
                    "rmq_sidecar_source_errors_total",
                    &[("scaledobject", &so(n))],
                )
                .is_some_and(|v| v >= 3.0)
            })
    });

    // No secret anywhere: the debug logs, the /metrics pages.
    for (what, e) in [
        ("ACL exporter (right key)", &acl_right),
        ("ACL exporter (wrong key)", &acl_wrong),
        ("ApsaraMQ exporter (right key)", &ak_right),
        ("ApsaraMQ exporter (wrong key)", &ak_wrong),
    ] {
        let log = e.log_text();
        assert!(log.contains("DEBUG"), "{what}: not at debug level:\n{log}");
        clean(&format!("{what} log"), &log);
        clean(&format!("{what} /metrics"), &e.metrics().text);
    }
    let _ = web_child.kill();
    let _ = web_child.wait();
    let web_log = std::fs::read_to_string(&web_log).unwrap();
    assert!(web_log.contains("DEBUG"), "{web_log}");
    clean("guarded exporter log", &web_log);
    clean("guarded exporter /metrics", &page);
    let log = sidecar.log_text();
    assert!(log.contains("DEBUG"), "sidecar not at debug level:\n{log}");
    clean("sidecar log", &log);
    clean("sidecar /metrics", &sidecar.page());
    let _ = Metrics::parse(&page);
}
