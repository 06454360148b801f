//! Shared test support: the real RocketMQ rig (tests/rig/rocketmq.sh), the load generator
//! (tests/rig/LoadGen.java), the exporter binary as a child process, and a tiny HTTP client.
//!
//! Every child process is tied to the test process: the rig's JVMs are killed by the rig's
//! watchdog when this process exits (`--owner-pid`), and [`Exporter`] kills its child on drop.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// This test process's scratch directory, `$TMPDIR/rmq-tests/<pid>`: rig stores, logs, configs.
/// The first call removes the directories of earlier test processes that are gone and that no
/// running process refers to any more (a rig's watchdog stops its servers a moment after the test
/// process exits; until then the servers and the watchdog name the directory in their command
/// lines). A RocketMQ rig leaves ~80 MB and a kube rig ~120 MB, so without this repeated runs on
/// one machine fill the disk. A failed run's files stay until the next run.
pub fn scratch() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join("rmq-tests");
        let in_use = command_lines();
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let path = entry.path().display().to_string() + "/";
                if !process_alive(pid) && !in_use.iter().any(|c| c.contains(&path)) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
    .clone()
}

/// A process (not merely a thread: `/proc/<tid>` exists for every thread of every process) with
/// this pid is running.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.strip_prefix("Tgid:").map(str::trim) == Some(&pid.to_string()))
    })
}

/// The command lines of all running processes.
fn command_lines() -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

pub fn rig_script(name: &str) -> PathBuf {
    repo_root().join("tests/rig").join(name)
}

/// The stdout of a finished command; a failure panics with `what`, its status, stdout and stderr.
pub fn must(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running name server and broker(s) of one Apache RocketMQ version.
pub struct Rig {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

pub struct RigOptions {
    pub version: &'static str,
    pub brokers: u8,
    /// broker-a also gets a slave (node `broker-a-slave`, brokerId 1).
    pub slave: bool,
    pub acl: bool,
}

impl Rig {
    pub fn start(opts: RigOptions) -> Rig {
        Self::start_with(opts, &[])
    }

    /// Like [`Rig::start`], with more `rocketmq.sh start` arguments (e.g. `--tls`).
    pub fn start_with(opts: RigOptions, extra: &[&str]) -> Rig {
        let dir = scratch().join(format!("rmq-rig-{}-{}", opts.version, unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(rig_script("rocketmq.sh"))
            .args(["start", "--version", opts.version, "--dir"])
            .arg(&dir)
            .args(["--brokers", &opts.brokers.to_string()])
            .args(["--owner-pid", &std::process::id().to_string()]);
        if opts.acl {
            cmd.arg("--acl");
        }
        if opts.slave {
            cmd.arg("--slave");
        }
        cmd.args(extra);
        must(cmd.output().unwrap(), "rocketmq.sh start");
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Rig { dir, env }
    }

    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("rig env has no {key}: {:?}", self.env))
    }

    pub fn namesrv(&self) -> &str {
        self.get("NAMESRV")
    }

    pub fn cluster(&self) -> &str {
        self.get("CLUSTER")
    }

    fn rig(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(rig_script("rocketmq.sh"))
            .args(args)
            .output()
            .unwrap();
        must(out, &format!("rocketmq.sh {}", args.join(" ")))
    }

    pub fn kill_broker(&self, name: &str) {
        self.rig(&[
            "kill-broker",
            "--dir",
            self.dir.to_str().unwrap(),
            "--name",
            name,
        ]);
    }
    /// Waits until broker `name` has rewritten its `consumerOffset.json` after this call, with
    /// (topic, group) in it, so every commit the broker holds now is on disk. The broker persists
    /// offsets every 5 s; a kill -9 before that loses the newer commits, and a group whose first
    /// commit is lost has no offset for the topic on that broker at all.
    pub fn wait_offsets_persisted(&self, name: &str, topic: &str, group: &str) {
        let file = self.dir.join(name).join("store/config/consumerOffset.json");
        let key = format!("\"{topic}@{group}\"");
        let since = std::time::SystemTime::now();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let written = std::fs::metadata(&file).and_then(|m| m.modified());
            if written.is_ok_and(|w| w > since)
                && std::fs::read_to_string(&file).is_ok_and(|text| text.contains(&key))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not persist the offsets of {key} to {} within 30 s",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    /// Waits until broker-a's slave shows the same (topic, group) rows as its master in
    /// `mqadmin brokerConsumeStats` (broker offset, consumer offset, last time per queue): the
    /// slave replicates the commit log at once but syncs consumer offsets only every 10 s.
    pub fn wait_slave_in_sync(&self, topic: &str, group: &str) {
        let rows = |addr: &str| -> Vec<String> {
            self.mqadmin(&["brokerConsumeStats", "-b", addr])
                .lines()
                .filter(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some(topic) && w.next() == Some(group)
                })
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let master = rows(self.get("BROKER_A"));
            let slave = rows(self.get("BROKER_A_SLAVE"));
            if !master.is_empty() && master == slave {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker-a's slave did not catch up within 60 s:\nmaster {master:?}\nslave {slave:?}"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    pub fn start_broker(&self, name: &str) {
        self.rig(&[
            "start-broker",
            "--dir",
            self.dir.to_str().unwrap(),
            "--name",
            name,
        ]);
    }
    pub fn kill_namesrv(&self) {
        self.rig(&["kill-namesrv", "--dir", self.dir.to_str().unwrap()]);
    }
    pub fn start_namesrv(&self) {
        self.rig(&["start-namesrv", "--dir", self.dir.to_str().unwrap()]);
    }

    /// Runs `mqadmin ARGS -n NAMESRV` and returns its stdout.
    pub fn mqadmin(&self, args: &[&str]) -> String {
        let mut all = vec!["mqadmin", "--dir", self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-n", self.namesrv()]);
        self.rig(&all)
    }

    /// `mqadmin consumerProgress -g GROUP` totals: (diff total, inflight total if printed).
    /// 5.x prints "Consume Diff Total: N" and "Consume Inflight Total: N"; 4.9 "Diff Total: N".
    pub fn consumer_progress(&self, group: &str) -> (i64, Option<i64>) {
        let out = self.mqadmin(&["consumerProgress", "-g", group]);
        let total = |label: &str| {
            out.lines().find_map(|l| {
                let rest = &l[l.find(label)? + label.len()..];
                let digits: String = rest
                    .trim_start_matches([':', ' '])
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '-')
                    .collect();
                digits.parse::<i64>().ok()
            })
        };
        (
            total("Diff Total").unwrap_or_else(|| panic!("no diff total in:\n{out}")),
            total("Inflight Total"),
        )
    }

    fn loadgen_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(rig_script("rocketmq.sh"))
            .args(["loadgen", "--dir", self.dir.to_str().unwrap()])
            .args(args);
        cmd
    }

    /// Runs the load generator to completion.
    pub fn loadgen(&self, args: &[&str]) -> String {
        must(
            self.loadgen_cmd(args).output().unwrap(),
            &format!("LoadGen {}", args.join(" ")),
        )
    }

    /// Starts the load generator in the background (killed on drop).
    pub fn loadgen_spawn(&self, args: &[&str]) -> Background {
        let child = self
            .loadgen_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Background { child }
    }

    pub fn produce(&self, topic: &str, count: u32, queues: u32) {
        let out = self.loadgen(&[
            "produce",
            "--topic",
            topic,
            "--count",
            &count.to_string(),
            "--queues",
            &queues.to_string(),
        ]);
        assert!(out.contains(&format!("RESULT sent={count}")), "{out}");
    }

    pub fn consume(&self, group: &str, topic: &str, expect: u32) {
        let out = self.loadgen(&[
            "consume",
            "--group",
            group,
            "--topic",
            topic,
            "--expect",
            &expect.to_string(),
        ]);
        assert!(out.contains(&format!("RESULT consumed={expect}")), "{out}");
    }
}

/// A background child process, killed on drop.
pub struct Background {
    pub child: Child,
}

impl Background {
    /// Waits until a line of stdout contains `needle`, or panics after `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let stdout = self.child.stdout.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while Instant::now() < deadline {
            match stdout.read(&mut byte) {
                Ok(1) => {
                    seen.push(byte[0]);
                    if byte[0] == b'\n' {
                        let text = String::from_utf8_lossy(&seen).into_owned();
                        if let Some(line) = text.lines().last().filter(|l| l.contains(needle)) {
                            return line.to_string();
                        }
                    }
                }
                _ => break,
            }
        }
        panic!(
            "no line with {needle:?} within {timeout:?}; output: {}",
            String::from_utf8_lossy(&seen)
        );
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The path of a workspace binary. A package's own binaries come from Cargo; the other
/// package's sit next to them in the target directory (`cargo test --workspace` builds both
/// before any test runs).
pub fn bin(name: &str) -> PathBuf {
    let own = match name {
        "rmq-exporter" => option_env!("CARGO_BIN_EXE_rmq-exporter"),
        "rmq-sidecar" => option_env!("CARGO_BIN_EXE_rmq-sidecar"),
        _ => None,
    };
    if let Some(path) = own {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build -p {name}` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// A name that no other test uses.
pub fn name(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), unique())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The exporter binary running as a child process on a loopback port.
pub struct Exporter {
    pub child: Child,
    pub addr: String,
    /// Its stderr (the log).
    pub log: PathBuf,
}

impl Exporter {
    pub fn start(args: &[&str]) -> Exporter {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = scratch().join(format!("rmq-exporter-{}.log", unique()));
        let child = isolated(Command::new(bin("rmq-exporter")))
            .args(["--listen", &addr])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let e = Exporter { child, addr, log };
        e.wait_ready(Duration::from_secs(60));
        e
    }

    /// Whether it has exited (a zombie not yet reaped: `try_wait` would need `&mut self`).
    fn has_exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map(|stat| {
                stat.rsplit(") ")
                    .next()
                    .is_some_and(|rest| rest.starts_with('Z'))
            })
            .unwrap_or(true)
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if http_get(&self.addr, "/readyz").is_ok_and(|(s, _)| s == 200) {
                return;
            }
            if self.has_exited() {
                panic!(
                    "exporter on {} exited before it was ready:\n{}",
                    self.addr,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "exporter on {} not ready within {timeout:?}:\n{}",
            self.addr,
            self.log_text()
        );
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = http_get(&self.addr, "/metrics").unwrap();
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    /// Polls /metrics until `check` returns Some, or panics with the last page.
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Metrics) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            let m = self.metrics();
            if let Some(v) = check(&m) {
                return v;
            }
            last = Some(m);
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "condition not met within {timeout:?}; last page:\n{}",
            last.map(|m| m.text).unwrap_or_default()
        );
    }
}

/// A command that sees none of this machine's Alibaba Cloud credentials: no `ALIBABA_CLOUD_*`
/// variables, an empty `$HOME`, and the ECS metadata service switched off (it lives on a
/// non-loopback address that tests must never reach). A test's own `env` comes after this.
pub fn isolated(mut cmd: Command) -> Command {
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ALIBABA_CLOUD_")) {
        cmd.env_remove(k);
    }
    let home = scratch().join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    cmd.env("HOME", home)
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    cmd
}

impl Exporter {
    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An exporter on `namesrv` reading only `groups`, every second, plus `extra` flags.
pub fn exporter_for(namesrv: &str, groups: &[&str], extra: &[&str]) -> Exporter {
    exporter_for_with_env(namesrv, groups, extra, &[])
}

/// [`exporter_for`] with `env` set for the process.
pub fn exporter_for_with_env(
    namesrv: &str,
    groups: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Exporter {
    let allow = format!("^({})$", groups.join("|"));
    let mut args = vec![
        "--namesrv",
        namesrv,
        "--interval",
        "1",
        "--deadline",
        "1",
        "--group-allow",
        &allow,
    ];
    args.extend_from_slice(extra);
    Exporter::start_with_env(&args, env)
}

/// (ready, inflight, lag) of one (topic, group) series.
pub fn backlog(m: &Metrics, topic: &str, group: &str) -> Option<(f64, f64, f64)> {
    let l = [("topic", topic), ("consumer_group", group)];
    Some((
        m.one("rocketmq_consumer_ready_messages", &l)?,
        m.one("rocketmq_consumer_inflight_messages", &l)?,
        m.one("rocketmq_consumer_lag_messages", &l)?,
    ))
}

/// Starts Debian's Prometheus scraping `target` every second (tests/rig/prometheus.sh);
/// returns (its address, its rig directory). It stops when this process exits.
pub fn start_prometheus(target: &str) -> (String, PathBuf) {
    start_prometheus_with(target, &[])
}

/// [`start_prometheus`] with more `prometheus.sh start` options (`--scrape-interval 15s`,
/// `--basic-auth USER:PASSWORD`, `--tls DIR` with [`certs`]' files, `--client-auth TYPE`).
pub fn start_prometheus_with(target: &str, options: &[&str]) -> (String, PathBuf) {
    let dir = scratch().join(name("prom"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("bash")
        .arg(rig_script("prometheus.sh"))
        .args(["start", "--dir", dir.to_str().unwrap(), "--target", target])
        .args(["--owner-pid", &std::process::id().to_string()])
        .args(options)
        .output()
        .unwrap();
    let stdout = must(out, "prometheus.sh start");
    (stdout.trim().trim_start_matches("PROM=").to_string(), dir)
}

/// A parsed Prometheus text page.
pub struct Metrics {
    pub text: String,
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            // `name{labels} value [timestamp]`; label values may hold spaces, so split at the last '}'.
            let (name, labels, rest) = match line.split_once('{') {
                Some((n, rest)) => {
                    let (labels, tail) = rest.rsplit_once('}').unwrap();
                    (n, parse_labels(labels), tail)
                }
                None => {
                    let (n, tail) = line.split_once(' ').unwrap();
                    (n, BTreeMap::new(), tail)
                }
            };
            let value: f64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            samples.push((name.trim().to_string(), labels, value));
        }
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// Values of `name` whose labels include every (key, value) in `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect()
    }

    /// The single value of `name` with `labels`, if exactly one series matches.
    pub fn one(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels).as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// A minimal HTTP/1.1 GET over loopback: (status, body).
pub fn http_get(addr: &str, path_and_query: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path_and_query, "")
}

/// A minimal HTTP/1.1 request with a body over loopback: (status, body).
pub fn http_request(
    addr: &str,
    method: &str,
    path_and_query: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    http_request_with(addr, method, path_and_query, &[], body)
}

/// [`http_request`] with extra request headers.
pub fn http_request_with(
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The fake ApsaraMQ OpenAPI server (tests/rig/openapi_fake.py) on a loopback port; it checks
/// every request's signature with its own implementation (tests/rig/acs3.py). Stopped on drop.
pub struct FakeOpenApi {
    child: Child,
    pub addr: String,
}

impl FakeOpenApi {
    pub fn start() -> FakeOpenApi {
        let mut child = Command::new("python3")
            .arg(rig_script("openapi_fake.py"))
            .args(["--owner-pid", &std::process::id().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 tests/rig/openapi_fake.py");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("FAKE=")
            .unwrap_or_else(|| panic!("openapi_fake.py printed {line:?}"))
            .to_string();
        FakeOpenApi { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn post(&self, path: &str, body: &serde_json::Value) {
        let (status, text) = http_request(&self.addr, "POST", path, &body.to_string()).unwrap();
        assert_eq!(status, 200, "{path}: {text}");
    }

    /// Replaces the fake's whole world (see openapi_fake.py for the shape).
    pub fn state(&self, state: serde_json::Value) {
        self.post("/_fake/state", &state);
    }

    /// Merges a change into the world (`{"groups": {"inst": {"G": {...} | null}}}`, ...).
    pub fn patch(&self, patch: serde_json::Value) {
        self.post("/_fake/patch", &patch);
    }

    /// Adds fault rules (`{"action", "group", "mode", "count", ...}`).
    pub fn fault(&self, rule: serde_json::Value) {
        self.post("/_fake/faults", &rule);
    }

    pub fn clear_faults(&self) {
        let (status, _) = http_request(&self.addr, "DELETE", "/_fake/faults", "").unwrap();
        assert_eq!(status, 200);
    }

    pub fn stats(&self) -> serde_json::Value {
        let (status, text) = http_get(&self.addr, "/_fake/stats").unwrap();
        assert_eq!(status, 200);
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for FakeOpenApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Test certificates made with `openssl` in a directory: a CA (`ca.crt`, `ca.key`) and leaves
/// signed by it (`<who>.crt`, `<who>.key`), P-256, valid two days.
pub mod certs {
    use std::path::Path;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ca.crt` and `ca.key` in `dir`.
    pub fn ca(dir: &Path) {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        );
    }

    /// `<who>.crt` and `<who>.key` for subject `cn`, with the extensions `ext` (openssl's
    /// extfile lines), signed by the CA in `dir`.
    pub fn leaf(dir: &Path, who: &str, cn: &str, ext: &str) {
        std::fs::write(dir.join(format!("{who}.ext")), ext).unwrap();
        let (key, csr, crt, extfile) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.crt"),
            format!("{who}.ext"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extfile,
                "-out",
                &crt,
            ],
        );
    }
}

/// A bcrypt hash of `password` (for `basic_auth_users` in a web config file).
pub fn bcrypt(password: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024)))", password])
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(h.starts_with("$2"), "no bcrypt hash: {out:?}");
    h
}

/// An `rmq-sidecar` child process with its log in a file; killed on drop.
pub struct Sidecar {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Sidecar {
    /// Starts `rmq-sidecar --listen <free port>` with `args`.
    pub fn start(args: &[&str]) -> Sidecar {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = scratch().join(format!("{}.log", name("rmq-sidecar")));
        let child = Command::new(bin("rmq-sidecar"))
            .args(["--listen", &addr])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Sidecar { child, addr, log }
    }

    /// Its /metrics page (empty while it does not answer).
    pub fn page(&self) -> String {
        http_get(&self.addr, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` until `check` holds on /metrics.
    pub fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Metrics) -> bool,
    ) {
        let t0 = Instant::now();
        loop {
            if check(&Metrics::parse(&self.page())) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the sidecar exited ({status}):\n{}", self.log_text());
            }
            assert!(
                t0.elapsed() < timeout,
                "{what}: not within {timeout:?}\n{}\nlog:\n{}",
                self.page(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
