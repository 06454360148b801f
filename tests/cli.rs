//! The command line: bad input is refused at start with one line naming the key; `--help`
//! documents every flag with its environment variable.

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rmq-exporter"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_are_refused_with_one_line_naming_the_key() {
    for (args, env, key) in [
        (vec!["--namesrv", "broker-without-port"], vec![], "namesrv"),
        (vec!["--interval=-3"], vec![], "interval_seconds"),
        (vec!["--listen", "everywhere"], vec![], "listen"),
        (
            vec![],
            vec![("RMQ_EXPORTER_LOG_FORMAT", "xml")],
            "log_format",
        ),
        (vec!["--topic-deny", "[unclosed"], vec![], "topic_deny"),
        (
            vec!["--config", "/nonexistent/rmq.toml"],
            vec![],
            "/nonexistent/rmq.toml",
        ),
    ] {
        let (code, _, stderr) = run(&args, &env);
        assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(key), "{args:?}: {stderr}");
    }
}

#[test]
fn unknown_flags_are_refused() {
    let (code, _, stderr) = run(&["--namserv", "127.0.0.1:9876"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--namserv"), "{stderr}");
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let (code, stdout, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "namesrv",
        "listen",
        "config",
        "instance-id",
        "interval",
        "deadline",
        "request-timeout",
        "concurrency",
        "latency-lookups",
        "group-allow",
        "group-deny",
        "topic-allow",
        "topic-deny",
        "access-key",
        "secret-key",
        "log-format",
        "log-level",
        "queue-metrics",
    ] {
        assert!(
            stdout.contains(&format!("--{flag}")),
            "--{flag} missing from --help"
        );
        let env = format!("RMQ_EXPORTER_{}", flag.to_uppercase().replace('-', "_"));
        assert!(
            stdout.contains(&env) || stdout.contains(&format!("{env}_SECONDS")),
            "{env} missing from --help"
        );
    }
}
