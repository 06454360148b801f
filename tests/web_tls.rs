//! TLS and basic auth on both binaries' HTTP endpoints (`--web.config.file`, exporter-toolkit
//! format, served by the shared `rmq-web` crate): a real Prometheus (Debian's) scrapes the exporter
//! and the sidecar over mutual TLS with basic auth; a wrong password, no client certificate and
//! plain HTTP are refused; a rotated server certificate is served without a restart; a broken
//! edit keeps the previous config; the password is in no log line and not in /metrics.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{bin, certs, free_port, name, scratch};

fn make_certs(dir: &Path) {
    certs::ca(dir);
    let server = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    certs::leaf(dir, "server", "server-one", server);
    certs::leaf(dir, "server2", "server-two", server);
    certs::leaf(dir, "client", "prometheus", "extendedKeyUsage=clientAuth\n");
}

struct Proc(Child, PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

fn spawn(program: PathBuf, args: &[&str], log: PathBuf) -> Proc {
    let child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc(child, log)
}

/// The certificate subject CN served on `addr` (the client presents its certificate).
fn served_cn(dir: &Path, addr: &str) -> String {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            "ca.crt",
            "-cert",
            "client.crt",
            "-key",
            "client.key",
            "-verify_return_error",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("")
        .to_string()
}

/// `up` per job from Prometheus' API.
fn up_by_job(prom: &str) -> Vec<(String, f64)> {
    let Ok((200, body)) = support::http_get(prom, "/api/v1/query?query=up") else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(String, f64)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn prometheus_scrapes_both_binaries_over_mutual_tls_with_basic_auth_and_everything_else_is_refused()
{
    let dir = scratch().join(name("web-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir);
    let password = "Scr4pe-Secret-9";
    let web = dir.join("web.yml");
    let web_text = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  prometheus: '{}'\n",
        support::bcrypt(password)
    );
    std::fs::write(&web, &web_text).unwrap();
    let (exp_addr, sc_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let dead = format!("127.0.0.1:{}", free_port());
    let exporter = spawn(
        bin("rmq-exporter"),
        &[
            "--listen",
            &exp_addr,
            "--namesrv",
            &dead,
            "--interval",
            "1",
            "--deadline",
            "1",
            "--web.config.file",
            web.to_str().unwrap(),
        ],
        dir.join("exporter.log"),
    );
    let so = dir.join("so.yaml");
    std::fs::write(&so, format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: app\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: app\n  pollingInterval: 1\n  triggers:\n  - type: rocketmq-exporter\n    metadata:\n      url: http://{dead}/metrics\n      consumerGroup: g\n      threshold: '30'\n")).unwrap();
    let sidecar = spawn(
        bin("rmq-sidecar"),
        &[
            "--config",
            so.to_str().unwrap(),
            "--simulate",
            "--listen",
            &sc_addr,
            "--web.config.file",
            web.to_str().unwrap(),
        ],
        dir.join("sidecar.log"),
    );

    // Prometheus: the right way to each, and three wrong ways to the exporter.
    let d = dir.display();
    let tls = format!("    tls_config:\n      ca_file: {d}/ca.crt\n      cert_file: {d}/client.crt\n      key_file: {d}/client.key\n");
    let auth =
        |pw: &str| format!("    basic_auth:\n      username: prometheus\n      password: '{pw}'\n");
    let job = |name: &str, scheme: &str, tls: &str, auth: &str, target: &str| {
        format!("  - job_name: {name}\n    scheme: {scheme}\n{tls}{auth}    static_configs:\n      - targets: ['{target}']\n")
    };
    let no_cert_tls = format!("    tls_config:\n      ca_file: {d}/ca.crt\n");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}{}{}",
        job("exporter", "https", &tls, &auth(password), &exp_addr),
        job("sidecar", "https", &tls, &auth(password), &sc_addr),
        job("wrong_password", "https", &tls, &auth("guess"), &exp_addr),
        job(
            "no_client_cert",
            "https",
            &no_cert_tls,
            &auth(password),
            &exp_addr
        ),
        job("plain_http", "http", "", &auth(password), &exp_addr),
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let _prometheus = spawn(
        PathBuf::from("prometheus"),
        &[
            &format!("--config.file={d}/prometheus.yml"),
            &format!("--storage.tsdb.path={d}/prom-data"),
            &format!("--web.listen-address={prom}"),
            "--log.level=warn",
        ],
        dir.join("prometheus.log"),
    );
    let want = vec![
        ("exporter".to_string(), 1.0),
        ("no_client_cert".to_string(), 0.0),
        ("plain_http".to_string(), 0.0),
        ("sidecar".to_string(), 1.0),
        ("wrong_password".to_string(), 0.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = up_by_job(&prom);
        if last == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(last, want, "exporter log:\n{}", exporter.log());
    println!("Prometheus up by job: {last:?}");

    // Rotation: cert-manager-style, the files change in place; no restart.
    assert!(served_cn(&dir, &exp_addr).contains("server-one"));
    std::fs::copy(dir.join("server2.key"), dir.join("server.key.new")).unwrap();
    std::fs::copy(dir.join("server2.crt"), dir.join("server.crt.new")).unwrap();
    std::fs::rename(dir.join("server.key.new"), dir.join("server.key")).unwrap();
    std::fs::rename(dir.join("server.crt.new"), dir.join("server.crt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !served_cn(&dir, &exp_addr).contains("server-two")
        || !served_cn(&dir, &sc_addr).contains("server-two")
    {
        assert!(
            Instant::now() < deadline,
            "rotated certificate not served: {}",
            served_cn(&dir, &exp_addr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("rotated certificate served by both within 20 s, no restart");

    // A broken edit keeps the previous config and says why.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exporter.log().contains("keeping the previous web config") {
        assert!(
            Instant::now() < deadline,
            "no error line for the broken web config:\n{}",
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        served_cn(&dir, &exp_addr).contains("server-two"),
        "TLS still on with the previous config"
    );
    std::fs::write(&web, &web_text).unwrap();

    // Still scraped after all that; the password is nowhere.
    std::thread::sleep(Duration::from_secs(3));
    let up = up_by_job(&prom);
    assert!(
        up.contains(&("exporter".to_string(), 1.0)) && up.contains(&("sidecar".to_string(), 1.0)),
        "{up:?}"
    );
    for (what, text) in [
        ("exporter log", exporter.log()),
        ("sidecar log", sidecar.log()),
    ] {
        assert!(!text.contains(password), "the password is in the {what}");
    }
    let err_line = exporter
        .log()
        .lines()
        .find(|l| l.contains("keeping the previous web config"))
        .unwrap_or("")
        .to_string();
    println!("broken edit: {err_line}");
}
