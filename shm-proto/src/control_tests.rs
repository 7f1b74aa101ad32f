use super::*;
use crate::test_util::TestNs;

fn params(seed: u64) -> StationParams {
    StationParams {
        seed,
        bpm: 60.0,
        intensity: 0.25,
        key: 9,
        mode: 2,
        preset: 1,
        _reserved: 0,
    }
}

#[test]
fn stations_lifecycle() {
    let ns = TestNs::new("c_life");
    let owner = ControlBlock::create_or_adopt(&ns, 4).unwrap();
    let other = ControlBlock::attach(&ns).unwrap();
    assert_eq!(other.capacity(), 4);
    let focus = owner.ensure_station("focus", params(1)).unwrap();
    assert_eq!(other.ensure_station("focus", params(2)).unwrap(), focus);
    let s = other.station(focus).unwrap();
    assert_eq!(
        (s.name_str(), s.params, s.generation),
        ("focus", params(1), 1)
    );
    assert!(s.last_demand_ns > 0);
    assert_eq!(other.set_params(focus, params(3)).unwrap(), 2);
    assert_eq!(owner.find("focus").unwrap().params, params(3));
    let sleep = owner.ensure_station("sleep", params(4)).unwrap();
    assert_ne!(sleep, focus);
    assert_eq!(owner.stations().len(), 2);
    owner.remove_station(focus).unwrap();
    assert!(owner.station(focus).is_none() && owner.find("focus").is_none());
    assert!(matches!(
        owner.set_params(focus, params(1)),
        Err(ShmError::Invalid { .. })
    ));
    assert_eq!(
        owner.owner_health(Duration::from_secs(1)),
        WriterHealth::Alive
    );
}

#[test]
fn validation_and_full() {
    let ns = TestNs::new("c_full");
    let cb = ControlBlock::create_or_adopt(&ns, 2).unwrap();
    assert!(matches!(
        cb.ensure_station("", params(0)),
        Err(ShmError::Invalid { .. })
    ));
    assert!(matches!(
        cb.ensure_station(&"n".repeat(32), params(0)),
        Err(ShmError::Invalid { .. })
    ));
    cb.ensure_station(&"n".repeat(31), params(0)).unwrap();
    cb.ensure_station("b", params(0)).unwrap();
    assert!(matches!(
        cb.ensure_station("c", params(0)),
        Err(ShmError::Full { capacity: 2, .. })
    ));
    assert!(matches!(
        cb.set_params(2, params(0)),
        Err(ShmError::Invalid { .. })
    ));
    assert!(cb.station(99).is_none());
    cb.touch_demand(99);
    assert!(matches!(
        ControlBlock::create_or_adopt(&ns, 0),
        Err(ShmError::Invalid { .. })
    ));
}

#[test]
fn concurrent_writers_lose_no_update() {
    let ns = TestNs::new("c_multi");
    let cb = std::sync::Arc::new(ControlBlock::create_or_adopt(&ns, 8).unwrap());
    let idx = cb.ensure_station("busy", params(0)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cb = cb.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    cb.set_params(idx, params(t * 1000 + i)).unwrap();
                    if let Some(s) = cb.station(idx) {
                        // A snapshot is never torn: these fields are written together.
                        assert_eq!((s.params.bpm, s.params.key), (60.0, 9));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cb.station(idx).unwrap().generation, 1 + 4 * 500);
}

#[test]
fn stale_claim_is_taken_over() {
    let ns = TestNs::new("c_stale");
    let cb = ControlBlock::create_or_adopt(&ns, 2).unwrap();
    let idx = cb.ensure_station("x", params(0)).unwrap();
    let data = &cb.entry(idx).unwrap().data;
    // A writer that died mid-update: claim held by a pid that does not run, seq odd.
    data.claim
        .store((u32::MAX as u64 - 1) << 32 | 5, Ordering::Relaxed);
    data.seq.fetch_add(1, Ordering::Relaxed);
    assert!(
        cb.station(idx).is_none(),
        "readers give up on an entry being written"
    );
    let t = std::time::Instant::now();
    assert_eq!(cb.set_params(idx, params(7)).unwrap(), 2);
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(cb.station(idx).unwrap().params, params(7));
    // A live claimant (ourselves, as if stuck) is taken over after the timeout.
    data.claim
        .store(claim_word(std::process::id()), Ordering::Relaxed);
    let t = std::time::Instant::now();
    assert_eq!(cb.set_params(idx, params(8)).unwrap(), 3);
    assert!(t.elapsed() >= CLAIM_TIMEOUT - Duration::from_millis(5));
}

#[test]
fn adopt_keeps_stations() {
    let ns = TestNs::new("c_adopt");
    let cb = ControlBlock::create_or_adopt(&ns, 4).unwrap();
    let idx = cb.ensure_station("keep", params(5)).unwrap();
    drop(cb);
    let cb = ControlBlock::create_or_adopt(&ns, 4).unwrap();
    assert_eq!(cb.epoch(), 2);
    assert_eq!(cb.find("keep").unwrap().index, idx);
    drop(cb);
    let cb = ControlBlock::create_or_adopt(&ns, 8).unwrap();
    assert_eq!((cb.epoch(), cb.stations().len()), (1, 0));
}
