//! `assistant aec`: the canceller over files, streamed in real-time-sized frames, and the
//! bench entry.

use super::{synth::synthetic_room, wav, AecSettings, EchoCanceller, SAMPLE_RATE};
use crate::cli::AecArgs;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// The engine's block: one 80 ms model frame.
pub const ENGINE_BLOCK: usize = 1920;

/// What one offline run measured.
#[derive(Debug, Clone)]
pub struct OfflineRun {
    pub output: Vec<f32>,
    /// CPU time of the canceller alone (thread CPU time where the OS has it).
    pub cpu: Duration,
    pub audio_s: f64,
    /// Delay the canceller adds in the engine's use of it: processing plus framing.
    pub latency_samples: usize,
    pub delay_ms: i32,
    pub erle_estimate_db: f64,
    pub room_delay_ms: Option<i32>,
}

impl OfflineRun {
    pub fn cpu_ms_per_s(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.audio_s.max(1e-9)
    }
}

/// Streams far and mic (24 kHz mono) through a canceller the way the engine does:
/// per block, the reference of what is playing, then the captured block.
pub fn process_offline(
    settings: &AecSettings,
    far: &[f32],
    mic: &[f32],
    block: usize,
) -> Result<OfflineRun> {
    if block == 0 {
        bail!("block size must be positive");
    }
    let mut aec = EchoCanceller::new(settings)?;
    // Pad so that every block is whole and whatever the framing delays still comes out.
    let padded = (mic.len() + super::FRAME).div_ceil(block) * block;
    let mut output = mic.to_vec();
    output.resize(padded, 0.0);
    let zeros = vec![0.0; block];
    let start = cpu_now();
    for (i, chunk) in output.chunks_mut(block).enumerate() {
        let at = (i * block).min(far.len());
        let far_block = &far[at..(at + block).min(far.len())];
        aec.push_far(far_block);
        // A far file shorter than the mic: the speaker plays silence.
        aec.push_far(&zeros[..block - far_block.len()]);
        aec.process_near(chunk);
    }
    let cpu = cpu_now().saturating_sub(start);
    let stats = aec.stats();
    // Undo the framing delay so the output lines up with the input file.
    let framing = aec.framing_latency_samples();
    output.drain(..framing);
    output.truncate(mic.len());
    Ok(OfflineRun {
        output,
        cpu,
        audio_s: mic.len() as f64 / SAMPLE_RATE as f64,
        latency_samples: aec.latency_samples(),
        delay_ms: stats.delay_ms,
        erle_estimate_db: stats.erle_db,
        room_delay_ms: stats.room_delay_ms,
    })
}

/// `assistant aec --far FAR.wav --mic MIC.wav --output OUT.wav`; `output` is the global
/// `--output` (clap lets only one argument own that name).
pub fn run_aec_command(args: &AecArgs, output: Option<&Path>) -> Result<()> {
    let output =
        output.context("--output OUT.wav is required: where to write the cancelled microphone")?;
    if args.block == 0 {
        bail!("--block must be at least 1 sample");
    }
    let mut settings = AecSettings::default();
    if let Some(ms) = args.filter_ms {
        if !(4.0..=1000.0).contains(&ms) {
            bail!("--filter-ms must be between 4 and 1000, got {ms}");
        }
        settings.filter_ms = ms;
    }
    let (far, far_rate, far_ch) = wav::read_mono_24k(&args.far).context("far-end (--far)")?;
    let (mic, mic_rate, mic_ch) = wav::read_mono_24k(&args.mic).context("microphone (--mic)")?;
    let run = process_offline(&settings, &far, &mic, args.block)?;
    wav::write_f32(output, SAMPLE_RATE, &run.output)?;

    let secs = run.audio_s;
    println!(
        "far:     {} ({far_rate} Hz, {far_ch} ch)",
        args.far.display()
    );
    println!(
        "mic:     {} ({mic_rate} Hz, {mic_ch} ch), {secs:.2} s",
        args.mic.display()
    );
    println!(
        "output:  {} (24000 Hz, 1 ch, 32-bit float)",
        output.display()
    );
    let ns = match settings.noise_suppression {
        Some(level) => format!(" + WebRTC NS ({level:?})"),
        None => String::new(),
    };
    let room = match &settings.room {
        Some(r) => format!("room stage ({:.0} ms) + ", r.span_ms),
        None => String::new(),
    };
    println!(
        "canceller: {room}AEC3 (aec3 crate){ns}, {:.0} ms AEC3 filter, blocks of {} samples",
        settings.filter_ms, args.block
    );
    println!(
        "cpu:     {:.2} ms per second of audio ({:.1} ms in all)",
        run.cpu_ms_per_s(),
        run.cpu.as_secs_f64() * 1e3
    );
    println!(
        "latency: {:.2} ms added by the canceller ({} samples)",
        run.latency_samples as f64 * 1000.0 / SAMPLE_RATE as f64,
        run.latency_samples
    );
    let room_delay = match run.room_delay_ms {
        Some(d) => format!("{d} ms"),
        None => "not found".to_string(),
    };
    println!(
        "echo path delay found by the room stage: {room_delay}; AEC3's: {} ms; AEC3's ERLE estimate: {:.1} dB",
        run.delay_ms, run.erle_estimate_db
    );
    Ok(())
}

/// `assistant bench` entry: ms of CPU per second of audio for the default canceller on a
/// synthetic room (speech-like far end, 120 ms delay, 0.4 s decay, double talk). The
/// room stage's loops are this crate's code: measure an optimised build (the dev profile
/// optimises dependencies only).
pub fn bench_aec() {
    let secs = 10.0;
    let (far, mic) = synthetic_room(secs, 0.120, 0.4);
    match process_offline(&AecSettings::default(), &far, &mic, ENGINE_BLOCK) {
        Ok(run) => println!(
            "aec: {:.2} ms CPU per second of audio (room stage + AEC3, {} s, {}-sample blocks), {:.2} ms latency added",
            run.cpu_ms_per_s(),
            secs,
            ENGINE_BLOCK,
            run.latency_samples as f64 * 1000.0 / SAMPLE_RATE as f64
        ),
        Err(e) => println!("aec: failed: {e:#}"),
    }
}

/// CPU time of the calling thread, so other load on the machine does not count.
fn cpu_now() -> Duration {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}
