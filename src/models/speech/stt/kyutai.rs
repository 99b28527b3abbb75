//! Kyutai's streaming speech-to-text (`kyutai/stt-1b-en_fr-candle`) through the `moshi`
//! crate's `asr` module, driven as Kyutai's `stt-rs` and `moshi-server` drive it: one
//! 1920-sample frame per step, greedy text, words as the model completes them, and the
//! pause-prediction heads (when the weights have them) as the end-of-speech signal.

use crate::models::moshi::files::TensorHeader;
use crate::models::moshi::text::Vocab;
use crate::models::moshi::ModelLoadError;
use crate::models::parts::{SpeechToText, SttStep};
use crate::models::speech::config::SttConfig;
use crate::models::speech::files::{self as files, STT_REPO};
use anyhow::{Context, Result};
use moshi::asr::AsrMsg;
use moshi::candle::{Device, Tensor};
use moshi::lm::ExtraHeadsConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// Samples in one step: 80 ms at 24 kHz.
pub const FRAME: usize = 1920;

/// The pause head read for end of speech: Kyutai's heads predict silence over 0.5, 1, 2
/// and 3 s; `stt-rs` (and Unmute) take the 2 s one.
const END_OF_SPEECH_HEAD: usize = 2;

pub struct KyutaiStt {
    state: moshi::asr::State,
    vocab: Vocab,
    device: Device,
    name: String,
    delay: usize,
    /// Silence frames the model expects before any audio (its `stt_config`).
    prefix_frames: usize,
    fed_prefix: bool,
    pause_heads: usize,
}

impl KyutaiStt {
    /// Load a checkpoint directory in the layout of `kyutai/stt-1b-en_fr-candle`. Call it
    /// on the thread that will step it.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelLoadError> {
        let cfg = files::stt_config(dir)?;
        let lm_path = dir.join(cfg.lm_file());
        let quantized = cfg.lm_file().ends_with(".gguf");
        let headers = if quantized {
            if !lm_path.is_file() {
                return Err(files::missing(&lm_path, STT_REPO));
            }
            crate::models::speech::stt::quant::gguf_headers(&lm_path)?
        } else {
            files::check_weights(dir, cfg.lm_file(), STT_REPO)?
        };
        check_layout(&cfg, &headers, &lm_path)?;
        let heads = files::pause_heads(&headers);
        let n_heads = heads.as_ref().map_or(0, |h| h.num_heads);
        let vocab = Vocab::from_bytes(&files::read_tokenizer(dir, &cfg.tokenizer_name, STT_REPO)?)
            .map_err(|e| ModelLoadError::new(e, "download the tokenizer again"))?;
        if vocab.len() < cfg.text_card {
            return Err(ModelLoadError::new(
                format!(
                    "{}: {} pieces, but the model writes {} text tokens",
                    dir.join(&cfg.tokenizer_name).display(),
                    vocab.len(),
                    cfg.text_card
                ),
                format!("use the tokenizer that comes with {STT_REPO}"),
            ));
        }
        let remedy = if quantized {
            format!(
                "convert {STT_REPO}'s model.safetensors again (`assistant convert SRC DST --q8`)"
            )
        } else {
            format!("download {} from {STT_REPO} again", cfg.lm_file())
        };
        let vb = if quantized {
            moshi::nn::MaybeQuantizedVarBuilder::Quantized(
                crate::models::speech::stt::quant::gguf_var_builder(&lm_path, device)
                    .map_err(|e| files::candle_error(&lm_path, e, &remedy))?,
            )
        } else {
            // SAFETY: read-only memory map of a checkpoint file, as Kyutai's own loaders do.
            moshi::nn::MaybeQuantizedVarBuilder::Real(
                unsafe {
                    moshi::candle_nn::VarBuilder::from_mmaped_safetensors(
                        &[&lm_path],
                        files::compute_dtype(device),
                        device,
                    )
                }
                .map_err(|e| files::candle_error(&lm_path, e, &remedy))?,
            )
        };
        let lm = moshi::lm::LmModel::new(&cfg.lm(heads), vb)
            .map_err(|e| files::candle_error(&lm_path, e, &remedy))?;
        let mimi = files::load_mimi(dir, &cfg.mimi_name, cfg.n_q, STT_REPO, device)?;
        Self::assemble(
            &cfg,
            lm,
            mimi,
            vocab,
            (files::display_name(dir), n_heads),
            device,
        )
        .map_err(|e| files::candle_error(&lm_path, e, &remedy))
    }

    fn assemble(
        cfg: &SttConfig,
        lm: moshi::lm::LmModel,
        mimi: moshi::mimi::Mimi,
        vocab: Vocab,
        (name, pause_heads): (String, usize),
        device: &Device,
    ) -> moshi::candle::Result<Self> {
        let state = moshi::asr::State::new(1, cfg.delay_frames(), 0.0, mimi, lm)?;
        Ok(Self {
            state,
            vocab,
            device: device.clone(),
            name,
            delay: cfg.delay_frames(),
            prefix_frames: (cfg.stt_config.audio_silence_prefix_seconds * 24_000.0 / FRAME as f64)
                .round() as usize,
            fed_prefix: false,
            pause_heads,
        })
    }

    /// A model of `cfg`'s size with unseeded random weights and the published Mimi's size,
    /// for timing a step (`bench`): nothing is read from disk.
    #[doc(hidden)]
    pub fn with_random_weights(cfg: &SttConfig, device: &Device) -> Result<Self> {
        use crate::models::moshi::random_init::FastRandomBackend;
        let vb = FastRandomBackend::var_builder(files::compute_dtype(device), device);
        let heads = ExtraHeadsConfig {
            num_heads: 4,
            dim: 6,
        };
        let lm = moshi::lm::LmModel::new(
            &cfg.lm(Some(heads)),
            moshi::nn::MaybeQuantizedVarBuilder::Real(vb),
        )?;
        let mimi = moshi::mimi::Mimi::new(
            moshi::mimi::Config::v0_1(Some(cfg.n_q)),
            FastRandomBackend::var_builder(moshi::candle::DType::F32, device),
        )?;
        let vocab = Vocab::from_bytes(&crate::models::moshi::synthetic::tokenizer_model(
            cfg.text_card,
        ))
        .map_err(anyhow::Error::msg)?;
        Ok(Self::assemble(
            cfg,
            lm,
            mimi,
            vocab,
            ("random".into(), 4),
            device,
        )?)
    }

    /// As `with_random_weights`, the LM's matrices quantized as `format` (the Mimi f32).
    #[doc(hidden)]
    pub fn with_random_quantized_weights(
        cfg: &SttConfig,
        format: crate::models::speech::stt::quant::SttFormat,
    ) -> Result<Self> {
        use crate::models::moshi::random_init::FastRandomBackend;
        let device = Device::Cpu;
        let heads = ExtraHeadsConfig {
            num_heads: 4,
            dim: 6,
        };
        let lm = crate::models::speech::stt::quant::random_quantized_lm(cfg, heads, format)?;
        let mimi = moshi::mimi::Mimi::new(
            moshi::mimi::Config::v0_1(Some(cfg.n_q)),
            FastRandomBackend::var_builder(moshi::candle::DType::F32, &device),
        )?;
        let vocab = Vocab::from_bytes(&crate::models::moshi::synthetic::tokenizer_model(
            cfg.text_card,
        ))
        .map_err(anyhow::Error::msg)?;
        let name = format!("random {}", format.label());
        Ok(Self::assemble(cfg, lm, mimi, vocab, (name, 4), &device)?)
    }

    /// Find the STT as `opts` say (directory, HF cache, download) and load it.
    pub fn open(
        opts: &files::SttOptions,
        disc: &crate::models::moshi::Discovery,
        device: &Device,
        progress: &mut dyn FnMut(crate::bus::LoadProgress),
        cancel: &crate::bus::Cancel,
    ) -> Result<Self, ModelLoadError> {
        let dir = files::find_stt_dir(opts, disc, progress, cancel)?;
        let cfg = files::stt_config(&dir)?;
        files::reading(&dir, cfg.lm_file(), progress, cancel)?;
        Self::load(&dir, device)
    }

    /// Whether the checkpoint predicts pauses (`end_of_speech` is `Some`).
    pub fn predicts_pauses(&self) -> bool {
        self.pause_heads > 0
    }

    fn feed(&mut self, pcm: &[f32], out: &mut SttStep) -> Result<()> {
        let t = Tensor::from_slice(pcm, (1, 1, pcm.len()), &self.device)?;
        let msgs = self.state.step_pcm(t, None, &().into(), |_, _, _| ())?;
        for m in msgs {
            match m {
                AsrMsg::Word { tokens, .. } => {
                    // One event per word for Kyutai's models (they pad between words);
                    // split anyway so a caller always gets single words.
                    let text = self.vocab.decode(&tokens);
                    out.words.extend(text.split_whitespace().map(String::from));
                }
                AsrMsg::Step { prs, .. } => {
                    let head = END_OF_SPEECH_HEAD.min(prs.len().saturating_sub(1));
                    // Each head's first class is "no voice from now on".
                    out.end_of_speech = prs.get(head).and_then(|p| p.first()).copied();
                }
                AsrMsg::EndWord { .. } => {}
            }
        }
        Ok(())
    }
}

fn check_layout(
    cfg: &SttConfig,
    headers: &BTreeMap<String, TensorHeader>,
    path: &Path,
) -> Result<(), ModelLoadError> {
    files::expect_tensor(
        headers,
        path,
        "text_emb.weight",
        &[cfg.text_card + 1, cfg.dim],
        STT_REPO,
    )?;
    files::expect_tensor(
        headers,
        path,
        "text_linear.weight",
        &[cfg.text_card, cfg.dim],
        STT_REPO,
    )?;
    let last = cfg.n_q - 1;
    files::expect_tensor(
        headers,
        path,
        &format!("emb.{last}.weight"),
        &[cfg.card + 1, cfg.dim],
        STT_REPO,
    )?;
    let layer = format!(
        "transformer.layers.{}.self_attn.in_proj_weight",
        cfg.num_layers - 1
    );
    files::expect_tensor(headers, path, &layer, &[3 * cfg.dim, cfg.dim], STT_REPO)?;
    if headers.contains_key(&format!(
        "transformer.layers.{}.self_attn.in_proj_weight",
        cfg.num_layers
    )) {
        return Err(ModelLoadError::new(
            format!(
                "{}: more than the {} layers config.json gives",
                path.display(),
                cfg.num_layers
            ),
            format!("use the config.json that comes with the weights ({STT_REPO})"),
        ));
    }
    Ok(())
}

impl SpeechToText for KyutaiStt {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn step(&mut self, pcm: &[f32]) -> Result<SttStep> {
        anyhow::ensure!(
            pcm.len() == FRAME,
            "the recogniser takes {FRAME}-sample frames, got {}",
            pcm.len()
        );
        let mut out = SttStep::default();
        if !self.fed_prefix {
            self.fed_prefix = true;
            let silence = [0f32; FRAME];
            for _ in 0..self.prefix_frames {
                self.feed(&silence, &mut out)
                    .context("speech recognition (silence prefix)")?;
            }
        }
        self.feed(pcm, &mut out).context("speech recognition")?;
        Ok(out)
    }

    fn delay_frames(&self) -> usize {
        self.delay
    }

    fn reset(&mut self) {
        if let Err(e) = self.state.reset() {
            tracing::warn!("resetting the recogniser: {e}");
        }
        self.fed_prefix = false;
    }
}
