//! Hostile clients beside 100 normal listeners: garbage text, invalid JSON, 10 MB frames, binary
//! frames, control floods (JSON pings and WebSocket ping frames), half-open sockets (TCP connect
//! then nothing; a handshake never finished) and WebSockets that stream but never read. The normal
//! listeners must see no disconnect, no seq gap and no chunk later than 50 ms beyond their own
//! baseline (the p99 lateness each saw before the attack).

mod common;

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::loadtest::client::ListenerSpec;
use common::loadtest::stats;
use common::{Launcher, ListenerPool, wait_for};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::{Bytes, Message};

const LISTENERS: usize = 100;
const BASELINE: Duration = Duration::from_secs(6);
const ATTACK: Duration = Duration::from_secs(12);
/// Pause between a flooder's frames (`AURALIS_FLOOD_EVERY_US`, default 1 ms: 1,000 frames/s per
/// flooder; 0 floods as fast as the test process can, which on a 2-core machine mostly measures
/// the attacker's own CPU use).
static FLOOD_EVERY: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
    Duration::from_micros(
        std::env::var("AURALIS_FLOOD_EVERY_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000),
    )
});

/// Counts what the attackers managed to do, for the printout.
#[derive(Debug, Default)]
struct Tally {
    connections: AtomicU64,
    frames: AtomicU64,
    closed_by_server: AtomicU64,
}

/// One attacker: connects, runs `attack` until `stop`, reconnects when the server closes it.
async fn attacker<F, Fut>(url: String, stop: Arc<AtomicBool>, tally: Arc<Tally>, attack: F)
where
    F: Fn(Sink, Arc<Tally>) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok((ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let (sink, mut stream) = ws.split();
        // Drain what the server says (errors, close), so only the attack itself is hostile.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let run = attack(sink, Arc::clone(&tally));
        // Until the server closes it (a flooder is closed after FLOOD_CLOSE_AFTER or
        // FRAME_FLOOD_CLOSE_AFTER) or the attack ends.
        let _ = tokio::time::timeout(ATTACK + Duration::from_secs(5), run).await;
        if reader.is_finished() {
            tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
        reader.abort();
    }
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// An attack: name, attackers, pause between frames, the frame to send.
type Attack = (&'static str, usize, Duration, fn(u64) -> Message);

async fn send_every(mut sink: Sink, tally: Arc<Tally>, every: Duration, make: fn(u64) -> Message) {
    let mut i = 0u64;
    loop {
        if sink.send(make(i)).await.is_err() {
            return;
        }
        tally.frames.fetch_add(1, Ordering::Relaxed);
        i += 1;
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        } else if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

fn garbage(i: u64) -> Message {
    let junk: String = (0..200)
        .map(|k| char::from_u32(((i * 7919 + k * 104_729) % 0xD000) as u32 + 32).unwrap_or('?'))
        .collect();
    Message::text(junk)
}

fn invalid_json(i: u64) -> Message {
    let samples = [
        r#"{"type":"control","action":"#,
        r#"{"type":"control","action":"start","params":{"station":"#,
        r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#,
        r#"{"type":"control","action":"start","params":{"resume_from":-1,"bpm":1e999}}"#,
        r#"{"type":"control","action":"start","params":{"station":"no-such-station-xx"}}"#,
        r#"{"type":"control","action":"set","params":{"format":"mp3"}}"#,
        "null",
        "\u{0}\u{1}\u{2}",
    ];
    Message::text(samples[(i as usize) % samples.len()])
}

fn binary(i: u64) -> Message {
    Message::Binary(Bytes::from(vec![(i % 251) as u8; 1024]))
}

fn json_ping(_: u64) -> Message {
    Message::text(r#"{"type":"ping"}"#)
}

fn ws_ping(_: u64) -> Message {
    Message::Ping(Bytes::from_static(b"flood"))
}

fn huge(i: u64) -> Message {
    let ten_mb = 10 * 1024 * 1024;
    if i % 2 == 0 {
        Message::text("x".repeat(ten_mb))
    } else {
        Message::Binary(Bytes::from(vec![0u8; ten_mb]))
    }
}

/// `AURALIS_HOSTILE_KINDS=garbage,huge,...` runs only those attacks (to find which one hurts);
/// default all: garbage, invalid_json, binary, json_flood, ping_flood, huge, never_read, half_open.
fn enabled(kind: &str) -> bool {
    std::env::var("AURALIS_HOSTILE_KINDS").map_or(true, |v| v.split(',').any(|k| k == kind))
}

#[test]
fn hostile_clients_do_not_disturb_normal_listeners() {
    let launcher = Launcher::up_with(&common::unique_namespace("hostile"), &[]);
    launcher.wait_ready(Duration::from_secs(60));
    let url = launcher.url();
    let streamd = launcher.role_pid("streamd").expect("streamd");
    let spec = ListenerSpec {
        record_arrivals: true,
        ..ListenerSpec::new(url.clone())
    };
    let pool = ListenerPool::uniform(&spec, LISTENERS, Duration::from_secs(2));
    let all = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        (common::status_listeners(launcher.port)? >= LISTENERS as u64).then_some(())
    });
    assert!(all.is_some(), "the listeners did not all start");
    // Past the pre-roll, then the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let baseline_from = Instant::now();
    std::thread::sleep(BASELINE);
    let attack_from = Instant::now();
    let foreign = common::ForeignCpu::start(&launcher);

    // The attack, on its own runtime and plain threads for the raw sockets.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kinds: [Attack; 6] = [
        ("garbage", 10, Duration::from_millis(50), garbage),
        ("invalid_json", 10, Duration::from_millis(50), invalid_json),
        ("binary", 10, Duration::from_millis(50), binary),
        ("json_flood", 3, *FLOOD_EVERY, json_ping),
        ("ping_flood", 3, *FLOOD_EVERY, ws_ping),
        ("huge", 2, Duration::from_secs(1), huge),
    ];
    for (name, n, every, make) in kinds {
        if !enabled(name) {
            continue;
        }
        for _ in 0..n {
            let (url, stop, tally) = (url.clone(), Arc::clone(&stop), Arc::clone(&tally));
            attackers.spawn(attacker(url, stop, tally, move |sink, tally| {
                send_every(sink, tally, every, make)
            }));
        }
    }
    // WebSockets that start streaming and never read another byte.
    let mut never_read = Vec::new();
    for _ in 0..if enabled("never_read") { 20 } else { 0 } {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", launcher.port))
            && let Ok((mut ws, _)) = tungstenite::client(url.as_str(), stream)
        {
            let _ = ws.send(tungstenite::Message::text(
                r#"{"type":"control","action":"start"}"#,
            ));
            never_read.push(ws);
        }
    }
    // Half-open: TCP connect then nothing, and a handshake left unfinished.
    let mut half_open = Vec::new();
    for i in 0..if enabled("half_open") { 200 } else { 0 } {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", launcher.port)) {
            if i % 4 == 0 {
                let _ =
                    s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n");
            }
            half_open.push(s);
        }
    }
    std::thread::sleep(ATTACK);
    let attack_to = Instant::now();
    let foreign_cores = foreign.cores();
    let status_during = common::api_status(launcher.port);
    stop.store(true, Ordering::Relaxed);
    attackers.shutdown_timeout(Duration::from_secs(2));
    drop(never_read);
    drop(half_open);
    std::thread::sleep(Duration::from_secs(2));
    let reports = pool.stop();

    assert_eq!(
        launcher.role_pid("streamd"),
        Some(streamd),
        "streamd died under attack"
    );
    assert!(
        status_during.is_some(),
        "/api/status did not answer during the attack"
    );
    let mut worst_excess: f64 = 0.0;
    let mut late = 0usize;
    let mut during = Vec::new();
    let mut baselines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(
            r.disconnects, 0,
            "listener {i} disconnected: {:?}",
            r.last_error
        );
        assert_eq!(r.gaps, 0, "listener {i}: seq gap (missing {})", r.missing);
        let mut base: Vec<f64> = r
            .arrivals
            .iter()
            .filter(|a| a.at >= baseline_from && a.at < attack_from)
            .map(|a| a.lateness_ms)
            .collect();
        assert!(
            base.len() > 30,
            "listener {i}: only {} baseline chunks",
            base.len()
        );
        let baseline = stats::quantile(stats::sort(&mut base), 0.99).unwrap_or(0.0);
        baselines.push(baseline);
        let attacked: Vec<f64> = r
            .arrivals
            .iter()
            .filter(|a| a.at >= attack_from && a.at < attack_to)
            .map(|a| a.lateness_ms)
            .collect();
        assert!(
            attacked.len() > 60,
            "listener {i}: only {} chunks during the attack",
            attacked.len()
        );
        for &l in &attacked {
            worst_excess = worst_excess.max(l - baseline);
            if l > baseline + 50.0 {
                late += 1;
            }
        }
        during.extend(attacked);
    }
    let summary = stats::LatencySummary::of(&mut during);
    baselines.sort_by(f64::total_cmp);
    println!(
        "hostile: {} attacker connections, {} hostile frames sent, {} closed by the server; \
         normal listeners: baseline p99 lateness {:.1} ms (median listener), during attack p50 {:.1} \
         p99 {:.1} max {:.1} ms, worst excess over baseline {:.1} ms, chunks > baseline + 50 ms: {late}; \
         other processes used {foreign_cores:.2} cores meanwhile",
        tally.connections.load(Ordering::Relaxed),
        tally.frames.load(Ordering::Relaxed),
        tally.closed_by_server.load(Ordering::Relaxed),
        baselines[baselines.len() / 2],
        summary.p50,
        summary.p99,
        summary.max,
        worst_excess,
    );
    // The issue's 50 ms bound is a property of streamd, not of a CI machine whose two cores are
    // shared with other builds: when other processes took more than half a core during the attack,
    // the figure is reported, not asserted (unless AURALIS_STRICT_TIMING=1); a gross delay still
    // fails.
    if foreign_cores > 0.5 && !common::strict_timing() {
        println!(
            "hostile: NOT asserting the 50 ms bound: other processes used {foreign_cores:.2} cores \
             during the attack ({late} late chunks, worst excess {worst_excess:.1} ms)"
        );
        assert!(
            worst_excess < 1000.0,
            "a chunk arrived {worst_excess:.0} ms later than baseline even allowing for load"
        );
        return;
    }
    assert_eq!(
        late, 0,
        "{late} chunk(s) reached normal listeners more than 50 ms later than their baseline p99 \
         (worst excess {worst_excess:.1} ms)"
    );
}

/// streamd closes a TCP connection that sends no request, or never finishes its request headers,
/// after `HEADER_READ_TIMEOUT` (10 s; `streamd/src/server.rs::serve_http`), so half-open sockets
/// cannot hold an fd each until RLIMIT_NOFILE (slowloris). Before the fix: 300 half-open sockets,
/// streamd fds 12 -> 312, none closed after 65 s.
#[test]
fn half_open_connections_are_closed_eventually() {
    let launcher = Launcher::up_with(&common::unique_namespace("halfopen"), &[]);
    launcher.wait_ready(Duration::from_secs(60));
    let streamd = launcher.role_pid("streamd").expect("streamd");
    let fds_before = common::loadtest::procstat::sample(streamd).unwrap().fds;
    let mut sockets = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", launcher.port)).unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        }
        sockets.push(s);
    }
    let held = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let fds = common::loadtest::procstat::sample(streamd)?.fds;
        (fds >= fds_before + 90).then_some(fds)
    });
    assert!(held.is_some(), "streamd did not accept the idle sockets");
    // Generous: browsers send their request at once; 45 s is far beyond any real client.
    let released = wait_for(Duration::from_secs(45), Duration::from_secs(1), || {
        let fds = common::loadtest::procstat::sample(streamd)?.fds;
        (fds < fds_before + 10).then_some(fds)
    });
    let fds_now = common::loadtest::procstat::sample(streamd).map_or(0, |s| s.fds);
    drop(sockets);
    assert!(
        released.is_some(),
        "streamd still holds {fds_now} fds (before: {fds_before}) 45 s after 100 sockets went idle"
    );
}
