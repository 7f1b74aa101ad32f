//! Admission limits: the token buckets on each connection's control messages and on all its
//! frames (with the flood rule that closes a client that keeps exceeding one), the cap on TCP
//! connections, and the Origin allow-list of WebSocket upgrades.

use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;

use crate::config::{
    CONTROL_BURST, CONTROL_RATE, FLOOD_CLOSE_AFTER, FLOOD_FORGIVEN_AFTER, FRAME_BURST,
    FRAME_FLOOD_CLOSE_AFTER, FRAME_RATE,
};

/// Token bucket: `capacity` tokens, refilled at `rate` per second, one per message.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last_refill: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: f64, rate: f64, now: Instant) -> Self {
        Self {
            capacity,
            rate,
            tokens: capacity,
            last_refill: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last_refill = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until a token is available.
    pub fn wait_time(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

/// What to do with a control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Handle it.
    Accept,
    /// Ignore it and answer `rate_limited`.
    Refuse,
    /// The client has flooded for too long: close with 1008.
    Close,
}

/// A token bucket with the flood rule: a client still refused `close_after` after the first
/// refusal of a flood is closed; [`FLOOD_FORGIVEN_AFTER`] without a refusal ends the flood. One per
/// connection for its control messages ([`FloodLimiter::control`]) and one for all its frames
/// ([`FloodLimiter::frames`]).
#[derive(Clone, Debug)]
pub struct FloodLimiter {
    bucket: TokenBucket,
    /// How long a flood may last before the client is closed.
    close_after: Duration,
    /// First refusal of the current flood.
    flooding_since: Option<Instant>,
    /// Latest refusal.
    last_refusal: Option<Instant>,
}

impl FloodLimiter {
    /// Control messages: [`CONTROL_BURST`], [`CONTROL_RATE`], closed after [`FLOOD_CLOSE_AFTER`].
    pub fn control(now: Instant) -> Self {
        Self::with(
            TokenBucket::new(CONTROL_BURST, CONTROL_RATE, now),
            FLOOD_CLOSE_AFTER,
        )
    }

    /// Every incoming frame, pings and pongs included: [`FRAME_BURST`], [`FRAME_RATE`], closed
    /// after [`FRAME_FLOOD_CLOSE_AFTER`].
    pub fn frames(now: Instant) -> Self {
        Self::with(
            TokenBucket::new(FRAME_BURST, FRAME_RATE, now),
            FRAME_FLOOD_CLOSE_AFTER,
        )
    }

    /// With a given bucket and flood length.
    pub fn with(bucket: TokenBucket, close_after: Duration) -> Self {
        Self {
            bucket,
            close_after,
            flooding_since: None,
            last_refusal: None,
        }
    }

    /// Decides about one message arriving at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        if self
            .last_refusal
            .is_some_and(|t| now.saturating_duration_since(t) >= FLOOD_FORGIVEN_AFTER)
        {
            self.flooding_since = None;
        }
        if self.bucket.try_take(now) {
            return Admission::Accept;
        }
        self.last_refusal = Some(now);
        let since = *self.flooding_since.get_or_insert(now);
        if now.saturating_duration_since(since) > self.close_after {
            Admission::Close
        } else {
            Admission::Refuse
        }
    }

    /// Time until the next message would be accepted.
    pub fn retry_after(&self) -> Duration {
        self.bucket.wait_time()
    }
}

/// Most TCP connections served at once (upgraded WebSockets and plain HTTP together) for a cap of
/// `ws_max` WebSockets: a quarter more plus 64, room for page loads, status polls and upgrades
/// refused with 503 while the WebSockets are at their cap. Connections over it are closed as
/// soon as they are accepted.
pub fn tcp_connection_cap(ws_max: u32) -> usize {
    let ws_max = ws_max as usize;
    ws_max + ws_max / 4 + 64
}

/// Which browser origins may open a WebSocket.
#[derive(Clone, Debug, Default)]
pub enum OriginPolicy {
    /// No Origin (not a browser), the same host as the request, or localhost.
    #[default]
    SameHostOrLocal,
    /// Exactly these origins (`scheme://host[:port]`, compared case-insensitively), or any if
    /// the list holds `*`. Requests without an Origin are allowed (not browsers).
    List(Vec<String>),
}

impl OriginPolicy {
    /// From `AURALIS_ALLOWED_ORIGINS` (absent or empty: the default).
    pub fn from_list(list: Option<&[String]>) -> Self {
        let origins: Vec<String> = list
            .unwrap_or_default()
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            Self::SameHostOrLocal
        } else {
            Self::List(origins)
        }
    }

    /// Whether the request's Origin is allowed.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        match self {
            Self::List(list) => list.iter().any(|o| o == "*" || *o == origin),
            Self::SameHostOrLocal => {
                let Some(origin_host) = host_of_origin(&origin) else {
                    return false;
                };
                if is_local(&origin_host) {
                    return true;
                }
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| strip_port(&h.trim().to_ascii_lowercase()))
                    .is_some_and(|host| host == origin_host)
            }
        }
    }
}

/// `http://Example.com:8000` -> `example.com`.
fn host_of_origin(origin: &str) -> Option<String> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Some(strip_port(authority))
}

fn strip_port(authority: &str) -> String {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_owned();
    }
    authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host)
        .to_owned()
}

fn is_local(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || host == "::1" || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn bucket_bursts_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(20.0, 5.0, t0);
        assert!((0..20).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(b.wait_time() > Duration::ZERO);
        assert!(b.try_take(t0 + Duration::from_millis(200)));
        assert!(!b.try_take(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn a_persistent_flood_is_closed_a_pause_is_forgiven() {
        let t0 = Instant::now();
        let mut l = FloodLimiter::control(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for _ in 0..20 {
            assert_eq!(l.admit(t0), Admission::Accept);
        }
        assert_eq!(l.admit(at(1)), Admission::Refuse);
        // Quiet for 3 s: the flood is forgiven, the bucket refilled.
        assert_eq!(l.admit(at(3_000)), Admission::Accept);
        // Flood 100/s: closed a little over FLOOD_CLOSE_AFTER after the first refusal.
        let mut closed_at = None;
        for i in 0..1_100 {
            if l.admit(at(3_000 + i * 10)) == Admission::Close {
                closed_at = Some(3_000 + i * 10);
                break;
            }
        }
        let closed_at = closed_at.expect("closed");
        assert!(
            (6_000..6_300).contains(&closed_at),
            "closed at {closed_at} ms"
        );
    }

    #[test]
    fn frames_at_a_browser_rate_pass_a_ping_flood_is_closed_after_two_seconds() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut browser = FloodLimiter::frames(t0);
        // 20 frames a second for a minute.
        assert!((0..1_200).all(|i| browser.admit(at(i * 50)) == Admission::Accept));
        // A flooder read only when a token is due (reading pauses meanwhile) is still flooding.
        let mut flooder = FloodLimiter::frames(t0);
        let mut now = t0;
        let closed = loop {
            match flooder.admit(now) {
                Admission::Close => break now.duration_since(t0),
                Admission::Accept => {}
                Admission::Refuse => now += flooder.retry_after(),
            }
            assert!(now < at(10_000), "never closed");
        };
        assert!(closed > FRAME_FLOOD_CLOSE_AFTER && closed < Duration::from_secs(3));
    }

    #[test]
    fn the_tcp_cap_leaves_room_above_the_websocket_cap() {
        assert_eq!(tcp_connection_cap(10_000), 12_564);
        assert!(tcp_connection_cap(1) > 1);
    }

    #[test]
    fn origins() {
        let default = OriginPolicy::default();
        assert!(default.allows(&headers(None, "radio.example:8000")));
        assert!(default.allows(&headers(Some("http://localhost:3000"), "radio.example")));
        assert!(default.allows(&headers(Some("http://127.0.0.1:8000"), "x")));
        assert!(default.allows(&headers(
            Some("https://radio.example"),
            "radio.example:8000"
        )));
        assert!(!default.allows(&headers(Some("https://evil.example"), "radio.example")));
        assert!(!default.allows(&headers(Some("null"), "radio.example")));
        let list = OriginPolicy::from_list(Some(&["https://radio.example/".to_owned()]));
        assert!(list.allows(&headers(Some("https://RADIO.example"), "x")));
        assert!(!list.allows(&headers(Some("http://localhost"), "x")));
        let any = OriginPolicy::from_list(Some(&["*".to_owned()]));
        assert!(any.allows(&headers(Some("https://evil.example"), "x")));
    }
}
