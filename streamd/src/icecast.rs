//! Icecast source client: relays stations' Ogg/Opus feeds to an Icecast server (`--icecast`), so
//! an Icecast relay / CDN tree can serve listeners far beyond one gateway (OPERATIONS.md, "Icecast
//! relay").
//!
//! Each relayed station is one more listener of the same encode-once feed the HTTP stream serves
//! ([`crate::compressed`]): nothing is encoded twice, and a slow or absent Icecast only makes the
//! relay skip ahead (the feed's broadcast lags it) or reconnect; it never holds the station back.
//!
//! The source protocol is Icecast's HTTP `PUT` (2.4.0 and later): Basic auth, `Content-Type:
//! audio/ogg`, `Ice-Public: 0`, `Ice-Name`, no `Expect: 100-continue` (so no interim response to
//! handle), the response head awaited before the first byte, then the body streams until either
//! side closes. Every connection starts with a fresh subscription, as a plain-stream listener:
//! the Ogg header pages and the feed's burst in one write, then live pages in 0.5 s batches. A
//! failed or dropped connection is retried with exponential backoff ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]), reset after a connection that lasted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};

use crate::compressed::{CompressedStreams, HttpItem};
use crate::directory::StationDirectory;
use crate::encode::Codec;
use crate::shutdown::Phase;

/// First retry delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A connection that streamed this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Connecting and reading Icecast's answer must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A write Icecast does not take within this drops the connection (and it is retried).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of the relay (flattened into [`crate::Args`]).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct IcecastArgs {
    /// Icecast server to relay Ogg/Opus to, with the source credentials:
    /// `http://source:PASSWORD@HOST:PORT`. Without it nothing is relayed.
    #[arg(long = "icecast", env = "STREAMD_ICECAST", hide_env_values = true)]
    pub url: Option<String>,

    /// What to relay: `station=/mount` pairs, comma-separated or repeated (default
    /// `focus=/focus.opus`). Each pair is one source connection.
    #[arg(
        long = "icecast-mount",
        env = "STREAMD_ICECAST_MOUNTS",
        value_delimiter = ','
    )]
    pub mounts: Vec<String>,
}

/// Where and as whom to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct IcecastServer {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Source user (normally `source`).
    pub user: String,
    /// Source password.
    pub password: String,
}

impl std::fmt::Debug for IcecastServer {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}@{}:{}", self.user, self.host, self.port)
    }
}

impl IcecastServer {
    /// Parses `http://user:password@host:port` (user defaults to `source`, port to 8000).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("the Icecast URL must start with http:// (TLS: put a relay in front)")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = authority.rsplit_once('@').ok_or(
            "the Icecast URL needs the source credentials: http://source:PASSWORD@HOST:PORT",
        )?;
        let (user, password) = userinfo.split_once(':').unwrap_or(("source", userinfo));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("bad port in the Icecast URL: {port:?}"))?,
            ),
            None => (hostport, 8000),
        };
        if host.is_empty() || password.is_empty() {
            return Err("the Icecast URL needs a host and a source password".to_owned());
        }
        Ok(Self {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            user: if user.is_empty() { "source" } else { user }.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// One station relayed to one mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// Station id.
    pub station: String,
    /// Icecast mount point, starting with `/`.
    pub mount: String,
}

impl IcecastArgs {
    /// The server and relays asked for; `Ok(None)` without `--icecast`.
    pub fn plan(&self) -> Result<Option<(IcecastServer, Vec<Relay>)>, String> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let server = IcecastServer::parse(url)?;
        let mut relays = Vec::new();
        for pair in &self.mounts {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (station, mount) = pair
                .split_once('=')
                .ok_or_else(|| format!("--icecast-mount wants station=/mount, got {pair:?}"))?;
            let mount = mount.trim();
            if !mount.starts_with('/') || mount.contains(char::is_whitespace) {
                return Err(format!(
                    "an Icecast mount starts with / and has no spaces: {mount:?}"
                ));
            }
            relays.push(Relay {
                station: station.trim().to_owned(),
                mount: mount.to_owned(),
            });
        }
        if relays.is_empty() {
            relays.push(Relay {
                station: "focus".to_owned(),
                mount: "/focus.opus".to_owned(),
            });
        }
        Ok(Some((server, relays)))
    }
}

/// Starts one task per relay; they end when the gateway leaves [`Phase::Running`].
pub fn spawn(
    server: &IcecastServer,
    relays: Vec<Relay>,
    directory: Arc<StationDirectory>,
    compressed: Arc<CompressedStreams>,
    phase: watch::Receiver<Phase>,
) {
    for relay in relays {
        tracing::info!(icecast = ?server, station = %relay.station, mount = %relay.mount, "relaying to Icecast");
        tokio::spawn(run_relay(
            server.clone(),
            relay,
            Arc::clone(&directory),
            Arc::clone(&compressed),
            phase.clone(),
        ));
    }
}

/// Why one source connection ended.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("station not found (yet)")]
    NoStation,
    #[error("{0}")]
    Feed(#[from] crate::compressed::FeedError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("Icecast refused the source: {0}")]
    Refused(String),
    #[error("the feed ended")]
    FeedEnded,
}

async fn run_relay(
    server: IcecastServer,
    relay: Relay,
    directory: Arc<StationDirectory>,
    compressed: Arc<CompressedStreams>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            result = relay_once(&server, &relay, &directory, &compressed) => result,
            _ = phase.wait_for(|p| *p != Phase::Running) => return,
        };
        let lasted = started.elapsed();
        if lasted >= HEALTHY_AFTER {
            backoff = BACKOFF_MIN;
        }
        match result {
            Err(RelayError::NoStation) => {
                // Not a failure of Icecast: look again soon, without growing the backoff.
                tracing::debug!(station = %relay.station, "Icecast relay waits for its station");
                tokio::select! {
                    () = tokio::time::sleep(BACKOFF_MIN) => continue,
                    _ = phase.wait_for(|p| *p != Phase::Running) => return,
                }
            }
            Err(error) => tracing::warn!(
                station = %relay.station, mount = %relay.mount, %error, retry_in = ?backoff,
                "Icecast relay disconnected"
            ),
            Ok(()) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = phase.wait_for(|p| *p != Phase::Running) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One source connection: subscribe, connect, PUT, then stream until something fails.
async fn relay_once(
    server: &IcecastServer,
    relay: &Relay,
    directory: &StationDirectory,
    compressed: &Arc<CompressedStreams>,
) -> Result<(), RelayError> {
    let station = directory
        .find(&relay.station)
        .ok_or(RelayError::NoStation)?;
    // Connect before subscribing, so the burst is fresh when the first byte goes out.
    let mut socket = tokio::time::timeout(CONNECT_TIMEOUT, connect(server, relay))
        .await
        .map_err(|_| RelayError::Timeout)??;
    // The relay is one more plain-stream listener: the burst in one write, then the batches.
    let mut sub = compressed.subscribe_http(&station, Codec::Opus).await?;
    tracing::info!(station = %relay.station, mount = %relay.mount, "Icecast source connected");
    write(&mut socket, &std::mem::take(&mut sub.burst)).await?;
    let mut closed = [0u8; 64];
    loop {
        tokio::select! {
            item = sub.batches.recv() => match item {
                Ok(HttpItem::Data(batch)) => write(&mut socket, &batch).await?,
                Ok(HttpItem::End) | Err(broadcast::error::RecvError::Closed) => {
                    return Err(RelayError::FeedEnded)
                }
                // Behind (Icecast slow): skip to live; whole pages keep the stream decodable.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(station = %relay.station, missed, "Icecast relay skipped ahead");
                }
            },
            // Icecast sends nothing after its answer: readable means closed (or an error).
            read = socket.read(&mut closed) => {
                return Err(match read {
                    Ok(0) => std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
                    Ok(_) => RelayError::Refused(String::from_utf8_lossy(&closed).trim().to_owned()),
                    Err(e) => e.into(),
                });
            }
        }
    }
}

async fn write(socket: &mut TcpStream, bytes: &[u8]) -> Result<(), RelayError> {
    tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(bytes))
        .await
        .map_err(|_| RelayError::Timeout)??;
    Ok(())
}

/// Connects and sends the `PUT`; returns once Icecast answered 2xx.
async fn connect(server: &IcecastServer, relay: &Relay) -> Result<TcpStream, RelayError> {
    let mut socket = TcpStream::connect((server.host.as_str(), server.port)).await?;
    let _ = socket.set_nodelay(true);
    socket
        .write_all(put_request(server, relay).as_bytes())
        .await?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if socket.read(&mut byte).await? == 0 || head.len() > 8192 {
            return Err(RelayError::Refused(
                "connection closed before an answer".to_owned(),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default().trim().to_owned();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') {
        return Err(RelayError::Refused(status_line));
    }
    Ok(socket)
}

/// The source request: Icecast's `PUT` with Basic auth and the stream's description.
fn put_request(server: &IcecastServer, relay: &Relay) -> String {
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", server.user, server.password));
    let host = if server.host.contains(':') {
        format!("[{}]:{}", server.host, server.port)
    } else {
        format!("{}:{}", server.host, server.port)
    };
    format!(
        "PUT {mount} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Authorization: Basic {credentials}\r\n\
         User-Agent: auralis-streamd/{version}\r\n\
         Content-Type: {content_type}\r\n\
         Ice-Public: 0\r\n\
         Ice-Name: Auralis - {station}\r\n\
         Ice-Description: Generative ambient music, composed live\r\n\
         Ice-Audio-Info: channels=2;samplerate=48000;bitrate={kbps}\r\n\
         Ice-Bitrate: {kbps}\r\n\
         \r\n",
        mount = relay.mount,
        version = env!("CARGO_PKG_VERSION"),
        content_type = Codec::Opus.content_type(),
        station = relay.station,
        kbps = Codec::Opus.kbps(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_mounts_parse() {
        let s = IcecastServer::parse("http://source:hackme@127.0.0.1:8100").unwrap();
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.user.as_str(),
                s.password.as_str()
            ),
            ("127.0.0.1", 8100, "source", "hackme")
        );
        assert_eq!(
            format!("{s:?}"),
            "http://source@127.0.0.1:8100",
            "no password"
        );
        let s = IcecastServer::parse("http://hackme@icecast.example/").unwrap();
        assert_eq!((s.port, s.user.as_str()), (8000, "source"));
        assert!(IcecastServer::parse("https://source:x@h:1").is_err());
        assert!(IcecastServer::parse("http://h:1").is_err());

        let args = IcecastArgs {
            url: Some("http://source:pw@h:1".to_owned()),
            mounts: vec![
                "focus=/focus.opus".to_owned(),
                " calm = /calm.ogg ".to_owned(),
            ],
        };
        let (_, relays) = args.plan().unwrap().unwrap();
        assert_eq!(relays[1].station, "calm");
        assert_eq!(relays[1].mount, "/calm.ogg");
        let default = IcecastArgs {
            mounts: vec![],
            ..args.clone()
        };
        assert_eq!(default.plan().unwrap().unwrap().1[0].mount, "/focus.opus");
        let bad = IcecastArgs {
            mounts: vec!["focus".to_owned()],
            ..args
        };
        assert!(bad.plan().is_err());
        assert!(IcecastArgs::default().plan().unwrap().is_none());
    }

    #[test]
    fn the_put_request_carries_auth_type_and_name() {
        let server = IcecastServer::parse("http://source:hackme@127.0.0.1:8100").unwrap();
        let relay = Relay {
            station: "focus".to_owned(),
            mount: "/focus.opus".to_owned(),
        };
        let req = put_request(&server, &relay);
        assert!(req.starts_with("PUT /focus.opus HTTP/1.1\r\n"));
        assert!(req.contains("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"));
        assert!(req.contains("Content-Type: audio/ogg\r\n"));
        assert!(req.contains("Ice-Public: 0\r\n"));
        assert!(req.contains("Ice-Name: Auralis - focus\r\n"));
        assert!(!req.contains("Expect"));
        assert!(req.ends_with("\r\n\r\n"));
    }
}
