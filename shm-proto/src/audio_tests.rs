use super::*;
use crate::test_util::{TestNs, poke, shm_path};

fn params(seed: u64) -> StationParams {
    StationParams {
        seed,
        bpm: 72.0,
        intensity: 0.5,
        key: 2,
        mode: 1,
        preset: 3,
        _reserved: 0,
    }
}

fn chunk(seq: u64) -> Box<[i16; CHUNK_SAMPLES]> {
    let mut c = Box::new([0i16; CHUNK_SAMPLES]);
    for (i, s) in c.iter_mut().enumerate() {
        *s = (seq as i64 * 7919 + i as i64 * 31) as i16;
    }
    c
}

#[test]
fn create_attach_read() {
    let ns = TestNs::new("a_basic");
    let mut w = AudioWriter::create_or_adopt(&ns, 0, 8).unwrap();
    assert_eq!((w.next_seq(), w.epoch(), w.slots()), (0, 1, 8));
    let mut r = AudioReader::attach(&ns, 0).unwrap();
    assert_eq!((r.cursor(), r.latest_seq(), r.slots()), (0, None, 8));
    let mut out = Box::new([0i16; CHUNK_SAMPLES]);
    assert_eq!(r.read_next(&mut out), ReadOutcome::NotYet);
    assert_eq!(w.publish(&chunk(0), params(9), 4), 0);
    let ReadOutcome::Chunk(meta) = r.read_next(&mut out) else {
        panic!("no chunk")
    };
    assert_eq!(
        (meta.seq, meta.params, meta.generation, meta.epoch),
        (0, params(9), 4, 1)
    );
    assert!(meta.publish_unix_ns > 0 && r.last_publish_mono_ns() > 0);
    assert_eq!(out, chunk(0));
    assert_eq!(r.cursor(), 1);
    assert_eq!(w.readers().len(), 1);
    assert_eq!(w.readers()[0].cursor, 1);
    assert_eq!(r.writer_health(Duration::from_secs(1)), WriterHealth::Alive);
    drop(r);
    assert!(w.readers().is_empty());
    // A second attach starts at the latest chunk.
    w.publish(&chunk(1), params(9), 4);
    let r2 = AudioReader::attach(&ns, 0).unwrap();
    assert_eq!(r2.cursor(), 1);
}

#[test]
fn wrap_and_lag() {
    let ns = TestNs::new("a_lag");
    let mut w = AudioWriter::create_or_adopt(&ns, 1, 8).unwrap();
    let mut r = AudioReader::attach(&ns, 1).unwrap();
    let mut out = Box::new([0i16; CHUNK_SAMPLES]);
    for seq in 0..50 {
        w.publish(&chunk(seq), params(1), 1);
        assert!(matches!(r.read_next(&mut out), ReadOutcome::Chunk(m) if m.seq == seq));
        assert_eq!(out, chunk(seq));
    }
    for seq in 50..70 {
        w.publish(&chunk(seq), params(1), 1);
    }
    assert_eq!(r.oldest_seq(), 63);
    assert_eq!(
        r.read_next(&mut out),
        ReadOutcome::Lagged {
            missed: 13,
            resume_at: 63
        }
    );
    for seq in 63..70 {
        assert!(matches!(r.read_next(&mut out), ReadOutcome::Chunk(m) if m.seq == seq));
    }
    assert_eq!(r.read_next(&mut out), ReadOutcome::NotYet);
    r.seek(3);
    assert!(matches!(
        r.read_next(&mut out),
        ReadOutcome::Lagged { resume_at: 63, .. }
    ));
}

#[test]
fn wait_times_out_and_wakes() {
    let ns = TestNs::new("a_wait");
    let mut w = AudioWriter::create_or_adopt(&ns, 0, 8).unwrap();
    let r = AudioReader::attach(&ns, 0).unwrap();
    let t = std::time::Instant::now();
    r.wait(Duration::from_millis(50));
    assert!(t.elapsed() >= Duration::from_millis(40));
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.publish(&chunk(0), params(1), 1);
        w
    });
    let t = std::time::Instant::now();
    r.wait(Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_eq!(r.latest_seq(), Some(0));
    handle.join().unwrap();
}

#[test]
fn adopt_continues_and_repairs_half_written_slot() {
    let ns = TestNs::new("a_adopt");
    let mut w = AudioWriter::create_or_adopt(&ns, 2, 8).unwrap();
    let mut r = AudioReader::attach(&ns, 2).unwrap();
    for seq in 0..3 {
        w.publish(&chunk(seq), params(1), 1);
    }
    // Simulate a crash mid-write of seq 3: the pause panics, leaving the stamp odd.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.publish_interrupted(&chunk(3), params(1), 1, &mut || panic!("killed"));
    }));
    assert!(crashed.is_err());
    drop(w);
    let mut out = Box::new([0i16; CHUNK_SAMPLES]);
    r.seek(3);
    assert_eq!(r.read_next(&mut out), ReadOutcome::NotYet);
    assert_eq!(r.writer_health(Duration::from_secs(1)), WriterHealth::Dead);
    let mut w = AudioWriter::create_or_adopt(&ns, 2, 8).unwrap();
    assert_eq!((w.next_seq(), w.epoch()), (3, 2));
    w.publish(&chunk(3), params(1), 1);
    assert!(matches!(r.read_next(&mut out), ReadOutcome::Chunk(m) if m.seq == 3 && m.epoch == 2));
    assert_eq!(out, chunk(3));
    assert!(!r.reattach_if_replaced().unwrap());
    // Different geometry, owner gone: replaced by a fresh segment.
    drop(w);
    let w = AudioWriter::create_or_adopt(&ns, 2, 16).unwrap();
    assert_eq!((w.next_seq(), w.epoch()), (0, 1));
    assert!(r.reattach_if_replaced().unwrap());
    assert_eq!((r.slots(), r.cursor()), (16, 0));
}

#[test]
fn live_owner_refuses_and_invalid_slots() {
    let ns = TestNs::new("a_live");
    let _w = AudioWriter::create_or_adopt(&ns, 0, 8).unwrap();
    // We are the owner ourselves, so a second create adopts (same process); a foreign live owner
    // is covered by the multi-process tests. Bad slot counts are refused up front.
    assert!(matches!(
        AudioWriter::create_or_adopt(&ns, 1, 6),
        Err(ShmError::Invalid { .. })
    ));
    assert!(matches!(
        AudioWriter::create_or_adopt(&ns, 1, 4),
        Err(ShmError::Invalid { .. })
    ));
}

#[test]
fn corrupt_headers_name_segment_and_values() {
    let ns = TestNs::new("a_corrupt");
    let name = ns.audio_name(0);
    let w = AudioWriter::create_or_adopt(&ns, 0, 8).unwrap();
    poke(&name, 0, &0xdead_beef_u64.to_le_bytes());
    let err = AudioReader::attach(&ns, 0).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ShmError::BadMagic {
                found: 0xdead_beef,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&name) && msg.contains("0x00000000deadbeef"),
        "{msg}"
    );
    poke(&name, 0, &crate::header::MAGIC.to_le_bytes());
    poke(&name, 8, &7u32.to_le_bytes());
    let msg = AudioReader::attach(&ns, 0).unwrap_err().to_string();
    assert!(
        msg.contains(&name) && msg.contains("version 7") && msg.contains("version 1"),
        "{msg}"
    );
    poke(&name, 8, &crate::layout::LAYOUT_VERSION.to_le_bytes());
    assert!(AudioReader::attach(&ns, 0).is_ok());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    let full = f.metadata().unwrap().len();
    f.set_len(full - 128).unwrap();
    let err = AudioReader::attach(&ns, 0).unwrap_err();
    assert!(
        matches!(
            err,
            ShmError::Geometry {
                what: "file size",
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&name)
            && msg.contains(&full.to_string())
            && msg.contains(&(full - 128).to_string())
    );
    // An owner replaces the broken segment (it is the owner itself, so not "live elsewhere").
    drop(w);
    let w = AudioWriter::create_or_adopt(&ns, 0, 8).unwrap();
    assert_eq!(w.epoch(), 1);
    assert!(AudioReader::attach(&ns, 0).is_ok());
}

#[test]
fn reader_table_full_and_reap() {
    let ns = TestNs::new("a_full");
    let w = AudioWriter::create_or_adopt(&ns, 0, 8).unwrap();
    let readers: Vec<_> = (0..READER_CAPACITY)
        .map(|_| AudioReader::attach(&ns, 0).unwrap())
        .collect();
    let err = AudioReader::attach(&ns, 0).unwrap_err();
    assert!(matches!(err, ShmError::Full { capacity: 64, .. }), "{err}");
    assert_eq!(w.reap_dead_readers(), 0);
    drop(readers);
    assert!(w.readers().is_empty());
    // A registration by a process that is gone (pid 0 never runs) is reaped.
    table::register(
        w.ring.readers(),
        ProcessId {
            pid: u32::MAX - 1,
            start_time: 5,
        },
        0,
    )
    .unwrap();
    assert_eq!(w.readers().len(), 1);
    assert_eq!(w.reap_dead_readers(), 1);
    assert!(w.readers().is_empty());
}
