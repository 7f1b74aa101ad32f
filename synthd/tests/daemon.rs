//! The daemon over real shared memory: a stand-in composer creates the control block and a station
//! with a few notes; synthd renders it, paced to the wall clock, into the audio ring; a reader sees
//! contiguous chunks carrying the notes; shutdown unlinks the ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shm_proto::{
    AudioReader, CHUNK_FRAMES, CHUNK_SAMPLES, ControlBlock, EventProducer, Namespace, NoteEvent,
    ReadOutcome, StationParams,
};
use synthd::{DaemonArgs, run_daemon};

fn params() -> StationParams {
    StationParams {
        seed: 7,
        bpm: 60.0,
        intensity: 0.5,
        key: 0,
        mode: 0,
        preset: 0,
        _reserved: 0,
    }
}

#[test]
fn renders_a_station_into_its_ring_in_real_time() {
    let name = format!("synthd_test_{}", std::process::id());
    let ns = Namespace::new(&name).unwrap();
    let control = ControlBlock::create_or_adopt(&ns, 4).unwrap();
    let index = control.ensure_station("focus", params()).unwrap();
    let mut producer = EventProducer::create_or_adopt(&ns, index, 256).unwrap();
    for (k, pitch) in [48u8, 55, 60, 64].into_iter().enumerate() {
        let ev = NoteEvent {
            at_frame: 2 * CHUNK_FRAMES as u64 + k as u64,
            duration_frames: 44_100,
            part: 0,
            instrument: 0,
            pitch,
            velocity: 90,
            bar: 0,
            _reserved: 0,
        };
        assert!(producer.push(&ev).unwrap());
    }
    producer.heartbeat();
    control.heartbeat();

    let shutdown = Arc::new(AtomicBool::new(false));
    let args = DaemonArgs {
        namespace: Some(name.clone()),
        unlink_on_exit: true,
        ..DaemonArgs::default()
    };
    let flag = Arc::clone(&shutdown);
    let daemon = std::thread::spawn(move || run_daemon(args, flag));

    // Wait for the ring, then read for about 1.5 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reader = loop {
        if let Ok(r) = AudioReader::attach(&ns, index) {
            break r;
        }
        assert!(Instant::now() < deadline, "synthd never created the ring");
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.seek(0);
    let start = Instant::now();
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let mut seqs = Vec::new();
    let mut loud = false;
    while start.elapsed() < Duration::from_millis(1500) {
        producer.heartbeat();
        control.heartbeat();
        match reader.read_next(&mut chunk) {
            ReadOutcome::Chunk(meta) => {
                seqs.push(meta.seq);
                loud |= chunk.iter().any(|&s| s.unsigned_abs() > 100);
            }
            ReadOutcome::NotYet => reader.wait(Duration::from_millis(50)),
            ReadOutcome::Lagged { .. } => panic!("reader lagged"),
        }
    }
    shutdown.store(true, Ordering::Relaxed);
    daemon.join().unwrap().unwrap();

    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous: {seqs:?}"
    );
    // 1.5 s of wall clock plus the 200 ms lead: about 17 chunks, never a burst far ahead.
    assert!(
        (12..=20).contains(&seqs.len()),
        "{} chunks in 1.5 s",
        seqs.len()
    );
    assert!(loud, "the pad chord should be audible");
    assert!(producer.consumer_clock() >= 12 * CHUNK_FRAMES as u64);
    drop(producer);
    drop(control);
    let _ = ns.remove_all();
}

#[test]
fn a_bad_soundfont_stops_the_daemon_at_start_with_its_path() {
    let dir = std::env::temp_dir().join(format!("synthd_sf2_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_sf2 = dir.join("not-a-soundfont.sf2");
    std::fs::write(&not_sf2, b"RIFF\x04\x00\x00\x00junk").unwrap();
    for path in [dir.join("missing.sf2"), not_sf2] {
        let args = DaemonArgs {
            namespace: Some(format!("synthd_sf2_{}", std::process::id())),
            soundfont: Some(path.clone()),
            ..DaemonArgs::default()
        };
        // It fails before waiting for composer's control block (which never comes here).
        let err = run_daemon(args, Arc::new(AtomicBool::new(false))).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
