//! Prints the integrated loudness (BS.1770, LUFS) and true peak (dBTP) of 16-bit stereo WAV
//! files: `cargo run -p synthd --release --example loudness -- A.wav [B.wav ...]`.

use synthd::loudness::{integrated_lufs, true_peak_dbfs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for path in std::env::args().skip(1) {
        let mut reader = hound::WavReader::open(&path)?;
        let pcm: Vec<f32> = reader
            .samples::<i16>()
            .map(|s| s.map(|s| f32::from(s) / 32_768.0))
            .collect::<Result<_, _>>()?;
        println!(
            "{path}: {:.2} LUFS integrated, true peak {:.2} dBTP",
            integrated_lufs(&pcm),
            true_peak_dbfs(&pcm)
        );
    }
    Ok(())
}
