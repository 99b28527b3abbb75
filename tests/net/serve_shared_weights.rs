//! `serve` loads its model once and each session forks it (`DuplexModel::fork`): the
//! weights are shared, the state is the session's. A forked session must give exactly
//! the tokens and audio of a model loaded for it alone, while other forks of the same
//! weights step in between (their caches must not touch each other's).

use crate::personaplex_common;

use assistant::bus::{Cancel, Sampling};
use assistant::models::duplex::{DuplexModel, Prompt, StepOutput};
use assistant::models::moshi::demo::demo_model;
use assistant::models::moshi::{load_model_with, Discovery, ModelOptions};
use moshi::candle::Device;
use personaplex_common::{complete_checkpoint, fixtures, greedy};

/// What a step gave, for comparison.
#[derive(Debug, PartialEq)]
struct Step {
    text: Option<u32>,
    audio: Option<Vec<u32>>,
    pcm: Vec<f32>,
}

fn step(m: &mut dyn DuplexModel, frame: &[f32]) -> Step {
    let mut out = StepOutput::default();
    out.clear(frame.len());
    m.step(frame, &mut out).unwrap();
    Step {
        text: out.text_token,
        audio: out.audio_codes,
        pcm: out.pcm,
    }
}

/// `frames` frames of a user's voice: a tone gliding with `pitch`, some noise.
fn voice(frames: usize, frame_len: usize, pitch: f32) -> Vec<Vec<f32>> {
    let mut seed = 0x2545_f491_u32 ^ pitch.to_bits();
    (0..frames)
        .map(|f| {
            (0..frame_len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let t = (f * frame_len + i) as f32 / 24_000.0;
                    0.3 * (t * (pitch + 40.0 * t) * std::f32::consts::TAU).sin()
                        + 0.02 * (seed as f32 / u32::MAX as f32 - 0.5)
                })
                .collect()
        })
        .collect()
}

/// Two forks of `template`, stepped alternately on different voices, against two models
/// loaded alone on the same voices: every step equal. Returns the steps compared.
fn forks_match_standalone(
    template: &dyn DuplexModel,
    alone: [Box<dyn DuplexModel>; 2],
    frames: usize,
) -> usize {
    let fork = || {
        let mut m = template.fork().expect("the model shares its weights");
        // As `serve` does: the prompt's prefill replayed into the fork's own cache.
        m.reset();
        m
    };
    let (mut a, mut b) = (fork(), fork());
    let [mut alone_a, mut alone_b] = alone;
    let n = a.frame_len();
    let (va, vb) = (voice(frames, n, 220.0), voice(frames, n, 330.0));
    let mut differ = 0;
    for (i, (fa, fb)) in va.iter().zip(&vb).enumerate() {
        let (sa, sb) = (step(a.as_mut(), fa), step(b.as_mut(), fb));
        assert_eq!(sa, step(alone_a.as_mut(), fa), "session A, step {i}");
        assert_eq!(sb, step(alone_b.as_mut(), fb), "session B, step {i}");
        differ += usize::from(sa != sb);
    }
    // The two sessions heard different voices and answered differently: had they
    // shared a cache, their steps could not both equal their standalone runs.
    assert!(differ > 0, "the two sessions never differed");
    frames
}

#[test]
fn a_forked_demo_session_gives_the_tokens_of_a_model_loaded_alone() {
    let dev = Device::Cpu;
    for sampling in [
        greedy(),
        // Sampled: each fork's samplers start from the seed, as a fresh load's do.
        Sampling {
            seed: 42,
            ..Sampling::default()
        },
    ] {
        let template = demo_model(&sampling, &dev, "cpu").unwrap();
        let alone: [Box<dyn DuplexModel>; 2] = [
            Box::new(demo_model(&sampling, &dev, "cpu").unwrap()),
            Box::new(demo_model(&sampling, &dev, "cpu").unwrap()),
        ];
        let n = forks_match_standalone(&template, alone, 40);
        eprintln!("demo, {sampling:?}: {n} steps equal in both sessions");
    }
}

#[test]
fn a_forked_personaplex_session_replays_the_prompt_and_matches_a_model_loaded_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("personaplex/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(dir.path());
    let opts = ModelOptions {
        model_dir: Some(dir.path().to_path_buf()),
        device: assistant::models::moshi::DeviceChoice::Cpu,
        sampling: greedy(),
        prompt: Prompt {
            text: "You are a kind teacher.".into(),
            voice: Some(fixtures().join("personaplex/voice.wav")),
            ..Default::default()
        },
        ..Default::default()
    };
    let load = || {
        load_model_with(&opts, &Discovery::default(), &mut |_| {}, &Cancel::new())
            .unwrap_or_else(|e| panic!("{}", e.message))
            .model
    };
    let template = load();
    assert!(template.takes_prompt());
    let n = forks_match_standalone(template.as_ref(), [load(), load()], 30);
    eprintln!("PersonaPlex fixture, primed: {n} steps equal in both sessions");
}
