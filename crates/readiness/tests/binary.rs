//! The `pgdr-readiness` binary as the Pod runs it: config errors exit 2, SIGTERM exits 0.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_variable_exits_2_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_pgdr-readiness"))
        .env_clear()
        .env("READINESS_MAX_LAG_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("READINESS_MAX_LAG_BYTES"), "{err}");
}

#[test]
fn sigterm_is_a_graceful_exit_0() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgdr-readiness"))
        .env_clear()
        .env("READINESS_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "READINESS_PATRONI_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("READINESS_LOG_FORMAT", "plain")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the sidecar's own "serving" line, not for the port to answer: another process
    // may hold a port that was free a moment ago, and a SIGTERM sent before the handler exists
    // would kill the sidecar instead of stopping it.
    let stderr = child.stderr.take().unwrap();
    let (serving_tx, serving_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if line.contains("serving") {
                let _ = serving_tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    serving_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the sidecar never logged that it is serving");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the sidecar serves on its port"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 5s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
}
