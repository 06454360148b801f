//! The container images, built here without a Docker daemon by `image/build.sh` (buildah, `FROM
//! scratch`, static musl release binaries): each OCI archive holds one layer with one binary, runs
//! as 65532:65532 with the crate version as tag and label, the binaries are static (`ldd`), and
//! the extracted binary, run as that non-root user, reads a real broker (through `localhost`, so
//! musl's own resolver is used) and answers `--version`.
//!
//! No container runtime runs here (the sandbox has none, and `buildah run` fails with
//! "exec: no command" for want of one), so the extracted root filesystem's binaries are run
//! directly, as the issue allows.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{must, name, repo_root, scratch, Rig, RigOptions};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Unpacks an OCI archive: (its config, the root filesystem of its single layer).
fn unpack(archive: &str, into: &Path) -> (serde_json::Value, PathBuf) {
    let oci = into.join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    must(
        Command::new("tar")
            .args(["-xf", archive, "-C"])
            .arg(&oci)
            .output()
            .unwrap(),
        "tar oci",
    );
    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(
        &oci,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let rootfs = into.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let layer = blob(&oci, layers[0]["digest"].as_str().unwrap());
    must(
        Command::new("tar")
            .arg("-xf")
            .arg(&layer)
            .arg("-C")
            .arg(&rootfs)
            .output()
            .unwrap(),
        "tar layer",
    );
    (config, rootfs)
}

/// Runs `bin` as 65532:65532 with `args`.
fn as_nobody(bin: &Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65532", "--regid=65532", "--clear-groups", "--"])
        .arg(bin)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn images_build_without_docker_static_non_root_and_their_binaries_run() {
    let out_dir = scratch().join(name("images"));
    let out = Command::new("bash")
        .arg(repo_root().join("image/build.sh"))
        .arg(&out_dir)
        .output()
        .unwrap();
    let out = must(out, "image/build.sh");
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing in {out}"))
            .to_string()
    };
    let version = get("VERSION");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let rig = Rig::start(RigOptions {
        version: "5.3.3",
        brokers: 1,
        slave: false,
        acl: false,
    });
    for (bin, archive, ports) in [
        (
            "rmq-exporter",
            get("EXPORTER_ARCHIVE"),
            vec!["9877/tcp", "9879/tcp"],
        ),
        ("rmq-sidecar", get("SIDECAR_ARCHIVE"), vec!["9878/tcp"]),
    ] {
        let dir = scratch().join(name(bin));
        let (config, rootfs) = unpack(&archive, &dir);
        let c = &config["config"];
        assert_eq!(c["User"], "65532:65532", "{config}");
        assert_eq!(c["Entrypoint"], serde_json::json!([format!("/{bin}")]));
        assert_eq!(
            c["Labels"]["org.opencontainers.image.version"],
            version.as_str()
        );
        for p in &ports {
            assert!(
                c["ExposedPorts"].get(*p).is_some(),
                "{p} not exposed: {config}"
            );
        }
        // Nothing in the image but the binary.
        let files: Vec<String> = walk(&rootfs);
        assert_eq!(files, vec![format!("/{bin}")], "{files:?}");
        let binary = rootfs.join(bin);
        let ldd = Command::new("ldd").arg(&binary).output().unwrap();
        let ldd_text = format!(
            "{}{}",
            String::from_utf8_lossy(&ldd.stdout),
            String::from_utf8_lossy(&ldd.stderr)
        );
        assert!(
            ldd_text.contains("statically linked") || ldd_text.contains("not a dynamic executable"),
            "{bin}: ldd says {ldd_text}"
        );
        let v = as_nobody(&binary, &["--version"]);
        assert!(v.status.success(), "{bin} --version as 65532: {v:?}");
        assert_eq!(
            String::from_utf8_lossy(&v.stdout).trim(),
            format!("{bin} {version}")
        );
        let size = std::fs::metadata(&binary).unwrap().len();
        println!(
            "{bin}:{version}: one layer, user 65532:65532, ports {ports:?}, ldd: {}, {:.1} MiB",
            ldd_text.trim(),
            size as f64 / 1048576.0
        );
    }
    // The image's exporter reads the real broker as 65532, resolving `localhost` itself.
    let dir = scratch().join(name("rmq-exporter"));
    let (_, rootfs) = unpack(&get("EXPORTER_ARCHIVE"), &dir);
    let port = rig.namesrv().rsplit(':').next().unwrap().to_string();
    let topic = name("T");
    let group = name("G");
    rig.produce(&topic, 7, 4);
    rig.consume(&group, &topic, 7);
    rig.produce(&topic, 5, 4);
    let namesrv = format!("localhost:{port}");
    let allow = format!("^{group}$");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // The consumer's committed offset reaches the broker within its 5 s persistence period.
        let run = as_nobody(
            &rootfs.join("rmq-exporter"),
            &["--namesrv", &namesrv, "--once", "--group-allow", &allow],
        );
        assert!(run.status.success(), "{run:?}");
        let page = String::from_utf8_lossy(&run.stdout).into_owned();
        let m = support::Metrics::parse(&page);
        if support::backlog(&m, &topic, &group).map(|b| b.2) == Some(5.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backlog of 5 in:\n{page}"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    println!("the image's rmq-exporter, as 65532, read a backlog of 5 from the broker at localhost:{port}");
}

/// Every regular file under `root`, as absolute paths inside it.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(format!("/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    out.sort();
    out
}
