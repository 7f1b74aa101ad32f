//! Multi-process tests: real writer and reader processes (`shm-probe`), real SIGKILLs.
//! Every child is killed and reaped by its guard; every test uses its own namespace.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use shm_proto::{
    AudioReader, AudioWriter, CHUNK_SAMPLES, Namespace, ReadOutcome, ShmError, WriterHealth,
};

const PROBE: &str = env!("CARGO_BIN_EXE_shm-probe");

/// A namespace unique to this process and test, cleaned up on drop.
struct TestNs(Namespace);

impl TestNs {
    fn new(test: &str) -> Self {
        let ns = Namespace::new(&format!("m{}_{test}", std::process::id())).unwrap();
        let _ = ns.remove_all();
        Self(ns)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

/// A probe process: killed (SIGKILL) and reaped on drop; its stdout lines arrive on a channel.
struct Probe {
    child: Child,
    lines: Receiver<String>,
}

impl Probe {
    fn spawn(ns: &TestNs, args: &[&str]) -> Self {
        let mut cmd = Command::new(PROBE);
        cmd.args(&args[..1])
            .args(["--ns", ns.0.as_str()])
            .args(&args[1..]);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line starting with `prefix`, within `timeout`.
    fn expect(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no {prefix:?} line from probe within {timeout:?}: {e}"),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `key=value` from a probe line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

fn pattern_ok(seq: u64, out: &[i16; CHUNK_SAMPLES]) -> bool {
    out.iter()
        .enumerate()
        .all(|(i, &s)| s == (seq.wrapping_mul(7919).wrapping_add(i as u64 * 31)) as i16)
}

const T: Duration = Duration::from_secs(15);

#[test]
fn reader_process_sees_every_chunk_in_order() {
    let ns = TestNs::new("order");
    let writer = Probe::spawn(
        &ns,
        &[
            "writer",
            "--count",
            "400",
            "--interval-ms",
            "5",
            "--hold-ms",
            "3000",
        ],
    );
    writer.expect("ready", T);
    let reader = Probe::spawn(&ns, &["reader", "--count", "150", "--timeout-ms", "10000"]);
    let result = reader.expect("result", T);
    assert_eq!(field(&result, "chunks"), "150", "{result}");
    assert_eq!(field(&result, "gaps"), "0", "{result}");
    assert_eq!(field(&result, "lagged"), "0", "{result}");
    assert_eq!(field(&result, "bad"), "0", "{result}");
    let first: u64 = field(&result, "first").parse().unwrap();
    assert_eq!(field(&result, "last").parse::<u64>().unwrap(), first + 149);
}

#[test]
fn writer_killed_mid_write_is_dead_and_never_tears() {
    let ns = TestNs::new("kill");
    let mut writer = Probe::spawn(
        &ns,
        &[
            "writer",
            "--count",
            "100",
            "--interval-ms",
            "2",
            "--stall-at",
            "20",
        ],
    );
    writer.expect("ready", T);
    let mut r = AudioReader::attach(&ns.0, 0).unwrap();
    r.seek(0);
    let mut out = Box::new([0i16; CHUNK_SAMPLES]);
    let mut next = 0;
    let deadline = Instant::now() + T;
    let mut stalled = false;
    while Instant::now() < deadline && !(stalled && next == 20) {
        r.wait(Duration::from_millis(20));
        stalled = stalled
            || writer
                .lines
                .try_recv()
                .is_ok_and(|l| l.starts_with("stalled 20"));
        while let ReadOutcome::Chunk(m) = r.read_next(&mut out) {
            assert_eq!(m.seq, next);
            assert!(pattern_ok(m.seq, &out), "torn chunk {}", m.seq);
            next += 1;
        }
    }
    assert!(stalled && next == 20, "stalled={stalled} next={next}");
    // The slot of chunk 20 is half written: never handed out.
    assert_eq!(r.read_next(&mut out), ReadOutcome::NotYet);
    assert_eq!(r.writer_health(Duration::from_secs(5)), WriterHealth::Alive);
    writer.kill();
    assert_eq!(r.writer_health(Duration::from_secs(5)), WriterHealth::Dead);
    for _ in 0..100 {
        assert_eq!(r.read_next(&mut out), ReadOutcome::NotYet);
    }
    // A restarted writer (another process) adopts: same segment, epoch 2, rewrites chunk 20.
    let writer2 = Probe::spawn(
        &ns,
        &[
            "writer",
            "--count",
            "5",
            "--interval-ms",
            "1",
            "--hold-ms",
            "3000",
        ],
    );
    let ready = writer2.expect("ready", T);
    assert_eq!(
        (field(&ready, "epoch"), field(&ready, "next_seq")),
        ("2", "20")
    );
    writer2.expect("done", T);
    for seq in 20..25 {
        let ReadOutcome::Chunk(m) = r.read_next(&mut out) else {
            panic!("chunk {seq} missing")
        };
        assert_eq!((m.seq, m.epoch), (seq, 2));
        assert!(pattern_ok(seq, &out));
    }
    assert!(!r.reattach_if_replaced().unwrap());
    assert_eq!(r.writer_health(Duration::from_secs(5)), WriterHealth::Alive);
    // While writer2 lives, nobody else may own the ring.
    let err = AudioWriter::create_or_adopt(&ns.0, 0, 8).unwrap_err();
    assert!(
        matches!(err, ShmError::OwnedByLiveProcess { pid, .. } if pid == writer2.pid()),
        "{err}"
    );
}

#[test]
fn restarted_writer_is_picked_up_by_running_reader() {
    let ns = TestNs::new("restart");
    let mut w1 = Probe::spawn(
        &ns,
        &[
            "writer",
            "--count",
            "10",
            "--interval-ms",
            "20",
            "--hold-ms",
            "10000",
        ],
    );
    w1.expect("ready", T);
    let reader = Probe::spawn(&ns, &["reader", "--count", "30", "--timeout-ms", "12000"]);
    reader.expect("attached", T);
    w1.expect("done", T);
    w1.kill();
    let w2 = Probe::spawn(
        &ns,
        &[
            "writer",
            "--count",
            "60",
            "--interval-ms",
            "10",
            "--hold-ms",
            "3000",
        ],
    );
    let ready = w2.expect("ready", T);
    assert_eq!(
        (field(&ready, "epoch"), field(&ready, "next_seq")),
        ("2", "10")
    );
    let result = reader.expect("result", T);
    assert_eq!(field(&result, "chunks"), "30", "{result}");
    assert_eq!(field(&result, "gaps"), "0", "{result}");
    assert_eq!(field(&result, "bad"), "0", "{result}");
    assert_eq!(field(&result, "epochs"), "1,2", "{result}");
}

#[test]
fn corrupt_segments_are_reported_with_name_and_values() {
    use std::io::{Seek, SeekFrom, Write};
    let ns = TestNs::new("corrupt");
    let name = ns.0.audio_name(0);
    let writer = Probe::spawn(
        &ns,
        &[
            "writer",
            "--count",
            "1",
            "--interval-ms",
            "1",
            "--hold-ms",
            "10000",
        ],
    );
    writer.expect("done", T);
    let path = format!("/dev/shm{name}");
    let poke = |offset: u64, bytes: &[u8]| {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(bytes).unwrap();
    };
    let attach = || Probe::spawn(&ns, &["attach"]).expect("", T);
    assert!(attach().starts_with("ok"));

    poke(0, b"NOTOURS!");
    let line = attach();
    let found = format!("{:#018x}", u64::from_le_bytes(*b"NOTOURS!"));
    let expected = format!("{:#018x}", shm_proto::header::MAGIC);
    assert!(
        line.contains(&name) && line.contains(&found) && line.contains(&expected),
        "{line}"
    );
    poke(0, &shm_proto::header::MAGIC.to_le_bytes());

    poke(8, &99u32.to_le_bytes());
    let line = attach();
    assert!(
        line.contains(&name) && line.contains("version 99") && line.contains("version 1"),
        "{line}"
    );
    poke(8, &shm_proto::LAYOUT_VERSION.to_le_bytes());
    assert!(attach().starts_with("ok"));

    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len + 4096).unwrap();
    let line = attach();
    assert!(line.contains(&name) && line.contains("file size"), "{line}");
    assert!(
        line.contains(&len.to_string()) && line.contains(&(len + 4096).to_string()),
        "{line}"
    );
}

#[test]
fn dead_reader_is_reaped_and_stale_segments_removed() {
    let ns = TestNs::new("reap");
    let mut w = AudioWriter::create_or_adopt(&ns.0, 0, 8).unwrap();
    let params = shm_proto::StationParams {
        seed: 0,
        bpm: 60.0,
        intensity: 0.0,
        key: 0,
        mode: 0,
        preset: 0,
        _reserved: 0,
    };
    w.publish(&[0; CHUNK_SAMPLES], params, 1);
    let mut reader = Probe::spawn(
        &ns,
        &["reader", "--count", "1000000", "--timeout-ms", "10000"],
    );
    reader.expect("attached", T);
    let pid = reader.pid();
    assert!(w.readers().iter().any(|r| r.pid == pid));
    assert_eq!(w.reap_dead_readers(), 0);
    reader.kill();
    assert_eq!(w.reap_dead_readers(), 1);
    assert!(w.readers().is_empty());

    // A segment whose writer process was killed is stale; ours (live owner) is kept.
    let mut dead = Probe::spawn(
        &ns,
        &[
            "writer",
            "--station",
            "1",
            "--count",
            "1",
            "--hold-ms",
            "10000",
        ],
    );
    dead.expect("done", T);
    dead.kill();
    let removed = ns.0.remove_stale().unwrap();
    assert_eq!(removed, vec![ns.0.audio_name(1)]);
    assert_eq!(ns.0.existing_segments(), vec![ns.0.audio_name(0)]);
}
