//! Shared helpers for the model tests.
#![allow(dead_code)]

use assistant::bus::Sampling;
use assistant::models::duplex::{DuplexModel, StepOutput};

/// hello_24k_mono.wav as 1920-sample frames (a silent tail pads the last one).
pub fn hello_frames() -> Vec<Vec<f32>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio/hello_24k_mono.wav");
    let mut r = hound::WavReader::open(&path).expect("test audio");
    let spec = r.spec();
    assert_eq!(spec.sample_rate, 24_000);
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap()).collect(),
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.unwrap() as f32 / scale)
                .collect()
        }
    };
    let mono: Vec<f32> = samples
        .chunks(spec.channels as usize)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    mono.chunks(1920)
        .map(|c| {
            let mut v = c.to_vec();
            v.resize(1920, 0.0);
            v
        })
        .collect()
}

pub fn sampling(seed: u64) -> Sampling {
    Sampling {
        temperature: 0.8,
        text_temperature: 0.7,
        top_k: 50,
        seed,
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Run {
    pub pcm: Vec<f32>,
    pub text_tokens: Vec<Option<u32>>,
    pub codes: Vec<Option<Vec<u32>>>,
    pub text: String,
}

pub fn run(m: &mut dyn DuplexModel, frames: &[Vec<f32>]) -> Run {
    let mut r = Run::default();
    let mut out = StepOutput::default();
    for f in frames {
        out.clear(m.frame_len());
        m.step(f, &mut out).unwrap();
        r.pcm.extend_from_slice(&out.pcm);
        r.text_tokens.push(out.text_token);
        r.codes.push(out.audio_codes.clone());
        if let Some(t) = &out.text {
            r.text.push_str(t);
        }
    }
    r
}
