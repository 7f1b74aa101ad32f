//! The WebSocket endpoint (`/ws`, `/ws/stream`): one connection is a session task (control
//! messages in, the station's chunks out, from its PCM broadcast or its Opus feed: [`crate::live`])
//! and a writer task behind a bounded queue, so a slow
//! socket never blocks the station: the session falls behind the broadcast and resumes at live.
//! The writer times every audio write (publish to write completion) for the connection's
//! [`TierController`]; the session rate-limits control messages and all incoming frames
//! ([`FloodLimiter`]), and stops reading from a client while it is over either limit.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::compressed::CompressedStreams;
use crate::config::{CLIENT_QUEUE, MAX_CLIENT_MESSAGE, SEND_TIMEOUT, START_TIMEOUT};
use crate::directory::StationDirectory;
use crate::limits::{Admission, FloodLimiter};
use crate::live::{Audio, LiveEvent, LiveStream};
use crate::protocol::{
    ErrorCode, ProtocolError, Report, ServerMessage, StatusMessage, Tier, parse_client_message,
};
use crate::server::AppState;
use crate::session::{ControlState, Plan, station_params};
use crate::shutdown::Phase;
use crate::station::Station;
use crate::stats::{ClientStats, GatewayStats};
use crate::tiers::TierController;

/// `GET /ws` and `GET /ws/stream`: upgrades if the Origin is allowed, the gateway is running and
/// under its cap.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Response {
    if !app.origins.allows(&headers) {
        app.stats.origin_rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(origin = ?headers.get(axum::http::header::ORIGIN), "WebSocket refused: origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    if *app.phase.borrow() != Phase::Running {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: reconnect to another instance\n",
        )
            .into_response();
    }
    let Ok(permit) = Arc::clone(&app.connections).try_acquire_owned() else {
        app.stats
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            max = app.max_connections,
            "connection refused: at WS_MAX_CONNECTIONS"
        );
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let context = ConnectionContext {
        stations: Arc::clone(&app.directory),
        phase: app.phase.clone(),
        conn_id: app.next_conn_id.fetch_add(1, Ordering::Relaxed),
        stats: Arc::clone(&app.stats),
        initial_tier: app.initial_tier,
        compressed: Arc::clone(&app.compressed),
    };
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket: WebSocket| async move {
            let (sink, stream) = socket.split();
            serve_connection(sink, stream, context).await;
            drop(permit);
        })
}

/// What a connection needs from the server.
#[derive(Clone, Debug)]
pub struct ConnectionContext {
    /// Where stations are looked up.
    pub stations: Arc<StationDirectory>,
    /// Shutdown phases.
    pub phase: watch::Receiver<Phase>,
    /// For logs, and to spread reconnects on drain.
    pub conn_id: u64,
    /// Where the connection's counters are registered.
    pub stats: Arc<GatewayStats>,
    /// Tier the connection starts in.
    pub initial_tier: Tier,
    /// The stations' Opus feeds, which `opus` listeners share with the HTTP ones.
    pub compressed: Arc<CompressedStreams>,
}

/// One message for the writer, with what it needs to time audio.
#[derive(Debug)]
struct Outgoing {
    message: Message,
    /// For audio: when synthd published the chunk, and the station when it was sent live
    /// (history replays are old by design and are not timed); its counters get the lateness.
    audio: Option<(u64, Option<Arc<Station>>)>,
}

/// Serves one connection until the client leaves, its socket blocks for too long, or shutdown
/// closes it. Generic over the socket halves so it runs over channels in tests.
pub async fn serve_connection<W, R>(sink: W, mut incoming: R, context: ConnectionContext)
where
    W: Sink<Message> + Unpin + Send + 'static,
    W::Error: std::fmt::Display,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let conn_id = context.conn_id;
    tracing::debug!(conn_id, "connection opened");
    let client = context.stats.register(conn_id, context.initial_tier);
    let tiers = Arc::new(Mutex::new(TierController::new(context.initial_tier)));
    let (out, out_rx) = mpsc::channel(CLIENT_QUEUE);
    let writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        WriterContext {
            conn_id,
            client: Arc::clone(&client),
            tiers: Arc::clone(&tiers),
            gateway: Arc::clone(&context.stats),
        },
    ));
    let mut connection = Connection {
        out,
        stations: context.stations,
        compressed: context.compressed,
        phase: context.phase,
        conn_id,
        control: ControlState::default(),
        live: None,
        limiter: FloodLimiter::control(Instant::now()),
        frames: FloodLimiter::frames(Instant::now()),
        reading_paused_until: None,
        flood_closed: false,
        last_limit_notice: None,
        client,
        tiers,
        gateway: Arc::clone(&context.stats),
    };
    connection.run(&mut incoming).await;
    drop(connection);
    if tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        tracing::warn!(conn_id, "writer did not finish");
    }
    context.stats.unregister(conn_id);
    tracing::debug!(conn_id, "connection closed");
}

/// What the writer task updates.
struct WriterContext {
    conn_id: u64,
    client: Arc<ClientStats>,
    tiers: Arc<Mutex<TierController>>,
    gateway: Arc<GatewayStats>,
}

fn lock_tiers(tiers: &Mutex<TierController>) -> std::sync::MutexGuard<'_, TierController> {
    tiers.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sends what the session queues; gives up on a client that accepts nothing for [`SEND_TIMEOUT`].
async fn write_loop<W>(mut sink: W, mut queue: mpsc::Receiver<Outgoing>, cx: WriterContext)
where
    W: Sink<Message> + Unpin,
    W::Error: std::fmt::Display,
{
    let conn_id = cx.conn_id;
    while let Some(Outgoing { message, audio }) = queue.recv().await {
        let closing = matches!(message, Message::Close(_));
        let bytes = match &message {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                cx.gateway.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(conn_id, %error, "send failed");
                return;
            }
            Err(_) => {
                cx.gateway.send_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    conn_id,
                    "client accepted nothing for {SEND_TIMEOUT:?}; disconnecting"
                );
                return;
            }
        }
        if let Some((publish_unix_ns, live)) = audio {
            cx.client.chunks_sent.fetch_add(1, Ordering::Relaxed);
            cx.client
                .bytes_sent
                .fetch_add(bytes as u64, Ordering::Relaxed);
            if let Some(station) = live {
                let lateness_ms = now_unix_ns().saturating_sub(publish_unix_ns) as f64 / 1e6;
                let mut tiers = lock_tiers(&cx.tiers);
                let (late, change) = tiers.on_chunk(lateness_ms);
                station.stats.record_delivery(lateness_ms, late);
                if late {
                    cx.client.late_chunks.fetch_add(1, Ordering::Relaxed);
                }
                let j = tiers.jitter();
                cx.client.set_tier(tiers.tier(), j.mean_ms(), j.std_ms());
                if let Some(change) = change {
                    tracing::debug!(
                        conn_id,
                        from = change.from.as_str(),
                        to = change.to.as_str(),
                        jitter_ms = j.mean_ms(),
                        "buffer tier changed"
                    );
                }
            }
        }
        if closing {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// Why the session must end.
#[derive(Clone, Copy, Debug)]
struct WriterGone;

struct Connection {
    out: mpsc::Sender<Outgoing>,
    stations: Arc<StationDirectory>,
    /// Where `opus` listeners join their station's Opus feed.
    compressed: Arc<CompressedStreams>,
    phase: watch::Receiver<Phase>,
    conn_id: u64,
    control: ControlState,
    live: Option<LiveStream>,
    /// Control messages (text and binary frames): 20 at once, 5 a second.
    limiter: FloodLimiter,
    /// Every frame, pings and pongs included, which cost a read (and a pong) even unanswered.
    frames: FloodLimiter,
    /// While a client is over a limit, nothing is read from it until then: its frames wait in
    /// the socket buffers, so TCP throttles the sender instead of our CPU answering it.
    reading_paused_until: Option<Instant>,
    /// Set when the connection is being closed for flooding (see [`drain_after_close`]).
    flood_closed: bool,
    /// When the latest `rate_limited` notice was sent.
    last_limit_notice: Option<Instant>,
    client: Arc<ClientStats>,
    tiers: Arc<Mutex<TierController>>,
    gateway: Arc<GatewayStats>,
}

async fn next_event(live: &mut Option<LiveStream>) -> LiveEvent {
    match live {
        Some(live) => live.next_event().await,
        None => std::future::pending().await,
    }
}

/// After a close for flooding: reads and drops what the client still sends until its close reply,
/// for [`CLOSE_DRAIN`] at most. Reading was paused, so the socket holds unread data; dropped with
/// it the kernel would answer with a reset, and the client could lose our close frame (1008).
async fn drain_after_close<R>(incoming: &mut R)
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Longest [`drain_after_close`] waits for a flooder's close reply.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// Completes when a pause in reading (`reading_paused_until`) ends; never while there is none.
async fn pause_ends(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until.into()).await,
        None => std::future::pending().await,
    }
}

async fn start_deadline(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until.into()).await,
        None => std::future::pending().await,
    }
}

impl Connection {
    async fn run<R>(&mut self, incoming: &mut R)
    where
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        // A connection accepted just before the drain began still hears about it.
        let phase = *self.phase.borrow_and_update();
        if let Phase::Draining { closes_at } = phase
            && self.send_draining(closes_at).await.is_err()
        {
            return;
        }
        loop {
            let starting_until = self.live.as_ref().and_then(|l| l.starting_until);
            let paused_until = self.reading_paused_until;
            let step = tokio::select! {
                changed = self.phase.changed() => {
                    let phase = if changed.is_ok() { *self.phase.borrow_and_update() } else { Phase::Closing };
                    match phase {
                        Phase::Running => Ok(()),
                        Phase::Draining { closes_at } => self.send_draining(closes_at).await,
                        Phase::Closing => {
                            let _ = self.close(close_code::AWAY, "server shutting down").await;
                            return;
                        }
                    }
                }
                () = pause_ends(paused_until) => {
                    self.reading_paused_until = None;
                    Ok(())
                }
                message = incoming.next(), if paused_until.is_none() => match message {
                    None | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) if !self.admit_frame() => {
                        self.gateway.flood_closes.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            conn_id = self.conn_id,
                            "closing a client that kept sending too many frames"
                        );
                        let _ = self.close(close_code::POLICY, "too many frames").await;
                        drain_after_close(incoming).await;
                        return;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    Some(Ok(Message::Text(text))) if text.len() > MAX_CLIENT_MESSAGE => {
                        let _ = self.close(close_code::SIZE, "message too big").await;
                        return;
                    }
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => self.on_binary().await,
                    Some(Err(error)) => {
                        if is_too_big(&error) {
                            tracing::debug!(conn_id = self.conn_id, "client message too big");
                            let _ = self.close(close_code::SIZE, "message too big").await;
                        } else {
                            tracing::debug!(conn_id = self.conn_id, %error, "receive failed");
                        }
                        return;
                    }
                },
                event = next_event(&mut self.live) => self.on_event(event).await,
                () = start_deadline(starting_until) => self.on_start_timeout().await,
                () = self.out.closed() => return,
            };
            if step.is_err() {
                if self.flood_closed {
                    drain_after_close(incoming).await;
                }
                return;
            }
        }
    }

    async fn send(&self, message: Message) -> Result<(), WriterGone> {
        self.out
            .send(Outgoing {
                message,
                audio: None,
            })
            .await
            .map_err(|_| WriterGone)
    }

    async fn send_json(&self, message: &ServerMessage) -> Result<(), WriterGone> {
        self.send(Message::Text(message.to_json().into())).await
    }

    async fn send_error(&self, error: &ProtocolError) -> Result<(), WriterGone> {
        self.send_json(&error.to_message()).await
    }

    async fn close(&self, code: u16, reason: &'static str) -> Result<(), WriterGone> {
        self.send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await
    }

    async fn send_draining(&self, closes_at: Instant) -> Result<(), WriterGone> {
        let closes_in_ms = closes_at
            .saturating_duration_since(Instant::now())
            .as_millis() as u64;
        // Spread the reconnects over 0.25..2 s so the clients do not all return at once.
        let spread = 250 + self.conn_id.wrapping_mul(7_919) % 1_750;
        self.send_json(&ServerMessage::Draining {
            reconnect_after_ms: spread.min(closes_in_ms),
            closes_in_ms,
            resume_from: self.live.as_ref().and_then(|l| l.next_seq),
        })
        .await
    }

    /// Counts one incoming frame against the frame-rate limit; false when the client has
    /// exceeded it for too long and must be closed. Over the limit, reading pauses until the next
    /// token (the frame itself was read already and is still handled).
    fn admit_frame(&mut self) -> bool {
        match self.frames.admit(Instant::now()) {
            Admission::Accept => true,
            Admission::Refuse => {
                self.pause_reading(self.frames.retry_after());
                true
            }
            Admission::Close => false,
        }
    }

    /// Stops reading from the client for `pause` (or longer, if a pause is already running).
    fn pause_reading(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        self.reading_paused_until = Some(self.reading_paused_until.map_or(until, |u| u.max(until)));
    }

    /// A binary frame is a control message the gateway cannot read: rate limited like the others.
    async fn on_binary(&mut self) -> Result<(), WriterGone> {
        if !self.admit_control().await? {
            return Ok(());
        }
        self.send_error(&ProtocolError::new(
            ErrorCode::BinaryNotSupported,
            "send control messages as JSON text frames",
        ))
        .await
    }

    /// Counts one control message (text or binary frame): `Ok(true)` to handle it. Over the
    /// limit it is ignored, answered `rate_limited` (once a second at most: answering every
    /// refused message would let the client amplify its flood into our queue) and reading pauses
    /// until the bucket has a token; a client that keeps flooding is closed with 1008.
    async fn admit_control(&mut self) -> Result<bool, WriterGone> {
        match self.limiter.admit(Instant::now()) {
            Admission::Accept => Ok(true),
            Admission::Refuse => {
                self.client.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.gateway.rate_limited.fetch_add(1, Ordering::Relaxed);
                let retry_after = self.limiter.retry_after();
                self.pause_reading(retry_after);
                let now = Instant::now();
                if self
                    .last_limit_notice
                    .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
                {
                    return Ok(false);
                }
                self.last_limit_notice = Some(now);
                let error = ProtocolError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "too many control messages (at most {} at once and {} per second); this \
                         one was ignored, retry in {} ms",
                        crate::config::CONTROL_BURST,
                        crate::config::CONTROL_RATE,
                        retry_after.as_millis().max(1)
                    ),
                );
                self.send_error(&error).await.map(|()| false)
            }
            Admission::Close => {
                self.gateway.flood_closes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    conn_id = self.conn_id,
                    "closing a client that kept flooding control messages"
                );
                let _ = self
                    .close(close_code::POLICY, "too many control messages")
                    .await;
                self.flood_closed = true;
                Err(WriterGone)
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), WriterGone> {
        if !self.admit_control().await? {
            return Ok(());
        }
        let plan = parse_client_message(text)
            .and_then(|request| self.control.handle(request, &self.stations));
        match plan {
            Err(error) => {
                if error.code == ErrorCode::StationLimit {
                    self.gateway
                        .station_limit_refusals
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.send_error(&error).await
            }
            Ok(Plan::Reply(message)) => {
                self.send_json(&message).await?;
                // A `set` of the format may need the other source (PCM broadcast, Opus feed).
                match &self.live {
                    Some(live) if !live.serves(self.control.format) => self.switch_source().await,
                    _ => Ok(()),
                }
            }
            Ok(Plan::Report(report)) => {
                self.on_report(&report);
                Ok(())
            }
            Ok(Plan::Unsubscribe) => {
                self.live = None;
                self.send_json(&ServerMessage::Ack {
                    action: "stop",
                    station: None,
                    format: None,
                    codec: None,
                    state: None,
                    first_seq: None,
                    params: None,
                })
                .await
            }
            Ok(Plan::Subscribe {
                resume_from,
                action,
                ack,
            }) => self.subscribe(resume_from, action, ack).await,
        }
    }

    fn on_report(&self, report: &Report) {
        let Some(underruns) = report.underruns else {
            return;
        };
        let mut tiers = lock_tiers(&self.tiers);
        let (new, change) = tiers.on_report(underruns);
        self.client
            .underruns_reported
            .fetch_add(new, Ordering::Relaxed);
        if let Some(live) = &self.live {
            live.station.stats.record_reported_underruns(new);
        }
        let j = tiers.jitter();
        self.client.set_tier(tiers.tier(), j.mean_ms(), j.std_ms());
        if let Some(change) = change {
            tracing::debug!(
                conn_id = self.conn_id,
                from = change.from.as_str(),
                to = change.to.as_str(),
                new,
                buffer_ms = report.buffer_ms,
                "buffer tier changed on a client report"
            );
        }
    }

    /// Joins `control.streaming`: a pre-roll (or the replay asked for) from the history, then live.
    async fn subscribe(
        &mut self,
        resume_from: Option<u64>,
        action: &'static str,
        ack: bool,
    ) -> Result<(), WriterGone> {
        let Some(station) = self.control.streaming.clone() else {
            return Ok(());
        };
        self.live = None;
        let format = self.control.format;
        let joined = match LiveStream::join(&station, format, &self.compressed, resume_from).await {
            Ok(joined) => joined,
            Err(error) => return self.on_join_failed(&station, &error).await,
        };
        if ack {
            self.send_json(&ServerMessage::Ack {
                action,
                station: Some(station.name.clone()),
                format: Some(format),
                codec: format.codec(),
                state: Some(if joined.starting { "starting" } else { "live" }),
                first_seq: joined.first_seq,
                params: station_params(&self.stations, &station.name),
            })
            .await?;
        }
        if let Some((lost, next_seq)) = joined.resumed {
            self.send_json(&ServerMessage::Status(StatusMessage {
                state: "resumed",
                station: Some(station.name.clone()),
                lost: Some(lost),
                next_seq: Some(next_seq),
                ..StatusMessage::default()
            }))
            .await?;
        }
        let mut stream = joined.stream;
        stream.starting_until = joined.starting.then(|| Instant::now() + START_TIMEOUT);
        self.live = Some(stream);
        for audio in &joined.backlog {
            self.send_audio(audio, false).await?;
        }
        Ok(())
    }

    /// Moves the stream to the source of the connection's format (after a `set` of the format,
    /// or when an Opus feed ended): continues at the next seq, without gap or duplicate as far
    /// as the new source's history reaches (a gap is told as `skipped`).
    async fn switch_source(&mut self) -> Result<(), WriterGone> {
        let Some(old) = self.live.take() else {
            return Ok(());
        };
        let station = Arc::clone(&old.station);
        let format = self.control.format;
        let joined = match LiveStream::join(&station, format, &self.compressed, old.next_seq).await
        {
            Ok(joined) => joined,
            Err(error) => return self.on_join_failed(&station, &error).await,
        };
        let mut stream = joined.stream;
        // The client's buffer is what it was: keep estimating it across the switch.
        stream.playout = old.playout;
        stream.starting_until = old.starting_until;
        if stream.next_seq.is_none() {
            stream.next_seq = old.next_seq;
        }
        drop(old);
        if let Some((lost, _)) = joined.resumed.filter(|(lost, _)| *lost > 0) {
            self.client
                .chunks_skipped
                .fetch_add(lost, Ordering::Relaxed);
            station.stats.record_skip(lost);
            self.send_json(&ServerMessage::Status(StatusMessage {
                state: "skipped",
                station: Some(station.name.clone()),
                missed: Some(lost),
                ..StatusMessage::default()
            }))
            .await?;
            stream.next_seq = None;
        }
        self.live = Some(stream);
        for audio in &joined.backlog {
            self.send_audio(audio, false).await?;
        }
        Ok(())
    }

    /// The station's Opus feed could not be joined: streaming stops, the client is told.
    async fn on_join_failed(
        &mut self,
        station: &Station,
        error: &crate::compressed::FeedError,
    ) -> Result<(), WriterGone> {
        tracing::error!(conn_id = self.conn_id, station = %station.name, %error, "cannot join the Opus feed");
        self.control.streaming = None;
        self.live = None;
        self.send_error(&ProtocolError::new(
            ErrorCode::StationUnavailable,
            format!(
                "station {:?} cannot be streamed as Opus now ({error}); streaming stopped, \
                 start again (or ask for pcm16)",
                station.name
            ),
        ))
        .await
    }

    async fn on_start_timeout(&mut self) -> Result<(), WriterGone> {
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        self.control.streaming = None;
        tracing::warn!(conn_id = self.conn_id, station = %live.station.name, "station produced no audio in time");
        self.send_error(&ProtocolError::new(
            ErrorCode::StationUnavailable,
            format!(
                "station {:?} produced no audio within {} s (are composer and synthd running?); \
                 streaming stopped, send start again to retry",
                live.station.name,
                START_TIMEOUT.as_secs()
            ),
        ))
        .await
    }

    async fn on_event(&mut self, event: LiveEvent) -> Result<(), WriterGone> {
        match event {
            LiveEvent::Audio(audio) => self.send_audio(&audio, true).await,
            LiveEvent::Notice(message) => self.send_json(&message).await,
            LiveEvent::SequenceReset => {
                if let Some(live) = &mut self.live {
                    live.next_seq = None;
                }
                Ok(())
            }
            LiveEvent::Removed => {
                let name = self.live.take().map(|l| l.station.name.clone());
                self.control.streaming = None;
                self.send_json(&ServerMessage::Status(StatusMessage {
                    state: "station_removed",
                    station: name,
                    ..StatusMessage::default()
                }))
                .await
            }
            LiveEvent::FeedEnded => {
                // Its encoder failed: a new feed continues at the next seq (or, if it cannot be
                // made either, streaming stops with an error).
                tracing::warn!(
                    conn_id = self.conn_id,
                    "the Opus feed ended; joining a new one"
                );
                self.switch_source().await
            }
            LiveEvent::Lagged(missed) => {
                tracing::debug!(
                    conn_id = self.conn_id,
                    missed,
                    "slow client skipped to live"
                );
                self.client
                    .chunks_skipped
                    .fetch_add(missed, Ordering::Relaxed);
                if let Some(live) = &self.live {
                    live.station.stats.record_skip(missed);
                }
                self.send_json(&ServerMessage::Status(StatusMessage {
                    state: "skipped",
                    station: self.live.as_ref().map(|l| l.station.name.clone()),
                    missed: Some(missed),
                    ..StatusMessage::default()
                }))
                .await
            }
            LiveEvent::Closed => {
                self.live = None;
                Ok(())
            }
        }
    }

    async fn send_audio(&mut self, audio: &Audio, live_send: bool) -> Result<(), WriterGone> {
        let format = self.control.format;
        let tier = self.client.tier();
        let Some(live) = &mut self.live else {
            return Ok(());
        };
        let seq = audio.seq();
        if live.next_seq.is_some_and(|next| seq < next) {
            return Ok(()); // already sent from the history
        }
        live.starting_until = None;
        live.next_seq = Some(seq + 1);
        let depth = live.playout.on_send(Instant::now(), live.queued_after(seq));
        let message = audio.message(format, depth, tier, live_send);
        self.out
            .send(Outgoing {
                message,
                audio: Some((
                    audio.publish_unix_ns(),
                    live_send.then(|| Arc::clone(&live.station)),
                )),
            })
            .await
            .map_err(|_| WriterGone)
    }
}

/// Whether a receive error is tungstenite refusing a message or frame over the size limit.
fn is_too_big(error: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("too long") || text.contains("Space limit exceeded") {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EncodedChunk;
    use shm_proto::CHUNK_SAMPLES;

    fn chunk(seq: u64) -> Arc<EncodedChunk> {
        Arc::new(EncodedChunk::encode("focus", seq, 0, &[0; CHUNK_SAMPLES]))
    }

    fn json(message: Message) -> serde_json::Value {
        match message {
            Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The connection handler over channels: start, audio, a client too slow to keep up skips to
    /// live and is told, and shutdown closes with 1001.
    #[tokio::test]
    async fn slow_client_skips_to_live_and_closing_sends_1001() {
        let stations = StationDirectory::new(shm_proto::Namespace::new("unit_ws").unwrap());
        let station = Station::new(0, "focus");
        stations.insert(Arc::clone(&station));
        let (phase_tx, phase) = watch::channel(Phase::Running);
        let (client_tx, client_rx) = mpsc::channel::<Message>(8);
        // Room for one message: a client that does not read blocks the writer at once.
        let (server_tx, mut server_rx) = mpsc::channel::<Message>(1);
        let incoming = Box::pin(futures_util::stream::unfold(
            client_rx,
            |mut rx| async move { rx.recv().await.map(|m| (Ok::<_, axum::Error>(m), rx)) },
        ));
        let sink = Box::pin(futures_util::sink::unfold(
            server_tx,
            |tx, message: Message| async move {
                tx.send(message).await.map_err(|_| "client gone")?;
                Ok::<_, &str>(tx)
            },
        ));
        let context = ConnectionContext {
            stations,
            phase,
            conn_id: 1,
            stats: Arc::new(GatewayStats::default()),
            initial_tier: Tier::Normal,
            compressed: Arc::default(),
        };
        let connection = tokio::spawn(serve_connection(sink, incoming, context));

        client_tx
            .send(Message::Text(
                r#"{"type":"control","action":"start","params":{"ack":true}}"#.into(),
            ))
            .await
            .unwrap();
        let ack = json(server_rx.recv().await.unwrap());
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["state"], "starting", "no audio yet");
        assert_eq!(station.listeners(), 1);
        station.publish(chunk(0));
        assert_eq!(json(server_rx.recv().await.unwrap())["seq"], 0);

        // The client stops reading while 300 chunks go by.
        for seq in 1..=300 {
            station.publish(chunk(seq));
            tokio::task::yield_now().await;
        }
        let mut skipped = None;
        let mut seqs = Vec::new();
        while seqs.last() != Some(&300) {
            let message = json(server_rx.recv().await.unwrap());
            match message["type"].as_str() {
                Some("audio") => seqs.push(message["seq"].as_u64().unwrap()),
                Some("status") => {
                    assert_eq!(message["state"], "skipped");
                    skipped = message["missed"].as_u64();
                }
                _ => panic!("unexpected {message}"),
            }
        }
        let missed = skipped.expect("a skipped status");
        assert!(missed > 0);
        assert!(seqs.windows(2).any(|w| w[1] > w[0] + 1), "a jump to live");
        assert!(seqs.len() < 300);

        phase_tx.send_replace(Phase::Closing);
        loop {
            match server_rx.recv().await {
                Some(Message::Close(Some(frame))) => {
                    assert_eq!(frame.code, close_code::AWAY);
                    break;
                }
                Some(_) => {}
                None => panic!("closed without a close frame"),
            }
        }
        connection.await.unwrap();
        assert_eq!(station.listeners(), 0);
    }
}
