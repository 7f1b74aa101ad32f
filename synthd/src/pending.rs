//! The bounded, preallocated queue of note events waiting for their start frame, kept sorted by
//! start frame (stable for equal frames). Events usually arrive in time order, so insertion is an
//! append; out-of-order ones shift a few entries. Nothing here allocates after `new`.

use shm_proto::NoteEvent;

/// Sorted fixed-capacity queue.
#[derive(Debug)]
pub struct PendingQueue {
    /// Storage; the live events are `buf[head..len]`.
    buf: Box<[NoteEvent]>,
    /// First live event.
    head: usize,
    /// One past the last live event.
    len: usize,
}

const EMPTY: NoteEvent = NoteEvent {
    at_frame: 0,
    duration_frames: 0,
    part: 0,
    instrument: 0,
    pitch: 0,
    velocity: 0,
    bar: 0,
    _reserved: 0,
};

impl PendingQueue {
    /// A queue holding up to `capacity` events.
    pub fn new(capacity: usize) -> Self {
        PendingQueue {
            buf: vec![EMPTY; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.len - self.head
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == self.head
    }

    /// Inserts in start order; `false` when full.
    pub fn push(&mut self, ev: &NoteEvent) -> bool {
        if self.len == self.buf.len() {
            if self.head == 0 {
                return false;
            }
            self.buf.copy_within(self.head..self.len, 0);
            self.len -= self.head;
            self.head = 0;
        }
        let live = &self.buf[self.head..self.len];
        let at = self.head + live.partition_point(|e| e.at_frame <= ev.at_frame);
        self.buf.copy_within(at..self.len, at + 1);
        self.buf[at] = *ev;
        self.len += 1;
        true
    }

    /// The earliest event.
    pub fn front(&self) -> Option<&NoteEvent> {
        if self.is_empty() {
            None
        } else {
            Some(&self.buf[self.head])
        }
    }

    /// Removes the earliest event.
    pub fn pop(&mut self) -> Option<NoteEvent> {
        let ev = *self.front()?;
        self.head += 1;
        if self.head == self.len {
            self.head = 0;
            self.len = 0;
        }
        Some(ev)
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: u64, pitch: u8) -> NoteEvent {
        NoteEvent {
            at_frame: at,
            pitch,
            ..EMPTY
        }
    }

    #[test]
    fn keeps_start_order_and_stability() {
        let mut q = PendingQueue::new(8);
        for (at, p) in [(10, 1), (5, 2), (10, 3), (0, 4), (7, 5)] {
            assert!(q.push(&ev(at, p)));
        }
        let order: Vec<u8> = std::iter::from_fn(|| q.pop()).map(|e| e.pitch).collect();
        assert_eq!(order, [4, 2, 5, 1, 3]);
    }

    #[test]
    fn refuses_when_full_and_reuses_space() {
        let mut q = PendingQueue::new(4);
        for i in 0..4 {
            assert!(q.push(&ev(i, 0)));
        }
        assert!(!q.push(&ev(9, 0)));
        q.pop();
        assert!(q.push(&ev(9, 0)));
        assert_eq!(q.len(), 4);
    }
}
