//! Each tunnel mode against a real upstream (an echo server) on loopback.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use pgdr_tunnel::{Mode, Tunnel};

/// Echoes every byte back, one thread per connection.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn tunnel() -> Tunnel {
    Tunnel::spawn("127.0.0.1:0".parse().unwrap(), echo_server()).unwrap()
}

fn connect(t: &Tunnel) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&t.local_addr(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    Ok(s)
}

/// Sends `msg` and reads the echo; `Err` kind tells how it failed.
fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    let mut filled = 0;
    while filled < msg.len() {
        match s.read(&mut got[filled..])? {
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(got)
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn passes_bytes_both_ways_and_counts_them() {
    let t = tunnel();
    let mut s = connect(&t).unwrap();
    assert_eq!(roundtrip(&mut s, b"hello").unwrap(), b"hello");
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(roundtrip(&mut s, &big).unwrap(), big);
    // The counters are bumped by the tunnel thread after each write; give it a moment.
    eventually("all bytes counted", || {
        let st = t.stats();
        st.bytes_up == 200_005 && st.bytes_down == 200_005
    });
    assert_eq!(t.stats().accepted, 1);
}

#[test]
fn cut_refuses_new_and_closes_open_connections_then_heal_restores() {
    let t = tunnel();
    let mut open = connect(&t).unwrap();
    assert!(roundtrip(&mut open, b"x").is_ok());
    t.cut();
    assert_eq!(t.mode(), Mode::Cut);
    eventually(
        "refused connections",
        || matches!(TcpStream::connect(t.local_addr()), Err(e) if e.kind() == ErrorKind::ConnectionRefused),
    );
    let err = roundtrip(&mut open, b"y").expect_err("the open connection was closed");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{err:?}"
    );
    t.heal();
    eventually("the same port to listen again", || connect(&t).is_ok());
    let mut again = connect(&t).unwrap();
    assert_eq!(roundtrip(&mut again, b"back").unwrap(), b"back");
}

#[test]
fn blackhole_accepts_but_never_answers() {
    let t = tunnel();
    let mut before = connect(&t).unwrap();
    assert!(roundtrip(&mut before, b"a").is_ok());
    t.blackhole();
    std::thread::sleep(Duration::from_millis(50));

    // New connections are accepted (no refusal, unlike a cut) but nothing comes back.
    let mut during = connect(&t).expect("a blackhole still accepts");
    let err = roundtrip(&mut during, b"ping").expect_err("no answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    // Connections opened before go silent too.
    let err = roundtrip(&mut before, b"b").expect_err("no answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert!(t.stats().bytes_dropped >= 5);

    // Healing: connections that lost bytes are closed (their stream is broken); new ones work.
    t.heal();
    let mut buf = [0u8; 8];
    let n = before.read(&mut buf);
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let mut after = connect(&t).unwrap();
    assert_eq!(roundtrip(&mut after, b"ok").unwrap(), b"ok");
}

#[test]
fn slow_adds_latency_each_way() {
    let t = tunnel();
    let mut s = connect(&t).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    roundtrip(&mut s, b"fast").unwrap();
    let fast = started.elapsed();

    t.slow(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(roundtrip(&mut s, b"slow").unwrap(), b"slow");
    let slow = started.elapsed();
    // 150 ms up + 150 ms down.
    assert!(
        slow >= Duration::from_millis(300),
        "slow round trip took {slow:?}"
    );
    assert!(slow < Duration::from_millis(1500), "{slow:?}");

    t.heal();
    let started = Instant::now();
    roundtrip(&mut s, b"fast").unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?} (first: {fast:?})",
        started.elapsed()
    );
}

#[test]
fn drop_stops_everything() {
    let t = tunnel();
    let addr = t.local_addr();
    let mut s = connect(&t).unwrap();
    drop(t);
    assert!(matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused));
    let mut buf = [0u8; 1];
    let _ = s.write_all(b"x");
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
}
