//! No five-minute wall: the model keeps stepping past its KV context in flat memory.
//! (Its own test binary, so no other test's allocations disturb the RSS readings.)

mod model_common;
use assistant::bus::Sampling;
use assistant::models::duplex::{DuplexModel, StepOutput};
use assistant::models::moshi::config::{self, ModelConfig};
use assistant::models::moshi::demo::{
    demo_model, random_model, random_moshi_model, reference_lm, DEMO_WEIGHT_SEED,
};
use assistant::models::moshi::stepper::Stepper;
use moshi::candle::Device;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A demo-sized model whose LM context is 24 steps (and Mimi's 20), so the caches wrap
/// within a second of stepping.
fn short_context() -> ModelConfig {
    let mut lm = config::demo_lm();
    lm.transformer.context = 24;
    let mut mimi = config::demo_mimi();
    mimi.transformer.context = 20;
    ModelConfig::from_parts(lm, mimi.to_mimi())
}

#[test]
fn steps_far_past_the_context_in_flat_memory() {
    let s = Sampling {
        temperature: 0.8,
        text_temperature: 0.7,
        top_k: 50,
        seed: 3,
    };
    let mut m =
        random_moshi_model(&short_context(), DEMO_WEIGHT_SEED, &s, &Device::Cpu, "cpu").unwrap();
    let frames = model_common::hello_frames();
    let mut out = StepOutput::default();
    let mut rss = vec![];
    let steps = 1200; // 50x the LM context, 96 s of audio
    for i in 0..steps {
        out.clear(1920);
        m.step(&frames[i % frames.len()], &mut out).unwrap();
        assert!(out.pcm.iter().all(|v| v.is_finite()), "step {i}");
        if i >= 3 {
            assert!(out.audio_codes.is_some(), "no audio at step {i}");
        }
        if i % 100 == 99 {
            rss.push(rss_kib());
        }
    }
    assert_eq!(m.step_idx(), steps);
    eprintln!("RSS every 100 steps (KiB): {rss:?}");
    // After warm-up (allocator pools, first cache fills), memory must not grow with steps.
    let (early, late) = (rss[2], *rss.last().unwrap());
    assert!(
        late <= early + 4096,
        "RSS grew from {early} KiB to {late} KiB"
    );
}

/// Our ring-buffer stepper over `PlacedLm` makes exactly the tokens moshi's own `State`
/// over its `LmModel` makes.
#[test]
fn stepper_matches_moshis_state() {
    let cfg = config::demo();
    let lm = random_model(&cfg, DEMO_WEIGHT_SEED, &Device::Cpu)
        .unwrap()
        .lm;
    let reference = reference_lm(&cfg, DEMO_WEIGHT_SEED, &Device::Cpu).unwrap();
    let s = Sampling {
        temperature: 0.8,
        text_temperature: 0.7,
        top_k: 50,
        seed: 11,
    };
    let lp = |seed, t| {
        candle_transformers::generation::LogitsProcessor::from_sampling(
            seed,
            candle_transformers::generation::Sampling::TopK {
                k: 50,
                temperature: t,
            },
        )
    };
    let mut state = moshi::lm_generate_multistream::State::new(
        reference,
        100,
        lp(s.seed + 1, 0.8),
        lp(s.seed, 0.7),
        None,
        None,
        None,
        cfg.gen.clone(),
    );
    let mut stepper = Stepper::new(lm, cfg.gen.clone());
    let mut samplers = assistant::models::moshi::sampling_for_tests(&s);
    let mut prev = cfg.gen.text_start_token;
    for step in 0..60u32 {
        let codes: Vec<u32> = (0..8).map(|c| (step * 31 + c * 17) % 256).collect();
        let a = state.step_(Some(prev), &codes, None, None, None).unwrap();
        let b = stepper.step(&codes, &mut samplers).unwrap();
        assert_eq!(a, b, "text token at step {step}");
        assert_eq!(
            state
                .last_audio_tokens()
                .map(|v| v[..8].to_vec())
                .as_deref(),
            stepper.last_audio_tokens(),
            "audio at step {step}"
        );
        prev = a;
    }
}

/// Seven minutes of audio (5250 steps) through the demo model: run by hand with
/// `cargo test --test model_long -- --ignored --nocapture`.
#[test]
#[ignore]
fn seven_minutes_through_the_demo() {
    let s = Sampling::default();
    let mut m = demo_model(&s, &Device::Cpu, "cpu").unwrap();
    let frames = model_common::hello_frames();
    let mut out = StepOutput::default();
    let steps = 7 * 60 * 25 / 2;
    let mut samples = 0usize;
    let t = std::time::Instant::now();
    let mut per_minute = vec![];
    for i in 0..steps {
        out.clear(1920);
        m.step(&frames[i % frames.len()], &mut out).unwrap();
        samples += out.pcm.len();
        if i % 750 == 749 {
            per_minute.push(rss_kib());
        }
    }
    eprintln!("7 min: {steps} steps in {:?}; output {samples} samples (input {}); RSS at the end of each minute (KiB): {per_minute:?}", t.elapsed(), steps * 1920);
    assert_eq!(samples, steps * 1920);
    // The KV cache is allocated whole but its pages are touched as it fills: RSS rises
    // until the context (3000 steps = 4 min) is full, and is flat from then on.
    assert!(per_minute[6] <= per_minute[4] + 1024, "{per_minute:?}");
}
