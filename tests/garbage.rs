//! Hostile peers: a "name server" that answers with garbage, truncated frames, oversized frames
//! or bodies that are not JSON. The exporter must say what is wrong, keep serving, and keep its
//! memory bounded.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::Exporter;

/// A peer that reads a request frame and answers with `reply(opaque)`, then behaves per `close`.
fn peer(reply: fn(i32) -> Vec<u8>, close: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, reply, close));
        }
    });
    addr
}

fn serve(mut s: TcpStream, reply: fn(i32) -> Vec<u8>, close: bool) {
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        if s.read_exact(&mut frame).is_err() {
            return;
        }
        let header_len =
            (u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) & 0xFFFFFF) as usize;
        let header: serde_json::Value = serde_json::from_slice(&frame[4..4 + header_len]).unwrap();
        let opaque = header["opaque"].as_i64().unwrap() as i32;
        if s.write_all(&reply(opaque)).is_err() || close {
            return;
        }
    }
}

fn response(opaque: i32, body: &[u8]) -> Vec<u8> {
    let header = format!(
        "{{\"code\":0,\"flag\":1,\"opaque\":{opaque},\"language\":\"JAVA\",\"version\":479}}"
    );
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn garbage_truncated_and_oversized_frames_are_errors_not_crashes() {
    let garbage = peer(|_| b"\x00\x00\x00\x10\xffgarbage-garbage".to_vec(), false);
    let truncated = peer(
        |o| response(o, b"{\"brokerAddrTable\":{}}")[..12].to_vec(),
        true,
    );
    let oversized = peer(|_| vec![0x7f, 0xff, 0xff, 0xf0, 1, 2, 3], false);
    let not_json = peer(|o| response(o, b"<html>502 Bad Gateway</html>"), false);
    let list = [garbage, truncated, oversized, not_json].join(";");
    let mut exp = Exporter::start(&["--namesrv", &list, "--interval", "0.2", "--deadline", "0.2"]);
    std::thread::sleep(Duration::from_secs(5));

    let m = exp.metrics();
    let errors = |cause: &str| {
        m.one("rocketmq_exporter_errors_total", &[("cause", cause)])
            .unwrap_or(0.0)
    };
    assert!(errors("bad_frame") > 0.0, "{}", m.text);
    assert!(errors("bad_body") > 0.0, "{}", m.text);
    assert!(errors("closed") + errors("connect") > 0.0, "{}", m.text);
    assert_eq!(
        m.find("rocketmq_exporter_up", &[("kind", "namesrv")]),
        vec![0.0; 4]
    );
    assert!(m.find("rocketmq_consumer_lag_messages", &[]).is_empty());
    assert!(m.one("rocketmq_exporter_collections_total", &[]).unwrap() >= 10.0);
    // An oversized length prefix is refused before allocation: memory stays small.
    let hwm = vm_hwm_kib(exp.child.id());
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB");
    assert!(
        exp.child.try_wait().unwrap().is_none(),
        "the exporter is still running"
    );
}
