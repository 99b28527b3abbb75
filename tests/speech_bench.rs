//! Step time of the speech parts at the published sizes, with random weights (no
//! checkpoint is read): `cargo test --test speech_bench -- --ignored --nocapture`.
//! Figures only; nothing here is timed against a limit.

use assistant::models::parts::{SpeechToText, TextToSpeech, TtsStep};
use assistant::models::speech::config::{SttConfig, TtsConfig};
use assistant::models::speech::stt::kyutai::KyutaiStt;
use assistant::models::speech::tts::kyutai::KyutaiTts;
use moshi::candle::Device;
use std::time::Instant;

const FRAME: usize = 1920;

/// `kyutai/stt-1b-en_fr-candle`'s config.json.
const STT_1B: &str = r#"{"dim": 2048, "num_layers": 16, "num_heads": 16, "hidden_scale": 4.125,
  "context": 750, "max_period": 100000.0, "n_q": 32, "card": 2048, "text_card": 8000,
  "causal": true, "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0},
  "mimi_name": "mimi-pytorch-e351c8d8@125.safetensors", "tokenizer_name": "tokenizer_en_fr_audio_8000.model"}"#;

/// `kyutai/tts-1.6b-en_fr`'s sizes, without the two features the crate lacks (its
/// depformer then has 32 slices of its own rather than 11 shared ones).
const TTS_1_6B: &str = r#"{"card": 2048, "n_q": 32, "dep_q": 32,
  "delays": [0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
  "dim": 2048, "text_card": 8000, "num_heads": 16, "num_layers": 16, "hidden_scale": 4.125,
  "context": 500, "max_period": 10000, "depformer_dim": 1024, "depformer_num_heads": 16,
  "depformer_num_layers": 4, "depformer_dim_feedforward": 3072, "depformer_low_rank_embeddings": 128,
  "cross_attention": true,
  "conditioners": {"speaker_wavs": {"type": "tensor", "tensor": {"dim": 512}},
    "cfg": {"type": "lut", "lut": {"n_bins": 7, "dim": 16, "possible_values": ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]}},
    "control": {"type": "lut", "lut": {"dim": 2048, "n_bins": 1, "possible_values": ["ok"]}}},
  "tts_config": {"audio_delay": 1.28, "second_stream_ahead": 2},
  "model_id": {"sig": "1e68beda", "epoch": 240},
  "tokenizer_name": "tokenizer_spm_8k_en_fr_audio.model",
  "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
  "moshi_name": "dsm_tts_1e68beda@240.safetensors"}"#;

#[test]
#[ignore = "a benchmark: builds 1B parameters in memory (f32 on the CPU, ~5 GB)"]
fn stt_step_time_at_the_published_size() {
    let cfg: SttConfig = serde_json::from_str(STT_1B).unwrap();
    let t = Instant::now();
    let mut stt = KyutaiStt::with_random_weights(&cfg, &Device::Cpu).unwrap();
    eprintln!(
        "STT 1B (random, f32, CPU): built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let pcm: Vec<f32> = (0..FRAME).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    for _ in 0..3 {
        stt.step(&pcm).unwrap();
    }
    let n = 12;
    let t = Instant::now();
    for _ in 0..n {
        stt.step(&pcm).unwrap();
    }
    eprintln!(
        "STT 1B (random, f32, CPU): {:.0} ms per 80 ms frame (Mimi encode + LM step)",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
}

/// p50 and p99 of `times` (ms).
fn percentiles(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Frames timed per format (env `STT_BENCH_FRAMES`, default 40).
fn bench_frames() -> usize {
    std::env::var("STT_BENCH_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

/// f32, q8 and q4 (env `STT_BENCH_FORMATS`, e.g. "q8,q4"); threads from
/// `RAYON_NUM_THREADS` (candle's CPU kernels read it).
#[test]
#[ignore = "a benchmark: builds 1B parameters in memory (q4 0.6 GB, q8 1.1 GB, f32 4.3 GB)"]
fn stt_step_time_quantized_at_the_published_size() {
    use assistant::models::speech::stt::quant::SttFormat;
    let cfg: SttConfig = serde_json::from_str(STT_1B).unwrap();
    let formats = std::env::var("STT_BENCH_FORMATS").unwrap_or_else(|_| "q8,q4".into());
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let pcm: Vec<f32> = (0..FRAME).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    // The Mimi encoder alone (f32, the published size): the floor under any LM format.
    {
        use assistant::models::moshi::random_init::FastRandomBackend;
        let mut mimi = moshi::mimi::Mimi::new(
            moshi::mimi::Config::v0_1(Some(cfg.n_q)),
            FastRandomBackend::var_builder(moshi::candle::DType::F32, &Device::Cpu),
        )
        .unwrap();
        let x = moshi::candle::Tensor::from_slice(&pcm, (1, 1, FRAME), &Device::Cpu).unwrap();
        let mut times: Vec<f64> = (0..bench_frames() + 3)
            .map(|_| {
                let t = Instant::now();
                mimi.encode_step(&x.clone().into(), &().into()).unwrap();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .skip(3)
            .collect();
        let (p50, p99) = percentiles(&mut times);
        eprintln!(
            "Mimi encode alone (random, f32, CPU, {threads} threads): p50 {p50:.0} ms, p99 {p99:.0} ms; load average {}",
            load_average()
        );
    }
    for f in formats.split(',') {
        let t = Instant::now();
        let mut stt = match f.trim() {
            "f32" => KyutaiStt::with_random_weights(&cfg, &Device::Cpu).unwrap(),
            "q8" => KyutaiStt::with_random_quantized_weights(&cfg, SttFormat::Q8).unwrap(),
            "q4" => KyutaiStt::with_random_quantized_weights(&cfg, SttFormat::Q4).unwrap(),
            other => panic!("STT_BENCH_FORMATS: unknown format {other:?} (f32, q8, q4)"),
        };
        let built = t.elapsed().as_secs_f64();
        for _ in 0..3 {
            stt.step(&pcm).unwrap();
        }
        let before = load_average();
        let mut times: Vec<f64> = (0..bench_frames())
            .map(|_| {
                let t = Instant::now();
                stt.step(&pcm).unwrap();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let (p50, p99) = percentiles(&mut times);
        eprintln!(
            "STT 1B (random, {f}, CPU, {threads} threads): step p50 {p50:.0} ms, p99 {p99:.0} ms over {} frames (Mimi encode + LM); built in {built:.1} s; load average {before} -> {}",
            times.len(),
            load_average()
        );
    }
}

#[test]
#[ignore = "a benchmark: builds ~2B parameters in memory (f32 on the CPU, ~9 GB)"]
fn tts_step_time_at_the_published_size() {
    let cfg: TtsConfig = serde_json::from_str(TTS_1_6B).unwrap();
    let t = Instant::now();
    let mut tts = KyutaiTts::with_random_weights(cfg, &Device::Cpu).unwrap();
    eprintln!(
        "TTS 1.6B (random, f32, CPU): built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tts.start().unwrap();
    tts.push_text("one two three four five six seven eight nine ten eleven twelve ");
    tts.finish();
    let mut out = vec![0f32; FRAME];
    let t = Instant::now();
    let first = tts.step(&mut out).unwrap();
    eprintln!(
        "TTS 1.6B (random, f32, CPU): first frame ({first:?}) after {:.0} ms (the text-to-audio lag of 18 steps)",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let (n, t) = (8, Instant::now());
    let mut audio = 0;
    for _ in 0..n {
        if let TtsStep::Audio { .. } = tts.step(&mut out).unwrap() {
            audio += 1;
        }
    }
    eprintln!(
        "TTS 1.6B (random, f32, CPU): {:.0} ms per frame over {n} frames ({audio} of audio; LM + 32 depformer slices + Mimi decode)",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
}

/// Whisper for the bench: `WHISPER_BENCH` = tiny | base (random weights at OpenAI's
/// sizes) or a checkpoint directory (real weights, e.g. target/whisper-base).
fn whisper_for_bench() -> (
    String,
    assistant::models::speech::stt::whisper::decode::Transcriber,
) {
    use assistant::models::speech::stt::whisper::{
        decode::Transcriber, load_transcriber, synthetic,
    };
    let what = std::env::var("WHISPER_BENCH").unwrap_or_else(|_| "base".into());
    if let Some(cfg) = synthetic::published_config(&what) {
        let (model, tokens) = synthetic::random_model(&cfg, 3).unwrap();
        let t = Transcriber::new(model, tokens, &[], &Device::Cpu).unwrap();
        (format!("whisper {what} (random)"), t)
    } else {
        let t = load_transcriber(std::path::Path::new(&what), &Device::Cpu).unwrap();
        (format!("whisper {what}"), t)
    }
}

/// The two-sentence recording at 16 kHz and 24 kHz.
fn speech_fixture() -> (Vec<f32>, Vec<f32>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio/two_sentences_16k_mono.wav");
    let r = hound::WavReader::open(path).unwrap();
    let s16: Vec<f32> = r
        .into_samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    let mut rs = assistant::audio::resample::StreamResampler::new(16_000, 24_000, 160).unwrap();
    rs.push(&s16);
    rs.flush();
    let mut s24 = vec![0f32; rs.available()];
    let n = rs.pop(&mut s24);
    s24.truncate(n);
    (s16, s24)
}

/// A stand-in for a synthesiser on the other core: f32 matmuls back to back (a
/// 100M-parameter model's step reads about as much memory), on a thread of its own.
fn busy_core(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let a = moshi::candle::Tensor::randn(0f32, 1., (1, 1024), &Device::Cpu).unwrap();
        let w = moshi::candle::Tensor::randn(0f32, 1., (1024, 8192), &Device::Cpu).unwrap();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = a.matmul(&w).unwrap();
            n += 1;
        }
        n
    })
}

/// One transcription's time against the window's length, then the whole recording
/// through the streaming recogniser at real time (worker thread): its step, and the
/// time from each end of speech to its words and end-of-speech signal. With
/// `WHISPER_BENCH_LOAD=1` a busy thread runs beside it. Threads: `RAYON_NUM_THREADS`.
#[test]
#[ignore = "a benchmark: Whisper at a published size (or real weights), ~1 minute"]
fn whisper_transcription_and_streaming_times() {
    use assistant::models::speech::stt::whisper::{Threading, WhisperStt};
    let (name, mut t) = whisper_for_bench();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let load = std::env::var("WHISPER_BENCH_LOAD").is_ok_and(|v| v == "1");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = load.then(|| busy_core(stop.clone()));
    let (s16, s24) = speech_fixture();
    let label = format!(
        "{name}, CPU, {threads} threads{}",
        if load { ", a busy core beside" } else { "" }
    );
    for secs in [1.0, 2.0, 3.0, 5.0] {
        let n = (secs * 16_000.0) as usize;
        // From the first sentence's start: real speech in every window.
        let w = &s16[4_800..(4_800 + n).min(s16.len())];
        let mut times = Vec::new();
        let mut tokens = 0;
        for _ in 0..5 {
            let t0 = Instant::now();
            let h = t.transcribe(w).unwrap();
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            tokens = h.tokens;
        }
        let (p50, p99) = percentiles(&mut times);
        eprintln!(
            "{label}: {secs:.0} s window: p50 {p50:.0} ms, max {p99:.0} ms ({tokens} tokens); load average {}",
            load_average()
        );
    }
    // Streaming at real time: a frame every 80 ms, the transcriptions on the worker.
    let cfg_stt = match synthetic_or_dir() {
        Some(cfg) => WhisperStt::with_random_weights(&cfg, Threading::Worker).unwrap(),
        None => {
            let dir = std::env::var("WHISPER_BENCH").unwrap();
            WhisperStt::load(std::path::Path::new(&dir), &Device::Cpu, Threading::Worker).unwrap()
        }
    };
    let mut stt = cfg_stt;
    let mut steps = Vec::new();
    let mut frames: Vec<Vec<f32>> = s24
        .chunks(FRAME)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(FRAME, 0.0);
            f
        })
        .collect();
    frames.extend(std::iter::repeat_n(vec![0f32; FRAME], 25));
    let start = Instant::now();
    let mut events = Vec::new();
    let mut was_end = true;
    for (i, f) in frames.iter().enumerate() {
        let due = std::time::Duration::from_millis(80 * i as u64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let t0 = Instant::now();
        let s = stt.step(f).unwrap();
        steps.push(t0.elapsed().as_secs_f64() * 1000.0);
        let at = (i + 1) as f64 * 0.08;
        for w in s.words {
            events.push(format!("{at:.2} {w}"));
        }
        let end = s.end_of_speech.unwrap_or(0.0) >= 0.5;
        if end && !was_end {
            events.push(format!("{at:.2} [end of speech]"));
        }
        was_end = end;
    }
    let (p50, p99) = percentiles(&mut steps);
    eprintln!(
        "{label}: streaming step (worker thread) p50 {p50:.2} ms, p99 {p99:.2} ms; load average {}",
        load_average()
    );
    eprintln!("{label}: emitted (s, word): {}", events.join(" | "));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(b) = busy {
        eprintln!("busy core: {} matmuls", b.join().unwrap());
    }
}

fn synthetic_or_dir() -> Option<candle_transformers::models::whisper::Config> {
    let what = std::env::var("WHISPER_BENCH").unwrap_or_else(|_| "base".into());
    assistant::models::speech::stt::whisper::synthetic::published_config(&what)
}
