//! Hot reload of the sidecar's ScaledObjects from a directory shaped like a mounted ConfigMap
//! (`..data` symlink swapped atomically, as the kubelet does): added, changed and removed
//! ScaledObjects take effect within a poll or two with the unchanged ones' history kept, an
//! invalid edit keeps the old config and says why, and SIGHUP reloads at once. Real broker and
//! exporter feed the `rocketmq-exporter` triggers; the sidecar runs `--simulate`.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{bin, exporter_for, free_port, http_get, name, scratch, Metrics, Rig, RigOptions};

/// Writes `files` as a new `..<version>` directory and swaps `..data` to it, like the kubelet's
/// atomic writer; top-level symlinks point through `..data`.
fn publish(dir: &Path, version: u32, files: &[(&str, String)]) {
    let ts = dir.join(format!("..v{version}"));
    std::fs::create_dir_all(&ts).unwrap();
    for (name, text) in files {
        std::fs::write(ts.join(name), text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    // Top-level links for the current files; links of files gone are removed.
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if !n.starts_with("..") && !files.iter().any(|(f, _)| *f == n) {
            std::fs::remove_file(&p).unwrap();
        }
    }
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    if version > 1 {
        let _ = std::fs::remove_dir_all(dir.join(format!("..v{}", version - 1)));
    }
}

fn so(name: &str, url: &str, group: &str, threshold: u32) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: {name}\n  pollingInterval: 1\n  minReplicaCount: 1\n  maxReplicaCount: 10\n  triggers:\n  - type: rocketmq-exporter\n    metadata:\n      url: {url}\n      consumerGroup: {group}\n      threshold: '{threshold}'\n"
    )
}

struct Sidecar {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    fn metrics(&self) -> Metrics {
        Metrics::parse(
            &http_get(&self.addr, "/metrics")
                .map(|r| r.1)
                .unwrap_or_default(),
        )
    }

    /// Waits until `check` holds on /metrics.
    fn until(&self, what: &str, mut check: impl FnMut(&Metrics) -> bool) -> f64 {
        let t0 = Instant::now();
        loop {
            if check(&self.metrics()) {
                return t0.elapsed().as_secs_f64();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{what}: not within 30 s\n{}\nlog:\n{}",
                self.metrics().text,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn desired(m: &Metrics, so: &str) -> Option<f64> {
    m.one(
        "rmq_sidecar_desired_replicas",
        &[("scaledobject", &format!("default/{so}"))],
    )
}

fn decisions(m: &Metrics, so: &str) -> f64 {
    m.find(
        "rmq_sidecar_decisions_total",
        &[("scaledobject", &format!("default/{so}"))],
    )
    .iter()
    .sum()
}

#[test]
fn scaledobjects_added_changed_and_removed_in_a_configmap_directory_take_effect_with_history_kept()
{
    let rig = Rig::start(RigOptions {
        version: "5.3.3",
        brokers: 1,
        slave: false,
        acl: false,
    });
    let (t, ga, gb) = (name("T"), name("GA"), name("GB"));
    rig.produce(&t, 4, 4);
    rig.consume(&ga, &t, 4);
    rig.consume(&gb, &t, 4);
    rig.produce(&t, 90, 4);
    let exp = exporter_for(rig.namesrv(), &[&ga, &gb], &[]);
    let url = format!("http://{}/metrics", exp.addr);
    let dir = scratch().join(name("configmap"));
    std::fs::create_dir_all(&dir).unwrap();
    publish(&dir, 1, &[("a.yaml", so("a", &url, &ga, 30))]);
    let addr = format!("127.0.0.1:{}", free_port());
    let log = scratch().join(format!("{}.log", name("sidecar")));
    let sc = Sidecar {
        child: Command::new(bin("rmq-sidecar"))
            .args([
                "--config",
                dir.to_str().unwrap(),
                "--simulate",
                "--hpa-sync-period-seconds",
                "1",
                "--listen",
                &addr,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        addr,
        log,
    };
    sc.until("a at 3 (90 / 30)", |m| desired(m, "a") == Some(3.0));
    let before = decisions(&sc.metrics(), "a");

    // Add b, change a's threshold: 90 / 15 = 6 (a scale-up; a scale-down would be held by the HPA's
    // 300 s stabilization window: history kept).
    publish(
        &dir,
        2,
        &[
            ("a.yaml", so("a", &url, &ga, 15)),
            ("b.yaml", so("b", &url, &gb, 30)),
        ],
    );
    let took = sc.until("b added and a changed", |m| {
        desired(m, "b") == Some(3.0) && desired(m, "a") == Some(6.0)
    });
    let after = decisions(&sc.metrics(), "a");
    assert!(
        after > before,
        "a's decision counter restarted ({before} → {after}): history lost"
    );
    println!("added b and changed a in {took:.1} s; a's decisions {before} → {after} (kept)");

    // An invalid edit keeps both.
    publish(
        &dir,
        3,
        &[
            (
                "a.yaml",
                "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nspec: [\n".into(),
            ),
            ("b.yaml", so("b", &url, &gb, 30)),
        ],
    );
    let t0 = Instant::now();
    while !std::fs::read_to_string(&sc.log)
        .unwrap()
        .contains("keeping the previous ScaledObjects")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no error line for the invalid edit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let m = sc.metrics();
    assert_eq!(
        (desired(&m, "a"), desired(&m, "b")),
        (Some(6.0), Some(3.0)),
        "the old config stays"
    );
    let line = std::fs::read_to_string(&sc.log)
        .unwrap()
        .lines()
        .find(|l| l.contains("keeping the previous"))
        .unwrap()
        .to_string();
    println!("invalid edit: {line}");

    // Remove a: its series go.
    publish(&dir, 4, &[("b.yaml", so("b", &url, &gb, 30))]);
    let took = sc.until("a removed", |m| {
        desired(m, "a").is_none() && decisions(m, "a") == 0.0 && desired(m, "b") == Some(3.0)
    });
    println!("removed a in {took:.1} s");

    // SIGHUP reloads at once (b's threshold 15: 6 replicas).
    publish(&dir, 5, &[("b.yaml", so("b", &url, &gb, 15))]);
    let out = Command::new("kill")
        .args(["-HUP", &sc.child.id().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let took = sc.until("b changed after SIGHUP", |m| desired(m, "b") == Some(6.0));
    println!("SIGHUP: applied in {took:.1} s");
    let log = std::fs::read_to_string(&sc.log).unwrap();
    for needle in [
        "ScaledObject added",
        "ScaledObject changed",
        "ScaledObject removed",
        "SIGHUP",
    ] {
        assert!(log.contains(needle), "no `{needle}` line:\n{log}");
    }
}

/// The exporter's config file (a ConfigMap-shaped directory again): a cluster added, the
/// allow-list widened, a cluster removed, an invalid edit; /metrics is polled every 50 ms
/// throughout and never goes without the series of the cluster that stays.
#[test]
fn the_exporter_gains_and_drops_a_cluster_without_a_gap_in_metrics() {
    let rig = Rig::start(RigOptions {
        version: "5.3.3",
        brokers: 1,
        slave: false,
        acl: false,
    });
    let (t, ga, gb) = (name("T"), name("GA"), name("GB"));
    rig.produce(&t, 4, 4);
    rig.consume(&ga, &t, 4);
    rig.consume(&gb, &t, 4);
    rig.produce(&t, 20, 4);
    let cluster = |id: &str| {
        format!(
            "[[clusters]]\nnamesrv = \"{}\"\ninstance_id = \"{id}\"\n",
            rig.namesrv()
        )
    };
    let top = |groups: &str| {
        format!("interval_seconds = 1\ndeadline_seconds = 1\ngroup_allow = \"^({groups})$\"\n")
    };
    let dir = scratch().join(name("exporter-configmap"));
    std::fs::create_dir_all(&dir).unwrap();
    publish(
        &dir,
        1,
        &[("exporter.toml", format!("{}{}", top(&ga), cluster("one")))],
    );
    let exp = support::Exporter::start(&["--config", dir.join("exporter.toml").to_str().unwrap()]);
    let series = |m: &Metrics, id: &str, g: &str| {
        m.one(
            "rocketmq_consumer_ready_messages",
            &[("instance_id", id), ("consumer_group", g), ("topic", &t)],
        )
    };
    exp.eventually(Duration::from_secs(60), |m| {
        series(m, "one", &ga).filter(|v| *v == 20.0)
    });

    // Poll /metrics every 50 ms in the background.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (addr, stop, t, ga) = (exp.addr.clone(), stop.clone(), t.clone(), ga.clone());
        std::thread::spawn(move || {
            let mut pages = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let m =
                    Metrics::parse(&http_get(&addr, "/metrics").map(|r| r.1).unwrap_or_default());
                let has = |id: &str| {
                    m.one(
                        "rocketmq_consumer_ready_messages",
                        &[("instance_id", id), ("consumer_group", &ga), ("topic", &t)],
                    )
                    .is_some()
                };
                pages.push((has("one"), has("two")));
                std::thread::sleep(Duration::from_millis(50));
            }
            pages
        })
    };
    let wait = |what: &str, f: &dyn Fn(&Metrics) -> bool| {
        let t0 = Instant::now();
        while !f(&exp.metrics()) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{what} not within 30 s:\n{}",
                exp.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        t0.elapsed().as_secs_f64()
    };
    publish(
        &dir,
        2,
        &[(
            "exporter.toml",
            format!("{}{}{}", top(&ga), cluster("one"), cluster("two")),
        )],
    );
    let added = wait("cluster two", &|m| series(m, "two", &ga).is_some());
    publish(
        &dir,
        3,
        &[(
            "exporter.toml",
            format!(
                "{}{}{}",
                top(&format!("{ga}|{gb}")),
                cluster("one"),
                cluster("two")
            ),
        )],
    );
    let widened = wait("group b", &|m| {
        series(m, "one", &gb).is_some() && series(m, "two", &gb).is_some()
    });
    publish(
        &dir,
        4,
        &[(
            "exporter.toml",
            format!("{}{}", top(&format!("{ga}|{gb}")), cluster("two")),
        )],
    );
    let dropped = wait("cluster one gone", &|m| {
        series(m, "one", &ga).is_none() && series(m, "two", &ga).is_some()
    });
    publish(
        &dir,
        5,
        &[(
            "exporter.toml",
            "interval_seconds = \"often\"\n".to_string(),
        )],
    );
    wait("error line", &|_| {
        exp.log_text().contains("keeping the previous config")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        series(&exp.metrics(), "two", &gb).is_some(),
        "the previous config stays"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let pages = poller.join().unwrap();
    // No gap: every page has the series of a cluster that is configured at that moment.
    let gaps = pages.iter().filter(|(one, two)| !one && !two).count();
    assert_eq!(
        gaps,
        0,
        "{gaps} of {} pages had neither cluster",
        pages.len()
    );
    let first_two = pages.iter().position(|p| p.1).unwrap();
    assert!(
        pages[first_two..].iter().all(|p| p.1),
        "cluster two went missing after it appeared"
    );
    println!(
        "cluster added in {added:.1} s, allow-list widened in {widened:.1} s, cluster dropped in {dropped:.1} s; {} pages polled, none without series",
        pages.len()
    );
}
