//! LAME: constant 128 kbit/s joint stereo at 44.1 kHz (no resampling), quality 5 (LAME's `-q 5`:
//! the usual streaming setting, about half the CPU of the best psychoacoustics).

use bytes::Bytes;
use mp3lame_encoder::{Bitrate, Builder, Encoder, FlushNoGap, InterleavedPcm, Mode, Quality};

use super::EncodeError;

/// Bit rate in kbit/s.
pub const BITRATE_KBPS: u32 = 128;

/// One LAME state.
pub struct Mp3Encoder {
    /// The encoder (its bit reservoir carries over between chunks).
    lame: Encoder,
    /// Output buffer, reused.
    out: Vec<u8>,
}

impl std::fmt::Debug for Mp3Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp3Encoder").finish_non_exhaustive()
    }
}

fn lame_error(e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Lame(e.to_string())
}

impl Mp3Encoder {
    /// A CBR encoder for 44.1 kHz stereo.
    pub fn new() -> Result<Self, EncodeError> {
        let mut builder = Builder::new().ok_or_else(|| lame_error("lame_init failed"))?;
        builder.set_num_channels(2).map_err(lame_error)?;
        builder.set_sample_rate(44_100).map_err(lame_error)?;
        builder.set_brate(Bitrate::Kbps128).map_err(lame_error)?;
        builder.set_mode(Mode::JointStereo).map_err(lame_error)?;
        builder.set_quality(Quality::Good).map_err(lame_error)?;
        builder
            .set_vbr_mode(mp3lame_encoder::VbrMode::Off)
            .map_err(lame_error)?;
        builder.set_to_write_vbr_tag(false).map_err(lame_error)?;
        let lame = builder.build().map_err(lame_error)?;
        Ok(Self {
            lame,
            out: Vec::new(),
        })
    }

    /// Encodes interleaved stereo s16; returns the frames LAME completed.
    pub fn encode(&mut self, samples: &[i16]) -> Result<Bytes, EncodeError> {
        self.out.clear();
        self.out
            .reserve(mp3lame_encoder::max_required_buffer_size(samples.len() / 2));
        self.lame
            .encode_to_vec(InterleavedPcm(samples), &mut self.out)
            .map_err(lame_error)?;
        Ok(Bytes::copy_from_slice(&self.out))
    }

    /// LAME's last frames (for files).
    pub fn finish(&mut self) -> Result<Bytes, EncodeError> {
        self.out.clear();
        self.out.reserve(7200);
        self.lame
            .flush_to_vec::<FlushNoGap>(&mut self.out)
            .map_err(lame_error)?;
        Ok(Bytes::copy_from_slice(&self.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_with_mpeg_sync_words() {
        let mut enc = Mp3Encoder::new().unwrap();
        let mut all = Vec::new();
        for _ in 0..10 {
            all.extend_from_slice(&enc.encode(&[0; 8820]).unwrap());
        }
        assert!(all.len() > 10_000, "~1 s at 128 kbit/s, got {}", all.len());
        assert_eq!(all[0], 0xFF);
        assert_eq!(all[1] & 0xE0, 0xE0);
    }
}
