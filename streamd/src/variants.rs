//! [`Variants`]: the few finished copies of one audio message that its live listeners share.
//!
//! An audio message is the same for every listener of a station except two fields, the buffer
//! tier and `buffer_depth`, and live listeners of a station mostly share one tier and one or two
//! depths. So instead of finishing (copying) the 17-23 KB message once per listener, the first
//! listener with given values finishes it and the next ones with the same values get a clone of
//! the same buffer (a reference count). Any combination beyond [`MAX_VARIANTS`] is finished for
//! its listener alone, which bounds the memory a chunk can hold.

use std::sync::Mutex;

use crate::protocol::Tier;

/// Finished copies one message keeps.
pub const MAX_VARIANTS: usize = 4;

/// Finished copies of one message by (tier, depth).
#[derive(Debug, Default)]
pub struct Variants<T> {
    kept: Mutex<Vec<(Tier, u32, T)>>,
}

impl<T: Clone> Variants<T> {
    /// The message for (`tier`, `depth`): a kept copy, or `finish()`'s, kept if there is room.
    pub fn get_or_finish(&self, tier: Tier, depth: u32, finish: impl FnOnce() -> T) -> T {
        // Nothing is left half-done under this lock; keep serving after a panic.
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((.., message)) = kept.iter().find(|(t, d, _)| *t == tier && *d == depth) {
            return message.clone();
        }
        let message = finish();
        if kept.len() < MAX_VARIANTS {
            kept.push((tier, depth, message.clone()));
        }
        message
    }

    /// Copies kept now.
    pub fn kept(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_values_share_one_copy_and_the_cache_is_bounded() {
        let v: Variants<std::sync::Arc<String>> = Variants::default();
        let mut made = 0;
        let mut make = |s: &str| {
            made += 1;
            std::sync::Arc::new(s.to_owned())
        };
        let a = v.get_or_finish(Tier::Normal, 5, || make("a"));
        let b = v.get_or_finish(Tier::Normal, 5, || make("b"));
        assert!(
            std::sync::Arc::ptr_eq(&a, &b),
            "the second listener shares the first copy"
        );
        let c = v.get_or_finish(Tier::Stable, 5, || make("c"));
        assert_eq!(*c, "c");
        for depth in 0..10 {
            v.get_or_finish(Tier::Minimal, depth, || make("d"));
        }
        assert_eq!(v.kept(), MAX_VARIANTS);
        assert_eq!(made, 12);
    }
}
