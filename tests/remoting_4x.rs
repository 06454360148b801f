//! The exporter against a real Apache RocketMQ 4.9.8 cluster (broker modules from 4.9.7, the
//! last published; see tests/rig/README.md). 4.x has no pull offset: in-flight is always 0 and
//! ready is the whole lag, even while a consumer holds messages.

#[path = "support/mod.rs"]
mod support;

use std::sync::OnceLock;
use std::time::Duration;

use support::{backlog, exporter_for, name, Exporter, Metrics, Rig, RigOptions};

const WAIT: Duration = Duration::from_secs(60);

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        Rig::start(RigOptions {
            version: "4.9.8",
            brokers: 1,
            slave: false,
            acl: false,
        })
    })
}

fn exporter(groups: &[&str]) -> Exporter {
    exporter_for(rig().namesrv(), groups, &[])
}

#[test]
fn push_consumer_backlog_is_exact_and_equals_mqadmin() {
    let rig = rig();
    let (t1, t2, g) = (name("T1"), name("T2"), name("G"));
    rig.produce(&t1, 80, 8);
    rig.consume(&g, &t1, 80);
    rig.produce(&t1, 45, 8);
    rig.produce(&t2, 12, 3);
    let g2 = name("G");
    rig.consume(&g2, &t2, 12);
    rig.produce(&t2, 9, 3);

    let exp = exporter(&[&g, &g2]);
    let m = exp.eventually(WAIT, |m| {
        (backlog(m, &t1, &g).map(|b| b.2) == Some(45.0)
            && backlog(m, &t2, &g2).map(|b| b.2) == Some(9.0))
        .then(|| m.text.clone())
    });
    let m = Metrics::parse(&m);
    assert_eq!(backlog(&m, &t1, &g), Some((45.0, 0.0, 45.0)));
    assert_eq!(backlog(&m, &t2, &g2), Some((9.0, 0.0, 9.0)));
    for (group, expected) in [(&g, 45), (&g2, 9)] {
        let (diff, _) = rig.consumer_progress(group);
        assert_eq!(diff, expected, "mqadmin consumerProgress -g {group}");
        let exported: f64 = m
            .find(
                "rocketmq_consumer_lag_messages",
                &[("consumer_group", group)],
            )
            .iter()
            .sum();
        assert_eq!(exported, diff as f64);
    }
    assert_eq!(
        m.one(
            "rocketmq_consumer_queues",
            &[("topic", &t1), ("consumer_group", &g)]
        ),
        Some(8.0)
    );
}

#[test]
fn held_messages_count_as_ready_because_4x_has_no_pull_offset() {
    let rig = rig();
    let (t, g) = (name("TH"), name("GH"));
    rig.produce(&t, 4, 2);
    rig.consume(&g, &t, 4);
    rig.produce(&t, 22, 2);
    let mut holder = rig.loadgen_spawn(&["hold", "--group", &g, "--topic", &t, "--hold-s", "120"]);
    holder.wait_for_line("HOLDING", WAIT);
    let exp = exporter(&[&g]);
    let b = exp.eventually(WAIT, |m| backlog(m, &t, &g).filter(|b| b.2 == 22.0));
    assert_eq!(b, (22.0, 0.0, 22.0));
    // While the group is online the exporter counts its client.
    let conns = exp.eventually(WAIT, |m| {
        m.one(
            "rocketmq_consumer_connections",
            &[("topic", &t), ("consumer_group", &g)],
        )
        .filter(|c| *c > 0.0)
    });
    assert_eq!(conns, 1.0);
}

#[test]
fn lag_latency_works_on_4x() {
    let rig = rig();
    let (t, g) = (name("TL"), name("GL"));
    rig.produce(&t, 2, 1);
    rig.consume(&g, &t, 2);
    rig.produce(&t, 3, 1);
    std::thread::sleep(Duration::from_secs(2));
    let exp = exporter(&[&g]);
    let ms = exp.eventually(WAIT, |m| {
        m.one(
            "rocketmq_consumer_lag_latency_milliseconds",
            &[("topic", &t), ("consumer_group", &g)],
        )
        .filter(|v| *v > 0.0)
    });
    assert!((2000.0..60_000.0).contains(&ms), "lag latency {ms} ms");
}

#[test]
fn several_clusters_in_one_process_each_with_its_instance_id() {
    let rig = rig();
    let (t, ga, gb) = (name("TM"), name("GMA"), name("GMB"));
    rig.produce(&t, 6, 2);
    rig.consume(&ga, &t, 6);
    rig.consume(&gb, &t, 6);
    rig.produce(&t, 4, 2);
    // Two [[clusters]] tables (here both on this rig, each with its own groups and instance_id).
    let file = support::scratch().join(format!("{}.toml", name("clusters")));
    std::fs::write(
        &file,
        format!(
            "interval_seconds = 1\ndeadline_seconds = 1\n\
             [[clusters]]\nnamesrv = \"{ns}\"\ninstance_id = \"east\"\ngroup_allow = \"^{ga}$\"\n\
             [[clusters]]\nnamesrv = \"{ns}\"\ninstance_id = \"west\"\ngroup_allow = \"^{gb}$\"\n",
            ns = rig.namesrv()
        ),
    )
    .unwrap();
    let exp = Exporter::start(&["--config", file.to_str().unwrap()]);
    let m = exp.eventually(WAIT, |m| {
        let east = m.one(
            "rocketmq_consumer_lag_messages",
            &[("instance_id", "east"), ("topic", &t)],
        );
        let west = m.one(
            "rocketmq_consumer_lag_messages",
            &[("instance_id", "west"), ("topic", &t)],
        );
        (east == Some(4.0) && west == Some(4.0)).then(|| m.text.clone())
    });
    let m = Metrics::parse(&m);
    assert_eq!(
        m.one(
            "rocketmq_consumer_lag_messages",
            &[("instance_id", "east"), ("consumer_group", &gb)]
        ),
        None
    );
    assert_eq!(
        m.find("rocketmq_exporter_up", &[("kind", "namesrv")]).len(),
        2
    );
}
