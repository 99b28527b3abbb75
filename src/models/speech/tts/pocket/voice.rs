//! Pocket TTS voices. A voice is the flow LM's key/value cache after reading a voice
//! prompt: the package's predefined voices (`languages/<lang>/embeddings/<name>.safetensors`)
//! and the files its `export-voice` writes are that cache, saved as
//! `<module>/cache` (2, 1, steps, heads, head width) and `<module>/offset` (or the older
//! `<module>/current_end`). A WAV needs the voice-cloning encoder, which only the gated
//! repository ships.

use super::flow_lm::FlowLm;
use super::transformer::{Cache, LayerCache};
use anyhow::{bail, Context, Result};
use moshi::candle::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The gated repository with the voice-cloning encoder.
pub const CLONING_REPO: &str = "kyutai/pocket-tts";

/// The package's predefined voices (`_ORIGINS_OF_PREDEFINED_VOICES`).
pub const PREDEFINED: [&str; 27] = [
    "alba",
    "marius",
    "javert",
    "jean",
    "fantine",
    "cosette",
    "eponine",
    "azelma",
    "anna",
    "vera",
    "charles",
    "paul",
    "george",
    "mary",
    "jane",
    "michael",
    "eve",
    "bill_boerst",
    "peter_yearsley",
    "stuart_bell",
    "caro_davy",
    "giovanni",
    "lola",
    "juergen",
    "rafael",
    "daan",
    "estelle",
];

/// The voice English uses when none is asked for.
pub const DEFAULT_VOICE: &str = "alba";

/// A voice: the cache the flow LM starts each chunk from.
#[derive(Clone)]
pub struct Voice {
    pub cache: Cache,
    /// What it came from, for the header and errors.
    pub source: String,
}

impl Voice {
    /// No voice prompt (only the BOS the model puts before one): for random-weight
    /// benchmarks and checkpoints without voices.
    pub fn empty(lm: &FlowLm) -> Result<Self> {
        let mut cache = lm.transformer.empty_cache();
        if let Some(b) = &lm.bos_before_voice {
            lm.prompt(b, &mut cache)?;
        }
        Ok(Self {
            cache,
            source: "no voice".into(),
        })
    }

    /// A voice prompt of `frames` random latent-like vectors (benchmarks: a cache as
    /// long as a real voice's).
    pub fn random(lm: &FlowLm, frames: usize, device: &Device) -> Result<Self> {
        let d = lm.transformer.shape().d_model;
        let mut v = Self::empty(lm)?;
        let x = Tensor::randn(0f32, 1.0, (1, frames, d), device)?;
        lm.prompt(&x, &mut v.cache)?;
        v.source = format!("{frames} random frames");
        Ok(v)
    }

    /// A voice-state file, checked against the model's layers and head widths.
    pub fn load(path: &Path, lm: &FlowLm, device: &Device) -> Result<Self> {
        let tensors = moshi::candle::safetensors::load(path, device)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        if tensors.keys().any(|k| k.ends_with(".wav")) {
            bail!("{}: not a voice state", path.display());
        }
        let s = lm.transformer.shape();
        let hd = s.attn_dim / s.num_heads;
        let mut layers = Vec::with_capacity(s.layers);
        let mut offset: Option<usize> = None;
        let by_name: HashMap<&str, &Tensor> =
            tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for i in 0..s.layers {
            let m = format!("transformer.layers.{i}.self_attn");
            let cache = by_name
                .get(format!("{m}/cache").as_str())
                .with_context(|| {
                    format!(
                        "{}: no {m}/cache: not a Pocket TTS voice state for this model \
                     (the package's export-voice writes one)",
                        path.display()
                    )
                })?;
            let dims = cache.dims().to_vec();
            if dims.len() != 5
                || dims[0] != 2
                || dims[1] != 1
                || dims[3] != s.kv_heads
                || dims[4] != hd
            {
                bail!(
                    "{}: {m}/cache has shape {dims:?}; this model needs (2, 1, steps, {}, {hd}): \
                     a voice of another model",
                    path.display(),
                    s.kv_heads
                );
            }
            let n = match (
                by_name.get(format!("{m}/offset").as_str()),
                by_name.get(format!("{m}/current_end").as_str()),
            ) {
                (Some(o), _) => {
                    let o = o.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                    o.first().map(|&x| x as usize).unwrap_or(dims[2])
                }
                (None, Some(e)) => e.dim(0)?,
                (None, None) => dims[2],
            };
            if n > dims[2] {
                bail!(
                    "{}: {m}/offset {n} is past its cache's {} steps",
                    path.display(),
                    dims[2]
                );
            }
            if offset.is_some_and(|o| o != n) {
                bail!("{}: the layers' offsets differ", path.display());
            }
            offset = Some(n);
            let c = cache.to_dtype(DType::F32)?.narrow(2, 0, n)?;
            // (1, steps, heads, hd) -> (1, heads, steps, hd)
            let k = c.get(0)?.transpose(1, 2)?.contiguous()?;
            let v = c.get(1)?.transpose(1, 2)?.contiguous()?;
            layers.push(if n > 0 {
                LayerCache::from_kv(k, v)?
            } else {
                LayerCache::default()
            });
        }
        let extra = format!("transformer.layers.{}.self_attn/cache", s.layers);
        if by_name.contains_key(extra.as_str()) {
            bail!(
                "{}: has {extra}, but this model has {} layers: a voice of another model",
                path.display(),
                s.layers
            );
        }
        Ok(Self {
            cache: Cache {
                layers,
                offset: offset.unwrap_or(0),
            },
            source: path.display().to_string(),
        })
    }

    /// Clone a voice from a recording (any WAV), as `get_state_for_audio_prompt` does:
    /// mono at 24 kHz, ending on a short pause, encoded and projected, after the BOS.
    /// The package resamples with scipy's `resample_poly`; other rates than 24 kHz go
    /// through our resampler here, so they agree less closely.
    pub fn from_wav(path: &Path, model: &super::model::PocketModel) -> Result<Self> {
        let Some(enc) = &model.encoder else {
            return Err(needs_cloning(path));
        };
        let Some(proj) = &model.lm.speaker_proj else {
            return Err(needs_cloning(path));
        };
        let wav = crate::audio::wav::read_wav(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ch = wav.channels.max(1) as usize;
        let mono: Vec<f32> = wav
            .samples
            .chunks(ch)
            .map(|f| f.iter().sum::<f32>() / ch as f32)
            .collect();
        let rate = model.cfg.mimi.sample_rate;
        let mono = if wav.sample_rate as usize == rate {
            mono
        } else {
            let mut rs =
                crate::audio::resample::StreamResampler::new(wav.sample_rate, rate as u32, 1024)?;
            let delay = rs.delay_samples();
            rs.push(&mono);
            rs.flush();
            let mut out = vec![0f32; rs.available()];
            let n = rs.pop(&mut out);
            out.truncate(n);
            let want = mono.len() * rate / wav.sample_rate as usize;
            out.into_iter().skip(delay).take(want).collect()
        };
        // 30 s at most (the package's `truncate`).
        let mono = &mono[..mono.len().min(30 * rate)];
        anyhow::ensure!(!mono.is_empty(), "{}: no audio", path.display());
        let pcm = super::encoder::end_on_pause(mono, rate);
        let latents = enc.encode(&pcm, &model.device)?;
        let prompt = latents.broadcast_matmul(&proj.t()?)?;
        let lm = &model.lm;
        let prompt = match &lm.bos_before_voice {
            Some(b) => Tensor::cat(&[b, &prompt], 1)?,
            None => prompt,
        };
        let mut cache = lm.transformer.empty_cache();
        lm.prompt(&prompt, &mut cache)?;
        Ok(Self {
            cache,
            source: path.display().to_string(),
        })
    }

    /// Save as the package's `export_model_state` does (`<module>/cache`, `<module>/offset`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut out = HashMap::new();
        for (i, l) in self.cache.layers.iter().enumerate() {
            let m = format!("transformer.layers.{i}.self_attn");
            if let (Some(k), Some(v)) = (l.keys()?, l.values()?) {
                let c =
                    Tensor::stack(&[k.transpose(1, 2)?, v.transpose(1, 2)?], 0)?.contiguous()?;
                out.insert(format!("{m}/cache"), c);
            }
            let off = Tensor::from_vec(vec![self.cache.offset as i64], 1, &Device::Cpu)?;
            out.insert(format!("{m}/offset"), off);
        }
        moshi::candle::safetensors::save(&out, path)?;
        Ok(())
    }
}

/// Is this a voice name the package knows?
pub fn is_predefined(name: &str) -> bool {
    PREDEFINED.contains(&name)
}

/// The error for a WAV voice on a checkpoint without the encoder.
pub fn needs_cloning(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: cloning a voice from audio needs the voice-cloning encoder, which this checkpoint \
         does not have (only the gated {CLONING_REPO} ships it; accept its terms on Hugging Face \
         and pass its languages/<lang> directory as --tts-model-dir). Or use a predefined voice: {}",
        path.display(),
        PREDEFINED.join(", ")
    )
}
