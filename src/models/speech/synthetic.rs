//! Synthetic speech checkpoints in the published layouts (same file names, config.json
//! keys and tensor names as `kyutai/stt-1b-en_fr-candle` and `kyutai/tts-1.6b-en_fr`) at
//! a tiny size with seeded random weights, for tests and benchmarks on machines with no
//! weights. The Mimi is the demo's small one, described by `mimi_config.toml` beside it.
//!
//! Two nudges make random weights behave like a model a user would notice: the STT's
//! text head favours the pad token, so words end and come out; and its control and byte
//! pieces are silenced, so the words are readable pieces ("w271").

use crate::models::moshi::config::{demo_mimi, MimiToml, MIMI_CONFIG_FILE};
use crate::models::moshi::random_init::{RandomBackend, TensorMap};
use crate::models::moshi::synthetic::{tokenizer_model, write_mimi};
use crate::models::speech::config::{ModelId, SttConfig, SttTimes, TtsConfig, TtsTimes};
use crate::models::speech::files::{CONFIG_FILE, STT_FILES, STT_LM_FILE, TTS_FILES};
use anyhow::{Context, Result};
use moshi::candle::{DType, Device, Tensor};
use moshi::lm::ExtraHeadsConfig;
use std::path::Path;

/// Text pieces of the tiny models (the tokenizer has as many).
pub const TEXT_CARD: usize = 300;
/// Codebooks and bins of the tiny Mimi.
pub const N_Q: usize = 8;
pub const CARD: usize = 256;
/// The tiny voice embedding's width.
pub const SPEAKER_DIM: usize = 32;
/// The tiny TTS's model id: voices are named `NAME.5ca1ab1e@1.safetensors`.
pub const TINY_SIG: &str = "5ca1ab1e";

fn mimi_toml() -> MimiToml {
    let mut m = demo_mimi();
    m.quantizer_n_q = N_Q;
    m.quantizer_bins = CARD;
    m
}

/// The tiny STT's config.json, in the published keys.
pub fn tiny_stt_config() -> SttConfig {
    SttConfig {
        mimi_name: STT_FILES[1].into(),
        tokenizer_name: STT_FILES[0].into(),
        moshi_name: None,
        card: CARD,
        text_card: TEXT_CARD,
        dim: 64,
        n_q: N_Q,
        context: 200,
        max_period: 10_000.0,
        num_heads: 4,
        num_layers: 2,
        causal: true,
        stt_config: SttTimes {
            audio_silence_prefix_seconds: 0.0,
            audio_delay_seconds: 0.5,
        },
    }
}

/// The tiny TTS's config.json, in the published keys (without the two features the
/// `moshi` crate lacks: `demux_second_stream` and a depformer schedule).
pub fn tiny_tts_config() -> TtsConfig {
    let lut = |n_bins: usize, dim: usize, values: &[&str]| serde_json::json!({"type": "lut", "lut": {"n_bins": n_bins, "dim": dim, "tokenizer": "noop", "possible_values": values}});
    let mut conditioners = serde_json::Map::new();
    conditioners.insert(
        "speaker_wavs".into(),
        serde_json::json!({"type": "tensor", "tensor": {"dim": SPEAKER_DIM}}),
    );
    conditioners.insert(
        "cfg".into(),
        lut(7, 16, &["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]),
    );
    conditioners.insert("control".into(), lut(1, 64, &["ok"]));
    TtsConfig {
        moshi_name: TTS_FILES[2].into(),
        mimi_name: TTS_FILES[1].into(),
        tokenizer_name: TTS_FILES[0].into(),
        card: CARD,
        n_q: N_Q,
        dep_q: N_Q,
        delays: [0, 0].into_iter().chain([2; N_Q - 1]).collect(),
        dim: 64,
        text_card: TEXT_CARD,
        existing_text_padding_id: 3,
        num_heads: 4,
        num_layers: 2,
        hidden_scale: 4.125,
        context: 200,
        max_period: 10_000.0,
        depformer_dim: 32,
        depformer_num_heads: 2,
        depformer_num_layers: 1,
        depformer_dim_feedforward: Some(96),
        depformer_low_rank_embeddings: Some(16),
        depformer_weights_per_step_schedule: None,
        depformer_multi_linear: true,
        depformer_weights_per_step: true,
        depformer_pos_emb: None,
        layer_scale: None,
        text_card_out: None,
        demux_second_stream: false,
        cross_attention: true,
        conditioners,
        // 4 frames of lag keeps the tests short; the published model has 16.
        tts_config: TtsTimes {
            audio_delay: 0.32,
            second_stream_ahead: 0,
            multistream: false,
        },
        model_id: Some(ModelId {
            sig: TINY_SIG.into(),
            epoch: 1,
        }),
    }
}

fn save(map: TensorMap, dtype: DType, path: &Path) -> Result<()> {
    let tensors: std::collections::HashMap<String, Tensor> = map
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(dtype)?)))
        .collect::<Result<_>>()?;
    moshi::candle::safetensors::save(&tensors, path)
        .with_context(|| format!("writing {}", path.display()))
}

fn write_common(dir: &Path, mimi: &str, tokenizer: &str, seed: u64) -> Result<()> {
    write_tiny_mimi(dir, mimi, N_Q, CARD, seed)?;
    std::fs::write(dir.join(tokenizer), tokenizer_model(TEXT_CARD))?;
    Ok(())
}

/// Write the tiny Mimi (and its `mimi_config.toml`) into `dir` as `file`, with `n_q`
/// codebooks of `bins` entries: the codec of checkpoints that come without one (the
/// published-layout reference fixtures).
pub fn write_tiny_mimi(dir: &Path, file: &str, n_q: usize, bins: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut m = mimi_toml();
    m.quantizer_n_q = n_q;
    m.quantizer_bins = bins;
    write_mimi(&dir.join(file), &m.to_mimi(), seed)?;
    std::fs::write(dir.join(MIMI_CONFIG_FILE), toml::to_string(&m)?)?;
    Ok(())
}

/// Write a tiny STT checkpoint (with pause heads) into `dir`.
pub fn write_stt(dir: &Path, seed: u64) -> Result<()> {
    let cfg = tiny_stt_config();
    write_common(dir, &cfg.mimi_name, &cfg.tokenizer_name, seed)?;
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string_pretty(&cfg)?)?;
    let (vb, made) = RandomBackend::var_builder(seed, DType::F32, &Device::Cpu);
    let heads = ExtraHeadsConfig {
        num_heads: 4,
        dim: 6,
    };
    moshi::lm::LmModel::new(
        &cfg.lm(Some(heads)),
        moshi::nn::MaybeQuantizedVarBuilder::Real(vb),
    )?;
    let mut map = std::mem::take(&mut *made.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    // Rows of the text head: pad strong, control and byte pieces silent.
    let w = map
        .get("text_linear.weight")
        .context("no text head")?
        .clone();
    let rows: Vec<Tensor> = (0..TEXT_CARD)
        .map(|i| {
            let r = w.narrow(0, i, 1)?;
            match i {
                3 => r * 4.0,
                i if i < 4 + 256 => r.zeros_like(),
                _ => Ok(r),
            }
        })
        .collect::<moshi::candle::Result<_>>()?;
    map.insert("text_linear.weight".into(), Tensor::cat(&rows, 0)?);
    save(map, DType::BF16, &dir.join(STT_LM_FILE))
}

/// Write a tiny TTS checkpoint into `dir`.
pub fn write_tts(dir: &Path, seed: u64) -> Result<()> {
    let cfg = tiny_tts_config();
    write_common(dir, &cfg.mimi_name, &cfg.tokenizer_name, seed)?;
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string_pretty(&cfg)?)?;
    let (vb, made) = RandomBackend::var_builder(seed, DType::F32, &Device::Cpu);
    moshi::lm::LmModel::new(
        &cfg.lm().map_err(anyhow::Error::msg)?,
        moshi::nn::MaybeQuantizedVarBuilder::Real(vb.clone()),
    )?;
    let s = vb.pp("condition_provider.conditioners.speaker_wavs");
    s.get((cfg.dim, SPEAKER_DIM), "output_proj.weight")?;
    s.get((1, 1, cfg.dim), "learnt_padding")?;
    let map = std::mem::take(&mut *made.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    save(map, DType::BF16, &dir.join(&cfg.moshi_name))
}

/// Write a voice embedding in the `kyutai/tts-voices` layout: `speaker_wavs`, (1, dim, 125).
pub fn write_voice(path: &Path, seed: u64) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let (vb, made) = RandomBackend::var_builder(seed, DType::F32, &Device::Cpu);
    // A name with "emb." gets unit-variance values, as an embedding should have.
    vb.get((1, SPEAKER_DIM, 125), "emb.speaker_wavs")?;
    let t = made
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .remove("emb.speaker_wavs")
        .context("no voice made")?;
    let map = TensorMap::from([("speaker_wavs".to_string(), t)]);
    save(map, DType::F32, path)
}
