//! Property-based fuzzing of segment validation: arbitrary bytes, mutated real headers and
//! truncated or extended files are written under `/dev/shm` (a unique namespace) and then attached
//! as a reader and opened as an owner, of every kind (audio ring, event queue, control block).
//! Attaching must return an error or a handle that works (reads return, never crash); it must
//! never panic, fault or hang. Each property prints how many inputs it ran.
//!
//! `PROPTEST_CASES=20000 cargo test -p shm-proto --release --test fuzz_header -- --nocapture`
//! for a long run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use shm_proto::{
    AudioReader, AudioWriter, CHUNK_SAMPLES, ControlBlock, EventConsumer, EventProducer, Namespace,
    ReadOutcome, StationParams,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Audio,
    Events,
    Control,
}

const KINDS: [Kind; 3] = [Kind::Audio, Kind::Events, Kind::Control];

fn ns(tag: &str) -> Namespace {
    Namespace::new(&format!("fz{}_{tag}", std::process::id())).unwrap()
}

fn path(ns: &Namespace, kind: Kind) -> String {
    let name = match kind {
        Kind::Audio => ns.audio_name(0),
        Kind::Events => ns.events_name(0),
        Kind::Control => ns.control_name(),
    };
    format!("/dev/shm{name}")
}

/// The bytes of a real, freshly created segment of each kind (small geometry), as templates to
/// mutate: most mutations then reach the checks after the magic.
fn templates() -> Vec<(Kind, Vec<u8>)> {
    let ns = ns("tpl");
    let audio = AudioWriter::create_or_adopt(&ns, 0, 8).unwrap();
    let events = EventProducer::create_or_adopt(&ns, 0, 8).unwrap();
    let control = ControlBlock::create_or_adopt(&ns, 2).unwrap();
    let out = KINDS
        .iter()
        .map(|&k| (k, std::fs::read(path(&ns, k)).unwrap()))
        .collect();
    drop((audio, events, control));
    ns.remove_all().unwrap();
    out
}

/// A mutation of a template.
#[derive(Clone, Debug)]
enum Edit {
    /// Overwrite one byte (offsets mostly inside the 256-byte header).
    Byte(prop::sample::Index, bool, u8),
    /// Overwrite an aligned u64 of the header with an interesting value.
    Word(u8, u64),
    /// Cut the file to this share of its length (never below the header).
    Truncate(f64),
    /// Append zeroes.
    Extend(u16),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        (0u32..64).prop_map(|s| 1u64 << s),
        any::<u64>(),
        any::<u32>().prop_map(u64::from),
    ];
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<bool>(), any::<u8>()).prop_map(|(i, h, b)| Edit::Byte(i, h, b)),
        4 => (0u8..32, interesting).prop_map(|(w, v)| Edit::Word(w, v)),
        1 => (0.0f64..1.0).prop_map(Edit::Truncate),
        1 => any::<u16>().prop_map(Edit::Extend),
    ]
}

fn apply(template: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = template.to_vec();
    for e in edits {
        match *e {
            Edit::Byte(i, in_header, b) => {
                let len = if in_header { 256 } else { bytes.len() };
                let at = i.index(len.min(bytes.len()));
                bytes[at] = b;
            }
            Edit::Word(w, v) => {
                let at = usize::from(w) * 8;
                bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            Edit::Truncate(share) => {
                let len = 256 + ((bytes.len() - 256) as f64 * share) as usize;
                bytes.truncate(len);
            }
            Edit::Extend(n) => bytes.extend(std::iter::repeat_n(0, usize::from(n))),
        }
    }
    // An all-zero magic makes an attacher wait a second for a creator that never comes (tested
    // once below, not thousands of times).
    if bytes[..8] == [0; 8] {
        bytes[0] = 1;
    }
    bytes
}

fn params() -> StationParams {
    StationParams {
        seed: 1,
        bpm: 70.0,
        intensity: 0.5,
        key: 0,
        mode: 0,
        preset: 0,
        _reserved: 0,
    }
}

/// Attaches as a reader and opens as an owner; uses whatever it gets. Returns how many opens
/// succeeded. Panics (the property fails) only if the library does.
fn exercise(ns: &Namespace, kind: Kind, bytes: &[u8]) -> u32 {
    let file = path(ns, kind);
    let mut ok = 0;
    // Reader side.
    std::fs::write(&file, bytes).unwrap();
    match kind {
        Kind::Audio => {
            if let Ok(mut reader) = AudioReader::attach(ns, 0) {
                ok += 1;
                let _ = (reader.latest_seq(), reader.oldest_seq(), reader.slots());
                let _ = reader.writer_health(Duration::from_millis(500));
                let mut out = Box::new([0i16; CHUNK_SAMPLES]);
                for _ in 0..4 {
                    if let ReadOutcome::NotYet = reader.read_next(&mut out) {
                        break;
                    }
                }
                reader.wait(Duration::from_millis(1));
            }
        }
        Kind::Events => {
            if let Ok(mut consumer) = EventConsumer::attach(ns, 0) {
                ok += 1;
                let _ = (consumer.len(), consumer.is_empty(), consumer.peek());
                for _ in 0..4 {
                    let _ = consumer.pop();
                }
                consumer.set_clock(1);
                let _ = consumer.producer_health(Duration::from_millis(500));
            }
        }
        Kind::Control => {
            if let Ok(control) = ControlBlock::attach(ns) {
                ok += 1;
                let _ = control.stations();
                let _ = (
                    control.find("focus"),
                    control.station(0),
                    control.capacity(),
                );
                let _ = control.owner_health(Duration::from_millis(500));
            }
        }
    }
    // Owner side: a restarted owner finding this file adopts it, replaces it, or refuses.
    std::fs::write(&file, bytes).unwrap();
    match kind {
        Kind::Audio => {
            if let Ok(mut writer) = AudioWriter::create_or_adopt(ns, 0, 8) {
                ok += 1;
                let _ = writer.reap_dead_readers();
                let _ = writer.readers();
                writer.publish(&[0; CHUNK_SAMPLES], params(), 1);
            }
        }
        Kind::Events => {
            if let Ok(producer) = EventProducer::create_or_adopt(ns, 0, 8) {
                ok += 1;
                let _ = (
                    producer.free(),
                    producer.consumer_clock(),
                    producer.progress(),
                );
            }
        }
        Kind::Control => {
            if let Ok(control) = ControlBlock::create_or_adopt(ns, 2) {
                ok += 1;
                let _ = control.stations();
                let _ = control.ensure_station("focus", params());
            }
        }
    }
    let _ = std::fs::remove_file(&file);
    ok
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Removes the namespace's files however the test ends.
struct Cleanup(Namespace);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

#[test]
fn mutated_headers_are_errors_never_crashes() {
    let templates = templates();
    let ns = ns("mut");
    let _cleanup = Cleanup(ns.clone());
    let runs = AtomicU64::new(0);
    let opened = AtomicU64::new(0);
    proptest!(config(600), |(which in 0..3usize, edits in prop::collection::vec(edit(), 1..6))| {
        let (kind, template) = &templates[which];
        let bytes = apply(template, &edits);
        runs.fetch_add(1, Ordering::Relaxed);
        opened.fetch_add(u64::from(exercise(&ns, *kind, &bytes)), Ordering::Relaxed);
    });
    println!(
        "fuzz_header mutated headers: {} executions ({} opens succeeded), 0 crashes",
        runs.load(Ordering::Relaxed),
        opened.load(Ordering::Relaxed)
    );
}

#[test]
fn random_bytes_are_errors_never_crashes() {
    let ns = ns("rnd");
    let _cleanup = Cleanup(ns.clone());
    let runs = AtomicU64::new(0);
    proptest!(config(300), |(which in 0..3usize, mut bytes in prop::collection::vec(any::<u8>(), 256..4096), magic in any::<bool>())| {
        if magic {
            bytes[..8].copy_from_slice(b"AURALSHM");
        }
        if bytes[..8] == [0; 8] {
            bytes[0] = 1;
        }
        runs.fetch_add(1, Ordering::Relaxed);
        exercise(&ns, KINDS[which], &bytes);
    });
    println!(
        "fuzz_header random bytes: {} executions, 0 crashes",
        runs.load(Ordering::Relaxed)
    );
}

#[test]
fn empty_short_and_unmagicked_files_are_errors() {
    let ns = ns("short");
    let _cleanup = Cleanup(ns.clone());
    // Each of these makes the attacher wait (bounded) for a creator that never finishes.
    for bytes in [vec![], vec![0u8; 255], vec![0u8; 4096]] {
        for kind in KINDS {
            std::fs::write(path(&ns, kind), &bytes).unwrap();
            let started = std::time::Instant::now();
            let failed = match kind {
                Kind::Audio => AudioReader::attach(&ns, 0).is_err(),
                Kind::Events => EventConsumer::attach(&ns, 0).is_err(),
                Kind::Control => ControlBlock::attach(&ns).is_err(),
            };
            assert!(failed, "{kind:?} attached to {} zero bytes", bytes.len());
            assert!(started.elapsed() < Duration::from_secs(5));
            let _ = std::fs::remove_file(path(&ns, kind));
        }
    }
}
