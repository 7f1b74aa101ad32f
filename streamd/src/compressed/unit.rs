//! [`FeedUnit`]: one 100 ms chunk of a station in a compressed format, and the WebSocket `opus`
//! frame of the same packets, built once and shared by the listeners.

use bytes::{BufMut as _, Bytes, BytesMut};

use crate::encode::EncodedUnit;
use crate::protocol::{
    BINARY_FORMAT_OPUS, BINARY_HEADER_LEN, OPUS_SAMPLE_RATE, Tier, finish_binary, put_binary_header,
};
use crate::variants::Variants;

/// One 100 ms chunk of a station in a compressed format, shared by every listener of the feed.
#[derive(Debug)]
pub struct FeedUnit {
    /// The station seq of the chunk it encodes.
    pub seq: u64,
    /// When synthd published that chunk (the timing base of the listeners' lateness).
    pub publish_unix_ns: u64,
    /// The bytes of the HTTP stream: one Ogg page (five Opus packets) or MP3 frames.
    pub stream: Bytes,
    /// Opus only: the WebSocket frame of the same packets.
    ws: Option<WsFrame>,
}

/// A WebSocket `opus` frame, built once per unit: the 40-byte header and the length-prefixed
/// packets, then per client only the tier and `buffer_depth` differ.
#[derive(Debug)]
struct WsFrame {
    /// The frame with zero in the per-client fields.
    shared: Bytes,
    /// Finished frames by (tier, depth), for reuse by the next client with the same values.
    variants: Variants<Bytes>,
}

impl FeedUnit {
    pub(super) fn new(seq: u64, publish_unix_ns: u64, encoded: EncodedUnit) -> Self {
        let ws = (!encoded.packets.is_empty()).then(|| {
            let mut frame = BytesMut::with_capacity(BINARY_HEADER_LEN + encoded.packets.len());
            put_binary_header(
                &mut frame,
                seq,
                publish_unix_ns,
                OPUS_SAMPLE_RATE,
                BINARY_FORMAT_OPUS,
            );
            frame.put_slice(&encoded.packets);
            WsFrame {
                shared: frame.freeze(),
                variants: Variants::default(),
            }
        });
        Self {
            seq,
            publish_unix_ns,
            stream: encoded.stream,
            ws,
        }
    }

    /// The WebSocket `opus` frame for a client with this `buffer_depth` and tier (`None` for
    /// MP3). Live listeners share a few finished frames (`reuse`); a replay from the history is
    /// one client's alone and is not kept.
    pub fn ws_frame_for(&self, buffer_depth: u32, tier: Tier, reuse: bool) -> Option<Bytes> {
        let ws = self.ws.as_ref()?;
        if !reuse {
            return Some(finish_binary(&ws.shared, buffer_depth, tier));
        }
        Some(ws.variants.get_or_finish(tier, buffer_depth, || {
            finish_binary(&ws.shared, buffer_depth, tier)
        }))
    }
}
