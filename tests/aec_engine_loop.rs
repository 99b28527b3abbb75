//! The engine's loop in miniature, with the real `MicPath` and a `DuplexModel`: the
//! assistant's own voice, played through a room into the microphone, does not reach the
//! model above a stated level, and the user's voice does.
//!
//! Timeline as in the engine: at step n it takes capture frame n, runs the mic path, steps
//! the model, pushes the output to the speaker ring and to `push_far`. The speaker plays
//! that output from capture position (n + 1) * F + device latency; the room adds its
//! own delay and reverberation.
mod aec_common;
use aec_common::shared;
use anyhow::Result;
use assistant::audio::aec::synth::{room_echo, Lcg};
use assistant::audio::aec::{wav::read_mono_24k, MicPath};
use assistant::engine::model::{DuplexModel, ModelInfo, StepOutput};

const F: usize = 1920;
/// Stated level: echo reaching the model is at least this far below the echo at the mic.
const ECHO_BELOW_MIC_DB: f64 = 25.0;

/// Says a fixed script whatever it hears, and records what it heard.
struct Scripted {
    script: Vec<f32>,
    step: usize,
    heard: Vec<f32>,
}

impl DuplexModel for Scripted {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "scripted".into(),
            ..ModelInfo::default()
        }
    }
    fn sample_rate(&self) -> u32 {
        24_000
    }
    fn frame_len(&self) -> usize {
        F
    }
    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> Result<()> {
        self.heard.extend_from_slice(pcm_in);
        let at = (self.step * F).min(self.script.len());
        let said = &self.script[at..(at + F).min(self.script.len())];
        out.pcm[..said.len()].copy_from_slice(said);
        self.step += 1;
        Ok(())
    }
    fn reset(&mut self) {}
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum()
}

#[test]
fn own_voice_stays_out_of_the_model_and_the_users_gets_in() {
    let (speech, _, _) = read_mono_24k(&shared().join("audio/hello_24k_mono.wav")).unwrap();
    let (user, _, _) = read_mono_24k(&shared().join("audio/count_16k_mono.wav")).unwrap();
    let steps = 200; // 16 s
    let n = steps * F;
    // The assistant talks for ~6 s; the user talks from 9 s on, alone.
    let mut model = Scripted {
        script: speech.iter().map(|x| x * 0.5).collect(),
        step: 0,
        heard: vec![],
    };
    let user_at = 9 * 24_000;
    let mut near = vec![0.0f32; n];
    for (i, u) in user.iter().enumerate().take(n - user_at) {
        near[user_at + i] = u * 0.4;
    }

    // Where the speaker plays each step's output: one frame after it was made, plus 50 ms
    // of device buffers. The script is fixed, so the room's echo can be computed up front.
    let device_latency = 24_000 * 50 / 1000;
    let mut played = vec![0.0f32; n];
    for (s, chunk) in model.script.chunks(F).enumerate() {
        let at = (s + 1) * F + device_latency;
        for (k, v) in chunk.iter().enumerate() {
            if at + k < n {
                played[at + k] = *v;
            }
        }
    }
    let echo = room_echo(&played, 0.010, 0.4, 21);
    let mut rng = Lcg(5);
    let mic: Vec<f32> = (0..n)
        .map(|i| echo[i] + near[i] + 0.0005 * rng.gauss() as f32)
        .collect();

    let mut path = MicPath::new(true, false).unwrap();
    let mut out = StepOutput::default();
    for step in 0..steps {
        let mut frame = mic[step * F..(step + 1) * F].to_vec();
        path.process_near(&mut frame);
        out.clear(F);
        model.step(&frame, &mut out).unwrap();
        path.push_far(&out.pcm);
    }

    // While the assistant talks alone (after 1.5 s to converge, until its echo dies out).
    let d = path.latency_samples();
    let talk = 36_000..(model.script.len() + F + device_latency);
    let heard_echo = energy(&model.heard[talk.start + d..talk.end + d]);
    let mic_echo = energy(&mic[talk.clone()]);
    let below = 10.0 * (mic_echo / heard_echo).log10();
    println!("echo reaching the model: {below:.1} dB below the echo at the microphone");
    assert!(below >= ECHO_BELOW_MIC_DB, "echo only {below:.1} dB down");

    // The user, alone: what the model hears is the user's voice, intact.
    let alone = user_at..(user_at + user.len()).min(n);
    let (h, u) = (
        &model.heard[alone.start + d..alone.end.min(n - d) + d],
        &near[alone.start..alone.end.min(n - d)],
    );
    let corr = h
        .iter()
        .zip(u)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum::<f64>()
        / (energy(h) * energy(u)).sqrt();
    println!("user's voice at the model: correlation {corr:.3}");
    assert!(corr >= 0.9, "user's voice damaged: correlation {corr:.3}");
}

#[test]
fn with_cancellation_off_the_echo_does_reach_the_model() {
    // The same loop with `--aec off` fails the level above, so the test can fail.
    let (speech, _, _) = read_mono_24k(&shared().join("audio/hello_24k_mono.wav")).unwrap();
    let mut model = Scripted {
        script: speech.iter().map(|x| x * 0.5).collect(),
        step: 0,
        heard: vec![],
    };
    let steps = 80;
    let n = steps * F;
    let mut played = vec![0.0f32; n];
    for (s, chunk) in model.script.chunks(F).enumerate() {
        for (k, v) in chunk.iter().enumerate() {
            if (s + 1) * F + k < n {
                played[(s + 1) * F + k] = *v;
            }
        }
    }
    let mic = room_echo(&played, 0.010, 0.4, 21);
    let mut path = MicPath::new(false, false).unwrap();
    let mut out = StepOutput::default();
    for step in 0..steps {
        let mut frame = mic[step * F..(step + 1) * F].to_vec();
        path.process_near(&mut frame);
        out.clear(F);
        model.step(&frame, &mut out).unwrap();
        path.push_far(&out.pcm);
    }
    let d = path.latency_samples();
    let talk = 36_000..model.script.len();
    let below = 10.0
        * (energy(&mic[talk.clone()]) / energy(&model.heard[talk.start + d..talk.end + d])).log10();
    assert!(below < 1.0, "{below:.1} dB");
}
