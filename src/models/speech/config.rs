//! The `config.json` of Kyutai's speech checkpoints (the keys of `kyutai/stt-1b-en_fr-candle`
//! and `kyutai/tts-1.6b-en_fr`, as Kyutai's `stt-rs` and Python loaders read them), turned
//! into the `moshi` crate's configs; and what each part takes in memory.

use moshi::conditioner::{ConditionerConfig, LutConfig};
use moshi::lm::{self, DepFormerConfig, ExtraHeadsConfig};
use moshi::transformer::{self, CrossAttentionGating, PositionalEmbedding};
use moshi::NormType;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Mimi's frame rate: every delay in these configs is counted in its frames.
/// The LM of the candle STT repos (their config.json names no LM file).
pub const STT_LM_FILE: &str = "model.safetensors";
pub const FRAME_RATE: f64 = 12.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SttTimes {
    /// Silence Kyutai feeds before the audio (0 for stt-1b-en_fr).
    #[serde(default)]
    pub audio_silence_prefix_seconds: f64,
    /// How far the text lags the audio (0.5 s for stt-1b-en_fr).
    pub audio_delay_seconds: f64,
}

/// `config.json` of `kyutai/stt-1b-en_fr-candle` (unknown keys are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SttConfig {
    pub mimi_name: String,
    pub tokenizer_name: String,
    /// The LM file; the candle repos name it `model.safetensors` (no key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moshi_name: Option<String>,
    pub card: usize,
    pub text_card: usize,
    pub dim: usize,
    pub n_q: usize,
    pub context: usize,
    pub max_period: f64,
    pub num_heads: usize,
    pub num_layers: usize,
    #[serde(default = "yes")]
    pub causal: bool,
    pub stt_config: SttTimes,
}

fn yes() -> bool {
    true
}

impl SttConfig {
    pub fn lm_file(&self) -> &str {
        self.moshi_name.as_deref().unwrap_or(STT_LM_FILE)
    }

    /// Text frames behind the audio, as `stt-rs` counts them.
    pub fn delay_frames(&self) -> usize {
        (self.stt_config.audio_delay_seconds * FRAME_RATE) as usize
    }

    /// The LM as `stt-rs` builds it; `extra_heads` (the pause predictor) when the weights
    /// have them.
    pub fn lm(&self, extra_heads: Option<ExtraHeadsConfig>) -> lm::Config {
        lm::Config {
            transformer: temporal(
                self.dim,
                self.num_heads,
                self.num_layers,
                self.dim * 4,
                self.context,
                self.max_period as usize,
                self.causal,
                None,
            ),
            depformer: None,
            audio_vocab_size: self.card + 1,
            text_in_vocab_size: self.text_card + 1,
            text_out_vocab_size: self.text_card,
            audio_codebooks: self.n_q,
            conditioners: Default::default(),
            extra_heads,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        positive(&[
            ("card", self.card),
            ("text_card", self.text_card),
            ("dim", self.dim),
            ("n_q", self.n_q),
            ("context", self.context),
            ("num_heads", self.num_heads),
            ("num_layers", self.num_layers),
        ])?;
        heads_divide("dim", self.dim, self.num_heads)?;
        if !(0.0..=10.0).contains(&self.stt_config.audio_delay_seconds) {
            return Err(format!(
                "stt_config.audio_delay_seconds is {}; expected 0 to 10",
                self.stt_config.audio_delay_seconds
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TtsTimes {
    /// How far the audio lags the text, in seconds (1.28 for tts-1.6b-en_fr).
    pub audio_delay: f64,
    /// Words of look-ahead a second text stream carries (2 for tts-1.6b-en_fr).
    #[serde(default)]
    pub second_stream_ahead: usize,
    /// Two audio streams (Kyutai's dialogue models); not supported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multistream: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelId {
    pub sig: String,
    pub epoch: u64,
}

/// `config.json` of `kyutai/tts-1.6b-en_fr` (unknown keys are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TtsConfig {
    pub moshi_name: String,
    pub mimi_name: String,
    pub tokenizer_name: String,
    pub card: usize,
    pub n_q: usize,
    pub dep_q: usize,
    pub delays: Vec<usize>,
    pub dim: usize,
    pub text_card: usize,
    #[serde(default = "pad_id")]
    pub existing_text_padding_id: u32,
    pub num_heads: usize,
    pub num_layers: usize,
    pub hidden_scale: f64,
    pub context: usize,
    pub max_period: f64,
    pub depformer_dim: usize,
    pub depformer_num_heads: usize,
    pub depformer_num_layers: usize,
    #[serde(default)]
    pub depformer_dim_feedforward: Option<usize>,
    #[serde(default)]
    pub depformer_low_rank_embeddings: Option<usize>,
    #[serde(default)]
    pub depformer_weights_per_step_schedule: Option<Vec<usize>>,
    /// One input projection per weight set (else one for all codebooks).
    #[serde(default)]
    pub depformer_multi_linear: bool,
    /// Attention and feed-forward weights per codebook (or per schedule entry).
    #[serde(default)]
    pub depformer_weights_per_step: bool,
    /// Must be absent or "none": the depth transformer has no positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depformer_pos_emb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_card_out: Option<usize>,
    #[serde(default)]
    pub demux_second_stream: bool,
    #[serde(default)]
    pub cross_attention: bool,
    /// `{"name": {"type": "lut", "lut": {...}}, "speaker_wavs": {"type": "tensor", ...}}`.
    #[serde(default)]
    pub conditioners: serde_json::Map<String, serde_json::Value>,
    pub tts_config: TtsTimes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<ModelId>,
}

fn pad_id() -> u32 {
    3
}

/// Speaker slots of the cross-attention source (Kyutai's `DEFAULT_MAX_SPEAKERS`).
pub const MAX_SPEAKERS: usize = 5;

impl TtsConfig {
    /// Frames the audio lags the text.
    pub fn delay_frames(&self) -> usize {
        (self.tts_config.audio_delay * FRAME_RATE).round() as usize
    }

    /// The acoustic codebooks' delay (the semantic one, codebook 0, has none).
    pub fn acoustic_delay(&self) -> usize {
        self.delays.get(2).copied().unwrap_or(0)
    }

    /// `.1e68beda@240.safetensors`: what a voice name gains to name its embedding file.
    pub fn voice_suffix(&self) -> Option<String> {
        self.model_id
            .as_ref()
            .map(|m| format!(".{}@{}.safetensors", m.sig, m.epoch))
    }

    /// The width of a voice embedding (`speaker_wavs` conditioner), when there is one.
    pub fn speaker_dim(&self) -> Option<usize> {
        let c = self.conditioners.get("speaker_wavs")?;
        c["tensor"]["dim"].as_u64().map(|d| d as usize)
    }

    /// Features the crate's `tts_streaming` (candle-named checkpoints) cannot run; the
    /// PyTorch-named published layout runs them through `dsm_lm` instead.
    pub fn needs_published_layout(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.demux_second_stream {
            why.push("a second text stream muxed into its text input (`demux_second_stream`)");
        }
        if self.depformer_weights_per_step_schedule.is_some() {
            why.push("depth-transformer weights shared by schedule (`depformer_weights_per_step_schedule`)");
        }
        if why.is_empty() {
            None
        } else {
            Some(why.join(" and "))
        }
    }

    /// What no path here can run, as the user should hear it; `None` if all of it is
    /// supported.
    pub fn unsupported(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.tts_config.multistream {
            why.push("two audio streams (`tts_config.multistream`)".to_string());
        }
        if self
            .depformer_pos_emb
            .as_deref()
            .is_some_and(|p| p != "none")
        {
            why.push(format!(
                "positions in the depth transformer (`depformer_pos_emb` = {:?})",
                self.depformer_pos_emb.as_deref().unwrap_or_default()
            ));
        }
        if self.layer_scale.is_some() {
            why.push("layer scales (`layer_scale`)".to_string());
        }
        if self.text_card_out.is_some_and(|c| c != self.text_card) {
            why.push("a text output vocabulary of its own (`text_card_out`)".to_string());
        }
        if self.second_stream_ahead_without_demux() {
            why.push(
                "a look-ahead (`tts_config.second_stream_ahead`) without a second text stream"
                    .to_string(),
            );
        }
        if why.is_empty() {
            None
        } else {
            Some(why.join(" and "))
        }
    }

    fn second_stream_ahead_without_demux(&self) -> bool {
        self.tts_config.second_stream_ahead > 0 && !self.demux_second_stream
    }

    /// The lookup-table conditioners (the Rust crate's kind); `speaker_wavs` goes in as the
    /// cross-attention source instead.
    fn luts(&self) -> Result<HashMap<String, ConditionerConfig>, String> {
        let mut out = HashMap::new();
        for (name, c) in &self.conditioners {
            match c["type"].as_str() {
                Some("lut") => {
                    let l = &c["lut"];
                    let values = l["possible_values"]
                        .as_array()
                        .map(|v| {
                            v.iter()
                                .filter_map(|s| s.as_str().map(String::from))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    let (Some(n_bins), Some(dim)) = (l["n_bins"].as_u64(), l["dim"].as_u64())
                    else {
                        return Err(format!("conditioner `{name}`: lut needs n_bins and dim"));
                    };
                    out.insert(
                        name.clone(),
                        ConditionerConfig::Lut(LutConfig {
                            n_bins: n_bins as usize,
                            dim: dim as usize,
                            possible_values: values,
                        }),
                    );
                }
                Some("tensor") if name == "speaker_wavs" => {}
                other => {
                    return Err(format!(
                        "conditioner `{name}` has type {other:?}; only lut and the speaker_wavs tensor are supported"
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The LM as `moshi::lm::LmModel` builds it.
    pub fn lm(&self) -> Result<lm::Config, String> {
        let luts = self.luts()?;
        let cross = self.cross_attention.then_some((
            CrossAttentionGating::Normal,
            NormType::LayerNorm,
            None,
        ));
        let mut dep = temporal(
            self.depformer_dim,
            self.depformer_num_heads,
            self.depformer_num_layers,
            self.depformer_dim_feedforward
                .unwrap_or(self.depformer_dim * 4),
            self.dep_q,
            10_000,
            true,
            None,
        );
        dep.positional_embedding = PositionalEmbedding::None;
        Ok(lm::Config {
            transformer: temporal(
                self.dim,
                self.num_heads,
                self.num_layers,
                (self.hidden_scale * self.dim as f64).round() as usize,
                self.context,
                self.max_period as usize,
                true,
                cross,
            ),
            depformer: Some(DepFormerConfig {
                transformer: dep,
                num_slices: self.dep_q,
                low_rank_embeddings: self.depformer_low_rank_embeddings,
            }),
            audio_vocab_size: self.card + 1,
            text_in_vocab_size: self.text_card + 1,
            text_out_vocab_size: self.text_card,
            audio_codebooks: self.n_q,
            conditioners: (!luts.is_empty()).then_some(luts),
            extra_heads: None,
        })
    }

    /// `moshi::tts_streaming`'s settings: Kyutai's special tokens, this model's delays.
    pub fn streaming(&self) -> moshi::tts_streaming::Config {
        moshi::tts_streaming::Config {
            acoustic_delay: self.acoustic_delay(),
            text_pad_token: self.existing_text_padding_id,
            text_bos_token: 1,
            text_eos_token: 2,
            text_eop_token: 0,
            text_start_token: self.text_card as u32,
            text_audio_delay_in_tokens: self.delay_frames(),
            max_consecutive_pads: 10,
            extra_steps: 5,
            speaker_cond_duration_s: 10.,
            speaker_cond_dim: self.dim,
            speaker_cond_n_speakers: MAX_SPEAKERS,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        positive(&[
            ("card", self.card),
            ("n_q", self.n_q),
            ("dep_q", self.dep_q),
            ("dim", self.dim),
            ("text_card", self.text_card),
            ("num_heads", self.num_heads),
            ("num_layers", self.num_layers),
            ("context", self.context),
            ("depformer_dim", self.depformer_dim),
            ("depformer_num_heads", self.depformer_num_heads),
            ("depformer_num_layers", self.depformer_num_layers),
        ])?;
        heads_divide("dim", self.dim, self.num_heads)?;
        heads_divide(
            "depformer_dim",
            self.depformer_dim,
            self.depformer_num_heads,
        )?;
        if self.dep_q > self.n_q {
            return Err(format!("dep_q ({}) exceeds n_q ({})", self.dep_q, self.n_q));
        }
        if self.delays.len() != self.n_q + 1
            || self.delays[..2].iter().any(|&d| d != 0)
            || self.delays[2..].iter().any(|&d| d != self.acoustic_delay())
        {
            return Err(format!(
                "delays must be n_q + 1 = {} entries: 0 for the text and the semantic codebook, one acoustic delay for the rest; got {:?}",
                self.n_q + 1,
                self.delays
            ));
        }
        if self.cross_attention && self.speaker_dim().is_none() {
            return Err(
                "cross_attention is on but there is no speaker_wavs tensor conditioner to feed it"
                    .into(),
            );
        }
        if !(0.0..=10.0).contains(&self.tts_config.audio_delay) {
            return Err(format!(
                "tts_config.audio_delay is {}; expected 0 to 10 seconds",
                self.tts_config.audio_delay
            ));
        }
        self.luts().map(|_| ())
    }
}

#[allow(clippy::too_many_arguments)]
fn temporal(
    d_model: usize,
    num_heads: usize,
    num_layers: usize,
    dim_feedforward: usize,
    context: usize,
    max_period: usize,
    causal: bool,
    cross_attention: Option<(CrossAttentionGating, NormType, Option<usize>)>,
) -> transformer::Config {
    transformer::Config {
        d_model,
        num_heads,
        num_layers,
        dim_feedforward,
        causal,
        norm_first: true,
        bias_ff: false,
        bias_attn: false,
        layer_scale: None,
        context,
        max_period,
        use_conv_block: false,
        use_conv_bias: true,
        cross_attention,
        gating: Some(moshi::candle_nn::Activation::Silu),
        norm: NormType::RmsNorm,
        positional_embedding: PositionalEmbedding::Rope,
        conv_layout: false,
        conv_kernel_size: 3,
        kv_repeat: 1,
        max_seq_len: 4096 * 4,
        shared_cross_attn: false,
    }
}

fn positive(fields: &[(&str, usize)]) -> Result<(), String> {
    match fields.iter().find(|(_, v)| *v == 0) {
        Some((k, _)) => Err(format!("{k} is 0; it must be positive")),
        None => Ok(()),
    }
}

fn heads_divide(what: &str, dim: usize, heads: usize) -> Result<(), String> {
    if !dim.is_multiple_of(heads) {
        return Err(format!(
            "{what} ({dim}) is not a multiple of its heads ({heads})"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- memory

/// What a speech part takes on its device: weights at the compute dtype, the Mimi (f32),
/// the KV cache of its context, and a working allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechMemory {
    pub weights: u64,
    pub mimi: u64,
    pub kv_cache: u64,
    pub working: u64,
}

impl SpeechMemory {
    pub fn total(&self) -> u64 {
        self.weights + self.mimi + self.kv_cache + self.working
    }
}

fn estimate(
    cfg: &lm::Config,
    mimi: &moshi::mimi::Config,
    dtype_bytes: u64,
) -> Result<SpeechMemory, String> {
    use crate::models::moshi::sizing;
    let table = sizing::census(cfg, false, dtype_bytes)?;
    let weights = table.iter().map(|t| t.elems * dtype_bytes).sum();
    let t = &cfg.transformer;
    // Cross-attention keys and values over the speaker source are cached too.
    let kv_cache = sizing::kv_bytes_per_step(cfg, t.num_layers, dtype_bytes)
        * (t.context as u64
            + if t.cross_attention.is_some() {
                (MAX_SPEAKERS * 125) as u64
            } else {
                0
            });
    Ok(SpeechMemory {
        weights,
        mimi: sizing::mimi_bytes(mimi)?,
        kv_cache,
        working: sizing::activation_bytes(cfg, t.context),
    })
}

/// The STT's memory, weights at `dtype_bytes` a value (2 for bf16 on a GPU, 4 for f32).
pub fn stt_memory(
    cfg: &SttConfig,
    pause_heads: Option<ExtraHeadsConfig>,
    mimi: &moshi::mimi::Config,
    dtype_bytes: u64,
) -> Result<SpeechMemory, String> {
    estimate(&cfg.lm(pause_heads), mimi, dtype_bytes)
}

/// The TTS's memory, weights at `dtype_bytes` a value.
pub fn tts_memory(
    cfg: &TtsConfig,
    mimi: &moshi::mimi::Config,
    dtype_bytes: u64,
) -> Result<SpeechMemory, String> {
    let mut lm = cfg.lm()?;
    let dep_dim = cfg.depformer_dim as u64;
    let mut extra = 0u64;
    if let (Some(schedule), Some(dep)) =
        (&cfg.depformer_weights_per_step_schedule, &mut lm.depformer)
    {
        // The published layout: one depth transformer per weight set, and per codebook
        // only its output head and input embedding.
        let sets = schedule.iter().max().map_or(1, |m| m + 1).min(cfg.dep_q);
        dep.num_slices = sets;
        let emb = cfg
            .depformer_low_rank_embeddings
            .map_or(dep_dim, |r| r as u64);
        let per_codebook = cfg.card as u64 * dep_dim + (cfg.card as u64 + 1) * emb;
        extra += (cfg.dep_q - sets) as u64 * per_codebook;
    }
    if cfg.demux_second_stream {
        // `out1` and `out2` of both text embeddings.
        let emb = cfg
            .depformer_low_rank_embeddings
            .map_or(dep_dim, |r| r as u64);
        extra += 2 * (cfg.dim * cfg.dim) as u64 + 2 * dep_dim * emb;
    }
    let mut m = estimate(&lm, mimi, dtype_bytes)?;
    // The voice projection, read beside the LM.
    m.weights += cfg.speaker_dim().unwrap_or(0) as u64 * cfg.dim as u64 * dtype_bytes;
    m.weights += extra * dtype_bytes;
    Ok(m)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `kyutai/stt-1b-en_fr-candle`'s config.json, as published.
    pub const STT_1B: &str = r#"{"dim": 2048, "num_layers": 16, "num_heads": 16,
      "hidden_scale": 4.125, "context": 750, "max_period": 100000.0,
      "n_q": 32, "card": 2048, "text_card": 8000, "existing_text_padding_id": 3,
      "gating": "silu", "norm": "rms_norm_f32", "positional_embedding": "rope",
      "causal": true,
      "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0},
      "model_type": "stt", "mimi_name": "mimi-pytorch-e351c8d8@125.safetensors",
      "tokenizer_name": "tokenizer_en_fr_audio_8000.model"}"#;

    /// `kyutai/tts-1.6b-en_fr`'s config.json, as published.
    pub const TTS_1_6B: &str = r#"{"card": 2048, "n_q": 32, "dep_q": 32,
      "delays": [0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
      "dim": 2048, "text_card": 8000, "existing_text_padding_id": 3, "num_heads": 16,
      "num_layers": 16, "hidden_scale": 4.125, "causal": true, "layer_scale": null,
      "context": 500, "max_period": 10000, "gating": "silu", "norm": "rms_norm_f32",
      "positional_embedding": "rope", "depformer_dim": 1024, "depformer_num_heads": 16,
      "depformer_num_layers": 4, "depformer_dim_feedforward": 3072,
      "depformer_multi_linear": true, "depformer_pos_emb": "none",
      "depformer_weights_per_step": true, "depformer_low_rank_embeddings": 128,
      "demux_second_stream": true, "text_card_out": null, "cross_attention": true,
      "conditioners": {"speaker_wavs": {"type": "tensor", "tensor": {"dim": 512}},
        "cfg": {"type": "lut", "lut": {"n_bins": 7, "dim": 16, "tokenizer": "noop",
          "possible_values": ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]}},
        "control": {"type": "lut", "lut": {"dim": 2048, "n_bins": 1, "tokenizer": "noop",
          "possible_values": ["ok"]}}},
      "fuser": {"cross_attention_pos_emb": true, "cross_attention_pos_emb_scale": 1,
        "sum": ["control", "cfg"], "prepend": [], "cross": ["speaker_wavs"]},
      "tts_config": {"audio_delay": 1.28, "second_stream_ahead": 2},
      "model_id": {"sig": "1e68beda", "epoch": 240},
      "depformer_weights_per_step_schedule": [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10],
      "tokenizer_name": "tokenizer_spm_8k_en_fr_audio.model",
      "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
      "moshi_name": "dsm_tts_1e68beda@240.safetensors", "model_type": "tts",
      "lm_gen_config": {"temp": 0.6, "text_temp": 0.6}}"#;

    const GIB: f64 = (1u64 << 30) as f64;

    #[test]
    fn the_published_configs_parse_and_size_as_their_names_say() {
        let stt: SttConfig = serde_json::from_str(STT_1B).unwrap();
        stt.validate().unwrap();
        assert_eq!(stt.delay_frames(), 6);
        let mimi = moshi::mimi::Config::v0_1(Some(32));
        let heads = Some(ExtraHeadsConfig {
            num_heads: 4,
            dim: 6,
        });
        let bf16 = stt_memory(&stt, heads.clone(), &mimi, 2).unwrap();
        let f32 = stt_memory(&stt, heads, &mimi, 4).unwrap();
        // About a billion parameters: ~2 GiB of bf16, twice that in f32.
        let w = bf16.weights as f64 / GIB;
        eprintln!(
            "stt-1b-en_fr, bf16: {bf16:?}, total {:.2} GiB",
            bf16.total() as f64 / GIB
        );
        assert!((1.6..2.6).contains(&w), "{w} GiB");
        assert_eq!(f32.weights, 2 * bf16.weights);
        assert!(bf16.total() > bf16.weights + bf16.mimi);
        // 750 steps x 16 layers x (k, v) x 2048 x 2 bytes.
        assert_eq!(bf16.kv_cache, 750 * 16 * 2 * 2048 * 2);

        let tts: TtsConfig = serde_json::from_str(TTS_1_6B).unwrap();
        tts.validate().unwrap();
        assert_eq!((tts.delay_frames(), tts.acoustic_delay()), (16, 2));
        assert_eq!(
            tts.voice_suffix().as_deref(),
            Some(".1e68beda@240.safetensors")
        );
        assert!(tts
            .needs_published_layout()
            .unwrap()
            .contains("demux_second_stream"));
        assert_eq!(tts.unsupported(), None);
        assert!(tts.depformer_multi_linear && tts.depformer_weights_per_step);
        let mut multi = tts.clone();
        multi.tts_config.multistream = true;
        multi.layer_scale = Some(0.1);
        let why = multi.unsupported().unwrap();
        assert!(
            why.contains("multistream") && why.contains("layer_scale"),
            "{why}"
        );
        let m = tts_memory(&tts, &mimi, 2).unwrap();
        // 1.6B parameters in the name: 11 shared depformer weight sets. A random
        // checkpoint of this config saved by Kyutai's own `LMModel` in bf16
        // (tools/tts_reference, --published-size) is 3 673 147 672 bytes.
        let ratio = m.weights as f64 / 3_673_147_672.0;
        eprintln!(
            "tts-1.6b-en_fr, bf16: {m:?}, total {:.2} GiB; weights / Kyutai's file = {ratio:.3}",
            m.total() as f64 / GIB
        );
        assert!((0.97..1.03).contains(&ratio), "{ratio}");
        // The same without the schedule (the crate's layout): 32 full slices, larger.
        let mut flat = tts.clone();
        flat.depformer_weights_per_step_schedule = None;
        assert!(tts_memory(&flat, &mimi, 2).unwrap().weights > m.weights * 3 / 2);
    }

    #[test]
    fn bad_values_are_named() {
        let mut stt: SttConfig = serde_json::from_str(STT_1B).unwrap();
        stt.num_heads = 3;
        assert!(
            stt.validate().unwrap_err().contains("num_heads")
                || stt.validate().unwrap_err().contains("heads")
        );
        let mut tts: TtsConfig = serde_json::from_str(TTS_1_6B).unwrap();
        tts.delays.pop();
        assert!(tts.validate().unwrap_err().contains("delays"));
    }
}
