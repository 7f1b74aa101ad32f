//! Hostile-client limits over real sockets: idle TCP connections are closed after the header-read
//! timeout, the total TCP connection cap, and a WebSocket ping flooder is closed with 1008 while a
//! normal listener on the same server keeps receiving contiguous chunks.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use shm_proto::Namespace;
use tungstenite::Message;

mod common;
use common::{Fixture, Server};

/// The server with the default limits and no drain.
fn with_defaults(ns: &Namespace) -> Server {
    Server::start(
        ns,
        streamd::Args {
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    )
}

/// `GET /healthz` on a new connection: the status code, or `None` if the connection was closed
/// without an answer.
fn healthz(server: &Server) -> Option<u16> {
    let mut stream = TcpStream::connect(server.addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.get(9..12)?.parse().ok()
}

/// Blocks until the server closes `stream` (EOF or reset); how long that took.
fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {} // a 408 or 400 answer before the close is fine
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => {
                return started.elapsed();
            }
            Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
        }
    }
}

#[test]
fn idle_and_unfinished_requests_are_closed_after_the_header_timeout() {
    let fixture = Fixture::new("idle");
    let server = with_defaults(&fixture.ns);
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let mut unfinished = TcpStream::connect(server.addr).unwrap();
    unfinished
        .write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .unwrap();
    let timeout = streamd::config::HEADER_READ_TIMEOUT;
    let after = time_until_closed(&mut silent, timeout + Duration::from_secs(5));
    assert!(
        after > timeout - Duration::from_secs(1),
        "closed too early: {after:?}"
    );
    // Started at the same time: closed by now or within a moment.
    time_until_closed(&mut unfinished, Duration::from_secs(2));
    // The server itself is fine.
    assert_eq!(healthz(&server), Some(200));
}

#[test]
fn tcp_connections_over_the_cap_are_closed_at_once() {
    let fixture = Fixture::new("cap");
    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            max_connections: 2,
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    );
    let cap = streamd::limits::tcp_connection_cap(2);
    // One slot is a WebSocket: it holds its slot after the upgrade.
    let mut ws = server.connect();
    let mut idle: Vec<TcpStream> = (1..cap)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Every slot taken: the next connection is accepted by the kernel, then closed at once.
    let mut over = TcpStream::connect(server.addr).unwrap();
    let after = time_until_closed(&mut over, Duration::from_secs(3));
    assert!(after < Duration::from_secs(2), "closed after {after:?}");
    assert_eq!(healthz(&server), None, "still at the cap");
    // A slot given back: served again.
    idle.pop();
    let served = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        healthz(&server) == Some(200)
    });
    assert!(served, "not served after a slot was freed");
    // The WebSocket kept working meanwhile.
    ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
    loop {
        if let Message::Text(text) = ws.read().expect("read") {
            let m: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(m["type"], "pong", "{m}");
            break;
        }
    }
}

#[test]
fn a_ping_flooder_is_closed_with_1008_and_a_listener_beside_it_is_undisturbed() {
    let fixture = Fixture::new("pingflood");
    let server = with_defaults(&fixture.ns);
    let mut listener = server.connect();
    listener
        .send(Message::text(r#"{"type":"control","action":"start"}"#))
        .unwrap();

    let mut flooder = server.connect();
    let flood = std::thread::spawn(move || {
        flooder
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        flooder
            .get_mut()
            .set_write_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let started = Instant::now();
        let mut sent = 0u64;
        let code = loop {
            if started.elapsed() > Duration::from_secs(15) {
                break None;
            }
            // 20 pings a round, far more than a browser: a paused reader makes writes block.
            for _ in 0..20 {
                match flooder.send(Message::Ping(tungstenite::Bytes::from_static(b"flood"))) {
                    Ok(()) => sent += 1,
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(tungstenite::Error::WriteBufferFull(_)) => break,
                    Err(_) => break,
                }
            }
            match flooder.read() {
                Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break None,
            }
        };
        (code, started.elapsed(), sent)
    });

    // The listener reads 5 s of audio meanwhile: every chunk, in order, none late by a second.
    let mut seqs = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let Message::Text(text) = listener.read().expect("listener read") else {
            continue;
        };
        let m: Value = serde_json::from_str(text.as_str()).unwrap();
        if m["type"] == "audio" {
            seqs.push(m["seq"].as_u64().unwrap());
        }
    }
    let (code, after, sent) = flood.join().unwrap();
    assert_eq!(code, Some(1008), "after {after:?}, {sent} pings sent");
    assert!(after < Duration::from_secs(6), "closed after {after:?}");
    assert!(seqs.len() >= 40, "only {} chunks in 5 s", seqs.len());
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq not contiguous: {seqs:?}"
    );
}
