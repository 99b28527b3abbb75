//! Agreement with NVIDIA's own PersonaPlex code (tools/personaplex_reference/): the
//! tiny PersonaPlex-shaped checkpoint in PyTorch's tensor names loads, and our prefill
//! and conversation reproduce `LMGen`'s greedy token stream step by step.

use crate::personaplex_common;
use assistant::bus::Cancel;
use assistant::models::moshi::checkpoint::inspect;
use assistant::models::moshi::personaplex::model::PersonaPlexModel;
use assistant::models::moshi::personaplex::step::prefill_schedule;
use assistant::models::moshi::personaplex::voice::voice_prompt_pcm;
use moshi::candle::Device;
use personaplex_common::{compare, complete_checkpoint, fixtures, greedy, RefStep};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Reference {
    text_prompt: String,
    text_tokens: Vec<u32>,
    voice_samples: usize,
    voice_rms: f64,
    voice_head: Vec<f64>,
    voice_codes: Vec<Vec<u32>>,
    user_codes: Vec<Vec<u32>>,
    steps: Vec<RefStep>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("personaplex/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture's LM, completed into a checkpoint directory.
fn checkpoint_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("personaplex/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(dir.path());
    dir
}

fn load(dir: &Path) -> PersonaPlexModel {
    let ck = inspect(dir).unwrap();
    PersonaPlexModel::load(
        ck,
        &greedy(),
        &Device::Cpu,
        "cpu",
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap()
}

#[test]
fn prefill_and_conversation_agree_with_nvidias_lmgen() {
    let r = reference();
    let dir = checkpoint_dir();
    let mut model = load(dir.path());

    // The text prompt, wrapped and encoded as NVIDIA's server does it.
    assert_eq!(model.text_tokens(&r.text_prompt), r.text_tokens);

    // The voice prompt after loading and -24 LUFS normalisation.
    let pcm = voice_prompt_pcm(&fixtures().join("personaplex/voice.wav"), 24_000).unwrap();
    assert_eq!(pcm.len(), r.voice_samples);
    let rms = (pcm.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
    assert!(
        (rms - r.voice_rms).abs() < 1e-5 * r.voice_rms,
        "{rms} vs {}",
        r.voice_rms
    );
    for (i, &v) in r.voice_head.iter().enumerate() {
        let ours = pcm[i * 7] as f64;
        assert!((ours - v).abs() < 1e-6, "sample {}: {ours} vs {v}", i * 7);
    }
    assert_eq!(pcm.len().div_ceil(1920), r.voice_codes.len());

    // The prefill: the same phases, step for step.
    let primed = model
        .prime_tokens(r.voice_codes.clone(), r.text_tokens.clone())
        .unwrap();
    let schedule = prefill_schedule(&r.voice_codes, &r.text_tokens);
    assert_eq!(primed.steps, schedule.len());
    let prefill_ref: Vec<&RefStep> = r.steps.iter().filter(|s| s.phase != "user").collect();
    assert_eq!(prefill_ref.len(), schedule.len());
    let mut ours: Vec<_> = model.last_prefill().to_vec();
    for u in &r.user_codes {
        ours.push(model.step_tokens(None, None, Some(u)).unwrap().unwrap());
    }
    let theirs: Vec<&RefStep> = r.steps.iter().filter(|s| s.offset > 0).collect();
    let a = compare(&ours, &theirs);
    let conversation = theirs.iter().filter(|s| s.phase == "user").count();
    let rate = a.rate();
    println!(
        "PersonaPlex agreement: {} forced tokens all equal; {}/{} generated \
         tokens equal ({:.1} %) over {} prefill and {conversation} conversation steps; first \
         difference {:?}; prefill took {:?}",
        a.forced,
        a.agree,
        a.generated,
        100.0 * rate,
        schedule.len(),
        a.first_miss,
        primed.elapsed
    );
    assert!(conversation >= 70);
    assert!(a.generated > 0);
    assert!(rate >= 0.9, "only {:.1} % agree", 100.0 * rate);
}

#[test]
fn a_reset_replays_the_same_prefill() {
    let r = reference();
    let dir = checkpoint_dir();
    let mut model = load(dir.path());
    model
        .prime_tokens(r.voice_codes.clone(), r.text_tokens.clone())
        .unwrap();
    let first = model.last_prefill().to_vec();
    let a = model
        .step_tokens(None, None, Some(&r.user_codes[0]))
        .unwrap();
    assistant::models::duplex::DuplexModel::reset(&mut model);
    assert_eq!(model.last_prefill(), &first[..]);
    let b = model
        .step_tokens(None, None, Some(&r.user_codes[0]))
        .unwrap();
    assert_eq!(a, b);
}
