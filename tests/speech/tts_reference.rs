//! Agreement with Kyutai's own Python TTS (tools/tts_reference/): a tiny checkpoint in
//! the published `kyutai/tts-1.6b-en_fr` layout (PyTorch names, a second text stream,
//! a depth-transformer schedule) loads, and our greedy token stream, fed word by word
//! through the streaming API, matches `TTSModel.generate`'s step by step.

use assistant::models::parts::{TextToSpeech, TtsStep};
use assistant::models::speech::synthetic::write_tiny_mimi;
use assistant::models::speech::tts::dsm_tts::{agreement, StepTokens};
use assistant::models::speech::tts::kyutai::{KyutaiTts, TtsSampling};
use moshi::candle::Device;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

const FRAME: usize = 1920;

#[derive(Deserialize)]
struct Step {
    sampled: u32,
    text: u32,
    audio: Vec<i64>,
}

#[derive(Deserialize)]
struct Entry {
    tokens: Vec<u32>,
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    voice: String,
    delay_steps: usize,
    entries: Vec<Entry>,
    #[serde(default)]
    end_step: usize,
    consumption_times: Vec<usize>,
    steps: Vec<Step>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("tts/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn theirs(r: &Reference) -> Vec<StepTokens> {
    r.steps
        .iter()
        .map(|s| StepTokens {
            sampled: s.sampled,
            text: s.text,
            audio: s.audio.iter().map(|&a| u32::try_from(a).ok()).collect(),
        })
        .collect()
}

/// The fixture checkpoint, completed with the tokenizer and a tiny Mimi.
fn checkpoint(tmp: &Path) -> PathBuf {
    let dir = tmp.join("tts");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tts/config.json")).unwrap())
            .unwrap();
    for f in ["config.json", cfg["moshi_name"].as_str().unwrap()] {
        std::fs::copy(fixtures().join("tts").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(
        fixtures().join("spm_300.model"),
        dir.join(cfg["tokenizer_name"].as_str().unwrap()),
    )
    .unwrap();
    write_tiny_mimi(&dir, cfg["mimi_name"].as_str().unwrap(), 8, 256, 3).unwrap();
    dir
}

/// Load with the reference's voice, found in `voices`; greedy.
fn load_with(dir: &Path, voices: &Path, r: &Reference) -> KyutaiTts {
    let voice = voices.join(&r.voice);
    let mut tts = KyutaiTts::load(dir, Some(&voice), None, &Device::Cpu).unwrap();
    assert!(tts.is_published_layout());
    tts.set_sampling(TtsSampling {
        temperature: 0.0,
        ..Default::default()
    });
    tts
}

fn load(dir: &Path, r: &Reference) -> KyutaiTts {
    load_with(dir, &fixtures().join("tts"), r)
}

/// Speak `r.text`, each word pushed only once the synthesiser waits for text. Returns
/// the step results, the frames and the ms per model step.
fn speak_word_by_word(tts: &mut KyutaiTts, text: &str) -> (Vec<TtsStep>, Vec<Vec<f32>>, f64) {
    let mut words: std::collections::VecDeque<String> =
        text.split(' ').map(|w| format!("{w} ")).collect();
    tts.start().unwrap();
    let (mut steps, mut frames) = (vec![], vec![]);
    let t = Instant::now();
    for _ in 0..400 {
        let mut out = vec![0f32; FRAME];
        let s = tts.step(&mut out).unwrap();
        if s == TtsStep::Waiting {
            match words.pop_front() {
                Some(w) => tts.push_text(&w),
                None => tts.finish(),
            }
        }
        steps.push(s);
        frames.push(out);
        if s == TtsStep::Done {
            break;
        }
    }
    let n = tts.published_utterance().unwrap().run.trace.len();
    (steps, frames, t.elapsed().as_secs_f64() * 1000.0 / n as f64)
}

#[test]
fn our_token_stream_matches_kyutais_python_tts_step_by_step() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkpoint(tmp.path());
    let mut tts = load(&dir, &r);
    assert_eq!(tts.delay_frames(), r.delay_steps + 2);
    let (steps, frames, ms) = speak_word_by_word(&mut tts, &r.text);
    let u = tts.published_utterance().unwrap();
    let ours = &u.run.trace;
    let theirs = theirs(&r);

    // Forced: the text fed back (the words' tokens, muxed with the look-ahead) and the
    // audio codebooks held empty by the delays.
    let forced_text = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a.text == b.text)
        .count();
    let empty = |s: &StepTokens| s.audio.iter().map(Option::is_none).collect::<Vec<_>>();
    let forced_audio = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| empty(a) == empty(b))
        .count();
    let (same, total) = agreement(ours, &theirs);
    let generated: Vec<(u32, u32)> = ours
        .iter()
        .zip(&theirs)
        .flat_map(|(a, b)| {
            let text = std::iter::once((a.sampled, b.sampled));
            let audio = a
                .audio
                .iter()
                .zip(&b.audio)
                .filter_map(|(x, y)| Some(((*x)?, (*y)?)));
            text.chain(audio)
        })
        .collect();
    let gen_same = generated.iter().filter(|(a, b)| a == b).count();
    eprintln!(
        "published layout (tiny, CPU): {ms:.2} ms per model step; {} steps (Kyutai: {}); \
         forced text {forced_text}/{n}, forced empties {forced_audio}/{n}, generated \
         {gen_same}/{} ({:.1}%), all tokens {same}/{total}",
        ours.len(),
        theirs.len(),
        generated.len(),
        100.0 * gen_same as f64 / generated.len() as f64,
        n = theirs.len(),
    );
    assert_eq!(ours.len(), theirs.len(), "as many steps as Kyutai's");
    assert_eq!(
        forced_text,
        theirs.len(),
        "every fed-back text token agrees"
    );
    assert_eq!(
        forced_audio,
        theirs.len(),
        "the delays hold the same codebooks empty"
    );
    assert!(
        gen_same * 10 >= generated.len() * 9,
        "generated tokens agree {gen_same}/{}",
        generated.len()
    );
    assert_eq!(u.run.state.consumption_times, r.consumption_times);
    assert_eq!(u.run.state.end_step, Some(r.end_step));
    assert_eq!(r.entries.len(), 7);
    assert_eq!(
        r.entries[0].tokens[0], 1,
        "the main speaker's token starts the turn"
    );

    // The streaming API around it: audio, counted words, silence elsewhere, the end.
    assert_eq!(steps.last(), Some(&TtsStep::Done));
    let started: Vec<usize> = steps
        .iter()
        .filter_map(|s| match s {
            TtsStep::Audio { words_started } => Some(*words_started),
            _ => None,
        })
        .collect();
    assert!(started.windows(2).all(|w| w[0] <= w[1]), "{started:?}");
    assert_eq!(started.last(), Some(&7), "{started:?}");
    assert!(started.first() < started.last(), "{started:?}");
    for (f, s) in frames.iter().zip(&steps) {
        let loud = f.iter().any(|&x| x != 0.0);
        assert_eq!(loud, matches!(s, TtsStep::Audio { .. }), "{s:?}");
    }
}

#[test]
fn all_text_at_once_gives_the_same_tokens_and_cancel_stops_at_once() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkpoint(tmp.path());
    let mut tts = load(&dir, &r);
    tts.start().unwrap();
    tts.push_text(&r.text);
    tts.finish();
    let mut out = vec![0f32; FRAME];
    let mut waited = false;
    for _ in 0..200 {
        out.fill(0.0);
        match tts.step(&mut out).unwrap() {
            TtsStep::Done => break,
            TtsStep::Waiting => waited = true,
            TtsStep::Audio { .. } => {}
        }
    }
    assert!(!waited, "all the text was there");
    let ours = tts.published_utterance().unwrap().run.trace.clone();
    let theirs = theirs(&r);
    let first_diff = (0..ours.len().max(theirs.len())).find(|&i| ours.get(i) != theirs.get(i));
    assert_eq!(
        first_diff, None,
        "the same tokens whichever way the text came"
    );

    // Unfinished text waits for the look-ahead words; cancel silences the next frame.
    tts.start().unwrap();
    tts.push_text("Hello there, how");
    let mut saw_wait = false;
    for _ in 0..40 {
        out.fill(0.0);
        if tts.step(&mut out).unwrap() == TtsStep::Waiting {
            saw_wait = true;
            break;
        }
    }
    assert!(saw_wait, "a pop needs the word two ahead");
    tts.cancel();
    out.fill(0.0);
    assert_eq!(tts.step(&mut out).unwrap(), TtsStep::Done);
    assert!(out.iter().all(|&x| x == 0.0));
}

/// Rewrite the fixture's LM with `edit` applied to its tensors.
fn edit_lm(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, moshi::candle::Tensor>),
) {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let lm = dir.join(cfg["moshi_name"].as_str().unwrap());
    let mut t = moshi::candle::safetensors::load(&lm, &Device::Cpu).unwrap();
    edit(&mut t);
    moshi::candle::safetensors::save(&t, &lm).unwrap();
}

/// Greedy tokens of the whole text, pushed at once.
fn greedy_trace(tts: &mut KyutaiTts, text: &str) -> Vec<StepTokens> {
    tts.start().unwrap();
    tts.push_text(text);
    tts.finish();
    let mut out = vec![0f32; FRAME];
    for _ in 0..200 {
        out.fill(0.0);
        if tts.step(&mut out).unwrap() == TtsStep::Done {
            break;
        }
    }
    tts.published_utterance().unwrap().run.trace.clone()
}

#[test]
fn attention_weights_already_split_per_step_load_the_same() {
    // PyTorch's own state dict names (`in_projs.N.weight`), not the stacked legacy ones.
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkpoint(tmp.path());
    let sets = 5;
    edit_lm(&dir, |t| {
        let stacked: Vec<String> = t
            .keys()
            .filter(|k| k.ends_with("in_proj_weight") || k.ends_with("out_proj.weight"))
            .cloned()
            .collect();
        for k in stacked {
            let w = t.remove(&k).unwrap();
            let n = if k.starts_with("depformer.") { sets } else { 1 };
            let rows = w.dim(0).unwrap() / n;
            let (head, part) = match k.strip_suffix(".in_proj_weight") {
                Some(h) => (h.to_string(), "in_projs"),
                None => (
                    k.strip_suffix(".out_proj.weight").unwrap().to_string(),
                    "out_projs",
                ),
            };
            for i in 0..n {
                let c = w.narrow(0, i * rows, rows).unwrap().contiguous().unwrap();
                t.insert(format!("{head}.{part}.{i}.weight"), c);
            }
        }
    });
    let mut tts = load(&dir, &r);
    assert_eq!(greedy_trace(&mut tts, &r.text), theirs(&r));
}

#[test]
fn a_broken_published_checkpoint_names_what_is_wrong() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let voice = fixtures().join("tts").join(&r.voice);
    let err = |dir: &Path| match KyutaiTts::load(dir, Some(&voice), None, &Device::Cpu) {
        Ok(_) => panic!("loaded a broken checkpoint"),
        Err(e) => format!("{} | {}", e.message, e.remedy),
    };

    // A schedule that does not cover the codebooks.
    let dir = checkpoint(&tmp.path().join("schedule"));
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["depformer_weights_per_step_schedule"] = serde_json::json!([0, 1, 2]);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let m = err(&dir);
    assert!(
        m.contains("depformer_weights_per_step_schedule has 3 entries; dep_q is 8")
            && m.contains("config.json"),
        "{m}"
    );

    // The second stream's projection missing from the weights.
    let dir = checkpoint(&tmp.path().join("no_out2"));
    edit_lm(&dir, |t| {
        t.remove("text_emb.out2.weight");
    });
    let m = err(&dir);
    assert!(
        m.contains("text_emb.out2.weight") && m.contains("missing") && m.contains("download"),
        "{m}"
    );

    // Stacked attention weights that do not divide into the schedule's weight sets.
    let dir = checkpoint(&tmp.path().join("stack"));
    edit_lm(&dir, |t| {
        let k = "depformer.layers.0.self_attn.out_proj.weight";
        let w = t.remove(k).unwrap();
        t.insert(k.into(), w.narrow(0, 0, 33).unwrap().contiguous().unwrap());
    });
    let m = err(&dir);
    assert!(m.contains("not a multiple of its 5 weight sets"), "{m}");
}

/// The published config at full size with random weights, written by
/// `make_fixtures.py --published-size DIR` (3.2 GB, so not a fixture): loads through the
/// same path, agrees with Kyutai's first steps, and times a model step on this machine.
/// `TTS_PUBLISHED_DIR=DIR cargo test --test speech tts_reference:: -- --ignored --nocapture`
#[test]
#[ignore]
fn published_size_random_weights_agree_with_kyutai() {
    let dir = PathBuf::from(
        std::env::var("TTS_PUBLISHED_DIR")
            .expect("set TTS_PUBLISHED_DIR to the output of make_fixtures.py --published-size"),
    );
    let r: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    std::fs::copy(
        fixtures().join("spm_300.model"),
        dir.join(cfg["tokenizer_name"].as_str().unwrap()),
    )
    .unwrap();
    write_tiny_mimi(&dir, cfg["mimi_name"].as_str().unwrap(), 32, 2048, 3).unwrap();
    let t = Instant::now();
    let mut tts = load_with(&dir, &dir, &r);
    let load_s = t.elapsed().as_secs_f64();
    tts.start().unwrap();
    tts.push_text(&r.text);
    tts.finish();
    let mut out = vec![0f32; FRAME];
    let t = Instant::now();
    let mut first_audio = None;
    while tts.published_utterance().unwrap().run.trace.len() < r.steps.len() {
        out.fill(0.0);
        let s = tts.step(&mut out).unwrap();
        if first_audio.is_none() && matches!(s, TtsStep::Audio { .. }) {
            first_audio = Some(t.elapsed().as_secs_f64());
        }
        assert_ne!(s, TtsStep::Done);
    }
    let u = tts.published_utterance().unwrap();
    let n = r.steps.len();
    let ms = t.elapsed().as_secs_f64() * 1000.0 / u.run.trace.len() as f64;
    let ours = &u.run.trace[..n];
    let (same, total) = agreement(ours, &theirs(&r));
    let text_same = ours
        .iter()
        .zip(theirs(&r))
        .filter(|(a, b)| a.text == b.text)
        .count();
    eprintln!(
        "published size, random weights: load {load_s:.1} s, {ms:.0} ms per model step, \
         first audio after {:.1} s; {n} steps: fed text {text_same}/{n}, all tokens {same}/{total}",
        first_audio.unwrap_or(f64::NAN)
    );
    assert_eq!(text_same, n);
    assert!(same * 10 >= total * 9, "{same}/{total}");
}
