//! The built-in personas as PersonaPlex hears them: each has its own role text and its
//! own NVIDIA voice, and each primes the (tiny) model with the voice, 0.5 s of silence,
//! its role text and 0.5 s of silence. Prints the prefill steps and time per persona on
//! this machine (figures for the README: `cargo test --test personaplex figures:: --
//! --nocapture`), asserting only what a user would notice: the step counts.

use crate::personaplex_common;
use assistant::bus::Cancel;
use assistant::models::duplex::{DuplexModel, Prompt};
use assistant::models::moshi::checkpoint::inspect;
use assistant::models::moshi::personaplex::model::PersonaPlexModel;
use assistant::models::moshi::personaplex::step::SILENCE_FRAMES;
use assistant::persona::Catalog;
use moshi::candle::Device;
use personaplex_common::{complete_checkpoint, fixtures, greedy};
use std::collections::BTreeSet;

#[test]
fn each_builtin_persona_primes_with_its_own_role_and_voice() {
    let catalog = Catalog::builtin();
    let personas = &catalog.personas;
    assert_eq!(personas.len(), 6);
    let roles: BTreeSet<&str> = personas.iter().map(|p| p.prompt.as_str()).collect();
    let voices: BTreeSet<String> = personas
        .iter()
        .map(|p| {
            let v = p.voice_prompt.as_ref().expect("a built-in voice");
            v.to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(roles.len(), 6, "every role text differs");
    assert_eq!(voices.len(), 6, "every voice differs");
    let nvidia = [
        "NATF0", "NATF1", "NATF2", "NATF3", "NATM0", "NATM1", "NATM2", "NATM3", "VARF0", "VARF1",
        "VARF2", "VARF3", "VARF4", "VARM0", "VARM1", "VARM2", "VARM3", "VARM4",
    ];
    assert!(
        voices.iter().all(|v| nvidia.contains(&v.as_str())),
        "{voices:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("personaplex/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(dir.path());
    // NVIDIA's voices are made for the 7B model: the tiny model's own voice file (2.06 s,
    // made by NVIDIA's code from the fixture WAV) stands in for each name.
    let vdir = dir.path().join("voices");
    std::fs::create_dir(&vdir).unwrap();
    for v in &voices {
        std::fs::copy(
            fixtures().join("personaplex/voice.pt"),
            vdir.join(format!("{v}.pt")),
        )
        .unwrap();
    }
    let mut m = PersonaPlexModel::load(
        inspect(dir.path()).unwrap(),
        &greedy(),
        &Device::Cpu,
        "cpu",
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap();
    println!(
        "| persona | voice | role text tokens | prefill steps | time (median of 3) | per step |"
    );
    println!("|---|---|---|---|---|---|");
    for p in personas {
        let prompt = Prompt {
            text: p.prompt.clone(),
            voice: p.voice_prompt.clone(),
            ..Default::default()
        };
        let mut times = Vec::new();
        let mut steps = 0;
        for _ in 0..3 {
            let primed = m.prime(&prompt).unwrap();
            steps = primed.steps;
            times.push(primed.elapsed.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let tokens = m.text_tokens(&p.prompt).len();
        // 26 voice steps (25 embeddings replayed after step 0), the silences, the text.
        assert_eq!(steps, 26 + 2 * SILENCE_FRAMES + tokens, "{}", p.name);
        println!(
            "| {} | {} | {tokens} | {steps} | {:.0} ms | {:.2} ms |",
            p.name,
            p.voice_prompt.as_ref().unwrap().display(),
            times[1],
            times[1] / steps as f64
        );
    }
}
