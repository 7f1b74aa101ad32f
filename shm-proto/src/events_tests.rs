use super::*;
use crate::test_util::TestNs;

fn ev(i: u64) -> NoteEvent {
    NoteEvent {
        at_frame: i * 100,
        duration_frames: 4410,
        part: (i % 5) as u8,
        instrument: 1,
        pitch: 60 + (i % 12) as u8,
        velocity: 90,
        bar: i as u32 / 4,
        _reserved: 0,
    }
}

#[test]
fn push_pop_full_wrap() {
    let ns = TestNs::new("e_basic");
    let mut p = EventProducer::create_or_adopt(&ns, 0, 8).unwrap();
    let mut c = EventConsumer::attach(&ns, 0).unwrap();
    assert_eq!((c.pop(), p.free(), c.is_empty()), (None, 8, true));
    let mut next_out = 0;
    for round in 0..5u64 {
        for i in 0..8 {
            assert!(p.push(&ev(round * 8 + i)).unwrap());
        }
        assert!(!p.push(&ev(999)).unwrap(), "full");
        assert_eq!((p.free(), c.len()), (0, 8));
        assert_eq!(c.peek(), Some(ev(next_out)));
        for _ in 0..8 {
            assert_eq!(c.pop(), Some(ev(next_out)));
            next_out += 1;
        }
        assert_eq!(c.pop(), None);
    }
    let bad = NoteEvent { part: 9, ..ev(0) };
    assert!(matches!(p.push(&bad), Err(ShmError::Invalid { .. })));
    c.set_clock(12345);
    assert_eq!(p.consumer_clock(), 12345);
    p.set_progress(7, 99_000);
    assert_eq!(p.progress(), (7, 99_000));
    assert_eq!(
        c.producer_health(Duration::from_secs(1)),
        WriterHealth::Alive
    );
}

#[test]
fn corrupt_record_is_skipped() {
    let ns = TestNs::new("e_corrupt");
    let mut p = EventProducer::create_or_adopt(&ns, 0, 4).unwrap();
    let mut c = EventConsumer::attach(&ns, 0).unwrap();
    for i in 0..3 {
        p.push(&ev(i)).unwrap();
    }
    // Corrupt the part byte of record 1.
    p.queue.record(1).0[1].store(0xff << 32, Ordering::Relaxed);
    assert_eq!(c.pop(), Some(ev(0)));
    assert_eq!(c.pop(), Some(ev(2)));
    assert_eq!(c.pop(), None);
    // Nonsense counters: everything dropped, no panic.
    p.queue.q().producer.tail.store(1 << 40, Ordering::Relaxed);
    assert_eq!(c.pop(), None);
}

#[test]
fn restarted_producer_keeps_queue_and_progress() {
    let ns = TestNs::new("e_adopt");
    let mut p = EventProducer::create_or_adopt(&ns, 1, 16).unwrap();
    p.push(&ev(1)).unwrap();
    p.set_progress(3, 300);
    drop(p);
    let p = EventProducer::create_or_adopt(&ns, 1, 16).unwrap();
    assert_eq!((p.progress(), p.free()), ((3, 300), 15));
    let mut c = EventConsumer::attach(&ns, 1).unwrap();
    assert_eq!(c.pop(), Some(ev(1)));
    p.unlink().unwrap();
    assert!(matches!(
        EventConsumer::attach(&ns, 1),
        Err(ShmError::NotFound { .. })
    ));
}
