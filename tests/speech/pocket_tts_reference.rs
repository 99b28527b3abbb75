//! Pocket TTS against Kyutai's own `pocket-tts` 4.0.1 on tiny random checkpoints in the
//! published layout and names (tests/fixtures/pocket_tts, made by
//! tools/pocket_tts_reference; see its README): at temperature 0 with the same text and
//! voice, our chunks' tokens, latents, end-of-speech steps and audio must agree with the
//! package's, through the library, through the streaming `TextToSpeech` the cascade
//! drives, and through `assistant say`. The "lsd" model is shaped like the default
//! English model (tokenizer.json, LSD flow head); "drifting" like the 18M one
//! (tokenizer.model, drifting head, z projection, its own decoder sizes).

use assistant::models::parts::{TextToSpeech, TtsStep};
use assistant::models::speech::tts::pocket::files::VoiceSource;
use assistant::models::speech::tts::pocket::synth::generate;
use assistant::models::speech::tts::pocket::{
    PocketModel, PocketOptions, PocketSampling, PocketTts, Voice,
};
use moshi::candle::Device;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pocket_tts")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn reference(kind: &str) -> HashMap<String, Vec<f32>> {
    let path = fixtures().join(kind).join("reference.safetensors");
    moshi::candle::safetensors::load(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn snr_db(reference: &[f32], other: &[f32]) -> f64 {
    assert_eq!(reference.len(), other.len(), "lengths differ");
    let (mut s, mut d) = (0f64, 0f64);
    for (a, b) in reference.iter().zip(other) {
        s += (*a as f64).powi(2);
        d += (*a as f64 - *b as f64).powi(2);
    }
    if d == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (s / d).log10()
    }
}

const MIN_AUDIO_SNR_DB: f64 = 60.0;
const MIN_LATENT_SNR_DB: f64 = 60.0;

fn zero_temperature() -> PocketSampling {
    PocketSampling {
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// Speak `text` whole through the streaming synthesiser, as `assistant say` does.
fn stream(tts: &mut PocketTts, text: &str) -> Vec<f32> {
    tts.start().unwrap();
    tts.push_text(text);
    tts.finish();
    let mut out = Vec::new();
    let mut frame = vec![0f32; 1920];
    let mut words = 0;
    loop {
        frame.fill(0.0);
        match tts.step(&mut frame).unwrap() {
            TtsStep::Audio { words_started } => {
                assert!(words_started >= words, "words_started went back");
                words = words_started;
                out.extend_from_slice(&frame);
            }
            TtsStep::Waiting => panic!("waiting after finish"),
            TtsStep::Done => break,
        }
    }
    // An estimate from the frames spoken (the model gives no alignment): some words, never
    // more than there are.
    assert!(
        words >= 1 && words <= text.split_whitespace().count(),
        "{words} words started"
    );
    out
}

/// The cases of a model: cases.json's, or for a model with a cases.json of its own
/// (run_reference.py's list), that.
fn model_cases(kind: &str) -> Value {
    let own = fixtures().join(kind).join("cases.json");
    match std::fs::read_to_string(&own) {
        Ok(text) => serde_json::json!({ "cases": serde_json::from_str::<Value>(&text).unwrap() }),
        Err(_) => cases()["models"][kind].clone(),
    }
}

fn check_model(kind: &str) {
    let dir = fixtures().join(kind);
    let meta = &model_cases(kind);
    let refs = reference(kind);
    let dev = Device::Cpu;
    // The same loader as the published checkpoints (config.yaml beside the weights).
    let model = PocketModel::load(&dir, None, &dev).unwrap();
    // A checkpoint stored in bf16 (as Kyutai publishes it) keeps its flow LM in bf16.
    let bf16 = kind.ends_with("_bf16");
    assert_eq!(model.lm.is_bf16(), bf16, "{kind}: flow LM in bf16");
    let voice = Voice::load(&dir.join("voice.safetensors"), &model.lm, &dev).unwrap();
    let mut audios = Vec::new();
    for case in meta["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let g = generate(&model, &model.lm, &voice, text, &zero_temperature()).unwrap();
        let chunks = case["chunks"].as_array().unwrap();
        assert_eq!(
            g.latents.len(),
            chunks.len(),
            "{kind}/{name}: chunks {:?}",
            g.chunks
        );
        for (i, c) in chunks.iter().enumerate() {
            // The prepared chunk text tokenizes as the package's did.
            let prepared = c["text"].as_str().unwrap();
            let want: Vec<u32> = c["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect();
            let ours =
                assistant::models::speech::tts::pocket::text::prepare(&g.chunks[i], &model.cfg)
                    .unwrap()
                    .0;
            assert_eq!(
                model.tokenizer.encode(&ours),
                want,
                "{kind}/{name} chunk {i}: {ours:?} vs {prepared:?}"
            );
            let r = &refs[&format!("{name}.chunk{i}.latents")];
            let l = g.latents[i].concat();
            assert_eq!(
                l.len(),
                r.len(),
                "{kind}/{name} chunk {i}: {} frames, the package made {} (EOS step {})",
                g.latents[i].len(),
                r.len() / 32,
                c["eos_step"]
            );
            let snr = snr_db(r, &l);
            println!(
                "{kind}/{name} chunk {i}: {} frames, latents SNR {snr:.1} dB",
                g.latents[i].len()
            );
            assert!(
                snr >= MIN_LATENT_SNR_DB,
                "{kind}/{name} chunk {i}: latents SNR {snr:.1} dB"
            );
        }
        let r = &refs[&format!("{name}.audio")];
        let snr = snr_db(r, &g.audio);
        println!(
            "{kind}/{name}: {} samples, audio SNR {snr:.1} dB against pocket-tts",
            r.len()
        );
        assert!(
            snr >= MIN_AUDIO_SNR_DB,
            "{kind}/{name}: audio SNR {snr:.1} dB"
        );
        audios.push((name.to_string(), g.audio));
    }
    // Different texts give clearly different audio (the fixtures scale the text
    // embedding and zero the codec's biases so that they do).
    for i in 0..audios.len() {
        for j in i + 1..audios.len() {
            let (a, b) = (&audios[i], &audios[j]);
            let n = a.1.len().min(b.1.len());
            let snr = snr_db(&a.1[..n], &b.1[..n]);
            println!("{kind}: {} against {}: {snr:.1} dB", a.0, b.0);
            assert!(
                snr < 30.0,
                "{kind}: {} and {} sound alike ({snr:.1} dB)",
                a.0,
                b.0
            );
        }
    }
    if !bf16 {
        check_cloned_voice(kind, &model, &voice, &refs);
    }
    // The streaming synthesiser the cascade drives gives the same audio.
    let opts = PocketOptions {
        sampling: zero_temperature(),
        ..Default::default()
    };
    let mut tts = PocketTts::load(
        &dir,
        None,
        VoiceSource::State(dir.join("voice.safetensors")),
        &opts,
        &dev,
    )
    .unwrap();
    for (name, audio) in &audios {
        let text = meta["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name.as_str())
            .unwrap()["text"]
            .as_str()
            .unwrap();
        let s = stream(&mut tts, text);
        assert_eq!(
            &s, audio,
            "{kind}/{name}: streaming differs from whole-text generation"
        );
    }
}

/// Cloning the voice from its recording, as the package's export-voice did (the
/// fixtures' voice states come from the f32 checkpoints' encoders).
fn check_cloned_voice(
    kind: &str,
    model: &PocketModel,
    voice: &Voice,
    refs: &HashMap<String, Vec<f32>>,
) {
    let cloned = Voice::from_wav(&fixtures().join("voice.wav"), model).unwrap();
    assert_eq!(
        cloned.cache.offset, voice.cache.offset,
        "{kind}: voice prompt length"
    );
    for (i, (a, b)) in voice
        .cache
        .layers
        .iter()
        .zip(&cloned.cache.layers)
        .enumerate()
    {
        for (x, y) in [
            (a.keys().unwrap(), b.keys().unwrap()),
            (a.values().unwrap(), b.values().unwrap()),
        ] {
            let x = x.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let y = y.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let snr = snr_db(&x, &y);
            println!("{kind}: voice from voice.wav, layer {i}: cache SNR {snr:.1} dB against export-voice");
            assert!(
                snr >= MIN_LATENT_SNR_DB,
                "{kind}: cloned voice layer {i}: {snr:.1} dB"
            );
        }
    }
    let g = generate(
        model,
        &model.lm,
        &cloned,
        "Hello world.",
        &zero_temperature(),
    )
    .unwrap();
    let snr = snr_db(&refs["hello.audio"], &g.audio);
    println!("{kind}/hello with the voice cloned from voice.wav: audio SNR {snr:.1} dB");
    assert!(
        snr >= MIN_AUDIO_SNR_DB,
        "{kind}: cloned voice audio SNR {snr:.1} dB"
    );
}

#[test]
fn lsd_model_agrees_with_pocket_tts() {
    check_model("lsd");
}

#[test]
fn drifting_model_agrees_with_pocket_tts() {
    check_model("drifting");
}

/// The lsd model stored in bf16, as Kyutai publishes model.safetensors: the package
/// widens the weights to f32; we keep the flow LM's in bf16 and compute in f32.
#[test]
fn a_bf16_checkpoint_agrees_with_pocket_tts() {
    check_model("lsd_bf16");
}

#[test]
fn assistant_say_agrees_with_pocket_tts() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["lsd", "drifting"] {
        let dir = fixtures().join(kind);
        let refs = reference(kind);
        let wav = tmp.path().join(format!("{kind}.wav"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_assistant"))
            .args([
                "say",
                "Hello world.",
                "--device",
                "cpu",
                "--tts-temperature",
                "0",
            ])
            .arg("--tts-model-dir")
            .arg(&dir)
            .arg("--tts-voice")
            .arg(dir.join("voice.safetensors"))
            .arg("--output")
            .arg(&wav)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<f32> = hound::WavReader::open(&wav)
            .unwrap()
            .samples::<f32>()
            .map(|s| s.unwrap())
            .collect();
        let snr = snr_db(&refs["hello.audio"], &got);
        println!("assistant say, {kind}: audio SNR {snr:.1} dB against pocket-tts");
        assert!(
            snr >= MIN_AUDIO_SNR_DB,
            "{kind}: say's audio SNR {snr:.1} dB"
        );
    }
}

#[test]
fn bad_inputs_name_the_file_and_the_fix() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("lsd");
    // A missing tokenizer.
    let d = tmp.path().join("no_tokenizer");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["model.safetensors", "config.yaml"] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    let e = PocketModel::load(&d, None, &dev).err().unwrap();
    assert!(
        e.message.contains("tokenizer.json") && e.message.contains("missing"),
        "{}",
        e.message
    );
    // A checkpoint of the wrong shape: the lsd weights under the drifting config.
    let d = tmp.path().join("wrong_shape");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("model.safetensors"), d.join("model.safetensors")).unwrap();
    std::fs::copy(src.join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
    let cfg = std::fs::read_to_string(fixtures().join("drifting/config.yaml"))
        .unwrap()
        .replace("tokenizer.model", "tokenizer.json")
        .replace("tokenizer: sentencepiece", "tokenizer: tokenizers");
    std::fs::write(d.join("config.yaml"), cfg).unwrap();
    let e = PocketModel::load(&d, None, &dev).err().unwrap();
    assert!(
        e.message.contains("model.safetensors") && e.message.contains("does not match"),
        "{}",
        e.message
    );
    assert!(e.remedy.contains("config.yaml"), "{}", e.remedy);
    // An unknown voice name, and a WAV on a checkpoint without the cloning encoder (the
    // published one: the tiny checkpoint without its mimi.encoder.* and speaker tensors).
    let d = tmp.path().join("no_encoder");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["config.yaml", "tokenizer.json"] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    let kept: HashMap<String, moshi::candle::Tensor> =
        moshi::candle::safetensors::load(src.join("model.safetensors"), &dev)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("mimi.encoder") && k != "flow_lm.speaker_proj_weight")
            .collect();
    moshi::candle::safetensors::save(&kept, d.join("model.safetensors")).unwrap();
    let opts = PocketOptions::default();
    let mut tts = PocketTts::load(&d, None, VoiceSource::Empty, &opts, &dev).unwrap();
    let e = tts.set_voice("nobody").unwrap_err().to_string();
    assert!(e.contains("nobody") && e.contains("alba"), "{e}");
    let e = tts
        .set_voice(fixtures().join("voice.wav").to_str().unwrap())
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("kyutai/pocket-tts") && e.contains("alba"), "{e}");
    // A voice of another model (three layers against two).
    let e = tts
        .set_voice(
            fixtures()
                .join("drifting/voice.safetensors")
                .to_str()
                .unwrap(),
        )
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("another model"), "{e}");
    // The synthesiser still speaks after the refusals.
    tts.set_sampling(zero_temperature());
    let a = stream(&mut tts, "Hello world.");
    assert!(!a.is_empty());
}

#[test]
fn built_in_configs_are_the_wheels() {
    use assistant::models::speech::tts::pocket::config::{ENGLISH_18M_YAML, ENGLISH_YAML};
    for (ours, file) in [
        (ENGLISH_YAML, "english.yaml"),
        (ENGLISH_18M_YAML, "english_18m_2026-10.yaml"),
    ] {
        let wheel =
            std::fs::read_to_string(fixtures().join("published_configs").join(file)).unwrap();
        // Ours carry one line naming their origin before the wheel's text.
        let body = ours.split_once('\n').unwrap().1;
        assert_eq!(body, wheel, "{file} differs from pocket-tts 4.0.1's");
    }
}

/// Random weights never fire the EOS head, so every chunk ran to the package's length
/// bound (2 s of padding a chunk, and a tiny tokenizer's letters each count as a
/// token) and a bench's replies lasted far longer than speech would: a scripted length
/// ends each chunk where its words would end when spoken.
#[test]
fn a_scripted_length_ends_each_chunk_as_speech_of_its_text_would() {
    use assistant::models::speech::tts::pocket::text::prepare;
    let dir = fixtures().join("lsd");
    let dev = Device::Cpu;
    let model = PocketModel::load(&dir, None, &dev).unwrap();
    let voice = Voice::load(&dir.join("voice.safetensors"), &model.lm, &dev).unwrap();
    let text = "Sure, I can help with that. First open the settings page and find privacy.";
    let never = PocketSampling {
        eos_threshold: Some(f64::INFINITY),
        ..zero_temperature()
    };
    let scripted = PocketSampling {
        scripted_frames_per_word: Some(5.0),
        ..never
    };
    let bound = generate(&model, &model.lm, &voice, text, &never).unwrap();
    let g = generate(&model, &model.lm, &voice, text, &scripted).unwrap();
    assert!(!g.chunks.is_empty());
    for (i, chunk) in g.chunks.iter().enumerate() {
        let (_, after_eos) = prepare(chunk, &model.cfg).unwrap();
        let after = model
            .cfg
            .model_recommended_frames_after_eos
            .unwrap_or(after_eos);
        let words = chunk.split_whitespace().count();
        let want = words * 5 + after;
        assert_eq!(
            g.latents[i].len(),
            want,
            "chunk {i} {chunk:?}: {words} words"
        );
        // Unscripted, the same chunk runs to the length bound: tokens / 3 s + 2 s.
        assert!(
            bound.latents[i].len() > want + 10,
            "chunk {i}: {}",
            bound.latents[i].len()
        );
    }
    // 14 words: 70 frames of speech, where the bound (over 60 tokens) gives 2.5 times that.
    assert!(g.audio.len() * 2 < bound.audio.len());
}
