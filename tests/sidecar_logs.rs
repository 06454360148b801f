//! The sidecar's log at info over a minute of one-second polls of a steady backlog (real broker,
//! exporter, `rmq-sidecar --simulate`): one line when the desired count or the reason changes,
//! nothing per poll; a change of the backlog that changes the desired count writes one line.

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{bin, exporter_for, free_port, name, Rig, RigOptions};

/// The decision lines at info, without terminal colours.
fn info_lines(log: &std::path::Path) -> Vec<String> {
    let ansi = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    ansi.replace_all(&std::fs::read_to_string(log).unwrap_or_default(), "")
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("rmq_sidecar::run"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_minute_of_steady_polls_writes_a_handful_of_info_lines_and_a_change_writes_one() {
    let rig = Rig::start(RigOptions {
        version: "5.3.3",
        brokers: 1,
        slave: false,
        acl: false,
    });
    let (t, g) = (name("T"), name("G"));
    rig.produce(&t, 10, 4);
    rig.consume(&g, &t, 10);
    rig.produce(&t, 90, 4);
    let exp = exporter_for(rig.namesrv(), &[&g], &[]);
    let yaml = format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: quiet\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: app\n  pollingInterval: 1\n  minReplicaCount: 1\n  maxReplicaCount: 10\n  triggers:\n  - type: rocketmq-exporter\n    metadata:\n      url: http://{}/metrics\n      consumerGroup: {g}\n      threshold: '30'\n",
        exp.addr
    );
    let file = support::scratch().join(format!("{}.yaml", name("so")));
    std::fs::write(&file, yaml).unwrap();
    let log = support::scratch().join(format!("{}.log", name("sidecar")));
    let mut child = Command::new(bin("rmq-sidecar"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--simulate",
            "--hpa-sync-period-seconds",
            "1",
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Reach 3 replicas (90 / 30), then a steady minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !info_lines(&log).iter().any(|l| l.contains("desired=3")) {
        assert!(
            Instant::now() < deadline,
            "never desired 3:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = info_lines(&log).len();
    std::thread::sleep(Duration::from_secs(60));
    let steady = info_lines(&log).len() - before;
    let polls = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(
        steady <= 3,
        "{steady} info lines in a steady minute:\n{}",
        info_lines(&log)[before..].join("\n")
    );
    // 60 more messages: 150 / 30 = 5 replicas; one line says so.
    rig.produce(&t, 60, 4);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !info_lines(&log).iter().any(|l| l.contains("desired=5")) {
        assert!(
            Instant::now() < deadline,
            "the change to 5 was not logged:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let changes = info_lines(&log)
        .iter()
        .filter(|l| l.contains("desired=5"))
        .count();
    let _ = child.kill();
    let _ = child.wait();
    assert!(changes >= 1);
    println!("steady minute of 1 s polls: {steady} info lines ({polls} log lines in all so far); the change to 5 replicas: {changes} line(s)");
}
