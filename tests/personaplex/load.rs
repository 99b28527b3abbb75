//! PersonaPlex checkpoints in PyTorch's depformer layout load (16 slices, or 8 widened
//! to 16 as NVIDIA's loader does), load as a PersonaPlex model, and a wrong slice count
//! is refused with an error that names the file and the fix.

use crate::personaplex_common;
use assistant::bus::Cancel;
use assistant::models::duplex::{DuplexModel, Prompt, StepOutput};
use assistant::models::moshi::checkpoint::inspect;
use assistant::models::moshi::personaplex::model::PersonaPlexModel;
use moshi::candle::{Device, Tensor};
use personaplex_common::{complete_checkpoint, fixtures, greedy};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A checkpoint directory whose LM keeps the fixture's first `slices` depformer steps.
fn checkpoint_with_slices(slices: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("personaplex");
    let all =
        moshi::candle::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let step_of = |name: &str| -> Option<usize> {
        for p in ["depformer_in.", "linears.", "depformer_emb."] {
            if let Some(rest) = name.strip_prefix(p) {
                let k: usize = rest.split('.').next()?.parse().ok()?;
                return Some(if p == "depformer_emb." { k + 1 } else { k });
            }
        }
        let g = name.split(".gating.").nth(1)?;
        g.split('.').next()?.parse().ok()
    };
    let mut kept: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in all {
        if step_of(&name).is_some_and(|k| k >= slices) {
            continue;
        }
        let t = if name.starts_with("depformer.") && name.ends_with("self_attn.in_proj_weight")
            || name.starts_with("depformer.") && name.ends_with("self_attn.out_proj.weight")
        {
            let rows = t.dims()[0] / 16;
            t.narrow(0, 0, rows * slices).unwrap()
        } else {
            t
        };
        kept.insert(name, t);
    }
    moshi::candle::safetensors::save(&kept, dir.path().join("model.safetensors")).unwrap();
    complete_checkpoint(dir.path());
    dir
}

fn load(dir: &Path) -> Result<PersonaPlexModel, String> {
    let ck = inspect(dir).map_err(|e| e.to_string())?;
    PersonaPlexModel::load(
        ck,
        &greedy(),
        &Device::Cpu,
        "cpu",
        &mut |_| {},
        &Cancel::new(),
    )
    .map_err(|e| format!("{e}"))
}

fn first_steps(m: &mut PersonaPlexModel) -> Vec<Vec<u32>> {
    let user = [1u32, 2, 3, 4, 5, 6, 7, 8];
    (0..6)
        .filter_map(|_| m.step_tokens(None, None, Some(&user)).unwrap())
        .map(|s| s.column[..9].to_vec())
        .collect()
}

#[test]
fn sixteen_and_eight_slice_checkpoints_load_and_speak_alike() {
    // Steps 0-7 are the same weights in both files, and the agent's codebooks (all
    // that is kept) only pass through depformer steps 0-7, so both speak alike.
    let d16 = checkpoint_with_slices(16);
    let d8 = checkpoint_with_slices(8);
    let mut m16 = load(d16.path()).unwrap();
    let mut m8 = load(d8.path()).unwrap();
    assert_eq!(first_steps(&mut m16), first_steps(&mut m8));
}

#[test]
fn a_wrong_slice_count_is_refused_with_the_file_and_the_fix() {
    let d = checkpoint_with_slices(7);
    let e = load(d.path()).err().expect("7 slices must not load");
    assert!(e.contains("model.safetensors"), "{e}");
    assert!(e.contains("has 7 depformer slices"), "{e}");
    assert!(e.contains("num_slices"), "{e}");
}

#[test]
fn the_engine_boundary_primes_steps_and_replays() {
    let d = checkpoint_with_slices(16);
    let mut m = load(d.path()).unwrap();
    assert!(m.takes_prompt());
    let voice = fixtures().join("personaplex/voice.wav");
    let primed = m
        .prime(&Prompt {
            text: "You are a kind teacher.".into(),
            voice: Some(voice),
            ..Default::default()
        })
        .unwrap();
    // 26 voice frames, 6 + 6 of silence, and the wrapped text's tokens.
    let text = m.text_tokens("You are a kind teacher.").len();
    assert_eq!(primed.steps, 26 + 12 + text);
    let mut out = StepOutput::default();
    let frame = vec![0.0f32; m.frame_len()];
    for _ in 0..4 {
        out.clear(m.frame_len());
        m.step(&frame, &mut out).unwrap();
    }
    assert!(out.text_token.is_some());
    assert_eq!(m.step_idx(), primed.steps + 4);
    m.reset();
    assert_eq!(
        m.step_idx(),
        primed.steps,
        "reset replays the persona's prefill"
    );

    let e = m
        .prime(&Prompt {
            text: "x".into(),
            voice: Some(fixtures().join("personaplex/missing.wav")),
            ..Default::default()
        })
        .unwrap_err();
    assert!(format!("{e:#}").contains("missing.wav"), "{e:#}");
    assert!(m
        .prime(&Prompt {
            text: " ".into(),
            voice: None,
            ..Default::default()
        })
        .is_err());
    let silent = d.path().join("silent.wav");
    assistant::audio::wav::write_wav_mono(&silent, 24_000, &vec![0.0; 24_000]).unwrap();
    let e = m
        .prime(&Prompt {
            text: "x".into(),
            voice: Some(silent),
            ..Default::default()
        })
        .unwrap_err();
    assert!(format!("{e:#}").contains("silent"), "{e:#}");
    let long = d.path().join("long.wav");
    let noise: Vec<f32> = (0..24_000 * 31)
        .map(|i: u64| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2)
        .collect();
    assistant::audio::wav::write_wav_mono(&long, 24_000, &noise).unwrap();
    let e = m
        .prime(&Prompt {
            text: "x".into(),
            voice: Some(long),
            ..Default::default()
        })
        .unwrap_err();
    assert!(format!("{e:#}").contains("at most 30 s"), "{e:#}");
    let junk = d.path().join("junk.wav");
    std::fs::write(&junk, b"not a wav at all").unwrap();
    let e = m
        .prime(&Prompt {
            text: "x".into(),
            voice: Some(junk),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("junk.wav") && format!("{e:#}").contains("give a WAV"),
        "{e:#}"
    );
    // The persona primed last is still the one a reset replays.
    m.reset();
    assert_eq!(m.step_idx(), primed.steps);
}

#[test]
fn a_persona_names_its_role_text_and_voice_prompt() {
    let base = std::fs::read_to_string(fixtures().join("personas/valid/minimal.toml")).unwrap();
    let text =
        format!("prompt = \"You are JARVIS.\"\nvoice_prompt = \"voices/jarvis.wav\"\n{base}");
    let p = assistant::persona::parse("x.toml", &text, Some(Path::new("/p"))).unwrap();
    assert_eq!(p.prompt, "You are JARVIS.");
    assert_eq!(p.voice_prompt, Some(PathBuf::from("/p/voices/jarvis.wav")));
    // A bare name is a voice from the voices directory, looked up when the model primes;
    // a WAV next to the persona file is the persona file's.
    for (value, kept) in [
        ("NATF2", "NATF2"),
        ("NATF2.pt", "NATF2.pt"),
        ("mine.wav", "/p/mine.wav"),
        ("./mine.pt", "/p/./mine.pt"),
    ] {
        let text = format!("voice_prompt = \"{value}\"\n{base}");
        let p = assistant::persona::parse("x.toml", &text, Some(Path::new("/p"))).unwrap();
        assert_eq!(p.voice_prompt, Some(PathBuf::from(kept)), "{value}");
    }
    let e = assistant::persona::parse("x.toml", &format!("voice_prompt = \" \"\n{base}"), None)
        .unwrap_err();
    assert!(e.message.contains("voice_prompt is empty"), "{e}");
}

#[test]
fn load_model_primes_with_the_options_prompt() {
    use assistant::models::moshi::{load_model_with, DeviceChoice, Discovery, ModelOptions};
    let d = checkpoint_with_slices(16);
    let opts = ModelOptions {
        model_dir: Some(d.path().to_path_buf()),
        device: DeviceChoice::Cpu,
        sampling: greedy(),
        prompt: Prompt {
            text: "You are a kind teacher.".into(),
            voice: Some(fixtures().join("personaplex/voice.wav")),
            ..Default::default()
        },
        ..Default::default()
    };
    let loaded =
        load_model_with(&opts, &Discovery::default(), &mut |_| {}, &Cancel::new()).unwrap();
    assert!(loaded.model.takes_prompt());
    let primed = loaded
        .notices
        .iter()
        .find(|n| {
            n.message
                .starts_with("primed with the role text and the voice prompt")
        })
        .unwrap_or_else(|| panic!("no priming notice in {:?}", loaded.notices));
    assert!(primed.message.contains(" steps in "), "{}", primed.message);

    let bad = ModelOptions {
        prompt: Prompt {
            text: "x".into(),
            voice: Some(d.path().join("nope.wav")),
            ..Default::default()
        },
        ..opts
    };
    let e = load_model_with(&bad, &Discovery::default(), &mut |_| {}, &Cancel::new())
        .err()
        .expect("a missing voice WAV must fail the load");
    assert!(e.message.contains("nope.wav"), "{}", e.message);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let d = checkpoint_with_slices(16);
    let mut m = load(d.path()).unwrap().with_context(40);
    let e = m
        .prime(&Prompt {
            text: "You are a kind teacher.".into(),
            voice: Some(fixtures().join("personaplex/voice.wav")),
            ..Default::default()
        })
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("context is 40 steps"), "{e}");
    assert!(e.contains("26 voice frames"), "{e}");
}

#[test]
fn without_an_lm_config_pytorch_names_mean_the_personaplex_config() {
    let d = checkpoint_with_slices(16);
    std::fs::remove_file(d.path().join("lm_config.toml")).unwrap();
    // The tiny file then meets the 7B config: the tokenizer check names the config used.
    let e = inspect(d.path())
        .err()
        .expect("a 300-piece tokenizer does not fit 7B");
    assert!(
        e.to_string()
            .contains("the PersonaPlex config (PyTorch depformer names, 16 slices"),
        "{e}"
    );
}

/// The memory plan counts what a PersonaPlex load holds: its PyTorch depformer planned
/// under the crate's names, an 8-slice file widened to 16, as the loader widens it.
#[test]
fn the_memory_plan_counts_the_personaplex_depformer_as_loaded() {
    use assistant::models::moshi::placement::Placement;
    use assistant::models::moshi::size_context_for;
    use assistant::models::moshi::sizing::{census, residency, Backend};
    for slices in [16, 8] {
        let d = checkpoint_with_slices(slices);
        let mut ck = inspect(d.path()).unwrap();
        size_context_for(&mut ck, Backend::Cpu, "cpu", None, Some(1 << 34)).unwrap();
        let plan = ck.plan.clone().expect("a plan");
        let table = census(&ck.config.lm, false, 4).unwrap();
        let r = residency(&table, Placement::default(), 4);
        assert_eq!(
            plan.weights.device,
            r.device + r.host,
            "{slices} slices in the file: {}",
            plan.explain()
        );
    }
}

/// `assistant convert SRC DST --q8`: the PyTorch-named checkpoint (8 slices here, widened)
/// becomes our layout with a q8 GGUF, an lm_config.toml and its voices; it loads as
/// PersonaPlex and, the tiny model's matrices being too narrow for q8 blocks and so kept
/// f32, speaks token for token as the original.
#[test]
fn convert_writes_a_q8_personaplex_that_loads_and_speaks_alike() {
    for slices in [16, 8] {
        let src = checkpoint_with_slices(slices);
        std::fs::create_dir(src.path().join("voices")).unwrap();
        std::fs::copy(
            fixtures().join("personaplex/voice.pt"),
            src.path().join("voices/NATF2.pt"),
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let dst = out.path().join("q8");
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_assistant"))
            .args(["convert", "--q8"])
            .arg(src.path())
            .arg(&dst)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            said.contains("model.q8.gguf") && said.contains("1 voices"),
            "{said}"
        );
        assert!(dst.join("model.q8.gguf").is_file());
        assert!(dst.join("lm_config.toml").is_file());
        assert!(dst.join("voices/NATF2.pt").is_file());

        let mut original = load(src.path()).unwrap();
        let mut converted = load(&dst).unwrap();
        let prompt = Prompt {
            text: "You are a kind teacher.".into(),
            voice: Some("NATF2".into()),
            ..Default::default()
        };
        let a = original.prime(&prompt).unwrap();
        let b = converted.prime(&prompt).unwrap();
        assert_eq!(a.steps, b.steps);
        assert_eq!(original.last_prefill(), converted.last_prefill());
        assert_eq!(first_steps(&mut original), first_steps(&mut converted));
    }
    // A second conversion into the same place is refused; so is converting moshiko.
    let src = checkpoint_with_slices(16);
    let out = tempfile::tempdir().unwrap();
    let run = |dst: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_assistant"))
            .args(["convert", "--q8"])
            .arg(src.path())
            .arg(dst)
            .output()
            .unwrap()
    };
    assert!(run(out.path()).status.success());
    let again = run(out.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a model"));
}
