//! Graceful shutdown: the process signal, and the phases every connection follows through a
//! `watch` channel (running, draining with a deadline, closing).

use std::time::Instant;

/// Where the gateway is in its life; every connection watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Serving normally.
    Running,
    /// Not accepting; clients are told to reconnect elsewhere and keep streaming until `closes_at`.
    Draining {
        /// When the connections are closed.
        closes_at: Instant,
    },
    /// Close every connection now (code 1001).
    Closing,
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed by this call (inside
/// a tokio runtime), not when the future is first polled, so a signal that arrives during startup
/// is not lost to the default disposition (which would kill the process without draining).
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(i), Ok(t)) => (i, t),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot install the SIGINT/SIGTERM handlers; stopping only on Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    }
}
