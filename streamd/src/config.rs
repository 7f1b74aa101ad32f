//! Command-line flags and environment of the gateway, and the fixed tuning constants.

use std::path::PathBuf;
use std::time::Duration;

use crate::operator::OperatorToken;
use crate::protocol::Tier;

/// streamd's settings. Every flag can also come from the environment, so the same binary runs
/// under systemd (environment file) and from a shell; the `auralis` launcher flattens this struct.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "AURALIS_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// TCP port to listen on (shared with other streamd instances through SO_REUSEPORT).
    #[arg(long, env = "AURALIS_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Most simultaneous WebSocket connections; one more is answered HTTP 503.
    #[arg(long, env = "WS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: u32,

    /// Seconds a shutting-down gateway keeps streaming to its clients after telling them to
    /// reconnect elsewhere, before it closes them with code 1001.
    #[arg(long, env = "STREAMD_DRAIN_SECS", default_value_t = 5.0)]
    pub drain_secs: f64,

    /// Serve the player from this folder instead of the page built into the binary (handy while
    /// working on the page: it is re-read on every request).
    #[arg(long, env = "STREAMD_CLIENT_DIR")]
    pub client_dir: Option<PathBuf>,

    /// Most stations that listeners' parameters may occupy (a lower cap than the control block's
    /// capacity; the default is the capacity). A request for a new station over it gets
    /// `station_limit`.
    #[arg(long, env = "AURALIS_MAX_STATIONS")]
    pub max_stations: Option<u32>,

    /// Bearer token of the operator API (`POST /api/stations/{id}/params`). Without one the API
    /// answers 403. Never logged.
    #[arg(long, env = "AURALIS_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<OperatorToken>,

    /// Origins allowed to open a WebSocket, comma-separated (`*` allows any). Default: requests
    /// without an Origin, from the same host, or from localhost.
    #[arg(long, env = "AURALIS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,

    /// Buffer tier a new connection starts in: minimal, normal, stable or defensive.
    #[arg(long, env = "BUFFER_INITIAL_TIER", default_value = "normal", value_parser = parse_tier)]
    pub initial_tier: Tier,

    /// Serve `/metrics` (`false` answers it 404, like composer and synthd without an endpoint).
    #[arg(long, env = "METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,

    /// Relay of Ogg/Opus feeds to an Icecast server (`--icecast`, `--icecast-mount`).
    #[command(flatten)]
    pub icecast: crate::icecast::IcecastArgs,
}

fn parse_tier(text: &str) -> Result<Tier, String> {
    Tier::from_name(text).ok_or_else(|| {
        format!("unknown tier {text:?} (expected minimal, normal, stable or defensive)")
    })
}

impl Default for Args {
    /// The same values as the flags' defaults, without reading the environment (for tests and
    /// embedders).
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8000,
            max_connections: 10_000,
            drain_secs: 5.0,
            client_dir: None,
            max_stations: None,
            operator_token: None,
            allowed_origins: None,
            initial_tier: Tier::Normal,
            metrics_enabled: true,
            icecast: crate::icecast::IcecastArgs::default(),
        }
    }
}

impl Args {
    /// The drain period, clamped to something sane (negative or NaN means none).
    pub fn drain(&self) -> Duration {
        if self.drain_secs.is_finite() && self.drain_secs > 0.0 {
            Duration::from_secs_f64(self.drain_secs.min(3600.0))
        } else {
            Duration::ZERO
        }
    }
}

/// How often the control block is polled for new stations (and demand is reported).
pub const CONTROL_POLL: Duration = Duration::from_millis(500);

/// A writer whose heartbeat is older than this is reported as stalled.
pub const STALL_AFTER: Duration = Duration::from_millis(500);

/// Longest a ring reader sleeps in one `wait`, so it notices health changes and shutdown.
pub const READER_WAIT: Duration = Duration::from_millis(100);

/// Retry period while a station's ring does not exist yet (synthd not started, or a station just
/// created for a listener's parameters: short, so its first chunk is served promptly).
pub const ATTACH_RETRY: Duration = Duration::from_millis(50);

/// Encoded chunks queued in a station's broadcast channel; a listener further behind skips to live.
pub const BROADCAST_CAPACITY: usize = 64;

/// Messages queued between one connection's session and its socket writer.
pub const CLIENT_QUEUE: usize = 16;

/// SO_SNDBUF of client sockets (the kernel doubles it): ~0.5 s of JSON audio.
pub const SOCKET_SEND_BUFFER: usize = 64 * 1024;

/// A client whose socket accepts nothing for this long is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest message accepted from a client; a bigger one closes the connection with 1009.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Chunks sent ahead of live when a client starts (the "normal" tier: 500 ms).
pub const PREROLL_CHUNKS: usize = 5;

/// How long a listener waits for a newly created station's first chunk before `station_unavailable`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Control messages a connection may send in a burst (token bucket capacity).
pub const CONTROL_BURST: f64 = 20.0;

/// Control messages per second a connection may sustain (token bucket refill rate).
pub const CONTROL_RATE: f64 = 5.0;

/// A client still being rate limited this long after its first refused message is closed (1008).
/// Short: reading from a flooder is paused while it is over the limit, so what it sends meanwhile
/// waits in its own socket buffers, and a browser never sends this many control messages.
pub const FLOOD_CLOSE_AFTER: Duration = Duration::from_secs(3);

/// WebSocket frames of any kind (text, binary, ping, pong) a connection may send in a burst. Far
/// above what a browser sends (a few control messages, a report a second, a keep-alive ping).
pub const FRAME_BURST: f64 = 100.0;

/// Frames per second a connection may sustain; over it reading pauses until the next token.
pub const FRAME_RATE: f64 = 50.0;

/// A client over the frame rate this long after its first excess frame is closed (1008).
pub const FRAME_FLOOD_CLOSE_AFTER: Duration = Duration::from_secs(2);

/// A TCP connection that has not sent complete request headers this long after it was accepted
/// (or after its previous request, when kept alive) is closed: half-open sockets and slowloris
/// clients cannot hold file descriptors. Browsers send their request at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A rate-limited client that sends nothing refused for this long is no longer flooding.
pub const FLOOD_FORGIVEN_AFTER: Duration = Duration::from_secs(2);

/// After closing the clients, how long shutdown waits for their sockets to finish.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);
