//! Pocket TTS's model configuration, in the YAML format of Kyutai's package
//! (`pocket_tts/utils/config.py`: strict, unknown keys refused), and the two English
//! configurations of pocket-tts 4.0.1 we ship: the default model and the 18M one.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `english.yaml` of pocket-tts 4.0.1 (the default English model, about 100M).
pub const ENGLISH_YAML: &str = include_str!("configs/english.yaml");
/// `english_18m_2026-10.yaml` of pocket-tts 4.0.1 (18M, a "drifting" flow head).
pub const ENGLISH_18M_YAML: &str = include_str!("configs/english_18m_2026-10.yaml");

/// The built-in configurations by the name of their folder in the weights repo
/// (`languages/<name>/`), default first.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("english", ENGLISH_YAML),
    ("english_18m_2026-10", ENGLISH_18M_YAML),
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PocketConfig {
    pub flow_lm: FlowLmConfig,
    pub mimi: MimiConfig,
    #[serde(default)]
    pub weights_path: Option<String>,
    #[serde(default)]
    pub weights_path_without_voice_cloning: Option<String>,
    #[serde(default)]
    pub pad_with_spaces_for_short_inputs: bool,
    #[serde(default)]
    pub remove_semicolons: bool,
    #[serde(default = "yes")]
    pub append_terminal_punctuation: bool,
    #[serde(default = "yes")]
    pub capitalize_first_letter: bool,
    /// Per-character rewrites before tokenization ("" deletes).
    #[serde(default)]
    pub replace_characters: BTreeMap<String, String>,
    #[serde(default)]
    pub model_recommended_frames_after_eos: Option<usize>,
    #[serde(default = "default_temperature")]
    pub default_temperature: f64,
    #[serde(default = "default_eos_threshold")]
    pub default_eos_threshold: f64,
}

fn yes() -> bool {
    true
}
fn default_temperature() -> f64 {
    0.3
}
/// `DEFAULT_EOS_THRESHOLD` of the package.
fn default_eos_threshold() -> f64 {
    -4.0
}

/// How the flow head turns noise into a latent (`flow.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// Lagrangian self-distillation: two time conditions, `decode_steps` steps.
    #[default]
    Lsd,
    /// Euler integration of a flow: one time condition.
    FlowMatching,
    /// No time condition: the head maps the noise to the sample.
    Drifting,
    /// No time condition: the noise plus the head's output.
    Pointwise,
}

impl FlowKind {
    pub fn time_conditions(self) -> usize {
        match self {
            FlowKind::Lsd => 2,
            FlowKind::FlowMatching => 1,
            FlowKind::Drifting | FlowKind::Pointwise => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    pub dim: usize,
    pub depth: usize,
    #[serde(default, rename = "type")]
    pub kind: FlowKind,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLmTransformerConfig {
    pub hidden_scale: usize,
    pub max_period: f64,
    pub d_model: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    #[serde(default)]
    pub attn_dim: Option<usize>,
    #[serde(default)]
    pub num_kv_heads: Option<usize>,
    #[serde(default)]
    pub dim_feedforward: Option<usize>,
}

impl FlowLmTransformerConfig {
    pub fn attn_dim(&self) -> usize {
        self.attn_dim.unwrap_or(self.d_model)
    }
    pub fn kv_heads(&self) -> usize {
        self.num_kv_heads.unwrap_or(self.num_heads)
    }
    pub fn feedforward(&self) -> usize {
        self.dim_feedforward
            .unwrap_or(self.d_model * self.hidden_scale)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupTable {
    pub dim: usize,
    pub n_bins: usize,
    /// "sentencepiece" or "tokenizers" (a `tokenizer.json`).
    pub tokenizer: String,
    pub tokenizer_path: String,
    #[serde(default)]
    pub rank: Option<usize>,
}

impl LookupTable {
    /// The tokenizer's file name, from `tokenizer_path` (`hf://…/tokenizer.json@rev`).
    pub fn file_name(&self) -> String {
        let path = self.tokenizer_path.split('@').next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        if name.is_empty() {
            self.default_file_name().into()
        } else {
            name.into()
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.tokenizer.as_str(), "tokenizers" | "json")
            || self.file_name().ends_with(".json")
    }

    fn default_file_name(&self) -> &'static str {
        if matches!(self.tokenizer.as_str(), "tokenizers" | "json") {
            "tokenizer.json"
        } else {
            "tokenizer.model"
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLmConfig {
    pub dtype: String,
    pub flow: FlowConfig,
    pub transformer: FlowLmTransformerConfig,
    #[serde(default)]
    pub z_dim: Option<usize>,
    pub lookup_table: LookupTable,
    #[serde(default)]
    pub weights_path: Option<String>,
    #[serde(default)]
    pub insert_bos_before_voice: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeanetConfig {
    pub dimension: usize,
    pub channels: usize,
    pub n_filters: usize,
    pub n_residual_layers: usize,
    pub ratios: Vec<usize>,
    pub kernel_size: usize,
    pub residual_kernel_size: usize,
    pub last_kernel_size: usize,
    pub dilation_base: usize,
    pub pad_mode: String,
    pub compress: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimiTransformerConfig {
    pub d_model: usize,
    pub input_dimension: usize,
    pub output_dimensions: Vec<usize>,
    pub num_heads: usize,
    pub num_layers: usize,
    pub layer_scale: f64,
    pub context: usize,
    #[serde(default = "default_max_period")]
    pub max_period: f64,
    pub dim_feedforward: usize,
}

fn default_max_period() -> f64 {
    10_000.0
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizerConfig {
    pub dimension: usize,
    pub output_dimension: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimiConfig {
    pub dtype: String,
    pub sample_rate: usize,
    pub channels: usize,
    pub frame_rate: f64,
    pub seanet: SeanetConfig,
    pub transformer: MimiTransformerConfig,
    pub quantizer: QuantizerConfig,
    #[serde(default)]
    pub weights_path: Option<String>,
    #[serde(default)]
    pub inner_dim: Option<usize>,
    #[serde(default)]
    pub outer_dim: Option<usize>,
    #[serde(default)]
    pub decoder_seanet: Option<SeanetConfig>,
    #[serde(default)]
    pub decoder_transformer: Option<MimiTransformerConfig>,
}

impl MimiConfig {
    pub fn decoder_seanet(&self) -> &SeanetConfig {
        self.decoder_seanet.as_ref().unwrap_or(&self.seanet)
    }
    pub fn decoder_transformer(&self) -> &MimiTransformerConfig {
        self.decoder_transformer
            .as_ref()
            .unwrap_or(&self.transformer)
    }
    /// Audio samples per latent frame (1920 at 24 kHz and 12.5 Hz).
    pub fn frame_size(&self) -> usize {
        (self.sample_rate as f64 / self.frame_rate).round() as usize
    }
    /// The encoder's (and decoder transformer's) steps per latent frame (16 for 200 Hz).
    pub fn steps_per_latent(&self) -> usize {
        let hop: usize = self.seanet.ratios.iter().product();
        self.frame_size() / hop.max(1)
    }
}

impl PocketConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: Self = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// The built-in configuration of a model name (`english`, `english_18m_2026-10`).
    pub fn built_in(name: &str) -> Option<Self> {
        BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, y)| Self::parse(y).ok())
    }

    /// The latent width (the quantizer's input).
    pub fn latent_dim(&self) -> usize {
        self.mimi.quantizer.dimension
    }

    /// What this port cannot run, or an inconsistent shape, in words.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.flow_lm.transformer;
        if t.num_heads == 0 || !t.attn_dim().is_multiple_of(t.num_heads) {
            return Err(format!(
                "flow_lm.transformer: attention width {} is not a multiple of num_heads {}",
                t.attn_dim(),
                t.num_heads
            ));
        }
        if t.kv_heads() == 0 || !t.num_heads.is_multiple_of(t.kv_heads()) {
            return Err(format!(
                "flow_lm.transformer: num_heads {} is not a multiple of num_kv_heads {}",
                t.num_heads,
                t.kv_heads()
            ));
        }
        if !(t.attn_dim() / t.num_heads).is_multiple_of(2) {
            return Err("flow_lm.transformer: the head width must be even (RoPE)".into());
        }
        let m = &self.mimi;
        let frame = m.sample_rate as f64 / m.frame_rate;
        if frame.fract() != 0.0 || frame <= 0.0 {
            return Err(format!(
                "mimi: sample_rate {} / frame_rate {} is not a whole number of samples",
                m.sample_rate, m.frame_rate
            ));
        }
        let hop: usize = m.seanet.ratios.iter().product();
        let dec_hop: usize = m.decoder_seanet().ratios.iter().product();
        if hop == 0 || !m.frame_size().is_multiple_of(hop) || dec_hop != hop {
            return Err("mimi: the SEANet ratios do not divide a latent frame".into());
        }
        for (what, tc) in [
            ("transformer", &m.transformer),
            ("decoder_transformer", m.decoder_transformer()),
        ] {
            if tc.num_heads == 0
                || tc.d_model % tc.num_heads != 0
                || (tc.d_model / tc.num_heads) % 2 != 0
            {
                return Err(format!(
                    "mimi.{what}: d_model {} and num_heads {} give no even head width",
                    tc.d_model, tc.num_heads
                ));
            }
            if tc.output_dimensions.len() != 1 {
                return Err(format!("mimi.{what}: one output dimension expected"));
            }
        }
        if m.channels != 1 || m.decoder_seanet().channels != 1 {
            return Err("mimi: only mono audio (channels: 1)".into());
        }
        if m.sample_rate != 24_000 {
            return Err(format!(
                "mimi: sample_rate {} (the engine plays 24000 Hz)",
                m.sample_rate
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_english_config_parses() {
        let c = PocketConfig::parse(ENGLISH_YAML).unwrap();
        let t = &c.flow_lm.transformer;
        assert_eq!((t.d_model, t.num_layers, t.num_heads), (1024, 6, 16));
        assert_eq!(t.feedforward(), 4096);
        assert_eq!(c.flow_lm.flow.kind, FlowKind::Lsd);
        assert_eq!((c.flow_lm.flow.dim, c.flow_lm.flow.depth), (512, 6));
        assert_eq!(c.flow_lm.z_dim, None);
        assert!(c.flow_lm.insert_bos_before_voice);
        assert!(c.flow_lm.lookup_table.is_json());
        assert_eq!(c.flow_lm.lookup_table.file_name(), "tokenizer.json");
        assert_eq!(c.mimi.frame_size(), 1920);
        assert_eq!(c.mimi.steps_per_latent(), 16);
        assert_eq!(c.mimi.decoder_seanet().n_filters, 64);
        assert_eq!(c.mimi.decoder_transformer().context, 250);
        assert_eq!(c.latent_dim(), 32);
        assert_eq!(c.default_eos_threshold, -4.0);
        assert_eq!(c.default_temperature, 0.3);
        assert_eq!(c.replace_characters.get("’").map(String::as_str), Some("'"));
    }

    #[test]
    fn english_18m_config_parses() {
        let c = PocketConfig::parse(ENGLISH_18M_YAML).unwrap();
        let t = &c.flow_lm.transformer;
        assert_eq!((t.d_model, t.num_layers, t.num_heads), (512, 8, 8));
        assert_eq!(t.feedforward(), 512);
        assert_eq!(c.flow_lm.flow.kind, FlowKind::Drifting);
        assert_eq!(c.flow_lm.flow.kind.time_conditions(), 0);
        assert_eq!(c.flow_lm.z_dim, Some(64));
        assert!(!c.flow_lm.lookup_table.is_json());
        assert_eq!(c.flow_lm.lookup_table.file_name(), "tokenizer.model");
        assert_eq!(c.mimi.outer_dim, Some(128));
        let d = c.mimi.decoder_transformer();
        assert_eq!((d.d_model, d.num_layers, d.context), (128, 12, 50));
        assert_eq!(c.mimi.decoder_seanet().kernel_size, 3);
        assert_eq!(c.default_eos_threshold, -1.0);
        assert_eq!(c.replace_characters.len(), 4);
    }

    #[test]
    fn unknown_keys_and_bad_shapes_are_refused() {
        let bad = ENGLISH_YAML.replace(
            "  dtype: float32\n  flow:",
            "  dtype: float32\n  colour: red\n  flow:",
        );
        let e = PocketConfig::parse(&bad).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let bad = ENGLISH_YAML.replace("num_heads: 16", "num_heads: 15");
        let e = PocketConfig::parse(&bad).unwrap_err();
        assert!(e.contains("num_heads"), "{e}");
    }

    #[test]
    fn built_in_names() {
        assert!(PocketConfig::built_in("english").is_some());
        assert!(PocketConfig::built_in("english_18m_2026-10").is_some());
        assert!(PocketConfig::built_in("klingon").is_none());
    }
}
