//! systemd's notification protocol (`sd_notify(3)`), by hand: one datagram per message to the
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`).
//!
//! Every daemon sends `READY=1` once it serves, `WATCHDOG=1` from its main loop at half of
//! `$WATCHDOG_USEC` (so a wedged loop, not just a dead process, gets the unit restarted),
//! `STATUS=` lines for `systemctl status`, and `STOPPING=1` when it begins to shut down. Without
//! `$NOTIFY_SOCKET` (a shell, the `auralis up` launcher, tests) every call is a no-op.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// A connection to the service manager (or nothing, outside systemd).
#[derive(Debug)]
pub struct Notifier {
    /// Unbound datagram socket connected to `$NOTIFY_SOCKET`; `None` when not under systemd.
    socket: Option<UnixDatagram>,
    /// Interval between `WATCHDOG=1` pings: half of `$WATCHDOG_USEC`, or `None` when the unit
    /// has no `WatchdogSec=` (or the variable names another process).
    watchdog_every: Option<Duration>,
    /// When the last ping went out, so [`Notifier::watchdog`] is cheap to call every iteration.
    last_ping: Instant,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. A socket that cannot be
    /// reached is logged and ignored: notifications must never stop the music.
    pub fn from_env() -> Notifier {
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let socket = std::env::var_os("NOTIFY_SOCKET");
        Notifier::new(socket, watchdog).unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot reach $NOTIFY_SOCKET; systemd notifications are off");
            Notifier::new(None, None).expect("no socket, nothing to fail")
        })
    }

    /// A notifier talking to `socket` (`@name` for an abstract socket), pinging the watchdog
    /// every `watchdog_every`.
    pub fn new(socket: Option<OsString>, watchdog_every: Option<Duration>) -> io::Result<Self> {
        let socket = match socket.filter(|s| !s.is_empty()) {
            None => None,
            Some(path) => {
                let sock = UnixDatagram::unbound()?;
                let bytes = path.as_bytes();
                let addr = match bytes.strip_prefix(b"@") {
                    Some(name) => SocketAddr::from_abstract_name(name)?,
                    None => SocketAddr::from_pathname(&path)?,
                };
                sock.connect_addr(&addr)?;
                Some(sock)
            }
        };
        Ok(Notifier {
            socket,
            watchdog_every: watchdog_every.filter(|d| !d.is_zero()),
            last_ping: Instant::now(),
        })
    }

    /// Whether a service manager is listening.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog ping interval, if the unit has a watchdog.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog_every
    }

    /// `READY=1` with a status line: the daemon now serves.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}\n", one_line(status)));
        self.last_ping = Instant::now();
    }

    /// A `STATUS=` line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}\n", one_line(status)));
    }

    /// `STOPPING=1`: shutdown has begun (systemd then waits up to `TimeoutStopSec=`).
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}\n", one_line(status)));
    }

    /// Call from every iteration of the main loop: sends `WATCHDOG=1` when half the watchdog
    /// period has passed since the last ping. Costs one clock read otherwise.
    pub fn watchdog(&mut self) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(self.last_ping) >= every {
            self.last_ping = now;
            self.send("WATCHDOG=1\n");
        }
    }

    fn send(&self, msg: &str) {
        if let Some(sock) = &self.socket {
            if let Err(err) = sock.send(msg.as_bytes()) {
                tracing::debug!(%err, "sd_notify failed");
            }
        }
    }
}

/// Half of `WATCHDOG_USEC`, if it is set, valid, and meant for this process (`WATCHDOG_PID`, when
/// present, must be ours: a child inheriting the variables must not ping for its parent).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// Status text must stay on one line (a newline would start another assignment).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_checks_the_pid() {
        assert_eq!(
            watchdog_interval(Some("10000000"), Some("42"), 42),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            watchdog_interval(Some("10000000"), None, 42),
            Some(Duration::from_secs(5))
        );
        assert_eq!(watchdog_interval(Some("10000000"), Some("43"), 42), None);
        assert_eq!(watchdog_interval(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval(Some("x"), None, 42), None);
        assert_eq!(watchdog_interval(None, None, 42), None);
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_ready_watchdog_status_and_stopping_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("auralis-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut n = Notifier::new(
            Some(path.clone().into_os_string()),
            Some(Duration::from_millis(1)),
        )
        .unwrap();
        assert!(n.is_active());
        n.ready("rendering 1\nstation");
        assert_eq!(recv(&server), "READY=1\nSTATUS=rendering 1 station\n");
        std::thread::sleep(Duration::from_millis(5));
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1\n");
        n.status("ok");
        assert_eq!(recv(&server), "STATUS=ok\n");
        n.stopping("bye");
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=bye\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reaches_an_abstract_socket() {
        let name = format!("auralis-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut n = Notifier::new(Some(format!("@{name}").into()), None).unwrap();
        n.ready("up");
        assert_eq!(recv(&server), "READY=1\nSTATUS=up\n");
        // No watchdog configured: pinging is a no-op.
        n.watchdog();
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!(server.recv(&mut buf).is_err());
    }

    #[test]
    fn without_a_socket_everything_is_a_no_op() {
        let mut n = Notifier::new(None, Some(Duration::from_millis(1))).unwrap();
        assert!(!n.is_active());
        n.ready("x");
        n.watchdog();
        n.stopping("y");
    }
}
