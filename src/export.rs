//! Where `auralis render` writes: WAV (44.1 kHz 16-bit stereo), Ogg/Opus (48 kHz, 96 kbit/s) or
//! MP3 (44.1 kHz, 128 kbit/s CBR), chosen by the file's extension. The compressed formats use
//! streamd's encoders (the very ones the live streams use), finished as files must be: the Ogg
//! stream's last page flagged end-of-stream at the exact final granule position, LAME flushed.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use shm_proto::{CHUNK_SAMPLES, SAMPLE_RATE};
use streamd::encode::{ChunkEncoder, Codec};

/// The file format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// PCM WAV, as rendered.
    Wav,
    /// Ogg/Opus or MP3 through streamd's encoders.
    Compressed(Codec),
}

impl ExportFormat {
    /// From the extension of `path`: `.wav`, `.opus` / `.ogg`, `.mp3`.
    pub fn from_path(path: &Path) -> anyhow::Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "wav" => Ok(Self::Wav),
            other => match Codec::from_extension(other) {
                Some(codec) => Ok(Self::Compressed(codec)),
                None => bail!(
                    "cannot tell the format of {}: use .wav, .opus (or .ogg) or .mp3",
                    path.display()
                ),
            },
        }
    }
}

/// An export being written: interleaved stereo s16 at 44.1 kHz in, a finished file out.
#[derive(Debug)]
pub struct Export {
    /// The file, for messages.
    path: PathBuf,
    /// The writer of its format.
    sink: Sink,
}

/// The writer of one format.
enum Sink {
    /// hound writes the header's lengths when finalized.
    Wav(hound::WavWriter<BufWriter<File>>),
    /// streamd's encoder, fed whole 100 ms chunks.
    Encoded {
        /// The encoder (made for a file: see [`ChunkEncoder::for_file`]).
        encoder: Box<ChunkEncoder>,
        /// The output file.
        file: BufWriter<File>,
        /// Samples not yet making a whole chunk; the remainder goes to `finish_with`.
        pending: Vec<i16>,
    },
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wav(_) => f.write_str("Wav"),
            Self::Encoded { encoder, .. } => f.debug_tuple("Encoded").field(encoder).finish(),
        }
    }
}

impl Export {
    /// Creates `path` in the format its extension names.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let format = ExportFormat::from_path(path)?;
        let sink = match format {
            ExportFormat::Wav => {
                let spec = hound::WavSpec {
                    channels: 2,
                    sample_rate: SAMPLE_RATE,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                Sink::Wav(
                    hound::WavWriter::create(path, spec)
                        .with_context(|| format!("creating {}", path.display()))?,
                )
            }
            ExportFormat::Compressed(codec) => {
                let encoder = ChunkEncoder::for_file(codec).context("starting the encoder")?;
                let file =
                    File::create(path).with_context(|| format!("creating {}", path.display()))?;
                let mut file = BufWriter::new(file);
                file.write_all(&encoder.header())
                    .with_context(|| format!("writing {}", path.display()))?;
                Sink::Encoded {
                    encoder: Box::new(encoder),
                    file,
                    pending: Vec::with_capacity(CHUNK_SAMPLES),
                }
            }
        };
        Ok(Self {
            path: path.to_owned(),
            sink,
        })
    }

    /// Appends interleaved stereo samples.
    pub fn write(&mut self, samples: &[i16]) -> anyhow::Result<()> {
        match &mut self.sink {
            Sink::Wav(wav) => {
                for &s in samples {
                    wav.write_sample(s).context("writing WAV")?;
                }
            }
            Sink::Encoded {
                encoder,
                file,
                pending,
            } => {
                let mut rest = samples;
                while !rest.is_empty() {
                    let take = (CHUNK_SAMPLES - pending.len()).min(rest.len());
                    pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if pending.len() == CHUNK_SAMPLES {
                        let unit = encoder.encode(pending).context("encoding")?;
                        pending.clear();
                        file.write_all(&unit)
                            .with_context(|| format!("writing {}", self.path.display()))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the file (WAV lengths; the last Ogg page or LAME's flush) and closes it.
    pub fn finish(self) -> anyhow::Result<()> {
        match self.sink {
            Sink::Wav(wav) => wav.finalize().context("finishing WAV")?,
            Sink::Encoded {
                mut encoder,
                mut file,
                pending,
            } => {
                let last = encoder
                    .finish_with(&pending)
                    .context("finishing the encoder")?;
                file.write_all(&last)
                    .and_then(|()| file.flush())
                    .with_context(|| format!("writing {}", self.path.display()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_chooses_the_format() {
        let f = |p: &str| ExportFormat::from_path(Path::new(p)).ok();
        assert_eq!(f("a.wav"), Some(ExportFormat::Wav));
        assert_eq!(f("a.WAV"), Some(ExportFormat::Wav));
        assert_eq!(f("a.opus"), Some(ExportFormat::Compressed(Codec::Opus)));
        assert_eq!(f("a.ogg"), Some(ExportFormat::Compressed(Codec::Opus)));
        assert_eq!(f("a.mp3"), Some(ExportFormat::Compressed(Codec::Mp3)));
        assert_eq!(f("a.flac"), None);
        assert_eq!(f("a"), None);
    }
}
