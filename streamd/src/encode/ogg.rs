//! The Ogg encapsulation of Opus (RFC 7845): an OpusHead page, an OpusTags page, then one page
//! per 100 ms chunk holding its five 20 ms packets, the granule position counting 48 kHz samples
//! from the start of the logical stream (pre-skip included).

use std::io::Cursor;

use bytes::Bytes;
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
    /// A new logical stream; its header pages are ready at once.
    pub fn new() -> Result<Self, EncodeError> {
        let opus = OpusPackets::new()?;
        let serial = stream_serial();
        let mut pages = PacketWriter::new(Cursor::new(Vec::new()));
        pages.write_packet(
            opus_head(opus.pre_skip),
            serial,
            PacketWriteEndInfo::EndPage,
            0,
        )?;
        pages.write_packet(opus_tags(), serial, PacketWriteEndInfo::EndPage, 0)?;
        let header = Bytes::from(std::mem::take(pages.inner_mut().get_mut()));
        pages.inner_mut().set_position(0);
        Ok(Self {
            resampler: Resampler48::new()?,
            opus,
            pages,
            serial,
            granule: 0,
            pending: Vec::with_capacity(2 * (super::resample::FRAMES_OUT + FRAME)),
            header,
        })
    }

    /// The OpusHead and OpusTags pages.
    pub fn header(&self) -> Bytes {
        self.header.clone()
    }

    /// One chunk of 44.1 kHz interleaved s16 -> one Ogg page (its packets complete).
    pub fn encode_chunk(&mut self, samples: &[i16]) -> Result<Bytes, EncodeError> {
        self.resampler.process(samples, &mut self.pending)?;
        let packets = self.pending.len() / (2 * FRAME);
        for n in 0..packets {
            let packet = self
                .opus
                .encode(&self.pending[n * 2 * FRAME..(n + 1) * 2 * FRAME])?;
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

    /// Ends the logical stream (for files): one last page flagged end-of-stream.
    pub fn finish(&mut self) -> Result<Bytes, EncodeError> {
        let silence = vec![0.0; 2 * FRAME];
        let packet = self.opus.encode(&silence)?;
        self.granule += FRAME as u64;
        self.pages.write_packet(
            packet,
            self.serial,
            PacketWriteEndInfo::EndStream,
            self.granule,
        )?;
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
}
