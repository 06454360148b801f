//! ACL-enabled brokers: 4.9.8 with ACL 1.0 (plain_acl.yml) and 5.3.3 with ACL 2.0
//! (authenticationEnabled). The right keys read the backlog; wrong keys give a clear error
//! counted as cause="auth", and no made-up numbers.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::{name, Exporter, Rig, RigOptions};

const WAIT: Duration = Duration::from_secs(60);

fn check(version: &'static str) {
    let rig = Rig::start(RigOptions {
        version,
        brokers: 1,
        slave: false,
        acl: true,
    });
    let (t, g) = (name("TA"), name("GA"));
    rig.produce(&t, 10, 2);
    rig.consume(&g, &t, 10);
    rig.produce(&t, 6, 2);
    let allow = format!("^{g}$");
    let args = [
        "--namesrv",
        rig.namesrv(),
        "--interval",
        "1",
        "--deadline",
        "1",
        "--group-allow",
        &allow,
    ];

    let mut with_keys = args.to_vec();
    with_keys.extend(["--access-key", "rocketmq2"]);
    let good = Exporter::start_with_env(&with_keys, &[("RMQ_EXPORTER_SECRET_KEY", "12345678")]);
    good.eventually(WAIT, |m| {
        m.one(
            "rocketmq_consumer_lag_messages",
            &[("topic", &t), ("consumer_group", &g)],
        )
        .filter(|v| *v == 6.0)
    });

    let bad = Exporter::start_with_env(&with_keys, &[("RMQ_EXPORTER_SECRET_KEY", "wrong-secret")]);
    let m = bad.eventually(WAIT, |m| {
        m.one("rocketmq_exporter_errors_total", &[("cause", "auth")])
            .filter(|v| *v > 0.0)
            .map(|_| m.text.clone())
    });
    let m = support::Metrics::parse(&m);
    assert!(m.find("rocketmq_consumer_lag_messages", &[]).is_empty());
    assert_eq!(
        m.one("rocketmq_exporter_up", &[("kind", "broker")]),
        Some(0.0)
    );

    let none = Exporter::start(&args);
    none.eventually(WAIT, |m| {
        m.one("rocketmq_exporter_errors_total", &[("cause", "auth")])
            .filter(|v| *v > 0.0)
    });
}

#[test]
fn acl_1_on_4x_accepts_right_keys_and_names_wrong_ones() {
    check("4.9.8");
}

#[test]
fn acl_2_on_5x_accepts_right_keys_and_names_wrong_ones() {
    check("5.3.3");
}
