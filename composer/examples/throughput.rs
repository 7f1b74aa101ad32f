//! How many times faster than real time composition runs: composes 8 hours of every preset and
//! reports the ratio. Run: `cargo run --release -p composer --example throughput`.
#![forbid(unsafe_code)]

use std::time::Instant;

use composer::{Composer, Params, PresetId, presets};
use shm_proto::SAMPLE_RATE;

fn main() {
    const HOURS: u64 = 8;
    let end = HOURS * 3600 * u64::from(SAMPLE_RATE);
    let mut total_secs = 0.0;
    let mut total_music = 0.0;
    for preset in presets() {
        let id = PresetId::from_name(preset.name).expect("preset in table");
        let mut c = Composer::new(1, Params::from_preset(id, 1));
        let mut out = Vec::with_capacity(64);
        let (mut bars, mut events) = (0u64, 0usize);
        let t = Instant::now();
        while c.composed_until_frame() < end {
            out.clear();
            c.next_bar(&mut out);
            bars += 1;
            events += out.len();
        }
        let secs = t.elapsed().as_secs_f64();
        let music = (HOURS * 3600) as f64;
        total_secs += secs;
        total_music += music;
        println!(
            "{:>7}: {HOURS} h = {bars} bars, {events} events in {:.3} s ({:.0}x real time)",
            preset.name,
            secs,
            music / secs
        );
    }
    println!("all: {:.0}x real time", total_music / total_secs);
}
