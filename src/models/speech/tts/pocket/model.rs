//! A Pocket TTS model: its configuration, flow LM, codec decoder and tokenizer, read
//! from a directory in the layout of `kyutai/pocket-tts-without-voice-cloning`'s
//! `languages/<name>/` (`model.safetensors` in the package's PyTorch names and the
//! tokenizer), with an optional `config.yaml` in the package's format for sizes we do
//! not ship; or built with random weights at a configuration's size (benchmarks).

use super::codec::Decoder;
use super::config::{PocketConfig, BUILT_IN};
use super::encoder::Encoder;
use super::flow_lm::FlowLm;
use super::tokenizer::Tokenizer;
use crate::models::moshi::files::check_safetensors;
use crate::models::moshi::ModelLoadError;
use moshi::candle::{DType, Device};
use moshi::candle_nn::VarBuilder;
use std::path::{Path, PathBuf};

/// The published repository (weights and predefined voices, no voice cloning).
pub const REPO: &str = "kyutai/pocket-tts-without-voice-cloning";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_YAML: &str = "config.yaml";

pub struct PocketModel {
    pub cfg: PocketConfig,
    pub lm: FlowLm,
    /// A fresh decoder; each chunk of speech decodes with a copy.
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    /// The voice-cloning encoder, when the checkpoint has it (the gated repository's).
    pub encoder: Option<Encoder>,
    pub name: String,
    pub device: Device,
}

fn err(message: impl Into<String>, remedy: impl Into<String>) -> ModelLoadError {
    ModelLoadError::new(message, remedy)
}

/// The configuration of a checkpoint directory: its `config.yaml`, else the built-in
/// one named `hint`, else the built-in one whose width the weights have.
pub fn config_for(
    dir: &Path,
    hint: Option<&str>,
    headers: &std::collections::BTreeMap<String, crate::models::moshi::files::TensorHeader>,
) -> Result<(PocketConfig, String), ModelLoadError> {
    let yaml = dir.join(CONFIG_YAML);
    if yaml.is_file() {
        let text = std::fs::read_to_string(&yaml).map_err(|e| {
            err(
                format!("{}: cannot read: {e}", yaml.display()),
                "check its permissions",
            )
        })?;
        let cfg = PocketConfig::parse(&text).map_err(|e| {
            err(
                format!("{}: not a Pocket TTS config: {e}", yaml.display()),
                "write it in the format of the pocket-tts package's pocket_tts/config/*.yaml (as its --config takes)",
            )
        })?;
        return Ok((cfg, "config.yaml".into()));
    }
    let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
    if let Some(h) = hint {
        return PocketConfig::built_in(h)
            .map(|c| (c, h.to_string()))
            .ok_or_else(|| {
                err(
                    format!("no built-in Pocket TTS config named {h:?}"),
                    format!(
                        "use one of {}, or put a config.yaml beside the weights",
                        names.join(", ")
                    ),
                )
            });
    }
    let width = headers
        .get("flow_lm.input_linear.weight")
        .and_then(|h| h.shape.first().copied());
    for (name, _) in BUILT_IN {
        if let Some(c) = PocketConfig::built_in(name) {
            if Some(c.flow_lm.transformer.d_model) == width {
                return Ok((c, name.to_string()));
            }
        }
    }
    Err(err(
        format!(
            "{}: a flow LM {} wide matches none of the built-in configs ({})",
            dir.join(WEIGHTS_FILE).display(),
            width.map_or("of unknown width".into(), |w| w.to_string()),
            names.join(", ")
        ),
        format!(
            "put the model's {CONFIG_YAML} (the pocket-tts package's pocket_tts/config/<name>.yaml) beside {WEIGHTS_FILE}"
        ),
    ))
}

/// The tokenizer file of a directory: the one the config names, else the other kind.
pub fn tokenizer_path(dir: &Path, cfg: &PocketConfig) -> Option<PathBuf> {
    let named = dir.join(cfg.flow_lm.lookup_table.file_name());
    [
        named,
        dir.join("tokenizer.json"),
        dir.join("tokenizer.model"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The flow LM's transformer weights are stored in bf16.
pub fn stored_bf16(
    headers: &std::collections::BTreeMap<String, crate::models::moshi::files::TensorHeader>,
) -> bool {
    headers
        .get("flow_lm.transformer.layers.0.self_attn.in_proj.weight")
        .is_some_and(|h| h.dtype == "BF16")
}

impl PocketModel {
    /// Load `dir` (`hint`: a built-in config name when the directory has no config.yaml).
    pub fn load(dir: &Path, hint: Option<&str>, device: &Device) -> Result<Self, ModelLoadError> {
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(err(
                format!("{} is missing", weights.display()),
                format!("copy languages/<name>/ of {REPO} there (model.safetensors and the tokenizer), or leave out --tts-model-dir to use the Hugging Face cache"),
            ));
        }
        let headers = check_safetensors(&weights)
            .map_err(|e| err(e, format!("download {WEIGHTS_FILE} from {REPO} again")))?;
        let (cfg, cfg_name) = config_for(dir, hint, &headers)?;
        let tok_path = tokenizer_path(dir, &cfg).ok_or_else(|| {
            err(
                format!(
                    "{} is missing (the tokenizer of {})",
                    dir.join(cfg.flow_lm.lookup_table.file_name()).display(),
                    weights.display()
                ),
                format!(
                    "copy {} from the same languages/<name>/ folder of {REPO}",
                    cfg.flow_lm.lookup_table.file_name()
                ),
            )
        })?;
        let tokenizer =
            Tokenizer::load(&tok_path, cfg.flow_lm.lookup_table.n_bins).map_err(|e| {
                err(
                    format!("{}: {e}", tok_path.display()),
                    format!("use the tokenizer that comes with the model in {REPO}"),
                )
            })?;
        // SAFETY: a read-only memory map of a checkpoint file, as candle's loaders do.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|e| {
                err(
                    format!("{}: {e}", weights.display()),
                    format!("download {WEIGHTS_FILE} again"),
                )
            })?;
        let mismatch = |e: moshi::candle::Error| {
            err(
                format!(
                    "{}: does not match the {cfg_name} configuration: {e}",
                    weights.display()
                ),
                format!(
                    "give the {CONFIG_YAML} this checkpoint was made with (beside {WEIGHTS_FILE}), or download the checkpoint again from {REPO}"
                ),
            )
        };
        let mut lm = FlowLm::load(&vb.pp("flow_lm"), &cfg).map_err(mismatch)?;
        // Kyutai publishes its weights in bf16 (the package widens them to f32 and
        // computes in f32): the flow LM keeps them so, reading half the bytes a step.
        if stored_bf16(&headers) {
            lm = lm.bf16().map_err(mismatch)?;
        }
        let decoder = Decoder::load(&vb.pp("mimi"), &cfg.mimi).map_err(mismatch)?;
        let has_encoder = headers.contains_key("mimi.encoder.model.0.conv.weight")
            && headers.contains_key("flow_lm.speaker_proj_weight");
        let encoder = if has_encoder {
            Some(Encoder::load(&vb.pp("mimi"), &cfg.mimi).map_err(mismatch)?)
        } else {
            None
        };
        Ok(Self {
            name: format!(
                "pocket-tts {cfg_name} ({})",
                crate::models::speech::files::display_name(dir)
            ),
            cfg,
            lm,
            decoder,
            tokenizer,
            encoder,
            device: device.clone(),
        })
    }

    /// A model of `cfg`'s size with unseeded random weights and a random 4000-piece
    /// tokenizer: nothing is read from disk (benchmarks).
    pub fn random(cfg: PocketConfig, name: &str, device: &Device) -> anyhow::Result<Self> {
        use crate::models::moshi::personaplex::text::PieceEncoder;
        use crate::models::moshi::random_init::FastRandomBackend;
        let vb = FastRandomBackend::var_builder(DType::F32, device);
        let lm = FlowLm::load(&vb.pp("flow_lm"), &cfg)?;
        let decoder = Decoder::load(&vb.pp("mimi"), &cfg.mimi)?;
        let spm = crate::models::moshi::synthetic::tokenizer_model(cfg.flow_lm.lookup_table.n_bins);
        let tokenizer =
            Tokenizer::from_encoder(PieceEncoder::from_bytes(&spm).map_err(anyhow::Error::msg)?);
        Ok(Self {
            cfg,
            lm,
            decoder,
            tokenizer,
            encoder: None,
            name: format!("pocket-tts {name} (random weights)"),
            device: device.clone(),
        })
    }

    /// The same model as if its checkpoint were stored in bf16 (as Kyutai publishes
    /// it): the flow LM's linear weights rounded to bf16 and kept so (benchmarks).
    pub fn with_bf16_flow_lm(mut self) -> anyhow::Result<Self> {
        self.lm = self.lm.bf16()?;
        self.name = self
            .name
            .replace("(random weights)", "(random weights, bf16 as published)");
        Ok(self)
    }

    /// Audio samples per latent frame.
    pub fn frame_size(&self) -> usize {
        self.cfg.mimi.frame_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_lm_in_bf16_reads_half_the_bytes_a_step() {
        // (The default English model: 340.9 MB in f32, 170.5 MB in bf16.)
        let name = "english_18m_2026-10";
        let cfg = PocketConfig::built_in(name).unwrap();
        let m = PocketModel::random(cfg, name, &Device::Cpu).unwrap();
        let f32_bytes = m.lm.step_weight_bytes();
        assert!(!m.lm.is_bf16());
        let m = m.with_bf16_flow_lm().unwrap();
        assert!(m.lm.is_bf16());
        assert_eq!(m.lm.step_weight_bytes() * 2, f32_bytes);
        assert!((50e6..60e6).contains(&(f32_bytes as f64)), "{f32_bytes}");
    }
}
