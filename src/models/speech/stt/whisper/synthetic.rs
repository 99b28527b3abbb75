//! A tiny Whisper with random weights in the Hugging Face layout, for tests, `--demo`
//! style runs and benches at the published sizes: its text pieces are syllables, so
//! whatever it hears it writes pronounceable (meaningless) words.

use super::model::Whisper;
use super::tokens::WhisperTokens;
use super::{TOKENIZER_FILE, WEIGHTS_FILE};
use crate::models::moshi::random_init::RandomBackend;
use anyhow::Result;
use candle_transformers::models::whisper::Config;
use moshi::candle::{DType, Device};
use std::path::Path;

const ONSETS: [&str; 16] = [
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
];
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];
const SPECIALS: [&str; 7] = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|transcribe|>",
    "<|translate|>",
    "<|nospeech|>",
    "<|notimestamps|>",
];

/// Pieces: a word start ("Ġ" is GPT-2's space) or a continuation, consonant + vowel.
fn pieces() -> Vec<String> {
    let mut v = Vec::new();
    for start in [true, false] {
        for o in ONSETS {
            for vw in VOWELS {
                v.push(format!("{}{o}{vw}", if start { "Ġ" } else { "" }));
            }
        }
    }
    v
}

/// The tiny model's `tokenizer.json`.
pub fn tokenizer_json() -> String {
    let p = pieces();
    let vocab: serde_json::Map<String, serde_json::Value> = p
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i.into()))
        .collect();
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::json!({"id": p.len() + i, "content": s, "special": true}))
        .collect();
    serde_json::json!({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "added_tokens": added})
        .to_string()
}

/// The tiny model's config: 2 + 2 layers of 64 wide, 80 mel bands.
pub fn tiny_config() -> Config {
    Config {
        num_mel_bins: 80,
        max_source_positions: 1500,
        d_model: 64,
        encoder_attention_heads: 4,
        encoder_layers: 2,
        vocab_size: pieces().len() + SPECIALS.len(),
        max_target_positions: 448,
        decoder_attention_heads: 4,
        decoder_layers: 2,
        suppress_tokens: vec![],
    }
}

/// Published sizes (OpenAI's `tiny` and `base`, multilingual vocabulary) for benches.
pub fn published_config(name: &str) -> Option<Config> {
    let (d, heads, layers) = match name {
        "tiny" => (384, 6, 4),
        "base" => (512, 8, 6),
        "small" => (768, 12, 12),
        _ => return None,
    };
    Some(Config {
        num_mel_bins: 80,
        max_source_positions: 1500,
        d_model: d,
        encoder_attention_heads: heads,
        encoder_layers: layers,
        vocab_size: 51865,
        max_target_positions: 448,
        decoder_attention_heads: heads,
        decoder_layers: layers,
        suppress_tokens: vec![],
    })
}

fn config_json(cfg: &Config) -> serde_json::Value {
    serde_json::json!({
        "model_type": "whisper",
        "num_mel_bins": cfg.num_mel_bins,
        "max_source_positions": cfg.max_source_positions,
        "d_model": cfg.d_model,
        "encoder_attention_heads": cfg.encoder_attention_heads,
        "encoder_layers": cfg.encoder_layers,
        "vocab_size": cfg.vocab_size,
        "max_target_positions": cfg.max_target_positions,
        "decoder_attention_heads": cfg.decoder_attention_heads,
        "decoder_layers": cfg.decoder_layers,
        "suppress_tokens": cfg.suppress_tokens,
    })
}

/// A model of `cfg`'s size with seeded random weights, and a tokenizer to match (the
/// syllables, with specials placed at the end of the vocabulary, as Whisper's are).
pub fn random_model(cfg: &Config, seed: u64) -> Result<(Whisper, WhisperTokens)> {
    let (vb, _made) = RandomBackend::var_builder(seed, DType::F32, &Device::Cpu);
    let model = Whisper::load(&vb, cfg.clone())?;
    Ok((model, tokens_for(cfg.vocab_size)?))
}

/// The syllable tokenizer with its specials moved to the top of a `vocab`-sized table.
fn tokens_for(vocab: usize) -> Result<WhisperTokens> {
    let mut json: serde_json::Value = serde_json::from_str(&tokenizer_json())?;
    let first = vocab
        .checked_sub(SPECIALS.len() + 1501)
        .unwrap_or(pieces().len());
    for (i, t) in json["added_tokens"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .enumerate()
    {
        t["id"] = (first.max(pieces().len()) + i).into();
    }
    WhisperTokens::from_json(&json.to_string()).map_err(anyhow::Error::msg)
}

/// Write the tiny checkpoint (config.json, model.safetensors, tokenizer.json) to `dir`.
pub fn write_tiny(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let cfg = tiny_config();
    let (vb, made) = RandomBackend::var_builder(seed, DType::F32, &Device::Cpu);
    Whisper::load(&vb, cfg.clone())?;
    let map = std::mem::take(&mut *made.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let map: std::collections::HashMap<String, moshi::candle::Tensor> = map.into_iter().collect();
    moshi::candle::safetensors::save(&map, dir.join(WEIGHTS_FILE))?;
    std::fs::write(
        dir.join(super::CONFIG_FILE),
        serde_json::to_string_pretty(&config_json(&cfg))?,
    )?;
    std::fs::write(dir.join(TOKENIZER_FILE), tokenizer_json())?;
    Ok(())
}
