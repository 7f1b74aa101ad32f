//! One listener of a plain HTTP audio stream (`/stream/{station}.opus` of streamd, or an Icecast
//! mount): a GET over a raw TCP connection, then the body read and counted until told to stop.
//!
//! It records what a media player would notice: the status and content type, how long the first
//! audio byte took, how many bytes came (the stream's bit rate), the longest pause between two
//! reads (a stall), and whether the server closed the stream early. It does not parse the body
//! (chunked framing is counted as bytes): decoding is checked by the ffmpeg tests; this listener
//! exists to be cheap enough to open thousands of, so the server's cost is what a run measures.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long connecting and the response head may take.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What one HTTP listener saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HttpListenerReport {
    /// The response status (0: no response).
    pub status: u16,
    /// `Content-Type` of the response.
    pub content_type: Option<String>,
    /// Body bytes received (including chunked framing).
    pub bytes: u64,
    /// From sending the request to the first body byte, ms.
    pub first_byte_ms: Option<f64>,
    /// Longest time between two reads after the first body byte, ms.
    pub max_gap_ms: f64,
    /// Seconds from the first body byte to the end of the run (or the close).
    pub listened_s: f64,
    /// The server closed the stream before the run ended.
    pub closed_early: bool,
    /// What went wrong, if something did.
    pub error: Option<String>,
}

/// `http://host:port/path` → (`host:port`, `/path`).
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// Listens to `url` until `stop` turns true (or the server closes).
pub async fn run_http_listener(url: String, mut stop: watch::Receiver<bool>) -> HttpListenerReport {
    let mut report = HttpListenerReport::default();
    let (authority, path) = match split_url(&url) {
        Ok(parts) => parts,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let sent = Instant::now();
    let head = tokio::time::timeout(HEAD_TIMEOUT, open(&authority, &path)).await;
    let (mut stream, head, body_start) = match head {
        Ok(Ok(parts)) => parts,
        Ok(Err(e)) => {
            report.error = Some(e);
            return report;
        }
        Err(_) => {
            report.error = Some(format!("no response head within {HEAD_TIMEOUT:?}"));
            return report;
        }
    };
    parse_head(&head, &mut report);
    if report.status != 200 {
        report.error = Some(format!("HTTP status {}", report.status));
        return report;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut note = |n: usize, report: &mut HttpListenerReport| {
        let now = Instant::now();
        match first {
            None => {
                first = Some(now);
                report.first_byte_ms = Some(now.duration_since(sent).as_secs_f64() * 1e3);
            }
            Some(_) => {
                report.max_gap_ms = report
                    .max_gap_ms
                    .max(now.duration_since(last).as_secs_f64() * 1e3);
            }
        }
        last = now;
        report.bytes += n as u64;
    };
    if body_start > 0 {
        note(body_start, &mut report);
    }
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => {
                    report.closed_early = true;
                    break;
                }
                Ok(n) => note(n, &mut report),
                Err(e) => {
                    report.closed_early = true;
                    report.error = Some(format!("read: {e}"));
                    break;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    if let Some(first) = first {
        report.listened_s = first.elapsed().as_secs_f64();
    }
    report
}

/// Connects, sends the GET and reads the response head. Returns the stream, the head and how
/// many body bytes came with the head.
async fn open(authority: &str, path: &str) -> Result<(TcpStream, String, usize), String> {
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: auralis-loadtest\r\nAccept: */*\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send request: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut byte = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut byte)
            .await
            .map_err(|e| format!("read response head: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        head.extend_from_slice(&byte[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = head.len() - (end + 4);
            head.truncate(end);
            return Ok((stream, String::from_utf8_lossy(&head).into_owned(), body));
        }
        if head.len() > MAX_HEAD {
            return Err(format!("response head over {MAX_HEAD} bytes"));
        }
    }
}

/// Status and content type from a response head.
fn parse_head(head: &str, report: &mut HttpListenerReport) {
    let mut lines = head.lines();
    report.status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    report.content_type = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_owned())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8000/stream/focus.opus").unwrap(),
            ("127.0.0.1:8000".into(), "/stream/focus.opus".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/".into())
        );
        assert!(split_url("ws://127.0.0.1/ws").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn heads_give_status_and_type() {
        let mut r = HttpListenerReport::default();
        parse_head(
            "HTTP/1.1 200 OK\r\ncontent-type: audio/ogg\r\nicy-br: 96",
            &mut r,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type.as_deref(), Some("audio/ogg"));
        let mut r = HttpListenerReport::default();
        parse_head("HTTP/1.0 404 Not Found", &mut r);
        assert_eq!((r.status, r.content_type), (404, None));
    }
}
