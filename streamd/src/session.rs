//! What one connection wants, independent of sockets: the control state machine (idle or streaming a
//! station, in a format) and the estimate of the client's playout buffer behind `buffer_depth`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_proto::CHUNK_MS;

use crate::directory::StationDirectory;
use composer::{ParamUpdate, Params};

use crate::protocol::{ClientRequest, ErrorCode, Format, ProtocolError, Report, ServerMessage};
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
    /// (Re)subscribe to `state.streaming`, replaying from `resume_from` if given.
    Subscribe {
        /// `resume_from` of the request.
        resume_from: Option<u64>,
        /// The acknowledged action (`start` or `set`).
        action: &'static str,
        /// Whether to send an `ack` (always for `set`; for `start` when asked).
        ack: bool,
    },
    /// Drop the subscription and ack `stop`.
    Unsubscribe,
    /// Feed a client report to the tier controller (no answer).
    Report(Report),
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
            ClientRequest::Report(report) => Ok(Plan::Report(report)),
            ClientRequest::Stop => {
                self.streaming = None;
                Ok(Plan::Unsubscribe)
            }
            ClientRequest::Start(start) => {
                let station = match &start.musical {
                    Some(update) => {
                        let base = match start.station.as_deref() {
                            Some(name) => name.to_owned(),
                            None => lookup(stations, None)?.name.clone(),
                        };
                        by_params(stations, &base, update)?
                    }
                    None => lookup(stations, start.station.as_deref())?,
                };
                if let Some(format) = start.format {
                    self.format = format;
                }
                self.streaming = Some(station);
                Ok(Plan::Subscribe {
                    resume_from: start.resume_from,
                    action: "start",
                    ack: start.ack,
                })
            }
            ClientRequest::Set(set) => {
                let station = match (&set.musical, set.station.as_deref()) {
                    (Some(update), named) => {
                        let base = match (named, &self.streaming) {
                            (Some(name), _) => name.to_owned(),
                            (None, Some(current)) => current.name.clone(),
                            (None, None) => lookup(stations, None)?.name.clone(),
                        };
                        Some(by_params(stations, &base, update)?)
                    }
                    (None, Some(name)) => Some(lookup(stations, Some(name))?),
                    (None, None) => None,
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
                            action: "set",
                            ack: true,
                        })
                    }
                    _ => Ok(Plan::Reply(ServerMessage::Ack {
                        action: "set",
                        station: self.streaming.as_ref().map(|s| s.name.clone()),
                        format: Some(self.format),
                        codec: self.format.codec(),
                        state: None,
                        first_seq: None,
                        params: self
                            .streaming
                            .as_ref()
                            .and_then(|s| station_params(stations, &s.name)),
                    })),
                }
            }
        }
    }
}

/// The station playing `update` applied over station `base` (created if needed).
fn by_params(
    stations: &StationDirectory,
    base: &str,
    update: &ParamUpdate,
) -> Result<Arc<Station>, ProtocolError> {
    let resolved = crate::params::resolve(stations, base, update)?;
    stations
        .adopt(resolved.index, &resolved.name)
        .ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::StationUnavailable,
                "cannot start serving the station (thread limit?); retry later",
            )
        })
}

/// The musical parameters of station `name`, if the control block has them.
pub fn station_params(stations: &StationDirectory, name: &str) -> Option<Params> {
    let control = stations.control()?;
    crate::params::params_of(&control, name).map(|(_, p)| p)
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
    fn start_with_resume_and_format() {
        let dir = directory();
        let mut state = ControlState::default();
        let plan = state
            .handle(
                ClientRequest::Start(StartParams {
                    station: Some("sleep".into()),
                    format: Some(Format::Pcm16),
                    resume_from: Some(9),
                    musical: None,
                    ack: true,
                }),
                &dir,
            )
            .unwrap();
        let Plan::Subscribe {
            resume_from, ack, ..
        } = plan
        else {
            panic!("expected subscribe");
        };
        assert_eq!(resume_from, Some(9));
        assert!(ack);
        assert_eq!(state.format, Format::Pcm16);
        assert_eq!(state.streaming.as_ref().unwrap().name, "sleep");
    }

    #[test]
    fn set_format_acks_set_station_switches_musical_needs_the_control_block() {
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
            Plan::Reply(ServerMessage::Ack {
                action: "set",
                codec: None,
                ..
            })
        ));
        assert_eq!(state.format, Format::Pcm16);
        // Opus: the ack says how to decode it.
        let plan = state
            .handle(
                ClientRequest::Set(SetParams {
                    format: Some(Format::Opus),
                    ..SetParams::default()
                }),
                &dir,
            )
            .unwrap();
        let Plan::Reply(ServerMessage::Ack {
            format,
            codec: Some(codec),
            ..
        }) = plan
        else {
            panic!("expected an ack with the codec, got {plan:?}");
        };
        assert_eq!(format, Some(Format::Opus));
        assert_eq!(
            (codec.name, codec.sample_rate, codec.channels),
            ("opus", 48_000, 2)
        );
        assert_eq!(state.format, Format::Opus);
        state
            .handle(
                ClientRequest::Set(SetParams {
                    format: Some(Format::Pcm16),
                    ..SetParams::default()
                }),
                &dir,
            )
            .unwrap();

        // Without a control block no station can be created: refused, nothing applied.
        let err = state
            .handle(
                ClientRequest::Set(SetParams {
                    format: Some(Format::Json),
                    musical: Some(ParamUpdate {
                        bpm: Some(80.0),
                        ..ParamUpdate::default()
                    }),
                    ..SetParams::default()
                }),
                &dir,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NoStation);
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
