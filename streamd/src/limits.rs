//! Admission limits: the token bucket on each connection's control messages (with the flood rule
//! that closes a client that keeps exceeding it) and the Origin allow-list of WebSocket upgrades.

use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;

use crate::config::{CONTROL_BURST, CONTROL_RATE, FLOOD_CLOSE_AFTER, FLOOD_FORGIVEN_AFTER};

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

/// The control-message limit of one connection.
#[derive(Clone, Debug)]
pub struct ControlLimiter {
    bucket: TokenBucket,
    /// First refusal of the current flood.
    flooding_since: Option<Instant>,
    /// Latest refusal.
    last_refusal: Option<Instant>,
}

impl ControlLimiter {
    /// With the gateway's limits ([`CONTROL_BURST`], [`CONTROL_RATE`]).
    pub fn new(now: Instant) -> Self {
        Self::with(TokenBucket::new(CONTROL_BURST, CONTROL_RATE, now))
    }

    /// With a given bucket.
    pub fn with(bucket: TokenBucket) -> Self {
        Self {
            bucket,
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
        if now.saturating_duration_since(since) > FLOOD_CLOSE_AFTER {
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
        let mut l = ControlLimiter::new(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for _ in 0..20 {
            assert_eq!(l.admit(t0), Admission::Accept);
        }
        assert_eq!(l.admit(at(1)), Admission::Refuse);
        // Quiet for 3 s: the flood is forgiven, the bucket refilled.
        assert_eq!(l.admit(at(3_000)), Admission::Accept);
        // Flood 100/s for 11 s.
        let mut last = Admission::Accept;
        for i in 0..1_100 {
            last = l.admit(at(3_000 + i * 10));
            if last == Admission::Close {
                break;
            }
        }
        assert_eq!(last, Admission::Close);
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
