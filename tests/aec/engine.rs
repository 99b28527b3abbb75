//! Echo cancellation through the engine path (`engine::runner`), not beside it: the
//! assistant's own voice, played through a room into the microphone, does not reach the
//! model above a stated level, and the user's voice does.
//!
//! The model says a fixed script and records what it hears. The engine steps it once per
//! 1920-sample capture frame and passes its output to the canceller as the reference; a
//! speaker would play that output from the next frame on, after 50 ms of device buffers,
//! so the microphone file holds the room's echo of it at that time, plus the user.
use crate::aec_common;
use aec_common::shared;
use anyhow::Result;
use assistant::audio::aec::synth::{room_echo, Lcg};
use assistant::audio::aec::{wav::read_mono_24k, EchoOptions};
use assistant::audio::meters::Meters;
use assistant::audio::port::InputPort;
use assistant::audio::wav::WavAudio;
use assistant::bus::ModelInfo;
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::engine::{Command, EngineEvent};
use assistant::models::duplex::{DuplexModel, StepOutput};
use std::sync::{Arc, Mutex};

const F: usize = 1920;
/// Stated level: the echo reaching the model is at least this far below the echo at the
/// microphone while the assistant talks (after 1.5 s to converge).
const ECHO_BELOW_MIC_DB: f64 = 25.0;

/// Says a fixed script whatever it hears, and records what it heard.
struct Scripted {
    script: Arc<Vec<f32>>,
    step: usize,
    heard: Arc<Mutex<Vec<f32>>>,
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
        self.heard.lock().unwrap().extend_from_slice(pcm_in);
        let at = (self.step * F).min(self.script.len());
        let said = &self.script[at..(at + F).min(self.script.len())];
        out.pcm[..said.len()].copy_from_slice(said);
        self.step += 1;
        Ok(())
    }
    fn reset(&mut self) {}
}

struct Scene {
    script: Arc<Vec<f32>>,
    mic: Vec<f32>,
    near: Vec<f32>,
    user_at: usize,
    device_latency: usize,
}

fn scene() -> Scene {
    let (speech, _, _) = read_mono_24k(&shared().join("audio/hello_24k_mono.wav")).unwrap();
    let (user, _, _) = read_mono_24k(&shared().join("audio/count_16k_mono.wav")).unwrap();
    let n = 200 * F; // 16 s
    let script: Vec<f32> = speech.iter().map(|x| x * 0.5).collect();
    // The user talks from 9 s on, after the assistant's echo has died out.
    let user_at = 9 * 24_000;
    let mut near = vec![0.0f32; n];
    for (i, u) in user.iter().enumerate().take(n - user_at) {
        near[user_at + i] = u * 0.4;
    }
    let device_latency = 24_000 * 50 / 1000;
    let mut played = vec![0.0f32; n];
    for (s, chunk) in script.chunks(F).enumerate() {
        let at = (s + 1) * F + device_latency;
        for (k, v) in chunk.iter().enumerate().filter(|(k, _)| at + k < n) {
            played[at + k] = *v;
        }
    }
    let echo = room_echo(&played, 0.010, 0.4, 21);
    let mut rng = Lcg(5);
    let mic = (0..n)
        .map(|i| echo[i] + near[i] + 0.0005 * rng.gauss() as f32)
        .collect();
    Scene {
        script: Arc::new(script),
        mic,
        near,
        user_at,
        device_latency,
    }
}

/// Runs the engine over the scene's microphone; returns what the model heard and the
/// canceller's reported latency in samples.
fn run_engine(sc: &Scene, echo: Option<EchoOptions>) -> (Vec<f32>, usize) {
    let (heard, latency, _) = run_engine_with(sc, echo, vec![]);
    (heard, latency)
}

/// As `run_engine`, with commands queued before the first frame; also returns the events.
fn run_engine_with(
    sc: &Scene,
    echo: Option<EchoOptions>,
    commands: Vec<Command>,
) -> (Vec<f32>, usize, Vec<EngineEvent>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let (script, heard2) = (sc.script.clone(), heard.clone());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    for c in commands {
        cmd_tx.send(c).unwrap();
    }
    let setup = EngineSetup {
        echo,
        ..EngineSetup::new(
            runner::loader(move |_| {
                let model = Scripted {
                    script: script.clone(),
                    step: 0,
                    heard: heard2.clone(),
                };
                Ok(Loaded {
                    model: Box::new(model),
                    notices: vec![],
                    degraded: None,
                })
            }),
            InputPort::Memory {
                audio: WavAudio {
                    samples: sc.mic.clone(),
                    sample_rate: 24_000,
                    channels: 1,
                },
                pos: 0,
            },
            Arc::new(Meters::default()),
            ev_tx,
            cmd_rx,
        )
    };
    let stats = runner::run(setup);
    assert!(stats.error.is_none(), "{:?}", stats.error);
    let latency = (stats.latency.echo_canceller_ms * 24.0).round() as usize;
    let heard = heard.lock().unwrap().clone();
    (heard, latency, ev_rx.try_iter().collect())
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum()
}

/// dB by which the echo at the microphone is reduced in what the model heard, while
/// the assistant talks alone.
fn echo_reduction_db(sc: &Scene, heard: &[f32], latency: usize) -> f64 {
    let talk = 36_000..(sc.script.len() + F + sc.device_latency);
    let at_model = energy(&heard[talk.start + latency..talk.end + latency]);
    10.0 * (energy(&sc.mic[talk.clone()]) / at_model.max(1e-20)).log10()
}

#[test]
fn own_voice_stays_out_of_the_model_and_the_users_gets_in() {
    let sc = scene();
    let (heard, d) = run_engine(
        &sc,
        Some(EchoOptions {
            aec: true,
            half_duplex: false,
        }),
    );
    let own =
        assistant::audio::aec::EchoCanceller::new(&assistant::audio::aec::AecSettings::default())
            .unwrap()
            .latency_samples();
    assert_eq!(d, own, "the engine reports the canceller's latency");
    let below = echo_reduction_db(&sc, &heard, d);
    println!("echo reaching the model through the engine: {below:.1} dB below the echo at the microphone");
    assert!(below >= ECHO_BELOW_MIC_DB, "echo only {below:.1} dB down");

    let end = sc.mic.len() - d;
    let (h, u) = (&heard[sc.user_at + d..end + d], &sc.near[sc.user_at..end]);
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
fn with_aec_off_the_echo_reaches_the_model() {
    // Same engine, same room, `--aec off`: the level above is not met, so the test can fail.
    let sc = scene();
    let (heard, d) = run_engine(
        &sc,
        Some(EchoOptions {
            aec: false,
            half_duplex: false,
        }),
    );
    let below = echo_reduction_db(&sc, &heard, d);
    assert!(below < 1.0, "{below:.1} dB");
    // Without a mic path at all (no speaker), the model hears the microphone untouched.
    let (heard, d) = run_engine(&sc, None);
    assert_eq!(d, 0);
    assert_eq!(&heard[..sc.mic.len()], &sc.mic[..]);
}

#[test]
fn half_duplex_closes_the_microphone_while_the_assistant_talks() {
    let sc = scene();
    let (heard, d) = run_engine(
        &sc,
        Some(EchoOptions {
            aec: false,
            half_duplex: true,
        }),
    );
    let below = echo_reduction_db(&sc, &heard, d);
    println!("half-duplex, no cancellation: echo {below:.1} dB down");
    assert!(below >= 40.0, "{below:.1} dB");
    // And opens again for the user once the assistant is quiet.
    let u = &heard[sc.user_at + d..sc.user_at + d + 24_000];
    assert!(energy(u) > 0.5 * energy(&sc.near[sc.user_at..sc.user_at + 24_000]));
}

#[test]
fn the_e_key_command_turns_it_off_and_the_engine_says_so() {
    let sc = scene();
    let on = Some(EchoOptions {
        aec: true,
        half_duplex: false,
    });
    let (heard, d, events) = run_engine_with(&sc, on, vec![Command::SetEchoCancel(false)]);
    let states: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::EchoCancel(on) => Some(*on),
            _ => None,
        })
        .collect();
    assert_eq!(states, vec![true, false], "initial state, then the toggle");
    let below = echo_reduction_db(&sc, &heard, d);
    assert!(below < 1.0, "turned off, yet {below:.1} dB removed");
}
