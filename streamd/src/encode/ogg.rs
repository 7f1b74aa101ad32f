//! The Ogg encapsulation of Opus (RFC 7845): an OpusHead page, an OpusTags page, then one page
//! per 100 ms chunk holding its five 20 ms packets, the granule position counting 48 kHz samples
//! from the start of the logical stream (pre-skip included).

use std::io::Cursor;

use bytes::{BufMut as _, Bytes, BytesMut};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::EncodeError;
use super::opus::{FRAME, OpusPackets};
use super::resample::Resampler48;

/// Resampler, Opus encoder and Ogg page writer of one stream.
pub struct OggOpusEncoder {
    /// 44.1 -> 48 kHz.
    resampler: Resampler48,
    /// libopus.
    opus: OpusPackets,
    /// Pages are written here and taken out after each chunk.
    pages: PacketWriter<'static, Cursor<Vec<u8>>>,
    /// Ogg logical stream serial (random per encoder, so a restarted feed is a new stream).
    serial: u32,
    /// Granule position: 48 kHz samples per channel encoded so far.
    granule: u64,
    /// 48 kHz samples not yet encoded (interleaved; less than one packet between chunks).
    pending: Vec<f32>,
    /// OpusHead and OpusTags pages.
    header: Bytes,
    /// 44.1 kHz frames received, to place the end of a file exactly ([`Self::finish_with`]).
    input_frames: u64,
}

impl std::fmt::Debug for OggOpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusEncoder")
            .field("serial", &self.serial)
            .field("granule", &self.granule)
            .finish_non_exhaustive()
    }
}

impl OggOpusEncoder {
    /// A new logical stream (live); its header pages are ready at once.
    pub fn new() -> Result<Self, EncodeError> {
        Self::with_delay_trim(false)
    }

    /// A new logical stream for a file: the resampler's delay is skipped as well as libopus's
    /// look-ahead, so decoding it gives back exactly the samples given, no more, no less (with
    /// [`Self::finish_with`]).
    pub fn for_file() -> Result<Self, EncodeError> {
        Self::with_delay_trim(true)
    }

    fn with_delay_trim(trim_resampler: bool) -> Result<Self, EncodeError> {
        let opus = OpusPackets::new()?;
        let resampler = Resampler48::new()?;
        let extra = if trim_resampler { resampler.delay() } else { 0 };
        // OpusHead's pre-skip: libopus's look-ahead, plus the resampler's delay for files (so a
        // file starts on its first sample; the live stream keeps the shorter one).
        let pre_skip = u16::try_from(usize::from(opus.pre_skip) + extra).unwrap_or(u16::MAX);
        let serial = stream_serial();
        let mut pages = PacketWriter::new(Cursor::new(Vec::new()));
        pages.write_packet(opus_head(pre_skip), serial, PacketWriteEndInfo::EndPage, 0)?;
        pages.write_packet(opus_tags(), serial, PacketWriteEndInfo::EndPage, 0)?;
        let header = Bytes::from(std::mem::take(pages.inner_mut().get_mut()));
        pages.inner_mut().set_position(0);
        Ok(Self {
            resampler,
            opus,
            pages,
            serial,
            granule: 0,
            pending: Vec::with_capacity(2 * (super::resample::FRAMES_OUT + FRAME)),
            header,
            input_frames: 0,
        })
    }

    /// The OpusHead and OpusTags pages.
    pub fn header(&self) -> Bytes {
        self.header.clone()
    }

    /// One chunk of 44.1 kHz interleaved s16 -> one Ogg page (its packets complete).
    pub fn encode_chunk(&mut self, samples: &[i16]) -> Result<Bytes, EncodeError> {
        self.encode_chunk_into(samples, None)
    }

    /// As [`Self::encode_chunk`], and also appends the same packets to `framed`, each prefixed by
    /// its length (u16 LE): the payload of a WebSocket `opus` frame, so the Ogg listeners and the
    /// WebSocket listeners of a station share one encoding.
    pub fn encode_chunk_framed(
        &mut self,
        samples: &[i16],
        framed: &mut BytesMut,
    ) -> Result<Bytes, EncodeError> {
        self.encode_chunk_into(samples, Some(framed))
    }

    fn encode_chunk_into(
        &mut self,
        samples: &[i16],
        mut framed: Option<&mut BytesMut>,
    ) -> Result<Bytes, EncodeError> {
        self.input_frames += (samples.len() / 2) as u64;
        self.resampler.process(samples, &mut self.pending)?;
        let packets = self.pending.len() / (2 * FRAME);
        for n in 0..packets {
            let packet = self
                .opus
                .encode(&self.pending[n * 2 * FRAME..(n + 1) * 2 * FRAME])?;
            if let Some(framed) = framed.as_deref_mut() {
                // libopus packets are at most 1275 bytes per frame (RFC 6716 §3.2.1); the
                // buffer it writes into is 4000: both fit a u16.
                framed.put_u16_le(packet.len() as u16);
                framed.put_slice(&packet);
            }
            self.granule += FRAME as u64;
            let end = if n + 1 == packets {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.pages
                .write_packet(packet, self.serial, end, self.granule)?;
        }
        self.pending.drain(..packets * 2 * FRAME);
        Ok(self.take_pages())
    }

    /// Ends the logical stream: [`Self::finish_with`] no further samples.
    pub fn finish(&mut self) -> Result<Bytes, EncodeError> {
        self.finish_with(&[])
    }

    /// Ends the logical stream (files) after `tail` (interleaved s16, less than one chunk):
    /// encodes the tail and enough silence to push every sample given through the resampler and
    /// libopus's look-ahead, then writes the last page flagged end-of-stream, its granule position
    /// set so that a decoder stops exactly after the last sample given (RFC 7845 §4.5).
    pub fn finish_with(&mut self, tail: &[i16]) -> Result<Bytes, EncodeError> {
        use super::resample::FRAMES_IN;
        if !tail.is_empty() {
            self.input_frames += (tail.len() / 2) as u64;
            self.resampler.process(tail, &mut self.pending)?;
        }
        // 48 kHz samples the input stands for (44,100 : 48,000 = 147 : 160), rounded.
        let real = (self.input_frames * 160 + 73) / 147;
        // The last input sample leaves libopus after its look-ahead and the resampler's delay.
        let end = u64::from(self.opus.pre_skip) + self.resampler.delay() as u64 + real;
        // Push silence through until every sample given is out of the resampler (one chunk is
        // enough: the delays add up to less than a chunk).
        for _ in 0..3 {
            if self.granule + (self.pending.len() / 2) as u64 >= end {
                break;
            }
            self.resampler
                .process(&[0; 2 * FRAMES_IN], &mut self.pending)?;
        }
        let short = self.pending.len() % (2 * FRAME);
        if short != 0 {
            self.pending
                .resize(self.pending.len() + 2 * FRAME - short, 0.0);
        }
        let packets = (self.pending.len() / (2 * FRAME)).max(1);
        if self.pending.is_empty() {
            self.pending.resize(2 * FRAME, 0.0);
        }
        let last_granule = end.max(self.granule);
        for n in 0..packets {
            let packet = self
                .opus
                .encode(&self.pending[n * 2 * FRAME..(n + 1) * 2 * FRAME])?;
            self.granule += FRAME as u64;
            let (end_info, granule) = if n + 1 == packets {
                (PacketWriteEndInfo::EndStream, last_granule)
            } else {
                (
                    PacketWriteEndInfo::NormalPacket,
                    self.granule.min(last_granule),
                )
            };
            self.pages
                .write_packet(packet, self.serial, end_info, granule)?;
        }
        self.pending.clear();
        Ok(self.take_pages())
    }

    fn take_pages(&mut self) -> Bytes {
        let bytes = Bytes::from(std::mem::take(self.pages.inner_mut().get_mut()));
        self.pages.inner_mut().set_position(0);
        bytes
    }
}

/// A serial unlikely to repeat: a restarted feed must not look like the same logical stream.
fn stream_serial() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
    (mixed >> 32) as u32
}

/// The identification header (RFC 7845 §5.1): version 1, stereo, pre-skip, the input rate we
/// resample from (informational), no gain, mapping family 0.
fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1);
    head.push(2);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&44_100u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    head
}

/// The comment header (RFC 7845 §5.2): vendor string and one comment.
fn opus_tags() -> Vec<u8> {
    let vendor = format!("auralis streamd (libopus {})", ::opus::version());
    let comments = ["TITLE=Auralis"];
    let mut tags = Vec::with_capacity(64 + vendor.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for comment in comments {
        tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        tags.extend_from_slice(comment.as_bytes());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_one_page_per_chunk_with_growing_granules() {
        let mut enc = OggOpusEncoder::new().unwrap();
        let header = enc.header();
        assert_eq!(&header[..4], b"OggS");
        assert_eq!(
            header[5] & 0x02,
            0x02,
            "first page flagged beginning-of-stream"
        );
        let mut granules = Vec::new();
        for _ in 0..3 {
            let page = enc.encode_chunk(&[0; 8820]).unwrap();
            assert_eq!(&page[..4], b"OggS");
            granules.push(u64::from_le_bytes(page[6..14].try_into().unwrap()));
        }
        assert_eq!(granules, [4800, 9600, 14400]);
    }

    #[test]
    fn framed_packets_are_the_page_s_packets_with_their_lengths() {
        let mut enc = OggOpusEncoder::new().unwrap();
        let samples: Vec<i16> = (0..8820).map(|i| ((i * 37) % 2_000) as i16).collect();
        let mut framed = BytesMut::new();
        let page = enc.encode_chunk_framed(&samples, &mut framed).unwrap();
        // The page body is the packets back to back; its lacing values give their lengths.
        let segments = usize::from(page[26]);
        let body = &page[27 + segments..];
        let mut lengths = Vec::new();
        let mut run = 0;
        for &lace in &page[27..27 + segments] {
            run += usize::from(lace);
            if lace < 255 {
                lengths.push(run);
                run = 0;
            }
        }
        assert_eq!(lengths.len(), 5, "five 20 ms packets per chunk");
        let mut at = 0;
        let mut offset = 0;
        for len in lengths {
            assert_eq!(
                usize::from(u16::from_le_bytes([framed[at], framed[at + 1]])),
                len
            );
            assert_eq!(&framed[at + 2..at + 2 + len], &body[offset..offset + len]);
            at += 2 + len;
            offset += len;
        }
        assert_eq!(at, framed.len(), "nothing else in the payload");
    }

    #[test]
    fn a_file_ends_with_an_end_of_stream_page_at_the_exact_length() {
        let mut enc = OggOpusEncoder::for_file().unwrap();
        let pre_skip = u64::from(u16::from_le_bytes([
            enc.header[28 + 10],
            enc.header[28 + 11],
        ]));
        assert_eq!(
            pre_skip,
            312 + 2400,
            "look-ahead plus the resampler's delay"
        );
        for _ in 0..2 {
            enc.encode_chunk(&[100; 8820]).unwrap();
        }
        let last = enc.finish_with(&[100; 2 * 1000]).unwrap();
        // Walk to the last page.
        let mut at = 0;
        let mut final_page = (0u8, 0u64);
        while at < last.len() {
            assert_eq!(&last[at..at + 4], b"OggS");
            let segments = usize::from(last[at + 26]);
            let body: usize = last[at + 27..at + 27 + segments]
                .iter()
                .map(|&l| usize::from(l))
                .sum();
            final_page = (
                last[at + 5],
                u64::from_le_bytes(last[at + 6..at + 14].try_into().unwrap()),
            );
            at += 27 + segments + body;
        }
        assert_eq!(final_page.0 & 0x04, 0x04, "flagged end-of-stream");
        let frames_in = 2 * 4410 + 1000;
        assert_eq!(final_page.1 - pre_skip, (frames_in * 160 + 73) / 147);
    }
}
