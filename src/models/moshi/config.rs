//! Model configurations: the official Moshi/Mimi ones, the tiny demo ones, and the TOML
//! files a checkpoint directory may carry (`lm_config.toml`, `mimi_config.toml`).
//!
//! `moshi::lm::Config` only derives `Deserialize`, so the `*Toml` mirrors below exist to
//! *write* it in exactly the form `toml::from_str::<moshi::lm::Config>` reads (Kyutai's
//! `gen --lm-config-file`). `moshi::mimi::Config` has no serde at all, hence `MimiToml`.

use moshi::candle_nn::Activation;
use moshi::transformer::{self, PositionalEmbedding};
use moshi::{conv, lm, mimi, seanet, NormType};
use serde::{Deserialize, Serialize};

pub const LM_CONFIG_FILE: &str = "lm_config.toml";
pub const MIMI_CONFIG_FILE: &str = "mimi_config.toml";

/// Everything that describes one model, LM and codec together.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub lm: lm::Config,
    pub mimi: mimi::Config,
    pub gen: moshi::lm_generate_multistream::Config,
}

impl ModelConfig {
    /// The official moshiko / moshika candle checkpoints.
    pub fn moshiko() -> Self {
        Self::from_parts(lm::Config::v0_1_streaming(8), mimi::Config::v0_1(Some(8)))
    }

    /// Derive the multistream settings (codebook split, pad tokens) from the LM config, as
    /// Kyutai's `gen` does for the moshiko layout.
    pub fn from_parts(lm: lm::Config, mimi: mimi::Config) -> Self {
        let slices = lm.depformer.as_ref().map_or(0, |d| d.num_slices);
        // PersonaPlex's depformer also predicts the user's codebooks: it speaks with half.
        let generated = if slices == lm.audio_codebooks && slices > 0 {
            slices / 2
        } else {
            slices
        };
        let gen = moshi::lm_generate_multistream::Config {
            generated_audio_codebooks: generated,
            input_audio_codebooks: lm.audio_codebooks.saturating_sub(generated),
            audio_vocab_size: lm.audio_vocab_size,
            acoustic_delay: 2,
            text_pad_token: 3,
            text_eop_token: 0,
            text_start_token: lm.text_out_vocab_size as u32,
        };
        Self { lm, mimi, gen }
    }

    /// Cross-checks that no tensor shape can catch: the LM and Mimi must agree.
    pub fn check_consistency(&self) -> Result<(), String> {
        let g = &self.gen;
        if g.generated_audio_codebooks == 0 {
            return Err("the LM config has no depformer, so it cannot speak".into());
        }
        if g.input_audio_codebooks != g.generated_audio_codebooks {
            return Err(format!(
                "the LM config has {} audio codebooks and {} depformer slices; a full-duplex \
                 model needs audio_codebooks = 2 x slices",
                self.lm.audio_codebooks, g.generated_audio_codebooks
            ));
        }
        if self.mimi.quantizer_n_q < g.generated_audio_codebooks {
            return Err(format!(
                "Mimi has {} codebooks but the LM speaks with {}",
                self.mimi.quantizer_n_q, g.generated_audio_codebooks
            ));
        }
        if self.mimi.quantizer_bins + 1 != self.lm.audio_vocab_size {
            return Err(format!(
                "Mimi has {} bins per codebook but the LM's audio_vocab_size is {} (expected {})",
                self.mimi.quantizer_bins,
                self.lm.audio_vocab_size,
                self.mimi.quantizer_bins + 1
            ));
        }
        if self.lm.text_in_vocab_size != self.lm.text_out_vocab_size + 1 {
            return Err(format!(
                "text_in_vocab_size ({}) must be text_out_vocab_size ({}) + 1 (the start token)",
                self.lm.text_in_vocab_size, self.lm.text_out_vocab_size
            ));
        }
        let samples = self.mimi.sample_rate / self.mimi.frame_rate;
        if (samples - 1920.0).abs() > 0.5 {
            return Err(format!(
                "Mimi frames are {samples} samples; the engine steps 1920"
            ));
        }
        Ok(())
    }

    /// Parameters of the temporal transformer plus the depformer (embeddings included).
    pub fn lm_params(&self) -> u64 {
        let t = &self.lm.transformer;
        let mut n = layer_params(t) * t.num_layers as u64;
        n += (self.lm.text_in_vocab_size + self.lm.audio_codebooks * self.lm.audio_vocab_size)
            as u64
            * t.d_model as u64;
        n += (self.lm.text_out_vocab_size * t.d_model) as u64;
        if let Some(d) = &self.lm.depformer {
            let dt = &d.transformer;
            let per_slice = layer_params(dt) * dt.num_layers as u64
                + (t.d_model * dt.d_model) as u64
                + (self.lm.audio_vocab_size * dt.d_model * 2) as u64;
            n += per_slice * d.num_slices as u64;
        }
        n
    }
}

fn layer_params(t: &transformer::Config) -> u64 {
    let d = t.d_model as u64;
    let ff = match t.gating {
        None => 2 * d * t.dim_feedforward as u64,
        Some(_) => {
            let hidden = if t.dim_feedforward == 4 * t.d_model {
                11 * t.d_model / 4
            } else {
                2 * t.dim_feedforward / 3
            } as u64;
            3 * d * hidden
        }
    };
    4 * d * d + ff
}

/// A Moshi-shaped LM config of a chosen size (used by the demo and the benchmark).
#[allow(clippy::too_many_arguments)]
pub fn lm_config(
    d_model: usize,
    num_heads: usize,
    num_layers: usize,
    context: usize,
    dep_d_model: usize,
    dep_heads: usize,
    dep_layers: usize,
    text_vocab: usize,
    audio_bins: usize,
) -> lm::Config {
    let mut cfg = lm::Config::v0_1_streaming(8);
    let t = &mut cfg.transformer;
    t.d_model = d_model;
    t.num_heads = num_heads;
    t.num_layers = num_layers;
    t.dim_feedforward = 4 * d_model;
    t.context = context;
    if let Some(dep) = cfg.depformer.as_mut() {
        let dt = &mut dep.transformer;
        dt.d_model = dep_d_model;
        dt.num_heads = dep_heads;
        dt.num_layers = dep_layers;
        dt.dim_feedforward = 4 * dep_d_model;
    }
    cfg.text_in_vocab_size = text_vocab + 1;
    cfg.text_out_vocab_size = text_vocab;
    cfg.audio_vocab_size = audio_bins + 1;
    cfg
}

/// The demo LM: Moshi's architecture (temporal transformer with RoPE, 8-slice depformer,
/// 16 audio streams) at a size that steps in a few ms. Its context equals moshiko's, so
/// the demo crosses the KV wall at the same place the real model would.
pub fn demo_lm() -> lm::Config {
    lm_config(64, 4, 2, 3000, 64, 4, 1, DEMO_TEXT_VOCAB, DEMO_AUDIO_BINS)
}

pub const DEMO_TEXT_VOCAB: usize = 512;
pub const DEMO_AUDIO_BINS: usize = 256;

/// The demo Mimi: the published SEANet strides (so 1920-sample frames at 12.5 Hz) with
/// few filters, one transformer layer and small codebooks.
pub fn demo_mimi() -> MimiToml {
    MimiToml {
        sample_rate: 24_000.0,
        frame_rate: 12.5,
        quantizer_n_q: 8,
        quantizer_bins: DEMO_AUDIO_BINS,
        quantizer_dim: 16,
        seanet: SeanetToml {
            dimension: 32,
            n_filters: 4,
            n_residual_layers: 1,
            ratios: vec![8, 6, 5, 4],
            kernel_size: 7,
            residual_kernel_size: 3,
            last_kernel_size: 3,
            dilation_base: 2,
            compress: 2,
        },
        transformer: MimiTransformerToml {
            num_heads: 2,
            num_layers: 1,
            dim_feedforward: 64,
            context: 250,
            layer_scale: 0.1,
        },
    }
}

pub fn demo() -> ModelConfig {
    ModelConfig::from_parts(demo_lm(), demo_mimi().to_mimi())
}

// ---------------------------------------------------------------- Mimi config file

/// The parts of a Mimi config that differ between sizes; the rest is the published Mimi.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimiToml {
    pub sample_rate: f64,
    pub frame_rate: f64,
    pub quantizer_n_q: usize,
    pub quantizer_bins: usize,
    pub quantizer_dim: usize,
    pub seanet: SeanetToml,
    pub transformer: MimiTransformerToml,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeanetToml {
    pub dimension: usize,
    pub n_filters: usize,
    pub n_residual_layers: usize,
    pub ratios: Vec<usize>,
    pub kernel_size: usize,
    pub residual_kernel_size: usize,
    pub last_kernel_size: usize,
    pub dilation_base: usize,
    pub compress: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimiTransformerToml {
    pub num_heads: usize,
    pub num_layers: usize,
    pub dim_feedforward: usize,
    pub context: usize,
    pub layer_scale: f64,
}

impl MimiToml {
    pub fn to_mimi(&self) -> mimi::Config {
        let mut cfg = mimi::Config::v0_1(Some(self.quantizer_n_q));
        cfg.sample_rate = self.sample_rate;
        cfg.frame_rate = self.frame_rate;
        cfg.quantizer_bins = self.quantizer_bins;
        cfg.quantizer_dim = self.quantizer_dim;
        let s: &mut seanet::Config = &mut cfg.seanet;
        s.dimension = self.seanet.dimension;
        s.n_filters = self.seanet.n_filters;
        s.n_residual_layers = self.seanet.n_residual_layers;
        s.ratios = self.seanet.ratios.clone();
        s.kernel_size = self.seanet.kernel_size;
        s.residual_kernel_size = self.seanet.residual_kernel_size;
        s.last_kernel_size = self.seanet.last_kernel_size;
        s.dilation_base = self.seanet.dilation_base;
        s.compress = self.seanet.compress;
        s.norm = conv::Norm::WeightNorm;
        let t = &mut cfg.transformer;
        t.d_model = self.seanet.dimension;
        t.num_heads = self.transformer.num_heads;
        t.num_layers = self.transformer.num_layers;
        t.dim_feedforward = self.transformer.dim_feedforward;
        t.context = self.transformer.context;
        t.layer_scale = Some(self.transformer.layer_scale);
        cfg
    }

    pub fn validate(&self) -> Result<(), String> {
        let s = &self.seanet;
        if s.ratios.is_empty() || s.ratios.contains(&0) || s.n_filters == 0 || s.dimension == 0 {
            return Err("seanet ratios, n_filters and dimension must be non-zero".into());
        }
        if self.transformer.num_heads == 0
            || !s.dimension.is_multiple_of(self.transformer.num_heads)
        {
            return Err(format!(
                "seanet.dimension ({}) must be a multiple of transformer.num_heads ({})",
                s.dimension, self.transformer.num_heads
            ));
        }
        let hop: usize = s.ratios.iter().product();
        let enc_rate = self.sample_rate / hop as f64;
        let stride = enc_rate / self.frame_rate;
        if stride.fract() != 0.0 || stride < 1.0 {
            return Err(format!(
                "sample_rate / prod(ratios) / frame_rate = {stride}; it must be a whole number"
            ));
        }
        if self.quantizer_n_q == 0 || self.quantizer_bins == 0 {
            return Err("quantizer_n_q and quantizer_bins must be non-zero".into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- LM config file

#[derive(Debug, Clone, Serialize)]
pub struct LmToml {
    pub text_in_vocab_size: usize,
    pub text_out_vocab_size: usize,
    pub audio_vocab_size: usize,
    pub audio_codebooks: usize,
    pub transformer: TransformerToml,
    pub depformer: Option<DepformerToml>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DepformerToml {
    pub num_slices: usize,
    pub low_rank_embeddings: Option<usize>,
    pub transformer: TransformerToml,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransformerToml {
    pub d_model: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub causal: bool,
    pub norm_first: bool,
    pub bias_ff: bool,
    pub bias_attn: bool,
    pub layer_scale: Option<f64>,
    pub positional_embedding: PositionalEmbedding,
    pub use_conv_block: bool,
    pub conv_kernel_size: usize,
    pub use_conv_bias: bool,
    pub gating: Option<Activation>,
    pub norm: NormType,
    pub context: usize,
    pub max_period: usize,
    pub max_seq_len: usize,
    pub kv_repeat: usize,
    pub dim_feedforward: usize,
    pub conv_layout: bool,
}

impl TransformerToml {
    fn from_cfg(t: &transformer::Config) -> Result<Self, String> {
        if t.cross_attention.is_some() {
            return Err("cross-attention LMs are not supported".into());
        }
        Ok(Self {
            d_model: t.d_model,
            num_heads: t.num_heads,
            num_layers: t.num_layers,
            causal: t.causal,
            norm_first: t.norm_first,
            bias_ff: t.bias_ff,
            bias_attn: t.bias_attn,
            layer_scale: t.layer_scale,
            positional_embedding: t.positional_embedding,
            use_conv_block: t.use_conv_block,
            conv_kernel_size: t.conv_kernel_size,
            use_conv_bias: t.use_conv_bias,
            gating: t.gating,
            norm: t.norm,
            context: t.context,
            max_period: t.max_period,
            max_seq_len: t.max_seq_len,
            kv_repeat: t.kv_repeat,
            dim_feedforward: t.dim_feedforward,
            conv_layout: t.conv_layout,
        })
    }
}

/// Write an LM config as the TOML that `toml::from_str::<moshi::lm::Config>` reads.
pub fn lm_to_toml(cfg: &lm::Config) -> Result<String, String> {
    if cfg.conditioners.is_some() || cfg.extra_heads.is_some() {
        return Err("conditioned LMs are not supported".into());
    }
    let depformer = match &cfg.depformer {
        None => None,
        Some(d) => Some(DepformerToml {
            num_slices: d.num_slices,
            low_rank_embeddings: d.low_rank_embeddings,
            transformer: TransformerToml::from_cfg(&d.transformer)?,
        }),
    };
    let file = LmToml {
        text_in_vocab_size: cfg.text_in_vocab_size,
        text_out_vocab_size: cfg.text_out_vocab_size,
        audio_vocab_size: cfg.audio_vocab_size,
        audio_codebooks: cfg.audio_codebooks,
        transformer: TransformerToml::from_cfg(&cfg.transformer)?,
        depformer,
    };
    toml::to_string(&file).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lm_toml_round_trips_through_moshis_own_deserializer() {
        let cfg = demo_lm();
        let text = lm_to_toml(&cfg).unwrap();
        let back: lm::Config = toml::from_str(&text).unwrap();
        assert_eq!(lm_to_toml(&back).unwrap(), text);
        assert_eq!(back.transformer.context, 3000);
    }

    #[test]
    fn official_and_demo_configs_are_consistent() {
        ModelConfig::moshiko().check_consistency().unwrap();
        demo().check_consistency().unwrap();
        demo_mimi().validate().unwrap();
        let mimi: MimiToml = toml::from_str(&toml::to_string(&demo_mimi()).unwrap()).unwrap();
        assert_eq!(mimi, demo_mimi());
    }

    #[test]
    fn moshiko_has_about_seven_billion_parameters() {
        let p = ModelConfig::moshiko().lm_params() as f64 / 1e9;
        assert!((7.0..8.5).contains(&p), "{p}");
    }
}
