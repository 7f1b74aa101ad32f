//! The stop signal every daemon polls: SIGINT and SIGTERM set one flag, which the render, compose
//! and supervise loops check between ticks. A flag rather than a handler doing work, because a
//! signal handler may run in the middle of the audio path; the loops stop at a tick boundary.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A flag set by SIGINT or SIGTERM.
pub fn shutdown_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("installing the handler for signal {sig}: {e}"),
            )
        })?;
    }
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    #[test]
    fn sigterm_sets_the_flag() {
        let flag = super::shutdown_flag().unwrap();
        assert!(!flag.load(Ordering::SeqCst));
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(flag.load(Ordering::SeqCst));
    }
}
