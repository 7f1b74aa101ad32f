//! What one connection streams: a station's audio taken from the station's broadcast of PCM
//! chunks (formats `json` and `pcm16`) or from its Opus feed (`opus`, shared with the HTTP
//! `.opus` listeners), joined at a seq: the pre-roll, the `resume_from` replay, or the seq a
//! format switch continues at. Both sources keep the same history and give the same events, so
//! the connection ([`crate::ws`]) treats them alike.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Message;
use tokio::sync::broadcast::error::RecvError;

use crate::compressed::{
    CompressedStreams, FeedEnd, FeedError, FeedItem, FeedSubscription, FeedUnit,
};
use crate::config::PREROLL_CHUNKS;
use crate::encode::Codec;
use crate::protocol::{EncodedChunk, Format, ServerMessage, Tier};
use crate::session::PlayoutEstimate;
use crate::station::{ListenerGuard, Station, StationEvent};

/// One chunk of audio, in the form its source made it.
#[derive(Clone, Debug)]
pub enum Audio {
    /// PCM, encoded once per station as JSON and as a `pcm16` frame.
    Pcm(Arc<EncodedChunk>),
    /// Opus packets, encoded once per station for HTTP and WebSocket listeners.
    Opus(Arc<FeedUnit>),
}

impl Audio {
    /// Station seq.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Pcm(c) => c.seq,
            Self::Opus(u) => u.seq,
        }
    }

    /// When synthd published the chunk.
    pub fn publish_unix_ns(&self) -> u64 {
        match self {
            Self::Pcm(c) => c.publish_unix_ns,
            Self::Opus(u) => u.publish_unix_ns,
        }
    }

    /// The audio message of one client. `live`: the chunk goes to every live listener now, so
    /// a message finished for these values is kept for the next client with the same ones.
    pub fn message(&self, format: Format, buffer_depth: u32, tier: Tier, live: bool) -> Message {
        match (self, format) {
            (Self::Pcm(c), Format::Json) => Message::Text(c.json_message(buffer_depth, tier, live)),
            (Self::Pcm(c), Format::Pcm16 | Format::Opus) => {
                Message::Binary(c.binary_message(buffer_depth, tier, live))
            }
            (Self::Opus(u), _) => {
                Message::Binary(u.ws_frame_for(buffer_depth, tier, live).unwrap_or_default())
            }
        }
    }
}

/// What a [`LiveStream`] hears.
#[derive(Debug)]
pub enum LiveEvent {
    /// The next chunk.
    Audio(Audio),
    /// A status of the station's source, sent as is.
    Notice(Arc<ServerMessage>),
    /// The station's sequence restarted.
    SequenceReset,
    /// The station was removed.
    Removed,
    /// The Opus feed ended for another reason (its encoder failed): join again.
    FeedEnded,
    /// This connection fell this many items behind live and skipped them.
    Lagged(u64),
    /// The station's channel closed.
    Closed,
}

/// Where the chunks come from.
#[derive(Debug)]
enum Source {
    /// The station's broadcast (formats `json` and `pcm16`).
    Pcm(tokio::sync::broadcast::Receiver<StationEvent>),
    /// The station's Opus feed.
    Opus(FeedSubscription),
}

/// A station being streamed to one connection.
#[derive(Debug)]
pub struct LiveStream {
    /// The station.
    pub station: Arc<Station>,
    /// Its broadcast or its Opus feed.
    source: Source,
    /// Keeps the station's listener count (and demand) up while streaming.
    _guard: ListenerGuard,
    /// The seq this client gets next (older ones are duplicates of what it has).
    pub next_seq: Option<u64>,
    /// The server's estimate of the client's buffer, for `buffer_depth`.
    pub playout: PlayoutEstimate,
    /// While a station created for this client's parameters has produced nothing yet: when to
    /// give up on it.
    pub starting_until: Option<Instant>,
}

/// A stream just joined, and what to send before its live chunks.
#[derive(Debug)]
pub struct Joined {
    /// The stream.
    pub stream: LiveStream,
    /// Chunks from the history to send first (pre-roll or replay), oldest first.
    pub backlog: Vec<Audio>,
    /// With `resume_from`: (chunks lost, seq that follows).
    pub resumed: Option<(u64, u64)>,
    /// The seq of the first audio message that follows, when known.
    pub first_seq: Option<u64>,
    /// The station has produced nothing yet (one just created for these parameters).
    pub starting: bool,
}

impl LiveStream {
    /// Joins `station` in `format` from `resume_from` (a reconnecting client, or the next seq of
    /// a format switch), else with a pre-roll of [`PREROLL_CHUNKS`]; then live.
    pub async fn join(
        station: &Arc<Station>,
        format: Format,
        compressed: &Arc<CompressedStreams>,
        resume_from: Option<u64>,
    ) -> Result<Joined, FeedError> {
        let (source, guard, history) = if format == Format::Opus {
            let guard = station.listen();
            let mut feed = compressed
                .subscribe(station, Codec::Opus, resume_from)
                .await?;
            let history: Vec<Audio> = std::mem::take(&mut feed.history)
                .into_iter()
                .map(Audio::Opus)
                .collect();
            (Source::Opus(feed), guard, history)
        } else {
            let subscription = station.subscribe();
            let history = subscription.history.into_iter().map(Audio::Pcm).collect();
            (
                Source::Pcm(subscription.events),
                subscription.guard,
                history,
            )
        };
        let newest = history.last().map(Audio::seq);
        let (start, resumed) = plan_backlog(&history, resume_from, station.latest_seq());
        let mut backlog = history;
        backlog.drain(..start);
        let first_seq = backlog.first().map(Audio::seq).or(newest.map(|n| n + 1));
        let starting = newest.is_none() && !station.is_live();
        Ok(Joined {
            stream: LiveStream {
                station: Arc::clone(station),
                source,
                _guard: guard,
                // Nothing lost: older chunks arriving live are ones this client already has.
                next_seq: resumed
                    .filter(|(lost, _)| *lost == 0 && newest.is_some())
                    .map(|(_, next)| next),
                playout: PlayoutEstimate::new(),
                starting_until: None,
            },
            backlog,
            resumed,
            first_seq,
            starting,
        })
    }

    /// Whether this stream's source serves `format` (the PCM broadcast serves both PCM formats).
    pub fn serves(&self, format: Format) -> bool {
        matches!(self.source, Source::Opus(_)) == (format == Format::Opus)
    }

    /// Chunks already available behind `seq` at the server (for `buffer_depth`).
    pub fn queued_after(&self, seq: u64) -> u64 {
        let latest = match &self.source {
            Source::Pcm(_) => self.station.latest_seq(),
            Source::Opus(feed) => feed.feed().latest_seq(),
        };
        latest.map_or(0, |latest| latest.saturating_sub(seq))
    }

    /// The next event of the source.
    pub async fn next_event(&mut self) -> LiveEvent {
        match &mut self.source {
            Source::Pcm(events) => match events.recv().await {
                Ok(StationEvent::Chunk(chunk)) => LiveEvent::Audio(Audio::Pcm(chunk)),
                Ok(StationEvent::Notice(message)) => LiveEvent::Notice(message),
                Ok(StationEvent::SequenceReset) => LiveEvent::SequenceReset,
                Ok(StationEvent::Removed) => LiveEvent::Removed,
                Err(RecvError::Lagged(missed)) => LiveEvent::Lagged(missed),
                Err(RecvError::Closed) => LiveEvent::Closed,
            },
            Source::Opus(feed) => match feed.items.recv().await {
                Ok(FeedItem::Unit(unit)) => LiveEvent::Audio(Audio::Opus(unit)),
                Ok(FeedItem::Notice(message)) => LiveEvent::Notice(message),
                Ok(FeedItem::SequenceReset) => LiveEvent::SequenceReset,
                Ok(FeedItem::End(FeedEnd::StationRemoved)) => LiveEvent::Removed,
                Ok(FeedItem::End(FeedEnd::Failed | FeedEnd::Idle)) | Err(RecvError::Closed) => {
                    LiveEvent::FeedEnded
                }
                Err(RecvError::Lagged(missed)) => LiveEvent::Lagged(missed),
            },
        }
    }
}

/// Where a joining client starts in `history` (seqs ascending): index of the first chunk to send
/// and, with `resume_from`, (chunks lost, seq that follows). `latest` (the station's newest seq)
/// caps a `resume_from` from the future.
fn plan_backlog(
    history: &[Audio],
    resume_from: Option<u64>,
    latest: Option<u64>,
) -> (usize, Option<(u64, u64)>) {
    let preroll = history.len().saturating_sub(PREROLL_CHUNKS);
    match (resume_from, history.first().map(Audio::seq)) {
        (Some(from), Some(oldest)) if from >= oldest => {
            let start = history
                .iter()
                .position(|c| c.seq() >= from)
                .unwrap_or(history.len());
            match history.get(start) {
                // In the history; anything missing before it fell in a gap of the source.
                Some(first) => (start, Some((first.seq() - from, first.seq()))),
                // Up to date: live follows.
                None => {
                    let newest = history.last().map_or(from, Audio::seq);
                    let live = latest.map_or(newest, |l| l.max(newest));
                    (start, Some((0, from.min(live + 1))))
                }
            }
        }
        (Some(from), Some(_)) => {
            let next = history[preroll].seq();
            (preroll, Some((next.saturating_sub(from), next)))
        }
        // Empty history: nothing to replay, and nothing known to be lost.
        (Some(from), None) => (0, Some((0, from))),
        (None, _) => (preroll, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm_proto::CHUNK_SAMPLES;

    fn history(seqs: impl IntoIterator<Item = u64>) -> Vec<Audio> {
        seqs.into_iter()
            .map(|seq| {
                Audio::Pcm(Arc::new(EncodedChunk::encode(
                    "focus",
                    seq,
                    0,
                    &[0; CHUNK_SAMPLES],
                )))
            })
            .collect()
    }

    #[test]
    fn backlog_is_a_preroll_a_replay_or_what_is_left() {
        let h = history(10..30);
        assert_eq!(
            plan_backlog(&h, None, Some(29)),
            (15, None),
            "5 of pre-roll"
        );
        assert_eq!(plan_backlog(&h, Some(22), Some(29)), (12, Some((0, 22))));
        assert_eq!(
            plan_backlog(&h, Some(30), Some(29)),
            (20, Some((0, 30))),
            "up to date"
        );
        // The station is one chunk ahead of this source (an Opus feed still encoding it): the
        // client continues there, nothing replayed and nothing skipped.
        assert_eq!(plan_backlog(&h, Some(31), Some(30)), (20, Some((0, 31))));
        assert_eq!(
            plan_backlog(&h, Some(900), Some(29)),
            (20, Some((0, 30))),
            "from the future"
        );
        assert_eq!(
            plan_backlog(&h, Some(4), Some(29)),
            (15, Some((21, 25))),
            "too old"
        );
        assert_eq!(plan_backlog(&[], Some(4), None), (0, Some((0, 4))));
        assert_eq!(plan_backlog(&[], None, None), (0, None));
        // A gap in the history (a source that fell behind) is counted as lost.
        let gappy = history([10, 11, 15, 16, 17]);
        assert_eq!(plan_backlog(&gappy, Some(12), Some(17)), (2, Some((3, 15))));
    }
}
