//! `assistant bench audio`: callback cost, engine overhead outside the model,
//! and loopback file throughput. Prints figures; targets are in the README.

use crate::audio::device::{capture_callback, playback_callback};
use crate::audio::meters::Meters;
use crate::audio::port::InputPort;
use crate::audio::wav::{read_wav, WavAudio};
use crate::engine::loopback::Loopback;
use crate::engine::runner::{self, EngineSetup, Loaded};
use crate::engine::stats::percentiles;
use ringbuf::traits::Split;
use ringbuf::HeapRb;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

fn pctl(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// ns per callback for a 10 ms stereo block at 48 kHz (960 samples), i16 and f32.
fn callback_cost() -> (f64, f64, f64, f64) {
    let meters = Meters::default();
    let (mut prod, mut cons) = HeapRb::<f32>::new(48_000 * 2).split();
    let started = AtomicBool::new(false);
    let input = vec![1234i16; 960];
    let mut output = vec![0f32; 960];
    let n = 200_000;
    let (mut cap, mut play) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        capture_callback(&input, &mut prod, &meters);
        cap.push(t.elapsed().as_nanos() as f64);
        let t = Instant::now();
        playback_callback(&mut output, &mut cons, &meters, &started);
        play.push(t.elapsed().as_nanos() as f64);
    }
    cap.sort_by(f64::total_cmp);
    play.sort_by(f64::total_cmp);
    (
        pctl(&cap, 0.5),
        pctl(&cap, 0.999),
        pctl(&play, 0.5),
        pctl(&play, 0.999),
    )
}

/// Five seconds of 48 kHz stereo with speech-like energy (a gliding, syllable-gated
/// harmonic voice and a little noise), for when no input is given.
pub(crate) fn builtin_input() -> WavAudio {
    let rate = 48_000u32;
    let mut seed = 0x9e37_79b9_u32;
    let mut samples = Vec::with_capacity(rate as usize * 10);
    let mut phase = 0.0f64;
    for i in 0..rate as usize * 5 {
        let t = i as f64 / rate as f64;
        let f0 = 140.0 + 40.0 * (t * 1.3 * std::f64::consts::TAU).sin();
        phase += f0 / rate as f64 * std::f64::consts::TAU;
        let voice: f64 = (1..=12).map(|h| (phase * h as f64).sin() / h as f64).sum();
        let syllables = (t * 4.0 * std::f64::consts::TAU).sin().max(0.0);
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed as f64 / u32::MAX as f64 - 0.5) * 0.02;
        let s = (0.25 * voice * syllables + noise) as f32;
        samples.extend([s, s * 0.9]);
    }
    WavAudio {
        samples,
        sample_rate: rate,
        channels: 2,
    }
}

/// A long input (the given file, or the built-in 48 kHz stereo one, so the engine
/// resamples and down-mixes), repeated to `seconds`.
fn long_input(input: Option<&Path>, seconds: f64) -> anyhow::Result<WavAudio> {
    let base = match input {
        Some(p) => read_wav(p)?,
        None => builtin_input(),
    };
    let want = (seconds * base.sample_rate as f64) as usize * base.channels as usize;
    let samples = base.samples.iter().copied().cycle().take(want).collect();
    Ok(WavAudio { samples, ..base })
}

/// `bench audio [--input WAV]`: callback cost, engine overhead and loopback throughput.
pub fn bench_audio(input: Option<&Path>) -> anyhow::Result<()> {
    let (c50, c999, p50, p999) = callback_cost();
    println!("callback cost (960 samples, 10 ms of 48 kHz stereo):");
    println!("  capture  i16: p50 {c50:.0} ns, p99.9 {c999:.0} ns");
    println!("  playback f32: p50 {p50:.0} ns, p99.9 {p999:.0} ns   (target p99.9 <= 20000 ns)");

    let audio = long_input(input, 300.0)?;
    println!(
        "input: {} ({} Hz, {} channels), repeated to 300 s",
        input.map_or("built-in 48 kHz stereo voice".into(), |p| p
            .display()
            .to_string()),
        audio.sample_rate,
        audio.channels
    );
    let input_s = audio.seconds();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    // Drain events as a UI would, so the channel does not grow.
    let drain = std::thread::spawn(move || ev_rx.iter().count());
    let setup = EngineSetup::new(
        runner::loader(|_| {
            Ok(Loaded {
                model: Box::new(Loopback::new(24_000, 1920)),
                notices: vec![],
                degraded: None,
            })
        }),
        InputPort::Memory { audio, pos: 0 },
        Arc::new(Meters::default()),
        ev_tx,
        cmd_rx,
    );
    let t = Instant::now();
    let stats = runner::run(setup);
    let wall = t.elapsed().as_secs_f64();
    let events = drain.join().unwrap_or(0);
    let over = percentiles(&stats.overhead_ms);
    println!(
        "engine overhead outside the model (48 kHz stereo in: down-mix, resample, frame, events):"
    );
    println!(
        "  p50 {:.1} us, p99 {:.1} us over {} frames   (target p99 <= 1000 us)",
        over.p50 * 1000.0,
        over.p99 * 1000.0,
        stats.frames_out
    );
    println!("loopback file throughput: {input_s:.0} s of audio in {wall:.3} s = {:.0}x real time ({events} events)", input_s / wall);
    crate::audio::aec::bench_aec();
    Ok(())
}
