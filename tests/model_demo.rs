//! The demo model: starts fast, talks, is deterministic per seed, reacts to settings.

mod model_common;
use assistant::engine::model::{DuplexModel, StepOutput};
use assistant::engine::moshi::demo::demo_model;
use model_common::*;
use moshi::candle::Device;
use std::time::Instant;

#[test]
fn demo_starts_fast_and_speaks() {
    let t = Instant::now();
    let mut m = demo_model(&sampling(42), &Device::Cpu, "cpu").unwrap();
    let build = t.elapsed();
    let frames = hello_frames();
    let mut out = StepOutput::default();
    let t = Instant::now();
    out.clear(1920);
    m.step(&frames[0], &mut out).unwrap();
    let first = t.elapsed();
    eprintln!("demo built in {build:?}, first step {first:?}");
    assert!(build.as_secs_f64() + first.as_secs_f64() < 1.0, "demo start {build:?} + {first:?}");
    let run = run(&mut m, &frames[..40]);
    let rms = (run.pcm.iter().map(|v| v * v).sum::<f32>() / run.pcm.len() as f32).sqrt();
    eprintln!("demo output rms {rms}");
    assert!(rms > 1e-3, "demo is silent: rms {rms}");
    assert!(run.pcm.iter().all(|v| v.is_finite()));
    let distinct: std::collections::BTreeSet<_> = run.codes.iter().flatten().flatten().collect();
    assert!(distinct.len() > 20, "codes barely vary: {}", distinct.len());
    assert_eq!(run.codes[0], None, "audio codes appear only after the acoustic delay");
    assert!(run.codes[3].is_some());
}
