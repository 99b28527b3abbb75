//! `assistant bench cascade`: the cascade's two latencies, measured through the whole
//! engine at real time (a headless run of this binary on a scripted WAV):
//! - from the end of the user's speech to the first audio of the reply;
//! - barge-in: from the user's onset over a playing reply to silent playback.
//!
//! Output frame k can play no earlier than the end of input frame k (the engine steps
//! when a whole frame is in), so a latency is measured from an input sample to the
//! end of the output frame's input frame; a device's buffers add their own.

use crate::audio::wav::{read_wav, write_wav_mono};
use crate::engine::stats::percentiles;
use std::ops::Range;

const RATE: usize = 24_000;
const FRAME: usize = 1920;
/// Frames of quiet that make a stop (rather than a pause between words).
const QUIET_RUN: usize = 4;

/// A scripted conversation: the input and where the user speaks in it.
pub struct Script {
    pub pcm: Vec<f32>,
    pub bursts: Vec<Range<usize>>,
}

/// A voice-like sound (gliding harmonics gated into syllables) for `secs`.
pub(crate) fn voice(secs: f64, f0: f64, level: f32) -> Vec<f32> {
    let n = (secs * RATE as f64) as usize;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let f = f0 + 30.0 * (t * 1.7 * std::f64::consts::TAU).sin();
            phase += f / RATE as f64 * std::f64::consts::TAU;
            let v: f64 = (1..=10).map(|h| (phase * h as f64).sin() / h as f64).sum();
            // Syllables at 4 Hz that never fall silent: one stretch of speech.
            let gate = 0.55 + 0.45 * (t * 4.0 * std::f64::consts::TAU).sin();
            (level as f64 * v * gate) as f32
        })
        .collect()
}

/// `trials` rounds of: a question, a pause for the reply to start, and the user
/// talking over it (which is also the next question).
pub fn script(trials: usize, question_s: f64, wait_s: f64) -> Script {
    let mut pcm = vec![0.0; RATE];
    let mut bursts = Vec::new();
    for i in 0..=trials {
        let v = voice(question_s, 120.0 + 15.0 * i as f64, 0.2);
        bursts.push(pcm.len()..pcm.len() + v.len());
        pcm.extend(v);
        // Onsets land anywhere in an 80 ms frame: 37 ms apart, modulo a frame.
        let jitter = (i * 37) % 80;
        let wait = (wait_s * RATE as f64) as usize + jitter * RATE / 1000;
        pcm.extend(std::iter::repeat_n(0.0, wait));
    }
    Script { pcm, bursts }
}

/// What the run showed, in ms.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub end_to_audio_ms: Vec<f64>,
    pub barge_in_ms: Vec<f64>,
    /// Bursts that came while nothing played (the reply had not started or was over).
    pub missed: usize,
}

fn frame_loud(out: &[f32], k: usize) -> bool {
    out.get(k * FRAME..(k + 1) * FRAME)
        .is_some_and(|f| f.iter().any(|x| x.abs() > 1e-4))
}

/// Read the latencies off the output, aligned sample for sample with the input.
pub fn analyze(script: &Script, out: &[f32]) -> Figures {
    let mut f = Figures::default();
    let frames = out.len() / FRAME;
    for (i, b) in script.bursts.iter().enumerate() {
        let next = script.bursts.get(i + 1).map_or(frames, |n| n.start / FRAME);
        if let Some(ms) = first_audio_ms(out, b, next) {
            f.end_to_audio_ms.push(ms);
        }
        if i > 0 {
            match barge_in_ms(out, b.start) {
                Some(ms) => f.barge_in_ms.push(ms),
                None => f.missed += 1,
            }
        }
    }
    f
}

/// The reply to the speech `burst`: from its end to the end of the first loud frame
/// after it, before frame `next` (the next speech); `None` when nothing played.
pub(crate) fn first_audio_ms(out: &[f32], burst: &Range<usize>, next: usize) -> Option<f64> {
    let k = (burst.end / FRAME..next).find(|&k| frame_loud(out, k))?;
    Some(ms(((k + 1) * FRAME).saturating_sub(burst.end)))
}

/// Talking over a reply: speech from sample `onset` while the reply played (a loud
/// frame among the last four: a reply may pause between words while it waits for
/// text), stopped where the output stays quiet for four frames. `None` when nothing
/// played at the onset, or the output never fell quiet.
pub(crate) fn barge_in_ms(out: &[f32], onset: usize) -> Option<f64> {
    let frames = out.len() / FRAME;
    let onset_frame = onset / FRAME;
    let playing = (onset_frame.saturating_sub(QUIET_RUN)..onset_frame).any(|k| frame_loud(out, k));
    let silent = (onset_frame..frames)
        .find(|&k| (k..(k + QUIET_RUN).min(frames)).all(|j| !frame_loud(out, j)))?;
    playing.then(|| ms((silent + 1) * FRAME - onset))
}

fn ms(samples: usize) -> f64 {
    samples as f64 * 1000.0 / RATE as f64
}

/// Run this binary headless on the script with `run_args` (the cascade's flags) and
/// print the figures.
pub fn bench_cascade(run_args: &[String], trials: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("assistant-bench-cascade-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    let s = script(trials, 1.2, 2.5);
    write_wav_mono(&input, RATE as u32, &s.pcm)?;
    let exe = std::env::current_exe()?;
    println!(
        "cascade bench: {trials} turns at real time ({:.0} s of audio) …",
        s.pcm.len() as f64 / RATE as f64
    );
    let status = std::process::Command::new(exe)
        .args([
            "--engine",
            "cascade",
            "--headless",
            "--realtime",
            "--no-journal",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .args(run_args)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "the headless cascade run failed ({status})"
    );
    let out = read_wav(&output)?;
    let _ = std::fs::remove_dir_all(&dir);
    print_figures(&analyze(&s, &out.samples), &mut std::io::stdout())
}

pub fn print_figures(f: &Figures, w: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let e = percentiles(&f.end_to_audio_ms);
    let b = percentiles(&f.barge_in_ms);
    writeln!(
        w,
        "end of speech → first audio: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} replies)",
        e.p50,
        e.p95,
        e.max,
        f.end_to_audio_ms.len()
    )?;
    writeln!(
        w,
        "barge-in (onset → silent playback): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} barge-ins, {} bursts while nothing played)",
        b.p50,
        b.p95,
        b.max,
        f.barge_in_ms.len(),
        f.missed
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_speech_then_pauses() {
        let s = script(3, 1.0, 2.0);
        assert_eq!(s.bursts.len(), 4);
        let loud = |r: &Range<usize>| {
            (s.pcm[r.clone()].iter().map(|x| x * x).sum::<f32>() / r.len() as f32).sqrt()
        };
        assert!(s.bursts.iter().all(|b| loud(b) > 0.05));
        assert_eq!(
            s.pcm[s.bursts[0].end..s.bursts[1].start]
                .iter()
                .map(|x| x.abs())
                .sum::<f32>(),
            0.0
        );
    }

    #[test]
    fn latencies_are_read_off_the_output_frames() {
        let s = script(1, 1.0, 3.0);
        let mut out = vec![0.0; s.pcm.len()];
        // Reply starts 10 frames after the first burst ends, and stops 2 frames after
        // the second burst starts.
        let start = s.bursts[0].end / FRAME + 10;
        let stop = s.bursts[1].start / FRAME + 2;
        for x in &mut out[start * FRAME..stop * FRAME] {
            *x = 0.1;
        }
        let f = analyze(&s, &out);
        let expect_eos = ((start + 1) * FRAME - s.bursts[0].end) as f64 / 24.0;
        assert_eq!(f.end_to_audio_ms[0], expect_eos);
        let expect_barge = ((stop + 1) * FRAME - s.bursts[1].start) as f64 / 24.0;
        assert_eq!(f.barge_in_ms, vec![expect_barge]);
        assert_eq!(f.missed, 0);
        // Nothing played: the second burst counts as missed, not as an instant stop.
        let f = analyze(&s, &vec![0.0; s.pcm.len()]);
        assert_eq!((f.barge_in_ms.len(), f.missed), (0, 1));
    }
}
