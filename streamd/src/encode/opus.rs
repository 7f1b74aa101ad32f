//! The libopus encoder: 20 ms packets of 48 kHz stereo at [`BITRATE`].

use ::opus::{Application, Bitrate, Channels, Encoder};

use super::EncodeError;

/// Bit rate of every Opus stream (VBR around it).
pub const BITRATE: u32 = 96_000;
/// Samples per channel in one 20 ms packet at 48 kHz.
pub const FRAME: usize = 960;
/// libopus's look-ahead at 48 kHz for [`Application::Audio`] (2.5 ms + 4 ms of delay
/// compensation): the pre-skip of a live stream, announced to WebSocket clients in the `ack`
/// before any encoder exists (checked against libopus in the tests).
pub const LOOKAHEAD: u16 = 312;
/// Largest packet libopus may produce (its recommended output buffer).
const MAX_PACKET: usize = 4000;

/// libopus, set up for music.
pub struct OpusPackets {
    /// The encoder state (its analysis carries over between packets).
    encoder: Encoder,
    /// Samples (per channel) the decoder must drop at the start: the encoder's look-ahead,
    /// written as the pre-skip in OpusHead.
    pub pre_skip: u16,
}

impl std::fmt::Debug for OpusPackets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusPackets")
            .field("pre_skip", &self.pre_skip)
            .finish_non_exhaustive()
    }
}

impl OpusPackets {
    /// A stereo music encoder at [`BITRATE`].
    pub fn new() -> Result<Self, EncodeError> {
        let mut encoder = Encoder::new(48_000, Channels::Stereo, Application::Audio)?;
        encoder.set_bitrate(Bitrate::Bits(BITRATE as i32))?;
        let pre_skip = encoder.get_lookahead()?.clamp(0, i32::from(u16::MAX)) as u16;
        Ok(Self { encoder, pre_skip })
    }

    /// Encodes one 20 ms frame (interleaved f32, [`FRAME`] frames) into a packet.
    pub fn encode(&mut self, frame: &[f32]) -> Result<Vec<u8>, EncodeError> {
        Ok(self.encoder.encode_vec_float(frame, MAX_PACKET)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_look_ahead_is_libopus_s() {
        assert_eq!(OpusPackets::new().unwrap().pre_skip, LOOKAHEAD);
    }
}
