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

/// A long 48 kHz stereo input, so the engine resamples and down-mixes.
fn long_input(shared: &Path, seconds: f64) -> anyhow::Result<WavAudio> {
    let base = read_wav(&shared.join("interrupt_48k_stereo.wav"))?;
    let want = (seconds * base.sample_rate as f64) as usize * base.channels as usize;
    let samples = base.samples.iter().copied().cycle().take(want).collect();
    Ok(WavAudio { samples, ..base })
}

pub fn bench_audio(shared_audio: &Path) -> anyhow::Result<()> {
    let (c50, c999, p50, p999) = callback_cost();
    println!("callback cost (960 samples, 10 ms of 48 kHz stereo):");
    println!("  capture  i16: p50 {c50:.0} ns, p99.9 {c999:.0} ns");
    println!("  playback f32: p50 {p50:.0} ns, p99.9 {p999:.0} ns   (target p99.9 <= 20000 ns)");

    let audio = long_input(shared_audio, 300.0)?;
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
