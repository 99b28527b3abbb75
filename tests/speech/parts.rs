//! The cascade's speech parts on synthetic checkpoints in the published layouts (tiny,
//! random weights, written here): Kyutai STT on a spoken WAV, Kyutai TTS on a sentence
//! pushed as an LLM writes it, voices, barge-in, and broken or foreign checkpoints.

use crate::load_server;
use assistant::bus::Cancel;
use assistant::models::moshi::Discovery;
use assistant::models::parts::{SpeechToText, TextToSpeech, TtsStep};
use assistant::models::speech::files::{
    self as speech_files, find_stt_dir, find_tts_dir, CONFIG_FILE, STT_FILES, STT_LM_FILE,
    TTS_FILES,
};
use assistant::models::speech::files::{SttOptions, TtsOptions};
use assistant::models::speech::stt::kyutai::KyutaiStt;
use assistant::models::speech::synthetic::{write_stt, write_tts, write_voice, TINY_SIG};
use assistant::models::speech::tts::kyutai::{KyutaiTts, TtsSampling};
use moshi::candle::Device;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

const FRAME: usize = 1920;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

/// 24 kHz mono samples of a fixture WAV.
fn wav(name: &str) -> Vec<f32> {
    let mut r = hound::WavReader::open(fixture(name)).unwrap();
    let spec = r.spec();
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1));
    r.samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect()
}

/// One tiny STT and one tiny TTS (with a voices dir), written once for all tests.
struct Dirs {
    _tmp: tempfile::TempDir,
    stt: PathBuf,
    tts: PathBuf,
    voices: PathBuf,
}

fn dirs() -> &'static Dirs {
    static D: OnceLock<Dirs> = OnceLock::new();
    D.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let (stt, tts, voices) = (
            tmp.path().join("stt"),
            tmp.path().join("tts"),
            tmp.path().join("voices"),
        );
        write_stt(&stt, 11).unwrap();
        write_tts(&tts, 12).unwrap();
        for (i, name) in ["expresso/calm.wav", "expresso/bright.wav"]
            .iter()
            .enumerate()
        {
            write_voice(
                &voices.join(format!("{name}.{TINY_SIG}@1.safetensors")),
                20 + i as u64,
            )
            .unwrap();
        }
        Dirs {
            _tmp: tmp,
            stt,
            tts,
            voices,
        }
    })
}

/// A copy of a checkpoint directory to break.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Run the recogniser over a WAV (plus a second of silence to flush its delay).
fn transcribe(stt: &mut KyutaiStt, pcm: &[f32]) -> (Vec<String>, Vec<Option<f32>>, f64) {
    let mut pcm = pcm.to_vec();
    pcm.resize((pcm.len().div_ceil(FRAME) + 13) * FRAME, 0.0);
    let (mut words, mut eos) = (vec![], vec![]);
    let t = Instant::now();
    for f in pcm.chunks(FRAME) {
        let s = stt.step(f).unwrap();
        words.extend(s.words);
        eos.push(s.end_of_speech);
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / (pcm.len() / FRAME) as f64;
    (words, eos, ms)
}

#[test]
fn the_recogniser_turns_a_spoken_wav_into_words_and_pause_probabilities() {
    let d = dirs();
    let mut stt = KyutaiStt::load(&d.stt, &Device::Cpu).unwrap();
    assert!(stt.predicts_pauses());
    assert_eq!(stt.delay_frames(), 6);
    assert_eq!(stt.name(), "stt");
    let (words, eos, ms) = transcribe(&mut stt, &wav("hello_24k_mono.wav"));
    eprintln!(
        "STT (tiny, CPU): {ms:.2} ms per 80 ms frame; {} words: {words:?}",
        words.len()
    );
    assert!(words.len() >= 3, "{words:?}");
    for w in &words {
        assert!(!w.is_empty() && !w.starts_with(' '), "{w:?}");
        assert!(
            w.chars().all(|c| c.is_alphanumeric()),
            "a readable piece: {w:?}"
        );
    }
    // Every step after the first reports the pause heads' verdict, a probability.
    assert!(
        eos.iter()
            .skip(1)
            .all(|p| p.is_some_and(|p| (0.0..=1.0).contains(&p))),
        "{eos:?}"
    );

    // The same audio after a reset gives the same words: the reset forgets everything.
    stt.reset();
    let (again, _, _) = transcribe(&mut stt, &wav("hello_24k_mono.wav"));
    assert_eq!(again, words);
    // What it hears matters: silence does not give the same words.
    stt.reset();
    let (quiet, _, _) = transcribe(&mut stt, &wav("silence_5s_24k_mono.wav"));
    assert_ne!(quiet, words);
    // A frame of the wrong length is an error, not a panic.
    assert!(stt
        .step(&[0.0; 480])
        .unwrap_err()
        .to_string()
        .contains("1920"));
}

#[test]
fn two_loads_of_the_recogniser_hear_the_same_words() {
    let d = dirs();
    let pcm = wav("hello_24k_mono.wav");
    let a = transcribe(
        &mut KyutaiStt::load(&d.stt, &Device::Cpu).unwrap(),
        &pcm[..48_000],
    )
    .0;
    let b = transcribe(
        &mut KyutaiStt::load(&d.stt, &Device::Cpu).unwrap(),
        &pcm[..48_000],
    )
    .0;
    assert_eq!(a, b);
}

/// Push `text` in pieces that split words, then finish; step until done. Returns the
/// frames and each step's result.
fn speak(tts: &mut KyutaiTts, pieces: &[&str]) -> (Vec<Vec<f32>>, Vec<TtsStep>, f64) {
    tts.start().unwrap();
    for p in pieces {
        tts.push_text(p);
    }
    tts.finish();
    let (mut frames, mut steps) = (vec![], vec![]);
    let t = Instant::now();
    for _ in 0..600 {
        let mut out = vec![0f32; FRAME];
        let s = tts.step(&mut out).unwrap();
        steps.push(s);
        frames.push(out);
        if s == TtsStep::Done {
            break;
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / frames.len() as f64;
    (frames, steps, ms)
}

fn rms(f: &[f32]) -> f32 {
    (f.iter().map(|x| x * x).sum::<f32>() / f.len() as f32).sqrt()
}

const SENTENCE: [&str; 5] = ["Hello the", "re, how a", "re you ", "today?", " Fine."];

fn tts(d: &Dirs) -> KyutaiTts {
    let voice = d
        .voices
        .join(format!("expresso/calm.wav.{TINY_SIG}@1.safetensors"));
    KyutaiTts::load(&d.tts, Some(&voice), Some(&d.voices), &Device::Cpu).unwrap()
}

#[test]
fn the_synthesiser_speaks_a_streamed_sentence_and_counts_the_words_heard() {
    let d = dirs();
    let mut tts = tts(d);
    let (frames, steps, ms) = speak(&mut tts, &SENTENCE);
    let audio = steps
        .iter()
        .filter(|s| matches!(s, TtsStep::Audio { .. }))
        .count();
    eprintln!("TTS (tiny, CPU): {ms:.2} ms per 80 ms frame, {audio} frames of audio for 7 words");
    assert_eq!(steps.last(), Some(&TtsStep::Done), "{steps:?}");
    assert!(
        !steps.contains(&TtsStep::Waiting),
        "all text was there: {steps:?}"
    );
    assert!(frames.iter().all(|f| f.len() == FRAME));
    let loud = frames
        .iter()
        .zip(&steps)
        .filter(|(f, s)| matches!(s, TtsStep::Audio { .. }) && rms(f) > 1e-4)
        .count();
    assert!(loud >= 6, "speech, not silence: {loud} loud frames");
    // Frames that are not audio are silent.
    for (f, s) in frames.iter().zip(&steps) {
        if !matches!(s, TtsStep::Audio { .. }) {
            assert!(f.iter().all(|&x| x == 0.0));
        }
    }
    let started: Vec<usize> = steps
        .iter()
        .filter_map(|s| match s {
            TtsStep::Audio { words_started } => Some(*words_started),
            _ => None,
        })
        .collect();
    assert!(
        started.windows(2).all(|w| w[0] <= w[1]),
        "monotonic: {started:?}"
    );
    assert_eq!(
        started.last(),
        Some(&7),
        "all seven words were heard: {started:?}"
    );
    assert!(
        started.first() < started.last(),
        "counted as they start: {started:?}"
    );
}

#[test]
fn the_same_text_and_seed_speak_the_same_audio() {
    let d = dirs();
    let mut tts = tts(d);
    let a = speak(&mut tts, &SENTENCE).0;
    let b = speak(&mut tts, &SENTENCE).0;
    assert_eq!(a, b);
    tts.set_sampling(TtsSampling {
        seed: 7,
        ..Default::default()
    });
    let c = speak(&mut tts, &SENTENCE).0;
    assert_ne!(a, c, "another seed, another rendition");
}

#[test]
fn barge_in_silences_the_next_frame_and_unfinished_text_waits() {
    let d = dirs();
    let mut tts = tts(d);
    tts.start().unwrap();
    tts.push_text("one two three four five six seven eight nine ten ");
    let mut out = vec![0f32; FRAME];
    let mut first_audio = None;
    for i in 0..100 {
        out.fill(0.0);
        if let TtsStep::Audio { .. } = tts.step(&mut out).unwrap() {
            first_audio = Some(i);
            break;
        }
    }
    assert!(
        first_audio.is_some(),
        "speech starts before the text is finished"
    );
    tts.cancel();
    out.fill(0.0);
    assert_eq!(tts.step(&mut out).unwrap(), TtsStep::Done);
    assert!(out.iter().all(|&x| x == 0.0), "silent after cancel");

    // Text that stops mid-stream (no finish) leaves the synthesiser waiting, silent.
    tts.start().unwrap();
    tts.push_text("Hello th");
    let mut saw_wait = false;
    for _ in 0..40 {
        out.fill(0.0);
        match tts.step(&mut out).unwrap() {
            TtsStep::Waiting => {
                saw_wait = true;
                assert!(out.iter().all(|&x| x == 0.0));
                break;
            }
            TtsStep::Done => panic!("not finished yet"),
            TtsStep::Audio { .. } => {}
        }
    }
    assert!(saw_wait);
    // More text and the end: it speaks, then finishes.
    tts.push_text("ere.");
    tts.finish();
    let mut last = TtsStep::Waiting;
    for _ in 0..200 {
        out.fill(0.0);
        last = tts.step(&mut out).unwrap();
        if last == TtsStep::Done {
            break;
        }
        assert_ne!(last, TtsStep::Waiting, "everything is there now");
    }
    assert_eq!(last, TtsStep::Done);
}

#[test]
fn voices_are_chosen_by_name_or_path_and_an_unknown_one_keeps_the_old() {
    let d = dirs();
    let mut tts = tts(d);
    let calm = tts.voice().to_string();
    assert!(calm.ends_with("calm.wav.5ca1ab1e@1.safetensors"), "{calm}");
    let before = speak(&mut tts, &SENTENCE).0;

    let e = tts.set_voice("expresso/nobody.wav").unwrap_err();
    assert!(
        format!("{e:#}").contains("unknown voice \"expresso/nobody.wav\""),
        "{e:#}"
    );
    assert_eq!(tts.voice(), calm, "the old voice stays");
    let e = tts
        .set_voice(d.stt.join(STT_LM_FILE).to_str().unwrap())
        .unwrap_err();
    assert!(format!("{e:#}").contains("speaker_wavs"), "{e:#}");
    assert_eq!(tts.voice(), calm);
    assert_eq!(speak(&mut tts, &SENTENCE).0, before, "still the same voice");

    // By name in the voices dir (the model's suffix added), then by path.
    tts.set_voice("expresso/bright.wav").unwrap();
    assert!(tts.voice().ends_with("bright.wav.5ca1ab1e@1.safetensors"));
    let bright = speak(&mut tts, &SENTENCE).0;
    assert_ne!(bright, before, "another voice, other audio");
    tts.set_voice(&calm).unwrap();
    assert_eq!(speak(&mut tts, &SENTENCE).0, before);

    // No voice at all: the neutral speaker still speaks.
    let mut neutral = KyutaiTts::load(&d.tts, None, None, &Device::Cpu).unwrap();
    let (frames, steps, _) = speak(&mut neutral, &SENTENCE);
    assert_eq!(steps.last(), Some(&TtsStep::Done));
    assert!(frames.iter().any(|f| rms(f) > 1e-4));
}

fn message<T>(r: Result<T, assistant::models::moshi::ModelLoadError>) -> String {
    match r {
        Ok(_) => panic!("loaded a broken checkpoint"),
        Err(e) => format!("{} | {}", e.message, e.remedy),
    }
}

#[test]
fn broken_or_foreign_checkpoints_say_which_file_and_what_to_do() {
    let d = dirs();
    let tmp = tempfile::tempdir().unwrap();
    let cpu = Device::Cpu;

    // Missing Mimi.
    let dir = tmp.path().join("no_mimi");
    copy_dir(&d.stt, &dir);
    std::fs::remove_file(dir.join(STT_FILES[1])).unwrap();
    let m = message(KyutaiStt::load(&dir, &cpu));
    assert!(
        m.contains(STT_FILES[1])
            && m.contains("missing")
            && m.contains("kyutai/stt-1b-en_fr-candle"),
        "{m}"
    );

    // A truncated LM.
    let dir = tmp.path().join("cut");
    copy_dir(&d.tts, &dir);
    let lm = dir.join(TTS_FILES[2]);
    let len = std::fs::metadata(&lm).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&lm)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let m = message(KyutaiTts::load(&dir, None, None, &cpu));
    assert!(
        m.contains(TTS_FILES[2]) && m.contains("truncated") && m.contains("download"),
        "{m}"
    );

    // The STT's directory given as the TTS: its config is not the TTS layout.
    let m = message(KyutaiTts::load(&d.stt, None, None, &cpu));
    assert!(
        m.contains(CONFIG_FILE) && m.contains("kyutai/tts-1.6b-en_fr"),
        "{m}"
    );

    // The right config over other weights: the tensor that does not fit is named.
    let dir = tmp.path().join("foreign");
    copy_dir(&d.stt, &dir);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
    cfg["dim"] = 128.into();
    std::fs::write(dir.join(CONFIG_FILE), cfg.to_string()).unwrap();
    let m = message(KyutaiStt::load(&dir, &cpu));
    assert!(
        m.contains("text_emb.weight") && m.contains("[301, 128]"),
        "{m}"
    );

    // No directory at all.
    let m = message(KyutaiStt::load(&tmp.path().join("nowhere"), &cpu));
    assert!(
        m.contains("config.json") && m.contains("cannot read"),
        "{m}"
    );

    // The published tts-1.6b-en_fr config over weights in the candle layout: those
    // slices cannot hold a second text stream, and the error says which file to match.
    let dir = tmp.path().join("published");
    copy_dir(&d.tts, &dir);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
    cfg["demux_second_stream"] = true.into();
    std::fs::write(dir.join(CONFIG_FILE), cfg.to_string()).unwrap();
    let m = message(KyutaiTts::load(&dir, None, None, &cpu));
    assert!(
        m.contains("demux_second_stream")
            && m.contains("candle layout")
            && m.contains(TTS_FILES[2]),
        "{m}"
    );

    // A voice file that is not one.
    let bad = tmp.path().join("bad_voice.safetensors");
    std::fs::write(&bad, b"not a voice").unwrap();
    let m = message(KyutaiTts::load(&d.tts, Some(&bad), None, &cpu));
    assert!(m.contains("bad_voice.safetensors"), "{m}");
}

#[test]
fn weights_are_found_in_the_dir_given_then_the_hf_cache() {
    let d = dirs();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let offline = Discovery {
        hf_cache: Some(cache.clone()),
        endpoint: None,
        chunk_bytes: 1 << 20,
    };
    let (mut progress, cancel) = (|_| {}, Cancel::new());

    // Nothing anywhere: the error says where it looked and what to do.
    let e = find_stt_dir(&SttOptions::default(), &offline, &mut progress, &cancel).unwrap_err();
    assert!(
        e.message
            .contains("kyutai/stt-1b-en_fr-candle is not on this machine"),
        "{}",
        e.message
    );
    assert!(e.remedy.contains("--stt-model-dir"), "{}", e.remedy);

    // An explicit directory wins, and one that is not there is an error.
    let opts = SttOptions {
        model_dir: Some(d.stt.clone()),
        ..Default::default()
    };
    assert_eq!(
        find_stt_dir(&opts, &offline, &mut progress, &cancel).unwrap(),
        d.stt
    );
    let opts = TtsOptions {
        model_dir: Some(tmp.path().join("nope")),
        ..Default::default()
    };
    let e = find_tts_dir(&opts, &offline, &mut progress, &cancel).unwrap_err();
    assert!(
        e.message.contains("--tts-model-dir") && e.message.contains("nope"),
        "{}",
        e.message
    );

    // A complete snapshot in the HF cache is found (an incomplete one is not).
    let snap = cache.join("models--kyutai--tts-1.6b-en_fr/snapshots/abc");
    copy_dir(&d.tts, &snap);
    std::fs::create_dir_all(cache.join("models--kyutai--tts-1.6b-en_fr/refs")).unwrap();
    std::fs::write(
        cache.join("models--kyutai--tts-1.6b-en_fr/refs/main"),
        "abc",
    )
    .unwrap();
    let found = find_tts_dir(&TtsOptions::default(), &offline, &mut progress, &cancel).unwrap();
    assert_eq!(found, snap);
    let tts = KyutaiTts::load(&found, None, None, &Device::Cpu).unwrap();
    assert_eq!(tts.name(), "kyutai/tts-1.6b-en_fr");
    std::fs::remove_file(snap.join(TTS_FILES[1])).unwrap();
    assert!(find_tts_dir(&TtsOptions::default(), &offline, &mut progress, &cancel).is_err());

    // Voices: a name in the voices repo's cache snapshot.
    let vsnap = cache.join("models--kyutai--tts-voices/snapshots/v1");
    copy_dir(&d.voices.join("expresso"), &vsnap.join("expresso"));
    let opts = TtsOptions {
        voice: Some("expresso/bright.wav".into()),
        ..Default::default()
    };
    let v = speech_files::find_voice(
        &opts,
        Some(&format!(".{TINY_SIG}@1.safetensors")),
        &offline,
        &mut progress,
        &cancel,
    )
    .unwrap();
    assert_eq!(
        v,
        Some(vsnap.join(format!("expresso/bright.wav.{TINY_SIG}@1.safetensors")))
    );
    let opts = TtsOptions {
        voice: Some("expresso/nobody.wav".into()),
        ..Default::default()
    };
    let e = speech_files::find_voice(&opts, None, &offline, &mut progress, &cancel).unwrap_err();
    assert!(e.message.contains("expresso/nobody.wav"), "{}", e.message);
    // The whole TTS as the options say: model from the cache, voice by name.
    std::fs::copy(d.tts.join(TTS_FILES[1]), snap.join(TTS_FILES[1])).unwrap();
    let opts = TtsOptions {
        voice: Some("expresso/bright.wav".into()),
        ..Default::default()
    };
    let tts = KyutaiTts::open(&opts, &offline, &Device::Cpu, &mut progress, &cancel).unwrap();
    assert!(
        tts.voice().ends_with("bright.wav.5ca1ab1e@1.safetensors"),
        "{}",
        tts.voice()
    );
    // No voice asked for and the default absent: the neutral voice, no error.
    assert_eq!(
        speech_files::find_voice(
            &TtsOptions::default(),
            None,
            &offline,
            &mut progress,
            &cancel
        )
        .unwrap(),
        None
    );
}

#[test]
fn a_missing_checkpoint_is_downloaded_into_the_hf_cache() {
    let d = dirs();
    let tmp = tempfile::tempdir().unwrap();
    let hub = load_server::Hub::start("kyutai/stt-1b-en_fr-candle", &d.stt);
    let cache = tmp.path().join("hub");
    let disc = Discovery {
        hf_cache: Some(cache.clone()),
        endpoint: Some(hub.endpoint.clone()),
        chunk_bytes: 1 << 20,
    };
    let mut stages = vec![];
    let mut stt = KyutaiStt::open(
        &SttOptions::default(),
        &disc,
        &Device::Cpu,
        &mut |p| stages.push(p.stage),
        &Cancel::new(),
    )
    .unwrap();
    assert_eq!(stt.name(), "kyutai/stt-1b-en_fr-candle");
    assert!(stt.step(&[0.0; FRAME]).is_ok());
    assert!(
        stages
            .iter()
            .any(|s| s.starts_with(STT_LM_FILE) && s.contains("127.0.0.1")),
        "{stages:?}"
    );
    let dir = find_stt_dir(&SttOptions::default(), &disc, &mut |_| {}, &Cancel::new()).unwrap();
    assert!(
        dir.starts_with(cache.join("models--kyutai--stt-1b-en_fr-candle/snapshots")),
        "{}",
        dir.display()
    );
    // Found in the cache the next time, with no hub.
    let offline = Discovery {
        endpoint: None,
        ..disc
    };
    assert_eq!(
        find_stt_dir(
            &SttOptions::default(),
            &offline,
            &mut |_| {},
            &Cancel::new()
        )
        .unwrap(),
        dir
    );
}

#[test]
fn the_memory_estimate_matches_what_the_files_hold() {
    let d = dirs();
    let m = speech_files::stt_memory_in(&d.stt, &Device::Cpu).unwrap();
    // The file is bf16; the CPU computes in f32, twice the bytes.
    let file = std::fs::metadata(d.stt.join(STT_LM_FILE)).unwrap().len() as f64;
    let ratio = m.weights as f64 / (2.0 * file);
    assert!((0.9..1.05).contains(&ratio), "{} vs 2 x {file}", m.weights);
    assert!(m.mimi > 0 && m.kv_cache > 0 && m.total() > m.weights);
    let t = speech_files::tts_memory_in(&d.tts, &Device::Cpu).unwrap();
    let file = std::fs::metadata(d.tts.join(TTS_FILES[2])).unwrap().len() as f64;
    let ratio = t.weights as f64 / (2.0 * file);
    assert!((0.9..1.05).contains(&ratio), "{} vs 2 x {file}", t.weights);
}

#[test]
fn without_pause_heads_end_of_speech_is_unknown_but_words_still_come() {
    let d = dirs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("no_heads");
    copy_dir(&d.stt, &dir);
    let lm = dir.join(STT_LM_FILE);
    let mut t = moshi::candle::safetensors::load(&lm, &Device::Cpu).unwrap();
    t.retain(|k, _| !k.starts_with("extra_heads."));
    moshi::candle::safetensors::save(&t, &lm).unwrap();
    let mut stt = KyutaiStt::load(&dir, &Device::Cpu).unwrap();
    assert!(!stt.predicts_pauses());
    let (words, eos, _) = transcribe(&mut stt, &wav("hello_24k_mono.wav"));
    assert!(eos.iter().all(Option::is_none), "{eos:?}");
    assert!(!words.is_empty());
}

#[test]
fn a_checkpoint_nothing_here_can_run_is_refused_before_its_weights_download() {
    let d = dirs();
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    copy_dir(&d.tts, &www);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(www.join(CONFIG_FILE)).unwrap()).unwrap();
    // Kyutai's two-stream dialogue models: neither loop runs them.
    cfg["tts_config"]["multistream"] = true.into();
    std::fs::write(www.join(CONFIG_FILE), cfg.to_string()).unwrap();
    let hub = load_server::Hub::start("kyutai/tts-1.6b-en_fr", &www);
    let disc = Discovery {
        hf_cache: Some(tmp.path().join("hub")),
        endpoint: Some(hub.endpoint.clone()),
        chunk_bytes: 1 << 20,
    };
    let e = find_tts_dir(&TtsOptions::default(), &disc, &mut |_| {}, &Cancel::new()).unwrap_err();
    assert!(e.message.contains("multistream"), "{}", e.message);
    assert_eq!(hub.sent(TTS_FILES[2]), 0, "the LM was not downloaded");
    assert_eq!(hub.sent(TTS_FILES[1]), 0, "nor the Mimi");
}
