//! Kyutai's streaming text-to-speech through `moshi::tts_streaming`, driven as
//! `moshi-server`'s streaming TTS loop drives it, but without blocking: words go in as
//! the LLM writes them, and each `step` runs the model until one 80 ms frame of audio
//! comes out (several model steps at the start, while the audio lags the text), or until
//! it needs a word that has not arrived (`Waiting`).
//!
//! The published `kyutai/tts-1.6b-en_fr` (PyTorch names, a second text stream, a
//! depth-transformer schedule) runs instead through `dsm_lm` and `dsm_tts`, our port of
//! Kyutai's Python loop, behind the same streaming API.
//!
//! The voice is the cross-attention source: a voice embedding file of `kyutai/tts-voices`
//! (`speaker_wavs`, projected by the checkpoint's speaker conditioner and padded to its
//! speaker slots as Kyutai's `SpeakerEncoder` does), or `moshi-server`'s precomputed
//! `ca_src`. Without a voice, every slot is the learnt padding: the model's neutral voice.

use super::dsm_lm::{self, DsmLm};
use super::dsm_machine;
use super::dsm_tts::{DsmParams, DsmUtterance, DROPPED_FRAMES};
use crate::models::moshi::personaplex::text::PieceEncoder;
use crate::models::moshi::ModelLoadError;
use crate::models::parts::{TextToSpeech, TtsStep};
use crate::models::speech::config::{TtsConfig, MAX_SPEAKERS};
use crate::models::speech::files::{self as files, TTS_REPO};
use anyhow::{Context, Result};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use moshi::candle::{DType, Device, Tensor};
use moshi::conditioner::Condition;
use moshi::transformer::CaSrc;
use moshi::tts_streaming::{AllowedTokens, State};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

const FRAME: usize = 1920;
/// The longest utterance, in model steps (80 ms): about 5.5 minutes.
const MAX_STEPS: usize = 4096;
/// Frames of one voice slot (10 s at 12.5 Hz).
const SLOT_FRAMES: usize = 125;
/// Kyutai's `LMGen` samples text among the 25 likeliest tokens.
const TEXT_TOP_K: usize = 25;

/// How the synthesiser samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TtsSampling {
    /// Kyutai's `lm_gen_config` for tts-1.6b-en_fr: 0.6; 0 is greedy.
    pub temperature: f64,
    pub top_k: usize,
    /// Each utterance starts from this seed, so the same text speaks the same way.
    pub seed: u64,
}

impl Default for TtsSampling {
    fn default() -> Self {
        Self {
            temperature: 0.6,
            top_k: 250,
            seed: 299_792_458,
        }
    }
}

/// The checkpoint's speaker conditioner: voice embedding → cross-attention source.
struct Speaker {
    /// `output_proj.weight`: (model dim, embedding dim), f32.
    proj: Tensor,
    /// `learnt_padding`: (1, 1, model dim), f32, for the empty slots.
    padding: Tensor,
}

/// Which loop runs the checkpoint.
enum Backend {
    /// Candle names, no second stream: the crate's `tts_streaming`.
    Crate {
        lm: moshi::lm::LmModel,
        conditions: Option<Condition>,
    },
    /// The published PyTorch layout: our port of Kyutai's Python loop.
    Dsm {
        lm: DsmLm,
        params: DsmParams,
        /// Each layer's cross-attention keys and values over the current voice.
        kv: Option<Vec<CaSrc>>,
    },
}

pub struct KyutaiTts {
    backend: Backend,
    mimi: moshi::mimi::Mimi,
    cfg: TtsConfig,
    encoder: PieceEncoder,
    speaker: Option<Speaker>,
    /// The current voice's cross-attention source, in the model's dtype.
    ca_src: Option<Tensor>,
    voice: String,
    voices_dir: Option<PathBuf>,
    sampling: TtsSampling,
    device: Device,
    dtype: DType,
    name: String,
    utt: Option<Utt>,
}

enum Utt {
    Crate(Box<Utterance>),
    Dsm(Box<DsmUtt>),
}

/// A published-layout utterance and its text assembly.
pub struct DsmUtt {
    pub run: DsmUtterance,
    mimi: moshi::mimi::Mimi,
    /// Text of a word still being written (no space after it yet).
    partial: String,
    words_started: usize,
    done: bool,
}

/// Where the text stream is.
enum Slot {
    /// Feeding this word's tokens (the empty first word only lets the model pad).
    Word(Vec<u32>),
    /// The last word ended: the next one is needed before the next model step.
    NeedWord,
    /// No more words: padding until the audio has caught up.
    End { steps: usize },
}

struct Utterance {
    state: State,
    mimi: moshi::mimi::Mimi,
    words: VecDeque<Vec<u32>>,
    /// Text of a word still being written (no space after it yet).
    partial: String,
    finished: bool,
    slot: Slot,
    token_idx: usize,
    last_text_token: u32,
    bos_done: bool,
    /// Model step at which each word's first token went in.
    word_steps: Vec<usize>,
    words_started: usize,
    done: bool,
}

impl KyutaiTts {
    /// Load a checkpoint directory in the layout of `kyutai/tts-1.6b-en_fr`, with a
    /// voice embedding file (`None`: the neutral voice). `voices_dir` is where voice
    /// names given to `set_voice` are looked up. Call it on the thread that steps it.
    pub fn load(
        dir: &Path,
        voice: Option<&Path>,
        voices_dir: Option<&Path>,
        device: &Device,
    ) -> Result<Self, ModelLoadError> {
        let cfg = files::tts_config(dir)?;
        let lm_path = dir.join(&cfg.moshi_name);
        let headers = files::check_weights(dir, &cfg.moshi_name, TTS_REPO)?;
        files::expect_tensor(
            &headers,
            &lm_path,
            "text_emb.weight",
            &[cfg.text_card + 1, cfg.dim],
            TTS_REPO,
        )?;
        let last = cfg.dep_q - 1;
        let published = dsm_lm::is_pytorch_layout(headers.keys());
        let head = if published {
            format!("linears.{last}.weight")
        } else {
            format!("depformer.{last}.linear_out.weight")
        };
        files::expect_tensor(
            &headers,
            &lm_path,
            &head,
            &[cfg.card, cfg.depformer_dim],
            TTS_REPO,
        )?;
        if let (false, Some(why)) = (published, cfg.needs_published_layout()) {
            return Err(ModelLoadError::new(
                format!(
                    "{}: its config asks for {why}, but the weights are in the candle layout \
                     (depformer.N slices), which cannot hold them",
                    lm_path.display()
                ),
                format!(
                    "use {} with the config.json it came with, or both files of {TTS_REPO}",
                    cfg.moshi_name
                ),
            ));
        }
        if published {
            dsm_lm::weight_sets(&cfg).map_err(|e| {
                ModelLoadError::new(
                    format!("{}: {e}", dir.join(files::CONFIG_FILE).display()),
                    format!("use the config.json of {TTS_REPO}"),
                )
            })?;
        }
        let lm_cfg = cfg.lm().map_err(|e| {
            ModelLoadError::new(
                format!("{}: {e}", dir.join(files::CONFIG_FILE).display()),
                format!("use the config.json of {TTS_REPO}"),
            )
        })?;
        let tokenizer = files::read_tokenizer(dir, &cfg.tokenizer_name, TTS_REPO)?;
        let encoder = PieceEncoder::from_bytes(&tokenizer)
            .map_err(|e| ModelLoadError::new(e, "download the tokenizer again"))?;
        let dtype = files::compute_dtype(device);
        let remedy = format!("download {} from {TTS_REPO} again", cfg.moshi_name);
        // SAFETY: read-only memory map of a checkpoint file, as Kyutai's loaders do.
        let vb = unsafe {
            moshi::candle_nn::VarBuilder::from_mmaped_safetensors(&[&lm_path], dtype, device)
        }
        .map_err(|e| files::candle_error(&lm_path, e, &remedy))?;
        let mimi = files::load_mimi(dir, &cfg.mimi_name, cfg.dep_q, TTS_REPO, device)?;
        let mut tts = if published {
            Self::assemble_published(
                cfg,
                &lm_path,
                dtype,
                mimi,
                encoder,
                files::display_name(dir),
                device,
            )
        } else {
            Self::assemble(
                cfg,
                &lm_cfg,
                vb,
                mimi,
                encoder,
                files::display_name(dir),
                device,
            )
        }
        .map_err(|e| files::candle_error(&lm_path, e, &remedy))?;
        tts.voices_dir = voices_dir.map(Path::to_path_buf);
        if let Some(v) = voice {
            tts.load_voice(v).map_err(|e| {
                ModelLoadError::new(
                    format!("{e:#}"),
                    format!(
                        "give a voice embedding file (*.safetensors from {})",
                        files::VOICES_REPO
                    ),
                )
            })?;
        }
        Ok(tts)
    }

    fn assemble(
        cfg: TtsConfig,
        lm_cfg: &moshi::lm::Config,
        vb: moshi::candle_nn::VarBuilder,
        mimi: moshi::mimi::Mimi,
        encoder: PieceEncoder,
        name: String,
        device: &Device,
    ) -> moshi::candle::Result<Self> {
        let lm = moshi::lm::LmModel::new(
            lm_cfg,
            moshi::nn::MaybeQuantizedVarBuilder::Real(vb.clone()),
        )?;
        let conditions = conditions(&lm, &cfg)?;
        let speaker = match (cfg.cross_attention, cfg.speaker_dim()) {
            (true, Some(sdim)) => {
                let vb = vb
                    .to_dtype(DType::F32)
                    .pp("condition_provider.conditioners.speaker_wavs");
                Some(Speaker {
                    proj: vb.get((cfg.dim, sdim), "output_proj.weight")?,
                    padding: vb.get((1, 1, cfg.dim), "learnt_padding")?,
                })
            }
            _ => None,
        };
        let mut tts = Self {
            backend: Backend::Crate { lm, conditions },
            mimi,
            encoder,
            speaker,
            ca_src: None,
            voice: String::new(),
            voices_dir: None,
            sampling: TtsSampling::default(),
            device: device.clone(),
            dtype: vb.dtype(),
            name,
            utt: None,
            cfg,
        };
        tts.ca_src = tts.empty_voice()?;
        Ok(tts)
    }

    /// The published layout: PyTorch names, second stream, depformer schedule.
    fn assemble_published(
        cfg: TtsConfig,
        path: &Path,
        dtype: DType,
        mimi: moshi::mimi::Mimi,
        encoder: PieceEncoder,
        name: String,
        device: &Device,
    ) -> moshi::candle::Result<Self> {
        let lm = DsmLm::load(&cfg, path, dtype, device)?;
        let speaker = lm.speaker.clone().map(|s| Speaker {
            proj: s.proj,
            padding: s.padding,
        });
        let params = DsmParams::from_config(&cfg);
        let mut tts = Self {
            backend: Backend::Dsm {
                lm,
                params,
                kv: None,
            },
            mimi,
            encoder,
            speaker,
            ca_src: None,
            voice: String::new(),
            voices_dir: None,
            sampling: TtsSampling::default(),
            device: device.clone(),
            dtype,
            name,
            utt: None,
            cfg,
        };
        let ca = tts.empty_voice()?;
        tts.set_ca(ca)?;
        Ok(tts)
    }

    /// Use `ca` as the voice (the published layout precomputes its keys and values).
    fn set_ca(&mut self, ca: Option<Tensor>) -> moshi::candle::Result<()> {
        if let Backend::Dsm { lm, kv, .. } = &mut self.backend {
            *kv = ca.as_ref().map(|c| lm.voice_kv(c)).transpose()?;
        }
        self.ca_src = ca;
        Ok(())
    }

    /// Does this synthesiser run the published layout (our port of Kyutai's loop)?
    pub fn is_published_layout(&self) -> bool {
        matches!(self.backend, Backend::Dsm { .. })
    }

    /// The current published-layout utterance, for tests against Kyutai's tokens.
    #[doc(hidden)]
    pub fn published_utterance(&self) -> Option<&DsmUtt> {
        match &self.utt {
            Some(Utt::Dsm(u)) => Some(u),
            _ => None,
        }
    }

    /// A model of `cfg`'s size with unseeded random weights and the published Mimi's
    /// size, for timing a step (`bench`): nothing is read from disk.
    #[doc(hidden)]
    pub fn with_random_weights(cfg: TtsConfig, device: &Device) -> Result<Self> {
        use crate::models::moshi::random_init::FastRandomBackend;
        let lm_cfg = cfg.lm().map_err(anyhow::Error::msg)?;
        let vb = FastRandomBackend::var_builder(files::compute_dtype(device), device);
        let mimi = moshi::mimi::Mimi::new(
            moshi::mimi::Config::v0_1(Some(cfg.dep_q)),
            FastRandomBackend::var_builder(DType::F32, device),
        )?;
        let encoder = PieceEncoder::from_bytes(&crate::models::moshi::synthetic::tokenizer_model(
            cfg.text_card,
        ))
        .map_err(anyhow::Error::msg)?;
        Ok(Self::assemble(
            cfg,
            &lm_cfg,
            vb,
            mimi,
            encoder,
            "random".into(),
            device,
        )?)
    }

    /// Find the TTS and its voice as `opts` say (directory, HF cache, download) and
    /// load them; voice names given later to `set_voice` are looked up in the voices
    /// directory (`opts.voices_dir`, else the voices repo's cache snapshot).
    pub fn open(
        opts: &files::TtsOptions,
        disc: &crate::models::moshi::Discovery,
        device: &Device,
        progress: &mut dyn FnMut(crate::bus::LoadProgress),
        cancel: &crate::bus::Cancel,
    ) -> Result<Self, ModelLoadError> {
        let dir = files::find_tts_dir(opts, disc, progress, cancel)?;
        let cfg = files::tts_config(&dir)?;
        let voice = files::find_voice(opts, cfg.voice_suffix().as_deref(), disc, progress, cancel)?;
        files::reading(&dir, &cfg.moshi_name, progress, cancel)?;
        let voices = files::voices_dir(opts, disc);
        Self::load(&dir, voice.as_deref(), voices.as_deref(), device)
    }

    pub fn set_sampling(&mut self, s: TtsSampling) {
        self.sampling = s;
    }

    /// The voice in use: its file, or "" for the neutral voice.
    pub fn voice(&self) -> &str {
        &self.voice
    }

    /// Frames between a word's text going in and its audio coming out.
    pub fn delay_frames(&self) -> usize {
        self.cfg.delay_frames() + self.cfg.acoustic_delay()
    }

    /// All slots learnt padding: no speaker.
    fn empty_voice(&self) -> moshi::candle::Result<Option<Tensor>> {
        let Some(s) = &self.speaker else {
            return Ok(None);
        };
        let ca = s
            .padding
            .broadcast_as((1, MAX_SPEAKERS * SLOT_FRAMES, self.cfg.dim))?
            .contiguous()?;
        Ok(Some(
            moshi::tts::add_sin_embeddings(&ca)?.to_dtype(self.dtype)?,
        ))
    }

    /// Read a voice embedding file into the cross-attention source.
    fn voice_source(&self, path: &Path) -> Result<Option<Tensor>> {
        let Some(s) = &self.speaker else {
            anyhow::bail!("this model takes no voice (its config has no cross_attention)")
        };
        let st = moshi::candle::safetensors::load(path, &Device::Cpu).with_context(|| {
            format!(
                "{}: not a voice embedding (safetensors) file",
                path.display()
            )
        })?;
        let dim = self.cfg.dim;
        let ca = if let Some(w) = st.get("speaker_wavs") {
            let sdim = s.proj.dim(1)?;
            let (b, d, t) = w.dims3().with_context(|| {
                format!(
                    "{}: speaker_wavs must be (1, {sdim}, frames)",
                    path.display()
                )
            })?;
            anyhow::ensure!(
                b >= 1 && d == sdim && t > 0,
                "{}: speaker_wavs is {:?}; this model takes (1, {sdim}, frames)",
                path.display(),
                w.dims()
            );
            let proj = s.proj.to_device(&Device::Cpu)?;
            let e = w
                .narrow(0, 0, 1)?
                .to_dtype(DType::F32)?
                .transpose(1, 2)?
                .broadcast_matmul(&proj.t()?)?;
            let pad = s
                .padding
                .to_device(&Device::Cpu)?
                .broadcast_as((1, t, dim))?;
            let mut slots = vec![e];
            slots.resize(MAX_SPEAKERS, pad.contiguous()?);
            Tensor::cat(&slots, 1)?
        } else if let Some(c) = st.get("ca_src") {
            let (_, _, d) = c.dims3()?;
            anyhow::ensure!(
                d == dim,
                "{}: ca_src has width {d}; this model's is {dim}",
                path.display()
            );
            c.narrow(0, 0, 1)?.to_dtype(DType::F32)?
        } else {
            anyhow::bail!(
                "{}: no speaker_wavs (or ca_src) tensor: not a voice of {}",
                path.display(),
                files::VOICES_REPO
            )
        };
        let ca = if st.contains_key("speaker_wavs") {
            moshi::tts::add_sin_embeddings(&ca)?
        } else {
            ca
        };
        Ok(Some(ca.to_device(&self.device)?.to_dtype(self.dtype)?))
    }

    fn load_voice(&mut self, path: &Path) -> Result<()> {
        let ca = self.voice_source(path)?;
        self.set_ca(ca)?;
        self.voice = path.display().to_string();
        Ok(())
    }

    fn new_utterance(&self) -> Result<Utt> {
        let s = self.sampling;
        let sampling = |top_k: usize| {
            if s.temperature <= 0.0 || top_k <= 1 {
                Sampling::ArgMax
            } else {
                Sampling::TopK {
                    k: top_k,
                    temperature: s.temperature,
                }
            }
        };
        let lm = match &self.backend {
            Backend::Crate { lm, .. } => lm,
            Backend::Dsm { lm, params, kv } => {
                let mut mimi = self.mimi.clone();
                mimi.reset_state();
                let text =
                    LogitsProcessor::from_sampling(s.seed, sampling(TEXT_TOP_K.min(s.top_k)));
                let audio = LogitsProcessor::from_sampling(s.seed, sampling(s.top_k));
                return Ok(Utt::Dsm(Box::new(DsmUtt {
                    run: DsmUtterance::new(lm.clone(), kv.clone(), params, text, audio),
                    mimi,
                    partial: String::new(),
                    words_started: 0,
                    done: false,
                })));
            }
        };
        let mut lm = lm.clone();
        lm.reset_state();
        let ca = match &self.ca_src {
            Some(t) => lm.maybe_precompute_ca_kv(Some(CaSrc::Tokens(t.clone())))?,
            None => None,
        };
        let lp = || LogitsProcessor::from_sampling(s.seed, sampling(s.top_k));
        let state = State::new(lm, ca, MAX_STEPS, lp(), lp(), None, self.cfg.streaming());
        let mut mimi = self.mimi.clone();
        mimi.reset_state();
        Ok(Utt::Crate(Box::new(Utterance {
            state,
            mimi,
            words: VecDeque::new(),
            partial: String::new(),
            finished: false,
            // An empty first word lets the model pad before the first one, as Kyutai's
            // server starts.
            slot: Slot::Word(Vec::new()),
            token_idx: 0,
            last_text_token: self.cfg.text_card as u32,
            bos_done: false,
            word_steps: Vec::new(),
            words_started: 0,
            done: false,
        })))
    }

    fn tokens(&self, word: &str, u: &mut Utterance) -> Option<Vec<u32>> {
        let mut t = self.encoder.encode(word);
        if t.is_empty() {
            return None;
        }
        if !u.bos_done {
            u.bos_done = true;
            t.insert(0, self.cfg.streaming().text_bos_token);
        }
        Some(t)
    }

    fn run(&mut self, out: &mut [f32]) -> Result<TtsStep> {
        let Some(mut u) = self.utt.take() else {
            return Ok(TtsStep::Done);
        };
        let r = match &mut u {
            Utt::Crate(u) => self.run_utterance(u, out),
            Utt::Dsm(u) => self.run_published(u, out),
        };
        self.utt = Some(u);
        r
    }

    fn run_published(&self, u: &mut DsmUtt, out: &mut [f32]) -> Result<TtsStep> {
        let Backend::Dsm { params: p, .. } = &self.backend else {
            anyhow::bail!("internal error: a published-layout utterance on another model")
        };
        if u.done {
            return Ok(TtsStep::Done);
        }
        // Enough model steps to go from nothing to the first kept frame, and a bit.
        for _ in 0..p.lag() + DROPPED_FRAMES + p.machine.max_padding + 8 {
            if u.run.over(p) {
                u.done = true;
                return Ok(TtsStep::Done);
            }
            if !u.run.ready(p) {
                return Ok(TtsStep::Waiting);
            }
            if u.run.step_idx() + 1 >= MAX_STEPS {
                anyhow::bail!(
                    "the utterance is longer than the synthesiser's {} s",
                    MAX_STEPS * 2 / 25
                );
            }
            let Some(codes) = u.run.model_step(p)? else {
                continue;
            };
            let n = codes.len();
            let codes = Tensor::from_vec(codes, (1, n, 1), &self.device)?;
            let pcm = u.mimi.decode_step(&codes.into(), &().into())?;
            let Some(pcm) = pcm.as_option() else {
                continue;
            };
            u.run.decoded += 1;
            if u.run.decoded <= DROPPED_FRAMES {
                continue;
            }
            let pcm = pcm.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let n = pcm.len().min(out.len());
            for (o, x) in out[..n].iter_mut().zip(&pcm) {
                // `simple_generate` clips to [-1, 1].
                *o = x.clamp(-1.0, 1.0);
            }
            u.words_started = u.words_started.max(u.run.words_heard(p));
            return Ok(TtsStep::Audio {
                words_started: u.words_started,
            });
        }
        Ok(TtsStep::Waiting)
    }

    /// Queue the complete words of `text` on a published-layout utterance.
    fn push_published(&self, u: &mut DsmUtt, text: &str) {
        let Backend::Dsm { params, .. } = &self.backend else {
            return;
        };
        for w in dsm_machine::words(text) {
            let t = self.encoder.encode(&w);
            u.run.push_word(t, params);
        }
    }

    fn run_utterance(&self, u: &mut Utterance, out: &mut [f32]) -> Result<TtsStep> {
        let Backend::Crate { conditions, .. } = &self.backend else {
            anyhow::bail!("internal error: a crate utterance on the published layout")
        };
        if u.done {
            return Ok(TtsStep::Done);
        }
        let c = self.cfg.streaming();
        let lag = c.text_audio_delay_in_tokens + c.acoustic_delay;
        // Enough model steps to go from nothing to the first frame, and a bit.
        for _ in 0..lag + c.max_consecutive_pads + 8 {
            if let Slot::NeedWord = u.slot {
                if let Some(w) = u.words.pop_front() {
                    u.slot = Slot::Word(w);
                    u.token_idx = 0;
                } else if u.finished {
                    // The last word ends on a pad, not an end of word (as the server does).
                    u.state.overwrite_last_text_token(c.text_pad_token)?;
                    u.slot = Slot::End { steps: 0 };
                } else {
                    return Ok(TtsStep::Waiting);
                }
            }
            let step_idx = u.state.step_idx();
            if step_idx + 1 >= MAX_STEPS {
                anyhow::bail!(
                    "the utterance is longer than the synthesiser's {} s",
                    MAX_STEPS * 2 / 25
                );
            }
            let allowed = match &mut u.slot {
                Slot::Word(w) => match w.get(u.token_idx) {
                    Some(&id) => {
                        if u.token_idx == 0 {
                            u.word_steps.push(step_idx);
                        }
                        AllowedTokens::Text(id)
                    }
                    None => AllowedTokens::PadOrEpad,
                },
                Slot::End { steps } => {
                    *steps += 1;
                    if *steps > c.extra_steps + c.text_audio_delay_in_tokens {
                        u.done = true;
                        return Ok(TtsStep::Done);
                    }
                    AllowedTokens::Pad
                }
                Slot::NeedWord => anyhow::bail!("internal error: no word to feed the synthesiser"),
            };
            u.last_text_token = u
                .state
                .step(u.last_text_token, allowed, conditions.as_ref())?;
            if matches!(u.slot, Slot::Word(_)) {
                if u.last_text_token == c.text_eop_token {
                    u.slot = Slot::NeedWord;
                } else if u.last_text_token != c.text_pad_token {
                    u.token_idx += 1;
                }
            }
            if step_idx >= lag {
                if let Some(codes) = u.state.last_audio_tokens() {
                    let n = codes.len();
                    let codes = Tensor::from_vec(codes, (1, n, 1), &self.device)?;
                    let pcm = u.mimi.decode_step(&codes.into(), &().into())?;
                    if let Some(pcm) = pcm.as_option() {
                        let pcm = pcm.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                        let n = pcm.len().min(out.len());
                        out[..n].copy_from_slice(&pcm[..n]);
                        // Words whose first token is `lag` steps behind this one are heard.
                        let heard = u
                            .word_steps
                            .iter()
                            .filter(|&&s| s + lag <= step_idx)
                            .count();
                        u.words_started = u.words_started.max(heard);
                        return Ok(TtsStep::Audio {
                            words_started: u.words_started,
                        });
                    }
                }
            }
        }
        Ok(TtsStep::Waiting)
    }
}

/// The sum of the lookup-table conditions Kyutai's TTS runs with: CFG 2.0 for models
/// distilled with it, and the "good" control value.
fn conditions(
    lm: &moshi::lm::LmModel,
    cfg: &TtsConfig,
) -> moshi::candle::Result<Option<Condition>> {
    let Some(cp) = lm.condition_provider() else {
        return Ok(None);
    };
    let mut sum: Option<Tensor> = None;
    for (name, c) in &cfg.conditioners {
        if c["type"].as_str() != Some("lut") {
            continue;
        }
        let values: Vec<&str> = c["lut"]["possible_values"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let prefer: &[&str] = match name.as_str() {
            "cfg" => &["2.0"],
            "control" => &["also_good", "ok"],
            _ => &[],
        };
        let Some(value) = prefer
            .iter()
            .find(|p| values.contains(p))
            .or(values.first())
        else {
            continue;
        };
        let Condition::AddToInput(t) = cp.condition_lut(name, value)?;
        sum = Some(match sum {
            None => t,
            Some(s) => s.broadcast_add(&t)?,
        });
    }
    Ok(sum.map(Condition::AddToInput))
}

impl TextToSpeech for KyutaiTts {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn set_voice(&mut self, voice: &str) -> Result<()> {
        let suffix = self.cfg.voice_suffix();
        let path = files::voice_in(voice, self.voices_dir.as_deref(), suffix.as_deref())
            .with_context(|| match &self.voices_dir {
                Some(d) => format!(
                    "unknown voice {voice:?}: not a file, and not in {}",
                    d.display()
                ),
                None => format!(
                    "unknown voice {voice:?}: not a file (and no voices directory to look in)"
                ),
            })?;
        let ca = self.voice_source(&path)?;
        self.set_ca(ca)?;
        self.voice = path.display().to_string();
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        self.utt = None;
        self.utt = Some(self.new_utterance().context("starting an utterance")?);
        Ok(())
    }

    fn push_text(&mut self, text: &str) {
        let Some(mut utt) = self.utt.take() else {
            return;
        };
        match &mut utt {
            Utt::Dsm(d) => {
                if !d.run.finished {
                    d.partial.push_str(text);
                    // Every piece followed by whitespace is a whole word.
                    if let Some(end) = d.partial.rfind(char::is_whitespace) {
                        let done: String = d.partial.drain(..end).collect();
                        self.push_published(d, &done);
                        d.partial = d.partial.trim_start().to_string();
                    }
                }
            }
            Utt::Crate(u) => {
                if !u.finished {
                    u.partial.push_str(text);
                    if let Some(end) = u.partial.rfind(char::is_whitespace) {
                        let done: String = u.partial.drain(..end).collect();
                        for w in done.split_whitespace() {
                            if let Some(t) = self.tokens(w, u) {
                                u.words.push_back(t);
                            }
                        }
                        u.partial = u.partial.trim_start().to_string();
                    }
                }
            }
        }
        self.utt = Some(utt);
    }

    fn finish(&mut self) {
        let Some(mut utt) = self.utt.take() else {
            return;
        };
        match &mut utt {
            Utt::Dsm(d) => {
                let rest = std::mem::take(&mut d.partial);
                self.push_published(d, &rest);
                d.run.finished = true;
            }
            Utt::Crate(u) => {
                let rest = std::mem::take(&mut u.partial);
                for w in rest.split_whitespace() {
                    if let Some(t) = self.tokens(w, u) {
                        u.words.push_back(t);
                    }
                }
                u.finished = true;
            }
        }
        self.utt = Some(utt);
    }

    fn step(&mut self, out: &mut [f32]) -> Result<TtsStep> {
        anyhow::ensure!(
            out.len() == FRAME,
            "the synthesiser writes {FRAME}-sample frames, got {}",
            out.len()
        );
        let r = self.run(out);
        if r.is_err() {
            // A failed utterance is over; the next `start` begins afresh.
            self.utt = None;
            out.fill(0.0);
        }
        r.context("speech synthesis")
    }

    fn cancel(&mut self) {
        self.utt = None;
    }
}
