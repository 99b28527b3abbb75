//! `PersonaPlexModel`: Mimi encode -> PersonaPlex step (user stream forced, agent
//! sampled) -> Mimi decode, behind `DuplexModel`, with `prime` running the prompt
//! prefill (voice, silence, role text, silence) at full speed.

use crate::bus::{Cancel, LoadProgress, ModelInfo, Sampling};
use crate::models::duplex::{DuplexModel, PrefillStep, Primed, Prompt, StepOutput};
use crate::models::moshi::checkpoint::{load_parts, Checkpoint};
use crate::models::moshi::error::ModelLoadError;
use crate::models::moshi::personaplex::step::{
    wrap_text_prompt, Phase, PlexStep, PlexStepper, VoiceTokens, ACOUSTIC_DELAY, SILENCE_FRAMES,
    STREAM_CODEBOOKS,
};
use crate::models::moshi::personaplex::text::PieceEncoder;
use crate::models::moshi::personaplex::voice::{frames, voice_prompt_pcm};
use crate::models::moshi::personaplex::voices::{
    read_voice_pt, resolve_voice, VoiceOrigin, VoiceSource,
};
use crate::models::moshi::sampling::Samplers;
use crate::models::moshi::text::TextAssembler;
use anyhow::{Context, Result};
use moshi::candle::{Device, IndexOp, Tensor};
use moshi::mimi::Mimi;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Is this LM config PersonaPlex-shaped: a depformer that predicts every codebook,
/// the user's too?
pub fn is_personaplex(cfg: &moshi::lm::Config) -> bool {
    cfg.depformer
        .as_ref()
        .is_some_and(|d| d.num_slices == cfg.audio_codebooks)
        && cfg.audio_codebooks == 2 * STREAM_CODEBOOKS
}

pub struct PersonaPlexModel {
    mimi: Mimi,
    stepper: PlexStepper,
    text: TextAssembler,
    /// Shared by the sessions forked from one load.
    encoder: std::sync::Arc<PieceEncoder>,
    sampling: Sampling,
    samplers: Samplers,
    pending: Option<Sampling>,
    info: ModelInfo,
    device: Device,
    frame_len: usize,
    audio_pad: u32,
    /// The last prompt primed, as tokens: the voice and the text's ids.
    primed: Option<(VoiceTokens, Vec<u32>)>,
    /// Prefill steps not yet taken by `take_prefill` (for `--dump-tokens`).
    unreported: Vec<PrefillStep>,
    /// Where voice names (`NATF2`) are looked up.
    voices_dir: Option<PathBuf>,
    /// The steps of the last prefill, for token dumps and tests.
    last_prefill: Vec<PlexStep>,
    /// The LM's context in steps: a prefill must leave room for the conversation.
    context: usize,
}

impl PersonaPlexModel {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mimi: Mimi,
        stepper: PlexStepper,
        text: TextAssembler,
        encoder: PieceEncoder,
        sampling: Sampling,
        info: ModelInfo,
        device: Device,
        audio_pad: u32,
    ) -> Self {
        let cfg = mimi.config();
        let frame_len = (cfg.sample_rate / cfg.frame_rate).round() as usize;
        Self {
            mimi,
            stepper,
            text,
            encoder: std::sync::Arc::new(encoder),
            samplers: Samplers::new(&sampling),
            sampling,
            pending: None,
            info,
            device,
            frame_len,
            audio_pad,
            primed: None,
            unreported: Vec::new(),
            voices_dir: None,
            last_prefill: Vec::new(),
            context: usize::MAX,
        }
    }

    /// Load a PersonaPlex checkpoint (`is_personaplex` config).
    pub fn load(
        ck: Checkpoint,
        sampling: &Sampling,
        device: &Device,
        device_name: &str,
        progress: &mut dyn FnMut(LoadProgress),
        cancel: &Cancel,
    ) -> Result<Self, ModelLoadError> {
        let tok_path = ck.dir.join(crate::models::moshi::files::TOKENIZER_FILE);
        let encoder = std::fs::read(&tok_path)
            .map_err(|e| e.to_string())
            .and_then(|b| PieceEncoder::from_bytes(&b))
            .map_err(|e| {
                crate::models::moshi::error::checkpoint_error(format!(
                    "{}: {e}",
                    tok_path.display()
                ))
            })?;
        let (mimi, lm, dtype) = load_parts(&ck, device, progress, cancel)?;
        let gen = &ck.config.gen;
        let stepper = PlexStepper::new(
            lm,
            ck.config.lm.audio_codebooks,
            ACOUSTIC_DELAY,
            gen.text_start_token,
            gen.audio_pad_token(),
        );
        let name = ck.dir.file_name().map_or_else(
            || ck.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let info = ModelInfo {
            name,
            device: device_name.to_string(),
            dtype: dtype.into(),
        };
        let text = TextAssembler::new(ck.vocab, gen.text_pad_token, gen.text_eop_token);
        let context = ck.config.lm.transformer.context;
        let voices = ck
            .dir
            .join(crate::models::moshi::personaplex::voices::VOICES_SUBDIR);
        Ok(Self::new(
            mimi,
            stepper,
            text,
            encoder,
            sampling.clone(),
            info,
            device.clone(),
            gen.audio_pad_token(),
        )
        .with_context(context)
        .with_voices_dir(Some(voices)))
    }

    /// Where voice names are looked up (`--voices-dir`; by default the checkpoint's
    /// `voices/`, where NVIDIA's `voices.tgz` unpacks).
    pub fn with_voices_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.voices_dir = dir;
        self
    }

    pub fn voices_dir(&self) -> Option<&Path> {
        self.voices_dir.as_deref()
    }

    /// A voice prompt as the prefill takes it, from what names it (a WAV, a `.pt`, a
    /// voice name). Reads and checks everything before any state changes.
    pub fn voice_tokens(&mut self, spec: &Path) -> Result<VoiceTokens> {
        let spec = spec.to_string_lossy();
        match resolve_voice(&spec, self.voices_dir.as_deref(), VoiceOrigin::Local)? {
            VoiceSource::Wav(p) => {
                let pcm = voice_prompt_pcm(&p, self.sample_rate())?;
                Ok(VoiceTokens::Codes(self.voice_codes(&pcm)?))
            }
            VoiceSource::Embeddings(p) => {
                let v = read_voice_pt(&p)?;
                let fix = "use a voice made for this model (NVIDIA's voices.tgz for personaplex-7b-v1) or a WAV";
                let d = self.stepper.d_model();
                if v.d_model() != d {
                    anyhow::bail!(
                        "voice prompt {}: embeddings of width {} but this model's is {d}: made for another model; {fix}",
                        p.display(),
                        v.d_model()
                    );
                }
                let (streams, positions) = self.stepper.cache_shape();
                let shape = (v.cache.len(), v.cache.first().map_or(0, Vec::len));
                if shape != (streams, positions) {
                    anyhow::bail!(
                        "voice prompt {}: its token cache is {} streams x {} positions but this model has {streams} x {positions}; {fix}",
                        p.display(),
                        shape.0,
                        shape.1
                    );
                }
                if let Some(e) = self.stepper.check_tokens(&v.cache) {
                    anyhow::bail!("voice prompt {}: {e}; {fix}", p.display());
                }
                // Kept on the host, where `forward` makes its embeddings too.
                Ok(VoiceTokens::Embedded {
                    embeddings: v.embeddings,
                    cache: v.cache,
                })
            }
        }
    }

    /// Refuse prompts whose prefill would fill this many steps of context or more.
    pub fn with_context(mut self, context: usize) -> Self {
        self.context = context;
        self
    }

    /// The wrapped role text as token ids.
    pub fn text_tokens(&self, text: &str) -> Vec<u32> {
        self.encoder.encode(&wrap_text_prompt(text))
    }

    /// Mimi codes of a voice prompt's frames, encoded from a fresh Mimi state.
    pub fn voice_codes(&mut self, pcm: &[f32]) -> Result<Vec<Vec<u32>>> {
        self.mimi.reset_state();
        let mut out = Vec::new();
        for f in frames(pcm, self.frame_len) {
            let t = Tensor::from_slice(&f, (1, 1, self.frame_len), &self.device)?;
            let codes = self.mimi.encode_step(&t.into(), &().into())?;
            if let Some(c) = codes.as_option() {
                let c: Vec<u32> = c.i((0, .., 0))?.to_vec1()?;
                out.push(c[..STREAM_CODEBOOKS.min(c.len())].to_vec());
            }
        }
        self.mimi.reset_state();
        Ok(out)
    }

    /// Prefill from voice codes and text tokens.
    pub fn prime_tokens(&mut self, voice: Vec<Vec<u32>>, text: Vec<u32>) -> Result<Primed> {
        self.prime_voice(VoiceTokens::Codes(voice), text)
    }

    /// Prefill from tokens: what `prime` does once the prompt is encoded.
    pub fn prime_voice(&mut self, voice: VoiceTokens, text: Vec<u32>) -> Result<Primed> {
        let steps = voice.steps() + text.len() + 2 * SILENCE_FRAMES;
        if steps >= self.context {
            anyhow::bail!(
                "the prompts take {steps} steps ({} voice frames, {} text tokens, {} of silence) \
                 but the model's context is {} steps: shorten the role text or the voice prompt",
                voice.steps(),
                text.len(),
                2 * SILENCE_FRAMES,
                self.context
            );
        }
        let start = Instant::now();
        self.apply_pending();
        self.mimi.reset_state();
        self.text.reset();
        self.samplers = Samplers::new(&self.sampling);
        self.last_prefill = self
            .stepper
            .prefill(&voice, &text, &mut self.samplers)
            .context("prompt prefill")?;
        self.unreported = prefill_lines(&self.last_prefill);
        self.primed = Some((voice, text));
        Ok(Primed {
            steps: self.last_prefill.len() + 1,
            elapsed: start.elapsed(),
        })
    }

    /// The model steps of the last prefill (step 0, which runs no model, left out).
    pub fn last_prefill(&self) -> &[PlexStep] {
        &self.last_prefill
    }

    /// One step from tokens: forced text, agent codes and user codes where given.
    pub fn step_tokens(
        &mut self,
        text: Option<u32>,
        agent: Option<&[u32]>,
        user: Option<&[u32]>,
    ) -> Result<Option<PlexStep>> {
        self.apply_pending();
        Ok(self.stepper.step(text, agent, user, &mut self.samplers)?)
    }

    /// Steps taken since the last reset, the prefill's included.
    pub fn step_idx(&self) -> usize {
        self.stepper.offset()
    }

    fn apply_pending(&mut self) {
        if let Some(s) = self.pending.take() {
            self.samplers = Samplers::new(&s);
            self.sampling = s;
        }
    }
}

impl DuplexModel for PersonaPlexModel {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn sample_rate(&self) -> u32 {
        self.mimi.config().sample_rate as u32
    }

    fn frame_len(&self) -> usize {
        self.frame_len
    }

    fn delay_frames(&self) -> usize {
        self.stepper.max_delay()
    }

    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> Result<()> {
        if pcm_in.len() != self.frame_len {
            anyhow::bail!(
                "expected a frame of {} samples, got {}",
                self.frame_len,
                pcm_in.len()
            );
        }
        self.apply_pending();
        if out.pcm.len() != self.frame_len {
            out.pcm.resize(self.frame_len, 0.0);
        }
        let pcm = Tensor::from_slice(pcm_in, (1, 1, self.frame_len), &self.device)?;
        let codes = self
            .mimi
            .encode_step(&pcm.into(), &().into())
            .context("Mimi encode")?;
        let Some(codes) = codes.as_option() else {
            return Ok(());
        };
        let codes: Vec<u32> = codes.i((0, .., 0))?.to_vec1()?;
        let step = self
            .stepper
            .step(None, None, Some(&codes), &mut self.samplers)
            .context("LM step")?;
        let Some(aligned) = step.and_then(|s| s.aligned) else {
            return Ok(());
        };
        let text_token = aligned[0];
        out.text_token = Some(text_token);
        out.text = self.text.push(text_token);
        let audio = aligned[1..1 + STREAM_CODEBOOKS].to_vec();
        out.audio_codes = Some(audio.clone());
        if audio.iter().all(|&t| t < self.audio_pad) {
            crate::models::moshi::model::decode_into(&mut self.mimi, &self.device, audio, out)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        match self.primed.take() {
            Some((voice, text)) => {
                if let Err(e) = self.prime_voice(voice, text) {
                    tracing::error!("replaying the persona's prefill failed: {e:#}");
                }
            }
            None => {
                self.apply_pending();
                self.mimi.reset_state();
                self.stepper.reset();
                self.text.reset();
                self.samplers = Samplers::new(&self.sampling);
            }
        }
    }

    fn set_sampling(&mut self, sampling: &Sampling) {
        self.pending = Some(sampling.clone());
    }

    fn fork(&self) -> Option<Box<dyn DuplexModel>> {
        let mut stepper = self.stepper.clone();
        stepper.reset();
        let mut mimi = self.mimi.clone();
        mimi.reset_state();
        let mut text = self.text.clone();
        text.reset();
        Some(Box::new(Self {
            mimi,
            stepper,
            text,
            encoder: self.encoder.clone(),
            sampling: self.sampling.clone(),
            samplers: Samplers::new(&self.sampling),
            pending: None,
            info: self.info.clone(),
            device: self.device.clone(),
            frame_len: self.frame_len,
            audio_pad: self.audio_pad,
            primed: self.primed.clone(),
            unreported: Vec::new(),
            voices_dir: self.voices_dir.clone(),
            last_prefill: Vec::new(),
            context: self.context,
        }))
    }

    fn takes_prompt(&self) -> bool {
        true
    }

    fn prime(&mut self, prompt: &Prompt) -> Result<Primed> {
        if prompt.text.trim().is_empty() {
            anyhow::bail!(
                "the persona's role text is empty; PersonaPlex needs one (the persona's `prompt`)"
            );
        }
        let text = self.text_tokens(&prompt.text);
        let voice = match &prompt.voice {
            Some(spec) => self.voice_tokens(spec)?,
            None => VoiceTokens::Codes(Vec::new()),
        };
        self.prime_voice(voice, text)
    }

    fn set_voices_dir(&mut self, dir: &Path) {
        self.voices_dir = Some(dir.to_path_buf());
    }

    fn take_prefill(&mut self) -> Vec<PrefillStep> {
        std::mem::take(&mut self.unreported)
    }
}

/// The dump's view of a prefill: each step's forced tokens and its phase.
fn prefill_lines(steps: &[PlexStep]) -> Vec<PrefillStep> {
    steps
        .iter()
        .map(|s| PrefillStep {
            position: s.position,
            phase: match s.phase {
                Some(Phase::Voice) => "voice",
                Some(Phase::Text) => "text",
                _ => "silence",
            },
            text_token: s.column[0],
            audio_codes: s.column[1..1 + STREAM_CODEBOOKS].to_vec(),
            user_codes: s.column[1 + STREAM_CODEBOOKS..].to_vec(),
        })
        .collect()
}
