//! Step time of the speech parts at the published sizes, with random weights (no
//! checkpoint is read): `cargo test --test speech_bench -- --ignored --nocapture`.
//! Figures only; nothing here is timed against a limit.

use assistant::engine::cascade::speech_config::{SttConfig, TtsConfig};
use assistant::engine::cascade::{KyutaiStt, KyutaiTts, SpeechToText, TextToSpeech, TtsStep};
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
