//! NVIDIA's `.pt` voice files, read without Python: `tools/personaplex_reference/` had
//! NVIDIA's own `LMGen` save `voice.pt` from the fixture's voice (as `voices.tgz`'s were
//! made) and then prime a fresh `LMGen` from it; priming ours from the same file gives
//! the same tokens. Voices by name, and files that are not voices.

use crate::personaplex_common;
use assistant::bus::Cancel;
use assistant::models::duplex::{DuplexModel, Prompt};
use assistant::models::moshi::checkpoint::inspect;
use assistant::models::moshi::personaplex::model::PersonaPlexModel;
use assistant::models::moshi::personaplex::voices::{
    read_voice_pt, resolve_voice, VoiceOrigin, VoiceSource,
};
use moshi::candle::Device;
use personaplex_common::{compare, complete_checkpoint, fixtures, greedy, RefStep};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct PtReference {
    embeddings_shape: Vec<usize>,
    cache_shape: Vec<usize>,
    steps: Vec<RefStep>,
}

#[derive(Deserialize)]
struct Reference {
    text_prompt: String,
    user_codes: Vec<Vec<u32>>,
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join("personaplex").join(name)
}

fn read_json<T: for<'a> Deserialize<'a>>(name: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn model() -> (tempfile::TempDir, PersonaPlexModel) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(dir.path());
    let m = PersonaPlexModel::load(
        inspect(dir.path()).unwrap(),
        &greedy(),
        &Device::Cpu,
        "cpu",
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap();
    (dir, m)
}

fn prompt(text: &str, voice: impl Into<PathBuf>) -> Prompt {
    Prompt {
        text: text.into(),
        voice: Some(voice.into()),
        ..Default::default()
    }
}

#[test]
fn a_pt_voice_primes_as_nvidias_lmgen_does_from_it() {
    let r: Reference = read_json("reference.json");
    let pt: PtReference = read_json("reference_pt.json");
    let v = read_voice_pt(&fixture("voice.pt")).unwrap();
    assert_eq!(
        [v.steps(), 1, 1, v.d_model()].to_vec(),
        pt.embeddings_shape,
        "embeddings [steps, 1, 1, d_model]"
    );
    assert_eq!(
        [1, v.cache.len(), v.cache[0].len()].to_vec(),
        pt.cache_shape
    );

    let (_d, mut m) = model();
    let primed = m
        .prime(&prompt(&r.text_prompt, fixture("voice.pt")))
        .unwrap();
    let prefill: Vec<&RefStep> = pt.steps.iter().filter(|s| s.phase != "user").collect();
    assert_eq!(primed.steps, prefill.len() + 1, "step 0 runs no model");
    let mut ours = m.last_prefill().to_vec();
    for u in &r.user_codes {
        ours.push(m.step_tokens(None, None, Some(u)).unwrap().unwrap());
    }
    let theirs: Vec<&RefStep> = pt.steps.iter().collect();
    let a = compare(&ours, &theirs);
    let rate = a.rate();
    println!(
        "voice.pt: {} forced tokens equal; {}/{} generated equal ({:.1} %); \
         prefill {} steps in {:?}",
        a.forced,
        a.agree,
        a.generated,
        100.0 * rate,
        primed.steps,
        primed.elapsed
    );
    assert!(rate >= 0.9, "only {:.1} % agree", 100.0 * rate);
}

#[test]
fn a_bf16_pt_voice_reads_and_primes() {
    let v = read_voice_pt(&fixture("voice_bf16.pt")).unwrap();
    let f32v = read_voice_pt(&fixture("voice.pt")).unwrap();
    assert_eq!(v.embeddings.dims(), f32v.embeddings.dims());
    assert_eq!(v.cache, f32v.cache);
    let (_d, mut m) = model();
    let a = m
        .prime(&prompt("Hello.", fixture("voice_bf16.pt")))
        .unwrap();
    let b = m.prime(&prompt("Hello.", fixture("voice.pt"))).unwrap();
    assert_eq!(a.steps, b.steps);
}

#[test]
fn a_pt_that_is_not_a_voice_is_refused_and_the_previous_persona_stays() {
    let (d, mut m) = model();
    let good = m
        .prime(&prompt("You are kind.", fixture("voice.pt")))
        .unwrap();
    let before = m.last_prefill().to_vec();

    let e = format!(
        "{:#}",
        m.prime(&prompt("x", fixture("not_a_voice.pt")))
            .unwrap_err()
    );
    assert!(e.contains("not_a_voice.pt"), "{e}");
    assert!(
        e.contains("not a PersonaPlex voice") && e.contains("weight"),
        "{e}"
    );
    assert!(e.contains("voices.tgz"), "the fix: {e}");

    let junk = d.path().join("junk.pt");
    std::fs::write(&junk, b"not a zip").unwrap();
    let e = format!("{:#}", m.prime(&prompt("x", &junk)).unwrap_err());
    assert!(
        e.contains("junk.pt") && e.contains("not a PyTorch file"),
        "{e}"
    );

    let e = format!(
        "{:#}",
        m.prime(&prompt("x", d.path().join("gone.pt"))).unwrap_err()
    );
    assert!(e.contains("gone.pt") && e.contains("no such file"), "{e}");

    assert_eq!(m.step_idx(), good.steps, "nothing stepped");
    assert_eq!(m.last_prefill(), &before[..]);
    m.reset();
    assert_eq!(
        m.last_prefill(),
        &before[..],
        "a reset replays the good one"
    );
}

#[test]
fn a_voice_by_name_comes_from_the_voices_directory() {
    let (d, m) = model();
    assert_eq!(m.voices_dir(), Some(d.path().join("voices").as_path()));
    let voices = d.path().join("voices");
    std::fs::create_dir(&voices).unwrap();
    std::fs::copy(fixture("voice.pt"), voices.join("NATF2.pt")).unwrap();
    std::fs::copy(fixture("voice.wav"), voices.join("mine.wav")).unwrap();
    let mut m = m;
    let by_name = m.prime(&prompt("Hello.", "NATF2")).unwrap();
    let by_name_steps = m.last_prefill().to_vec();
    let by_path = m.prime(&prompt("Hello.", fixture("voice.pt"))).unwrap();
    assert_eq!(by_name.steps, by_path.steps);
    assert_eq!(m.last_prefill(), &by_name_steps[..]);
    // NVIDIA's web client sends the file name.
    m.prime(&prompt("Hello.", "NATF2.pt")).unwrap();
    assert_eq!(m.last_prefill(), &by_name_steps[..]);
    m.prime(&prompt("Hello.", "mine")).unwrap();

    let e = format!("{:#}", m.prime(&prompt("x", "VARM9")).unwrap_err());
    assert!(e.contains("VARM9") && e.contains("NATF2, mine"), "{e}");
    assert_eq!(
        resolve_voice("NATF2.pt", Some(&voices), VoiceOrigin::Remote).unwrap(),
        VoiceSource::Embeddings(voices.join("NATF2.pt"))
    );
    let outside = fixture("voice.pt");
    assert!(resolve_voice(
        outside.to_str().unwrap(),
        Some(&voices),
        VoiceOrigin::Remote
    )
    .is_err());

    let other = m.with_voices_dir(Some(Path::new("/nonexistent/voices").into()));
    let mut other = other;
    let e = format!("{:#}", other.prime(&prompt("x", "NATF2")).unwrap_err());
    assert!(
        e.contains("/nonexistent/voices") && e.contains("voices.tgz"),
        "{e}"
    );
}
