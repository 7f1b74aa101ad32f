//! The seqlock of one audio-ring slot, free of shared memory so loom can model-check it.
//!
//! For chunk `n` the slot's stamp is `2n+1` while the writer fills it and `2n+2` once it is ready.
//! A reader wanting chunk `n` reads the stamp (Acquire), copies, fences (Acquire) and re-reads the
//! stamp: equal to `2n+2` both times means the copy is whole. The payload is stored as atomics
//! accessed with Relaxed loads and stores (plain moves on every target we run on), so a reader
//! racing the writer is a *detected* race, never undefined behaviour.

use crate::mapping::ShmSafe;
use crate::sync::{AtomicU64, Ordering, fence};

/// What a reader found in the slot for the chunk it wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotRead {
    /// The copy is whole.
    Ready,
    /// The chunk is not written yet, or is being written.
    NotYet,
    /// A later chunk, `by_seq`, has (started to) overwrite(n) it.
    Overwritten {
        /// The chunk now in (or entering) the slot.
        by_seq: u64,
    },
}

/// One slot: a stamp and `N` payload words.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct SeqSlot<const N: usize> {
    /// Seqlock stamp, see the module docs. 0 = never written.
    stamp: AtomicU64,
    /// Payload, written only between the odd and the even stamp.
    words: [AtomicU64; N],
}

// SAFETY: repr(C), only atomics (valid for all zeroes), alignment 128.
unsafe impl<const N: usize> ShmSafe for SeqSlot<N> {}

/// Stamp while chunk `seq` is being written.
pub(crate) const fn writing(seq: u64) -> u64 {
    2 * seq + 1
}

/// Stamp once chunk `seq` is ready.
pub(crate) const fn ready(seq: u64) -> u64 {
    2 * seq + 2
}

fn classify(stamp: u64, seq: u64) -> SlotRead {
    if stamp <= writing(seq) {
        SlotRead::NotYet
    } else {
        SlotRead::Overwritten {
            by_seq: (stamp - 1) / 2,
        }
    }
}

impl<const N: usize> SeqSlot<N> {
    /// An empty slot (loom tests; in shared memory slots start zeroed).
    #[cfg(any(test, loom))]
    pub(crate) fn new() -> Self {
        Self {
            stamp: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Writes chunk `seq`: odd stamp, `fill` stores the words (Relaxed), even stamp. Single
    /// writer per slot. `fill` must not panic (a panic leaves the slot "being written", which
    /// readers see as not-yet and the next publish of `seq` repairs).
    pub(crate) fn write(&self, seq: u64, fill: impl FnOnce(&[AtomicU64; N])) {
        // SYNC POINT: pairs with the reader's re-load after its Acquire fence: a reader that sees
        // any word stored below also sees this odd stamp (or later) and discards its copy.
        self.stamp.store(writing(seq), Ordering::Relaxed);
        fence(Ordering::Release);
        fill(&self.words);
        // SYNC POINT: Release publishes the words to the reader's Acquire load of the stamp.
        self.stamp.store(ready(seq), Ordering::Release);
    }

    /// Reads chunk `seq` through `copy` (which loads the words Relaxed into its own buffer). The
    /// copy may be garbage unless [`SlotRead::Ready`] is returned.
    pub(crate) fn read(&self, seq: u64, copy: impl FnOnce(&[AtomicU64; N])) -> SlotRead {
        // SYNC POINT: pairs with the Release store of the even stamp in `write`.
        let before = self.stamp.load(Ordering::Acquire);
        if before != ready(seq) {
            return classify(before, seq);
        }
        copy(&self.words);
        // SYNC POINT: pairs with the Release fence in `write`: orders the copy before the re-load.
        fence(Ordering::Acquire);
        let after = self.stamp.load(Ordering::Relaxed);
        if after == before {
            SlotRead::Ready
        } else {
            classify(after, seq)
        }
    }

    /// Current stamp (writer restart: find the last chunk that was completed).
    pub(crate) fn stamp(&self) -> u64 {
        // SYNC POINT: pairs with the Release store in `write` of the previous (dead) writer.
        self.stamp.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let s = SeqSlot::<4>::new();
        let mut buf = [0u64; 4];
        let copy = |b: &mut [u64; 4], w: &[AtomicU64; 4]| {
            for (d, x) in b.iter_mut().zip(w) {
                *d = x.load(Ordering::Relaxed);
            }
        };
        assert_eq!(s.read(0, |w| copy(&mut buf, w)), SlotRead::NotYet);
        s.write(0, |w| w.iter().for_each(|x| x.store(7, Ordering::Relaxed)));
        assert_eq!(s.read(0, |w| copy(&mut buf, w)), SlotRead::Ready);
        assert_eq!(buf, [7; 4]);
        assert_eq!(s.read(8, |w| copy(&mut buf, w)), SlotRead::NotYet);
        s.write(8, |w| w.iter().for_each(|x| x.store(9, Ordering::Relaxed)));
        assert_eq!(
            s.read(0, |w| copy(&mut buf, w)),
            SlotRead::Overwritten { by_seq: 8 }
        );
        // A write of chunk 16 that never finished: chunk 8 is gone, 16 is not ready.
        s.stamp.store(writing(16), Ordering::Relaxed);
        assert_eq!(
            s.read(8, |w| copy(&mut buf, w)),
            SlotRead::Overwritten { by_seq: 16 }
        );
        assert_eq!(s.read(16, |w| copy(&mut buf, w)), SlotRead::NotYet);
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// One writer publishes chunks 0..3 into a 2-slot ring, each word of chunk `n` holding `n+1`;
    /// one reader follows. The reader must only ever see whole chunks.
    #[test]
    fn loom_reader_never_sees_torn_chunk() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let ring: Arc<[SeqSlot<2>; 2]> = Arc::new([SeqSlot::new(), SeqSlot::new()]);
            let w = ring.clone();
            let writer = loom::thread::spawn(move || {
                for seq in 0..3u64 {
                    w[(seq % 2) as usize].write(seq, |words| {
                        for x in words {
                            x.store(seq + 1, Ordering::Relaxed);
                        }
                    });
                }
            });
            let mut cursor = 0u64;
            for _ in 0..3 {
                let mut buf = [0u64; 2];
                let got = ring[(cursor % 2) as usize].read(cursor, |words| {
                    for (d, x) in buf.iter_mut().zip(words) {
                        *d = x.load(Ordering::Relaxed);
                    }
                });
                match got {
                    SlotRead::Ready => {
                        assert_eq!(buf, [cursor + 1; 2], "torn or wrong chunk {cursor}");
                        cursor += 1;
                    }
                    SlotRead::NotYet => loom::thread::yield_now(),
                    SlotRead::Overwritten { by_seq } => {
                        assert!(by_seq >= cursor + 2);
                        cursor = by_seq - 1;
                    }
                }
            }
            writer.join().unwrap();
        });
    }
}
