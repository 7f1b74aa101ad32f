//! A tiny blocking HTTP/1.x responder for composer and synthd, which have no async runtime: one
//! std thread answers `GET /metrics` (Prometheus text format) and `GET /healthz`, one request per
//! connection, and anything else with a small error. A client that sends garbage, too much, or
//! nothing at all gets an error or a time-out and the thread moves on: a bad request can delay
//! the next scrape by at most [`IO_TIMEOUT`], never stop the endpoint.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::Registry;

/// Read and write time-out of one connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head accepted (request line and headers).
const MAX_HEAD: usize = 8 * 1024;

/// A running endpoint.
#[derive(Debug)]
pub struct MetricsEndpoint {
    /// The bound address (the port is real even when 0 was asked for).
    addr: SocketAddr,
    /// The serving thread; it runs for the life of the process.
    _thread: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Binds `addr` and serves `registry` from a background thread named `metrics-http`.
    pub fn start(addr: SocketAddr, registry: Registry) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || serve(&listener, &registry))?;
        Ok(MetricsEndpoint {
            addr,
            _thread: thread,
        })
    }

    /// Starts the endpoint unless `enabled` is false. A port that cannot be bound is logged and
    /// the daemon goes on without metrics: music matters more than its graphs (the scrape target
    /// then shows as down, which alerts).
    pub fn start_or_log(enabled: bool, addr: SocketAddr, registry: Registry) -> Option<Self> {
        if !enabled {
            tracing::info!("metrics disabled (METRICS_ENABLED=false)");
            return None;
        }
        match Self::start(addr, registry) {
            Ok(ep) => {
                tracing::info!(addr = %ep.local_addr(), "serving /metrics");
                Some(ep)
            }
            Err(err) => {
                tracing::error!(%addr, %err, "cannot serve /metrics; continuing without");
                None
            }
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Accepts connections for ever, one at a time.
fn serve(listener: &TcpListener, registry: &Registry) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(err) = answer(stream, registry) {
                    tracing::debug!(%err, "metrics request failed");
                }
            }
            Err(err) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%err, "metrics endpoint: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request head and writes one response.
fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                431,
                "text/plain",
                "request head too large\n",
                true,
            );
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, content_type, body) = route(&head, registry);
    respond(
        &mut stream,
        status,
        content_type,
        &body,
        !is_head_request(&head),
    )
}

/// Picks the response for a request head.
pub fn route(head: &[u8], registry: &Registry) -> (u16, &'static str, String) {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return (400, "text/plain", "bad request\n".into());
    };
    if !version.starts_with("HTTP/1.") {
        return (400, "text/plain", "bad request\n".into());
    }
    if method != "GET" && method != "HEAD" {
        return (405, "text/plain", "only GET\n".into());
    }
    match target.split('?').next().unwrap_or("") {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::encode(registry),
        ),
        "/healthz" => (200, "text/plain", "ok\n".into()),
        _ => (
            404,
            "text/plain",
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

fn is_head_request(head: &[u8]) -> bool {
    head.starts_with(b"HEAD ")
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    with_body: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if with_body {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;

    fn endpoint() -> MetricsEndpoint {
        let registry = crate::metrics::process_registry();
        MetricsEndpoint::start("127.0.0.1:0".parse().unwrap(), registry).unwrap()
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn serves_metrics_and_healthz() {
        let ep = endpoint();
        let r = exchange(
            ep.local_addr(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("\nprocess_cpu_seconds_total "), "{r}");
        let r = exchange(ep.local_addr(), b"GET /healthz HTTP/1.0\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("ok\n"),
            "{r}"
        );
        let r = exchange(ep.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }

    #[test]
    fn survives_bad_requests() {
        let ep = endpoint();
        let addr = ep.local_addr();
        assert!(exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(exchange(addr, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(exchange(addr, b"GET /metrics SPDY/3\r\n\r\n").starts_with("HTTP/1.1 400"));
        let big = vec![b'a'; 20_000];
        assert!(exchange(addr, &big).starts_with("HTTP/1.1 431"));
        // A client that connects and closes without a word.
        let s = TcpStream::connect(addr).unwrap();
        s.shutdown(Shutdown::Both).unwrap();
        drop(s);
        // Still serving.
        let r = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    }
}
