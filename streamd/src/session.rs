//! What one connection wants, independent of sockets: the control state machine (idle or streaming a
//! station, in a format) and the estimate of the client's playout buffer behind `buffer_depth`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_proto::CHUNK_MS;

use crate::directory::StationDirectory;
use crate::protocol::{ClientRequest, ErrorCode, Format, ProtocolError, ServerMessage};
use crate::station::Station;

/// The control state of one connection.
#[derive(Debug)]
pub struct ControlState {
    /// Audio format of the messages sent.
    pub format: Format,
    /// The station streamed, `None` when idle.
    pub streaming: Option<Arc<Station>>,
}

impl Default for ControlState {
    fn default() -> Self {
        Self {
            format: Format::Json,
            streaming: None,
        }
    }
}

/// What the connection must do after a request; the state is already updated.
#[derive(Debug)]
pub enum Plan {
    /// Send this and nothing else.
    Reply(ServerMessage),
    /// (Re)subscribe to `state.streaming`, replaying from `resume_from` if given, then ack with
    /// `ignored_params`.
    Subscribe {
        /// `resume_from` of the request.
        resume_from: Option<u64>,
        /// Musical parameters accepted but not applied.
        ignored_params: Vec<String>,
        /// The acknowledged action (`start` or `set`).
        action: &'static str,
    },
    /// Drop the subscription and ack `stop`.
    Unsubscribe,
}

impl ControlState {
    /// Applies one request. On error the state is unchanged.
    pub fn handle(
        &mut self,
        request: ClientRequest,
        stations: &StationDirectory,
    ) -> Result<Plan, ProtocolError> {
        match request {
            ClientRequest::Ping => Ok(Plan::Reply(ServerMessage::Pong {
                timestamp: crate::protocol::now_unix_seconds(),
            })),
            ClientRequest::Stop => {
                self.streaming = None;
                Ok(Plan::Unsubscribe)
            }
            ClientRequest::Start(start) => {
                let station = lookup(stations, start.station.as_deref())?;
                if let Some(format) = start.format {
                    self.format = format;
                }
                self.streaming = Some(station);
                Ok(Plan::Subscribe {
                    resume_from: start.resume_from,
                    ignored_params: start.musical,
                    action: "start",
                })
            }
            ClientRequest::Set(set) => {
                if !set.musical.is_empty() {
                    return Err(ProtocolError::new(
                        ErrorCode::Unsupported,
                        format!(
                            "changing {} while streaming is not supported yet; nothing was changed",
                            set.musical.join(", ")
                        ),
                    ));
                }
                let station = match set.station.as_deref() {
                    Some(name) => Some(lookup(stations, Some(name))?),
                    None => None,
                };
                if let Some(format) = set.format {
                    self.format = format;
                }
                match station {
                    Some(station)
                        if self
                            .streaming
                            .as_ref()
                            .is_none_or(|s| !Arc::ptr_eq(s, &station)) =>
                    {
                        self.streaming = Some(station);
                        Ok(Plan::Subscribe {
                            resume_from: None,
                            ignored_params: Vec::new(),
                            action: "set",
                        })
                    }
                    _ => Ok(Plan::Reply(ServerMessage::Ack {
                        action: "set",
                        station: self.streaming.as_ref().map(|s| s.name.clone()),
                        format: Some(self.format),
                        first_seq: None,
                        ignored_params: Vec::new(),
                    })),
                }
            }
        }
    }
}

fn lookup(stations: &StationDirectory, name: Option<&str>) -> Result<Arc<Station>, ProtocolError> {
    match name {
        Some(name) => stations.find(name).ok_or_else(|| {
            let known: Vec<String> = stations.all().iter().map(|s| s.name.clone()).collect();
            ProtocolError::new(
                ErrorCode::UnknownStation,
                format!("unknown station {name:?} (available: {})", known.join(", ")),
            )
        }),
        None => stations.default_station().ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::NoStation,
                "no station is available yet (the composer has not created any); retry shortly",
            )
        }),
    }
}

/// The server's estimate of how much audio a client holds ahead of its playhead, assuming it plays
/// in real time from the first chunk it receives and waits (plays silence) when it runs dry.
#[derive(Clone, Copy, Debug)]
pub struct PlayoutEstimate {
    /// When the client (re)started playing.
    since: Option<Instant>,
    /// Chunks sent since then.
    sent: u64,
}

impl Default for PlayoutEstimate {
    fn default() -> Self {
        Self::new()
    }
}

impl PlayoutEstimate {
    /// Nothing sent yet.
    pub const fn new() -> Self {
        Self {
            since: None,
            sent: 0,
        }
    }

    fn played(since: Instant, now: Instant) -> u64 {
        (now.saturating_duration_since(since).as_millis() / u128::from(CHUNK_MS)) as u64
    }

    /// Records one chunk sent at `now`; returns the chunks the client holds once it arrives
    /// (including it), plus `queued_after` chunks already available behind it at the server.
    pub fn on_send(&mut self, now: Instant, queued_after: u64) -> u32 {
        match self.since {
            Some(since) if Self::played(since, now) < self.sent => {}
            // First chunk, or the client has played everything it had: it restarts from here.
            _ => {
                self.since = Some(now);
                self.sent = 0;
            }
        }
        self.sent += 1;
        let held = self.sent - self.since.map_or(0, |s| Self::played(s, now));
        u32::try_from(held + queued_after).unwrap_or(u32::MAX)
    }

    /// Audio the client is estimated to hold at `now`.
    pub fn held(&self, now: Instant) -> Duration {
        let held = self
            .since
            .map_or(0, |s| self.sent.saturating_sub(Self::played(s, now)));
        Duration::from_millis(held * u64::from(CHUNK_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{SetParams, StartParams};

    fn directory() -> Arc<StationDirectory> {
        // The directory never touches shared memory unless started.
        let dir = StationDirectory::new(shm_proto::Namespace::new("unit_session").unwrap());
        dir.insert(Station::new(0, "focus"));
        dir.insert(Station::new(1, "sleep"));
        dir
    }

    #[test]
    fn start_stop_state_machine() {
        let dir = directory();
        let mut state = ControlState::default();
        let plan = state
            .handle(ClientRequest::Start(StartParams::default()), &dir)
            .unwrap();
        assert!(matches!(
            plan,
            Plan::Subscribe {
                action: "start",
                ..
            }
        ));
        assert_eq!(state.streaming.as_ref().unwrap().name, "focus");
        assert_eq!(state.format, Format::Json);

        let err = state
            .handle(
                ClientRequest::Start(StartParams {
                    station: Some("disco".into()),
                    ..StartParams::default()
                }),
                &dir,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownStation);
        assert_eq!(
            state.streaming.as_ref().unwrap().name,
            "focus",
            "unchanged on error"
        );

        assert!(matches!(
            state.handle(ClientRequest::Stop, &dir).unwrap(),
            Plan::Unsubscribe
        ));
        assert!(state.streaming.is_none());
        // stop is idempotent
        assert!(matches!(
            state.handle(ClientRequest::Stop, &dir).unwrap(),
            Plan::Unsubscribe
        ));
        assert!(matches!(
            state.handle(ClientRequest::Ping, &dir).unwrap(),
            Plan::Reply(ServerMessage::Pong { .. })
        ));
    }

    #[test]
    fn start_with_musical_params_streams_and_reports_them_ignored() {
        let dir = directory();
        let mut state = ControlState::default();
        let plan = state
            .handle(
                ClientRequest::Start(StartParams {
                    station: Some("sleep".into()),
                    format: Some(Format::Pcm16),
                    resume_from: Some(9),
                    musical: vec!["bpm".into()],
                }),
                &dir,
            )
            .unwrap();
        let Plan::Subscribe {
            resume_from,
            ignored_params,
            ..
        } = plan
        else {
            panic!("expected subscribe");
        };
        assert_eq!(resume_from, Some(9));
        assert_eq!(ignored_params, ["bpm"]);
        assert_eq!(state.format, Format::Pcm16);
        assert_eq!(state.streaming.as_ref().unwrap().name, "sleep");
    }

    #[test]
    fn set_format_acks_set_musical_is_unsupported_set_station_switches() {
        let dir = directory();
        let mut state = ControlState::default();
        state
            .handle(ClientRequest::Start(StartParams::default()), &dir)
            .unwrap();
        let plan = state
            .handle(
                ClientRequest::Set(SetParams {
                    format: Some(Format::Pcm16),
                    ..SetParams::default()
                }),
                &dir,
            )
            .unwrap();
        assert!(matches!(
            plan,
            Plan::Reply(ServerMessage::Ack { action: "set", .. })
        ));
        assert_eq!(state.format, Format::Pcm16);

        let err = state
            .handle(
                ClientRequest::Set(SetParams {
                    format: Some(Format::Json),
                    musical: vec!["bpm".into()],
                    ..SetParams::default()
                }),
                &dir,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unsupported);
        assert_eq!(state.format, Format::Pcm16, "nothing applied on error");

        let plan = state
            .handle(
                ClientRequest::Set(SetParams {
                    station: Some("sleep".into()),
                    ..SetParams::default()
                }),
                &dir,
            )
            .unwrap();
        assert!(matches!(plan, Plan::Subscribe { action: "set", .. }));
        assert_eq!(state.streaming.as_ref().unwrap().name, "sleep");
    }

    #[test]
    fn no_station_yet() {
        let dir = StationDirectory::new(shm_proto::Namespace::new("unit_empty").unwrap());
        let mut state = ControlState::default();
        let err = state
            .handle(ClientRequest::Start(StartParams::default()), &dir)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NoStation);
    }

    #[test]
    fn playout_estimate_tracks_a_real_time_client() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut p = PlayoutEstimate::new();
        // A pre-roll burst of 5 chunks from history, 4..0 chunks still queued behind each.
        let depths: Vec<u32> = (0..5).map(|i| p.on_send(t0, 4 - i)).collect();
        assert_eq!(depths, [5, 5, 5, 5, 5]);
        // Then live chunks arrive every 100 ms: the client keeps holding ~5.
        for k in 1..=20 {
            let d = p.on_send(ms(k * 100 + 3), 0);
            assert_eq!(d, 5, "chunk {k}");
        }
        // A 1 s network stall: the client ran dry, restarts from 1.
        assert_eq!(p.on_send(ms(3_100), 0), 1);
        assert_eq!(p.held(ms(3_150)), Duration::from_millis(100));
    }
}
