//! The daemon's shape: [`run`] serves a bound listener until the `shutdown` future completes, then
//! drains; [`main_blocking`] is what the binaries call (runtime, `SO_REUSEPORT` bind, signals).

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::config::{Args, CLOSE_GRACE, HEADER_READ_TIMEOUT, SOCKET_SEND_BUFFER};
use crate::directory::StationDirectory;
use crate::limits::{OriginPolicy, tcp_connection_cap};
use crate::operator::OperatorToken;
use crate::protocol::Tier;
use crate::shutdown::{self, Phase};
use crate::stats::GatewayStats;

/// What every request handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The stations served.
    pub(crate) directory: Arc<StationDirectory>,
    /// One permit per WebSocket connection (`WS_MAX_CONNECTIONS`); all permits back = all closed.
    pub(crate) connections: Arc<Semaphore>,
    /// The cap, for status and for waiting until every connection is gone.
    pub(crate) max_connections: u32,
    /// Shutdown phase, watched by every connection.
    pub(crate) phase: watch::Receiver<Phase>,
    /// For `uptime_s`.
    pub(crate) started: Instant,
    /// Serve the page from here instead of the embedded copy.
    pub(crate) client_dir: Option<PathBuf>,
    /// Numbers connections for logs and reconnect spreading.
    pub(crate) next_conn_id: Arc<AtomicU64>,
    /// Counters for status and metrics.
    pub(crate) stats: Arc<GatewayStats>,
    /// Bearer token of the operator API; `None` disables it.
    pub(crate) operator_token: Option<OperatorToken>,
    /// Which browser origins may open a WebSocket.
    pub(crate) origins: Arc<OriginPolicy>,
    /// Tier of a new connection (`BUFFER_INITIAL_TIER`).
    pub(crate) initial_tier: Tier,
    /// Opus and MP3 feeds, encoded once per station while listened to (`/stream/...`).
    pub(crate) compressed: Arc<crate::compressed::CompressedStreams>,
    /// `METRICS_ENABLED`: when false, `/metrics` answers 404.
    pub(crate) metrics_enabled: bool,
}

/// Serves `listener` until `shutdown` completes; then stops accepting, tells every client to
/// reconnect elsewhere (`draining`), keeps streaming for the drain period (or until they have all
/// left), closes them with 1001 and returns.
pub async fn run(
    listener: TcpListener,
    args: Args,
    ns: shm_proto::Namespace,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let directory = StationDirectory::new(ns);
    directory.set_max_stations(args.max_stations);
    {
        let directory = Arc::clone(&directory);
        tokio::task::spawn_blocking(move || directory.start(Duration::from_secs(1)))
            .await
            .context("station directory start panicked")?
            .context("cannot start the control-block poller")?;
    }
    let max_connections = args.max_connections.max(1);
    let connections = Arc::new(Semaphore::new(max_connections as usize));
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let stats = Arc::new(GatewayStats::default());
    let state = AppState {
        directory: Arc::clone(&directory),
        connections: Arc::clone(&connections),
        max_connections,
        phase: phase_rx,
        started: Instant::now(),
        client_dir: args.client_dir.clone(),
        next_conn_id: Arc::new(AtomicU64::new(1)),
        stats: Arc::clone(&stats),
        operator_token: args.operator_token.clone(),
        origins: Arc::new(OriginPolicy::from_list(args.allowed_origins.as_deref())),
        initial_tier: args.initial_tier,
        compressed: Arc::default(),
        metrics_enabled: args.metrics_enabled,
    };
    // Icecast relays: one more listener of each relayed station's Ogg/Opus feed.
    if let Some((icecast, relays)) = args.icecast.plan().map_err(anyhow::Error::msg)? {
        let (directory, feeds) = (Arc::clone(&directory), Arc::clone(&state.compressed));
        crate::icecast::spawn(&icecast, relays, directory, feeds, state.phase.clone());
    }
    let app = crate::http::router(state);
    tracing::info!(
        addr = %listener.local_addr()?,
        max_connections,
        operator_api = args.operator_token.is_some(),
        initial_tier = args.initial_tier.as_str(),
        "streamd listening"
    );
    let notifier = crate::metrics::notify_ready("listening");

    let (stop_accepting, stop_accepting_rx) = oneshot::channel::<()>();
    let tcp_slots = Arc::new(Semaphore::new(tcp_connection_cap(max_connections)));
    let mut server = tokio::spawn(serve_http(
        listener,
        app,
        tcp_slots,
        Arc::clone(&stats),
        async {
            let _ = stop_accepting_rx.await;
        },
    ));

    let failed = tokio::select! {
        () = shutdown => None,
        result = &mut server => Some(result),
    };
    if let Some(result) = failed {
        phase_tx.send_replace(Phase::Closing);
        stop_directory(&directory).await;
        result.context("server task panicked")?;
        anyhow::bail!("server stopped unexpectedly");
    }

    // Stop accepting; clients are told to go elsewhere and keep streaming meanwhile.
    notifier
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stopping("draining");
    let _ = stop_accepting.send(());
    let drain = args.drain();
    let active = max_connections as usize - connections.available_permits();
    if active > 0 && !drain.is_zero() {
        let closes_at = Instant::now() + drain;
        tracing::info!(active, ?drain, "draining connections");
        phase_tx.send_replace(Phase::Draining { closes_at });
        tokio::select! {
            () = tokio::time::sleep_until(closes_at.into()) => {}
            _ = connections.acquire_many(max_connections) => {
                tracing::info!("every client left during the drain");
            }
        }
    }
    phase_tx.send_replace(Phase::Closing);
    if tokio::time::timeout(CLOSE_GRACE, connections.acquire_many(max_connections))
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time; dropping them");
    }
    match tokio::time::timeout(CLOSE_GRACE, &mut server).await {
        Ok(Err(error)) => tracing::warn!(%error, "server task panicked"),
        Ok(Ok(())) => {}
        Err(_) => {
            tracing::warn!("HTTP connections still open after the grace period; aborting them");
            server.abort();
        }
    }
    stop_directory(&directory).await;
    tracing::info!("streamd stopped");
    Ok(())
}

/// The accept loop: serves each accepted TCP connection with HTTP/1 (WebSocket upgrades included)
/// until `stop` completes, then stops accepting, lets the connections still in HTTP finish their
/// request and returns when they have (upgraded WebSockets are the drain's business).
///
/// Two defences the WebSocket cap alone lacks: a connection must send complete request headers
/// within [`HEADER_READ_TIMEOUT`] (half-open sockets, slowloris), and at most `slots` TCP
/// connections are held at once, upgraded or not; one over is closed as soon as it is accepted.
async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    slots: Arc<Semaphore>,
    stats: Arc<GatewayStats>,
    stop: impl Future<Output = ()>,
) {
    // Each connection task holds a receiver: `closing.closed()` completes when they have all ended
    // (the drain pattern of mini-redis and `axum::serve`).
    let (closing, closing_rx) = watch::channel(());
    let mut stop = std::pin::pin!(stop);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let tcp = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    tcp
                }
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of fds or memory: retrying at once would spin.
                    tracing::warn!(%error, ?backoff, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TCP connection closed at once: at the connection cap");
            drop(tcp);
            continue;
        };
        configure_socket(&tcp);
        let io = TokioIo::new(CappedStream { tcp, _slot: slot });
        let service = TowerToHyperService::new(app.clone());
        let mut closing_rx = closing_rx.clone();
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = closing_rx.changed() => {
                    // Idle connections close now, a request in progress finishes first.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(closing_rx);
    closing.send_replace(());
    closing.closed().await;
}

/// Accept errors that concern one connection only: skip it.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// First and longest pause after an accept error that is not about one connection (EMFILE).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

fn configure_socket(tcp: &TcpStream) {
    // Audio messages are written whole: no reason to hold their tail back (Nagle).
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    // A bounded send buffer (instead of autotuning up to 4 MiB) caps kernel memory per listener
    // and makes a client that stops reading visible to the tier controller within about half a
    // second of audio.
    if let Err(error) = socket2::SockRef::from(tcp).set_send_buffer_size(SOCKET_SEND_BUFFER) {
        tracing::debug!(%error, "cannot set the socket send buffer size");
    }
}

/// An accepted socket with its slot in the TCP connection cap. hyper moves the socket into the
/// upgraded stream on a WebSocket upgrade, so the slot is held until the WebSocket is dropped.
#[derive(Debug)]
struct CappedStream {
    tcp: TcpStream,
    /// Given back to the cap when the socket is dropped.
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

async fn stop_directory(directory: &Arc<StationDirectory>) {
    let directory = Arc::clone(directory);
    if tokio::task::spawn_blocking(move || directory.stop_and_join())
        .await
        .is_err()
    {
        tracing::error!("stopping the station threads panicked");
    }
}

/// Binds `host:port` with `SO_REUSEADDR` and `SO_REUSEPORT`, so a new instance can listen beside a
/// draining one.
pub fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to no address"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuseport(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot bind {addr}"))?;
    Ok(socket.listen(1024)?)
}

/// Runs streamd to completion on its own multi-thread runtime, stopping on SIGINT or SIGTERM.
/// Does not initialise logging (the caller owns the subscriber).
pub fn main_blocking(args: Args) -> anyhow::Result<()> {
    let ns = shm_proto::Namespace::from_env().context("invalid AURALIS_SHM_NAMESPACE")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("streamd")
        .build()
        .context("cannot build the tokio runtime")?;
    runtime.block_on(async {
        let signal = shutdown::signal();
        let listener = bind(&args.host, args.port)?;
        run(listener, args, ns, signal).await
    })
}
