//! Compressed encodings of a station's PCM, made once per station and format: Ogg/Opus (48 kHz,
//! resampled from 44.1 kHz) and MP3 (44.1 kHz), through the reference libraries (libopus, LAME).
//!
//! A [`ChunkEncoder`] turns each 100 ms chunk of interleaved s16 stereo into one self-contained
//! unit of the output stream: one Ogg page (five 20 ms Opus packets) or the MP3 frames LAME
//! completed. A listener joining late gets the stream header ([`ChunkEncoder::header`]: the
//! OpusHead and OpusTags pages; nothing for MP3) and then whole units, so it can always decode.
//!
//! | module | what |
//! |---|---|
//! | [`resample`] | 44.1 -> 48 kHz, band-limited (rubato's FFT resampler) |
//! | [`opus`] | libopus encoder: 20 ms packets at 96 kbit/s |
//! | [`ogg`] | Ogg/Opus mapping (RFC 7845): header pages, one page per chunk |
//! | [`mp3`] | LAME encoder: CBR 128 kbit/s joint stereo |

pub mod mp3;
pub mod ogg;
pub mod opus;
pub mod resample;

use bytes::{Bytes, BytesMut};

/// A compressed format served over HTTP (and Opus over the WebSocket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Ogg/Opus, 48 kHz stereo.
    Opus,
    /// MPEG-1 Layer III, 44.1 kHz stereo.
    Mp3,
}

impl Codec {
    /// From the file extension of `/stream/{station}.{ext}`.
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "opus" | "ogg" => Some(Self::Opus),
            "mp3" => Some(Self::Mp3),
            _ => None,
        }
    }

    /// The extension used in URLs and files.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::Mp3 => "mp3",
        }
    }

    /// HTTP `Content-Type` of the stream.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Opus => "audio/ogg",
            Self::Mp3 => "audio/mpeg",
        }
    }

    /// Nominal bit rate in kbit/s (`icy-br`).
    pub fn kbps(self) -> u32 {
        match self {
            Self::Opus => opus::BITRATE / 1000,
            Self::Mp3 => mp3::BITRATE_KBPS,
        }
    }
}

/// Why an encoder could not be made or failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// libopus refused a setting or a frame.
    #[error("opus: {0}")]
    Opus(#[from] ::opus::Error),
    /// LAME refused a setting or a frame.
    #[error("lame: {0}")]
    Lame(String),
    /// The resampler could not be built or run.
    #[error("resampler: {0}")]
    Resample(String),
    /// Writing an Ogg page failed.
    #[error("ogg: {0}")]
    Ogg(#[from] std::io::Error),
}

/// Little-endian s16 bytes as samples.
fn samples_of(pcm: &[u8]) -> Vec<i16> {
    pcm.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// One 100 ms chunk encoded: what the HTTP listeners get, and what the WebSocket ones get.
#[derive(Clone, Debug, Default)]
pub struct EncodedUnit {
    /// The next bytes of the HTTP stream: one Ogg page, or the MP3 frames LAME completed.
    pub stream: Bytes,
    /// Opus only: the chunk's packets (five of 20 ms), each prefixed by its length as u16 LE,
    /// the payload of a WebSocket `opus` frame. Empty for MP3.
    pub packets: Bytes,
}

/// One station's encoder for one format: 100 ms chunks in, stream units out.
#[derive(Debug)]
pub enum ChunkEncoder {
    /// Ogg/Opus.
    Opus(Box<ogg::OggOpusEncoder>),
    /// MP3.
    Mp3(Box<mp3::Mp3Encoder>),
}

impl ChunkEncoder {
    /// A fresh encoder (a new Ogg logical stream, a new LAME state).
    pub fn new(codec: Codec) -> Result<Self, EncodeError> {
        Ok(match codec {
            Codec::Opus => Self::Opus(Box::new(ogg::OggOpusEncoder::new()?)),
            Codec::Mp3 => Self::Mp3(Box::new(mp3::Mp3Encoder::new()?)),
        })
    }

    /// What every listener must receive first (the Ogg header pages; empty for MP3).
    pub fn header(&self) -> Bytes {
        match self {
            Self::Opus(e) => e.header(),
            Self::Mp3(_) => Bytes::new(),
        }
    }

    /// Encodes one chunk of interleaved stereo s16 at 44.1 kHz (little-endian bytes, as in the
    /// binary WebSocket frame) into the next unit of the stream (possibly empty for MP3 while
    /// LAME fills its first frame).
    pub fn encode_le_bytes(&mut self, pcm: &[u8]) -> Result<Bytes, EncodeError> {
        self.encode(&samples_of(pcm))
    }

    /// Encodes one chunk (interleaved stereo s16le bytes at 44.1 kHz) into the next unit of the
    /// stream and, for Opus, the same packets framed for the WebSocket ([`EncodedUnit::packets`]).
    pub fn encode_unit(&mut self, pcm: &[u8]) -> Result<EncodedUnit, EncodeError> {
        let samples = samples_of(pcm);
        match self {
            Self::Opus(e) => {
                // Five packets of at most a few hundred bytes at 96 kbit/s, plus their lengths.
                let mut packets = BytesMut::with_capacity(2048);
                let stream = e.encode_chunk_framed(&samples, &mut packets)?;
                Ok(EncodedUnit {
                    stream,
                    packets: packets.freeze(),
                })
            }
            Self::Mp3(e) => Ok(EncodedUnit {
                stream: e.encode(&samples)?,
                packets: Bytes::new(),
            }),
        }
    }

    /// Encodes interleaved stereo s16 at 44.1 kHz (one 100 ms chunk for Opus).
    pub fn encode(&mut self, samples: &[i16]) -> Result<Bytes, EncodeError> {
        match self {
            Self::Opus(e) => e.encode_chunk(samples),
            Self::Mp3(e) => e.encode(samples),
        }
    }

    /// Ends the stream (files): the last Ogg page or LAME's final frames.
    pub fn finish(&mut self) -> Result<Bytes, EncodeError> {
        match self {
            Self::Opus(e) => e.finish(),
            Self::Mp3(e) => e.finish(),
        }
    }

    /// An encoder for a file (`auralis render`): as [`Self::new`], but an Ogg/Opus file skips
    /// the resampler's delay too, so with [`Self::finish_with`] it decodes to exactly the
    /// samples given.
    pub fn for_file(codec: Codec) -> Result<Self, EncodeError> {
        Ok(match codec {
            Codec::Opus => Self::Opus(Box::new(ogg::OggOpusEncoder::for_file()?)),
            Codec::Mp3 => Self::Mp3(Box::new(mp3::Mp3Encoder::new()?)),
        })
    }

    /// Ends the stream after `tail` (interleaved stereo s16, less than one chunk): the last
    /// Ogg pages, the final one flagged end-of-stream with the exact final granule position;
    /// or the tail's MP3 frames and LAME's flush.
    pub fn finish_with(&mut self, tail: &[i16]) -> Result<Bytes, EncodeError> {
        match self {
            Self::Opus(e) => e.finish_with(tail),
            Self::Mp3(e) => {
                let mut out = e.encode(tail)?.to_vec();
                out.extend_from_slice(&e.finish()?);
                Ok(Bytes::from(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encoding cost per station, for BENCHMARKS.md ("Compressed streams"):
    /// `cargo test -p streamd --lib encode::tests::encoding_cost -- --ignored --nocapture`.
    /// (libopus is Debian's optimized build; LAME and rubato are built at opt-level 3 even in
    /// debug, see the workspace Cargo.toml.)
    #[test]
    #[ignore = "measurement, prints figures"]
    fn encoding_cost() {
        let chunks = 600; // 60 s of audio
        let pcm: Vec<Vec<i16>> = (0..chunks)
            .map(|c| {
                (0..4410)
                    .flat_map(|i| {
                        let t = (c * 4410 + i) as f64 / 44_100.0;
                        let s = ((t * 220.0 * std::f64::consts::TAU).sin()
                            + 0.5 * (t * 331.0 * std::f64::consts::TAU).sin()
                            + 0.25 * (t * 1_760.0 * std::f64::consts::TAU).sin())
                            * 8_000.0;
                        [s as i16, (s * 0.8) as i16]
                    })
                    .collect()
            })
            .collect();
        for codec in [Codec::Opus, Codec::Mp3] {
            let mut enc = ChunkEncoder::new(codec).unwrap();
            let mut bytes = 0;
            let started = cpu_time();
            for chunk in &pcm {
                bytes += enc.encode(chunk).unwrap().len();
            }
            let cpu = cpu_time() - started;
            println!(
                "{codec:?}: {:.2} ms CPU per 100 ms chunk = {:.2} % of a core per station; {:.1} kbit/s",
                cpu * 1000.0 / chunks as f64,
                cpu / (chunks as f64 * 0.1) * 100.0,
                bytes as f64 * 8.0 / (chunks as f64 * 0.1) / 1000.0,
            );
        }
    }

    /// This thread's CPU time in seconds.
    fn cpu_time() -> f64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}
